"""Numba CPU backend (``backend="numba"``): fused per-token scans for NumPy arrays.

The wrappers below implement exactly the signatures of the array-API twins registered in
``_builtin.ARRAY_API_OPS`` and consume / produce the same ``State`` tensors (same names, layout
and meaning), so a stream started on one backend continues on another. The kernels are in
``_numba_kernels`` (compiled once, cached on disk with ``cache=True``); this module imports no
Numba, so the registry can probe and describe the backend without loading it.

Algorithms (per batch element, one ``prange`` iteration each). Inputs, outputs and states stay in
the compute dtype (float32 or float64; no copies); the kernels widen every element they read and
keep all working state in float64, since float32 accumulators drift over long sequences:

- exp-kernel attention: the causal prefix summary ``(m, n, S, z)`` held in local arrays and
  updated token by token (a new per-feature key maximum rescales its row by ``exp(m_old - m_new)
  <= 1``; a new per-column value maximum rescales its column), then read by the token's query
  with the row shift ``max_i (q_i + m_i)``. ``O(d_k d_v)`` per token, no chunks. Non-causal calls
  summarise all keys once and read them.
- log-linear Mamba-2 / Gated DeltaNet: the Fenwick slots ``(L, d_k, d_v)`` with lazy decay (each
  slot relative to its newest token plus one log-decay scalar); Mamba-2 runs aligned blocks of
  ``_numba_kernels.BLOCK`` tokens at once, Gated DeltaNet applies its projection to every occupied
  slot each token. ``O(popcount(t) d_k d_v)`` per token at most.
- hierarchical exp-kernel attention: one exp-kernel summary per Fenwick slot (lazy decay as a
  key shift), reads combined in log space, Fenwick merge.

Causal exp-kernel calls of at least ``EK_CHUNKED_MIN_T`` tokens and log-linear Mamba-2 / Gated
DeltaNet calls of at least ``LL_CHUNKED_MIN_T[op]`` run the chunked kernels of ``_numba_chunked`` and
``_numba_ll_chunked``,
hierarchical calls of at least ``HIER_CHUNKED_MIN_T`` the one of ``_numba_hier_chunked``
(small matrix products per chunk through BLAS; they need SciPy), shorter ones (decoding) the
token-by-token scans above. ``chunk_size`` forces the chunked kernel with that chunk size for the
exp-kernel operators and is ignored by the others; ``kernel_chunk`` does so for the log-linear and
hierarchical ones (results do not depend on either).
"""
from __future__ import annotations

import importlib.util
import math

import numpy as np

from .._prologue import distinct_rows
from ..exp_kernel import _minus_inf
from ..state import State

__all__ = ["OPS", "probe", "serves", "warm"]

_K = "lsattn.backends.numba_cpu"

#: operators this backend implements -> "module:function"
OPS = {
    "log_attention": f"{_K}:log_forward",
    "exp_kernel_attention": f"{_K}:exp_forward",
    "loglinear_attention": f"{_K}:loglinear_forward",
    "loglinear_gated_delta": f"{_K}:gated_delta_forward",
    "loglinear_log_attention": f"{_K}:hierarchical_forward",
}

#: every operator with ``cu_seqlens`` (``lsattn._varlen``: one call over the reset-separated
#: segments) and with broadcast batch views (``_inputs``: the kernels read shared rows, no copies)
VARLEN_OPS = BROADCAST_OPS = tuple(OPS)
#: operators whose implementation computes packed segments itself (``segments=``: one kernel launch
#: over every (batch element, segment) stream, each from its own incoming state): all of them
RESET_OPS = tuple(OPS)

_DTYPES = ("float16", "float32", "float64")


def probe():
    """None when Numba is installed, else the reason."""
    return None if importlib.util.find_spec("numba") is not None else "numba not installed"


def serves(xp, a):
    """None for NumPy float arrays (half precision is computed in float32), else the reason."""
    if type(a) is not np.ndarray:
        return f"{type(a).__module__}.{type(a).__name__} is not a NumPy array (the numba backend serves NumPy arrays)"
    if a.dtype.name not in _DTYPES:
        return f"dtype {a.dtype} is not float32 or float64"
    return None


def warm(dtypes=("float32", "float64")):
    """Compile every kernel of this backend for ``dtypes`` (float32 and float64), or load it from
    Numba's on-disk cache (``cache=True``: ``__pycache__`` beside ``_numba_kernels``, or
    ``$NUMBA_CACHE_DIR``). ``lsattn info --warm`` runs it, e.g. once when an image is built, so that
    no first call pays the compile; one process per dtype compiles both in parallel (the test
    suite's ``conftest.py``). Returns ``[(kernel, dtype, seconds)]``."""
    import time

    import lsattn

    if isinstance(dtypes, str) or not set(dtypes) <= {"float32", "float64"}:
        raise ValueError(f"warm: dtypes must name float32 and/or float64, got {dtypes!r}")
    rng = np.random.default_rng(0)
    rows = []
    for dt in dtypes:
        q, k, v, lam = (rng.standard_normal((1, 2, 2)).astype(dt) for _ in range(4))
        a = -rng.random((1, 2)).astype(dt)
        for kernel, call in (
            ("ek_causal", lambda: lsattn.log_attention(q, k, v, backend="numba")),
            ("ek_full", lambda: lsattn.exp_kernel_attention(q, k, v, causal=False, backend="numba")),
            ("loglinear_scan", lambda: lsattn.loglinear_attention(q, k, v, a, lam, backend="numba")),
            ("hier_scan", lambda: lsattn.loglinear_log_attention(q, k, v, lam, log_decay=a, backend="numba")),
            ("finite_check", lambda: _kernels().all_finite(q, False)),  # the prologue's, on large inputs
        ) + ((("ek_chunked", lambda: log_forward(q, k, v, True, None, False, chunk_size=1)),
              ("ll_chunked", lambda: gated_delta_forward(q, k, v, a, lam[..., 0], lam, 64, None, False, kernel_chunk=1)),
              ("hier_chunked", lambda: hierarchical_forward(q, k, v, lam, a, None, False, kernel_chunk=1)))
             if _has_blas() else ()):
            t0 = time.perf_counter()
            call()
            rows.append((kernel, dt, time.perf_counter() - t0))
    return rows


def _kernels():
    from . import _numba_kernels

    return _numba_kernels


def _flat(x, tail):
    """(..., *tail) -> read-only C-contiguous (B, *tail) in x's dtype; B = product of the leading axes
    (explicit, so that size-0 arrays, T = 0 or an empty batch, reshape too). A view when x is contiguous."""
    lead = x.shape[: x.ndim - tail]
    return _ro(np.ascontiguousarray(x.reshape((math.prod(lead),) + tuple(x.shape[x.ndim - tail:]))))


def _inputs(*xs):
    """A kernel's per-batch inputs ``(x, tail)`` (each ``(..., *tail)``, the same batch axes) as
    ``(bases, rows)``: ``bases[i]`` read-only C-contiguous ``(B_i, *tail)`` and ``rows`` ``(len(xs), B)``
    int64, batch element ``b`` of input ``i`` being ``bases[i][rows[i, b]]``. A broadcast input (stride
    0 along a stretched batch axis: q, k shared by grouped-query heads) keeps its distinct rows
    only: the kernels read shared rows, no broadcast copy is made (one specialisation for all)."""
    batch = xs[0][0].shape[: xs[0][0].ndim - xs[0][1]]
    rows = np.empty((len(xs), math.prod(batch)), np.int64)
    bases = []
    for i, (x, tail) in enumerate(xs):
        base, rows[i] = distinct_rows(x, tail)
        bases.append(_flat(base, tail))
    return bases, _ro(rows)


def _ro(x):
    """A read-only view of ``x``. Every array a kernel only reads is passed read-only, so each kernel
    compiles one specialisation per dtype: Numba types read-only arrays apart, and a read-only input
    (``np.broadcast_to``, a read-only memmap) would otherwise compile a second one."""
    v = x.view()
    v.flags.writeable = False
    return v


# ---- exp-kernel attention -----------------------------------------------------------------------

#: causal calls of at least this many tokens run chunked, shorter ones (decoding) token by token
EK_CHUNKED_MIN_T = 128

def log_forward(q, k, log_v, causal, state, return_state, *, chunk_size=None, segments=None, check=None):
    """Numba twin of ``lsattn.exp_kernel._log_forward`` (same arguments, result and state).

    segments: None, or the packed segments (``lsattn._varlen.Streams``, ``RESET_OPS``): each is its
    own stream, continuing the packed ``state`` (None: fresh streams); the returned state is packed
    too. One token-by-token scan over all (batch element, segment) streams, no chunks.
    check: the prologue's ``KernelCheck`` (``checks_inputs``; the inputs as they are, not checked):
    the chunked kernel counts the non-finite entries it reads (:meth:`~KernelCheck.found`); the other
    paths ask ``check.finite`` first. Non-finite inputs: ``(None, None)``, computed again sanitised."""
    return _ek(q, k, log_v, causal, state, return_state, True, chunk_size, segments, check)


def exp_forward(q, k, v, causal, state, return_state, *, chunk_size=None, segments=None, check=None):
    """Numba twin of ``lsattn.exp_kernel._exp_forward`` (same arguments, result and state;
    ``segments``, ``check``: as :func:`log_forward`)."""
    return _ek(q, k, v, causal, state, return_state, False, chunk_size, segments, check)


# the chunked kernel reads every input entry: it answers the prologue's non-finite check (no pass of its own)
log_forward.checks_inputs = exp_forward.checks_inputs = True


def _streams(segments, T, state):
    """``(seg, offs)``: the kernels' stream table, ``seg`` (N + 1,) token starts and ``offs`` (N,)
    incoming offsets, int64; one stream ``[0, T]`` at the state's offset when ``segments`` is None."""
    if segments is None:
        return _ro(np.array([0, T], np.int64)), _ro(np.array([0 if state is None else state.offset], np.int64))
    return _ro(np.ascontiguousarray(segments.starts, np.int64)), _ro(np.ascontiguousarray(segments.offsets, np.int64))


def _new_state(op, segments, seg, offs, batch, d_k, d_v, dt, tensors):
    """The State after the call: ``tensors`` (name -> ((B N, *tail) array, tail)) shaped as the
    batch axes (a packed state: followed by the N streams; offsets ``offs + n_i``)."""
    ends = offs + np.diff(seg)
    lead = batch if segments is None else batch + (len(offs),)
    offset = int(ends[0]) if segments is None else ends
    return State(op, offset, lead, d_k, d_v, dt, {name: t.reshape(lead + tail) for name, (t, tail) in tensors.items()})


def _chunked(name="_numba_chunked"):
    """A chunked-kernel module (``_numba_chunked``, ``_numba_ll_chunked``), imported on first use."""
    return importlib.import_module(f".{name}", __package__)


def _has_blas():
    """Whether Numba's ``np.dot`` can run (it calls SciPy's BLAS); without SciPy every call runs
    the token-by-token kernels."""
    return importlib.util.find_spec("scipy") is not None


def _ek(q, k, vals, causal, state, return_state, log_values, chunk_size, segments=None, check=None):
    K = _kernels()
    batch, Tq, d_k, d_v = tuple(q.shape[:-2]), q.shape[-2], q.shape[-1], vals.shape[-1]
    dt, lo = q.dtype, _minus_inf(np, q.dtype)
    (qf, kf, vf), rows = _inputs((q, 2), (k, 2), (vals, 2))
    B = rows.shape[1]
    out = np.empty((B, Tq, d_v), dt)
    if not causal:
        if check is not None and not check.finite:  # kernels that do not check: the prologue's pass first
            return None, None
        K.ek_full(qf, kf, vf, rows, log_values, lo, out)
        return out.reshape(batch + (Tq, d_v)), None
    seg, offs = _streams(segments, Tq, state)
    R = B * offs.shape[0]  # one state row per (batch element, stream)
    if state is None:
        m0, n0 = _ro(np.full((R, d_k), lo, dt)), _ro(np.full((R, d_v), lo, dt))
        S0, z0 = _ro(np.zeros((R, d_k, d_v), dt)), _ro(np.zeros((R, d_k), dt))
    else:
        t = state.tensors
        m0, S0, z0 = _flat(t["m"], 1), _flat(t["S"], 2), _flat(t["z"], 1)
        n0 = _flat(t["n"], 1) if log_values else _ro(np.full((R, d_v), lo, dt))
    m1, n1, S1, z1 = np.empty_like(m0), np.empty_like(n0), np.empty_like(S0), np.empty_like(z0)
    chunked = Tq >= offs.shape[0] * (chunk_size or EK_CHUNKED_MIN_T) and _has_blas()  # streams that long on average
    if check is not None and not chunked and not check.finite:
        return None, None
    if chunked:
        KC = _chunked()
        C = chunk_size or KC.chunk_for(d_k, d_v)
        bad = KC.ek_chunked(qf, kf, vf, rows, seg, m0, n0, S0, z0, log_values, lo, C, KC.parts(B), out, m1, n1, S1, z1)
        if check is not None:
            check.found(bad)
            if bad:
                return None, None
    else:
        K.ek_causal(qf, kf, vf, rows, seg, m0, n0, S0, z0, log_values, lo, out, m1, n1, S1, z1)
    out = out.reshape(batch + (Tq, d_v))
    if not return_state:
        return out, None
    tensors = {"m": (m1, (d_k,)), "S": (S1, (d_k, d_v)), "z": (z1, (d_k,))}
    if log_values:
        tensors["n"] = (n1, (d_v,))
    op = "log_attention" if log_values else "exp_kernel_attention"
    return out, _new_state(op, segments, seg, offs, batch, d_k, d_v, dt, tensors)


# ---- log-linear operators ------------------------------------------------------------------------

#: log-linear calls of at least this many tokens run chunked (``_numba_ll_chunked.ll_chunked``), shorter
#: ones token by token (crossover measured at d = 64, float32, B = 1 and 8; docs/backends.md)
LL_CHUNKED_MIN_T = {"loglinear_attention": 1024, "loglinear_gated_delta": 128}


def loglinear_forward(q, k, v, log_decay, level_weights, chunk_size, state, return_state, *, kernel_chunk=None,
                      segments=None):
    """Numba twin of ``lsattn.loglinear._forward`` (same arguments, result and state).
    ``kernel_chunk`` forces the chunked kernel with that chunk size (a power of two; tests);
    ``chunk_size`` (the array-API path's) is ignored; ``segments``: as :func:`log_forward` (the
    token-by-token scan, each stream at its own offset)."""
    return _loglinear("loglinear_attention", q, k, v, log_decay, None, level_weights, state, return_state,
                      kernel_chunk, segments)


def gated_delta_forward(q, k, v, log_decay, beta, level_weights, chunk_size, state, return_state, *,
                        kernel_chunk=None, segments=None):
    """Numba twin of ``lsattn.gated_delta._forward`` (same arguments, result and state);
    ``kernel_chunk``, ``segments`` as in :func:`loglinear_forward`."""
    return _loglinear("loglinear_gated_delta", q, k, v, log_decay, beta, level_weights, state, return_state,
                      kernel_chunk, segments)


def _loglinear(op, q, k, v, log_decay, beta, level_weights, state, return_state, kernel_chunk, segments):
    batch, T, d_k, d_v = tuple(q.shape[:-2]), q.shape[-2], q.shape[-1], v.shape[-1]
    dt = q.dtype
    if T == 0 and segments is None:
        out = np.zeros(batch + (0, d_v), dt)
        if not return_state:
            return out, None
        if state is None:
            state = State(op, 0, batch, d_k, d_v, dt, {"levels": np.zeros(batch + (0, d_k, d_v), dt)})
        return out, state
    K = _kernels()
    (qf, kf, vf, af, bf, lf), rows = _inputs((q, 2), (k, 2), (v, 2), (log_decay, 1),
                                             (log_decay if beta is None else beta, 1), (level_weights, 2))
    B = rows.shape[1]  # bf: unused when not gated
    seg, offs = _streams(segments, T, state)
    R = B * offs.shape[0]  # one state row per (batch element, stream)
    if state is None or not offs.any():
        lev0 = _ro(np.zeros((R, 0, d_k, d_v), dt))
    else:
        lev0 = _flat(state.tensors["levels"], 3)
    n_new = int(np.max(offs + np.diff(seg))).bit_length()
    lev1 = np.empty((R, n_new if return_state else 0, d_k, d_v), dt)
    out = np.empty((B, T, d_v), dt)
    if T >= offs.shape[0] * (kernel_chunk or LL_CHUNKED_MIN_T[op]) and _has_blas():  # streams that long on average
        KL = _chunked("_numba_ll_chunked")
        C = kernel_chunk or KL.ll_chunk_for(d_k, d_v)
        KL.ll_chunked(qf, kf, vf, af, bf, lf, rows, seg, offs, max(1, n_new), lev0, beta is not None, C,
                      _chunked().parts(B), out, lev1)
    else:
        K.loglinear_scan(qf, kf, vf, af, bf, lf, rows, seg, offs, max(1, n_new), lev0, beta is not None, out, lev1)
    out = out.reshape(batch + (T, d_v))
    if not return_state:
        return out, None
    return out, _new_state(op, segments, seg, offs, batch, d_k, d_v, dt, {"levels": (lev1, (n_new, d_k, d_v))})


# ---- hierarchical exp-kernel attention -------------------------------------------------------------

#: hierarchical calls of at least this many tokens run chunked (``_numba_hier_chunked``), shorter ones
#: token by token (crossover measured at d = 64, float32, B = 1 and 8; docs/backends.md)
HIER_CHUNKED_MIN_T = 64


def hierarchical_forward(q, k, log_v, log_level_weights, log_decay, state, return_state, *, chunk_size=None,
                         segments=None, kernel_chunk=None):
    """Numba twin of ``lsattn.hierarchical._forward`` (same arguments, result and state; ``segments``:
    as :func:`loglinear_forward`); ``kernel_chunk`` as in :func:`loglinear_forward` (``chunk_size``,
    the array-API path's, is ignored). Packed streams run the chunked kernel too when they are at
    least ``HIER_CHUNKED_MIN_T`` tokens long on average (one launch over all streams)."""
    op = "loglinear_log_attention"
    batch, T, d_k, d_v = tuple(q.shape[:-2]), q.shape[-2], q.shape[-1], log_v.shape[-1]
    dt, lo = q.dtype, _minus_inf(np, q.dtype)
    if T == 0 and segments is None:
        out = np.zeros(batch + (0, d_v), dt)
        if not return_state:
            return out, None
        if state is None:
            shapes = {"m": (d_k,), "n": (d_v,), "S": (d_k, d_v), "z": (d_k,)}
            state = State(op, 0, batch, d_k, d_v, dt, {name: np.zeros(batch + (0,) + sh, dt) for name, sh in shapes.items()})
        return out, state
    K = _kernels()
    a = np.broadcast_to(np.zeros((), dt), batch + (T,)) if log_decay is None else log_decay  # no decay: one row
    (qf, kf, vf, lf, af), rows = _inputs((q, 2), (k, 2), (log_v, 2), (log_level_weights, 2), (a, 1))
    B = rows.shape[1]
    seg, offs = _streams(segments, T, state)
    R = B * offs.shape[0]  # one state row per (batch element, stream)
    if state is None or not offs.any():
        m0, n0 = _ro(np.zeros((R, 0, d_k), dt)), _ro(np.zeros((R, 0, d_v), dt))
        S0, z0 = _ro(np.zeros((R, 0, d_k, d_v), dt)), _ro(np.zeros((R, 0, d_k), dt))
    else:
        t = state.tensors
        m0, n0, S0, z0 = _flat(t["m"], 2), _flat(t["n"], 2), _flat(t["S"], 3), _flat(t["z"], 2)
    n_end = int(np.max(offs + np.diff(seg))).bit_length()
    n_new = n_end if return_state else 0
    m1, n1 = np.empty((R, n_new, d_k), dt), np.empty((R, n_new, d_v), dt)
    S1, z1 = np.empty((R, n_new, d_k, d_v), dt), np.empty((R, n_new, d_k), dt)
    out = np.empty((B, T, d_v), dt)
    if T >= offs.shape[0] * (kernel_chunk or HIER_CHUNKED_MIN_T) and _has_blas():  # streams that long on average
        from . import _numba_hier_chunked as KH

        C, P = kernel_chunk or KH.chunk_for(d_k, d_v), _chunked().parts(B)
        args = (qf, kf, vf, lf, af, rows, seg, offs, max(1, n_end), m0, n0, S0, z0, lo, C, P, out, m1, n1, S1, z1)
        KH.hier_chunked(*args, KH.keep_scratch(B, T, int(offs[0]), C, d_k, d_v, dt, P if offs.shape[0] == 1 else 1))
    else:
        K.hier_scan(qf, kf, vf, lf, af, rows, seg, offs, max(1, n_end), m0, n0, S0, z0, lo, out, m1, n1, S1, z1)
    out = out.reshape(batch + (T, d_v))
    if not return_state:
        return out, None
    tensors = {"m": (m1, (n_new, d_k)), "n": (n1, (n_new, d_v)), "S": (S1, (n_new, d_k, d_v)), "z": (z1, (n_new, d_k))}
    return out, _new_state(op, segments, seg, offs, batch, d_k, d_v, dt, tensors)
