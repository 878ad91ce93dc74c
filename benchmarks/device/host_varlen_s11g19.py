"""Host cost of the issue's packed ``loglinear_attention`` call (issue 19, session 11): 16 long-tailed
documents summing to 64K tokens, bf16, H = 16, d = 64 (``bench_varlen_gpu``'s inputs), the offsets
as a CUDA tensor and as a list, against the unpacked call: wall ms per call (device drained around
20 calls), host ms per call (the same loop before its drain), then cProfile of 10 calls of each
packed form (top functions by own time), which says where the host time goes.
    python3 benchmarks/device/host_varlen_s11g19.py
"""
import cProfile
import io
import pstats
import sys
import time

import numpy as np
import torch

sys.path.insert(0, "benchmarks")
import lsattn  # noqa: E402
from bench_varlen_gpu import doc_lengths, make_inputs  # noqa: E402


def timed(fn, reps=20):
    fn()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    h = time.perf_counter() - t
    torch.cuda.synchronize()
    return 1e3 * (time.perf_counter() - t) / reps, 1e3 * h / reps


lens = doc_lengths(16, 65536, 0)
cu = np.concatenate([[0], np.cumsum(lens)])
x = make_inputs(torch, 65536, 16, 64, torch.bfloat16, "cuda", 0)
cu_dev = torch.as_tensor(cu, device="cuda")
calls = {"packed_cuda_offsets": lambda: lsattn.loglinear_attention(*x, cu_seqlens=cu_dev),
         "packed_list_offsets": lambda: lsattn.loglinear_attention(*x, cu_seqlens=cu.tolist()),
         "unpacked": lambda: lsattn.loglinear_attention(*x)}
for name, fn in calls.items():
    wall, host = timed(fn)
    print(f"{name:22s} wall {wall:6.2f} ms  host {host:6.2f} ms", flush=True)
for name in ("packed_list_offsets", "packed_cuda_offsets", "unpacked"):
    fn = calls[name]
    fn()
    torch.cuda.synchronize()
    pr = cProfile.Profile()
    pr.enable()
    for _ in range(10):
        fn()
    pr.disable()
    torch.cuda.synchronize()
    s = io.StringIO()
    pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(22)
    print(f"==== {name} (10 calls, by own time)\n" + "\n".join(s.getvalue().splitlines()[6:]), flush=True)
