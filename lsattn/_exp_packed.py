"""Packed segments (``cu_seqlens``) of the exp-kernel operators on the array-API path: one call.

``log_attention`` / ``exp_kernel_attention`` with ``segments=`` (``lsattn._varlen.Streams``) run the
chunked algorithm of :mod:`lsattn.exp_kernel` once over the packed tokens, with masks that keep
every read inside its segment (the operators have no positions and no decay, so nothing else
changes); each segment continues its own stream (the packed ``state``, batch axes then ``N``, or a
fresh one) and the returned state holds one stream per segment. Host index arithmetic only
(NumPy, from the offsets); the arrays see ``where``, ``take`` and the products of one ordinary call.

With ``first[t]`` the packed position of the first token of ``t``'s segment (non-decreasing):

1. *Tree inside chunks* (``exp_kernel._tree_level``): the upper half of a block of ``2h`` tokens
   (from ``u``) reads the keys ``s >= first[u]`` of its lower half, and only its queries with
   ``first[t] < u`` read them (all of ``u``'s segment: one key set, one shift, taken over those keys
   only, as in a per-segment call).
2. *Across chunks*: chunk ``c``'s summary holds the keys of its last token's segment only, and, when
   that segment starts inside the chunk (a *reset*), its stream's incoming state merged in front.
   A segmented prefix scan (``(f_a, A) + (f_b, B) = (f_a | f_b, B if f_b else A + B)``, associative)
   then gives before chunk ``c`` the summary of the running segment, which a query reads when its
   segment started before the chunk (``first[t] < cC``).
3. A query whose segment starts in its own chunk reads its stream's incoming state directly: at
   most ``C`` queries per segment, gathered as ``(segments, C')`` (no padding to the longest).
4. The state of a segment at its last token: the summary before that token's chunk (or its
   incoming state), merged with the chunk's keys of that segment.

The cost is that of one ordinary call on the packed length (masks are ``where`` on the ``C x C``
blocks and on the chunk summaries), plus ``O(N C d)`` for steps 3 and 4.
"""
from __future__ import annotations

import math

import numpy as np

from . import _upload
from . import exp_kernel as E
from .state import State

__all__ = ["forward"]


def forward(xp, q, k, vals, state, return_state, log_values, C, segments):
    """``exp_kernel._forward`` over packed ``segments`` (causal). q, k (..., T, d_k); vals
    (..., T, d_v); state: None or the packed State (batch axes then N). Returns ``(out (..., T, d_v),
    packed State or None)``."""
    starts, offsets = segments.starts, segments.offsets
    batch, T, d_k, d_v = tuple(q.shape[:-2]), q.shape[-2], q.shape[-1], vals.shape[-1]
    lens = np.diff(starts)
    N = lens.shape[0]
    sid = np.repeat(np.arange(N), lens)  # (T,) segment of each token
    first = starts[:-1][sid]  # (T,) packed position of its segment's first token
    init = None if state is None else E._summary_of(state, log_values)  # (..., N, ...)
    carry = E.empty_summary(xp, batch, d_k, d_v, q.dtype, log_values, q)
    ends = starts[1:] - 1  # the last token of each segment
    outs, done, finals = [], [], []
    L = stretch_tokens(q, batch, C, d_v)
    for s0 in range(0, T, L):
        s1 = min(s0 + L, T)
        mine = np.nonzero((lens > 0) & (ends >= s0) & (ends < s1) & return_state)[0]  # the segments ending here
        piece = [x[..., s0:s1, :] for x in (q, k, vals)]
        out, carry, fin = _stretch(xp, *piece, carry, init, first[s0:s1] - s0, sid[s0:s1], mine,
                                   first[ends[mine]] - s0, ends[mine] - s0, log_values, C)
        outs.append(out)
        if fin is not None:
            done.append(mine)
            finals.append(fin)
    out = E._join_tokens(xp, outs, q, d_v)
    if not return_state:
        return out, None
    empty = np.nonzero(lens == 0)[0]  # their streams as they came
    if empty.size:
        done.append(empty)
        finals.append(_take(xp, init, empty, q) if init is not None else
                      E.empty_summary(xp, batch + (empty.size,), d_k, d_v, q.dtype, log_values, q))
    order = np.argsort(np.concatenate(done), kind="stable")
    summ = _take(xp, E._concat_summaries(xp, finals), order, q)  # (..., N, ...) in segment order
    op = E.LOG_OP if log_values else E.EXP_OP
    m, n, S, z = summ
    tensors = {"m": m, "S": S, "z": z} if n is None else {"m": m, "S": S, "z": z, "n": n}
    return out, State(op, offsets + lens, batch + (N,), d_k, d_v, q.dtype, tensors)


_TAILS = E._SUMMARY_TAILS

#: working memory of one stretch on an accelerator: each ``(chunk, C, C)`` intermediate
#: (``prod(batch) L C`` float32 entries) and each set of chunk summaries (``prod(batch) L / C d_k d_v``)
#: at most this many bytes
STRETCH_BYTES = 1 << 28


def stretch_tokens(q, batch, C, d_v):
    """Tokens per stretch: ``exp_kernel.SEGMENT_CHUNKS`` chunks on a CPU (cache-sized working
    memory); on an accelerator as many as ``STRETCH_BYTES`` allows (at least that): each stretch
    costs ~100 array operations of host work whatever its length, so the 16 stretches of a 64K
    packed call were host-bound there (issue 19: 145-206 ms against 2-3 ms for one kernel call)."""
    L = E.SEGMENT_CHUNKS * C
    if on_cpu(q):
        return L
    B = 4 * max(1, math.prod(batch))
    fit = min(STRETCH_BYTES // (B * C), STRETCH_BYTES * C // (B * q.shape[-1] * max(d_v, 1)))
    return max(L, fit // C * C)


def on_cpu(x):
    """Whether the array ``x`` lives in host memory (NumPy, torch / JAX on the CPU, array-api-strict)."""
    try:
        return "cpu" in str(E.device_of(x)).lower()
    except Exception:
        return True


def _stretch(xp, q, k, vals, carry, init, first, sid, mine, mine_first, mine_end, log_values, C):
    """Tokens ``0 .. T - 1`` of a stretch (``exp_kernel._segment`` with the masks of the module
    docstring) after the running segment's summary ``carry``; ``first``, ``sid`` (T,) host, relative
    to the stretch; ``mine``: the segments whose last token ``mine_end`` is here (their first at
    ``mine_first``). Returns ``(out (..., T, d_v), the running summary after it, the states of
    ``mine`` stacked on an axis)``."""
    T = q.shape[-2]
    lo = E._minus_inf(xp, q.dtype)
    vals = E._clamp_log_values(xp, vals, log_values)
    C = min(C, 1 << (T - 1).bit_length())
    n = -(-T // C)
    pad = n * C - T
    qp, kp = E._pad_tokens(xp, q, pad, 0.0), E._pad_tokens(xp, k, pad, lo)
    vp = E._pad_tokens(xp, vals, pad, lo if log_values else 0.0)
    first = np.concatenate([first, np.full(pad, first[-1])])  # padded tokens: the last segment's
    sid = np.concatenate([sid, np.full(pad, sid[-1])])
    pos = np.arange(n * C)
    cstart = pos // C * C

    part = E.diagonal(xp, qp, kp, vp, log_values)
    h = 1
    while h < C:
        u = pos // (2 * h) * (2 * h) + h  # the first token of each block's upper half
        masks = (_mask(xp, pos >= first[u], q), _mask(xp, first < u, q))
        part = E._tree_level(xp, part, qp, kp, vp, h, log_values, masks=masks)
        h *= 2

    last = first[C - 1::C]  # (n,) each chunk's last segment; reset: it starts inside the chunk
    reset = last >= pos[::C]
    chunks = E.summarise(xp, E._split(xp, kp, n, C), E._split(xp, vp, n, C), log_values,
                         mask=_mask(xp, (pos >= last[pos // C]).reshape(n, C), q))
    if init is not None:  # a stream's incoming state in front of its keys
        chunks = _where(xp, reset, E.merge(xp, _take(xp, init, sid[C - 1::C], q), chunks), chunks, q)
    prefix = _segmented_scan(xp, E._concat_summaries(xp, [E._expand_summary(carry), chunks]),
                             np.concatenate([[False], reset]), q)  # (..., n + 1, ...)
    seen = E.read(xp, E._split(xp, qp, n, C), E._summary_slice(prefix, 0, n), log_values)
    before = first < cstart  # the query's segment started before its chunk: it reads the prefix
    seen = (E._none_read(xp, _mask(xp, before.reshape(n, C), q), seen[0]),) + tuple(seen[1:])
    part = E.combine(xp, part, E._flatten_partial(xp, seen), log_values)
    if init is not None:
        part = _read_incoming(xp, part, qp, init, first, sid, ~before & (pos < T), log_values)
    out = E._finish(xp, part, log_values)
    new = E._summary_slice(prefix, n, n + 1, keep=False)
    return (out[..., :T, :] if pad else out), new, _states(xp, kp, vp, prefix, init, mine, mine_first, mine_end,
                                                            C, log_values, q)


def _read_incoming(xp, part, qp, init, first, sid, own, log_values):
    """``part`` plus, for the queries ``own`` (bool (T',): their segment starts in their chunk), the
    read of their stream's incoming state: gathered as (segments, C') queries, read, taken back."""
    t = np.nonzero(own)[0]
    if t.size == 0:
        return part
    segs, row = np.unique(sid[t], return_inverse=True)
    j = t - first[t]  # < C: the query's place in its segment
    Cq = int(j.max()) + 1
    idx = np.zeros((segs.size, Cq), np.int64)
    idx[row, j] = t
    qg = xp.take(qp, _index(xp, idx.reshape(-1), qp), axis=qp.ndim - 2)
    qg = xp.reshape(qg, qg.shape[:-2] + (segs.size, Cq, qg.shape[-1]))
    got = E._flatten_partial(xp, E.read(xp, qg, _take(xp, init, segs, qp), log_values))  # over (..., segs Cq)
    back = np.zeros(own.shape[0], np.int64)
    back[t] = row * Cq + j
    bi = _index(xp, back, qp)
    r, den, y = (xp.take(x, bi, axis=x.ndim - 1 - tail) for x, tail in zip(got, (0, 0, 1)))
    return E.combine(xp, part, (E._none_read(xp, _mask(xp, own, qp), r), den, y), log_values)


def _states(xp, kp, vp, prefix, init, mine, mine_first, mine_end, C, log_values, like):
    """The streams' summaries after the segments ``mine`` (last token ``mine_end``, first
    ``mine_first``, relative): the summary before that token's chunk (its incoming state when the
    segment starts inside the chunk) merged with the chunk's keys of the segment; None: none end here."""
    if mine.size == 0:
        return None
    c = mine_end // C
    pos = c[:, None] * C + np.arange(C)[None, :]  # (M, C): the tokens of each one's last chunk
    keys = [xp.take(x, _index(xp, pos.reshape(-1), like), axis=x.ndim - 2) for x in (kp, vp)]
    keys = [xp.reshape(x, x.shape[:-2] + (mine.size, C, x.shape[-1])) for x in keys]
    mask = (pos >= mine_first[:, None]) & (pos <= mine_end[:, None])
    tail = E.summarise(xp, *keys, log_values, mask=_mask(xp, mask, like))
    head = _take(xp, prefix, c, like)
    inside = mine_first >= c * C
    if init is not None:
        head = _where(xp, inside, _take(xp, init, mine, like), head, like)
    else:
        empty = E.empty_summary(xp, (), tail[2].shape[-2], tail[2].shape[-1], tail[2].dtype, log_values, like)
        head = _where(xp, inside, empty, head, like)
    return E.merge(xp, head, tail)


def _segmented_scan(xp, summ, reset, like):
    """Inclusive segmented prefix merge along the chunk axis (``exp_kernel.scan`` with resets: an
    item with ``reset`` (host bool (n,)) drops everything before it), log-depth."""
    N = summ[2].shape[-3]
    empty = E.empty_summary(xp, (), summ[2].shape[-2], summ[2].shape[-1], summ[2].dtype, summ[1] is not None, like)
    step = 1
    while step < N:
        left = _where(xp, reset[step:], empty, E._summary_slice(summ, 0, N - step), like)
        merged = E.merge(xp, left, E._summary_slice(summ, step, N))
        summ = E._concat_summaries(xp, [E._summary_slice(summ, 0, step), merged])
        reset = np.concatenate([reset[:step], reset[:N - step] | reset[step:]])
        step *= 2
    return summ


def _where(xp, pick, a, b, like):
    """Summaries ``a`` where ``pick`` (host bool (n,), along the chunk axis), else ``b``."""
    m = _mask(xp, pick, like)
    return tuple(None if y is None else xp.where(m[(...,) + (None,) * t], x, y) for x, y, t in zip(a, b, _TAILS))


def _take(xp, summ, idx, like):
    """Summaries ``summ`` (an axis before their tails) at the positions ``idx`` (host int (M,))."""
    i = _index(xp, idx, like)
    return tuple(None if x is None else xp.take(x, i, axis=x.ndim - 1 - t) for x, t in zip(summ, _TAILS))


_index, _mask = _upload.index, _upload.mask

