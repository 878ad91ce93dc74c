"""The public bf16 loglinear_gated_delta forward (B=2, H=16, d=64, CUDA torch tensors; bench_gpu_gated_delta's inputs)
with gd_tier3 rounding the output (OUT16, s17d16) against the float32 output cast by torch (OUT16 off), interleaved
rounds in one process: per T, ms medians of ROUNDS rounds of the latency (one call from an idle GPU, CUDA events) and
the pipelined time (10 calls back to back / 10); the outputs of both equal bit for bit.

    python benchmarks/device/gd_pub_s17d16.py [T[,T...]] [ROUNDS]
"""
import os
import statistics
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), os.path.dirname(os.path.dirname(HERE))]
import lsattn  # noqa: E402
from bench_gpu_gated_delta import inputs  # noqa: E402
from lsattn.backends.cupy import gated_delta as cgd  # noqa: E402

Ts = [int(t) for t in (sys.argv[1] if len(sys.argv) > 1 else "8192,16384,32768").split(",")]
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 7


def timed(x, n):
    ev = [torch.cuda.Event(enable_timing=True) for _ in range(2)]
    torch.cuda.synchronize()
    ev[0].record()
    for _ in range(n):
        lsattn.loglinear_gated_delta(*x)
    ev[1].record()
    ev[1].synchronize()
    return ev[0].elapsed_time(ev[1]) / n


for T in Ts:
    x = inputs(T, torch.bfloat16)
    res, outs = {True: ([], []), False: ([], [])}, {}
    for r in range(ROUNDS + 1):
        for mode in (True, False):
            cgd.OUT16 = mode
            cgd._TORCH_PLANS.clear()
            outs[mode] = lsattn.loglinear_gated_delta(*x)  # (the plan)
            lat, pipe = timed(x, 1), timed(x, 10)
            if r:
                res[mode][0].append(lat), res[mode][1].append(pipe)
    cgd.OUT16 = True
    same = torch.equal(outs[True], outs[False]) and outs[True].dtype == torch.bfloat16
    m = {k: (statistics.median(a), statistics.median(b)) for k, (a, b) in res.items()}
    print(f"T={T} bf16 public fwd: OUT16 latency {m[True][0]:.3f} pipelined {m[True][1]:.3f} ms | cast by torch "
          f"latency {m[False][0]:.3f} pipelined {m[False][1]:.3f} ms | outputs {'equal' if same else 'DIFFERENT'}", flush=True)
