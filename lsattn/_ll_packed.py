"""Packed streams of the log-linear operators on the array-API path (and CuPy): one call.

``loglinear_attention`` / ``loglinear_gated_delta`` / ``loglinear_log_attention`` with ``cu_seqlens`` and ``state=`` /
``return_state=True``: segment ``i`` continues stream ``i`` at its absolute position ``p_i`` (0: a
fresh stream) with ``n_i`` new tokens. Everything it computes splits into three parts, each done
for all segments at once:

1. *The new tokens among themselves*: the rewrite of :mod:`lsattn._varlen` (one ordinary call of
   the backend's implementation, hard resets at the segments' first tokens). The new tokens
   ``p .. p + n - 1`` share every bit above ``b - 1`` with ``p``, ``b = bit_length(p XOR (p + n - 1))
   <= bit_length(n - 1) + 1``, so placed ``p mod 2^b`` after a multiple of ``2^b`` they have the
   Fenwick levels among themselves that they have at their absolute positions: under ``4 n``
   laid-out tokens per segment (``_varlen._first_fit``), not ``p + n``.
2. *The incoming state*: query ``p + j`` reads the old bucket ``B_p^l`` at level
   ``max(l, bit_length(p XOR (p + j)))`` with the decay ``a_p + ... + a_{p+j}``
   (``_chunktree.state_read_levels``). Each token reads its own stream's slots: the tokens are
   gathered as rows of their segment, segments grouped by their length rounded up to a power of
   two (one batched product per group: at most ``log2 T + 1`` groups, under ``2 T`` rows in all, no
   padding to the longest segment).
3. *The new state* (``_chunktree.state_merge_plan`` for every stream at once): each new level's
   tokens are one contiguous range of its segment, decayed to the segment's end and summed as rows
   grouped like 2.; old levels above ``h = bit_length(p XOR (p + n))`` stay, decayed over the
   segment, those below fold into level ``h``.

Decay sums restart at each segment's first token and are taken by log-depth segmented scans over
stretches (never as differences of cumulative sums: a ``-inf`` decay stays ``-inf``, not NaN).
Python loops run over level slots and row groups only; the index arithmetic is host NumPy.
On CUDA arrays that autograd does not track (:func:`_fused`), parts 2 and 3 are two launches of the
cupy backend's ``loglinear_streams.cu`` on the tables of :func:`_plan` (one upload); the array
operations below stay the reference formulation (NumPy, JAX, torch gradients).

Gated DeltaNet: its slots are carried through the transitions ``A_r = exp(a_r) (I - beta_r k_r
k_r^T)``, not by scalar decays. Parts 2 and 3 are those of ``loglinear_attention`` (:func:`_streams`)
with three products of transitions in place of the decay sums, none of which depends on positions:
queries ``(A_t ... A_p)^T q_t``, keys ``beta_s A_last ... A_{s+1} k_s``, the segment's total
``A_last ... A_p`` (:func:`_transfers`: the segments as rows of chunks, every segment at once).
"""
from __future__ import annotations

import sys

import array_api_compat
import numpy as np

from . import _upload, _varlen
from ._validate import compute_dtype, device_of
from .exp_kernel import _clamp_log_values, _finish, _minus_inf, combine, empty_summary, merge, read, summarise
from .loglinear import _gather_last, _state
from .state import State

__all__ = ["forward"]

_TAILS = (1, 1, 2, 1)  # trailing axes of the summary tensors m, n, S, z after their slot axis


def forward(op, impl, *rest, segments):
    """The packed call of ``op`` (its ``Op``) from the packed ``state`` to the packed state.

    impl: the backend's implementation of ``op`` (it computes part 1 of the module docstring on the
    laid-out tokens, without state); rest: its arguments (inputs in ``op.inputs`` order, validated,
    broadcast; the extra arguments; ``state``: None or the packed State, batch axes then N, level
    slots of the largest offset; ``return_state``); segments: ``lsattn._varlen.Streams``.
    Returns ``(out (..., T, d_v), packed State or None)``."""
    n_in = len(op.inputs)
    args, extra, (state, return_state) = list(rest[:n_in]), tuple(rest[n_in:-2]), rest[-2:]
    xp = array_api_compat.array_namespace(args[0])
    q = args[0]
    batch, T, d_k = tuple(q.shape[:-2]), q.shape[-2], q.shape[-1]
    d_v = args[2].shape[-1]
    dtype = compute_dtype(xp, q.dtype)
    starts, offsets = segments.starts, segments.offsets
    hier = op.name == "loglinear_log_attention"
    if T == 0:
        out = xp.zeros(batch + (0, d_v), dtype=q.dtype, device=device_of(q))
        if state is None and return_state:
            state = _fresh(xp, op.name, offsets, batch, d_k, d_v, dtype, q)
        return out, (state if return_state else None)
    run_args, finish, _, _ = _varlen.rewrite(op, xp, args, starts, batch, offsets)
    if hier:
        r, den, y = impl(*run_args, *extra, None, False, partial=True)[0]
        new = (finish(r, -1), finish(den, -1), finish(y))
    else:
        new = xp.astype(finish(impl(*run_args, *extra, None, False)[0]), dtype, copy=False)
    args = [None if x is None else xp.astype(x, dtype, copy=False) for x in args]
    tok = _Tokens(starts, offsets)
    if hier:
        return _hierarchical(xp, args, new, state, return_state, tok, batch, d_k, d_v, dtype)
    if op.name == "loglinear_gated_delta":
        return _gated_delta(xp, args, new, state, return_state, tok, batch, d_k, d_v, dtype, extra[0])
    return _loglinear(xp, args, new, state, return_state, tok, batch, d_k, d_v, dtype)


def _fresh(xp, op, offsets, batch, d_k, d_v, dtype, like):
    """The packed state of ``len(offsets)`` fresh streams (no level slots)."""
    N = offsets.shape[0]
    if op != "loglinear_log_attention":
        return _state(xp, offsets, batch + (N,), d_k, d_v, dtype, None, like, op)
    m, n, S, z = empty_summary(xp, batch + (N, 0), d_k, d_v, dtype, True, like)
    return State(op, offsets, batch + (N,), d_k, d_v, dtype, {"m": m, "n": n, "S": S, "z": z})


class _Tokens:
    """Host index arithmetic of the packed tokens: ``seg``, ``first``, ``last`` (T,) each token's
    segment and its first and last packed token, ``pos`` (T,) its absolute position in its stream;
    ``lens``, ``offsets``, ``ends = offsets + lens``, ``h`` (N,) per stream
    (``h = bit_length(p XOR (p + n))``: the state levels that change)."""

    def __init__(self, starts, offsets):
        self.starts, self.offsets = starts, offsets
        self.lens = np.diff(starts)
        self.seg = np.repeat(np.arange(self.lens.shape[0]), self.lens)
        self.first, self.last = starts[:-1][self.seg], starts[1:][self.seg] - 1
        self.pos = offsets[self.seg] + np.arange(starts[-1], dtype=np.int64) - self.first
        self.ends = offsets + self.lens
        self.h = _varlen.bits(offsets ^ self.ends)
        self._dev, self._sums = {}, {}  # this call's device indices and decay sums, made once

    def device(self, xp, like, key, host):
        """The host index ``host()`` on ``like``'s device, uploaded once per call (``key`` names it)."""
        if key not in self._dev:
            self._dev[key] = _upload.to_device(xp, host(), like)
        return self._dev[key]

    def sums(self, xp, a, after=False):
        """``a_first + ... + a_t`` (``after``: ``a_{t+1} + ... + a_last``) (..., T) within each segment,
        by :func:`_scan` (once per call and kind: ``a`` is the call's one log decay)."""
        key = "after" if after else "first"
        if key in self._sums:
            assert self._sums[key][0] is a
            return self._sums[key][1]
        T = a.shape[-1]
        to_last = self.last - np.arange(T)  # tokens after t in its segment
        if after:  # the reversed stream's sums, shifted by one inside each segment
            rel = xp.flip(self.device(xp, a, "to_last", lambda: to_last), axis=0)
            incl = xp.flip(_scan(xp, xp.flip(a, axis=-1), rel, int(to_last.max(initial=0)) + 1), axis=-1)
            moved = xp.concat([incl[..., 1:], xp.zeros(tuple(a.shape[:-1]) + (1,), dtype=a.dtype, device=device_of(a))],
                              axis=-1)
            got = xp.where(self.device(xp, a, "to_last", lambda: to_last) > 0, moved, xp.zeros_like(moved))
        else:
            rel = self.device(xp, a, "from_first", lambda: np.arange(T) - self.first)
            got = _scan(xp, a, rel, int((np.arange(T) - self.first).max(initial=0)) + 1)
        self._sums[key] = (a, got)
        return got

    def totals(self, xp, a):
        """``a_first + ... + a_last`` (..., N) over each segment (0 for an empty one)."""
        s = self.sums(xp, a)
        ext = xp.concat([s, xp.zeros(tuple(s.shape[:-1]) + (1,), dtype=s.dtype, device=device_of(s))], axis=-1)
        at = np.where(self.lens > 0, self.starts[1:] - 1, s.shape[-1])  # each segment's last token
        return xp.take(ext, self.device(xp, s, "last_tokens", lambda: at), axis=ext.ndim - 1)

    def reading(self):
        """The segments that read an incoming state (``p > 0``, ``n > 0``)."""
        return np.flatnonzero((self.offsets > 0) & (self.lens > 0))

    def read_levels(self, slots, L):
        """(T, slots): the level at which each token reads its stream's old slot ``l - 1``:
        ``max(l, bit_length(p XOR t))`` (clipped to ``L - 1``: only empty slots are past it)."""
        moved = _varlen.bits(self.offsets[self.seg] ^ self.pos)
        return np.minimum(np.maximum(np.arange(1, slots + 1)[None, :], moved[:, None]), L - 1)

    def ranges(self):
        """The new tokens of each stream's new levels ``l <= h`` (``state_merge_plan``, all streams):
        ``(slot, start, length)`` host (R,), slot ``i * L_new + l - 1``, packed tokens
        ``[start, start + length)``; and ``L_new = bit_length(max(offsets + lens))``."""
        L_new = int(self.ends.max(initial=0)).bit_length()
        slot, start, length = [], [], []
        for l in range(1, L_new + 1):
            i = np.flatnonzero((self.lens > 0) & (l <= self.h) & (((self.ends >> (l - 1)) & 1) == 1))
            hi = (self.ends[i] >> (l - 1)) << (l - 1)
            lo = np.maximum(hi - (1 << (l - 1)), self.offsets[i])
            slot.append(i * L_new + l - 1)
            start.append(self.starts[i] + lo - self.offsets[i])
            length.append(hi - lo)
        return np.concatenate(slot + [np.zeros(0, np.int64)]), np.concatenate(start + [np.zeros(0, np.int64)]), \
            np.concatenate(length + [np.zeros(0, np.int64)]), L_new

    def slot_sources(self, L_new, L_old):
        """(N, L_new) where each new slot comes from, as an index into the slot axis of
        ``[old slots (L_new, padded), new tokens' slots (L_new), the fold (1)]``: an old slot above
        ``h`` (or any, for a stream without new tokens), the new tokens' slot below ``h``, the fold
        of the old slots below ``h`` with the new tokens' slot at ``h``."""
        l = np.arange(1, L_new + 1)[None, :]
        h = self.h[:, None]
        return np.where(l > h, l - 1, np.where(l == h, 2 * L_new, L_new + l - 1))


def _scan(xp, a, rel, span):
    """Inclusive sums of ``a`` (..., T) restarting at each segment: ``rel`` (T,) on the device, each
    token's distance from its segment's first token (``span``: its maximum + 1). Log-depth
    (Hillis-Steele) over stretches of the segment, the masks compared on the device: no
    differences (``-inf`` stays ``-inf``, not NaN), no upload per step."""
    zero = xp.zeros((), dtype=a.dtype, device=device_of(a))
    step = 1
    while step < span:
        moved = xp.concat([xp.zeros(tuple(a.shape[:-1]) + (step,), dtype=a.dtype, device=device_of(a)), a[..., :-step]],
                          axis=-1)
        a = a + xp.where(rel >= step, moved, zero)
        step *= 2
    return a


def _groups(start, length):
    """Token ranges ``[start, start + length)`` (R,) as rows grouped by ``length`` rounded up to a power
    of two: ``[(which (cnt,), idx (cnt, P))]``, ``idx`` the rows' tokens (``-1``: padding)."""
    size = np.left_shift(np.int64(1), _varlen.bits(np.maximum(length - 1, 0)))
    out = []
    for P in np.unique(size).tolist():
        which = np.flatnonzero(size == P)
        j = np.arange(P)[None, :]
        out.append((which, np.where(j < length[which, None], start[which, None] + j, -1)))
    return out


def _rows(xp, x, idx, dev):
    """Rows of tokens: ``x`` (..., T + 1, d), its last row the padding, at ``idx`` (cnt, P) (-1:
    padding), ``dev`` its :func:`_flat` form on the device -> (..., cnt, P, d)."""
    got = xp.take(x, dev, axis=x.ndim - 2)
    return xp.reshape(got, tuple(x.shape[:-2]) + idx.shape + (x.shape[-1],))


def _flat(idx, T):
    """Row tokens ``idx`` (cnt, P) (-1: padding) flattened, padding at ``T`` (the row :func:`_pad_row` adds)."""
    return np.where(idx < 0, T, idx).reshape(-1)


def _batch(xp, like, hosts):
    """Host int arrays ``hosts`` on ``like``'s device, flattened, in ONE upload (slices of it)."""
    flat = [np.asarray(h, dtype=np.int64).reshape(-1) for h in hosts]
    dev = _upload.to_device(xp, np.concatenate(flat + [np.zeros(0, np.int64)]), like)
    ends = np.cumsum([0] + [f.size for f in flat]).tolist()
    return [dev[a:b] for a, b in zip(ends[:-1], ends[1:])]


def _back(groups, T):
    """(T,) where each token sits in the rows of ``groups`` flattened and concatenated (their
    total: a token in none of them)."""
    back = np.full(T, sum(idx.size for _, idx in groups), np.int64)
    base = 0
    for _, idx in groups:
        flat = idx.reshape(-1)
        back[flat[flat >= 0]] = base + np.flatnonzero(flat >= 0)
        base += flat.shape[0]
    return back


def _pad_row(xp, x, value=0.0):
    """``x`` (..., T, d) with one row of ``value`` appended (the padding that :func:`_rows` reads)."""
    return xp.concat([x, xp.full(tuple(x.shape[:-2]) + (1, x.shape[-1]), value, dtype=x.dtype, device=device_of(x))],
                     axis=-2)


def _streams_of(xp, x, idx, N, dev, nb):
    """``x`` (*batch, N, ...) at the streams ``idx`` (host; ``dev`` on the device): ``x`` itself when
    they are all ``N`` in order (a decoding step of every stream: no copy of the state)."""
    if idx.shape[0] == N and np.array_equal(idx, np.arange(N)):
        return x
    return xp.take(x, dev, axis=nb)


def _pick(xp, x, idx, nb, dev=None):
    """``x`` (*batch, N, K, *tail) -> (*batch, N, L): entry ``[i, l]`` is ``x[i, idx[i, l]]`` (host (N, L));
    dev: :func:`_pick_index` of ``idx`` already on the device."""
    N, K = x.shape[nb], x.shape[nb + 1]
    flat = xp.reshape(x, tuple(x.shape[:nb]) + (N * K,) + tuple(x.shape[nb + 2:]))
    dev = _index(xp, _pick_index(idx, K), x) if dev is None else dev
    got = xp.take(flat, dev, axis=nb)
    return xp.reshape(got, tuple(x.shape[:nb]) + idx.shape + tuple(x.shape[nb + 2:]))


def _pick_index(idx, K):
    """The flat index of :func:`_pick` (N * L,) for ``idx`` (N, L) into ``K`` slots per stream."""
    return (np.arange(idx.shape[0])[:, None] * K + idx).reshape(-1)


_index = _upload.index


def _loglinear(xp, args, out, state, return_state, tok, batch, d_k, d_v, dtype):
    """Parts 2 and 3 for ``loglinear_attention``: a query reads the old slots as ``exp(a_p + ... +
    a_t) q_t``, a key is written as ``exp(a_{s+1} + ... + a_last) k_s``, the old slots are carried
    by ``exp(a_p + ... + a_last)`` (:func:`_streams`)."""
    q, k, v, a, lam = args
    run = _fused(args, state)
    if run is not None:
        return _fused_streams(xp, run, "loglinear_attention", out, state, return_state, tok, batch, d_k, d_v, dtype,
                              (q, a, lam, k, v, None))

    def reads():
        return xp.exp(tok.sums(xp, a))[..., None] * q  # exp(a_p + ... + a_t) q_t, in the segment

    def writes():
        return k * xp.exp(tok.sums(xp, a, after=True))[..., None]  # k_s exp(a_{s+1} + ... + a_last)

    def carry(old):
        return old * xp.exp(tok.totals(xp, a))[..., None, None, None]  # decayed over each segment

    return _streams(xp, "loglinear_attention", out, state, return_state, tok, batch, d_k, d_v, dtype, lam, v,
                    reads, writes, carry)


def _gated_delta(xp, args, out, state, return_state, tok, batch, d_k, d_v, dtype, chunk_size):
    """Parts 2 and 3 for ``loglinear_gated_delta``: as for ``loglinear_attention`` with the chunk
    transitions ``A_r = exp(a_r) (I - beta_r k_r k_r^T)`` in place of the scalar decays: a query
    reads the old slots as ``(A_t ... A_p)^T q_t``, a key is written as ``beta_s A_last ... A_{s+1}
    k_s``, the old slots are carried by ``A_last ... A_p`` (:func:`_transfers`: every segment at once)."""
    q, k, v, a, beta, lam = args
    old = None if state is None else state.tensors["levels"]
    need_reads = old is not None and old.shape[-3] > 0 and tok.reading().size > 0
    got = _transfers(xp, q, k, a, beta, tok, batch, chunk_size, need_reads, return_state)
    run = _fused(args, state)
    if run is not None:
        return _fused_streams(xp, run, "loglinear_gated_delta", out, state, return_state, tok, batch, d_k, d_v, dtype,
                              (got.get("reads"), None, lam, got.get("writes"), v, got.get("total")))

    def carry(old):
        return got["total"][..., None, :, :] @ old  # (..., N, 1, d_k, d_k) @ (..., N, L, d_k, d_v)

    return _streams(xp, "loglinear_gated_delta", out, state, return_state, tok, batch, d_k, d_v, dtype, lam, v,
                    lambda: got["reads"], lambda: got["writes"], carry)


def _fused(arrays, state, name="packed_streams"):
    """The cupy backend's kernels for parts 2-3 (``backends.cupy.loglinear.<name>``: ``packed_streams``,
    ``packed_hier``) when the inputs are CUDA arrays it serves (CuPy, torch) that autograd does not
    track; else None (the array-API formulation: other devices, gradients through torch)."""
    x = arrays[0]
    mod = type(x).__module__
    if not (mod.startswith("cupy") or (mod.startswith("torch") and x.is_cuda)):
        return None
    if mod.startswith("torch"):
        held = [z for z in arrays if z is not None] + ([] if state is None else list(state.tensors.values()))
        if any(z.requires_grad for z in held) and sys.modules["torch"].is_grad_enabled():
            return None
    from .backends.cupy import MAX_DK, probe

    if x.shape[-1] > MAX_DK or probe() is not None:
        return None
    from .backends.cupy import loglinear

    return getattr(loglinear, name)


def _fused_streams(xp, run, name, out, state, return_state, tok, batch, d_k, d_v, dtype, inputs):
    """Parts 2 and 3 for ``name`` by ``run`` (:func:`_fused`) on ``inputs = (x, a, lam, y, v, tot)``:
    the queries, the log decays (None: Gated DeltaNet, whose ``x``, ``y``, ``tot`` carry its
    transitions), the level weights, the keys, the values, the segments' transition products."""
    x, a, lam, y, v, tot = inputs
    N = tok.lens.shape[0]
    old = None if state is None else state.tensors["levels"]
    old = None if old is None or old.shape[-3] == 0 else old
    seg, rng, L_new = _plan(tok, return_state)
    out, levels = run(out, x, a, lam, old, y, v, tot, seg, rng, L_new, return_state)
    if not return_state:
        return out, None
    return out, _state(xp, tok.ends, batch + (N,), d_k, d_v, dtype, levels, out, name)


def _plan(tok, return_state):
    """The host tables of ``loglinear_streams.cu``: ``seg`` (4, N) int64 (each stream's first packed
    token, new tokens, offset, ``h``), ``rng`` (2, N L_new) int64 (each new slot's first packed token
    and count of new tokens; empty without ``return_state``) and ``L_new``."""
    N = tok.lens.shape[0]
    seg = np.stack([tok.starts[:-1], tok.lens, tok.offsets, tok.h]).astype(np.int64)
    L_new, rng = 0, np.zeros((2, 0), np.int64)
    if return_state:
        slot, start, length, L_new = tok.ranges()
        rng = np.zeros((2, N * L_new), np.int64)
        rng[0, slot], rng[1, slot] = start, length
    return seg, rng, L_new


def _streams(xp, name, out, state, return_state, tok, batch, d_k, d_v, dtype, lam, v, reads, writes, carry):
    """Parts 2 and 3 of the module docstring for an operator whose level slots are ``d_k x d_v``
    matrices (``name``): ``out`` (the new tokens among themselves) plus each token's reads of its
    stream's incoming slots; the new state.

    reads: ``() -> (..., T, d_k)``, each query carried back to its stream's offset; writes: ``() ->
    (..., T, d_k)``, each key (with its write strength) carried to its segment's end; carry: old
    slots (..., N, L, d_k, d_v) -> the same carried over each stream's segment."""
    nb, T, N = len(batch), out.shape[-2], tok.lens.shape[0]
    old = None if state is None else state.tensors["levels"]  # (..., N, L_old, d_k, d_v)
    L_old = 0 if old is None else old.shape[-3]
    rows = tok.reading()
    if L_old and rows.size:
        w = _gather_last(xp, lam, tok.read_levels(L_old, lam.shape[-1]))  # (..., T, L_old)
        qw = xp.reshape(w[..., None] * reads()[..., None, :], batch + (T, L_old * d_k))
        qw = _pad_row(xp, qw)
        old_flat = xp.reshape(old, tuple(old.shape[:-3]) + (L_old * d_k, d_v))  # (..., N, L_old d_k, d_v)
        groups = _groups(tok.starts[rows], tok.lens[rows])
        G = len(groups)
        dev = _batch(xp, out, [_flat(idx, T) for _, idx in groups] + [rows[which] for which, _ in groups]
                     + [_back(groups, T)])
        parts = [xp.reshape(_rows(xp, qw, idx, dev[g]) @ _streams_of(xp, old_flat, rows[which], N, dev[G + g], nb),
                            batch + (idx.size, d_v)) for g, (which, idx) in enumerate(groups)]
        parts.append(xp.zeros(batch + (1, d_v), dtype=dtype, device=device_of(out)))
        out = out + xp.take(xp.concat(parts, axis=-2), dev[2 * G], axis=nb)
    if not return_state:
        return out, None
    slot, start, length, L_new = tok.ranges()
    levels = None
    if slot.size:
        kv = _pad_row(xp, xp.concat([writes(), v], axis=-1))  # keys and values: one gather per group
        groups = _groups(start, length)
        where = np.full(N * L_new, slot.size, np.int64)
        where[slot[np.concatenate([which for which, _ in groups])]] = np.arange(slot.size)
        dev = _batch(xp, kv, [_flat(idx, T) for _, idx in groups] + [where])
        H = [xp.matrix_transpose(r[..., :d_k]) @ r[..., d_k:] for r in (_rows(xp, kv, idx, dev[g])
                                                                        for g, (_, idx) in enumerate(groups))]
        H.append(xp.zeros(batch + (1, d_k, d_v), dtype=dtype, device=device_of(out)))
        levels = xp.reshape(xp.take(xp.concat(H, axis=nb), dev[-1], axis=nb), batch + (N, L_new, d_k, d_v))
    if L_old:
        # old slot l - 1 stays where l > h (streams without new tokens: h = 0, all stay); level h
        # gets the fold of the old slots below h - 1; selected by masks (two passes over the old
        # slots, where the full cumulative sum, its concatenation and a gather made five)
        lvl = np.arange(1, L_new + 1)[None, :]
        fold = np.arange(L_old)[None, :] < np.clip(tok.h - 1, 0, L_old)[:, None]  # (N, L_old)
        stay, at_h = (lvl > tok.h[:, None]) & (lvl <= L_old), lvl == tok.h[:, None]  # (N, L_new)
        fold, stay, at_h = (m > 0 for m in _batch(xp, old, [fold, stay, at_h]))
        zero = xp.zeros((), dtype=dtype, device=device_of(old))
        folded = xp.sum(xp.where(xp.reshape(fold, (N, L_old, 1, 1)), old, zero), axis=-3, keepdims=True)
        if L_new > L_old:
            old = xp.concat([old, xp.zeros(batch + (N, L_new - L_old, d_k, d_v), dtype=dtype, device=device_of(old))],
                            axis=-3)
        kept = xp.where(xp.reshape(stay, (N, L_new, 1, 1)), old,
                        xp.where(xp.reshape(at_h, (N, L_new, 1, 1)), folded, zero))
        kept = carry(kept)
        levels = kept if levels is None else levels + kept
    if levels is None:
        levels = xp.zeros(batch + (N, L_new, d_k, d_v), dtype=dtype, device=device_of(out))
    return out, _state(xp, tok.ends, batch + (N,), d_k, d_v, dtype, levels, out, name)


def _transfers(xp, q, k, a, beta, tok, batch, chunk_size, reads, writes):
    """Gated DeltaNet's products of transitions within each segment, every segment at once.

    Returns a dict: ``reads`` (..., T, d_k), ``(A_t ... A_first)^T q_t`` (with ``reads``);
    ``writes`` (..., T, d_k), ``beta_s A_last ... A_{s+1} k_s``, and ``total`` (..., N, d_k, d_k),
    ``A_last ... A_first`` (the identity for an empty segment) (with ``writes``). None of them
    depends on positions: the segments are rows grouped by their length rounded up to a power of
    two (:func:`_groups`: under ``2 T`` rows, identity transitions as padding after a segment's end),
    cut into chunks of ``min(chunk_size, row length)``; inside a chunk the WY forms of
    ``lsattn.gated_delta._chunk_forms`` (``qeff``, ``phi``, the chunk's transition ``P``; one call
    for all chunks of one size, at most ``log2 chunk_size + 1`` calls), across
    the chunks of a row the exclusive prefix and suffix products of ``P`` (:func:`_exclusive`:
    ``O(n)`` products for ``n`` chunks)."""
    from .gated_delta import _chunk_forms

    nb, T, d_k = len(batch), q.shape[-2], q.shape[-1]
    segs = np.flatnonzero(tok.lens > 0)
    groups = _groups(tok.starts[segs], tok.lens[segs])
    # q, k, a, beta side by side (one gather); padding a = beta = 0, k = 0: A = I
    qkab = _pad_row(xp, xp.concat([q, k, a[..., None], beta[..., None]], axis=-1))
    sizes = [min(chunk_size, idx.shape[1]) for _, idx in groups]
    Cs = sorted(set(sizes))
    where = np.full(tok.lens.shape[0], segs.size, np.int64)  # empty segments: the identity
    where[segs[np.concatenate([which for which, _ in groups] + [np.zeros(0, np.int64)])]] = np.arange(segs.size)
    # every index of the call in one upload: the rows of each chunk size, the way back, the totals' order
    dev = _batch(xp, q, [_flat(np.concatenate([groups[g][1].reshape(-1, C) for g, c in enumerate(sizes) if c == C]), T)
                         for C in Cs] + [_back(groups, T), where])
    forms = {}  # group -> its chunks' (qeff, phi, P) (..., cnt, n, ...)
    for i, C in enumerate(Cs):  # the groups of one chunk size: one gather, one call of the chunk forms
        mine = [g for g, c in enumerate(sizes) if c == C]
        chunks = sum(groups[g][1].size for g in mine) // C
        rows = _rows(xp, qkab, np.zeros((chunks, C)), dev[i])  # (..., chunks, C, 2 d_k + 2)
        ch = _chunk_forms(xp, rows[..., :d_k], rows[..., d_k:2 * d_k], rows[..., d_k:d_k], rows[..., 2 * d_k],
                          rows[..., 2 * d_k + 1])  # no values: H unused
        m0 = 0
        for g in mine:
            cnt, n = groups[g][1].shape[0], groups[g][1].shape[1] // C
            cut = (slice(None),) * nb + (slice(m0, m0 + cnt * n), ...)
            forms[g] = tuple(xp.reshape(ch[name][cut], batch + (cnt, n) + tuple(ch[name].shape[nb + 1:]))
                             for name in ("qeff", "phi", "P"))
            m0 += cnt * n
    got = {"reads": [], "writes": [], "total": []}
    for g, (_, idx) in enumerate(groups):
        cnt, P = idx.shape
        qeff, phi, Pc = forms[g]  # (..., cnt, n, C, d_k), (..., cnt, n, d_k, C), (..., cnt, n, d_k, d_k)
        if reads:
            E = _exclusive(xp, Pc, nb + 1)  # P_{c-1} ... P_0
            got["reads"].append(xp.reshape(qeff @ E, batch + (cnt * P, d_k)))
        if writes:
            F = _exclusive(xp, Pc, nb + 1, reverse=True)  # P_{n-1} ... P_{c+1}
            got["writes"].append(xp.reshape(xp.matrix_transpose(F @ phi), batch + (cnt * P, d_k)))
            got["total"].append(F[..., 0, :, :] @ Pc[..., 0, :, :])  # (..., cnt, d_k, d_k)
    res = {}
    zero = xp.zeros(batch + (1, d_k), dtype=q.dtype, device=device_of(q))
    for name in ("reads", "writes"):
        if got[name]:
            res[name] = xp.take(xp.concat(got[name] + [zero], axis=nb), dev[-2], axis=nb)
    if writes:
        eye = xp.broadcast_to(xp.eye(d_k, dtype=q.dtype, device=device_of(q)), batch + (1, d_k, d_k))
        res["total"] = xp.take(xp.concat(got["total"] + [eye], axis=nb), dev[-1], axis=nb)
    return res


def _exclusive(xp, P, nb, reverse=False):
    """Exclusive products of the transitions ``P`` (*batch, n, d, d) along axis ``nb`` (``n`` a power
    of two), chunk 0 first: ``P_{c-1} ... P_0`` (``reverse``: ``P_{n-1} ... P_{c+1}``), the identity
    where there is none."""
    eye = xp.broadcast_to(xp.eye(P.shape[-1], dtype=P.dtype, device=device_of(P)),
                          tuple(P.shape[:nb]) + (1,) + tuple(P.shape[-2:]))
    if reverse:
        incl = xp.flip(_inclusive(xp, xp.flip(P, axis=nb), nb, lambda e, l: e @ l), axis=nb)
        return xp.concat([incl[(slice(None),) * nb + (slice(1, None), ...)], eye], axis=nb)
    incl = _inclusive(xp, P, nb, lambda e, l: l @ e)
    return xp.concat([eye, incl[(slice(None),) * nb + (slice(None, -1), ...)]], axis=nb)


def _inclusive(xp, P, nb, combine):
    """Inclusive scan of ``P`` (*batch, n, d, d) along axis ``nb`` (``n`` a power of two) with the
    associative ``combine(earlier, later)``: pairs combined, their scan (recursively), then the
    even entries as ``combine(scan of the pairs before, entry)``. ``2 n`` products in ``2 log2 n``
    rounds of reshapes, no gathers (the rows of :func:`_transfers` start at chunk 0)."""
    n = P.shape[nb]
    if n == 1:
        return P
    head, tail = tuple(P.shape[:nb]), tuple(P.shape[nb + 1:])
    pairs = xp.reshape(P, head + (n // 2, 2) + tail)
    even, odd = pairs[(slice(None),) * (nb + 1) + (0, ...)], pairs[(slice(None),) * (nb + 1) + (1, ...)]
    sub = _inclusive(xp, combine(even, odd), nb, combine)  # [j]: chunks 0 .. 2 j + 1
    before = sub[(slice(None),) * nb + (slice(None, -1), ...)]
    first = even[(slice(None),) * nb + (slice(0, 1), ...)]
    evens = xp.concat([first, combine(before, even[(slice(None),) * nb + (slice(1, None), ...)])], axis=nb)
    return xp.reshape(xp.stack([evens, sub], axis=nb + 1), P.shape)


def _hierarchical(xp, args, part, state, return_state, tok, batch, d_k, d_v, dtype):
    """Parts 2 and 3 for ``loglinear_log_attention``: the partial ``part`` (the new tokens among
    themselves) combined with the reads of the incoming slots and finished; the new state."""
    q, k, log_v, lam, a = args
    nb, T, N = len(batch), q.shape[-2], tok.lens.shape[0]
    old = None if state is None else tuple(state.tensors[n] for n in ("m", "n", "S", "z"))
    run = _fused(args, state, "packed_hier")
    if run is not None:  # the clamps below are the kernels'
        seg, rng, L_new = _plan(tok, return_state)
        out, new = run(part, q, k, log_v, lam, a, None if old is None or old[0].shape[-2] == 0 else old, seg, rng, L_new,
                       return_state)
        return out, (None if new is None else State("loglinear_log_attention", tok.ends, batch + (N,), d_k, d_v, dtype,
                                                    dict(zip(("m", "n", "S", "z"), new))))
    lo = _minus_inf(xp, dtype)
    log_v = _clamp_log_values(xp, log_v, True)
    lam = xp.maximum(lam, xp.asarray(lo, dtype=dtype, device=device_of(q)))
    # decays clamped as a per-segment call clamps them (its stand-in: lo / (4 (p + n)))
    floor = xp.asarray(lo / (4.0 * tok.ends[tok.seg]), dtype=dtype, device=device_of(q))
    a = xp.zeros(batch + (T,), dtype=dtype, device=device_of(q)) if a is None else xp.maximum(a, floor)
    L_old = 0 if old is None else old[0].shape[-2]
    rows = tok.reading()
    if L_old and rows.size:
        w = _pad_row(xp, _gather_last(xp, lam, tok.read_levels(L_old, lam.shape[-1])) + tok.sums(xp, a)[..., None])
        qp = _pad_row(xp, q)
        groups = _groups(tok.starts[rows], tok.lens[rows])
        G = len(groups)
        dev = _batch(xp, q, [_flat(idx, T) for _, idx in groups] + [rows[which] for which, _ in groups]
                     + [_back(groups, T)])
        got = []
        for g, (which, idx) in enumerate(groups):
            qg, wg, acc = _rows(xp, qp, idx, dev[g]), _rows(xp, w, idx, dev[g]), None  # (..., cnt, P, d_k), (..., cnt, P, L_old)
            mine = tuple(_streams_of(xp, x, rows[which], N, dev[G + g], nb) for x in old)  # the group's streams' slots
            for j in range(L_old):  # empty slots read as weight 0 (z = 0 at the finite "minus infinity")
                summ = tuple(x[(..., j) + (slice(None),) * t] for x, t in zip(mine, _TAILS))
                r, den, y = read(xp, qg, summ, True)
                acc = (r + wg[..., j], den, y) if acc is None else combine(xp, acc, (r + wg[..., j], den, y), True)
            got.append(tuple(xp.reshape(x, batch + (idx.size,) + tuple(x.shape[nb + 2:])) for x in acc))
        inf = xp.full(batch + (1,), -float("inf"), dtype=dtype, device=device_of(q))  # a token that reads nothing
        none = (inf, xp.zeros(batch + (1,), dtype=dtype, device=device_of(q)),
                xp.zeros(batch + (1, d_v), dtype=dtype, device=device_of(q)))
        seen = tuple(xp.take(xp.concat([g[i] for g in got] + [none[i]], axis=nb), dev[2 * G], axis=nb) for i in range(3))
        part = combine(xp, part, seen, True)
    out = _finish(xp, part, True)
    if not return_state:
        return out, None
    slot, start, length, L_new = tok.ranges()
    empty = empty_summary(xp, batch + (N, L_new), d_k, d_v, dtype, True, q)
    summ = empty
    if slot.size:
        kd, lv = _pad_row(xp, k + tok.sums(xp, a, after=True)[..., None]), _pad_row(xp, log_v)  # keys decayed to the end
        groups = _groups(start, length)
        where = np.full(N * L_new, slot.size, np.int64)
        where[slot[np.concatenate([which for which, _ in groups])]] = np.arange(slot.size)
        dev = _batch(xp, q, [_flat(idx, T) for _, idx in groups] + [where])
        parts = [summarise(xp, _rows(xp, kd, idx, dev[g]), _rows(xp, lv, idx, dev[g]), True,
                           mask=xp.reshape(dev[g] < T, idx.shape)) for g, (_, idx) in enumerate(groups)]
        one = empty_summary(xp, batch + (1,), d_k, d_v, dtype, True, q)
        summ = tuple(xp.reshape(xp.take(xp.concat([p[i] for p in parts] + [one[i]], axis=nb), dev[-1], axis=nb),
                                batch + (N, L_new) + tuple(one[i].shape[nb + 1:])) for i in range(4))
    totals = tok.totals(xp, a)  # (..., N)
    if L_old:
        shifted = (old[0] + totals[..., None, None],) + old[1:]  # decayed over the segment: m + total
        folds, acc = [], None
        for j in range(L_old):  # folds[j]: old slots 0 .. j merged
            s = tuple(x[(..., slice(j, j + 1)) + (slice(None),) * t] for x, t in zip(shifted, _TAILS))
            acc = s if acc is None else merge(xp, acc, s)
            folds.append(acc)
        olds = tuple(xp.concat([x, e[(..., slice(0, L_new - L_old)) + (slice(None),) * t]], axis=-1 - t)
                     for x, e, t in zip(shifted, empty, _TAILS))
        folds = tuple(xp.concat([f[i] for f in folds] + [empty[i][(..., slice(0, 1)) + (slice(None),) * t]],
                                axis=-1 - t) for i, t in enumerate(_TAILS))
        fold_at = np.minimum(tok.h - 1, L_old)  # old slots below h - 1 fold into h
        fold = _slots(xp, folds, np.where(fold_at >= 1, fold_at - 1, L_old)[:, None], nb)
    else:
        olds, fold = empty, _slots(xp, empty, np.zeros((N, 1), np.int64), nb)
    at_h = _slots(xp, summ, np.clip(tok.h - 1, 0, max(L_new - 1, 0))[:, None], nb) if L_new else fold
    folded = merge(xp, fold, at_h)
    cands = tuple(xp.concat([o, s, f], axis=-1 - t) for o, s, f, t in zip(olds, summ, folded, _TAILS))
    new = _slots(xp, cands, tok.slot_sources(L_new, L_old), nb)
    new = (xp.maximum(new[0], xp.asarray(lo, dtype=dtype, device=device_of(q))),) + tuple(new[1:])
    return out, State("loglinear_log_attention", tok.ends, batch + (N,), d_k, d_v, dtype, dict(zip(("m", "n", "S", "z"), new)))


def _slots(xp, summ, idx, nb):
    """Summary tensors (*batch, N, K, *tail) at the slots ``idx`` (host (N, L)) -> (*batch, N, L, *tail)."""
    dev = _index(xp, _pick_index(idx, summ[0].shape[nb + 1]), summ[0])  # one upload for the four
    return tuple(_pick(xp, x, idx, nb, dev) for x in summ)
