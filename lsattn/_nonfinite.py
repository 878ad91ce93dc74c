"""Non-finite inputs: one rule for every operator and backend, applied by the prologue.

Legitimate infinities are the ``-inf`` an operator lists in ``Op.neg_inf`` (a zero: ``exp(-inf) =
0``): a hard-reset log decay, a zero key or query feature of the exp-kernel operators, a zero value
``log_v``, a level switched off. The operators compute with them directly, except the arguments
in ``Op.clamp``, where the prologue replaces ``-inf`` by the finite stand-in ``-finfo.max / 8``
(its ``exp`` is exactly 0, sums of a few stay finite), so no backend meets ``-inf - -inf``.

Every other non-finite entry (NaN, ``+inf``, ``-inf`` elsewhere) *poisons* the outputs it reaches,
by its argument's role (``_prologue``), from its token on:

- ``"q"`` (query at token s), ``"lev"`` (level weight of row s, at a level that row uses,
  ``l <= bit_length(s)``): output row s, every feature;
- ``"k"``, ``"tok"`` (key, ``log_decay``, ``beta`` at token s): rows ``t >= s``, every feature,
  and the whole returned state;
- ``"v"`` (value feature j at token s): rows ``t >= s``, feature j, and feature j of the state.

Non-causal calls: a poisoned key reaches every row, a poisoned value its feature in every row. A
state tensor entry that is not finite poisons, on every row, its feature (the tensors listed in
``Op.value_state``, whose last axis is ``d_v``) or everything (the others).

Poisoned outputs are NaN, whatever the formula would give (``+inf`` values included: NaN is what
an ``isnan`` check catches). The backends never see a poisoned entry: it is replaced by 0 before
the call, which changes only outputs that are NaN anyway, so outputs before the token are exactly
those of the stream cut at that token, on every backend. NaN is sticky: a later ``-inf`` decay does
not clear it (the state carries it).

Legitimate ``-inf`` can leave a normalised output without any weight (0/0, NaN in
``lsattn.reference``): a row of ``loglinear_log_attention`` whose every readable level is switched
off, a row of the exp-kernel operators whose every kernel weight is 0 (no feature live in its query
and in a key it sees). The backends compute such rows from the finite stand-ins (an average, not
NaN); :func:`undefined_rows` finds them and the prologue writes NaN there, on every backend.

The checks read the device once per call on CUDA arrays (:func:`checks`: every input and state
tensor finite, and ``undefined_rows``' flag, from each array's minimum and maximum, stacked and
copied to the host together: from one kernel launch per dtype, :data:`KERNEL`; arrays not at one flat
stride from one reduction each). The prologue launches the kernels on the inputs as they are before it
waits for that copy; when some input is not finite it drops those results and computes again from
the sanitised inputs. Applying masks unconditionally instead (no read at all) measured slower on an
H200 at every size (``benchmarks/NOTES.md``, session 9, s9c17): the read costs a short wait, the
masks' passes real bandwidth.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import sys
import threading
import weakref

import array_api_compat
import numpy as np

from ._validate import device_of
from ._upload import _stream_key

__all__ = ["checks", "kernel_checks", "KernelCheck", "prepare", "undefined_rows", "where_undefined", "canonical_shifts"]


def _traced(x):
    """True for a JAX tracer (no concrete values: masks must stay lazy)."""
    jax = sys.modules.get("jax")
    return jax is not None and isinstance(x, jax.core.Tracer)


def _cum_any(xp, m, axis):
    """``m[..., :i + 1].any()`` along ``axis``."""
    return xp.cumulative_sum(xp.astype(m, xp.int32), axis=axis) > 0


def _or(a, b):
    return b if a is None else (a if b is None else a | b)


def _row_levels_used(offset, T, L, xp):
    """(T, L) bool: level ``l`` is used by row ``offset + t`` (``l <= bit_length(offset + t)``);
    NumPy for an int offset, ``xp`` arithmetic for a traced (JAX) one. ``offset`` may be a
    function returning the (T,) positions (computed only here, when some level weight is not finite)."""
    if callable(offset):
        offset = offset()
    if isinstance(offset, np.ndarray):  # packed streams: the (T,) absolute position of each token
        used = np.frexp(offset.astype(np.float64))[1]  # bit_length, exact below 2^53
        return np.arange(L)[None, :] <= used[:, None]
    if not isinstance(offset, int):
        from .fenwick import _bit_length

        rows = _bit_length(xp, offset + xp.arange(T, dtype=xp.asarray(offset).dtype))
        return xp.arange(L, dtype=rows.dtype)[None, :] <= rows[:, None]
    used = np.array([(offset + t).bit_length() for t in range(T)], dtype=np.int64)
    return np.arange(L)[None, :] <= used[:, None]


def _row_levels_read(offset, T, L, xp):
    """(T, L) bool: row ``offset + t`` reads level ``l`` (``l = 0``, its own token; ``l >= 1``: the
    keys ``s < P`` with ``bit_length(P XOR s) = l``, which exist when bit ``l - 1`` of ``P`` is set).
    ``offset`` as in :func:`_row_levels_used`."""
    if callable(offset):
        offset = offset()
    lev = np.arange(L)
    shift = np.clip(lev - 1, 0, 62)  # positions stay below 2^62: higher bits are clear
    if isinstance(offset, (int, np.ndarray)):
        P = np.asarray(offset, dtype=np.int64) + (0 if isinstance(offset, np.ndarray) else np.arange(T, dtype=np.int64))
        return (lev == 0)[None, :] | (((P[:, None] >> shift[None, :]) & 1) == 1)
    P = offset + xp.arange(T, dtype=xp.asarray(offset).dtype)  # traced (JAX)
    bits = xp.bitwise_and(xp.bitwise_right_shift(P[:, None], xp.asarray(shift, dtype=P.dtype)[None, :]), 1) == 1
    return xp.asarray(lev == 0)[None, :] | bits


class Checked:
    """The answers of :func:`checks`: ``finite`` (every input and state tensor finite, ``-inf`` where
    it passes as it is) and ``own_off`` (some row's own level weight is ``-inf``). The extrema they
    come from are copied to the host without waiting: the first access waits for that copy, so the
    caller can launch its kernels first."""

    def __init__(self, wait, bounds, own):
        self._wait, self._bounds, self._own = wait, bounds, own
        self._finite = self._own_off = None

    def _answer(self):
        if self._finite is None:
            # (2 n + own,): each array's minimum and maximum, then level 0's minimum
            v = self._wait()
            lo, hi = v[0:2 * len(self._bounds):2], v[1:2 * len(self._bounds):2]
            ok = [(lo[i] > -math.inf if low is None else lo[i] >= low) and (high is None or hi[i] < high)
                  for i, (low, high) in enumerate(self._bounds)]  # NaN compares False
            self._finite = all(ok)
            self._own_off = self._own and not v[-1] > -math.inf
        return self._finite, self._own_off

    @property
    def finite(self):
        return self._answer()[0]

    @property
    def own_off(self):
        return self._answer()[1]


def checks(op, args, state, xp, defer=False, ready=None):
    """:class:`Checked` of a call's inputs on a CUDA device (CuPy arrays, CUDA torch tensors): every
    array's minimum and maximum stacked and copied to the host in one read, which is not waited for
    here; None for other arrays (``prepare`` and ``undefined_rows`` then read for themselves).
    args: the inputs in ``op.inputs`` order, as ``prepare`` receives them. defer (with :data:`DEFER`):
    only an event recorded on the caller's stream now, the rest at the first access (:class:`Deferred`);
    ready: that event (``_extrema.Mark``), which the reads wait on instead of the stream's work so far."""
    present = [a for a in args if a is not None] + ([] if state is None else list(state.tensors.values()))
    if not _cuda_checks(xp, present):
        return None
    torch = sys.modules.get("torch") if array_api_compat.is_torch_namespace(xp) else None
    if defer and DEFER and KERNEL and (torch is None or present[0].is_cuda):
        from .backends.cupy._extrema import Mark

        mark = Mark(*_stream_key(present[0])[1:])
        return Deferred(lambda: checks(op, args, state, xp, ready=mark))
    passes = _passes(op)
    named = [(x, -math.inf if name in passes else None) for (name, _), x in zip(op.inputs, args) if x is not None]
    named += [(t, None) for t in ([] if state is None else state.tensors.values())]
    named = [(x, low) for x, low in named if math.prod(x.shape) > 0]
    lam = next((x for (_, role), x in zip(op.inputs, args) if role == "lev"), None) if op.normalised else None
    # level 0 (its own token) is read by every row: its minimum above -inf (not read without rows, or
    # at T = 0 with an empty level axis too)
    own = lam is not None and math.prod(lam.shape) > 0
    bounds = [(low, math.inf) for _, low in named]
    # (tests check CPU torch tensors as CUDA ones: those take the reductions)
    if KERNEL and named and (torch is None or named[0][0].is_cuda):
        got = _kernel_checks(xp, torch, named, lam[..., 0] if own else None, ready)
        if got is not None:
            return Checked(got, bounds, own)
    with contextlib.nullcontext() if torch is None else torch.no_grad():  # values only: nothing to record
        every = [e for x, _ in named for e in _extrema(xp, x)]
        every += [_extrema(xp, lam[..., 0], True)] if own else []
        wait = _read(xp, torch.stack(every) if torch is not None else xp.stack(every)) if every else (lambda: np.zeros(0))
    return Checked(wait, bounds, own)


class Deferred:
    """:class:`Checked` made at the first access, by ``make``: the prologue reads ``finite`` after the call's
    kernels were launched, so the host reaches the first of them without the checks' own host work (~0.25 ms
    on an H200's host, ``benchmarks/NOTES.md``, s15f17 / s16d17). Its reads wait on an event recorded when the
    call began (the inputs' producers), not on the kernels queued since; the answer is then waited for at once
    (the reads run beside the call's kernels). Arrays not at one flat stride take the reductions, which then
    run after those kernels on the caller's stream. An implementation may make it earlier, after its first
    kernel's launch (:func:`launch_pending`): the checks' host work then overlaps that kernel, and the answer
    is ready when the prologue asks."""

    def __init__(self, make):
        self._make, self._got = make, None
        _PENDING.latest = weakref.ref(self)  # (weak: a call that raised keeps no inputs alive)

    def _checked(self):
        if self._got is None:
            if getattr(_PENDING, "latest", None) is not None and _PENDING.latest() is self:
                _PENDING.latest = None
            self._got = self._make()
        return self._got

    @property
    def finite(self):
        return self._checked().finite

    @property
    def own_off(self):
        return self._checked().own_off


_PENDING = threading.local()  # the thread's latest Deferred not yet made (a weak reference)


def launch_pending():
    """Make the reads of this thread's latest :class:`Deferred` now, if it has not been (without waiting for
    them): ``loglinear_log_attention``'s CuPy implementation calls it right after its first kernel's launch."""
    ref = getattr(_PENDING, "latest", None) if EARLY else None
    d = None if ref is None else ref()
    if d is not None:
        d._checked()


#: :func:`launch_pending` makes the pending checks (False: they wait for the prologue's first access; timing A/B)
EARLY = True

#: ``checks(defer=True)`` (implementations with ``defer_checks``: ``loglinear_log_attention`` on the CuPy
#: kernels) defers its work; False: made at the call's start as for every other implementation (timing A/B)
DEFER = True


#: CUDA arrays: every extremum from one kernel launch per dtype reading raw pointers
#: (``lsattn.backends.cupy._extrema``) instead of one torch / CuPy reduction per array, a stack, a
#: copy and an event; arrays whose entries are not at one flat stride (transposed, broadcast views)
#: keep the reductions. Measured against torch's multi-tensor ``_foreach_norm`` / ``_foreach_max``
#: (removed) in ``benchmarks/NOTES.md``, session 12, s12e17
KERNEL = True


def _kernel_checks(xp, torch, named, own, ready=None):
    """``wait`` of :class:`Checked` from ``lsattn.backends.cupy._extrema`` (each array's minimum and
    maximum, then ``own``'s minimum), or None when an array is not at one flat stride; ready: as
    :func:`checks`'."""
    from .backends.cupy import _arrays, _extrema

    arrays = [x for x, _ in named] + ([] if own is None else [own])
    flats = [_extrema.flat(x) for x in arrays]
    if any(f is None for f in flats):
        return None
    import cupy

    if torch is not None:
        dev, ptr = _stream_key(arrays[0])[1:]
        stream = _arrays._external_stream(ptr, dev)
    else:
        dev, stream, ptr = arrays[0].device.id, contextlib.nullcontext(), None
    with cupy.cuda.Device(dev), stream:
        wait = _extrema.extrema(flats, dev, cupy.cuda.get_current_stream().ptr if ptr is None else ptr, ready)
    n = len(named)

    def values():
        r = wait()  # (arrays, 2)
        return np.concatenate([r[:n].reshape(-1), r[n:, 0]])

    return values


def _distinct(x):
    """A torch tensor ``x`` without its broadcast (stride-0) axes' copies: the entries it holds."""
    if 0 in x.stride():
        x = x[tuple(0 if st == 0 and n > 1 else slice(None) for st, n in zip(x.stride(), x.shape))]
    return x


_FLAG = threading.local()  # each host thread's KernelCheck flag (a call reads its flag before it returns)


class KernelCheck:
    """:class:`Checked` answered by the backend's kernels, which read every input entry anyway (an
    implementation with ``checks_inputs``; ``loglinear_gated_delta``'s ``gd_forms``): the implementation
    receives it as ``check=``, passes :meth:`pointer` (an int32 its kernels set to 1 on a non-finite
    entry; ``-inf`` passing where ``Op.neg_inf`` allows it, not clamped) to them and calls
    :meth:`launched` after them; CPU kernels (the ``numba`` backend's chunked exp-kernel) count the
    entries and the implementation calls :meth:`found`. A path that never calls either (no kernel read
    the inputs) is answered by :func:`checks` (NumPy: :func:`_all_finite`) at the first access."""

    own_off = False  # only for operators that are not normalised (``kernel_checks``)

    def __init__(self, fallback):
        self._fallback, self._wait, self._finite = fallback, None, None

    def pointer(self):
        """The device address of a zeroed int32 in pinned host memory (unified addressing: the host's
        address on every device), the thread's own: kernels set it directly, no device memset or copy."""
        buf = getattr(_FLAG, "buf", None)
        if buf is None:
            import cupyx

            buf = _FLAG.buf = cupyx.empty_pinned((1,), np.int32)
            _FLAG.addr = buf.ctypes.data
        buf[0] = 0  # the thread's previous call read it before returning
        self._buf = buf
        return _FLAG.addr

    def launched(self, stream=None):
        """The kernels that set the flag are queued on CuPy's current stream (or on ``stream``, a raw
        CUDA stream handle): the answer waits for them."""
        import cupy

        done = cupy.cuda.Event(disable_timing=True)
        if stream is None:
            done.record()
        else:
            cupy.cuda.runtime.eventRecord(done.ptr, stream)
        self._wait = lambda: (done.synchronize(), int(self._buf[0]))[1]

    def found(self, count):
        """The answer of CPU kernels (done when they return): ``count`` non-finite entries read."""
        self._finite = not count

    @property
    def finite(self):
        if self._finite is None:
            self._finite = (not self._wait()) if self._wait is not None else self._fallback().finite
        return self._finite


class _Answer:
    """:class:`Checked`'s ``finite`` read on the host (NumPy: :func:`_all_finite`)."""

    def __init__(self, finite):
        self.finite = finite


def kernel_checks(op, args, state, xp):
    """A :class:`KernelCheck` where :func:`checks` would read a CUDA device, or for NumPy arrays (CPU
    kernels answer with :meth:`KernelCheck.found`; else :func:`_all_finite`, the pass ``prepare``
    would make), for a call without state of an operator that is not normalised; else :func:`checks`'
    answer."""
    present = [a for a in args if a is not None]
    if state is None and not op.normalised:
        if _cuda_checks(xp, present):
            return KernelCheck(lambda: checks(op, args, state, xp))
        if present and all(type(a) is np.ndarray for a in present):
            return KernelCheck(lambda: _Answer(_all_finite(xp, _named(op, args))))
    return checks(op, args, state, xp)


def _extrema(xp, x, low_only=False):
    """``(min, max)`` of ``x`` as 0-d arrays on its device (``low_only``: the minimum alone); both
    propagate NaN (torch: one pass for both)."""
    if array_api_compat.is_torch_array(x):
        import torch

        # a broadcast axis (stride 0) holds one copy of its entries: read that one; full reductions
        # of a non-contiguous tensor copy it first (16 MiB for grouped bf16 heads at 8K), reductions
        # over explicit dims do not
        x = _distinct(x)
        if low_only or not x.is_contiguous():
            dims = tuple(range(x.ndim))
            lo = torch.amin(x, dim=dims)
            return lo if low_only else (lo, torch.amax(x, dim=dims))
        return torch.aminmax(x)
    return xp.min(x) if low_only else (xp.min(x), xp.max(x))


def _clean(xp, x, low=None, high=math.inf):
    """Whether every entry of ``x`` is at or above ``low`` (None: above -inf) and below ``high``
    (None: no bound), NaN failing, from its extrema (:class:`Checked`'s rule); None for an empty ``x``.
    Reads the device (the tests' check of that rule)."""
    if math.prod(x.shape) == 0:
        return None
    wait = _read(xp, xp.stack(_extrema(xp, x)))
    return Checked(wait, [(low, high)], False).finite


def _read(xp, x):
    """``() -> NumPy copy of x`` (bfloat16 as float32): on a CUDA device the copy is queued on the current stream
    into pinned memory and the function waits for it; elsewhere a plain copy."""
    if array_api_compat.is_torch_array(x):
        import torch

        if not x.is_cuda:
            host = (x.float() if x.dtype == torch.bfloat16 else x).numpy()  # NumPy has no bfloat16
            return lambda: host
        pinned = x.to("cpu", non_blocking=True)  # pinned (torch's caching host allocator), asynchronous
        done = torch.cuda.Event()
        done.record(torch.cuda.current_stream(x.device))  # the copy's stream: x's device's, not the current device's
        return lambda: (done.synchronize(), (pinned.float() if pinned.dtype == torch.bfloat16 else pinned).numpy())[1]
    import cupy
    import cupyx

    with x.device:  # the copy and the event on x's device's current stream
        pinned = cupyx.empty_pinned(x.shape, x.dtype)
        x.get(out=pinned, blocking=False)
        done = cupy.cuda.Event(disable_timing=True)
        done.record()
    return lambda: (done.synchronize(), pinned)[1]


def _passes(op):
    """The inputs whose ``-inf`` passes as it is (allowed, not clamped: a log decay's hard reset)."""
    return {name for name in op.neg_inf if name not in op.clamp}


def _named(op, args):
    """``(x, minus_inf_ok)`` of :func:`_all_finite` for the inputs ``args`` (``op.inputs`` order)."""
    passes = _passes(op)
    return [(x, n in passes) for (n, _), x in zip(op.inputs, args) if x is not None]


def _cuda_checks(xp, arrays):
    """Whether ``arrays`` are CuPy arrays or torch tensors all on a CUDA device (:func:`checks`)."""
    if array_api_compat.is_cupy_namespace(xp):
        return True
    return (array_api_compat.is_torch_namespace(xp) and bool(arrays)
            and all(getattr(a, "is_cuda", False) for a in arrays))


def undefined_rows(op, args, xp, offset, state=None, causal=True, segments=None, own_off=None):
    """The rows whose weights are all 0 (0/0): NaN on every backend, as in ``lsattn.reference``.

    Normalised operators (``Op.normalised``: ``loglinear_log_attention``, a softmax over the
    level-weighted keys): (..., T) bool, or None when there is none, the rows whose every readable
    level weight is ``-inf`` (``docs/hierarchical.md``). One host read for concrete arrays (none
    when no row has its own level switched off, or ``own_off``, that flag read by :func:`checks`, is
    given).

    The exp-kernel operators (``q`` in ``Op.clamp``, not normalised): a function of the inputs as
    :func:`prepare` returns them, for :func:`where_undefined` (:func:`_zero_weight_rows`). Other
    operators (unnormalised): None.

    args: the inputs in ``op.inputs`` order (before :func:`prepare`); offset: the rows' positions
    (an int, a traced offset, a (T,) NumPy array of packed streams' positions, or a function
    returning it); state: the incoming State (packed streams: batch axes then N); segments: the
    offsets ``cu_seqlens`` (N + 1,) int64 of packed segments, or None."""
    if not op.normalised:
        if "q" not in op.clamp:
            return None
        roles = [role for _, role in op.inputs]
        q, k = args[roles.index("q")], args[roles.index("k")]
        return lambda prepared: _zero_weight_rows(xp, q, k, prepared, state, causal, segments)
    lam = next(x for (_, role), x in zip(op.inputs, args) if role == "lev")
    T, L = lam.shape[-2], lam.shape[-1]
    if T == 0:
        return None
    if own_off is not None and not own_off:  # the flag read by ``checks``: no mask to build (a launch on CUDA)
        return None
    off = lam == -math.inf
    if own_off is None:
        own = xp.any(off[..., 0])  # level 0 (its own token) is read by every row
        lazy = array_api_compat.is_dask_array(lam) or _traced(own) or _traced(offset)  # (under jit even constants trace)
        if not lazy and not bool(own):
            return None
    read = _row_levels_read(offset, T, L, xp)
    if isinstance(read, np.ndarray):
        read = _constant(xp, lam, read)
    return xp.all(off | ~read, axis=-1)


def _zero_weight_rows(xp, q, k, prepared, state, causal, segments):
    """(..., T) bool or None: the rows ``t`` of ``log_attention`` / ``exp_kernel_attention`` whose
    every weight ``w(t, s) = sum_i exp(q_ti + k_si)`` is 0, ``s`` over the keys the row sees (its
    segment's up to ``t``, the incoming state's, or all keys when non-causal): no feature ``i`` with
    ``q_ti > -inf`` and some seen ``k_si > -inf``. A state's feature ``i`` holds a key above ``-inf``
    when its running maximum ``m_i`` is above the stand-in ``-finfo.max / 8`` of the inputs' dtype
    (keys at or below it count as ``-inf`` there). O(T d_k), lazy: no host read.

    q, k: the inputs before :func:`prepare`; prepared: the inputs it returned (q, k first). Left as
    they were (concrete arrays), q and k hold no ``-inf`` (it clamps each), every row sees its own
    key with every feature above ``-inf``, and none is undefined: None, nothing computed."""
    if q.shape[-2] == 0 or (prepared[0] is q and prepared[1] is k):
        return None
    inf = math.inf
    seen = k > -inf  # (..., Tk, d_k); NaN: False (its rows are poisoned anyway)
    if not causal:
        seen = xp.any(seen, axis=-2)[..., None, :]
    else:
        streams = None
        if segments is not None:
            from ._varlen import Streams

            streams = Streams(segments, np.zeros(segments.shape[0] - 1, np.int64))
        seen = (_cum_any if streams is None else streams.cum_any)(xp, seen, -2)
        if state is not None:
            from .exp_kernel import _minus_inf

            m = state.tensors["m"]
            if array_api_compat.is_dask_array(q) and not array_api_compat.is_dask_array(m):
                import dask.array as da

                m = da.asarray(m)
            live = m > _minus_inf(xp, q.dtype)  # (..., d_k), packed: (..., N, d_k)
            seen = seen | (live[..., None, :] if streams is None else streams.take(xp, live, -2))
    return ~xp.any((q > -inf) & seen, axis=-1)


def canonical_shifts(op, xp, state, dtype):
    """An exp-kernel ``state`` returned by a call on 16-bit inputs (``dtype``; the state is float32),
    its key shifts ``m`` at or below their stand-in (the prologue clamps ``-inf`` keys to
    ``-finfo(dtype).max / 8``) set to the state's own stand-in: a feature without a key above
    ``-inf`` then reads the same whatever dtype made the state (:func:`_zero_weight_rows`, the
    steppers). Anything else: ``state`` as it is."""
    if state is None or op.normalised or "q" not in op.clamp or state.tensors["m"].dtype == dtype:
        return state
    from .exp_kernel import _minus_inf

    m = state.tensors["m"]
    m = xp.where(m > _minus_inf(xp, dtype), m, _scalar(xp, m, _minus_inf(xp, m.dtype)))
    return dataclasses.replace(state, tensors={**state.tensors, "m": m})


def where_undefined(xp, rows, out, prepared=None):
    """``out`` (..., T, d_v) with NaN on the rows of :func:`undefined_rows` (None: as it is; a
    function: of the inputs ``prepared`` as :func:`prepare` returned them)."""
    if callable(rows):
        rows = rows(prepared)
    return out if rows is None else _where_nan(xp, rows[..., None], out)


class Marks:
    """Where the poison goes: per-row, from-row, per-feature masks of one call and its state."""

    def __init__(self, rows, start, cols, state_all, state_cols, value_state):
        self.rows, self.start, self.cols = rows, start, cols  # (..., T), (..., T), (..., T, d_v)
        self.state_all, self.state_cols = state_all, state_cols  # (...,), (..., d_v)
        self.value_state = value_state

    def apply(self, xp, out, new_state, causal, cum_any=None, streams=None):
        """NaN where poisoned in ``out`` (..., T, d_v) and in ``new_state`` (None or a State).

        cum_any: ``(xp, m, axis) -> m[..., :i + 1].any()`` along ``axis`` by default; packed segments
        (``lsattn._varlen``) pass one that restarts at every segment, so poison stays in its segment.
        streams: packed streams with states (``lsattn._varlen.Streams``): the state marks have an N
        axis (one stream per segment), read at each segment's tokens; the new state's are per segment."""
        _cum_any_ = cum_any or _cum_any
        mask = None
        if self.rows is not None:
            mask = self.rows[..., None]
        start, cols = self.start, self.cols
        if start is not None:
            mask = _or(mask, (_cum_any_(xp, start, -1) if causal else xp.any(start, axis=-1)[..., None])[..., None])
        if cols is not None:
            mask = _or(mask, _cum_any_(xp, cols, -2) if causal else xp.any(cols, axis=-2)[..., None, :])
        state_all, state_cols = self.state_all, self.state_cols
        if streams is not None:  # per token: the marks of its segment's stream
            state_all = None if state_all is None else streams.take(xp, state_all, -1)[..., None]
            state_cols = None if state_cols is None else streams.take(xp, state_cols, -2)
        if state_all is not None:
            mask = _or(mask, state_all if streams is not None else state_all[..., None, None])
        if state_cols is not None:
            mask = _or(mask, state_cols if streams is not None else state_cols[..., None, :])
        if mask is not None:
            out = _where_nan(xp, mask, out)
        if new_state is None:
            return out, None
        if streams is None:
            every = _or(self.state_all, None if start is None else xp.any(start, axis=-1))
            feats = _or(self.state_cols, None if cols is None else xp.any(cols, axis=-2))
        else:
            every = _or(self.state_all, None if start is None else streams.any(xp, start, -1))
            feats = _or(self.state_cols, None if cols is None else streams.any(xp, cols, -2))
        if every is None and feats is None:
            return out, new_state
        nb = len(new_state.batch_shape)
        tensors = {}
        for name, t in new_state.tensors.items():
            extra = t.ndim - nb
            m = None if every is None else every[(...,) + (None,) * extra]
            if feats is not None and name in self.value_state:
                m = _or(m, feats[(...,) + (None,) * (extra - 1) + (slice(None),)])
            tensors[name] = t if m is None else _where_nan(xp, m, t)
        return out, dataclasses.replace(new_state, tensors=tensors)


def _where_nan(xp, mask, x):
    """NaN where ``mask`` (broadcast), else ``x``; Dask keeps ``x``'s chunks (the masks come from
    other inputs, which may be chunked otherwise)."""
    out = xp.where(mask, _scalar(xp, x, math.nan), x)
    return out.rechunk(x.chunks) if array_api_compat.is_dask_array(x) else out


def prepare(op, args, state, xp, offset, causal, batch, finite=None):
    """Sanitised ``args`` and ``state`` for the backend, and the :class:`Marks` (None: nothing to mark).

    args: the inputs in ``op.inputs`` order, cast to the compute dtype (None where omitted);
    finite: :func:`checks`' answer for these args and state (None: read here)."""
    if finite is True:  # checks' answer (concrete CUDA arrays, never lazy): nothing to sanitise
        return list(args), state, None
    present = [a for a in args if a is not None]
    if state is not None and array_api_compat.is_dask_namespace(xp):
        # an in-memory state (NumPy, CuPy) continuing a Dask stream: Dask arrays of its own type
        import dask.array as da

        state = dataclasses.replace(state, tensors={n: da.asarray(t) for n, t in state.tensors.items()})
    if state is not None:
        present += list(state.tensors.values())
    lazy = array_api_compat.is_dask_namespace(xp) or any(_traced(a) for a in present)
    # -inf where allowed and not clamped (a log decay's hard reset: packed segments put one at
    # each segment's start) needs nothing either
    passes = _passes(op)
    named = _named(op, args) + [(t, False) for t in ([] if state is None else state.tensors.values())]
    if not lazy and (_all_finite(xp, named) if finite is None else finite):  # the common case: nothing to do
        return list(args), state, None
    inf = math.inf
    rows = start = cols = None
    out_args = []
    for (name, role), x in zip(op.inputs, args):
        if x is None:
            out_args.append(None)
            continue
        if not lazy and _all_finite(xp, [(x, name in passes)]):
            out_args.append(x)
            continue
        neg_ok = name in op.neg_inf
        bad = ~(x < inf) if neg_ok else ~xp.isfinite(x)  # NaN compares False
        clamp = name in op.clamp
        if not lazy:
            clamp = clamp and bool(xp.any(x == -inf))
            if not bool(xp.any(bad)):
                out_args.append(_clamped(xp, x) if clamp else x)
                continue
        zero = _scalar(xp, x, 0)
        out_args.append(xp.where(bad, zero, _clamped(xp, x) if clamp else x))
        if role == "q":
            rows = _or(rows, xp.any(bad, axis=-1))
        elif role == "lev":
            used = _row_levels_used(offset, x.shape[-2], x.shape[-1], xp)
            rows = _or(rows, xp.any(bad & _constant(xp, x, used), axis=-1))
        elif role == "k":
            start = _or(start, xp.any(bad, axis=-1))
        elif role == "tok":
            start = _or(start, bad)
        else:  # "v"
            cols = _or(cols, bad)
    state_all = state_cols = None
    if state is not None:
        nb = len(batch)
        tensors = {}
        for name, t in state.tensors.items():
            if not lazy and _all_finite(xp, [(t, False)]):
                tensors[name] = t
                continue
            bad = ~xp.isfinite(t)
            tensors[name] = xp.where(bad, _scalar(xp, t, 0), t)
            if name in op.value_state:
                axes = tuple(range(nb, t.ndim - 1))
                state_cols = _or(state_cols, xp.any(bad, axis=axes) if axes else bad)
            else:
                axes = tuple(range(nb, t.ndim))
                state_all = _or(state_all, xp.any(bad, axis=axes) if axes else bad)
        if any(tensors[n] is not t for n, t in state.tensors.items()):
            state = dataclasses.replace(state, tensors=tensors)
    if rows is None and start is None and cols is None and state_all is None and state_cols is None:
        return out_args, state, None
    return out_args, state, Marks(rows, start, cols, state_all, state_cols, op.value_state)


#: array type -> ``check(x, minus_inf_ok)``: True / False, exact per entry, in one pass over a large
#: ``x`` (a backend's, registered when it loads: Numba's runs on every core), or None where it does
#: not apply; :func:`_all_finite` uses it instead of the namespace's serial maximum and minimum
FAST_FINITE = {}
#: the smallest array (entries) handed to a ``FAST_FINITE`` check
FAST_FINITE_MIN = 1 << 16


def _all_finite(xp, arrays):
    """True when every entry of the concrete arrays is finite (``-inf`` allowed too where the pair
    says so), with one read of a device value.

    arrays: ``(x, minus_inf_ok)`` pairs. ``max x + min x`` is NaN or infinite when an entry is
    (maxima and minima propagate NaN in every namespace; no temporary of the arrays' size);
    ``max x < inf`` is False for NaN and ``+inf`` only. Finite entries near the top of the range
    can make the sum overflow: then this says False and the caller's exact per-entry check finds
    nothing. Large arrays of a type in ``FAST_FINITE`` are checked by it."""
    inf = math.inf
    flags = []
    for x, neg_ok in arrays:
        size = math.prod(x.shape)
        fast = FAST_FINITE.get(type(x)) if size >= FAST_FINITE_MIN else None
        ok = None if fast is None else fast(x, neg_ok)
        if ok is False:
            return False
        if ok is None and size > 0:
            flags.append((xp.max(x) < inf) if neg_ok else xp.isfinite(xp.max(x) + xp.min(x)))
    if not flags:
        return True
    return bool(xp.all(xp.stack(flags)))


def _clamped(xp, x):
    """``-inf`` -> the finite stand-in ``-finfo.max / 8`` (see :mod:`lsattn.exp_kernel`)."""
    from .exp_kernel import _minus_inf

    return xp.maximum(x, _scalar(xp, x, _minus_inf(xp, x.dtype)))


def _scalar(xp, x, value):
    """``value`` as a 0-d array of ``x``'s dtype and device (see :func:`_constant`)."""
    return _constant(xp, x, value, x.dtype)


def _constant(xp, x, value, dtype=None):
    """``value`` (a scalar or NumPy array) as an array on ``x``'s device; for a Dask ``x``, one block
    of its blocks' array type (NumPy or CuPy: a NumPy block would not mix with CuPy blocks)."""
    if array_api_compat.is_dask_array(x):
        import dask.array as da

        # not ``da.full(..., meta=)``: CuPy's ``full_like(meta, shape=())`` takes the meta's shape
        block = array_api_compat.array_namespace(x._meta).asarray(value, dtype=dtype)
        tail = x.chunks[x.ndim - block.ndim:] if 0 < block.ndim <= x.ndim else ()
        return da.from_array(block, chunks=tail if tuple(map(sum, tail)) == block.shape else block.shape)
    return xp.asarray(value, dtype=dtype, device=device_of(x))
