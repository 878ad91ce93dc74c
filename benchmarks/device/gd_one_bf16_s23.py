"""One public ``loglinear_gated_delta`` forward at 8K on bf16 CUDA torch tensors (the forward table's inputs), after
two calls that compile and plan, for a kernel profiler (issue 16, session 23):

    ncu --kernel-name regex:gd_ --launch-skip 10 --launch-count 5 python benchmarks/device/gd_one_bf16_s23.py [T]
"""
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), os.path.dirname(os.path.dirname(HERE))]
import lsattn  # noqa: E402
from bench_gpu_gated_delta import inputs  # noqa: E402

T = int(sys.argv[1]) if len(sys.argv) > 1 else 8192
x = [t.to(torch.bfloat16) for t in inputs(T, torch.float32)]
for _ in range(3):
    out = lsattn.loglinear_gated_delta(*x)
torch.cuda.synchronize()
print("ok", out.shape, out.dtype, float(out.float().abs().max()))
