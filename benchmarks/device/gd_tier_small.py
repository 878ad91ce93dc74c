"""A few small loglinear_gated_delta calls from chunk 0 without state (gd_scan's two-tier form: gd_tier1, the coarse
slots (gd_cgroup, gd_coarse_g, gd_cfill; gd_coarse below 3 coarse levels), gd_tier3) for compute-sanitizer memcheck / racecheck: float32 (3xTF32), float64, bfloat16 on torch (1xTF32), odd T,
several coarse levels, d_k and d_v past one column block (float32: 64 columns); each against the same call on gd_scan (TIERED off).
    compute-sanitizer --tool racecheck --kernel-name kns=gd_ python benchmarks/device/gd_tier_small.py"""
import cupy
import numpy as np

import lsattn
from lsattn.backends.cupy import gated_delta as cgd

rng = np.random.default_rng(0)
cgd.TIER_MIN_CHUNKS = 0  # the two-tier form on these small calls
cgd.COARSE_GROUP_PERIODS = 0  # the coarse slots' grouped form (gd_cgroup, gd_coarse_g, gd_cfill) from 3 coarse levels


def both(f):
    cgd.TIERED = False
    cgd._TORCH_PLANS.clear()
    want = f()
    cgd.TIERED = True
    cgd._TORCH_PLANS.clear()
    got = f()
    return float(abs(got - want).max() / abs(want).max())


try:
    import torch
except ImportError:
    torch = None
if torch is not None:  # the bf16 direct path first (production; a sanitizer's run may be cut)
    T = 1500
    x = [torch.randn((2, T, 64), device="cuda") for _ in range(3)]
    x[1] = torch.nn.functional.normalize(x[1], dim=-1)
    x += [-torch.rand((2, T), device="cuda"), torch.rand((2, T), device="cuda"),
          torch.rand((2, T, lsattn.num_levels(T)), device="cuda")]
    xb = [t.to(torch.bfloat16) for t in x]
    print("bfloat16 direct", T, "tier-vs-main", both(lambda: lsattn.loglinear_gated_delta(*xb).float()), flush=True)
    print("float32 direct", T, "tier-vs-main", both(lambda: lsattn.loglinear_gated_delta(*x)), flush=True)
for dtype, T, dk, dv, C in (("float32", 1000, 64, 64, 64), ("float32", 400, 100, 130, 16),  # d_k padded to 128
                            ("float64", 300, 5, 19, 16), ("float32", 700, 40, 70, 32), ("float32", 20, 64, 64, 64)):
    q, k, v = (cupy.asarray(rng.standard_normal((2, T, d)), dtype=dtype) for d in (dk, dk, dv))
    k /= cupy.linalg.norm(k, axis=-1, keepdims=True)
    a = cupy.asarray(-rng.random((2, T)), dtype=dtype)
    beta = cupy.asarray(rng.random((2, T)), dtype=dtype)
    lam = cupy.asarray(rng.standard_normal((2, T, lsattn.num_levels(T))), dtype=dtype)
    print(dtype, T, "tier-vs-main", both(lambda: lsattn.loglinear_gated_delta(q, k, v, a, beta, lam, chunk_size=C)), flush=True)
cupy.cuda.Device().synchronize()
print("sanitize ok")
