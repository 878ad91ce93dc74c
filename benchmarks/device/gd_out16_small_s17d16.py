"""Small 16-bit loglinear_gated_delta calls on CUDA torch tensors through the direct path with the two-tier scan at
every size (TIER_MIN_CHUNKS 0), for compute-sanitizer (memcheck / initcheck / racecheck): gd_tier3 writing the output in
the inputs' dtype (OUT16, s17d16) from the float32 sums in the scratch (T not a multiple of the chunk, odd d_v, d_v in
two column blocks, the first period's rows, bfloat16 and float16), each against the float32 output (OUT16 off) rounded
by torch (bit for bit); gd_forms' 1xTF32 products (GF_X1) on the bfloat16 calls.

    python benchmarks/device/gd_out16_small_s17d16.py
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
import lsattn  # noqa: E402
from lsattn.backends.cupy import gated_delta as cgd  # noqa: E402

cgd.TIER_MIN_CHUNKS = 0
g = torch.Generator(device="cuda").manual_seed(0)
bad = 0
for dtype in (torch.bfloat16, torch.float16):
    for T, dv in ((600, 64), (333, 7), (1000, 100)):
        x = [torch.randn((2, T, d), device="cuda", generator=g) for d in (64, 64, dv)]
        x[1] = torch.nn.functional.normalize(x[1], dim=-1)
        x += [-torch.rand((2, T), device="cuda", generator=g), torch.rand((2, T), device="cuda", generator=g),
              torch.rand((2, T, lsattn.num_levels(T)), device="cuda", generator=g)]
        x = [t.to(dtype) for t in x]
        outs = []
        for cgd.OUT16 in (True, False):
            cgd._TORCH_PLANS.clear()
            outs.append(cgd._torch_call(*x, 64, None))
        cgd.OUT16 = True
        plan = next(iter(cgd._TORCH_PLANS.values()))
        same = outs[0].dtype == dtype and torch.equal(outs[1].to(dtype), outs[0])
        bad += not same
        torch.cuda.synchronize()
        print(dtype, T, dv, "tiers" if plan.tier else "gd_scan", "equal" if same else "DIFFERENT",
              float(outs[0].float().abs().max()), flush=True)
print("sanitize ok" if not bad else f"sanitize: {bad} calls differ")
