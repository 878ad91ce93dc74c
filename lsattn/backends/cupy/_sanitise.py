"""The non-finite rule's sanitising pass (``lsattn._nonfinite``) on CUDA arrays as one fused
elementwise kernel: reads the input once, writes the sanitised copy and the mask of replaced
entries (the array-API formulation takes four or five passes). Used for CuPy arrays and CUDA torch
tensors whenever CuPy is installed; the values are exactly the array-API formulation's."""
from __future__ import annotations

import functools

import numpy as np

from ._arrays import _torch_view, array_kind, on_gpu

__all__ = ["sanitise"]


@functools.lru_cache(maxsize=None)
def _kernels():
    import cupy

    # T: float16 / float32 / float64 (comparisons only: NaN compares False)
    generic = cupy.ElementwiseKernel(
        "T x, T lo, T inf, T ninf, T zero, bool neg_ok, bool clamp", "T y, bool bad",
        """
        const bool b = neg_ok ? !(x < inf) : !(x < inf && ninf < x);
        bad = b;
        y = b ? zero : ((clamp && x < lo) ? lo : x);
        """, "lsattn_sanitise")
    # bfloat16 as its 16-bit patterns: exponent all ones = not finite (-inf = 0xFF80); below lo:
    # negative with a larger magnitude (sign-magnitude order of non-NaN patterns)
    bf16 = cupy.ElementwiseKernel(
        "int16 x, int16 lo, bool neg_ok, bool clamp", "int16 y, bool bad",
        """
        const unsigned short u = (unsigned short)x;
        const bool b = (u & 0x7F80) == 0x7F80 && !(neg_ok && u == 0xFF80);
        bad = b;
        const bool below = (u & 0x8000) != 0 && (u & 0x7FFF) > ((unsigned short)lo & 0x7FFF);
        y = b ? (short)0 : ((clamp && below) ? lo : x);
        """, "lsattn_sanitise_bf16")
    return generic, bf16


def _bf16_bits(value):
    """The bfloat16 pattern (int16) of ``value``, exactly representable in bfloat16."""
    bits = int(np.array(value, dtype=np.float32).view(np.uint32))
    assert bits & 0xFFFF == 0, value
    return np.array(bits >> 16, dtype=np.uint16).view(np.int16)


def sanitise(x, neg_ok, clamp, lo):
    """``(y, bad)`` of a CuPy array or CUDA torch tensor ``x`` (any strides; float16 / bfloat16 /
    float32 / float64): ``bad`` (bool, x's shape) where an entry is not finite (``-inf`` allowed
    when ``neg_ok``), ``y`` (contiguous, x's type, shape and dtype) with those entries 0 and, when
    ``clamp``, entries below ``lo`` (a float exactly representable in x's dtype) raised to ``lo``:
    ``where(bad, 0, clip(x, min=lo) if clamp else x)``. On x's device and (torch) current stream."""
    kind = array_kind(x)
    generic, bf16 = _kernels()
    with on_gpu(x) as (to_cp, _, ops):
        if kind == "torch":
            import torch

            y = torch.empty(tuple(x.shape), dtype=x.dtype, device=x.device)
            bad = torch.empty(tuple(x.shape), dtype=torch.bool, device=x.device)
            xc, yc, bc = to_cp(x)[0], _torch_view(ops.xp, y), _torch_view(ops.xp, bad)
        else:
            xc = x
            y = yc = ops.xp.empty(x.shape, dtype=x.dtype)
            bad = bc = ops.xp.empty(x.shape, dtype=bool)
        if xc.size == 0:
            return y, bad
        if str(x.dtype).endswith("bfloat16"):
            bf16(xc, _bf16_bits(lo), bool(neg_ok), bool(clamp), yc, bc)
        else:
            dt = xc.dtype.type
            generic(xc, dt(lo), dt(np.inf), dt(-np.inf), dt(0), bool(neg_ok), bool(clamp), yc, bc)
    return y, bad
