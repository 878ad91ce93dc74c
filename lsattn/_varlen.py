"""Packed variable-length sequences (``cu_seqlens``): one call over many independent streams.

``cu_seqlens = [0, n_1, n_1 + n_2, ..., T]`` (the FlashAttention convention) cuts the ``T`` axis
into ``N`` segments; each is its own stream (positions, Fenwick levels and decays restart at its
start) and the result equals calling the operator on each segment. No backend loops over the
segments and nothing is padded to the longest one: the prologue rewrites the packed call as ONE
ordinary causal call that any backend computes, from two facts.

1. A log decay of ``-inf`` at a segment's first token is a hard reset: every weight
   ``exp(a_{s+1} + ... + a_t)`` with ``s`` before the boundary and ``t`` after it holds
   ``exp(-inf) = 0`` (Gated DeltaNet: ``A_b = 0``), while no weight inside the segment reads it.
2. Fenwick levels depend on the positions. A segment of ``n`` tokens placed at a position that is a
   multiple of ``P = 2^ceil(log2 n)`` has the levels of a stream of its own (the low bits of
   ``t - start`` and ``t`` agree, and ``t XOR s < P``). The segments are laid out first-fit by
   decreasing ``P``, each in the first ``P``-aligned slot that no longer one touches (the tails of
   long segments hold short ones), the gaps filled by zero tokens (their outputs are dropped; the
   next reset cuts them off): under ``2 T`` tokens, typically a few percent more than ``T``.

The exp-kernel operators have no positions and no decay: no backend needs this rewrite for them.
Each computes their packed segments itself (``Backend.reset_ops``: the array-API path in
:mod:`lsattn._exp_packed`, the ``numba`` kernels with their stream tables), with or without states.

**Streams** (``state=`` / ``return_state=True``, :func:`streams`). A packed state holds one stream
per segment: its batch shape gains a trailing ``N`` axis and its ``offset`` is a NumPy int64 array
of shape ``(N,)``, one position per stream (log-linear level axes: as many slots as the longest
stream needs, the others' extra slots empty). A backend that computes packed segments itself
(``Backend.reset_ops``, :class:`Streams`: ``numba``; the array-API path for the exp-kernel
operators) runs such a call as one call from the packed state to the packed state. Elsewhere
(``array_api``, ``cupy``) the three log-linear operators run it as one call too
(:mod:`lsattn._ll_packed`, :data:`STREAM_OPS`): their new tokens among themselves through
:func:`rewrite` (a continued stream placed where its new tokens keep the levels of their absolute
positions, :func:`_blocks`), the incoming slots and the new state for all segments at once (Gated
DeltaNet's through the products of its transitions within each segment). :func:`streams`, one
ordinary call per segment, is left for a backend that lists another operator in ``varlen_ops``
without computing its packed segments itself.

Index building is vectorised NumPy on the host (the offsets are read once, for validation anyway).
"""
from __future__ import annotations

import functools
import math
import sys

import array_api_compat
import numpy as np

from . import _upload
from ._validate import _device_or_none, device_of
from .fenwick import num_levels
from .state import LEVEL_AXES, State, check_state, level_slots_of, packed_streams, with_level_slots

__all__ = ["check_offsets", "pack", "rewrite", "streams", "TokenMap", "STREAM_OPS"]

#: log-linear operators whose packed streams (``state=`` / ``return_state=True``) run as one call
#: on backends that do not compute packed segments themselves (``lsattn._ll_packed``); a backend
#: that lists another operator in ``varlen_ops`` but not in ``reset_ops`` gets one call per segment
#: (:func:`streams`)
STREAM_OPS = ("loglinear_attention", "loglinear_gated_delta", "loglinear_log_attention")


def check_offsets(cu_seqlens, xp, like, T, causal, host=None):
    """The offsets as a host int64 array, after checking them (errors name ``cu_seqlens``).
    host: the array ``cu_seqlens``' values already read (:func:`read_offsets`), or None: read here."""
    if not causal:
        raise ValueError("cu_seqlens needs causal=True: packed segments are causal streams")
    host = _to_host(cu_seqlens, xp, like, host)
    if host.dtype == np.bool_ or host.dtype.kind not in "iu":
        raise TypeError(f"cu_seqlens must hold integers, got dtype {host.dtype}")
    if host.ndim != 1 or host.shape[0] < 2:
        raise ValueError(f"cu_seqlens must be a 1-D sequence of N + 1 >= 2 offsets [0, ..., T], got shape {host.shape}")
    off = host.astype(np.int64)
    if off[0] != 0:
        raise ValueError(f"cu_seqlens must start at 0, got {off[0]}")
    if off[-1] != T:
        raise ValueError(f"cu_seqlens must end at T = {T} (the inputs' sequence length), got {off[-1]}")
    if np.any(np.diff(off) < 0):
        i = int(np.argmax(np.diff(off) < 0))
        raise ValueError(f"cu_seqlens must be non-decreasing, got {off[i]} before {off[i + 1]} (index {i})")
    return off


def read_offsets(cu):
    """``(host copy, where)`` of ``cu_seqlens`` given as a NumPy array, a torch tensor or a CuPy array
    (one device-to-host read of ``N + 1`` integers, which waits for the work queued before it, as
    fla's does), ``where`` its type and device; None for anything else (a Python sequence, JAX) or
    what cannot be read as it is. Nothing is checked here: the values key the prologue's plan of a
    packed call (``_prologue._run``), whose first call with them checks them (:func:`check_offsets`
    with ``host=``); keyed by the values read, not by the array, an array changed in place is seen."""
    t = type(cu)
    mod = t.__module__
    try:
        if t is np.ndarray:
            return cu, (t, None)
        if mod.startswith("torch"):
            return cu.detach().cpu().numpy(), (t, cu.device)
        if mod.startswith("cupy"):
            return cu.get(), (t, cu.device.id)
    except Exception:  # e.g. a dtype NumPy does not have: the validation says what is wrong
        return None
    return None


def _to_host(cu, xp, like, host=None):
    """``cu_seqlens`` (an array of the inputs' namespace and device, or a Python sequence) on the host
    (``host``: its values already read, returned after the checks of the array itself)."""
    if not array_api_compat.is_array_api_obj(cu):
        if isinstance(cu, (str, bytes)) or not hasattr(cu, "__len__"):
            raise TypeError(f"cu_seqlens must be a 1-D integer array or a sequence of ints, got {type(cu).__name__}")
        if any(isinstance(c, (bool, np.bool_)) for c in cu):
            raise TypeError("cu_seqlens must hold integers, got bools")
        try:
            return np.asarray(cu)
        except Exception as exc:
            raise TypeError(f"cu_seqlens must be a 1-D sequence of ints: {exc}") from None
    if array_api_compat.array_namespace(cu) is not array_api_compat.array_namespace(like):
        raise TypeError(f"cu_seqlens is a {type(cu).__module__}.{type(cu).__name__}, not an array of the inputs' "
                        f"namespace ({type(like).__module__}.{type(like).__name__}); a Python list works everywhere")
    dev, cdev = _device_or_none(like), _device_or_none(cu)
    if dev is not None and cdev is not None and str(dev) != str(cdev):
        raise ValueError(f"cu_seqlens is on device {cdev} but the inputs are on {dev}")
    if "jax" in sys.modules and isinstance(cu, sys.modules["jax"].core.Tracer):
        raise TypeError("cu_seqlens must be concrete (a traced JAX array cannot be read): pass it as a static value")
    if host is not None:
        return host
    if array_api_compat.is_torch_array(cu):
        return cu.detach().cpu().numpy()
    if type(cu).__module__.startswith("cupy"):
        return cu.get()
    return np.asarray(cu)


def layout(off, offsets=None):
    """``(T_pad, src, back, starts)``: the padded stream's length, the packed token each padded
    position reads (``T``: a zero token), the padded position of each packed token, and the
    padded positions of the segments' first tokens (fact 2; ``offsets`` (N,): the positions at
    which continued streams resume, see :func:`_first_fit`)."""
    lens = np.diff(off)
    T = int(off[-1])
    start, T_pad = _first_fit(lens, offsets)
    back = np.arange(T, dtype=np.int64) + np.repeat(start - off[:-1], lens)
    src = np.full(T_pad, T, dtype=np.int64)
    src[back] = np.arange(T, dtype=np.int64)
    return T_pad, src, back, start[lens > 0]


def _first_fit(lens, offsets=None):
    """Starts of segments of lengths ``lens`` (continuing streams at ``offsets``, :func:`_blocks`)
    in the laid-out stream, and its length: each segment in an aligned block of its size ``P``,
    ``within`` tokens after the block's start. The blocks are packed first-fit by decreasing ``P``:
    a segment takes the first ``P``-aligned block that no earlier one touches (the tails left by
    longer segments hold shorter ones), else the first one after them all. One vectorised pass per
    distinct ``P`` (at most ``log2 T + 2``); the length is at most the sum of the blocks (under
    ``2 T`` for fresh segments, ``4 T`` for continued ones)."""
    size, within, _, _, _ = _blocks(lens, offsets)
    start = np.zeros(lens.shape[0], dtype=np.int64)
    ps, ns = np.zeros(0, np.int64), np.zeros(0, np.int64)  # placed segments: starts, lengths
    end = 0
    for P in np.unique(size[lens > 0])[::-1].tolist():
        idx = np.flatnonzero(size == P)
        K = -(-end // P)  # P-blocks up to the end of what is placed
        touched = np.zeros(K + 1, dtype=np.int64)  # +1 / -1 at the first / after the last block each placed one touches
        np.add.at(touched, ps // P, 1)
        np.add.at(touched, np.minimum((ps + ns - 1) // P + 1, K), -1)
        free = np.flatnonzero(np.cumsum(touched[:K]) == 0)
        slots = np.concatenate([free, K + np.arange(idx.shape[0])])[: idx.shape[0]]
        start[idx] = slots * P + within[idx]
        ps, ns = np.concatenate([ps, start[idx]]), np.concatenate([ns, lens[idx]])
        end = max(end, int((start[idx] + lens[idx]).max()))
    return start, end


def _blocks(lens, offsets=None):
    """Where each segment goes so that its tokens have their own Fenwick levels among themselves:
    ``(P, within, k, level, true_level)`` (N,) int64.

    A fresh segment of ``n`` tokens: a block of ``P = 2^c``, ``c = bit_length(n - 1)``, from its
    start (fact 2). A stream continued at absolute position ``p``: its new tokens ``p .. p + n - 1``
    share every bit above ``b - 1`` with ``p``, ``b = bit_length(p XOR (p + n - 1))``. When
    ``b <= c + 1``: ``P = 2^b``, ``p mod P`` after the block's start (``P < 4 n``), their levels
    among themselves are those of their absolute positions. Otherwise (a long carry: ``p = 7``,
    ``n = 2`` has ``b = 4``) a multiple ``B`` of ``2^(b-1)`` splits them, ``k`` before it and
    ``n - k <= 2^c`` from it: each side keeps its own levels when placed in a block of
    ``P = 2^(c+1)`` ``2^c - k`` after its start, and the pairs across ``B`` (absolute level ``b``)
    sit at ``level = c + 1`` there, which the rewrite maps back to ``true_level = b`` in the level
    weights of the tokens from ``B`` on. ``k = 0`` where no such split is needed."""
    n = np.asarray(lens, dtype=np.int64)
    p = np.zeros(n.shape[0], np.int64) if offsets is None else np.asarray(offsets, dtype=np.int64)
    one = np.int64(1)
    b = bits(p ^ (p + np.maximum(n, 1) - 1))
    c = bits(np.maximum(n - 1, 0))
    split = (n > 0) & (b > c + 1)
    size = np.where(n > 0, np.left_shift(one, np.where(split, c + 1, b)), 0)
    half = np.left_shift(one, np.maximum(b - 1, 0))
    k = np.where(split, half - (p & (half - 1)), 0)
    within = np.where(split, np.left_shift(one, c) - k, np.where(n > 0, p & (size - 1), 0))
    return size, within, k, c + 1, b


def bits(x):
    """``bit_length`` of each entry of a host array of non-negative ints (exact below 2^53)."""
    return np.frexp(np.asarray(x, dtype=np.float64))[1].astype(np.int64)


def _level_map(off, offsets, back):
    """``(g, level, true_level)`` host (M,): the laid-out tokens whose level weight column ``level``
    must read column ``true_level`` (the split segments of :func:`_blocks`, tokens from ``B`` on)."""
    lens = np.diff(off)
    _, _, k, level, true = _blocks(lens, offsets)
    seg = np.repeat(np.arange(lens.shape[0]), lens)
    j = np.arange(int(off[-1])) - off[:-1][seg]
    moved = (k[seg] > 0) & (j >= k[seg])
    return back[moved], level[seg][moved], true[seg][moved]


class TokenMap:
    """The aligned layout (fact 2) as kernels read it (``Backend.layout_ops``): entry ``g`` of the
    ``size`` laid-out positions is the packed token it reads (``>= 0``), ``-1`` for a zero token of a
    gap, or ``-2 - r`` for a packed token ``r`` that starts a segment (its log decay reads as
    ``-inf``: the reset of fact 1).

    Held as the non-empty segments' table only (laid-out start, packed start, length; sorted by
    laid-out start): no ``T``-sized host work per call; the kernels' backend builds the map on the
    device from one copy of ``3 N`` integers."""

    def __init__(self, off):
        lens = np.diff(off)
        start, self.size = _first_fit(lens)
        keep = lens > 0
        order = np.argsort(start[keep], kind="stable")
        self.table = np.stack([start[keep][order], off[:-1][keep][order], lens[keep][order]]).astype(np.int64)  # (3, N')
        self.table.flags.writeable = False  # shared by the calls with these offsets (token_map)

    def array(self):
        """The map as a (size,) int32 NumPy array (the definition; the cupy backend builds it on the
        device with one elementwise kernel over the table, ``CupyOps.token_map``)."""
        if self.size == 0:  # no token at all
            return np.zeros(0, np.int32)
        st, pk, ln = self.table
        g = np.arange(self.size, dtype=np.int64)
        i = np.maximum(np.searchsorted(st, g, side="right") - 1, 0)  # the segment laid out at or before g
        rel, r = g - st[i], pk[i] + g - st[i]
        inside = (rel >= 0) & (rel < ln[i])
        return np.where(inside, np.where(rel == 0, -2 - r, r), -1).astype(np.int32)


def token_map(off):
    """The :class:`TokenMap` of offsets ``off`` (N + 1,) int64 (the same object for the same offsets'
    values: repeated packed calls skip the host layout, ~0.1-0.2 ms at 64K tokens, issue 19)."""
    return _cached(("map", off.tobytes()), lambda: TokenMap(off))


#: host layouts of packed calls, keyed by the offsets' values (and what was computed from them):
#: built once per batch shape of a training loop; read-only
_LAYOUTS = {}
_LAYOUTS_MAX = 64


def _cached(key, build):
    got = _LAYOUTS.get(key)
    if got is None:
        if len(_LAYOUTS) >= _LAYOUTS_MAX:
            _LAYOUTS.clear()
        got = _LAYOUTS[key] = build()
    return got


_index = _upload.index


def _take_tokens(xp, x, src, axis, T, like, src_dev=None, kind=None, gather=None):
    """``x`` re-laid out along its token axis (``axis``: -2 or -1) at the positions ``src`` (``T``: 0).
    src_dev: ``src`` already on the device (one host-to-device copy for all inputs: each copy from
    host memory waits for the device's queue). kind: ``(every src < T, src == arange(T))`` if known
    (:func:`_rewrite_layout`: no ``T``-sized host pass per input), else None. gather: the cupy
    backend's row gather (:func:`_row_gather`; ``src_dev`` int32 with -1 for ``T``), or None."""
    if x.shape[axis] == 0 or src.shape[0] == 0:
        shape = list(x.shape)
        shape[axis] = src.shape[0]
        return xp.zeros(tuple(shape), dtype=x.dtype, device=device_of(x))
    idx = _index(xp, src, like) if src_dev is None else src_dev
    inside, same = kind if kind is not None else (bool(np.all(src < T)), None)
    if gather is not None:
        return x if same else gather(x, idx, src.shape[0], axis == -1)
    if inside:
        if same or (same is None and np.array_equal(src, np.arange(T))):
            return x
        return xp.take(x, idx, axis=x.ndim + axis)
    shape = list(x.shape)
    shape[axis] = 1
    ext = xp.concat([x, xp.zeros(tuple(shape), dtype=x.dtype, device=device_of(x))], axis=axis)
    return xp.take(ext, idx, axis=x.ndim + axis)


#: CUDA arrays outside autograd: the rewrite's gathers as one launch each (the cupy backend's
#: ``take_rows``); False: torch / CuPy array operations (for A/B timing)
ROW_GATHER = True


def _row_gather(arrays):
    """The cupy backend's ``take_rows`` when it serves every one of ``arrays`` (CuPy arrays or CUDA torch
    tensors outside autograd, C-contiguous; CuPy importable), else None."""
    if not ROW_GATHER or not arrays or not all(type(x).__module__.startswith(("torch", "cupy")) for x in arrays):
        return None
    from . import backends

    if not backends.get("cupy").status()[0]:  # no CuPy or no device (probed once): the array operations
        return None
    from .backends.cupy import _arrays

    return _arrays.take_rows if _arrays.rows_gatherable(arrays) else None


def _reset(xp, a, starts, batch, T_pad, dtype, like, mask_dev=None):
    """Log decay ``a`` (``(..., T_pad)`` or None: zeros) with ``-inf`` at the segments' first tokens.
    mask_dev: those tokens' mask (T_pad,) already on the device, or None."""
    if mask_dev is None:
        mask = np.zeros(T_pad, dtype=bool)
        mask[starts] = True
        mask_dev = _upload.mask(xp, mask, like)
    m = mask_dev
    # a fill on the device, not ``asarray`` of a host scalar: on CUDA that is a blocking copy, which
    # waits for the gathers queued before it (session 13's trace: the launches after it exposed)
    ninf = xp.full((), -math.inf, dtype=dtype, device=device_of(like))
    if a is None:
        a = xp.zeros((), dtype=dtype, device=device_of(like))
    return xp.broadcast_to(xp.where(m, ninf, a), batch + (T_pad,))


def pack(op, xp, args, off, batch, native=False, offsets=None, mapped=False):
    """The packed call as one ordinary call.

    op: the operator's ``Op``; args: its validated inputs (broadcast to ``batch``, compute dtype).
    native: the backend computes the segments itself (``Backend.reset_ops``): the call is left as it
    is and gets ``segments=`` (:class:`Streams`, with ``offsets`` (N,) the incoming streams'
    offsets; None: fresh streams). mapped: its kernels read the aligned layout through a token map
    (``Backend.layout_ops``; no state): the call is left as it is and gets ``token_map=``.
    Returns ``(run_op, run_args, finish, cum_any, kw)``: the operator whose implementation computes
    it, its inputs in that ``Op``'s order,
    ``finish(out) -> out (..., T, d_v)`` taking the packed tokens' outputs back (None: as it is),
    the segment-restarting cumulative ``any`` for the non-finite marks of that call, and the
    implementation's extra keywords."""
    T = args[0].shape[-2]
    if native:
        streams = Streams(off, np.zeros(off.shape[0] - 1, np.int64) if offsets is None else offsets)
        return op, args, None, streams.cum_any, {"segments": streams}
    if op.name not in LEVEL_AXES:
        raise ValueError(f"{op.name} with cu_seqlens runs on backends that compute packed segments themselves "
                         "(Backend.reset_ops)")
    if mapped:
        return op, args, None, _segment_cum_any(off[:-1][np.diff(off) > 0], T), {"token_map": token_map(off)}
    run_args, finish, starts, T_pad = rewrite(op, xp, args, off, batch)
    return op, run_args, finish, _segment_cum_any(starts, T_pad), {}


def rewrite(op, xp, args, off, batch, offsets=None):
    """The log-linear inputs ``args`` (``op.inputs`` order) laid out as one stream (facts 1 and 2):
    ``(run_args, finish, starts, T_pad)``, with ``finish(x)`` taking ``x`` (..., T_pad, d) back to
    the packed tokens (..., T, d) (``axis=-1``: ``x`` (..., T_pad)) and ``starts`` the laid-out
    segments' first tokens. offsets: (N,) positions at which continued streams resume (their new
    tokens among themselves; what they read of their incoming state is ``lsattn._ll_packed``'s)."""
    q = args[0]
    T, dtype = q.shape[-2], q.dtype
    if offsets is None:  # fresh streams: the host layout of these offsets, built once
        T_pad, src, back, starts, host, host32, same = _cached(("rewrite", off.tobytes()), lambda: _rewrite_layout(off, None))
    else:
        T_pad, src, back, starts, host, host32, same = _rewrite_layout(off, offsets)
    gather = _row_gather([x for x in args if x is not None])
    host = host if gather is None else host32

    def upload():  # the gather indices and the reset mask in ONE host-to-device copy
        dev = _index(xp, host, q, host.dtype)
        return dev[:T_pad], dev[T_pad : T_pad + T], dev[T_pad + T :] == 1

    # fresh streams: kept per layout, device and stream (issue 19: the pinned upload of ~0.8 MB per
    # call left the device idle before the first gather), keyed by the offsets' values as the host layout
    key = ("rewrite", off.tobytes(), host.dtype.str) if offsets is None else None
    src_dev, back_dev, mask_dev = _upload.kept(key, q, upload)
    run_args = []
    for (name, role), x in zip(op.inputs, args):
        if x is None:
            run_args.append(x)
            continue
        axis = -1 if role == "tok" else -2
        x = _take_tokens(xp, x, src, axis, T, q, src_dev, (T_pad == T, same), gather)  # T_pad > T: gaps (src == T)
        if role == "lev":
            L = x.shape[-1]
            need = num_levels(T_pad)
            if L < need:  # levels only cross-segment pairs (weight 0 by the reset) reach
                x = xp.concat([x, xp.zeros(tuple(x.shape[:-1]) + (need - L,), dtype=dtype, device=device_of(q))], axis=-1)
            if offsets is not None:
                x = _map_levels(xp, x, *_level_map(off, offsets, back))
        run_args.append(x)
    i = [n for n, _ in op.inputs].index("log_decay")
    run_args[i] = _reset(xp, run_args[i], starts, batch, T_pad, dtype, q, mask_dev)

    def finish(out, axis=-2):
        g = gather if gather is not None and _row_gather([out]) is not None else None
        return _take_tokens(xp, out, back, axis, T_pad, q, back_dev, (True, same), g)

    return run_args, finish, starts, T_pad


def _rewrite_layout(off, offsets):
    """:func:`layout`'s ``(T_pad, src, back, starts)``, the host index :func:`rewrite` uploads (``src``,
    ``back`` and the reset mask (T_pad,), 1 at ``starts``, in one int64 array; and as int32 with the
    gaps' ``src`` at -1, for the row gathers of :func:`_row_gather`) and whether the layout is the
    identity (shared by the calls with these offsets: nothing writes them; the indices left
    writeable, which torch's pinned upload would otherwise copy first)."""
    T_pad, src, back, starts = layout(off, offsets)
    T = back.shape[0]
    mask = np.zeros(T_pad, dtype=np.int64)
    mask[starts] = 1
    for x in (src, back, starts):
        x.flags.writeable = False
    same = T_pad == src.shape[0] == T and bool(np.array_equal(back, np.arange(T_pad)))
    host = np.concatenate([src, back, mask])
    host32 = np.concatenate([np.where(src < T, src, -1), back, mask]).astype(np.int32)
    return T_pad, src, back, starts, host, host32, same


def _map_levels(xp, lam, g, level, true_level):
    """Level weights ``lam`` (..., T_pad, L) with column ``level[m]`` of token ``g[m]`` read from
    column ``true_level[m]`` (one gather; ``lam`` itself where nothing moves)."""
    if g.size == 0:
        return lam
    T_pad, L = lam.shape[-2], lam.shape[-1]
    idx = np.arange(T_pad * L, dtype=np.int64).reshape(T_pad, L)
    idx[g, level] = g * L + true_level
    flat = xp.reshape(lam, tuple(lam.shape[:-2]) + (T_pad * L,))
    return xp.reshape(xp.take(flat, _index(xp, idx.reshape(-1), lam), axis=flat.ndim - 1), lam.shape)


def levels_needed(off, offsets):
    """The level weights' ``L`` that per-segment calls need: ``num_levels(offsets[i] + n_i)`` at most
    (segments of length 0 need none)."""
    ends = (offsets + np.diff(off))[np.diff(off) > 0]
    return num_levels(int(ends.max())) if ends.size else 0


def _segment_cum_any(starts, n):
    """``(xp, m, axis) -> any of m from the start of its segment to i`` along ``axis`` of length ``n``
    (the non-finite marks of :mod:`lsattn._nonfinite`: a poisoned token poisons its own segment only;
    its index is built only when a call has non-finite inputs)."""

    def cum_any(xp, m, axis):
        mask = np.zeros(n, dtype=bool)
        mask[starts] = True
        first = np.maximum.accumulate(np.where(mask, np.arange(n), 0)) if n else np.zeros(0, dtype=np.int64)
        c = xp.cumulative_sum(xp.astype(m, xp.int32), axis=axis)
        before = c - xp.astype(m, xp.int32)  # exclusive sums
        base = xp.take(before, _index(xp, first, m), axis=m.ndim + axis)  # at each token's segment start
        return c - base > 0

    return cum_any


# ---- streams: packed calls with state= / return_state=True -----------------------------------------

class Streams:
    """Packed segments that a backend computes itself (``Backend.reset_ops``), each its own stream:
    ``starts`` (N + 1,) int64, the offsets ``cu_seqlens``; ``offsets`` (N,) int64, the position at
    which each stream continues (its incoming state's offset; 0: a fresh stream). Also the
    per-segment forms of the non-finite marks (:mod:`lsattn._nonfinite`). The ``(T,)`` host tables
    (``seg``, ``positions``) are built when first read: a call with finite inputs and a backend that
    reads only ``starts`` and ``offsets`` builds none (issue 19: ~0.3-0.7 ms of NumPy per 64K call,
    before the first kernel of a packed call)."""

    def __init__(self, starts, offsets):
        self.starts, self.offsets = starts, offsets
        lens = np.diff(starts)
        self.cum_any = _segment_cum_any(starts[:-1][lens > 0], int(starts[-1]))

    @functools.cached_property
    def seg(self):
        """(T,) int64: the segment of each token."""
        lens = np.diff(self.starts)
        return np.repeat(np.arange(lens.shape[0]), lens)

    @functools.cached_property
    def positions(self):
        """(T,) int64: each token's position in its own stream."""
        return self.offsets[self.seg] + np.arange(self.starts[-1], dtype=np.int64) - self.starts[:-1][self.seg]

    def any(self, xp, m, axis):
        """``m`` (token axis ``axis``: -1 or -2) reduced to one ``any`` per segment (the N axis there)."""
        shape = list(m.shape)
        shape[axis] = 1
        c = xp.cumulative_sum(xp.astype(m, xp.int32), axis=axis)
        c = xp.concat([xp.zeros(tuple(shape), dtype=c.dtype, device=device_of(m)), c], axis=axis)
        ax = m.ndim + axis
        return xp.take(c, _index(xp, self.starts[1:], m), axis=ax) - xp.take(c, _index(xp, self.starts[:-1], m), axis=ax) > 0

    def take(self, xp, m, axis):
        """Per-segment ``m`` (N axis ``axis``) at each token of its segment (the token axis there)."""
        return xp.take(m, _index(xp, self.seg, m), axis=m.ndim + axis)


def streams(call, op, arrays, off, state, return_state, batch):
    """The packed call with ``state=`` and/or ``return_state=True``: segment ``i`` continues stream
    ``i`` of ``state`` (a packed state, see the module docstring) or starts a fresh one.

    call: ``(segment inputs, state or None) -> (out, state)``, an ordinary call with
    ``return_state=True``; arrays: the inputs as given (``op.inputs`` order, None for an omitted one);
    batch: their broadcast batch axes. Returns ``out`` or ``(out, packed state)``."""
    N = off.shape[0] - 1
    olds = [None] * N if state is None else split(state, op, batch, N)
    outs, news = [], []
    for i, (s0, s1) in enumerate(zip(off[:-1].tolist(), off[1:].tolist())):
        seg = [None if x is None else x[..., s0:s1] if role == "tok" else x[..., s0:s1, :]
               for (_, role), x in zip(op.inputs, arrays)]
        out, new = call(seg, olds[i])
        outs.append(out)
        news.append(new)
    xp = array_api_compat.array_namespace(outs[0])
    out = xp.concat(outs, axis=-2) if N > 1 else outs[0]
    return (out, merge(news, batch)) if return_state else out


def split(state, op, batch, N):
    """The ``N`` per-segment States of a packed ``state`` (checked against ``batch`` and ``N``)."""
    import dataclasses

    offsets = check_packed(state, op, batch, N).tolist()
    axis = len(batch)
    out = []
    for i, o in enumerate(offsets):
        one = dataclasses.replace(state, offset=o, batch_shape=tuple(batch),
                                  tensors={name: t[(slice(None),) * axis + (i, Ellipsis)] for name, t in state.tensors.items()})
        out.append(with_level_slots(one, o.bit_length()) if op.name in LEVEL_AXES else one)
    return out


def packed(state, op, batch, N):
    """``(state, offsets)``: a packed ``state`` checked against ``batch`` and ``N``, its log-linear level
    axes cut to the ``bit_length`` of its largest offset (a view), and its offsets (N,) int64."""
    offsets = check_packed(state, op, batch, N)
    if op.name in LEVEL_AXES:
        state = with_level_slots(state, int(offsets.max(initial=0)).bit_length())
    return state, offsets


def check_packed(state, op, batch, N):
    """The offsets (N,) int64 of a packed ``state`` after checking it against ``batch`` and ``N``
    (errors name ``state``)."""
    n = packed_streams(state) if isinstance(state, State) else None
    if n is None:
        if isinstance(state, State) and state.op == op.name:
            raise ValueError(f"state holds one stream (offset {state.offset}) but cu_seqlens has {N} segments: pass "
                             f"the state of a packed call ({op.name}(..., cu_seqlens=..., return_state=True)) with "
                             f"{N} segments")
        check_state(state, op.name, None, (), 0, 0, None)  # not a State / another operator's: says so
    if state.op != op.name:
        check_state(state, op.name, None, (), 0, 0, None)
    if n != N:
        raise ValueError(f"state holds {n} packed streams but cu_seqlens has {N} segments")
    if tuple(state.batch_shape) != tuple(batch) + (N,):
        raise ValueError(f"state has batch shape {state.batch_shape} but the inputs have batch axes {tuple(batch)} and "
                         f"cu_seqlens {N} segments: expected {tuple(batch) + (N,)}")
    offsets = np.asarray(state.offset).tolist()
    if any(o < 0 for o in offsets):
        raise ValueError(f"state.offset must hold offsets >= 0, got {offsets}")
    axis = len(batch)
    for name, t in (state.tensors.items() if isinstance(state.tensors, dict) else ()):
        if not array_api_compat.is_array_api_obj(t) or tuple(t.shape[:axis + 1]) != tuple(batch) + (N,):
            raise ValueError(f"state tensor {name!r} must have leading axes {tuple(batch) + (N,)} (batch, streams), got "
                             f"{getattr(t, 'shape', type(t).__name__)}")
    if op.name in LEVEL_AXES and max(offsets).bit_length() > level_slots_of(state):
        raise ValueError(f"state tensors have {level_slots_of(state)} level slots, fewer than the "
                         f"{max(offsets).bit_length()} that offset {max(offsets)} needs")
    return np.asarray(state.offset, dtype=np.int64)


def merge(states, batch):
    """One packed State from per-segment States (batch shape ``batch``): stacked along a new axis
    after the batch axes, log-linear level axes padded with empty slots to the longest."""
    import dataclasses

    first = states[0]
    if first.op in LEVEL_AXES:
        slots = max(level_slots_of(s) for s in states)
        states = [with_level_slots(s, slots) for s in states]
    xp = array_api_compat.array_namespace(*first.tensors.values())
    tensors = {name: xp.stack([s.tensors[name] for s in states], axis=len(batch)) for name in first.tensors}
    offset = np.asarray([int(s.offset) for s in states], dtype=np.int64)
    return dataclasses.replace(first, offset=offset, batch_shape=tuple(batch) + (len(states),), tensors=tensors)
