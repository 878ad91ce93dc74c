"""Session 22, s22a16 (issue 16): the two-tier scan's host switches gated_delta.TIER_FORK (gd_tier1x on a second stream
beside gd_tier1) and TIER_SPLIT_PERIODS (the top coarse chain on a second stream beside the other chains and gd_tier3's
lower periods), and the coarse form at 8K / 16K (COARSE_GROUP_PERIODS), on / off in one process, interleaved rounds;
B=2 H=16 d=64 bf16 from chunk 0 without state (bench_gpu_gated_delta's inputs; CUDA torch tensors, no backend=).
The switches are host-side: every mode runs the same compiled kernels.
- scan: the GPU time from gd_forms' end to the scan's end (CUDA events recorded on torch's stream around
  CupyOps.gd_tiers: the first after gd_forms in stream order, the second after the join), one call from an idle GPU,
  medians of ROUNDS rounds (the kernel-alone A/B of the switches: concurrent kernels have no time of their own)
- public: the forward's latency (one call from an idle GPU, CUDA events: bench_gpu.cuda_time's measure) and pipelined
  time (10 calls back to back / 10), medians; whether the outputs equal mode off's bit for bit
- kernels (once per mode): torch.profiler's mean ms per kernel (the tier kernels' sum counts overlapped time twice)
Modes: off (both off), fork, split, on (both; splitK / onK: TIER_SPLIT_LEVELS = K, else 2; a
t after K: TIER_SPLIT_TOP), and X+g (mode X with the
grouped coarse form from any size), X+p (the plain gd_coarse at any size).
    python benchmarks/device/gd_s22a.py warm [T,T] 1 [MODES]
    python benchmarks/device/gd_s22a.py ab [T,T] [ROUNDS] [MODES]   (MODES: m,m,.. or T=m,m,..;T=m,..)
"""
import os
import statistics
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), os.path.dirname(os.path.dirname(HERE))]
import cupy  # noqa: E402
import lsattn  # noqa: E402
from bench_gpu_gated_delta import inputs  # noqa: E402
from lsattn.backends.cupy import _compile as cc  # noqa: E402
from lsattn.backends.cupy import gated_delta as cgd  # noqa: E402

MODE = sys.argv[1] if len(sys.argv) > 1 else "ab"
Ts = [int(t) for t in (sys.argv[2] if len(sys.argv) > 2 else "8192,32768").split(",")]
ROUNDS = int(sys.argv[3]) if len(sys.argv) > 3 else 9
# MODES: "m,m,.." for every T, or "T=m,m,..;T=m,.." per T
SPEC = sys.argv[4] if len(sys.argv) > 4 else "off,fork,split,on,on+g,off+g"
PER_T = {int(t): ms.split(",") for t, ms in (x.split("=") for x in SPEC.split(";"))} if "=" in SPEC else None
MODES = sorted({m for ms in PER_T.values() for m in ms}) if PER_T else SPEC.split(",")
# (TIER_FORK, TIER_SPLIT_PERIODS, TIER_SPLIT_LEVELS, TIER_SPLIT_TOP); a digit after split / on: that many levels split,
# a "t" after it: the top chain in two launches
BASE = {"off": (False, 0, 1, False), "fork": (True, 0, 1, False), "split": (False, 16, 2, False), "on": (True, 16, 2, False)}
BASE |= {f"{m}{k}{t}": (m == "on", 16, k, t == "t") for m in ("split", "on") for k in (1, 2, 3) for t in ("", "t")}
GROUP = cgd.COARSE_GROUP_PERIODS
SPANS, REC = [], [False]
_real = cc.CupyOps.gd_tiers


def _recorded(self, *a, **k):
    if not REC[0]:
        return _real(self, *a, **k)
    e0, e1 = cupy.cuda.Event(), cupy.cuda.Event()
    e0.record()
    r = _real(self, *a, **k)
    e1.record()
    SPANS.append((e0, e1))
    return r


cc.CupyOps.gd_tiers = _recorded


def use(mode):
    name, _, coarse = mode.partition("+")
    cgd.TIER_FORK, cgd.TIER_SPLIT_PERIODS, cgd.TIER_SPLIT_LEVELS, cgd.TIER_SPLIT_TOP = BASE[name]
    cgd.COARSE_GROUP_PERIODS = {"": GROUP, "g": 0, "p": 10**9}[coarse]
    cgd._TORCH_PLANS.clear()


def fwd(x):
    return lsattn.loglinear_gated_delta(*x)


def timed(f, n):
    ev = [torch.cuda.Event(enable_timing=True) for _ in range(2)]
    torch.cuda.synchronize()
    ev[0].record()
    for _ in range(n):
        f()
    ev[1].record()
    ev[1].synchronize()
    return ev[0].elapsed_time(ev[1]) / n


def scan_ms(f):
    torch.cuda.synchronize()
    SPANS.clear()
    REC[0] = True
    f()
    REC[0] = False
    torch.cuda.synchronize()
    (e0, e1), = SPANS
    return cupy.cuda.get_elapsed_time(e0, e1)


def kernel_ms(f, calls=3):
    from torch.profiler import ProfilerActivity, profile

    f()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(calls):
            f()
        torch.cuda.synchronize()
    out = {}
    for e in prof.key_averages():
        us = getattr(e, "device_time_total", None)
        us = e.cuda_time_total if us is None else us
        if us:
            out[e.key] = us / 1e3 / calls
    return out


def main():
    global MODES
    for T in Ts:
        MODES = PER_T[T] if PER_T else MODES
        x = inputs(T, torch.bfloat16)
        if MODE == "warm":
            for m in MODES:
                use(m)
                fwd(x)
            torch.cuda.synchronize()
            print(f"compiled T={T}", flush=True)
            continue
        res = {m: ([], [], []) for m in MODES}
        outs = {}
        for r in range(ROUNDS + 1):
            for m in MODES:
                use(m)
                outs[m] = fwd(x)
                s = scan_ms(lambda: fwd(x))
                lat, pipe = timed(lambda: fwd(x), 1), timed(lambda: fwd(x), 10)
                if r:
                    for lst, v in zip(res[m], (s, lat, pipe)):
                        lst.append(v)
        med = {m: [statistics.median(v) for v in res[m]] for m in MODES}
        # (against off with the same coarse form: the grouped form's sums differ from gd_coarse's)
        eq = {m: torch.equal(outs[m], outs.get("off" + m[len(m.partition("+")[0]):], outs[m])) for m in MODES}
        print(f"T={T} bf16, ms medians of {ROUNDS} (scan span | public latency | pipelined | bit-equal to off):", flush=True)
        for m in MODES:
            s, lat, pipe = med[m]
            print(f"  {m:8s} scan {s:.3f} | latency {lat:.3f} | pipelined {pipe:.3f} | {'equal' if eq[m] else 'DIFFER'}"
                  f"  (scan min {min(res[m][0]):.3f}, latency min {min(res[m][1]):.3f})", flush=True)
        for m in MODES:
            use(m)
            k = kernel_ms(lambda: fwd(x))
            print(f"  kernels {m}: " + ", ".join(f"{n[:12]} {v:.3f}" for n, v in sorted(k.items(), key=lambda e: -e[1])
                                                 if n.startswith("gd_")), flush=True)
        x = outs = None
        torch.cuda.empty_cache()
    use("on")


if __name__ == "__main__":
    main()
