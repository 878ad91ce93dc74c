"""Session 22, s22a16 (issue 16): a few small loglinear_gated_delta calls from chunk 0 without state whose two-tier scan
runs gd_tier1x on a second stream beside gd_tier1 (gated_delta.TIER_FORK), for compute-sanitizer memcheck / racecheck /
initcheck; each against the same call on one stream (TIER_FORK off): bit for bit. Both coarse forms; the direct path
(bfloat16 torch tensors) and CuPy's (float32, float64).
    compute-sanitizer --tool memcheck python benchmarks/device/gd_fork_small_s22a.py"""
import cupy
import numpy as np
import torch

import lsattn
from lsattn.backends.cupy import gated_delta as cgd

rng = np.random.default_rng(0)
cgd.TIER_MIN_CHUNKS = 0
cgd.TIER_FORK_PERIODS = 0  # (the fork on these small calls)


def both(f):
    outs = []
    for fork in (False, True):
        cgd.TIER_FORK = fork
        cgd._TORCH_PLANS.clear()
        outs.append(f())
    torch.cuda.synchronize()
    return "bit-equal" if bool((outs[0] == outs[1]).all()) else "DIFFER"


for grouped in (False, True):
    cgd.COARSE_GROUP_PERIODS = 0 if grouped else 10**9
    T = 1500  # 24 chunks of 64: 6 periods, 3 coarse levels
    x = [torch.randn((1, 2, T, 64), device="cuda") for _ in range(3)]
    x[1] = torch.nn.functional.normalize(x[1], dim=-1)
    x += [-torch.rand((1, 2, T), device="cuda"), torch.rand((1, 2, T), device="cuda"),
          torch.rand((1, 2, T, lsattn.num_levels(T)), device="cuda")]
    xb = [t.to(torch.bfloat16) for t in x]
    print("grouped" if grouped else "plain", "bfloat16 direct", T, both(lambda: lsattn.loglinear_gated_delta(*xb)), flush=True)
    for dtype, T, dk, dv, C in (("float32", 700, 40, 70, 16), ("float64", 500, 5, 19, 16)):
        q, k, v = (cupy.asarray(rng.standard_normal((2, T, d)), dtype=dtype) for d in (dk, dk, dv))
        k /= cupy.linalg.norm(k, axis=-1, keepdims=True)
        a = cupy.asarray(-rng.random((2, T)), dtype=dtype)
        beta = cupy.asarray(rng.random((2, T)), dtype=dtype)
        lam = cupy.asarray(rng.standard_normal((2, T, lsattn.num_levels(T))), dtype=dtype)
        print("grouped" if grouped else "plain", dtype, T,
              both(lambda: lsattn.loglinear_gated_delta(q, k, v, a, beta, lam, chunk_size=C)), flush=True)
cupy.cuda.Device().synchronize()
print("sanitize ok")
