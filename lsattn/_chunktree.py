"""The Fenwick tree over aligned chunks: the cross-chunk machinery shared by the log-linear operators.

Positions are absolute. A call that sees the tokens ``[p, p + T)`` with chunk size ``C`` (a power
of two) works on the absolute chunks ``c0 = p // C ... c1 = (p + T - 1) // C``, zero-padded at both
ends (:class:`ChunkLayout`, :func:`to_chunks`, :func:`from_chunks`). Zero keys and values carry
nothing, zero queries read nothing and are dropped, so the padding never changes a result.

For tokens ``t, s`` in different chunks,
``level(t, s) = log2(C) + bit_length((t // C) XOR (s // C))``: the keys a query sees at token level
``log2(C) + l`` (``l >= 1``, the *chunk level*) are the chunks of the Fenwick bucket of its chunk
index at level ``l`` (the same for every query of the chunk). An operator describes each chunk by a
tuple of *summary* arrays and says how two adjacent stretches of tokens combine,
``combine(earlier, later)`` (associative, with an identity). :func:`tree_levels` then yields, one
chunk level at a time, every chunk that has a non-empty bucket at that level together with

- ``bucket``: the summary of that bucket (its chunks ``>= c0``; earlier chunks hold no tokens of
  this call), and
- ``prefix``: the summary of the chunks strictly between the bucket's end and the chunk (the
  identity when they touch), which is what carries the bucket forward to the chunk's start.

For log-linear Mamba-2 a summary is ``(g, H)`` (total log decay, decayed ``sum k v^T``), for
Gated DeltaNet ``(P, H)`` with a ``d_k x d_k`` transition ``P``: the operator reads a level as
``q_t^T (carry from chunk start to t) (carry of prefix) H_bucket`` with its own level weights.

Cost: with ``n`` chunks, level ``l`` combines ``n / 2^l`` block pairs and gathers at most ``n``
bucket and prefix summaries, so all ``O(log n)`` levels together take ``O(n log n)`` combines and
``O(n)`` summaries of memory per level (``(T / C) d_k d_v`` for Mamba-2), never ``T x T`` or
``T d_k d_v``. Python loops run over levels only.

Streaming states hold one summary per occupied Fenwick level of the offset ``p`` (the bucket
``B_p^l``, as if ``p`` were the next query). :func:`state_read_levels` and
:func:`state_merge_plan` are the integer bookkeeping of reading such a state from later queries and
of advancing it to ``p + T``; both rest on one fact: for a query ``t >= p`` every key of an old
bucket ``B_p^l`` sits at the same level ``max(l, bit_length(p XOR t))``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np

from . import _upload
from ._validate import device_of
from .fenwick import _bit_length

__all__ = [
    "ChunkLayout",
    "chunk_layout",
    "to_chunks",
    "from_chunks",
    "TreeLevel",
    "tree_levels",
    "state_read_levels",
    "MergePlan",
    "state_merge_plan",
    "segsum",
    "suffix_after",
]


# ---- aligned chunks ---------------------------------------------------------------------------

@dataclass(frozen=True)
class ChunkLayout:
    """Where the tokens ``[offset, offset + T)`` sit in absolute chunks of ``C`` tokens.

    Attributes
    ----------
    offset, T, C : int
        First absolute position, number of tokens, chunk size (a power of two).
    first_chunk : int
        Absolute index ``offset // C`` of the first chunk.
    n_chunks : int
        Number of chunks covering the tokens.
    pad_left, pad_right : int
        Zero tokens added before (``offset mod C``) and after (up to a multiple of ``C``).
    """

    offset: int
    T: int
    C: int
    first_chunk: int
    n_chunks: int
    pad_left: int
    pad_right: int

    @property
    def log2_C(self):
        return self.C.bit_length() - 1


def chunk_layout(offset, T, C):
    """The :class:`ChunkLayout` of ``T >= 1`` tokens starting at absolute ``offset``, chunk size ``C``."""
    if C < 1 or C & (C - 1):
        raise ValueError(f"chunk_size must be a power of two, got {C}")
    if T < 1:
        raise ValueError(f"need at least one token, got T = {T}")
    first, last = offset // C, (offset + T - 1) // C
    pad_left = offset - first * C
    return ChunkLayout(offset, T, C, first, last - first + 1, pad_left, (last + 1) * C - (offset + T))


def _pad_axis(xp, x, axis, before, after):
    """Zero-pad ``x`` along ``axis`` (negative) by ``before`` and ``after`` entries."""
    if before == 0 and after == 0:
        return x
    parts = []
    for count in (before, after):
        shape = list(x.shape)
        shape[axis] = count
        parts.append(xp.zeros(tuple(shape), dtype=x.dtype, device=device_of(x)) if count else None)
    return xp.concat([p for p in (parts[0], x, parts[1]) if p is not None], axis=axis)


def to_chunks(xp, x, layout, axis):
    """Pad the token axis ``axis`` (negative: ``-2`` for ``(..., T, d)``, ``-1`` for ``(..., T)``)
    with zeros to whole aligned chunks and split it: ``(..., T, *rest) -> (..., n_chunks, C, *rest)``."""
    x = _pad_axis(xp, x, axis, layout.pad_left, layout.pad_right)
    ax = x.ndim + axis
    return xp.reshape(x, x.shape[:ax] + (layout.n_chunks, layout.C) + x.shape[ax + 1 :])


def from_chunks(xp, x, layout, axis):
    """Inverse of :func:`to_chunks`: ``(..., n_chunks, C, *rest) -> (..., T, *rest)``, padding dropped.

    ``axis`` is the token axis of the *result* (negative), as passed to :func:`to_chunks`."""
    ax = x.ndim - 1 + axis  # position of the chunk axis
    x = xp.reshape(x, x.shape[:ax] + (layout.n_chunks * layout.C,) + x.shape[ax + 2 :])
    if layout.pad_left == 0 and layout.pad_right == 0:
        return x
    index = (slice(None),) * ax + (slice(layout.pad_left, layout.pad_left + layout.T), ...)
    return x[index]


# ---- log-decay sums -------------------------------------------------------------------------
#
# A decay over a stretch is always summed over that stretch, never taken as the difference of two
# cumulative sums: the rounding of ``A_t - A_s`` grows with every decay before ``s`` (one decay of
# -1e6 early on costs float32 0.06 on every later pair), and ``-inf - -inf`` (a hard reset) is NaN.

def segsum(xp, a):
    """``D[..., t, s] = a_{s+1} + ... + a_t`` for ``s <= t`` (summed over that stretch), ``-inf`` for ``s > t``.

    (..., C) -> (..., C, C); ``O(C^2)`` work and memory, like the masked ``C x C`` products it feeds."""
    C = a.shape[-1]
    dev = device_of(a)
    after = xp.asarray(np.tri(C, C, -1, dtype=bool), device=dev)  # [r, s]: r > s
    causal = xp.asarray(np.tri(C, C, 0, dtype=bool), device=dev)  # [t, s]: s <= t
    zero = xp.zeros((), dtype=a.dtype, device=dev)
    terms = xp.where(after, a[..., :, None], zero)  # [r, s] = a_r for r > s
    return xp.where(causal, xp.cumulative_sum(terms, axis=-2), xp.asarray(-math.inf, dtype=a.dtype, device=dev))


def suffix_after(xp, a):
    """``a_{s+1} + ... + a_{end}`` along the last axis (summed from the end). (..., N) -> (..., N)"""
    incl = xp.flip(xp.cumulative_sum(xp.flip(a, axis=-1), axis=-1), axis=-1)
    return xp.concat([incl[..., 1:], xp.zeros_like(incl[..., :1])], axis=-1)


# ---- the tree over chunk indices --------------------------------------------------------------

def _index(xp, idx, like):
    """A 1-D integer index array (``int32``: every namespace's ``take`` accepts it) on ``like``'s device."""
    return _upload.index(xp, idx, like, np.int32)


def _take(xp, x, idx, axis):
    return xp.take(x, _index(xp, idx, x), axis=axis)


def _every_other(x, axis, start):
    """``x[..., start::2, ...]`` along ``axis``."""
    return x[(slice(None),) * axis + (slice(start, None, 2), ...)]


@dataclass
class TreeLevel:
    """The reads of one chunk level, produced by :func:`tree_levels`.

    Attributes
    ----------
    level : int
        Chunk level ``l >= 1``; the token level of these reads is ``log2(C) + l``.
    chunks : numpy int array (m,)
        The chunks (relative: ``0 <= j < n``, absolute ``first_chunk + j``), ascending, whose
        bucket at this level is non-empty within this call; ``m >= 1``.
    bucket : tuple of arrays (*batch, m, *event_i)
        For each of them, the summary of its bucket: the chunks ``c'`` with
        ``bit_length(c XOR c') == level``, i.e. the aligned block of ``2^(level-1)`` chunks
        ending where the chunk's own block at this level starts.
    prefix : tuple of arrays (*batch, m, *event_i)
        The summary of the chunks from the bucket's end up to the chunk, exclusive (the
        identity for the first chunk of a block).
    """

    level: int
    chunks: np.ndarray
    bucket: tuple
    prefix: tuple
    n_chunks: int
    _xp: object = field(repr=False)
    _axis: int = field(repr=False)

    def gather(self, x):
        """``x[..., chunks, ...]``: ``(*batch, n, ...) -> (*batch, m, ...)`` (chunk axis after the batch)."""
        return _take(self._xp, x, self.chunks, self._axis)

    def expand(self, x):
        """Inverse of :meth:`gather` with zeros elsewhere: ``(*batch, m, ...) -> (*batch, n, ...)``."""
        xp, ax = self._xp, self._axis
        if len(self.chunks) == self.n_chunks:
            return x
        zero_shape = x.shape[:ax] + (1,) + x.shape[ax + 1 :]
        padded = xp.concat([xp.zeros(zero_shape, dtype=x.dtype, device=device_of(x)), x], axis=ax)
        where = np.zeros(self.n_chunks, dtype=np.int64)
        where[self.chunks] = np.arange(1, len(self.chunks) + 1)
        return _take(xp, padded, where, ax)


def tree_levels(
    xp,
    summaries: tuple,
    combine: Callable[[tuple, tuple], tuple],
    identity: tuple,
    *,
    first_chunk: int,
    batch_ndim: int,
) -> Iterator[TreeLevel]:
    """Walk the Fenwick tree over the chunks ``first_chunk ... first_chunk + n - 1``, level by level.

    Parameters
    ----------
    xp : array namespace
    summaries : tuple of arrays, each (*batch, n, *event_i)
        Per-chunk summaries in chunk order; the chunk axis is axis ``batch_ndim``.
    combine : callable (earlier, later) -> tuple
        Summary of two adjacent stretches of chunks, ``earlier`` before ``later``; both are tuples
        shaped like ``summaries`` with any number of chunks on the chunk axis, combined chunk by
        chunk. Must be associative; need not be commutative.
    identity : tuple of arrays, each broadcastable to (*batch, 1, *event_i)
        The summary of no tokens: ``combine(identity, x) == combine(x, identity) == x`` (exactly,
        e.g. ``g = 0, H = 0`` or ``P = I, H = 0``). It stands for the chunks before
        ``first_chunk`` (they hold no tokens of this call) and pads incomplete pairs.
    first_chunk : int
        Absolute index of the first chunk (``layout.first_chunk``); the tree is over absolute
        indices, so where it starts decides which chunks pair up.
    batch_ndim : int
        Number of leading batch axes.

    Yields
    ------
    TreeLevel
        For chunk levels ``l = 1, 2, ...`` that have at least one read, in increasing order.
        The arrays of a level are only valid until the next one is requested.

    Notes
    -----
    Level ``l`` sees blocks of ``2^(l-1)`` chunks, block ``b = c >> (l-1)``. A chunk in an odd
    block ``b`` reads block ``b - 1`` (its Fenwick bucket), if that block is not entirely before
    ``first_chunk``; even blocks read nothing at this level. Blocks of level ``l + 1`` are
    ``combine(block 2b, block 2b + 1)`` of level ``l``; the identity fills in block ``2b`` when the
    first block is odd and block ``2b + 1`` when the last is even. The ``prefix`` of a chunk at
    level ``l`` is the combine of its buckets at levels ``l - 1, ..., 1`` (those that exist), kept
    up to date as the levels go up. Cost: ``O(n log n)`` combines, ``O(n)`` summaries alive.
    """
    ax = batch_ndim
    n = summaries[0].shape[ax]
    c0 = first_chunk
    c1 = c0 + n - 1
    batch = tuple(summaries[0].shape[:ax])
    events = [tuple(s.shape[ax + 1 :]) for s in summaries]

    def ident(count):
        return tuple(
            xp.broadcast_to(e, batch + (count,) + ev) for e, ev in zip(identity, events)
        )

    chunk_abs = np.arange(c0, c1 + 1, dtype=np.int64)
    blocks, b0 = tuple(summaries), c0  # level-1 blocks are the chunks
    prefix = None  # None: the identity for every chunk
    level = 1
    while (c1 >> (level - 1)) != b0:
        b = chunk_abs >> (level - 1)
        reads = ((b & 1) == 1) & (b > b0)
        chunks = np.nonzero(reads)[0]
        last = (c1 >> level) == (c0 >> level)  # one block at the next level: no reads above
        if len(chunks):
            bucket = tuple(_take(xp, s, b[chunks] - 1 - b0, ax) for s in blocks)
            pre = ident(len(chunks)) if prefix is None else tuple(_take(xp, s, chunks, ax) for s in prefix)
            yield TreeLevel(level, chunks, bucket, pre, n, xp, ax)
            if not last:
                # above this level the bucket lies between the chunk and its next bucket
                moved = combine(bucket, pre)
                where = np.arange(n, dtype=np.int64)
                where[chunks] = n + np.arange(len(chunks))
                old = ident(n) if prefix is None else prefix
                prefix = tuple(_take(xp, xp.concat([o, m], axis=ax), where, ax) for o, m in zip(old, moved))
        if last:
            break
        blocks, b0 = _next_blocks(xp, blocks, b0, combine, ident, ax), b0 >> 1
        level += 1


def _next_blocks(xp, blocks, b0, combine, ident, ax):
    """Blocks of the next level: ``combine(block 2b, block 2b + 1)``, the identity filling gaps."""
    count = blocks[0].shape[ax]
    front = b0 & 1
    back = (b0 + count) & 1
    if front or back:
        parts = [ident(1)] if front else []
        parts.append(blocks)
        if back:
            parts.append(ident(1))
        blocks = tuple(xp.concat([p[i] for p in parts], axis=ax) for i in range(len(blocks)))
    earlier = tuple(_every_other(s, ax, 0) for s in blocks)
    later = tuple(_every_other(s, ax, 1) for s in blocks)
    return tuple(combine(earlier, later))


# ---- streaming states ---------------------------------------------------------------------------

def state_read_levels(p, T):
    """Levels at which the queries ``p ... p + T - 1`` see the buckets of a state at offset ``p``.

    Returns
    -------
    numpy int64 array (T, bit_length(p))
        Entry ``[i, l - 1]`` is ``level(p + i, s)`` for every key ``s`` of the bucket ``B_p^l``,
        namely ``max(l, bit_length(p XOR (p + i)))``. Columns of empty buckets (bit ``l - 1`` of
        ``p`` clear) hold ``l``: a valid level (``< num_levels(p + T)``) whose state is zero.
    """
    n = p.bit_length()
    if T <= 8:  # decoding: plain ints beat array set-up
        moved = np.array([(p ^ (p + i)).bit_length() for i in range(T)], dtype=np.int64)
    else:
        moved = _bit_length(np, np.bitwise_xor(np.arange(p, p + T, dtype=np.int64), p))
    return np.maximum(np.arange(1, n + 1, dtype=np.int64)[None, :], moved[:, None])


@dataclass(frozen=True)
class MergePlan:
    """How the state at ``p' = p + T`` follows from the state at ``p`` and the tokens ``[p, p')``.

    Attributes
    ----------
    h : int
        ``bit_length(p XOR p')``: levels above ``h`` are the old levels, unchanged up to the decay
        over the call; the old levels ``1 .. h - 1`` (``h``-th is empty) all fall into level ``h``.
    slices : tuple of (level, lo, hi)
        For each non-empty level ``l <= h`` of ``p'`` (descending, i.e. in token order), the new
        tokens ``[lo, hi)`` (relative to the call) of its bucket. They partition ``[0, T)``.
    n_old, n_new : int
        ``bit_length(p)`` and ``bit_length(p')``: the old and new numbers of level slots.
    """

    h: int
    slices: tuple
    n_old: int
    n_new: int


def state_merge_plan(p, T):
    """The :class:`MergePlan` of advancing a state from offset ``p`` over ``T >= 1`` tokens."""
    q = p + T
    h = (p ^ q).bit_length()
    slices = []
    for l in range(h, 0, -1):
        if (q >> (l - 1)) & 1:
            hi = (q >> (l - 1)) << (l - 1)
            lo = max(hi - (1 << (l - 1)), p)
            slices.append((l, lo - p, hi - p))
    return MergePlan(h, tuple(slices), p.bit_length(), q.bit_length())
