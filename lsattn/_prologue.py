"""The one input prologue every operator runs: validate, choose the backend and dtypes, dispatch.

Each public operator describes its inputs once (an ``Op``: names and roles, which argument holds
the Fenwick level weights, the shapes of its state tensors) and calls :func:`run`. A new keyword
that concerns every operator (packed sequences, broadcast batch axes) is added here, once.

Roles of the inputs (``T`` the number of tokens of the call, ``Tk`` the keys' when non-causal):

- ``"q"``   ``(..., T, d_k)``: fixes the batch axes, ``T`` and ``d_k``
- ``"k"``   ``(..., T, d_k)`` (``(..., Tk, d_k)`` when non-causal)
- ``"v"``   ``(..., Tk, d_v)``: fixes ``d_v``
- ``"tok"`` ``(..., T)``: one scalar per token
- ``"lev"`` ``(..., T, L)``: one weight per token and Fenwick level, ``L >= num_levels(offset + T)``

Dtypes: the output has the inputs' promoted floating dtype. States compute in float32 or float64
(``_validate.compute_dtype``). Half precision reaches a backend as is when the backend lists the
operator in its ``half_ops`` (GPU kernels: tensor-core products, fp32 accumulation); every other
backend receives float32 and the output is cast back.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import sys
from dataclasses import dataclass
from typing import Callable

import array_api_compat
import numpy as np

from . import _varlen, backends
from ._nonfinite import KernelCheck, canonical_shifts, checks, kernel_checks, prepare, undefined_rows, where_undefined
from ._validate import _device_or_none, check_float, check_levels, check_shape, compute_dtype, namespace, seq_split
from .fenwick import num_levels
from .state import (LEVEL_AXES, State, canonical, check_state, level_slots_of, packed_streams, static_offset,
                    with_level_slots)

__all__ = ["Op", "run", "check_flag"]


@dataclass(frozen=True)
class Op:
    """One operator's inputs.

    name: the operator's name (states and backends are keyed by it).
    inputs: ``((argument name, role), ...)`` in the order the implementations take them.
    state_shapes: ``(batch, offset, d_k, d_v) -> {tensor name: shape}`` of a valid state.
    neg_inf: arguments where ``-inf`` is a legitimate zero (``exp(-inf) = 0``); elsewhere every
        non-finite entry poisons its outputs (:mod:`lsattn._nonfinite`).
    clamp: those of ``neg_inf`` whose ``-inf`` the prologue replaces by the finite stand-in.
    value_state: state tensors whose last axis is ``d_v`` (a non-finite entry poisons its feature).
    normalised: the output is normalised over the level-weighted keys (a softmax): a row whose every
        readable level weight is ``-inf`` has none, and is NaN (:func:`lsattn._nonfinite.undefined_rows`).
    """

    name: str
    inputs: tuple
    state_shapes: Callable
    neg_inf: tuple = ()
    clamp: tuple = ()
    value_state: tuple = ()
    normalised: bool = False


def check_flag(name, value):
    """TypeError unless ``value`` is a bool (NumPy's included): ``causal="no"`` must not mean True."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r} ({type(value).__name__})")
    return bool(value)


def _tail(role):
    """Number of trailing non-batch axes of an input of this role."""
    return 1 if role == "tok" else 2


def _shapes(op, arrays, causal):
    """(batch, T, Tk, d_k, d_v) after checking every input's shape against its role; ``batch`` is
    the broadcast of all inputs' leading axes (matmul rules: right-aligned, size-1 axes stretch)."""
    named = dict(zip((n for n, _ in op.inputs), arrays))
    qname = op.inputs[0][0]
    _, T, d_k = seq_split(qname, named[qname])
    Tk, d_v = T, None
    batch, seen = (), []
    for (name, role), x in zip(op.inputs, arrays):
        if x is None:
            continue
        tail = _tail(role)
        if x.ndim < tail:
            raise ValueError(f"{name} must have at least {tail} axes ({'(..., T)' if tail == 1 else '(..., T, d)'}), "
                             f"got shape {tuple(x.shape)}")
        lead = tuple(x.shape[: x.ndim - tail])
        batch = _broadcast(batch, lead, name, x, seen)
        seen.append((name, x, lead))
    for (name, role), x in zip(op.inputs, arrays):
        if x is None or role == "q":
            continue
        lead = tuple(x.shape[: x.ndim - _tail(role)])
        if role == "k":
            Tk = x.shape[-2] if not causal else T
            how = "(..., T, d_k) like q (causal: as many keys as queries)" if causal else "(..., Tk, d_k) with q's d_k"
            check_shape(name, x, lead + (Tk, d_k), how)
        elif role == "v":
            d_v = x.shape[-1]
            check_shape(name, x, lead + (Tk, d_v), "(..., T, d_v) like q" if causal else "(..., Tk, d_v) like k")
        elif role == "tok":
            check_shape(name, x, lead + (T,), "(..., T)")
        elif role == "lev":
            check_shape(name, x, lead + (T, x.shape[-1]), "(..., T, L)")
    return batch, T, Tk, d_k, d_v


def _broadcast(batch, lead, name, x, seen):
    """The broadcast of batch axes ``batch`` (those of ``seen``) with ``lead`` (``name``'s), or a
    ValueError naming ``name`` and the first earlier argument it does not broadcast with."""
    n = max(len(batch), len(lead))
    a, b = (1,) * (n - len(batch)) + batch, (1,) * (n - len(lead)) + lead
    out = []
    for i, (p, r) in enumerate(zip(a, b)):
        if p != r and p != 1 and r != 1:
            for other, y, olead in seen:
                j = i - (n - len(olead))
                if j >= 0 and olead[j] not in (1, r):
                    break
            raise ValueError(f"the leading batch axes of {other} and {name} do not broadcast (size-1 axes stretch, "
                             f"like matmul): {other} has shape {tuple(y.shape)} (batch axes {olead}), {name} has shape "
                             f"{tuple(x.shape)} (batch axes {lead})")
        out.append(r if p == 1 else p)
    return tuple(out)


def _broadcast_inputs(op, arrays, xp, batch, materialise):
    """Every input with the batch axes ``batch``: a broadcast view (stride 0 along stretched axes),
    or a contiguous copy when ``materialise`` (backends whose kernels cannot read such views)."""
    out = []
    for (name, role), x in zip(op.inputs, arrays):
        if x is not None and tuple(x.shape[: x.ndim - _tail(role)]) != batch:
            x = xp.broadcast_to(x, batch + tuple(x.shape[x.ndim - _tail(role):]))
            if materialise:
                x = _contiguous(xp, x)
        out.append(x)
    return out


def distinct_rows(x, tail):
    """``(base, rows)`` of a (broadcast) view ``x`` (..., *tail) that has byte strides (NumPy, CuPy).

    ``base``: the view of ``x``'s distinct rows (size 1 along every stretched, stride-0, batch axis);
    ``rows``: (B,) int64 NumPy, element ``b`` of ``x``'s flattened batch being row ``rows[b]`` of
    ``base``'s flattened batch. Kernels of broadcast inputs (q, k shared by grouped-query heads)
    read shared rows through it instead of a broadcast copy."""
    lead = x.shape[: x.ndim - tail]
    keep = tuple(slice(0, 1) if st == 0 and n > 1 else slice(None) for st, n in zip(x.strides, lead))
    base = x[keep]
    blead = base.shape[: len(lead)]
    rows = np.broadcast_to(np.arange(math.prod(blead)).reshape(blead), lead).reshape(-1)
    return base, rows


def _contiguous(xp, x):
    """A contiguous copy of a (broadcast) view."""
    if array_api_compat.is_torch_array(x):
        return x.contiguous()
    if hasattr(xp, "ascontiguousarray"):
        return xp.ascontiguousarray(x)
    return xp.asarray(x, copy=True)


def _check_state_fields(op, state):
    """TypeError / ValueError unless ``state`` is a State whose offset is an int >= 0 and whose tensors
    are arrays (checked before anything reads them: a hand-built state must fail here, clearly)."""
    if not isinstance(state, State):
        return  # check_state says what it should be
    offset = state.offset
    n = packed_streams(state)
    if n is not None:
        raise ValueError(f"state holds {n} packed streams (from a call with cu_seqlens: state.offset has one offset "
                         f"per segment): continue them with the operator and cu_seqlens of {n} segments (one token "
                         f"each: cu_seqlens = range({n} + 1))")
    traced = "jax" in sys.modules and isinstance(offset, sys.modules["jax"].core.Tracer)  # exp-kernel offset leaf
    if not traced:
        if isinstance(offset, bool) or not isinstance(offset, int):
            raise TypeError(f"state.offset must be a Python int, got {offset!r} ({type(offset).__name__})")
        if offset < 0:
            raise ValueError(f"state.offset must be >= 0, got {offset}")
    if not isinstance(state.tensors, dict):
        raise TypeError(f"state.tensors must be a dict of arrays, got {type(state.tensors).__name__}")
    for name, t in state.tensors.items():
        if not array_api_compat.is_array_api_obj(t):
            raise TypeError(f"state tensor {name!r} must be an array, got {type(t).__name__}")


def _check_state_tensors(op, state, xp, like, batch, d_k, d_v, dtype):
    """ValueError unless the state's tensors are exactly the ones ``op`` writes (names, shapes,
    dtype) and sit on the device of the inputs (``like``)."""
    offset = static_offset(state.offset)
    if offset is None:  # traced (JAX): a fixed-capacity state, checked against its own number of level slots
        offset = (1 << level_slots_of(state)) - 1 if state.op in LEVEL_AXES else 0
    want = op.state_shapes(tuple(batch), offset, d_k, d_v)
    got = {name: tuple(t.shape) for name, t in state.tensors.items()}
    if got != want:
        raise ValueError(f"state tensors {got} do not match the expected {want} for {op.name} at offset {state.offset}")
    # Dask inputs: the dask backend moves in-memory state tensors into the blocks' type and device
    dev = None if array_api_compat.is_dask_array(like) else _device_or_none(like)
    for name, t in state.tensors.items():
        if t.dtype != dtype:
            raise ValueError(f"state tensor {name!r} has dtype {t.dtype}, expected {dtype}")
        tdev = _device_or_none(t)
        if dev is not None and tdev is not None and str(tdev) != str(dev):
            raise ValueError(f"state tensor {name!r} is on device {tdev} but the inputs are on {dev}; "
                             f"move the state with state.to(xp, device)")


def run(op, arrays, **kw):
    """Validate ``arrays`` (ordered as ``op.inputs``; None for an omitted optional input), pick the
    backend, cast to the dtype it computes in, call it, cast back (keywords: ``_run``'s).

    Under ``torch.compile`` the whole call is one graph break (``torch.compiler.disable``): its
    host-side checks branch on values and its kernels are foreign to the tracer; it runs eagerly,
    recorded by autograd like any eager op, between the compiled graphs around it."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.compiler.is_compiling():
        return torch.compiler.disable(_run)(op, arrays, **kw)
    return _run(op, arrays, **kw)


def _run(op, arrays, *, extra=(), state=None, return_state=False, backend=None, causal=True, cu_seqlens=None):
    """``run``: validate, pick the backend, cast, call, cast back.

    extra: arguments the implementations take between the arrays and ``state`` (``chunk_size``,
    ``causal``). cu_seqlens: offsets of packed segments (``lsattn._varlen``), or None.
    Returns ``out`` or ``(out, state)`` with ``return_state=True``.
    """
    key = host = None
    if state is None and cu_seqlens is None:
        key = _plan_key(op, arrays, causal, return_state)
    elif state is None and return_state is False:
        # packed: the same offsets' values (Python ints, as FlashAttention's host max_seqlen, or an
        # array's, read back once), checked by the first call with them
        key, host = _packed_key(cu_seqlens)
        key = None if key is None or (base := _plan_key(op, arrays, causal, return_state)) is None else base + key
    plan = _PLANS.get(key) if key is not None else None
    memo = None
    if plan is not None and plan[0] is op:  # the same op, array types, shapes, dtypes, devices, flags: validated
        _, xp, batch, out_dtype, state_dtype, off, memo = plan
        present = [x for x in arrays if x is not None]
        offsets = None
        sbatch, capacity, offset = batch, 0, 0
    else:
        xp, batch, out_dtype, state_dtype, present, off, offsets, sbatch, state, capacity, offset, early = _validate(
            op, arrays, extra, state, return_state, backend, causal, cu_seqlens, host)
        if early is not None:  # packed streams computed segment by segment
            return early[0]
        if key is not None:
            if len(_PLANS) >= _PLANS_MAX:
                _PLANS.clear()
            if off is not None:
                off.flags.writeable = False  # the plan's: read by every call with these offsets
            memo = {}  # _compute's choices for these arrays, kept with the plan (a 7th entry)
            _PLANS[key] = (op, xp, batch, out_dtype, state_dtype, off, memo)
        causal, return_state = bool(causal), bool(return_state)
    return _compute(op, arrays, xp, batch, out_dtype, state_dtype, present, off, offsets, sbatch, state, capacity,
                    offset, extra, return_state, backend, causal, memo)


#: validated calls without state: ``_plan_key`` (packed: followed by ``_packed_key``, the offsets'
#: values) -> (op, xp, batch, out_dtype, state_dtype, offsets or None). Their checks depend only on the
#: arrays' types, shapes, dtypes and devices, the flags and the offsets, so a repeated call (a training
#: loop, a benchmark) skips them (~30-40 us of host time; packed calls ~0.1 ms, session 12)
_PLANS = {}
_PLANS_MAX = 256


def _packed_key(cu):
    """``(key, host)``: what a packed call's plan depends on beyond ``_plan_key`` (the offsets' values;
    an array's type and device too), and an array's values as read (``_varlen.read_offsets``, for the
    validation of a first call), or ``(None, None)``: not cached (JAX, ints that are not ``int``)."""
    if type(cu) in (list, tuple):
        return (tuple(cu) if all(type(c) is int for c in cu) else None), None
    got = _varlen.read_offsets(cu)
    if got is None:
        return None, None
    host, where = got
    return ("array", where, host.dtype.str, host.shape, host.tobytes()), host


def _plan_key(op, arrays, causal, return_state):
    """What the validation of a call without state or packed segments depends on, or None when
    it is not cached (a type other than torch tensors, CuPy and NumPy arrays; a flag not a bool)."""
    if (causal is not True and causal is not False) or (return_state is not True and return_state is not False):
        return None
    key = [id(op), causal, return_state]
    for x in arrays:
        if x is None:
            key.append(None)
            continue
        t = type(x)
        kind = _KEY_KINDS.get(t)
        if kind is None:
            kind = _KEY_KINDS[t] = _key_kind(t)
        if kind == "torch":
            key.append((t, x.shape, x.dtype, x.device, x.requires_grad))
        elif kind == "numpy":
            key.append((t, x.shape, x.dtype))
        elif kind == "cupy":
            key.append((t, x.shape, x.dtype, x.device.id))
        else:
            return None
    return tuple(key)


def _key_kind(t):
    """Which of ``_plan_key``'s entries an array of type ``t`` gets: 'torch' (torch.Tensor, nn.Parameter), 'numpy',
    'cupy', or '' (not cached)."""
    mod = t.__module__
    if mod.startswith("torch"):
        return "torch"
    return "numpy" if t is np.ndarray else "cupy" if mod.startswith("cupy") else ""


_KEY_KINDS = {}  # array type -> _key_kind (asked once per type: every call's path)


def _validate(op, arrays, extra, state, return_state, backend, causal, cu_seqlens, host=None):
    """The checks of ``_run`` that depend on the arrays' metadata and the state; ``early``: None, or
    ``(result,)`` of packed streams computed segment by segment. host: ``cu_seqlens``' values if read."""
    named = {n: a for (n, _), a in zip(op.inputs, arrays)}
    xp = namespace(**named)
    for name, x in named.items():
        if x is not None:
            check_float(xp, name, x)
    causal = check_flag("causal", causal)
    return_state = check_flag("return_state", return_state)
    batch, T, Tk, d_k, d_v = _shapes(op, arrays, causal)
    if not causal:
        if state is not None or return_state:
            raise ValueError("state and return_state need causal=True: a non-causal call has no stream to continue")
        if Tk == 0:
            raise ValueError("causal=False needs at least one key (k has Tk = 0): the output would be 0/0")
    present = [x for x in arrays if x is not None]
    off = offsets = None  # offsets: the incoming offsets of packed streams the backend computes itself
    sbatch = batch  # the state's batch axes (packed streams: followed by N)
    if cu_seqlens is not None:
        off = _varlen.check_offsets(cu_seqlens, xp, present[0], T, causal, host)
        if state is not None or return_state:  # one stream per segment, at offsets of its own
            chosen = backends.resolve(op.name, xp, present[0], backend, grad=_grad(present, state), varlen=True)
            if op.name not in chosen.reset_ops and op.name not in _varlen.STREAM_OPS:  # per-segment calls
                def call(seg, st):
                    return _run(op, seg, extra=extra, state=st, return_state=True, backend=backend)

                return (None,) * 11 + ((_varlen.streams(call, op, arrays, off, state, return_state, batch),),)
            N = off.shape[0] - 1
            sbatch = batch + (N,)
            state, offsets = (None, np.zeros(N, np.int64)) if state is None else _varlen.packed(state, op, batch, N)
    out_dtype = xp.result_type(*(x.dtype for x in present))
    state_dtype = compute_dtype(xp, out_dtype)
    capacity = 0  # JAX log-linear states keep a fixed number of level slots (lsattn.state)
    if state is not None:
        if offsets is None:
            if isinstance(state, State) and state.op in LEVEL_AXES and isinstance(state.tensors, dict):
                with contextlib.suppress(Exception):
                    capacity = level_slots_of(state)
            state = canonical(state)
            _check_state_fields(op, state)
        check_state(state, op.name, xp, sbatch, d_k, d_v, state_dtype)
        at = state if offsets is None else dataclasses.replace(state, offset=int(offsets.max()))  # the slots of the largest
        _check_state_tensors(op, at, xp, present[0], sbatch, d_k, d_v, state_dtype)
    offset = 0 if state is None else state.offset
    if T > 0 and static_offset(offset) is not None:  # a traced offset cannot be checked
        need = num_levels(offset + T) if offsets is None else _varlen.levels_needed(off, offsets)
        for (name, role), x in zip(op.inputs, arrays):
            if role == "lev":
                check_levels(name, x, need)
    return xp, batch, out_dtype, state_dtype, present, off, offsets, sbatch, state, capacity, offset, None


def _compute(op, arrays, xp, batch, out_dtype, state_dtype, present, off, offsets, sbatch, state, capacity, offset,
             extra, return_state, backend, causal, memo=None):
    """The rest of ``_run`` on validated inputs: pick the backend, cast, check, call, cast back.
    memo: the plan's (``_PLANS``) dict of earlier choices for these arrays (the backend, ``grad``, the compute
    dtype, whether no input needs a cast or a broadcast), keyed by ``backend=`` and ``backends.generation()``
    (a registry or backend change, ``$LSATTN_BACKEND``: chosen again); None (a call with state): chosen afresh."""
    gen = None if memo is None or not (backend is None or type(backend) is str) else (backend, backends.generation())
    got = None if gen is None else memo.get(gen)
    if got is not None:  # a repeated call: the same backend (nothing it depends on changed), dtype, casts
        chosen, grad, dtype, plain = got
    else:
        grad = _grad(present, state)
        chosen = backends.resolve(op.name, xp, present[0], backend, grad=grad, varlen=off is not None)
        if math.prod(batch) == 0 and chosen.name != "array_api" and not array_api_compat.is_dask_namespace(xp):
            # no sequence at all (a zero-size batch axis): nothing for a kernel to launch over (a grid
            # of zero blocks is an error on CUDA); the array-API twin returns the empty output and state
            chosen = backends.get("array_api")
        dtype = out_dtype if (out_dtype != state_dtype and op.name in chosen.half_ops) else state_dtype
        plain = all(x is None or (x.dtype == dtype and tuple(x.shape[: x.ndim - _tail(role)]) == batch)
                    for (_, role), x in zip(op.inputs, arrays))
        if gen is not None:
            if len(memo) >= 8:
                memo.clear()
            memo[gen] = (chosen, grad, dtype, plain)
    if plain:  # every input in the compute dtype with the call's batch axes (the common case)
        args = list(arrays)
    else:
        # cast (asked only where the dtype differs: a no-op cast is still a dispatch), then broadcast (views)
        args = [x if x is None or x.dtype == dtype else xp.astype(x, dtype, copy=False) for x in arrays]
        args = _broadcast_inputs(op, args, xp, batch, op.name not in chosen.broadcast_ops)
    # CUDA arrays: the non-finite checks and the undefined rows' flag in one read of the device, which
    # is waited for only after the kernels are launched on the inputs as they are (finite: the common
    # case); when some input is not, those results are dropped and the call computes again, sanitised
    # (an implementation whose kernels check the inputs they read answers it itself: ``checks_inputs``;
    # packed calls: the same one read of the packed inputs, which are finite exactly when the laid-out
    # ones are (gaps of zeros, -inf resets in the log decays, which pass); packed streams with states
    # around a backend that does not compute them (``_ll_packed``) read for themselves in ``prepare``)
    impl0 = chosen.implementation(op.name)
    own = off is None and getattr(impl0, "checks_inputs", False) and (
        not grad or getattr(impl0, "checks_grad_inputs", False))  # (under autograd: if it says so)
    one_read = off is None or op.name in chosen.reset_ops or offsets is None
    # (an implementation with ``defer_checks`` gets them made after its launches: ``_nonfinite.Deferred``)
    defer = off is None and not own and getattr(impl0, "defer_checks", False)
    checked = (kernel_checks(op, args, state, xp) if own else checks(op, args, state, xp, defer=defer)) if one_read \
        else None
    args0, state0 = args, state
    run_op, finish, kw = op, None, {}
    if off is not None:  # one call over the packed segments: computed by the backend, or rewritten as reset streams
        mapped = op.name in chosen.layout_ops and state is None and not return_state and not grad
        # packed streams: computed by the backend, or by lsattn._ll_packed around its implementation
        run_op, args, finish, cum_any, kw = _varlen.pack(op, xp, args, off, batch, native=op.name in chosen.reset_ops
                                                         or offsets is not None, offsets=offsets, mapped=mapped)
        extra = extra if run_op is op else ()
    streams = kw.get("segments")
    positions = offset if streams is None else (lambda: streams.positions)  # built only when read
    if "token_map" in kw:  # the packed tokens as they are: positions in their own (fresh) streams, when needed
        positions = lambda: _varlen.Streams(off, np.zeros(off.shape[0] - 1, np.int64)).positions  # noqa: E731
    impl = impl0 if run_op is op else chosen.implementation(run_op.name)
    if offsets is not None and op.name not in chosen.reset_ops:
        from ._ll_packed import forward

        impl = functools.partial(forward, op, impl)

    def compute(finite):
        """(out, new state, the inputs as the backend received them); finite: ``prepare``'s."""
        args_, state_, marks = prepare(run_op, args, state, xp, positions, causal, sbatch, finite=finite)
        kw_ = dict(kw, check=checked) if finite and isinstance(checked, KernelCheck) else kw
        with _full_precision(xp):
            out, new_state = impl(*args_, *extra, state_, return_state, **kw_)
        if marks is not None:
            out, new_state = marks.apply(xp, out, new_state, causal, cum_any=None if off is None else cum_any,
                                         streams=streams)
        return (out if finish is None else finish(out)), new_state, args_

    out, new_state, args = compute(None if checked is None else True)
    if checked is not None and not checked.finite:  # the one wait
        out = new_state = None
        out, new_state, args = compute(False)
    # rows with no weight at all (0/0), at the positions of their own streams
    undefined = undefined_rows(op, args0, xp, offset if off is None else (
        lambda: _varlen.Streams(off, np.zeros(off.shape[0] - 1, np.int64) if offsets is None else offsets).positions),
        state=state0, causal=causal, segments=off, own_off=None if checked is None else checked.own_off)
    out = where_undefined(xp, undefined, out, args)
    new_state = canonical_shifts(op, xp, new_state, dtype)  # 16-bit inputs: key shifts of no key at the state's stand-in
    out = xp.astype(out, out_dtype, copy=False)
    if return_state and op.name in LEVEL_AXES and array_api_compat.is_jax_namespace(xp):
        L = next(x.shape[-1] for (_, role), x in zip(op.inputs, arrays) if role == "lev")
        new_state = with_level_slots(new_state, max(capacity, L, level_slots_of(new_state)))
    return (out, new_state) if return_state else out


def _grad(present, state):
    """Whether an input or a state tensor requires grad (torch)."""
    grad = any(getattr(x, "requires_grad", False) for x in present)
    tensors = getattr(state, "tensors", None)
    return grad or (isinstance(tensors, dict) and any(getattr(t, "requires_grad", False) for t in tensors.values()))


def _full_precision(xp):
    """JAX on GPUs multiplies float32 matrices in TF32 by default (~1e-3 relative): our float32
    bounds need full float32 products, asked for in this call's scope only."""
    if array_api_compat.is_jax_namespace(xp):
        import jax

        return jax.default_matmul_precision("highest")
    return contextlib.nullcontext()


def levels_state_shapes(batch, offset, d_k, d_v):
    """State of the log-linear operators: one ``d_k x d_v`` matrix per bit of the offset."""
    return {"levels": batch + (offset.bit_length(), d_k, d_v)}
