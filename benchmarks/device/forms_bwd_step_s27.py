"""One public bf16 training step of ``lsattn.loglinear_gated_delta`` (B=2, H=16, d=64, T from argv, default 8192;
bench_gpu_gated_delta's inputs), for ``ncu -k regex:gd_forms_bwd_x1 -c 1`` (session 27: the stall and instruction
profile of gd_forms_bwd_x1 for its restructure plan).
    ncu --set full -k regex:gd_forms_bwd_x1 -c 1 python benchmarks/device/forms_bwd_step_s27.py 8192"""
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), os.path.dirname(os.path.dirname(HERE))]
import lsattn  # noqa: E402
from bench_gpu_gated_delta import inputs  # noqa: E402

T = int(sys.argv[1]) if len(sys.argv) > 1 else 8192
x = [t.to(torch.bfloat16).requires_grad_() for t in inputs(T, torch.float32)]
out = lsattn.loglinear_gated_delta(*x)
(out.float() * torch.randn_like(out, dtype=torch.float32)).sum().backward()
torch.cuda.synchronize()
print("step done", T, [tuple(t.grad.shape) for t in x])
