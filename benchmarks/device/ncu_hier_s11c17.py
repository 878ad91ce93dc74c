"""One forward of loglinear_log_attention's kernels (``hierarchical.compute`` on CuPy arrays) per dtype at
B=2, H=16, d=64, chunk 64, for ncu: ``python ncu_hier_s11c17.py [T] [dtypes]`` (default 16384
bfloat16,float32; each dtype's hi_intra, hi_merge, hi_snap, hi_read launched once, in that order)."""
import sys

import numpy as np
import cupy

from lsattn.backends.cupy import hierarchical as chi
from lsattn.backends.cupy._arrays import narrow, on_gpu

T = int(sys.argv[1]) if len(sys.argv) > 1 else 16384
rng = np.random.default_rng(0)
x = [cupy.asarray(rng.standard_normal(s).astype(np.float32)) for s in
     ((2, 16, T, 64), (2, 16, T, 64), (2, 16, T, 64), (2, 16, T, T.bit_length() + 1))]
a = cupy.asarray(-0.1 * rng.random((2, 16, T)).astype(np.float32))
for dtype in (sys.argv[2] if len(sys.argv) > 2 else "bfloat16,float32").split(","):
    half = {"float32": "", "bfloat16": "bf16"}[dtype]
    xs = [narrow(cupy, t, half) for t in x + [a]] if half else x + [a]
    with on_gpu(x[0]) as (_, _, ops):
        chi.compute(ops, *xs[:4], xs[4], 0, None, 64, half)
    cupy.cuda.Device().synchronize()
    print(dtype, "done", flush=True)
