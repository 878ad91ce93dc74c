"""Where the public ``loglinear_log_attention`` call goes beyond its kernels (a development aid;
results in NOTES.md): B=2, H=16, T=8192, d=64 float32 CUDA torch tensors (bench_gpu_hierarchical's
inputs): host time per call, wall time, the CUDA kernels of 5 calls (torch profiler, which sees the
prologue's torch reductions and the CuPy launches) and the host functions by own time (cProfile).

    python benchmarks/device/profile_hier.py [T]
"""
import cProfile
import pstats
import sys
import time

import torch

sys.path.insert(0, "benchmarks")
from bench_gpu_hierarchical import inputs  # noqa: E402  (puts the repository on sys.path)
import lsattn  # noqa: E402

T = int(sys.argv[1]) if len(sys.argv) > 1 else 8192
q, k, lv, lam, a = inputs(torch, T, torch.float32)


def call():
    return lsattn.loglinear_log_attention(q, k, lv, lam, log_decay=a)


for _ in range(3):
    call()
torch.cuda.synchronize()
t = time.perf_counter()
for _ in range(10):
    call()
host = time.perf_counter() - t
torch.cuda.synchronize()
wall = time.perf_counter() - t
print(f"T={T} public call: host {100 * host:.3f} ms/call, wall {100 * wall:.3f} ms/call", flush=True)

from torch.profiler import ProfilerActivity, profile  # noqa: E402

with profile(activities=[ProfilerActivity.CUDA]) as prof:
    for _ in range(5):
        call()
    torch.cuda.synchronize()
print("5 calls, CUDA kernels by total time:")
print(prof.key_averages().table(sort_by="device_time_total", row_limit=14, max_name_column_width=40))
pr = cProfile.Profile()
pr.enable()
for _ in range(5):
    call()
torch.cuda.synchronize()
pr.disable()
pstats.Stats(pr).sort_stats("tottime").print_stats(12)
