"""Session 23, s23d16 (issue 16): small bfloat16 loglinear_gated_delta calls (torch CUDA tensors, the direct path: S16,
O16) whose coarse slots are gd_coarse's (not the grouped form), for compute-sanitizer memcheck / racecheck / initcheck
of gd_coarse at 64 columns a block (GD_CCBW) and the walks' tf32-rounded slots (GD_T1SRN_SET): 6 and 9 periods, d_v 64
and 70 (a partial second column block), d_k 64 and 40; each against the same call on gd_scan (TIERED off) and, once,
the grouped coarse form. An argument M builds the kernels with GD_CPR_SET M (the coarse chains' stores from the
registers, 1; L2 prefetches, 2).
    compute-sanitizer --tool racecheck --kernel-name kns=gd_ python benchmarks/device/gd_coarse_small_s23d.py [M]"""
import sys

import torch

import lsattn
from lsattn.backends.cupy import _compile as cc
from lsattn.backends.cupy import gated_delta as cgd

if len(sys.argv) > 1:
    _source = cc._source
    cc._source = lambda name: _source(name).replace("#define GD_CPR_SET 0", f"#define GD_CPR_SET {int(sys.argv[1])}")

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
