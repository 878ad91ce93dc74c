"""Hierarchical exp-kernel attention (ours): softmax-normalised exp-kernel attention with the
Fenwick level weights of log-linear attention and an optional Mamba-style log decay.

    log w(t, s) = log_level_weights[t, level(t, s)] + (a_{s+1} + ... + a_t) + log sum_i exp(q_ti + k_si)
    y_t         = sum_{s <= t} w(t, s) v_s / sum_{s <= t} w(t, s)        (returned as log y from log v)

With zero log weights and no decay it is causal ``log_attention``. It is built from the stabilised
pieces of :mod:`lsattn.exp_kernel` (summaries ``(m, n, S, z)`` and partials ``(r, den, y)``) on the
chunk Fenwick tree of :mod:`lsattn._chunktree`. Two facts make weights and decay free:

- a partial's log-weight offset adds to its row shift: ``w -> w exp(c)`` is ``r -> r + c``;
- decaying a key by ``exp(d_s)`` is the key ``k_s + d_s`` (all features), so a group of keys decayed
  to its end is a summary of shifted keys, and a summary decayed by ``g`` is ``m -> m + g``.

Algorithm (one call over absolute positions ``[p, p + T)``, chunk size ``C``, a power of two):

1. Aligned chunks (``_chunktree.chunk_layout``); padded keys and values sit at the finite "minus
   infinity" of :mod:`lsattn.exp_kernel` (weight exactly 0), padded queries are dropped.
2. Diagonal: ``w(t, t)`` with ``r += log_level_weights[t, 0]``.
3. Inside chunks the tree of block reads of :mod:`lsattn.exp_kernel`: at block size ``h`` every
   pair read has Fenwick level ``log2(h) + 1``; the lower-half keys are decayed to the half's end
   (suffix sums inside the half) and the query's read gets ``r += log_level_weights[t, log2 h + 1]``
   plus the decay from the upper half's start to ``t``. Decay sums are taken inside the blocks, so
   their rounding is relative to the segment they stand for, never to a long cumulative sum.
4. Across chunks, summaries ``(g, m, n, S, z)`` (total log decay, keys decayed to the chunk's end),
   ``combine(earlier, later) = (g_e + g_l, merge(earlier with m + g_l, later))``, walked by
   ``_chunktree.tree_levels``; a chunk's queries read their bucket at level ``log2 C + l`` with
   ``r += log_level_weights[t, level] + (decay between bucket and chunk) + (decay in the chunk to t)``.
5. The incoming state holds one summary per Fenwick level of ``p`` (keys decayed to ``p - 1``);
   query ``t`` reads old level ``l`` at level ``max(l, bit_length(p XOR t))``
   (``_chunktree.state_read_levels``) with decay ``a_p + ... + a_t``. The new state follows
   ``_chunktree.state_merge_plan``.

Cost (``n = ceil(T / C)``): time ``O(T C (d_k + d_v) + T d_k d_v log(T / C))`` for a call from
offset 0, i.e. ``O(T log T)``; memory ``O(T (C + d_k + d_v + L) + n d_k d_v)``, never ``T x T`` or
``T d_k d_v``; decoding ``O(log p d_k d_v)`` per token with a state of ``bit_length(p)`` summaries.

Exactness: every shift is a maximum over keys the query may see, plus finite offsets; ``-inf``
level weights (a level switched off) and decays are clamped to finite stand-ins whose ``exp`` is
0, so no ``-inf - -inf`` arises. The underflow regime of ``log_v`` is that of ``log_attention``.
"""
from __future__ import annotations


import array_api_compat
import numpy as np

from ._chunktree import (chunk_layout, from_chunks, state_merge_plan, state_read_levels, suffix_after, to_chunks,
                         tree_levels)
from ._typing import Array
from ._validate import device_of
from .exp_kernel import (
    _check_chunk_size,
    _clamp_log_values,
    _finish,
    _minus_inf,
    _tree_level,
    combine,
    default_chunk_size,
    diagonal,
    empty_summary,
    merge,
    read,
    summarise,
)
from .loglinear import _gather_last
from ._prologue import Op, run
from .state import State, static_offset

__all__ = ["loglinear_log_attention"]

OP = "loglinear_log_attention"
SPEC = Op(OP, (("q", "q"), ("k", "k"), ("log_v", "v"), ("log_level_weights", "lev"), ("log_decay", "tok")),
          lambda batch, offset, d_k, d_v: _state_shapes(batch, offset.bit_length(), d_k, d_v),
          neg_inf=("q", "k", "log_v", "log_level_weights", "log_decay"), clamp=("q", "k"), value_state=("S", "n"),
          normalised=True)


def loglinear_log_attention(
    q: Array, k: Array, log_v: Array, log_level_weights: Array, *, log_decay: Array | None = None,
    state: State | None = None, return_state: bool = False, cu_seqlens=None, backend: str | None = None,
) -> Array | tuple[Array, State]:
    """Hierarchical exp-kernel attention: softmax over ``w(t,s) = lambda_t^level * decay * <exp q_t, exp k_s>``.

    ``log w(t,s) = log_level_weights[t, level(t,s)] + (a_{s+1} + ... + a_t) + log sum_i exp(q_ti + k_si)``,
    ``y_t = sum_{s<=t} w(t,s) v_s / sum_{s<=t} w(t,s)`` with ``v = exp(log_v)``; returns ``log y``.
    Zero log weights and no decay give causal :func:`lsattn.log_attention`.

    Parameters
    ----------
    q, k : arrays (..., T, d_k)
    log_v : array (..., T, d_v)
        Log of non-negative values; ``-inf`` (a zero value) is allowed.
    log_level_weights : array (..., T, L)
        Log weight of each Fenwick level per query, ``L >= num_levels(offset + T)`` (extra levels
        ignored); ``-inf`` switches a level off.
    log_decay : array (..., T), optional
        ``a_t`` (usually ``<= 0``); None: no decay.
    state, return_state, cu_seqlens, backend
        As in :func:`lsattn.loglinear_attention`.

    Returns
    -------
    log_y : array (..., T, d_v)
        In the inputs' namespace, device and floating dtype (half precision: see ``docs/api.md``).
        A query whose every readable level is switched off has no weight at all (0/0): its row is NaN.
    state : State, only with ``return_state=True``
        ``op="loglinear_log_attention"``; ``tensors``, one exp-kernel summary per Fenwick level of the
        offset ``p`` (slot ``l - 1`` is the bucket ``B_p^l``, keys decayed to ``p - 1``; empty slots
        have ``m = n = -finfo.max / 8``, ``S = z = 0``): ``m (..., n_l, d_k)``, ``n (..., n_l, d_v)``,
        ``S (..., n_l, d_k, d_v)``, ``z (..., n_l, d_k)`` with ``n_l = bit_length(p)``, standing for
        ``sum_s exp(k_si + decay_s) v_sj = exp(m_i + n_j) S_ij``, ``sum_s exp(k_si + decay_s) = exp(m_i) z_i``.

    Cost: as :func:`lsattn.loglinear_attention` (see the module docstring).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> q, k, log_v = rng.standard_normal((3, 2, 100, 8))
    >>> log_lam = rng.standard_normal((2, 100, lsattn.num_levels(100)))
    >>> a = -0.1 * rng.random((2, 100))
    >>> log_y = lsattn.loglinear_log_attention(q, k, log_v, log_lam, log_decay=a)
    >>> log_y.shape
    (2, 100, 8)
    >>> bool(np.allclose(log_y, lsattn.reference.loglinear_log_attention(q, k, log_v, log_lam, log_decay=a)))
    True
    """
    return run(SPEC, (q, k, log_v, log_level_weights, log_decay), state=state, return_state=return_state,
               backend=backend, cu_seqlens=cu_seqlens)


def _state_shapes(batch, n_l, d_k, d_v):
    return {"m": batch + (n_l, d_k), "n": batch + (n_l, d_v), "S": batch + (n_l, d_k, d_v), "z": batch + (n_l, d_k)}


# ---- array-API implementation (the signature every backend implements) ---------------------------

def _forward(q, k, log_v, log_level_weights, log_decay, state, return_state, *, chunk_size=None, partial=False):
    """Array-API implementation of ``loglinear_log_attention``.

    Parameters
    ----------
    q, k : (..., T, d_k); log_v : (..., T, d_v); log_level_weights : (..., T, L); log_decay : (..., T) or None
        Validated, one namespace, in the compute dtype; ``L >= num_levels(offset + T)``.
    state : State or None
        Validated state of this operator, or None (offset 0).
    return_state : bool
    chunk_size : int, optional
        Power of two; a speed knob only (results do not depend on it). None: the exp-kernel default.
    partial : bool
        Return the unfinished partial ``(r (..., T), den (..., T), y (..., T, d_v))`` of
        :mod:`lsattn.exp_kernel` instead of ``log_y`` (no state; ``lsattn._ll_packed`` adds the
        reads of packed streams' incoming states to it).

    Returns
    -------
    (log_y (..., T, d_v), State or None)
    """
    xp = array_api_compat.array_namespace(q)
    if state is not None and static_offset(state.offset) is None:  # JAX tracer: branch-free per-token steps
        from ._steps import traced_hierarchical

        return traced_hierarchical(q, k, log_v, log_level_weights, log_decay, state, return_state)
    p = 0 if state is None else state.offset
    batch, T, d_k, d_v = tuple(q.shape[:-2]), q.shape[-2], q.shape[-1], log_v.shape[-1]
    old = None if (state is None or p == 0) else _summary_of(state)
    if T == 0:
        out = xp.zeros(batch + (0, d_v), dtype=q.dtype, device=device_of(q))
        if not return_state:
            return out, None
        return out, state if state is not None else _make_state(xp, 0, batch, d_k, d_v, q.dtype, None, q)
    lo = _minus_inf(xp, q.dtype)
    like = lambda v: xp.asarray(v, dtype=q.dtype, device=device_of(q))
    log_v = _clamp_log_values(xp, log_v, True)
    lam = xp.maximum(log_level_weights, like(lo))  # -inf (level off) -> finite stand-in, exp -> 0
    if log_decay is None:
        a = xp.zeros(batch + (T,), dtype=q.dtype, device=device_of(q))
    else:  # any sum of up to T clamped decays stays above lo / 4: finite, and exp of it is 0
        a = xp.maximum(log_decay, like(lo / (4 * (p + T))))

    C = chunk_size if chunk_size is not None else default_chunk_size(d_k, d_v)
    C = min(_check_chunk_size(C), 1 << (T - 1).bit_length())
    lay = chunk_layout(p, T, C)
    n = lay.n_chunks
    valid = np.zeros(n * C, dtype=bool)
    valid[lay.pad_left : lay.pad_left + T] = True
    valid = xp.asarray(valid.reshape(n, C), device=device_of(q))
    Qc = to_chunks(xp, q, lay, -2)  # (..., n, C, d_k)
    Kc = xp.where(valid[..., None], to_chunks(xp, k, lay, -2), like(lo))  # padded keys: weight 0
    Vc = xp.where(valid[..., None], to_chunks(xp, log_v, lay, -2), like(lo))  # and no value shift
    lam_c = to_chunks(xp, lam, lay, -2)  # (..., n, C, L)
    a_c = to_chunks(xp, a, lay, -1)  # (..., n, C), zero decay on padding

    part = _in_chunks(xp, Qc, Kc, Vc, lam_c, a_c)  # partial over (..., n, C)
    A = xp.cumulative_sum(a_c, axis=-1)  # chunk-local inclusive: a_{chunk start} + ... + a_t
    if n > 1:
        part = _across_chunks(xp, part, Qc, Kc, Vc, lam_c, a_c, A, lay, len(batch))
    part = tuple(from_chunks(xp, x, lay, ax) for x, ax in zip(part, (-1, -1, -2)))  # over (..., T)
    if old is not None:
        part = _read_state(xp, part, q, old, lam, xp.cumulative_sum(a, axis=-1), p)
    if partial:
        return part, None
    out = _finish(xp, part, True)
    if not return_state:
        return out, None
    return out, _make_state(xp, p + T, batch, d_k, d_v, q.dtype, _advance_state(xp, k, log_v, a, old, p), q)


def _in_chunks(xp, Qc, Kc, Vc, lam_c, a_c):
    """Diagonal and the in-chunk tree with level weights and decay: partial over (..., n, C)."""
    n, C = a_c.shape[-2], a_c.shape[-1]
    flat = lambda x, tail: xp.reshape(x, x.shape[: x.ndim - 2 - tail] + (n * C,) + x.shape[x.ndim - tail :])
    q, k, v, lam, a = flat(Qc, 1), flat(Kc, 1), flat(Vc, 1), flat(lam_c, 1), flat(a_c, 0)
    r, den, y = diagonal(xp, q, k, v, True)
    part = (r + lam[..., 0], den, y)
    h, level = 1, 1
    while h < C:
        blocks = xp.reshape(a, a.shape[:-1] + (n * C // h, h))  # aligned blocks of h tokens
        key_shift = xp.reshape(suffix_after(xp, blocks), a.shape)  # to the end of the key's block
        row_shift = xp.reshape(xp.cumulative_sum(blocks, axis=-1), a.shape) + lam[..., level]
        part = _tree_level(xp, part, q, k, v, h, True, key_shift=key_shift, row_shift=row_shift)
        h, level = 2 * h, level + 1
    unflat = lambda x, tail: xp.reshape(x, x.shape[: x.ndim - 1 - tail] + (n, C) + x.shape[x.ndim - tail :])
    return unflat(part[0], 0), unflat(part[1], 0), unflat(part[2], 1)


def _shift(summ, g):
    """A summary ``(m, n, S, z)`` decayed by ``exp(g)`` (g (...,)): ``m -> m + g``."""
    m, n, S, z = summ
    return (m + g[..., None], n, S, z)


def _combine(earlier, later):
    """Two adjacent stretches ``(g, m, n, S, z)``: decay ``earlier``'s keys over ``later``, then merge."""
    xp = array_api_compat.array_namespace(later[3])
    g_l = later[0]
    return (earlier[0] + g_l,) + tuple(merge(xp, _shift(earlier[1:], g_l), later[1:]))


def _masked(xp, part, mask, lo):
    """A partial over (..., n, C) with the chunks outside ``mask`` (n,) reading nothing."""
    r, den, y = part
    keep = mask[:, None]
    return xp.where(keep, r, lo), xp.where(keep, den, 0.0 * den), xp.where(keep[..., None], y, lo)


def _across_chunks(xp, part, Qc, Kc, Vc, lam_c, a_c, A, lay, batch_ndim):
    """Add the reads of earlier chunks of this call through the chunk Fenwick tree."""
    g = A[..., -1]  # (..., n): total log decay of each chunk
    summ = (g,) + tuple(summarise(xp, Kc + suffix_after(xp, a_c)[..., None], Vc, True))  # keys decayed to the chunk end
    lo = xp.asarray(_minus_inf(xp, A.dtype), dtype=A.dtype, device=device_of(A))
    zero = xp.zeros((), dtype=A.dtype, device=device_of(A))
    identity = (zero, lo, lo, zero, zero)
    n = lay.n_chunks
    for lev in tree_levels(xp, summ, _combine, identity, first_chunk=lay.first_chunk, batch_ndim=batch_ndim):
        level = lay.log2_C + lev.level
        r, den, y = read(xp, lev.gather(Qc), lev.bucket[1:], True)  # (..., m, C)
        r = r + lev.gather(lam_c[..., level]) + lev.gather(A) + lev.prefix[0][..., None]
        mask = np.zeros(n, dtype=bool)
        mask[lev.chunks] = True
        seen = _masked(xp, (lev.expand(r), lev.expand(den), lev.expand(y)), xp.asarray(mask, device=device_of(A)), lo)
        part = combine(xp, part, seen, True)
    return part


def _read_state(xp, part, q, old, lam, cum, p):
    """Add the reads of the incoming state's levels: partial over (..., T); cum = a_p + ... + a_t."""
    table = state_read_levels(p, q.shape[-2])  # (T, n_old): level of old bucket l seen from p + i
    w = _gather_last(xp, lam, table) + cum[..., None]  # (..., T, n_old)
    m, n, S, z = old
    for j in range(p.bit_length()):
        if (p >> j) & 1:
            r, den, y = read(xp, q, (m[..., j, :], n[..., j, :], S[..., j, :, :], z[..., j, :]), True)
            part = combine(xp, part, (r + w[..., j], den, y), True)
    return part


def _advance_state(xp, k, log_v, a, old, p):
    """Summaries of the Fenwick levels of ``p + T`` (keys decayed to ``p + T - 1``): a tuple
    ``(m, n, S, z)`` stacked on a level axis (..., bit_length(p + T), ...)."""
    T = k.shape[-2]
    plan = state_merge_plan(p, T)
    batch, d_k, d_v = tuple(k.shape[:-2]), k.shape[-1], log_v.shape[-1]
    total = xp.sum(a, axis=-1)  # log decay over the call
    kd = k + suffix_after(xp, a)[..., None]  # keys decayed to the call's last token
    slot = {l: summarise(xp, kd[..., lo:hi, :], log_v[..., lo:hi, :], True) for l, lo, hi in plan.slices}
    empty = lambda: empty_summary(xp, batch, d_k, d_v, k.dtype, True, k)
    level_of = lambda summ, j: tuple(x[(..., j) + (slice(None),) * t] for x, t in zip(summ, (1, 1, 2, 1)))
    slots = []
    for l in range(1, plan.h + 1):
        s = slot.get(l, None)
        if l == plan.h and old is not None:  # old levels below h fold into level h
            for j in range(min(plan.h - 1, plan.n_old)):
                if (p >> j) & 1:
                    moved = _shift(level_of(old, j), total)
                    s = moved if s is None else merge(xp, moved, s)
        slots.append(s if s is not None else empty())
    for j in range(plan.h, plan.n_old):  # old levels above h stay, decayed over the call
        slots.append(_shift(level_of(old, j), total))
    lo = xp.asarray(_minus_inf(xp, k.dtype), dtype=k.dtype, device=device_of(k))
    stacked = [xp.stack(list(xs), axis=-1 - t) for xs, t in zip(zip(*slots), (1, 1, 2, 1))]
    stacked[0] = xp.maximum(stacked[0], lo)  # decays never push a shift past the stand-in
    return tuple(stacked)


def _summary_of(state):
    t = state.tensors
    return t["m"], t["n"], t["S"], t["z"]


def _make_state(xp, offset, batch, d_k, d_v, dtype, levels, like):
    if levels is None:
        dev = device_of(like)
        levels = tuple(xp.zeros(sh, dtype=dtype, device=dev) for sh in _state_shapes(batch, 0, d_k, d_v).values())
        tensors = dict(zip(("m", "n", "S", "z"), levels))
    else:
        tensors = dict(zip(("m", "n", "S", "z"), levels))
    return State(OP, offset, batch, d_k, d_v, dtype, tensors)
