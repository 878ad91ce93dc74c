"""One loglinear_gated_delta forward on float32 CuPy arrays (B H = 32, T = 8192, d = 64: gd_forms and
gd_scan once each, after one call that compiles them), for a kernel profiler:

    ncu --kernel-name regex:gd_ --launch-skip 2 --launch-count 2 python benchmarks/device/gd_one_call.py
"""
import cupy

import lsattn

BH, T, D = 32, 8192, 64
rng = cupy.random.default_rng(0)
q, k, v = (rng.standard_normal((BH, T, D), dtype=cupy.float32) for _ in range(3))
k /= cupy.linalg.norm(k, axis=-1, keepdims=True)
a = -cupy.log1p(cupy.exp(-(rng.standard_normal((BH, T), dtype=cupy.float32) + 3)))
b = rng.random((BH, T), dtype=cupy.float32)
lam = rng.random((BH, T, lsattn.num_levels(T)), dtype=cupy.float32) + 0.5
for _ in range(2):
    out = lsattn.loglinear_gated_delta(q, k, v, a, b, lam)
cupy.cuda.Device().synchronize()
print("one call ok", float(cupy.abs(out).max()))
