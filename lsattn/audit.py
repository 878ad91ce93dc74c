"""Numerical stability audit: how far each formulation lands from a float64 reference, and where
it breaks.

Three layers, usable on their own:

- :func:`compare` (and :func:`breakdown_scale`): error figures of *any* callable against a
  reference callable on the same inputs, in any array namespace. This is how you audit your own
  function.
- The formulations registry: for each of lsattn's five operators, lsattn itself on every
  available backend, plus clearly labelled *comparison formulations* that live only here (never
  in the operator modules): the naive unstabilised forms (raw ``exp(q) @ exp(k).T``, decays
  held in linear space as ``exp(cumsum)`` ratios) and, for ``log_attention``, the published code
  of Heinsen (2024) (log-space prefix states by ``logcumsumexp`` over a materialised
  ``(T, d_k, d_v)`` tensor). :func:`register_formulation` adds yours.
- :func:`sweep`: operators x formulations x dtypes x input magnitudes x lengths x backends, one
  record per case (:data:`RECORD_KEYS`), then :func:`table`, :func:`write_json`, :func:`plot`;
  the ``lsattn audit`` command (:func:`main`) drives it with a progress bar.

Error figures (``out``, ``ref`` as float64; entries where the reference is infinite must match it
exactly):

- ``max_abs_err = max |out - ref|``;
- ``max_rel_err = max |out - ref| / |ref|`` entrywise (``0/0 = 0``, ``x/0 = inf``);
- ``normwise_rel_err = max |out - ref| / max |ref|``: the max-norm relative error, the measure the
  library's accuracy promises (``tests/helpers.TOL``) are stated in;
- ``err_in_eps = normwise_rel_err / eps(dtype)``, ``eps`` the machine epsilon of the output dtype
  (float16 ``2^-10``, bfloat16 ``2^-7``, float32 ``2^-23``, float64 ``2^-52``);
- ``nan_count``, ``inf_count`` of the output; every error figure is ``inf`` when the output is not
  finite where the reference is (``mismatched`` counts those entries).

The reference of a case sees exactly the inputs the formulation sees (after the cast to the
audited dtype, upcast to float64), so the figures measure the arithmetic, not input rounding.
"""
from __future__ import annotations

import json
import math
import sys
import time
import warnings
import zlib
from dataclasses import asdict, dataclass, field
from typing import Callable, Optional

import array_api_compat
import numpy as np

from . import backends, reference
from .fenwick import fenwick_level, level_matrix, num_levels

__all__ = [
    "Comparison",
    "compare",
    "breakdown_scale",
    "Formulation",
    "register_formulation",
    "formulations",
    "make_inputs",
    "OPS",
    "DTYPES",
    "RECORD_KEYS",
    "sweep",
    "table",
    "write_json",
    "plot",
    "main",
]

#: Machine epsilon (spacing of the floats at 1) per dtype name.
EPS = {"float16": 2.0**-10, "bfloat16": 2.0**-7, "float32": 2.0**-23, "float64": 2.0**-52}

# ---------------------------------------------------------------------------------------------
# compare(): error figures of any callable against a reference
# ---------------------------------------------------------------------------------------------


@dataclass
class Comparison:
    """Error figures of one output against its reference (see the module docstring).

    ``breakdown_scale`` and ``by_scale`` are set only by ``compare(..., scales=...)``: the first
    scale whose output is not finite where the reference is, and the figures at each scale.
    """

    max_abs_err: float
    max_rel_err: float
    normwise_rel_err: float
    err_in_eps: float
    nan_count: int
    inf_count: int
    mismatched: int
    size: int
    dtype: str
    breakdown_scale: Optional[float] = None
    by_scale: Optional[dict] = field(default=None, repr=False)

    @property
    def finite(self):
        """True when the output is finite wherever the reference is."""
        return self.mismatched == 0

    def as_dict(self):
        d = asdict(self)
        if self.by_scale is not None:
            d["by_scale"] = {s: c.as_dict() for s, c in self.by_scale.items()}
        return d


def to_float64(x):
    """Any array (NumPy, torch, JAX, array-api-strict, CuPy; any float dtype) as NumPy float64."""
    if array_api_compat.is_torch_array(x):
        x = x.detach().cpu()
        return (x.double() if x.is_floating_point() else x).numpy().astype(np.float64)
    if array_api_compat.is_cupy_array(x):
        return x.get().astype(np.float64)
    try:
        a = np.asarray(x)
    except Exception:
        a = np.from_dlpack(x)
    return a.astype(np.float64)


def dtype_name(x):
    """``"float32"`` etc. for an array of any namespace."""
    return str(x.dtype).split(".")[-1].replace("dtype(", "").strip("')")


def _eps(name, out):
    if name in EPS:
        return EPS[name]
    try:
        return float(np.finfo(np.asarray(out).dtype).eps)
    except Exception:
        return math.nan


def figures(out, ref, *, eps=None):
    """The :class:`Comparison` of ``out`` against ``ref`` (arrays of any namespace, same shape).

    ``eps`` defaults to the machine epsilon of ``out``'s dtype.
    """
    name = dtype_name(out) if hasattr(out, "dtype") else "float64"
    eps = _eps(name, out) if eps is None else float(eps)
    o, r = to_float64(out), to_float64(ref)
    if o.shape != r.shape:
        raise ValueError(f"output shape {o.shape} differs from the reference shape {r.shape}")
    nan, inf = int(np.isnan(o).sum()), int(np.isinf(o).sum())
    fin = np.isfinite(r)
    # The output must be finite where the reference is, and equal to it where it is not.
    mismatched = int((~np.isfinite(o) & fin).sum() + (~fin & ~((o == r) | (np.isnan(o) & np.isnan(r)))).sum())
    if mismatched:
        worst = (math.inf,) * 4
    else:
        diff, mag = np.abs(o[fin] - r[fin]), np.abs(r[fin])
        max_abs = float(diff.max(initial=0.0))
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.where(diff == 0, 0.0, diff / mag)
        max_rel = float(rel.max(initial=0.0))
        scale = float(mag.max(initial=0.0))
        normwise = 0.0 if max_abs == 0 else (max_abs / scale if scale > 0 else math.inf)
        worst = (max_abs, max_rel, normwise, normwise / eps)
    return Comparison(*worst, nan_count=nan, inf_count=inf, mismatched=mismatched, size=int(o.size), dtype=name)


def _call(fn, inputs):
    if isinstance(inputs, dict):
        return fn(**inputs)
    if isinstance(inputs, (tuple, list)):
        return fn(*inputs)
    raise TypeError(f"inputs must be a dict of keyword arrays or a tuple of positional arrays, got {type(inputs).__name__}")


def _first_output(out):
    return out[0] if isinstance(out, tuple) else out


def compare(fn, reference, inputs, *, scales=None, eps=None):
    """Error figures of ``fn`` against ``reference`` on the same inputs.

    Parameters
    ----------
    fn, reference : callables
        Called as ``fn(**inputs)`` (dict) or ``fn(*inputs)`` (tuple); each returns one array of any
        namespace and shape, or a tuple whose first item is that array (``return_state=True``).
        The reference should compute in float64; it receives exactly what ``fn`` receives.
    inputs : dict, tuple, or callable
        The arguments; with ``scales``, a function ``inputs(scale) -> dict or tuple``.
    scales : sequence of float, optional
        Input magnitudes to sweep (sorted ascending). The result then holds the worst figures
        over all scales, ``by_scale`` (scale -> Comparison) and ``breakdown_scale``: the first
        scale at which ``fn``'s output stops being finite where the reference is (None if never).
    eps : float, optional
        Unit for ``err_in_eps``; defaults to the machine epsilon of ``fn``'s output dtype.

    Returns
    -------
    Comparison
    """
    if scales is None:
        out = _first_output(_call(fn, inputs))
        return figures(out, _first_output(_call(reference, inputs)), eps=eps)
    if not callable(inputs):
        raise TypeError("with scales=, inputs must be a function inputs(scale) -> dict or tuple")
    by_scale = {float(s): compare(fn, reference, inputs(s), eps=eps) for s in sorted(scales)}
    results = list(by_scale.values())
    broken = [s for s, c in by_scale.items() if not c.finite]
    worst = Comparison(
        *(max(getattr(c, a) for c in results) for a in ("max_abs_err", "max_rel_err", "normwise_rel_err", "err_in_eps")),
        nan_count=sum(c.nan_count for c in results),
        inf_count=sum(c.inf_count for c in results),
        mismatched=sum(c.mismatched for c in results),
        size=sum(c.size for c in results),
        dtype=results[0].dtype,
        breakdown_scale=broken[0] if broken else None,
        by_scale=by_scale,
    )
    return worst


def breakdown_scale(fn, make_inputs, scales):
    """The first of ``sorted(scales)`` at which ``fn(make_inputs(scale))`` has a NaN or infinity.

    No reference is needed: use it to find where a formulation overflows. ``make_inputs(scale)``
    returns a dict (keyword arguments) or a tuple (positional). Returns None if every output is
    finite.
    """
    for s in sorted(scales):
        out = to_float64(_first_output(_call(fn, make_inputs(s))))
        if not np.isfinite(out).all():
            return float(s)
    return None


# ---------------------------------------------------------------------------------------------
# Audit inputs: what "scale" means for each operator
# ---------------------------------------------------------------------------------------------


def _uniform(rng, shape, scale):
    return scale * rng.uniform(-1.0, 1.0, shape)


def _decay(rng, shape, scale):
    """``a_t = -scale * u_t``, ``u ~ U(0, 1)``: the per-token log decay."""
    return -scale * rng.uniform(0.0, 1.0, shape)


def _unit_keys(rng, shape):
    k = rng.standard_normal(shape)
    return k / np.linalg.norm(k, axis=-1, keepdims=True)


def _inputs_exp_kernel(rng, batch, T, d, scale, log_values):
    q, k = _uniform(rng, batch + (T, d), scale), _uniform(rng, batch + (T, d), scale)
    vals = rng.standard_normal(batch + (T, d))
    return {"q": q, "k": k, ("log_v" if log_values else "v"): vals}


def _inputs_loglinear(rng, batch, T, d, scale):
    L = num_levels(T)
    return {
        "q": rng.standard_normal(batch + (T, d)) / math.sqrt(d),
        "k": rng.standard_normal(batch + (T, d)) / math.sqrt(d),
        "v": rng.standard_normal(batch + (T, d)),
        "log_decay": _decay(rng, batch + (T,), scale),
        "level_weights": rng.uniform(0.5, 1.5, batch + (T, L)),
    }


def _inputs_gated_delta(rng, batch, T, d, scale):
    L = num_levels(T)
    return {
        "q": rng.standard_normal(batch + (T, d)) / math.sqrt(d),
        "k": _unit_keys(rng, batch + (T, d)),  # unit keys and beta in [0, 1]: I - beta k k^T contracts
        "v": rng.standard_normal(batch + (T, d)),
        "log_decay": _decay(rng, batch + (T,), scale),
        "beta": rng.uniform(0.0, 1.0, batch + (T,)),
        "level_weights": rng.uniform(0.5, 1.5, batch + (T, L)),
    }


def _inputs_hierarchical(rng, batch, T, d, scale):
    L = num_levels(T)
    x = _inputs_exp_kernel(rng, batch, T, d, scale, True)
    x["log_level_weights"] = rng.standard_normal(batch + (T, L))
    x["log_decay"] = _decay(rng, batch + (T,), scale)
    return x


#: Operator -> (input maker ``(rng, batch, T, d, scale) -> dict of float64 NumPy arrays``, what
#: ``scale`` multiplies). Keys of the dicts are the operators' argument names.
OPS = {
    "log_attention": (lambda r, b, T, d, s: _inputs_exp_kernel(r, b, T, d, s, True), "q, k ~ scale * U(-1, 1); log_v ~ N(0, 1)"),
    "exp_kernel_attention": (lambda r, b, T, d, s: _inputs_exp_kernel(r, b, T, d, s, False), "q, k ~ scale * U(-1, 1); v ~ N(0, 1)"),
    "loglinear_attention": (_inputs_loglinear, "log_decay ~ -scale * U(0, 1); q, k ~ N(0, 1/d), v ~ N(0, 1), level_weights ~ U(0.5, 1.5)"),
    "loglinear_gated_delta": (_inputs_gated_delta, "log_decay ~ -scale * U(0, 1); unit keys, beta ~ U(0, 1), level_weights ~ U(0.5, 1.5)"),
    "loglinear_log_attention": (_inputs_hierarchical, "q, k ~ scale * U(-1, 1) and log_decay ~ -scale * U(0, 1); log_v, log_level_weights ~ N(0, 1)"),
}

DTYPES = ("float16", "bfloat16", "float32", "float64")


def make_inputs(op, T, scale, *, batch=(2,), d=16, seed=0):
    """The audit's float64 NumPy inputs of ``op`` (keyword dict), deterministic in (seed, op, T, scale)."""
    if op not in OPS:
        raise ValueError(f"unknown operator {op!r}; the audit knows {sorted(OPS)}")
    key = zlib.crc32(f"{op}|{int(T)}|{float(scale)!r}".encode())
    rng = np.random.default_rng([int(seed), key])
    return OPS[op][0](rng, tuple(batch), int(T), int(d), float(scale))


# ---------------------------------------------------------------------------------------------
# Comparison formulations (audit only; never used by the library)
# ---------------------------------------------------------------------------------------------


def _xp(*arrays):
    return array_api_compat.array_namespace(*(a for a in arrays if a is not None))


def _zero(xp, like):
    return xp.zeros((), dtype=like.dtype, device=array_api_compat.device(like))


def _causal(xp, T, like):
    """(T, T) bool, s <= t."""
    pos = xp.arange(T, device=array_api_compat.device(like))
    return pos[:, None] >= pos[None, :]


def _naive_kernel(xp, q, k):
    """``W[t, s] = exp(q_t) . exp(k_s)`` with raw exponentials: overflows once ``q_i + k_i`` (or
    ``q_i`` alone) exceeds ``log(max float)`` (~88.7 in float32, ~11.1 in float16)."""
    return xp.exp(q) @ xp.matrix_transpose(xp.exp(k))


def _by_level(xp, weights, T):
    """``W[..., t, s] = weights[..., t, level(t, s)]``, 0 where s > t: (..., T, L) -> (..., T, T)"""
    lev = level_matrix(T, xp=xp, device=array_api_compat.device(weights))
    out = xp.zeros(weights.shape[:-1] + (T,), dtype=weights.dtype, device=array_api_compat.device(weights))
    for l in range(num_levels(T)):
        out = xp.where(lev == l, weights[..., l : l + 1], out)
    return out


def _linear_decay_ratio(xp, log_decay):
    """``exp(A_t) / exp(A_s)`` with ``A = cumsum(a)``, decays held in linear space (Mamba-style):
    ``exp(A)`` underflows to 0 once ``A < log(min float)`` and the ratio becomes 0/0 = NaN."""
    E = xp.exp(xp.cumulative_sum(log_decay, axis=-1))
    T = log_decay.shape[-1]
    return xp.where(_causal(xp, T, E), E[..., :, None] / E[..., None, :], _zero(xp, E))


def naive_exp_kernel_attention(q, k, v):
    """Naive causal exp-kernel attention: ``(W V) / (W 1)`` with ``W = exp(q) exp(k)^T`` masked."""
    xp = _xp(q, k, v)
    W = xp.where(_causal(xp, q.shape[-2], q), _naive_kernel(xp, q, k), _zero(xp, q))
    return (W @ v) / xp.sum(W, axis=-1, keepdims=True)


def naive_log_attention(q, k, log_v):
    """``log`` of the naive form with ``v = exp(log_v)``."""
    xp = _xp(q, k, log_v)
    return xp.log(naive_exp_kernel_attention(q, k, xp.exp(log_v)))


def naive_loglinear_attention(q, k, v, log_decay, level_weights):
    """``(M * (Q K^T)) V`` with ``M = lambda[t, level] exp(A_t) / exp(A_s)`` (linear-space decays)."""
    xp = _xp(q, k, v, log_decay, level_weights)
    M = _by_level(xp, level_weights, q.shape[-2]) * _linear_decay_ratio(xp, log_decay)
    return (M * (q @ xp.matrix_transpose(k))) @ v


def naive_loglinear_gated_delta(q, k, v, log_decay, beta, level_weights):
    """Gated DeltaNet with the decay factored out in linear space:
    ``o_t = sum_s lambda[t, level] (exp(A_t) / exp(A_s)) beta_s (q_t^T P_t ... P_{s+1} k_s) v_s``,
    ``P_r = I - beta_r k_r k_r^T``; the projector products by a sweep over ``s`` (quadratic)."""
    xp = _xp(q, k, v, log_decay, beta, level_weights)
    T = q.shape[-2]
    t_idx = xp.arange(T, device=array_api_compat.device(q))[:, None]
    R, columns = q, []
    for s in range(T - 1, -1, -1):
        if s < T - 1:
            ks = k[..., s + 1, None, :]
            R = xp.where(t_idx > s, R - (R @ xp.matrix_transpose(ks)) * beta[..., s + 1, None, None] * ks, q)
        columns.append(beta[..., s, None] * (R @ xp.matrix_transpose(k[..., s, None, :]))[..., 0])
    G = xp.stack(columns[::-1], axis=-1)
    return (_by_level(xp, level_weights, T) * _linear_decay_ratio(xp, log_decay) * G) @ v


def naive_loglinear_log_attention(q, k, log_v, log_level_weights, log_decay=None):
    """``log`` of ``(w V) / (w 1)``, ``w = exp(loglam)[level] * exp(A_t)/exp(A_s) * exp(q) exp(k)^T``."""
    xp = _xp(q, k, log_v, log_level_weights, log_decay)
    T = q.shape[-2]
    w = _by_level(xp, xp.exp(log_level_weights), T) * _naive_kernel(xp, q, k)
    if log_decay is not None:
        w = w * _linear_decay_ratio(xp, log_decay)
    return xp.log((w @ xp.exp(log_v)) / xp.sum(w, axis=-1, keepdims=True))


def _numpy_same_dtype(x):
    """``x`` as a NumPy array of its own dtype (the paper form runs on NumPy)."""
    if array_api_compat.is_torch_array(x):
        return x.detach().cpu().numpy()
    try:
        return np.asarray(x)
    except Exception:
        return np.from_dlpack(x)


def _np_logsumexp(x, axis):
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, np.zeros_like(m))
    return np.squeeze(m, axis=axis) + np.log(np.sum(np.exp(x - m), axis=axis))


def paper_log_attention(q, k, log_v):
    """Causal log-attention as in the published code of Heinsen (2024), in NumPy, in the input dtype.

    ``H_S = logcumsumexp_s(k_s + log v_s)`` over a materialised ``(T, d_k, d_v)`` tensor and
    ``H_Z = logcumsumexp_s(k_s)``; ``log y_t = logsumexp_i(q_ti + H_S[t, i]) - logsumexp_i(q_ti + H_Z[t, i])``.
    Memory grows as ``T d_k d_v``; ``v`` must be positive (the interface takes ``log v``).
    """
    Q, K, LV = (_numpy_same_dtype(x) for x in (q, k, log_v))
    Q, K, LV = Q[..., :, :, None], K[..., :, :, None], LV[..., :, None, :]  # (.., T, dk, 1), (.., T, 1, dv)
    H_S = np.logaddexp.accumulate(K + LV, axis=-3)  # (..., T, d_k, d_v)
    H_Z = np.logaddexp.accumulate(K, axis=-3)  # (..., T, d_k, 1)
    return _np_logsumexp(Q + H_S, axis=-2) - _np_logsumexp(Q + H_Z, axis=-2)  # (..., T, d_v)


@dataclass(frozen=True)
class Formulation:
    """One way of computing an operator, as audited.

    Attributes
    ----------
    op : str
        Operator name (a key of :data:`OPS`).
    name : str
        ``"lsattn"`` for the library, ``"naive"``, ``"paper"`` or your own label.
    backend : str
        The lsattn backend for ``"lsattn"``, ``"-"`` for comparison formulations.
    fn : callable
        Called with the operator's keyword inputs (already in the audited dtype and namespace).
    memory : callable, optional
        ``(T, d, itemsize) -> bytes`` per batch element, for formulations that materialise
        large intermediates; cases above the sweep's memory budget are skipped with the reason.
    skip : callable, optional
        ``(namespace_name, dtype_name) -> reason or None`` for cases it cannot run.
    """

    op: str
    name: str
    backend: str
    fn: Callable
    description: str = ""
    memory: Optional[Callable] = None
    skip: Optional[Callable] = None


def _quadratic(per_elem):
    return lambda T, d, itemsize: T * T * (per_elem + 4 * itemsize)


def _paper_skip(ns, dtype):
    return "NumPy (the paper form's arrays here) has no bfloat16" if dtype == "bfloat16" else None


#: op -> comparison formulations (audit-only). lsattn's own are added per backend by formulations().
COMPARISONS: dict = {op: [] for op in OPS}


def register_formulation(f):
    """Add a comparison :class:`Formulation` to the sweep of ``f.op`` (e.g. your own kernel)."""
    if f.op not in OPS:
        raise ValueError(f"unknown operator {f.op!r}; the audit knows {sorted(OPS)}")
    COMPARISONS[f.op] = [g for g in COMPARISONS[f.op] if (g.name, g.backend) != (f.name, f.backend)] + [f]
    return f


for _op, _fn, _mem, _desc in (
    ("log_attention", naive_log_attention, 1, "raw exp(q) @ exp(k).T, masked, in the input dtype"),
    ("exp_kernel_attention", naive_exp_kernel_attention, 1, "raw exp(q) @ exp(k).T, masked, in the input dtype"),
    ("loglinear_attention", naive_loglinear_attention, 56, "linear-space decays exp(A_t) / exp(A_s), quadratic"),
    ("loglinear_gated_delta", naive_loglinear_gated_delta, 64, "linear-space decays exp(A_t) / exp(A_s), quadratic"),
    ("loglinear_log_attention", naive_loglinear_log_attention, 56, "raw exp(q) @ exp(k).T and linear-space decays"),
):
    register_formulation(Formulation(_op, "naive", "-", _fn, _desc, memory=_quadratic(_mem)))
register_formulation(
    Formulation(
        "log_attention",
        "paper",
        "-",
        paper_log_attention,
        "Heinsen (2024) published code: logcumsumexp over a (T, d_k, d_v) tensor (NumPy)",
        memory=lambda T, d, itemsize: 6 * T * d * d * itemsize,  # K + log V, its logcumsumexp, Q + H_S, exp temporaries
        skip=_paper_skip,
    )
)


def _lsattn_fn(op, backend):
    def fn(**inputs):
        import lsattn

        return getattr(lsattn, op)(**inputs, backend=backend)

    fn.__name__ = f"lsattn.{op}[{backend}]"
    return fn


def _sample(ns):
    """A small float32 array of namespace ``ns`` and its array-API namespace (for ``serves``)."""
    a = array_namespace_named(ns).zeros((1, 1))
    return array_api_compat.array_namespace(a), a


def _backend_problem(op, backend, ns):
    """Why lsattn ``backend`` cannot compute ``op`` on arrays of namespace ``ns`` (None if it can)."""
    b = backends.get(backend)
    ok, reason = b.status()
    if not ok:
        return f"backend {backend} not available: {reason}"
    if op not in b.ops:
        return f"backend {backend} does not implement {op}"
    if ns is not None:
        why = b.serves(*_sample(ns))
        if why is not None:
            return f"backend {backend} cannot compute on {ns} arrays: {why}"
    return None


def _lsattn_skip(op, backend):
    def skip(ns, dtype):
        import lsattn

        if not hasattr(lsattn, op):
            return f"lsattn.{op} is not in this version of lsattn"
        return _backend_problem(op, backend, ns)

    return skip


def formulations(op, *, backends_=None, names=None, namespace="numpy"):
    """The formulations audited for ``op``: lsattn on each backend, then the comparison ones.

    Parameters
    ----------
    op : str
        Operator name (a key of :data:`OPS`).
    backends_ : list of str, optional
        lsattn backend names; default every available backend that implements ``op`` and
        computes on ``namespace`` arrays (named ones that cannot give records skipped with the reason).
    names : list of str, optional
        Formulation names to keep (``"lsattn"``, ``"naive"``, ``"paper"``, ...); default all.
    namespace : str, default "numpy"
        Name of the array namespace the sweep computes on.
    """
    if backends_ is None:
        backends_ = [n for n, *_ in backends.available() if _backend_problem(op, n, namespace) is None] or ["array_api"]
    out = [Formulation(op, "lsattn", b, _lsattn_fn(op, b), f"lsattn.{op}, backend={b}", skip=_lsattn_skip(op, b)) for b in backends_]
    out += COMPARISONS.get(op, [])
    return [f for f in out if names is None or f.name in names]


# ---------------------------------------------------------------------------------------------
# Oracles: lsattn.reference up to FULL_REFERENCE_T, float64 row oracles beyond
# ---------------------------------------------------------------------------------------------

#: Up to this length the whole output is compared with ``lsattn.reference`` (quadratic memory);
#: beyond, a fixed set of query rows (:func:`audit_rows`) with the row oracles below.
FULL_REFERENCE_T = 512


def audit_rows(T):
    """Query rows compared at length ``T`` (None: all): the first and last rows, Fenwick
    boundaries ``2^j - 1`` and ``2^j``, and evenly spaced rows."""
    if T <= FULL_REFERENCE_T:
        return None
    rows = set(range(4)) | set(range(T - 16, T)) | set(np.linspace(0, T - 1, 17).astype(int).tolist())
    rows |= {p for j in range(T.bit_length()) for p in (2**j - 1, 2**j) if p < T}
    return np.array(sorted(rows))


def _rows_exp_kernel(op):
    def rows_oracle(x, rows):
        vname = "log_v" if op == "log_attention" else "v"
        ref = getattr(reference, op)
        out = [ref(x["q"][..., t : t + 1, :], x["k"][..., : t + 1, :], x[vname][..., : t + 1, :], causal=False) for t in rows]
        return np.concatenate([to_float64(o) for o in out], axis=-2)

    return rows_oracle


def _take_levels(w, t, lev):
    """``w[..., t, lev]``: (..., T, L), int, (n,) -> (..., n)"""
    return np.take(w[..., t, :], lev, axis=-1)


def _suffix_decay(a, t):
    """``D[..., s] = a_{s+1} + ... + a_t`` for ``s = 0..t``, summed from ``t`` backwards.

    Not ``A_t - A_s`` of global cumulative sums: those carry an absolute error ``~|A_t| eps`` in
    the exponent (``1e-12`` relative once ``|A_t| ~ 1e4`` in float64); a suffix sum is exact to
    ``~|D| eps``, and only ``|D| < 745`` matters in float64."""
    tail = np.cumsum(a[..., t:0:-1], axis=-1)[..., ::-1]  # sums a_{s+1..t} for s = 0..t-1
    return np.concatenate([tail, np.zeros(a.shape[:-1] + (1,))], axis=-1)


def _rows_loglinear(x, rows):
    out = []
    for t in rows:
        s = np.arange(t + 1)
        coef = _take_levels(x["level_weights"], t, fenwick_level(np.int64(t), s)) * np.exp(_suffix_decay(x["log_decay"], t))
        qk = np.einsum("...d,...sd->...s", x["q"][..., t, :], x["k"][..., : t + 1, :])
        out.append(np.einsum("...s,...sd->...d", coef * qk, x["v"][..., : t + 1, :]))
    return np.stack(out, axis=-2)


def _rows_hierarchical(x, rows):
    a = x.get("log_decay")
    out = []
    for t in rows:
        s = np.arange(t + 1)
        logw = _np_logsumexp(x["q"][..., t, None, :] + x["k"][..., : t + 1, :], axis=-1)
        logw = logw + _take_levels(x["log_level_weights"], t, fenwick_level(np.int64(t), s))
        if a is not None:
            logw = logw + _suffix_decay(a, t)
        num = _np_logsumexp(logw[..., :, None] + x["log_v"][..., : t + 1, :], axis=-2)
        out.append(num - _np_logsumexp(logw, axis=-1)[..., None])
    return np.stack(out, axis=-2)


def _rows_gated_delta(x, rows):
    """Rows of the gated delta rule by one backward sweep over keys shared by all rows:
    ``r_t = A_{s+1} ... A_t q_t`` (each ``A`` symmetric), ``o_t += lambda beta_s (r_t . k_s) v_s``."""
    q, k, v, a, beta, lam = (x[n] for n in ("q", "k", "v", "log_decay", "beta", "level_weights"))
    rows = np.sort(np.asarray(rows))
    S = int(rows[-1]) + 1
    # W[..., n, s] = lambda[rows[n], level(rows[n], s)] for s <= rows[n], else 0
    lev = _bit_length(np.bitwise_xor(rows[:, None], np.arange(S)[None, :]))
    W = np.take_along_axis(lam[..., rows, :], np.broadcast_to(lev, lam.shape[:-2] + lev.shape), axis=-1)
    W = np.where(rows[:, None] >= np.arange(S)[None, :], W, 0.0)
    r = q[..., rows, :].copy()  # (..., n, d_k)
    G = np.zeros(q.shape[:-2] + (len(rows), S))  # G[..., n, s] = beta_s r . k_s
    ea = np.exp(a)
    for s in range(S - 1, -1, -1):
        i = int(np.searchsorted(rows, s))  # rows[i:] >= s are active
        ra, ks = r[..., i:, :], k[..., s, None, :]
        g = beta[..., s, None] * (ra @ k[..., s, :, None])[..., 0]
        G[..., i:, s] = g
        r[..., i:, :] = ea[..., s, None, None] * (ra - g[..., None] * ks)
    return (W * G) @ v[..., :S, :]


def _bit_length(x):
    """Elementwise ``int.bit_length`` of non-negative integers below 2^53 (exact: frexp)."""
    return np.frexp(x.astype(np.float64))[1]


ROW_ORACLES = {
    "log_attention": _rows_exp_kernel("log_attention"),
    "exp_kernel_attention": _rows_exp_kernel("exp_kernel_attention"),
    "loglinear_attention": _rows_loglinear,
    "loglinear_gated_delta": _rows_gated_delta,
    "loglinear_log_attention": _rows_hierarchical,
}


#: Operators whose ``lsattn.reference`` takes ``exp(A_t - A_s)`` from global cumulative sums, which
#: is off by ``~|A_t| eps`` relative: the audit uses its suffix-sum row oracles at every length.
SUFFIX_SUM_OPS = ("loglinear_attention", "loglinear_log_attention")


def oracle(op, inputs64, rows=None):
    """float64 NumPy output of ``op`` on float64 NumPy inputs, the listed query rows only (ascending;
    causal: row ``t`` reads keys ``0..t``) or all rows when ``rows`` is None: ``lsattn.reference``,
    except for :data:`SUFFIX_SUM_OPS` (row oracles, for every row)."""
    if rows is not None and np.any(np.diff(rows) <= 0):
        raise ValueError("rows must be strictly ascending")
    if rows is None and op in SUFFIX_SUM_OPS:
        return ROW_ORACLES[op](inputs64, np.arange(inputs64["q"].shape[-2]))
    if rows is None:
        return to_float64(getattr(reference, op)(**inputs64))
    return ROW_ORACLES[op](inputs64, rows)


# ---------------------------------------------------------------------------------------------
# The sweep
# ---------------------------------------------------------------------------------------------

#: Keys of every sweep record, in this order (stable: JSON consumers rely on it).
RECORD_KEYS = (
    "op",
    "formulation",
    "backend",
    "namespace",
    "dtype",
    "scale",
    "T",
    "max_abs_err",
    "max_rel_err",
    "normwise_rel_err",
    "err_in_eps",
    "nonfinite",
    "seconds",
    "skipped",
)

DEFAULT_SCALES = (1e-3, 1e-2, 1e-1, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1e3, 1e4)
DEFAULT_LENGTHS = (1, 64, 512, 4096, 65536)
QUICK_SCALES = (1e-3, 1e-1, 1.0, 10.0, 30.0, 100.0, 1e3, 1e4)
QUICK_LENGTHS = (16, 256)
NAMESPACES = ("numpy", "torch", "jax", "array_api_strict", "cupy")


def array_namespace_named(name):
    """The array namespace called ``name`` (one of :data:`NAMESPACES`); JAX gets float64 enabled."""
    if name == "numpy":
        import array_api_compat.numpy as xp
    elif name == "torch":
        import array_api_compat.torch as xp
    elif name == "cupy":
        import array_api_compat.cupy as xp
    elif name == "jax":
        import jax

        jax.config.update("jax_enable_x64", True)
        import jax.numpy as xp
    elif name == "array_api_strict":
        import array_api_strict as xp
    else:
        raise ValueError(f"unknown namespace {name!r}; choose from {NAMESPACES}")
    return xp


def _cast(xp, x64, dtype):
    return {n: xp.astype(xp.asarray(a), dtype) for n, a in x64.items()}


def _sync(out):
    """Wait for asynchronous frameworks (JAX) so the time is the computation's."""
    wait = getattr(_first_output(out), "block_until_ready", None)
    if wait is not None:
        wait()
    return out


def _itemsize(dtype):
    return {"float16": 2, "bfloat16": 2, "float32": 4, "float64": 8}.get(dtype, 8)


def _jsonable(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


class _Case:
    """Inputs and (lazily) the oracle of one (op, T, scale, dtype)."""

    def __init__(self, xp, op, T, dtype, x64):
        self.x = _cast(xp, x64, getattr(xp, dtype))
        self.x64 = {n: to_float64(a) for n, a in self.x.items()}  # what the formulations see, exactly
        self.op, self.rows, self._ref = op, audit_rows(T), None

    def reference(self):
        if self._ref is None:
            self._ref = oracle(self.op, self.x64, self.rows)
        return self._ref


def _record(f, ns, dtype, scale, T):
    rec = dict.fromkeys(RECORD_KEYS)
    rec.update(op=f.op, formulation=f.name, backend=f.backend, namespace=ns, dtype=dtype, scale=float(scale), T=int(T))
    return rec


def _skip_reason(f, ns, dtype, T, d, batch_elems, budget):
    reason = f.skip(ns, dtype) if f.skip is not None else None
    if reason is None and f.memory is not None:
        need = f.memory(T, d, _itemsize(dtype)) * batch_elems
        if need > budget:
            reason = f"exceeds the memory budget (needs ~{need / 2**20:.0f} MiB > {budget / 2**20:.0f} MiB)"
    return reason


def _measure(f, case, dtype):
    """``(figures, nonfinite, seconds)`` of one formulation on one case."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # overflow is what the audit measures
        t0 = time.perf_counter()
        out = _first_output(_sync(f.fn(**case.x)))
        seconds = time.perf_counter() - t0
    o = to_float64(out)
    nonfinite = int((~np.isfinite(o)).sum())
    if case.rows is not None:
        o = o[..., case.rows, :]
    fig = figures(o, case.reference(), eps=EPS.get(dtype_name(out), EPS.get(dtype)))
    if nonfinite and fig.finite:  # non-finite outside the audited rows: every true output is finite
        fig = Comparison(*(math.inf,) * 4, fig.nan_count, fig.inf_count, nonfinite, fig.size, fig.dtype)
    return fig, nonfinite, seconds


def _warm_up(f, xp, dtype, batch, d, seed):
    """One tiny call first, so JIT compilation and caches are not what is timed."""
    try:
        with np.errstate(all="ignore"):
            _sync(f.fn(**_cast(xp, make_inputs(f.op, 2, 1.0, batch=batch, d=d, seed=seed), dtype)))
    except Exception:
        pass  # the real call reports the error


def _as_list(v, default):
    return list(default) if v is None else list(v)


def sweep(
    ops=None,
    dtypes=None,
    scales=None,
    lengths=None,
    backends=None,
    formulation_names=None,
    *,
    namespace="numpy",
    batch=(2,),
    d=16,
    seed=0,
    memory_budget=256 * 2**20,
    progress=None,
):
    """Audit operators x formulations x dtypes x scales x lengths; one record per case.

    Parameters
    ----------
    ops : operator names (default all of :data:`OPS`).
    dtypes : dtype names (default :data:`DTYPES` that ``namespace`` has; named ones it lacks give
        skipped records).
    scales, lengths : input magnitudes (see :data:`OPS`) and sequence lengths ``T``
        (default :data:`DEFAULT_SCALES`, :data:`DEFAULT_LENGTHS`).
    backends : lsattn backend names (default every available one implementing the operator).
    formulation_names : keep only these formulations (``"lsattn"``, ``"naive"``, ``"paper"``, ...).
    namespace : array namespace of the inputs, one of :data:`NAMESPACES`.
    batch, d : batch shape and head size (``d_k = d_v = d``) of the inputs.
    seed : base seed; the inputs of a case depend only on (seed, op, T, scale).
    memory_budget : bytes; formulations whose intermediates would exceed it are skipped (recorded).
    progress : optional ``progress(done, total, label)`` called before each case.

    Returns
    -------
    list of dict with keys :data:`RECORD_KEYS`. ``skipped`` is None for a case that ran, else the
    reason (then every figure is None). Error figures are ``inf`` when the output is not finite
    where the reference is (``nonfinite`` counts the output's NaN and infinite entries). For
    ``T > FULL_REFERENCE_T`` the errors are taken over the rows of :func:`audit_rows`.
    """
    xp = array_namespace_named(namespace)
    ops = _as_list(ops, OPS)
    named_dtypes = dtypes is not None
    dtypes = [dt for dt in _as_list(dtypes, DTYPES) if named_dtypes or getattr(xp, dt, None) is not None]
    scales, lengths = [float(s) for s in _as_list(scales, DEFAULT_SCALES)], [int(T) for T in _as_list(lengths, DEFAULT_LENGTHS)]
    forms = {op: formulations(op, backends_=backends, names=formulation_names, namespace=namespace) for op in ops}
    total = sum(len(forms[op]) for op in ops) * len(dtypes) * len(scales) * len(lengths)
    batch_elems, records, warmed = math.prod(batch), [], set()
    for op in ops:
        for T in lengths:
            for scale in scales:
                x64 = make_inputs(op, T, scale, batch=batch, d=d, seed=seed)
                for dtype in dtypes:
                    case = _Case(xp, op, T, dtype, x64) if getattr(xp, dtype, None) is not None else None
                    for f in forms[op]:
                        if progress is not None:
                            progress(len(records), total, f"{op} {f.name}[{f.backend}] {dtype} scale={scale:g} T={T}")
                        rec = _record(f, namespace, dtype, scale, T)
                        records.append(rec)
                        if case is None:
                            rec["skipped"] = f"namespace {namespace} has no {dtype}"
                            continue
                        reason = _skip_reason(f, namespace, dtype, T, d, batch_elems, memory_budget)
                        if reason is not None:
                            rec["skipped"] = reason
                            continue
                        if (f.op, f.name, f.backend, dtype) not in warmed:
                            _warm_up(f, xp, getattr(xp, dtype), batch, d, seed)
                            warmed.add((f.op, f.name, f.backend, dtype))
                        try:
                            fig, nonfinite, seconds = _measure(f, case, dtype)
                        except Exception as exc:  # recorded and shown in the table, never hidden
                            rec["skipped"] = f"error: {type(exc).__name__}: {exc}"[:300]
                            continue
                        rec.update(
                            max_abs_err=fig.max_abs_err,
                            max_rel_err=fig.max_rel_err,
                            normwise_rel_err=fig.normwise_rel_err,
                            err_in_eps=fig.err_in_eps,
                            nonfinite=nonfinite,
                            seconds=seconds,
                        )
    if progress is not None:
        progress(len(records), total, "done")
    return records


# ---------------------------------------------------------------------------------------------
# Reporting: table, JSON, figure
# ---------------------------------------------------------------------------------------------


def _format_table(rows, header):
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([line.format(*header), line.format(*("-" * w for w in widths))] + [line.format(*r) for r in rows])


def _groups(records):
    groups = {}
    for r in records:
        groups.setdefault((r["op"], r["formulation"], r["backend"], r["dtype"]), []).append(r)
    return groups


def _broken(r):
    return r["skipped"] is None and (r["nonfinite"] or not math.isfinite(r["normwise_rel_err"] if r["normwise_rel_err"] is not None else math.inf))


def table(records):
    """A readable summary, one row per (op, formulation, backend, dtype): the worst normwise
    relative error over the cases with finite output (and where), the first scale at which the
    output is not finite, and counts. Skip reasons follow the table."""
    rows = []
    for (op, form, backend, dtype), recs in _groups(records).items():
        ran = [r for r in recs if r["skipped"] is None]
        ok = [r for r in ran if not _broken(r)]
        broken = sorted(r["scale"] for r in ran if _broken(r))
        worst = max(ok, key=lambda r: r["normwise_rel_err"], default=None)
        rows.append(
            (
                op,
                form,
                backend,
                dtype,
                f"{len(ran)}/{len(recs)}",
                "-" if worst is None else f"{worst['normwise_rel_err']:.1e}",
                "-" if worst is None else f"{worst['err_in_eps']:.3g}",
                "-" if worst is None else f"scale={worst['scale']:g}, T={worst['T']}",
                f"{broken[0]:g}" if broken else "never",
                f"{len(broken)}",
            )
        )
    header = ("op", "formulation", "backend", "dtype", "ran", "worst rel err", "in eps", "worst at", "non-finite from scale", "non-finite cases")
    return _format_table(rows, header) + _skip_summary(records)


def _skip_summary(records):
    """Skipped cases grouped by formulation and reason (numbers in parentheses dropped)."""
    reasons = {}
    for r in records:
        if r["skipped"] is not None:
            key = (r["formulation"], r["backend"], r["skipped"].split(" (")[0])
            reasons.setdefault(key, []).append(r)
    lines = []
    for (form, backend, why), recs in reasons.items():
        lengths = ", ".join(str(T) for T in sorted({r["T"] for r in recs}))
        ops = ", ".join(dict.fromkeys(r["op"] for r in recs))
        lines.append(f"  {form} [{backend}]: {len(recs)} cases (T = {lengths}; {ops}): {why}")
    return "\n\nSkipped cases:\n" + "\n".join(lines) if lines else ""


def write_json(records, path):
    """Write the records as a JSON list (non-finite figures as null; see ``nonfinite``)."""
    with open(path, "w") as fh:
        json.dump([{k: _jsonable(r[k]) for k in RECORD_KEYS} for r in records], fh, indent=1)
        fh.write("\n")


#: Where non-finite cases are drawn in the figure (above every finite error).
_CEILING = 1e2
_FLOOR = 1e-17


def plot(records, path, *, dpi=80):
    """Save a figure of error against input magnitude: one panel per (op, dtype), one line per
    (formulation, backend); the worst normwise relative error over lengths at each scale,
    non-finite outputs drawn as crosses on the 'non-finite' line, the dtype's epsilon dotted.
    Needs matplotlib (``pip install 'lsattn[bench]'``)."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise RuntimeError("plotting needs matplotlib, which is not installed: pip install matplotlib (or 'lsattn[bench]')") from None
    ran = [r for r in records if r["skipped"] is None]
    ops = list(dict.fromkeys(r["op"] for r in ran))
    dtypes = [dt for dt in DTYPES if any(r["dtype"] == dt for r in ran)]
    lines = list(dict.fromkeys((r["formulation"], r["backend"]) for r in ran))
    fig = Figure(figsize=(2.6 * max(len(dtypes), 1) + 1.2, 1.9 * max(len(ops), 1) + 0.8), layout="constrained")
    axes = fig.subplots(max(len(ops), 1), max(len(dtypes), 1), squeeze=False, sharex=True, sharey=True)
    colors = {key: f"C{i}" for i, key in enumerate(lines)}
    for i, op in enumerate(ops):
        for j, dt in enumerate(dtypes):
            ax = axes[i][j]
            _panel(ax, [r for r in ran if r["op"] == op and r["dtype"] == dt], lines, colors)
            ax.axhline(EPS[dt], color="grey", lw=0.6, ls=":")
            ax.axhline(_CEILING, color="red", lw=0.5, ls="--")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_ylim(_FLOOR / 3, _CEILING * 30)
            if i == 0:
                ax.set_title(dt, fontsize=9)
            if j == 0:
                ax.set_ylabel(f"{op}\nrel. error", fontsize=7)
            if i == len(ops) - 1:
                ax.set_xlabel("input magnitude (scale)", fontsize=7)
            ax.tick_params(labelsize=6)
    handles = [axes[0][0].plot([], [], color=colors[key], marker="o", ms=3, label=f"{key[0]} [{key[1]}]" if key[1] != "-" else key[0])[0] for key in lines]
    handles.append(axes[0][0].plot([], [], color="red", marker="x", ls="--", lw=0.5, label="non-finite output")[0])
    handles.append(axes[0][0].plot([], [], color="grey", ls=":", lw=0.6, label="dtype epsilon")[0])
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 4), fontsize=7)
    fig.savefig(path, dpi=dpi)
    return path


def _panel(ax, recs, lines, colors):
    for key in lines:
        pts = {}
        for r in recs:
            if (r["formulation"], r["backend"]) == key:
                err = math.inf if _broken(r) else r["normwise_rel_err"]
                pts[r["scale"]] = max(pts.get(r["scale"], 0.0), err)
        if not pts:
            continue
        xs = sorted(pts)
        ys = [_CEILING if math.isinf(pts[s]) else max(pts[s], _FLOOR) for s in xs]
        ax.plot(xs, ys, color=colors[key], marker="o", ms=2.5, lw=1)
        bad = [s for s in xs if math.isinf(pts[s])]
        ax.plot(bad, [_CEILING] * len(bad), color="red", marker="x", ls="none", ms=5)


# ---------------------------------------------------------------------------------------------
# The `lsattn audit` command
# ---------------------------------------------------------------------------------------------


class ProgressBar:
    """``[#####.....] done/total label`` rewritten in place on stderr (with ``\\r``)."""

    def __init__(self, stream=None, width=30):
        self.stream, self.width = stream or sys.stderr, width

    def __call__(self, done, total, label):
        filled = self.width * done // max(total, 1)
        self.stream.write(f"\r[{'#' * filled}{'.' * (self.width - filled)}] {done}/{total} {label[:60]:<60}")
        if done >= total:
            self.stream.write("\n")
        self.stream.flush()


def _split_list(values, cast=str):
    if values is None:
        return None
    return [cast(x) for v in values for x in str(v).split(",") if x.strip()]


def add_parser(subparsers):
    """Add the ``audit`` subcommand to an argparse sub-parser set (used by lsattn.cli)."""
    p = subparsers.add_parser(
        "audit",
        help="numerical stability audit of every formulation against float64",
        description="Error of lsattn's formulations and of naive/published ones against float64 references, "
        "over dtypes, input magnitudes and lengths. Lists take commas or spaces.",
    )
    p.add_argument("--ops", nargs="+", help=f"operators (default all: {', '.join(OPS)})")
    p.add_argument("--dtypes", nargs="+", help="dtypes (default float16, bfloat16, float32, float64 where the namespace has them)")
    p.add_argument("--scales", nargs="+", help=f"input magnitudes (default {', '.join(f'{s:g}' for s in DEFAULT_SCALES)})")
    p.add_argument("--lengths", nargs="+", help=f"sequence lengths T (default {', '.join(map(str, DEFAULT_LENGTHS))})")
    p.add_argument("--backends", nargs="+", help="lsattn backends (default every available one)")
    p.add_argument("--formulations", nargs="+", help="formulations to audit: lsattn, naive, paper (default all)")
    p.add_argument("--namespace", default="numpy", choices=NAMESPACES, help="array library of the inputs (default numpy)")
    p.add_argument("--json", metavar="PATH", help="write one JSON record per case")
    p.add_argument("--plot", metavar="PATH", help="save a figure of error against magnitude (needs matplotlib)")
    p.add_argument("--quick", action="store_true", help=f"small sweep: scales {', '.join(f'{s:g}' for s in QUICK_SCALES)}, lengths {', '.join(map(str, QUICK_LENGTHS))}")
    p.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    p.add_argument("--memory-budget", type=float, default=256, metavar="MIB", help="skip formulations needing more (default 256 MiB)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run)
    return p


def run(args):
    """Run the audit described by parsed ``args``; print the table; write JSON / figure."""
    scales = _split_list(args.scales, float) or (QUICK_SCALES if args.quick else None)
    lengths = _split_list(args.lengths, int) or (QUICK_LENGTHS if args.quick else None)
    progress = ProgressBar() if (not args.quiet and sys.stderr.isatty()) else None
    t0 = time.perf_counter()
    records = sweep(
        _split_list(args.ops),
        _split_list(args.dtypes),
        scales,
        lengths,
        _split_list(args.backends),
        _split_list(args.formulations),
        namespace=args.namespace,
        seed=args.seed,
        memory_budget=args.memory_budget * 2**20,
        progress=progress,
    )
    print(f"lsattn audit on {args.namespace}: {len(records)} cases in {time.perf_counter() - t0:.1f} s "
          "(error: max |out - ref| / max |ref| against float64)")
    print(table(records))
    if args.json:
        write_json(records, args.json)
        print(f"wrote {args.json}")
    if args.plot:
        plot(records, args.plot)
        print(f"wrote {args.plot}")
    return 0


def main(argv=None):
    """``lsattn.audit.main(["--quick", ...])``: the same as ``lsattn audit --quick ...``."""
    import argparse

    parser = argparse.ArgumentParser(prog="lsattn")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["audit"] + list(sys.argv[1:] if argv is None else argv))
    return args.run(args)

