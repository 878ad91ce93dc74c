"""The formulations audited: lsattn on each backend, and the comparison formulations that live
only here, never in the operator modules (the naive unstabilised forms, Heinsen (2024)'s published
log-attention code); :class:`Formulation`, :func:`register_formulation`, :func:`formulations`.

Shapes: ``q, k: (..., T, d_k)``, ``v, log_v: (..., T, d_v)``, ``log_decay, beta: (..., T)``,
``level_weights, log_level_weights: (..., T, L)``; every form returns ``(..., T, d_v)``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import array_api_compat
import numpy as np

from .. import backends
from ..fenwick import level_matrix, num_levels
from ..reference import _to_numpy
from ._inputs import OPS, array_namespace_named


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
    Q, K, LV = (_to_numpy(x) for x in (q, k, log_v))
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
