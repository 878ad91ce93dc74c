"""Where a training step of ``log_attention`` goes on the GPU, bf16 against fp32 (a development aid;
results in NOTES.md): the public forward without and with gradient recording, forward + backward,
then the CUDA kernels of the bf16 step (torch profiler, which sees the CuPy launches too).

    python benchmarks/device/profile_log_train.py [T]
"""
import sys

import torch

sys.path.insert(0, "benchmarks")
from bench_gpu import cuda_time, ll_inputs_bhtd  # noqa: E402  (puts the repository on sys.path)
import lsattn  # noqa: E402

T = int(sys.argv[1]) if len(sys.argv) > 1 else 16384
base = ll_inputs_bhtd(T, torch.float32)[:3]
steps = {}
for dt in (torch.bfloat16, torch.float32):
    xs = [x.detach().to(dt).requires_grad_(True) for x in base]

    def fwd(xs=xs):
        return lsattn.log_attention(*xs)

    def fwd_nograd(xs=xs):
        with torch.no_grad():
            return lsattn.log_attention(*xs)

    def step(xs=xs):
        for x in xs:
            x.grad = None
        fwd(xs).float().square().mean().backward()

    steps[dt] = step
    for name, fn in (("forward, no grad", fwd_nograd), ("forward, recording", fwd), ("forward + backward", step)):
        print(f"{str(dt):15s} T={T} {name:22s} {cuda_time(fn, reps=10):8.3f} ms", flush=True)

from torch.profiler import ProfilerActivity, profile  # noqa: E402

steps[torch.bfloat16]()
torch.cuda.synchronize()
with profile(activities=[ProfilerActivity.CUDA]) as prof:
    for _ in range(3):
        steps[torch.bfloat16]()
    torch.cuda.synchronize()
print("bf16 step x 3, CUDA kernels by total time:")
print(prof.key_averages().table(sort_by="device_time_total", row_limit=16, max_name_column_width=48))
