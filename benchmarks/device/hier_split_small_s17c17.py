"""hier_small.py's calls with ``hierarchical.slots``' split on every call with merges (SPLIT_MIN 0: hi_isum, hi_merge
and hi_snap on the side stream beside hi_ipair), then a bfloat16 and a float32 training step (forward at the
backward's chunk, slots kept): for compute-sanitizer (memcheck, initcheck, racecheck). Session 17, s17c17."""
import os
import runpy

import torch

import lsattn
from lsattn.backends.cupy import hierarchical as chi

chi.SPLIT_MIN = 0
runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), "hier_small.py"))
for dt in (torch.bfloat16, torch.float32):
    g = torch.Generator(device="cuda").manual_seed(1)
    T = 700
    xs = [torch.randn(2, 2, T, d, device="cuda", generator=g).to(dt).requires_grad_(True) for d in (64, 64, 70)]
    lw = torch.randn(2, 2, T, lsattn.num_levels(T), device="cuda", generator=g).to(dt)
    a = torch.nn.functional.logsigmoid(torch.randn(2, 2, T, device="cuda", generator=g) + 3).to(dt)
    out = lsattn.loglinear_log_attention(*xs, lw, log_decay=a)
    out.float().square().mean().backward()
    torch.cuda.synchronize()
    print("train", dt, float(out.float().abs().max()), float(xs[0].grad.float().abs().max()))
print("split sanitize ok")
