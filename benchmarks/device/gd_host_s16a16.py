"""The host's part of one public ``loglinear_gated_delta`` forward from an idle GPU (issue 16, s16a16): B=2, H=16, d=64,
CUDA torch tensors (the forward table's inputs), at the T and dtypes given.

Per call (the latency protocol of ``bench_gpu.cuda_time``: synchronize, event, call, event, wait), host stamps
(``time.perf_counter_ns``, us after the call's start) at: the backend's ``forward``, ``_torch_call``, gd_forms' driver
launch, the two-tier scan's launches (``CupyOps.gd_tiers`` entry / exit), ``_torch_call``'s return, the wait for
gd_forms' flag (``KernelCheck.finite``: start / end), the call's return; medians over the calls. Beside it: the
CUDA-event latency of the call, the pipelined time (10 calls back to back / 10 ~ the GPU's busy time), and the
latency of one tiny torch kernel in the same protocol (the floor of a launch from an idle GPU).

    python benchmarks/device/gd_host_s16a16.py [T[,T..]] [bf16,fp32] [calls]
"""
import collections
import functools
import os
import statistics
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), os.path.dirname(os.path.dirname(HERE))]
import lsattn  # noqa: E402
from bench_gpu_gated_delta import inputs  # noqa: E402
from lsattn import _nonfinite  # noqa: E402
from lsattn.backends.cupy import _compile, _rawlaunch, gated_delta  # noqa: E402

STAMPS = []


def stamp(name):
    STAMPS.append((name, time.perf_counter_ns()))


def wrap(owner, attr, before, after=None):
    fn = getattr(owner, attr)

    @functools.wraps(fn)  # (forward's checks_inputs kept)
    def wrapped(*a, **kw):
        stamp(before)
        r = fn(*a, **kw)
        if after:
            stamp(after)
        return r
    setattr(owner, attr, wrapped)


wrap(gated_delta, "forward", "forward")
wrap(gated_delta, "_torch_call", "torch_call", "torch_call_ret")
wrap(_rawlaunch.RawLaunch, "__call__", "raw_launch")
wrap(_compile.CupyOps, "gd_tiers", "tiers", "tiers_ret")
_fin = _nonfinite.KernelCheck.finite.fget


def _finite(self):
    stamp("wait")
    r = _fin(self)
    stamp("wait_end")
    return r


_nonfinite.KernelCheck.finite = property(_finite)


def one(f):
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    STAMPS.clear()
    a.record()
    t0 = time.perf_counter_ns()
    f()
    t1 = time.perf_counter_ns()
    b.record()
    b.synchronize()
    seen = collections.Counter()
    out = {}
    for name, t in STAMPS:
        seen[name] += 1
        out[name if seen[name] == 1 else f"{name}{seen[name]}"] = (t - t0) / 1e3
    out["return"] = (t1 - t0) / 1e3
    return a.elapsed_time(b), out


def main():
    Ts = [int(t) for t in (sys.argv[1] if len(sys.argv) > 1 else "8192").split(",")]
    names = (sys.argv[2] if len(sys.argv) > 2 else "bf16,fp32").split(",")
    calls = int(sys.argv[3]) if len(sys.argv) > 3 else 20
    tiny = torch.zeros(1, device="cuda")
    for _ in range(5):
        one(lambda: tiny.add_(1))
    floor = statistics.median(one(lambda: tiny.add_(1))[0] for _ in range(calls))
    print(f"tiny kernel from an idle GPU: {floor * 1e3:.0f} us (median of {calls})")
    for T in Ts:
        for dtype, name in ((torch.bfloat16, "bf16"), (torch.float32, "fp32")):
            if name not in names:
                continue
            x = inputs(T, dtype)
            f = lambda: lsattn.loglinear_gated_delta(*x)  # noqa: E731
            for _ in range(3):
                f()
            runs = [one(f) for _ in range(calls)]
            torch.cuda.synchronize()
            t = time.perf_counter()
            for _ in range(10):
                f()
            torch.cuda.synchronize()
            pipe = (time.perf_counter() - t) * 100
            lat = statistics.median(r[0] for r in runs)
            keys = list(runs[-1][1])
            med = {k: statistics.median(r[1][k] for r in runs if k in r[1]) for k in keys}
            print(f"T={T} {name}: latency {lat:.3f} ms, pipelined {pipe:.3f} ms; latency - pipelined {1e3 * (lat - pipe):.0f} us")
            print("  host stamps (us after the call's start, median of %d): " % calls
                  + ", ".join(f"{k} {v:.0f}" for k, v in med.items()))
            first = [r[1].get("raw_launch", float("nan")) for r in runs]
            print(f"  to gd_forms' launch: min {min(first):.0f} median {statistics.median(first):.0f} max {max(first):.0f} us",
                  flush=True)
            x = f = None  # noqa: F841
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
