"""The prologue's host checks (``lsattn._nonfinite``) on CUDA arrays: one fused elementwise pass
per array that reads every entry once and writes nothing unless an entry offends (then a flag),
and all of a call's flags read to the host together (one wait for the device per call). The
array-API formulation takes a maximum and a minimum per array (two passes) plus small ops."""
from __future__ import annotations

import functools

import numpy as np

from ._arrays import on_gpu

__all__ = ["FINITE", "BELOW_INF", "NO_MINUS_INF", "clean"]

#: what an entry must be: finite; not NaN nor +inf (-inf allowed); not -inf
FINITE, BELOW_INF, NO_MINUS_INF = 0, 1, 2


@functools.lru_cache(maxsize=None)
def _kernels():
    import cupy

    # T: float16 / float32 / float64 (comparisons only: NaN compares False)
    generic = cupy.ElementwiseKernel(
        "T x, T inf, T ninf, int32 mode", "raw int32 flag",
        """
        const bool ok = mode == 0 ? (x < inf && ninf < x) : (mode == 1 ? x < inf : !(x == ninf));
        if (!ok) flag[0] = 1;
        """, "lsattn_offending")
    # bfloat16 as its 16-bit patterns: exponent all ones = not finite; -inf = 0xFF80
    bf16 = cupy.ElementwiseKernel(
        "int16 x, int32 mode", "raw int32 flag",
        """
        const unsigned short u = (unsigned short)x;
        const bool ok = mode == 2 ? u != 0xFF80 : ((u & 0x7F80) != 0x7F80 || (mode == 1 && u == 0xFF80));
        if (!ok) flag[0] = 1;
        """, "lsattn_offending_bf16")
    return generic, bf16


def clean(items):
    """NumPy bool (len(items),): True where array ``x`` of the pair ``(x, mode)`` has no offending
    entry (``mode``: FINITE, BELOW_INF or NO_MINUS_INF). ``x``: CuPy arrays or CUDA torch tensors
    (any strides; float16 / bfloat16 / float32 / float64) on the device of the first, checked on
    its (torch: current) stream; one read of the device for all of them."""
    generic, bf16 = _kernels()
    with on_gpu(items[0][0]) as (to_cp, _, ops):
        flags = ops.xp.zeros(len(items), dtype=np.int32)
        for i, (x, mode) in enumerate(items):
            xc, half = to_cp(x)
            if xc.size == 0:
                continue
            if half == "bf16":
                bf16(xc, np.int32(mode), flags[i:i + 1])
            else:
                dt = xc.dtype.type
                generic(xc, dt(np.inf), dt(-np.inf), np.int32(mode), flags[i:i + 1])
        return flags.get() == 0
