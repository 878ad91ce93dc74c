"""Session 22, s22a16 (issue 16): a few small loglinear_gated_delta calls from chunk 0 without state whose two-tier
scan uses the second stream (gated_delta.TIER_FORK: gd_tier1x beside gd_tier1; TIER_SPLIT_PERIODS: the top coarse chain
beside the other chains, gd_tier3 in two launches;
TIER_SPLIT_LEVELS 3: three levels' chains on three streams) for compute-sanitizer memcheck / racecheck / initcheck; each against
the same call on one stream (both off): bit for bit.
    compute-sanitizer --tool memcheck python benchmarks/device/gd_split_small_s22a.py"""
import cupy
import numpy as np
import torch

import lsattn
from lsattn.backends.cupy import gated_delta as cgd

rng = np.random.default_rng(0)
cgd.TIER_MIN_CHUNKS = 0


def both(f):
    outs = []
    for fork, periods, levels in ((False, 0, 1), (True, 2, 1), (True, 2, 3)):
        cgd.TIER_FORK, cgd.TIER_SPLIT_PERIODS, cgd.TIER_SPLIT_LEVELS = fork, periods, levels
        cgd._TORCH_PLANS.clear()
        outs.append(f())
    torch.cuda.synchronize()
    return "bit-equal" if all(bool((o == outs[0]).all()) for o in outs[1:]) else "DIFFER"


for grouped in (False, True):
    cgd.COARSE_GROUP_PERIODS = 0 if grouped else 10**9
    T = 4200  # 66 chunks of 64: 17 periods, 5 coarse levels
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
