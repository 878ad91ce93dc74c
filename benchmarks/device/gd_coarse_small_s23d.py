"""Session 23, s23d16 (issue 16): small bfloat16 loglinear_gated_delta calls (torch CUDA tensors, the direct path: S16,
O16) whose coarse slots are gd_coarse's (not the grouped form), for compute-sanitizer memcheck / racecheck / initcheck
of s23d's coarse-chain switches (gated_delta_coarse.cu: GD_CAX_SET, GD_CSR_SET, GD_CPR_SET; batch 1 ran it on gd_coarse
at 64 columns, batch 2 also on a build with the chains' L2 prefetches, gd_tier3's reversed block order and gd_coarse at
16 columns, all three since removed): 6 and 9 periods, d_v 64 and 70 (a partial second column block), d_k 64 and 40;
each against the same call on gd_scan (TIERED off) and, once, the grouped coarse form.
    compute-sanitizer --tool racecheck --kernel-name kns=gd_ python benchmarks/device/gd_coarse_small_s23d.py"""
import torch

import lsattn
from lsattn.backends.cupy import gated_delta as cgd

cgd.TIER_MIN_CHUNKS = 0  # the two-tier form on these small calls
cgd.COARSE_GROUP_PERIODS = 10**9  # gd_coarse at every size (COARSE_GROUP_BF16 halves it: still every size)


def both(f):
    cgd.TIERED = False
    cgd._TORCH_PLANS.clear()
    want = f()
    cgd.TIERED = True
    cgd._TORCH_PLANS.clear()
    got = f()
    return float((got - want).abs().max() / want.abs().max())


g = torch.Generator(device="cuda").manual_seed(0)
for T, dk, dv in ((1500, 64, 70), (2300, 64, 64), (1100, 40, 33)):
    x = [torch.randn((2, T, d), device="cuda", generator=g) for d in (dk, dk, dv)]
    x[1] = torch.nn.functional.normalize(x[1], dim=-1)
    x += [-torch.rand((2, T), device="cuda", generator=g), torch.rand((2, T), device="cuda", generator=g),
          torch.rand((2, T, lsattn.num_levels(T)), device="cuda", generator=g)]
    xb = [t.to(torch.bfloat16) for t in x]
    print("bfloat16 gd_coarse", T, dk, dv, "tier-vs-main", both(lambda: lsattn.loglinear_gated_delta(*xb).float()),
          flush=True)
cgd.COARSE_GROUP_PERIODS = 0  # the grouped form (gd_cgroup, gd_coarse_g; gd_tier3's fold) once
print("bfloat16 grouped", T, dk, dv, "tier-vs-main", both(lambda: lsattn.loglinear_gated_delta(*xb).float()), flush=True)
torch.cuda.synchronize()
print("sanitize ok")
