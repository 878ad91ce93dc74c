"""Where a packed call with states spends its device time and how many kernels it launches (issue
19, session 10): ``loglinear_gated_delta`` on CuPy float32, H = 16, d = 64, cases of
``streams_s9e19`` (N streams at ``p`` tokens: copies of one stream, ``n`` new tokens each), 3 calls under
``torch.profiler`` (CUPTI sees CuPy's kernels too): kernel launches per call, the top kernels by
device time, host time per call.
    python3 benchmarks/device/profile_streams_s10g19.py [N,p,n ...]
"""
import sys
import time

import cupy as cp
import torch
from streams_s10g19 import setup


def profile(N, p, n, op="loglinear_gated_delta", H=16, d=64, calls=3):
    call = setup(op, N, p, n, H, d)[3]
    call()
    cp.cuda.Device().synchronize()
    from torch.profiler import ProfilerActivity, profile as tprofile

    with tprofile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        t0 = time.perf_counter()
        for _ in range(calls):
            call()
        host = (time.perf_counter() - t0) / calls
        cp.cuda.Device().synchronize()
    kernels = [e for e in prof.key_averages() if e.device_type == torch.autograd.DeviceType.CUDA]
    dev_us = lambda e: getattr(e, "device_time_total", getattr(e, "cuda_time_total", 0))  # noqa: E731
    launches = sum(e.count for e in kernels) / calls
    total = sum(dev_us(e) for e in kernels) / calls / 1e3
    print(f"{op} N={N} p={p} n={n}: host {1e3 * host:.2f} ms/call, {launches:.0f} kernels/call, "
          f"device busy {total:.2f} ms/call; top kernels (ms/call, launches/call):", flush=True)
    for e in sorted(kernels, key=dev_us, reverse=True)[:12]:
        print(f"   {dev_us(e) / calls / 1e3:8.3f} {e.count / calls:6.1f}  {e.key[:110]}", flush=True)


if __name__ == "__main__":
    cases = [tuple(map(int, a.split(","))) for a in sys.argv[1:]] or [(16, 1023, 1), (64, 4096, 1), (16, 2000, 1024)]
    for c in cases:
        profile(*c)
