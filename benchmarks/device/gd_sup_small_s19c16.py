"""Session 19, s19c16: small two-tier calls of the grouped coarse form at 27 periods (5 coarse levels; gd_tier3's fold,
T3FILL) for compute-sanitizer memcheck / racecheck / initcheck: bfloat16 on torch (the direct path, 1xTF32, d 64),
float32 (3xTF32) and float64 at C = 16; each against T3FILL off (gd_cfill). (Named for s19c16's supergroups, which
session 20's s20s removed: run_s19c.sh's sanitizer runs read this file.)
    compute-sanitizer --tool racecheck --kernel-name kns=gd_tier3 python benchmarks/device/gd_sup_small_s19c16.py"""
import cupy
import numpy as np
import torch

import lsattn
from lsattn.backends.cupy import gated_delta as cgd

cgd.TIER_MIN_CHUNKS = 0
cgd.COARSE_GROUP_PERIODS = 0


def both(f):
    cgd.T3FILL = False
    cgd._TORCH_PLANS.clear()
    want = f()
    cgd.T3FILL = True
    cgd._TORCH_PLANS.clear()
    got = f()
    return float(abs(got - want).max() / abs(want).max())


T = 64 * 4 * 27 - 5
x = [torch.randn((1, 2, T, 64), device="cuda") for _ in range(3)]
x[1] = torch.nn.functional.normalize(x[1], dim=-1)
x += [-torch.rand((1, 2, T), device="cuda") * 0.1, torch.rand((1, 2, T), device="cuda"),
      torch.rand((1, 2, T, lsattn.num_levels(T)), device="cuda")]
xb = [t.to(torch.bfloat16) for t in x]
print("bfloat16 direct", T, "fill-vs-cfill", both(lambda: lsattn.loglinear_gated_delta(*xb).float()), flush=True)
rng = np.random.default_rng(0)
for dtype, T, dk, dv, C in (("float32", 1700, 16, 20, 16), ("float64", 1700, 5, 19, 16)):
    q, k, v = (cupy.asarray(rng.standard_normal((2, T, d)), dtype=dtype) for d in (dk, dk, dv))
    k /= cupy.linalg.norm(k, axis=-1, keepdims=True)
    a = cupy.asarray(-rng.random((2, T)) * 0.1, dtype=dtype)
    beta = cupy.asarray(rng.random((2, T)), dtype=dtype)
    lam = cupy.asarray(rng.standard_normal((2, T, lsattn.num_levels(T))), dtype=dtype)
    print(dtype, T, "fill-vs-cfill", both(lambda: lsattn.loglinear_gated_delta(q, k, v, a, beta, lam, chunk_size=C)),
          flush=True)
cupy.cuda.Device().synchronize()
print("sanitize ok")
