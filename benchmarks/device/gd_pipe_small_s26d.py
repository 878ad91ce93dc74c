"""``gated_delta.PIPE_PARTS`` (s26d) on small bfloat16 calls for compute-sanitizer memcheck / racecheck / initcheck: the
direct path's sequences in 2 and 3 parts (each part's scan but the last on a high-priority stream beside the next
part's gd_forms) against one part, bit for bit (printed), gd_coarse and the grouped coarse form.
    compute-sanitizer --tool racecheck python benchmarks/device/gd_pipe_small_s26d.py"""
import torch

import lsattn
from lsattn.backends.cupy import gated_delta as cgd

cgd.PIPE_MIN_PERIODS = 0
for T, grouped in ((1500, False), (2300, True)):  # 6 / 9 periods
    cgd.COARSE_GROUP_PERIODS = 0 if grouped else 10**9
    g = torch.Generator(device="cuda").manual_seed(T)
    x = [torch.randn((2, 2, T, 64), device="cuda", generator=g) for _ in range(3)]
    x[1] = torch.nn.functional.normalize(x[1], dim=-1)
    x += [-torch.rand((2, 2, T), device="cuda", generator=g), torch.rand((2, 2, T), device="cuda", generator=g),
          torch.rand((2, 2, T, lsattn.num_levels(T)), device="cuda", generator=g)]
    x = [t.to(torch.bfloat16) for t in x]
    outs = {}
    for K in (1, 2, 3):
        cgd.PIPE_PARTS = K
        cgd._TORCH_PLANS.clear()
        outs[K] = lsattn.loglinear_gated_delta(*x)
        plan = next(iter(cgd._TORCH_PLANS.values()))
        print("T", T, "grouped", grouped, "parts", K, None if plan.parts is None else len(plan.parts),
              "equal to 1:", torch.equal(outs[K], outs[1]), flush=True)
torch.cuda.synchronize()
print("sanitize ok")
