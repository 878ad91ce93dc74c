"""Arrays of the CuPy backend: which GPU arrays it serves, their device and stream, zero-copy CuPy
views of them (bfloat16 as its 16-bit patterns) and the caller's array type back."""
from __future__ import annotations

import contextlib
import functools
import math

import numpy as np

from ..._upload import to_device
from ._compile import CupyOps


def array_kind(a):
    """'cupy', 'torch' or 'jax' for arrays on a CUDA device, else None. Imports nothing."""
    mod = type(a).__module__
    if mod.startswith("cupy"):
        return "cupy"
    if mod.startswith("torch"):
        return "torch" if getattr(a, "is_cuda", False) else None
    if mod.startswith("jax"):
        try:
            devices = a.devices()  # tracers (inside jit) raise or have no devices
            return "jax" if devices and all(d.platform == "gpu" for d in devices) else None
        except Exception:
            return None
    return None


def ta_name(xp, dtype):
    return "double" if dtype == xp.float64 else "float"


def flat(xp, x, shape):
    """``x`` as a C-contiguous array of ``shape`` (itself when it is one already)."""
    if x.shape == shape and x.flags.c_contiguous:
        return x
    return xp.ascontiguousarray(xp.reshape(x, shape))


def shared_inputs(xp, arrays, tails):
    """Per-sequence inputs (each ``(..., *tail)``, one batch shape, possibly broadcast views) as
    ``(bases, rows)``: ``bases[i]`` C-contiguous ``(B_i, *tail)`` holding input ``i``'s distinct
    rows only (no broadcast copy: q, k shared by grouped-query heads stay shared); ``rows``
    ``(len(arrays), B)`` int32 on the device mapping sequences to rows (the kernels' ``seq_row``),
    or None when no input is broadcast."""
    from ..._prologue import distinct_rows

    leads = [x.ndim - tail for x, tail in zip(arrays, tails)]
    if not any(st == 0 and n > 1 for x, nb in zip(arrays, leads) for st, n in zip(x.strides[:nb], x.shape[:nb])):
        # nothing broadcast (the common case): the inputs as they are, without the row maps' host work
        return [flat(xp, x, (math.prod(x.shape[:nb]),) + tuple(x.shape[nb:])) for x, nb in zip(arrays, leads)], None
    bases, maps = [], []
    for x, tail in zip(arrays, tails):
        base, rows = distinct_rows(x, tail)
        bases.append(flat(xp, base, (math.prod(base.shape[: base.ndim - tail]),) + tuple(x.shape[x.ndim - tail:])))
        maps.append(rows)
    if all(b.shape[0] == m.size for b, m in zip(bases, maps)):
        return bases, None
    return bases, to_device(xp, np.stack(maps).astype(np.int32), bases[0])  # no queue drain


def batch_layout(ops, q, half):
    """``(xp, batch, BH, ta_dtype)`` of a call: its namespace (CuPy), batch axes, the number of
    sequences (one grid row each) and the dtype the kernels compute and keep states in."""
    xp = ops.xp
    batch = tuple(q.shape[:-2])
    BH = math.prod(batch)
    check_grid(BH)
    return xp, batch, BH, (xp.float32 if half else q.dtype)


def check_grid(BH):
    if BH > 65535:
        raise ValueError(f"the cupy kernels take at most 65535 sequences (prod of the batch axes), got {BH}")


@contextlib.contextmanager
def on_gpu(like):
    """Device and stream of ``like`` (a torch tensor's current stream; CuPy's current stream
    otherwise); yields (to_cupy, from_cupy, ops): ``to_cupy(x)`` is ``(CuPy array, half)`` with
    bfloat16 as its 16-bit patterns (``half`` '', 'f16' or 'bf16'), ``from_cupy(x, half)`` the
    caller's array type (bfloat16 again for ``half='bf16'``)."""
    import cupy

    kind = array_kind(like)
    if kind is None:
        raise ValueError(f"the cupy backend needs GPU arrays, got {type(like).__name__}")
    stream, ptr = contextlib.nullcontext(), None
    if kind == "torch":
        import torch

        dev = like.get_device()  # the tensor's device index (an int: no torch.device object)
        raw = getattr(torch._C, "_cuda_getCurrentRawStream", None)  # the pointer without a Stream object
        ptr = raw(dev) if raw is not None else torch.cuda.current_stream(dev).cuda_stream
        stream = _external_stream(ptr, dev)
    elif kind == "cupy":
        dev = like.device.id
    else:
        dev = next(iter(like.devices())).id
    with cupy.cuda.Device(dev), stream:
        yield (functools.partial(_to_cupy, kind=kind), functools.partial(_from_cupy, kind=kind, stream=ptr),
               CupyOps(dev))


@functools.lru_cache(maxsize=64)
def _external_stream(ptr, dev):
    """CuPy's handle on a torch stream (cached: one per stream, not one per call)."""
    import warnings

    import cupy

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return cupy.cuda.ExternalStream(ptr, dev)


def _half(x):
    dt = x.dtype
    half = _HALF_BY_DTYPE.get(dt)
    if half is None:  # a dtype object seen for the first time (its name once, not on every call)
        half = _HALF_BY_DTYPE[dt] = _HALF.get(str(dt), "")
    return half


_HALF_BY_DTYPE = {}


#: str(dtype) of the 16-bit inputs (torch, CuPy / NumPy, JAX) -> their kind
_HALF = {"bfloat16": "bf16", "torch.bfloat16": "bf16", "float16": "f16", "torch.float16": "f16"}


def _to_cupy(x, kind):
    """(CuPy array on x's memory, its 16-bit kind); bfloat16 is viewed as int16 (no copy for
    torch; one bit-cast copy for JAX, which has no in-place view)."""
    import cupy

    if x is None:
        return None, ""
    half = _half(x)
    if kind == "cupy":
        return x, half
    if kind == "torch":
        return _torch_view(cupy, x), half
    if half == "bf16":
        import jax

        x = jax.lax.bitcast_convert_type(x, "int16")
    return cupy.from_dlpack(x), half


#: torch dtype name -> the NumPy dtype CuPy sees (bfloat16 as its 16-bit patterns)
_TORCH_DTYPES = {"float32": np.float32, "float64": np.float64, "float16": np.float16, "bfloat16": np.int16,
                 "int32": np.int32}
#: torch dtype -> that NumPy dtype (filled as dtypes arrive: every view asks)
_VIEW_DTYPES = {}


def _torch_view(cupy, t):
    """A CuPy array on a CUDA tensor's memory (same shape and strides; the tensor kept alive).

    Built from the pointer, shape and strides directly: DLPack through torch costs tens of
    microseconds per tensor (stream queries), the dominant host cost of a decoding step."""
    dtype = _VIEW_DTYPES.get(t.dtype)
    if dtype is None:
        dtype = _VIEW_DTYPES[t.dtype] = np.dtype(_TORCH_DTYPES[str(t.dtype).split(".")[-1]])
    shape = tuple(t.shape)
    if t.numel() == 0:
        return cupy.empty(shape, dtype=dtype)
    if t.is_contiguous():  # (most views: CuPy's default strides, none converted: ~half of this function's host time)
        mem = cupy.cuda.UnownedMemory(t.data_ptr(), t.numel() * dtype.itemsize, t, t.get_device())
        return cupy.ndarray(shape, dtype=dtype, memptr=cupy.cuda.MemoryPointer(mem, 0))
    strides = t.stride()
    extent = 1 + sum((n - 1) * s for n, s in zip(shape, strides))
    mem = cupy.cuda.UnownedMemory(t.data_ptr(), extent * dtype.itemsize, t, t.get_device())
    return cupy.ndarray(shape, dtype=dtype, memptr=cupy.cuda.MemoryPointer(mem, 0),
                        strides=tuple(s * dtype.itemsize for s in strides))


def _from_cupy(x, half, kind, stream=None):
    """``x`` as the caller's array type (``stream``: the torch stream pointer CuPy's current stream
    wraps, for torch, which then takes the DLPack capsule without querying its streams again)."""
    if x is None or kind == "cupy":
        return x
    if kind == "torch":
        import torch

        t = torch.from_dlpack(x if stream is None else x.__dlpack__(stream=stream or 1))  # 1: the legacy default stream
        return t.view(torch.bfloat16) if half == "bf16" else t
    import cupy
    import jax

    cupy.cuda.get_current_stream().synchronize()  # JAX reads it on its own stream
    y = jax.dlpack.from_dlpack(x)
    return jax.lax.bitcast_convert_type(y, "bfloat16") if half == "bf16" else y


def rows_gatherable(arrays):
    """Whether :func:`take_rows` serves every one of ``arrays`` (not None): CuPy arrays, or CUDA torch
    tensors outside autograd, all C-contiguous."""
    for x in arrays:
        kind = array_kind(x)
        if kind == "cupy":
            if not x.flags.c_contiguous:
                return False
        elif kind != "torch" or x.requires_grad or not x.is_contiguous():
            return False
    return True


def take_rows(x, src, t_out, tok):
    """``x`` (..., t_in, d), or (..., t_in) with ``tok``, a C-contiguous CUDA array (:func:`rows_gatherable`)
    laid out along its token axis: row ``t`` is row ``src[t]`` of ``x``, zeros where ``src[t] < 0``;
    ``src`` (t_out,) int32 on the device (CuPy, or a torch tensor for torch ``x``). One launch of plain
    row copies (``CupyOps.gather_rows``) instead of a zero row concatenated and a take (two passes,
    torch's ``index_select`` at ~1.2 TB/s; ``lsattn._varlen.rewrite``)."""
    with on_gpu(x) as (to_cp, back, ops):
        c, half = to_cp(x)
        s = to_cp(src)[0]
        t_in = c.shape[-1] if tok else c.shape[-2]
        d = 1 if tok else c.shape[-1]
        lead = c.shape[:-1] if tok else c.shape[:-2]
        y = ops.gather_rows(c.reshape(math.prod(lead), t_in, d), s, t_out, 0)
        return back(y.reshape(lead + ((t_out,) if tok else (t_out, d))), half)


def inputs(to_cp, arrays):
    """CuPy views of the inputs and their common 16-bit kind. The tensor-core kernels read 16-byte
    aligned rows with asynchronous copies: a misaligned bfloat16 view is copied once."""
    pairs = [to_cp(x) for x in arrays]
    half = pairs[0][1]
    out = []
    for c, _ in pairs:
        if half == "bf16" and c.data.ptr % 16:
            c = c.copy()
        out.append(c)
    return out, half


def widen(xp, x, half):
    """float32 copy of 16-bit input ``x`` (bfloat16 patterns shifted into float32's high half)."""
    if half == "bf16":
        return (x.view(xp.uint16).astype(xp.uint32) << 16).view(xp.float32)
    return x.astype(xp.float32)


def narrow(xp, x, half):
    """float32 ``x`` rounded to the 16-bit kind (bfloat16: round to nearest even, as ``st``)."""
    if half == "bf16":
        u = x.view(xp.uint32)
        u = u + xp.uint32(0x7FFF) + ((u >> 16) & xp.uint32(1))
        return (u >> 16).astype(xp.uint16).view(xp.int16)
    return x.astype(xp.float16)
