"""Log-linear Mamba-2 (Guo et al. 2025, "Log-Linear Attention"): chunkwise training form and
O(log T) streaming decode, on any array-API namespace.

    o_t = sum_{s <= t} lambda[t, level(t, s)] * exp(a_{s+1} + ... + a_t) * (q_t . k_s) * v_s

with Fenwick levels ``level(t, s)`` over absolute positions. With all level weights 1 this is
Mamba-2 / scalar-gated linear attention, computed by the same code.

Algorithm (one call over the absolute positions ``[p, p + T)``, ``p`` the state's offset):

1. *Aligned chunks.* Chunks of ``C`` tokens are aligned to absolute multiples of ``C`` and the
   call is zero-padded to whole chunks (``_chunktree.chunk_layout``); zero keys, values and
   decays add nothing, zero queries are dropped. ``C = min(chunk_size, 2^ceil(log2 T))``: short
   calls (decoding) use small chunks; the result does not depend on ``C``.
2. *Inside a chunk* the level of ``(t, s)`` is ``level(t mod C, s mod C)``, so the masked product
   ``(M * (Q K^T)) V`` with ``M[t, s] = lambda[t, level] * exp(A_t - A_s)`` (``A`` the chunk-local
   cumulative log decay, exponent taken of the difference under the causal mask) is one batched
   ``C x C`` product per chunk.
3. *Across chunks* the token level is ``log2 C + bit_length(chunk(t) XOR chunk(s))``. Each chunk is
   summarised by ``(g, H)``: its total log decay and ``H = sum_s exp(A_end - A_s) k_s v_s^T``;
   two adjacent stretches combine as ``(g_e + g_l, exp(g_l) H_e + H_l)``. The generic chunk tree
   (``_chunktree.tree_levels``) yields, per chunk level, each chunk's bucket summary and the log
   decay between the bucket and the chunk; a chunk's queries read it with one batched
   ``(C, d_k) @ (d_k, d_v)`` product weighted by ``lambda[t, log2 C + l] exp(decay to t)``.
4. *The incoming state* holds one ``d_k x d_v`` matrix per occupied Fenwick level of ``p``. Every
   key of the old bucket ``B_p^l`` sits at level ``max(l, bit_length(p XOR t))`` from a query
   ``t >= p``, so each old level is read with a per-token weight (``_chunktree.state_read_levels``).
5. *The new state* at ``p' = p + T``: old levels above ``h = bit_length(p XOR p')`` stay (decayed
   over the call), old levels below ``h`` fold into level ``h``, and each new level's tokens are
   one contiguous slice of the call (``_chunktree.state_merge_plan``).

Cost model (``n = ceil(T / C)`` chunks, ``L = num_levels(p + T)``):

- time ``O(T C (d_k + d_v))`` inside chunks, plus ``O(T d_k d_v)`` per chunk level for
  ``log2(n)`` levels (reads; the tree itself is ``O(n log n d_k d_v)``), plus
  ``O(T d_k d_v popcount(p))`` for the incoming state and ``O(T d_k d_v)`` for the new one:
  ``O(T C (d_k + d_v) + T d_k d_v log(T / C))`` for a call from offset 0, i.e. ``T log T``;
- memory ``O(T (C + d_k + d_v + L) + n d_k d_v)``: never ``T x T``, never ``T d_k d_v``;
- decoding (``T = 1``): ``O(log p d_k d_v)`` time and a state of ``bit_length(p)`` matrices.
"""
from __future__ import annotations

import functools
import math
import operator

import array_api_compat
import numpy as np

from ._chunktree import (_index, chunk_layout, from_chunks, segsum, state_merge_plan, state_read_levels, suffix_after, to_chunks,
                         tree_levels)
from ._prologue import Op, levels_state_shapes, run
from ._typing import Array
from ._validate import device_of
from .fenwick import level_matrix
from .state import State, static_offset

__all__ = ["loglinear_attention"]

OP = "loglinear_attention"
SPEC = Op(OP, (("q", "q"), ("k", "k"), ("v", "v"), ("log_decay", "tok"), ("level_weights", "lev")), levels_state_shapes,
          neg_inf=("log_decay",), value_state=("levels",))


def loglinear_attention(
    q: Array, k: Array, v: Array, log_decay: Array, level_weights: Array, *, chunk_size: int = 64,
    state: State | None = None, return_state: bool = False, cu_seqlens=None, backend: str | None = None,
) -> Array | tuple[Array, State]:
    """Log-linear Mamba-2: Fenwick-level-weighted, scalar-gated linear attention.

    ``o_t = sum_{s<=t} lambda[t, level(t,s)] exp(a_{s+1} + ... + a_t) (q_t . k_s) v_s`` over absolute
    positions (``t`` counts from the start of the stream). ``level_weights`` all 1 gives Mamba-2.

    Parameters
    ----------
    q, k : arrays (..., T, d_k)
    v : array (..., T, d_v)
    log_decay : array (..., T)
        ``a_t``, usually ``<= 0``.
    level_weights : array (..., T, L)
        ``lambda[t, l]``, any sign; ``L >= num_levels(offset + T)``, extra levels ignored.
    chunk_size : int, default 64
        Power of two; a speed knob only (results do not depend on it).
    state : State, optional
        From a previous call with ``return_state=True``: continue that stream.
    return_state : bool, default False
        Also return the state after these tokens.
    cu_seqlens : 1-D int array or sequence of ints, optional
        ``[0, n_1, n_1 + n_2, ..., T]``: packed segments along ``T``, each an independent stream
        (positions, Fenwick levels and decays restart; see ``docs/api.md``, "Packed sequences").
        With ``return_state=True`` the state holds one stream per segment (batch shape
        ``(..., N)``, ``offset`` an int array ``(N,)``); ``state=`` such a state continues each
        segment's stream.
    backend : str, optional
        Force a backend (see ``lsattn.backends``).

    Returns
    -------
    out : array (..., T, d_v)
        In the inputs' namespace, device and floating dtype (half precision: see ``docs/api.md``).
    state : State, only with ``return_state=True``
        ``tensors["levels"]``: ``(..., bit_length(offset), d_k, d_v)``; slot ``l - 1`` holds the
        bucket ``B_offset^l`` as ``sum_s exp(a_{s+1} + ... + a_{offset-1}) k_s v_s^T`` (zeros where
        bit ``l - 1`` of ``offset`` is clear). O(log T) memory.

    Cost: ``O(T C (d_k + d_v) + T d_k d_v log(T / C))`` time, ``O(T (C + d_k + d_v + L) + (T / C) d_k d_v)``
    memory; ``O(log T d_k d_v)`` per decoded token. See the module docstring.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> q, k, v = rng.standard_normal((3, 2, 100, 8))
    >>> a = -0.1 * rng.random((2, 100))
    >>> lam = rng.random((2, 100, lsattn.num_levels(100)))
    >>> o = lsattn.loglinear_attention(q, k, v, a, lam, chunk_size=16)
    >>> o.shape
    (2, 100, 8)
    >>> bool(np.allclose(o, lsattn.reference.loglinear_attention(q, k, v, a, lam)))
    True
    """
    return run(SPEC, (q, k, v, log_decay, level_weights), extra=(_check_chunk_size(chunk_size),), state=state,
               return_state=return_state, backend=backend, cu_seqlens=cu_seqlens)


def _check_chunk_size(chunk_size):
    if isinstance(chunk_size, (bool, np.bool_)):
        raise TypeError(f"chunk_size must be an int (a power of two), got {chunk_size!r}")
    try:
        c = operator.index(chunk_size)
    except TypeError:
        raise TypeError(f"chunk_size must be an int (a power of two), got {type(chunk_size).__name__}") from None
    if c < 1 or c & (c - 1):
        raise ValueError(f"chunk_size must be a power of two (1, 2, 4, ...), got {c}")
    return c


def _forward(q, k, v, log_decay, level_weights, chunk_size, state, return_state):
    """Array-API implementation of ``loglinear_attention`` (the signature every backend implements).

    Parameters
    ----------
    q, k : (..., T, d_k); v : (..., T, d_v); log_decay : (..., T); level_weights : (..., T, L)
        Validated, one namespace, in the compute dtype; ``L >= num_levels(offset + T)``.
    chunk_size : int
        Power of two.
    state : State or None
        Validated state of this operator (offset, ``tensors["levels"]``) or None (offset 0).
    return_state : bool

    Returns
    -------
    (out (..., T, d_v), State or None)
    """
    xp = _ns(q)
    if state is not None and static_offset(state.offset) is None:  # JAX tracer: branch-free per-token steps
        from ._steps import traced_levels

        return traced_levels(OP, q, k, v, log_decay, None, level_weights, state, return_state)
    p = 0 if state is None else state.offset
    old = None if (state is None or p == 0) else state.tensors["levels"]
    batch, T, d_k = tuple(q.shape[:-2]), q.shape[-2], q.shape[-1]
    d_v = v.shape[-1]
    if T == 0:
        out = xp.zeros(batch + (0, d_v), dtype=q.dtype, device=device_of(q))
        new = state if state is not None else _state(xp, 0, batch, d_k, d_v, q.dtype, None, q)
        return out, (new if return_state else None)

    # One batch axis inside: XLA (jax 0.10) miscompiles a take followed by a batched matmul under
    # jit when there are two or more batch axes; flattening them is free (a view) everywhere.
    B = math.prod(batch)
    q, k, v = (xp.reshape(x, (B,) + tuple(x.shape[-2:])) for x in (q, k, v))
    log_decay = xp.reshape(log_decay, (B, T))
    level_weights = xp.reshape(level_weights, (B,) + tuple(level_weights.shape[-2:]))
    if old is not None:
        old = xp.reshape(old, (B,) + tuple(old.shape[-3:]))

    C = min(chunk_size, 1 << (T - 1).bit_length())
    lay = chunk_layout(p, T, C)
    Qc, Kc, Vc = (to_chunks(xp, x, lay, -2) for x in (q, k, v))  # (B, n, C, d)
    lam_c = to_chunks(xp, level_weights, lay, -2)  # (B, n, C, L)
    a_c = to_chunks(xp, log_decay, lay, -1)  # (B, n, C)
    A = xp.cumulative_sum(a_c, axis=-1)  # (B, n, C) chunk-local, inclusive

    out = _intra_chunk(xp, Qc, Kc, Vc, a_c, lam_c)
    if lay.n_chunks > 1:
        out = out + _across_chunks(xp, Qc, Kc, Vc, a_c, A, lam_c, lay, 1)
    out = from_chunks(xp, out, lay, -2)  # (B, T, d_v)
    if old is not None:
        out = out + _read_state(xp, q, old, _call_cumsum(xp, A, lay), level_weights, p, C)
    out = xp.reshape(out, batch + (T, d_v))
    new = None
    if return_state:
        levels = _advance_state(xp, k, v, log_decay, old, p)
        levels = xp.reshape(levels, batch + tuple(levels.shape[-3:]))
        new = _state(xp, p + T, batch, d_k, d_v, q.dtype, levels, q)
    return out, new


def _ns(x):
    return array_api_compat.array_namespace(x)


def _state(xp, offset, batch, d_k, d_v, dtype, levels, like, op=OP):
    """The State of a log-linear operator (``op``): Fenwick ``levels`` (None: none yet)."""
    if levels is None:
        levels = xp.zeros(batch + (0, d_k, d_v), dtype=dtype, device=device_of(like))
    return State(op, offset, batch, d_k, d_v, dtype, {"levels": levels})


def _gather_last(xp, x, idx):
    """``out[..., i, j] = x[..., i, idx[i, j]]`` for a static (rows, cols) numpy ``idx``.

    x: (..., rows, L) -> (..., rows, cols), one ``take`` on the flattened last two axes."""
    rows, L = x.shape[-2], x.shape[-1]
    flat = (np.arange(rows)[:, None] * L + idx).reshape(-1)
    picked = xp.take(xp.reshape(x, x.shape[:-2] + (rows * L,)), _index(xp, flat, x), axis=-1)
    return xp.reshape(picked, x.shape[:-2] + idx.shape)


@functools.lru_cache(maxsize=32)
def _chunk_levels(C):
    lev = level_matrix(C)
    lev.setflags(write=False)
    return lev


def _intra_chunk(xp, Qc, Kc, Vc, a_c, lam_c):
    """``(M * (Q K^T)) V`` per chunk, ``M[t,s] = lambda[t, level(t mod C, s mod C)] exp(a_{s+1} + ... + a_t)``.

    (..., n, C, d_k), (..., n, C, d_k), (..., n, C, d_v), (..., n, C), (..., n, C, L) -> (..., n, C, d_v)"""
    C, L = a_c.shape[-1], lam_c.shape[-1]
    lev = _chunk_levels(C)  # (C, C), -1 above the diagonal; <= log2 C
    lam_ts = _gather_last(xp, lam_c, np.clip(lev, 0, L - 1))  # (..., n, C, C); L too small only for padding
    M = lam_ts * xp.exp(segsum(xp, a_c))  # exp(-inf) = 0 above the diagonal
    return (M * (Qc @ xp.matrix_transpose(Kc))) @ Vc


def _combine(earlier, later):
    """Summary of two adjacent stretches: total log decay, and ``H`` decayed to the later end."""
    (g_e, H_e), (g_l, H_l) = earlier, later
    xp = _ns(H_e)
    return (g_e + g_l, xp.exp(g_l)[..., None, None] * H_e + H_l)


def _across_chunks(xp, Qc, Kc, Vc, a_c, A, lam_c, lay, batch_ndim):
    """Contributions of earlier chunks of this call, through the chunk Fenwick tree: (..., n, C, d_v)."""
    g = A[..., -1]  # (..., n) total log decay of each chunk
    H = xp.matrix_transpose(Kc * xp.exp(suffix_after(xp, a_c))[..., None]) @ Vc  # (..., n, d_k, d_v)
    zero = xp.zeros((), dtype=A.dtype, device=device_of(A))
    out = None
    for lev in tree_levels(xp, (g, H), _combine, (zero, zero), first_chunk=lay.first_chunk, batch_ndim=batch_ndim):
        level = lay.log2_C + lev.level
        g_between = lev.prefix[0]  # (..., m) log decay from the bucket's end to the chunk's start
        w = lev.gather(lam_c[..., level]) * xp.exp(lev.gather(A) + g_between[..., None])  # (..., m, C)
        part = lev.expand((lev.gather(Qc) @ lev.bucket[1]) * w[..., None])
        out = part if out is None else out + part
    return out


def _call_cumsum(xp, A, lay):
    """``a_p + ... + a_t`` for every token of the call: chunk-local sums plus earlier chunks' totals.

    (..., n, C) -> (..., T)"""
    g = A[..., -1]
    before = xp.cumulative_sum(g, axis=-1, include_initial=True)[..., :-1]  # exclusive over chunks
    return from_chunks(xp, A + before[..., None], lay, -1)


def _read_state(xp, q, old, cum, level_weights, p, C):
    """Contribution of the incoming state's levels to the queries ``p ... p + T - 1``.

    q: (..., T, d_k), old: (..., n_old, d_k, d_v), cum: (..., T) -> (..., T, d_v)"""
    T = q.shape[-2]
    table = state_read_levels(p, T)  # (T, n_old): level of old bucket l seen from p + i
    w = _gather_last(xp, level_weights, table) * xp.exp(cum)[..., None]  # (..., T, n_old)
    occupied = [l for l in range(p.bit_length()) if (p >> l) & 1]
    if T <= C:  # short call (decoding): one batched product over all levels, (..., n_old, T, d_v) is small
        reads = q[..., None, :, :] @ old  # (..., n_old, T, d_v)
        return xp.sum(reads * xp.matrix_transpose(w)[..., None], axis=-3)
    out = None
    for j in occupied:
        part = (q @ old[..., j, :, :]) * w[..., j : j + 1]
        out = part if out is None else out + part
    return out


def _advance_state(xp, k, v, log_decay, old, p):
    """Levels of the state at ``p + T`` from the old levels and the call's tokens.

    k: (..., T, d_k), v: (..., T, d_v), log_decay: (..., T), old: (..., n_old, d_k, d_v) or None
    -> (..., bit_length(p + T), d_k, d_v)"""
    T = k.shape[-2]
    plan = state_merge_plan(p, T)
    batch, d_k, d_v = tuple(k.shape[:-2]), k.shape[-1], v.shape[-1]
    total = xp.sum(log_decay, axis=-1)  # log decay over the whole call
    kw = k * xp.exp(suffix_after(xp, log_decay))[..., None]  # k_s exp(a_{s+1} + ... + a_{T-1})
    new = {l: xp.matrix_transpose(kw[..., lo:hi, :]) @ v[..., lo:hi, :] for l, lo, hi in plan.slices}
    slots = []
    for l in range(1, plan.h + 1):
        slot = new.get(l)
        if l == plan.h and old is not None and plan.h > 1:  # old levels below h fold into level h
            folded = xp.sum(old[..., : min(plan.h - 1, plan.n_old), :, :], axis=-3) * xp.exp(total)[..., None, None]
            slot = folded if slot is None else slot + folded
        if slot is None:
            slot = xp.zeros(batch + (d_k, d_v), dtype=k.dtype, device=device_of(k))
        slots.append(slot)
    levels = xp.stack(slots, axis=-3)
    if old is not None and plan.n_old > plan.h:  # old levels above h stay, decayed over the call
        kept = old[..., plan.h :, :, :] * xp.exp(total)[..., None, None, None]
        levels = xp.concat([levels, kept], axis=-3)
    return levels
