"""Session 22, s22a16 (issue 16): the two-tier scan's host switches, on / off in one process, interleaved rounds; B=2
H=16 d=64 from chunk 0 without state (bench_gpu_gated_delta's inputs; CUDA torch tensors, no backend=), bf16 unless a
mode ends in @f32. Host switches only: every mode runs the same compiled kernels.
- scan: the GPU time from gd_forms' end to the scan's end (CUDA events recorded on torch's stream around
  CupyOps.gd_tiers: the first after gd_forms in stream order, the second after the join), one call from an idle GPU,
  medians of ROUNDS rounds (the kernel-alone A/B of the switches: concurrent kernels have no time of their own)
- public: the forward's latency (one call from an idle GPU, CUDA events: bench_gpu.cuda_time's measure) and pipelined
  time (10 calls back to back / 10), medians; whether the outputs equal mode off's (same coarse form) bit for bit
- kernels (once per mode): torch.profiler's mean ms per kernel (overlapped kernels' times count their overlap)
Modes: off (TIER_FORK False), fork (TIER_FORK, the defaults); suffixes: -g (COARSE_GROUP_BF16 False), +g (the grouped
coarse form at any size), +p (gd_coarse at any size), @f32 (float32 inputs). Session 22's batch 1 also timed
TIER_SPLIT_PERIODS / TIER_SPLIT_LEVELS / TIER_SPLIT_TOP (the top coarse chains on streams of their own beside gd_tier3's
lower periods), removed after it (benchmarks/NOTES.md "Session 22 — s22a16").
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
from bench_gpu import events_ms as timed, kernel_ms  # noqa: E402
from bench_gpu_gated_delta import inputs  # noqa: E402
from lsattn.backends.cupy import _compile as cc  # noqa: E402
from lsattn.backends.cupy import gated_delta as cgd  # noqa: E402

MODE = sys.argv[1] if len(sys.argv) > 1 else "ab"
Ts = [int(t) for t in (sys.argv[2] if len(sys.argv) > 2 else "8192,32768").split(",")]
ROUNDS = int(sys.argv[3]) if len(sys.argv) > 3 else 9
# MODES: "m,m,.." for every T, or "T=m,m,..;T=m,.." per T
SPEC = sys.argv[4] if len(sys.argv) > 4 else "off,fork"
PER_T = {int(t): ms.split(",") for t, ms in (x.split("=") for x in SPEC.split(";"))} if "=" in SPEC else None
MODES = sorted({m for ms in PER_T.values() for m in ms}) if PER_T else SPEC.split(",")
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
    mode, _, dt = mode.partition("@")
    base = "fork" if mode.startswith("fork") else "off"
    assert mode.startswith(base), mode
    coarse = mode[len(base):]
    cgd.TIER_FORK = base == "fork"
    cgd.COARSE_GROUP_BF16 = "-g" not in coarse
    cgd.COARSE_GROUP_PERIODS = 0 if "+g" in coarse else 10**9 if "+p" in coarse else GROUP
    cgd._TORCH_PLANS.clear()
    return torch.float32 if dt == "f32" else torch.bfloat16


def fwd(x):
    return lsattn.loglinear_gated_delta(*x)


def scan_ms(f):
    torch.cuda.synchronize()
    SPANS.clear()
    REC[0] = True
    f()
    REC[0] = False
    torch.cuda.synchronize()
    (e0, e1), = SPANS
    return cupy.cuda.get_elapsed_time(e0, e1)


def main():
    global MODES
    for T in Ts:
        MODES = PER_T[T] if PER_T else MODES
        xs = {}

        def x_of(m):
            dt = use(m)
            if dt not in xs:
                xs[dt] = inputs(T, dt)
            return xs[dt]

        if MODE == "warm":
            for m in MODES:
                fwd(x_of(m))
            torch.cuda.synchronize()
            print(f"compiled T={T}", flush=True)
            continue
        res = {m: ([], [], []) for m in MODES}
        outs = {}
        for r in range(ROUNDS + 1):
            for m in MODES:
                x = x_of(m)
                outs[m] = fwd(x)
                s = scan_ms(lambda: fwd(x))
                lat, pipe = timed(lambda: fwd(x), 1), timed(lambda: fwd(x), 10)
                if r:
                    for lst, v in zip(res[m], (s, lat, pipe)):
                        lst.append(v)
        med = {m: [statistics.median(v) for v in res[m]] for m in MODES}
        # (against off with the same coarse form and dtype: the grouped form's sums differ from gd_coarse's)
        eq = {m: torch.equal(outs[m], outs.get("off" + m[4 if m.startswith("fork") else 3:], outs[m])) for m in MODES}
        print(f"T={T}, ms medians of {ROUNDS} (scan span | public latency | pipelined | bit-equal to off):", flush=True)
        for m in MODES:
            s, lat, pipe = med[m]
            print(f"  {m:12s} scan {s:.3f} | latency {lat:.3f} | pipelined {pipe:.3f} | {'equal' if eq[m] else 'DIFFER'}"
                  f"  (scan min {min(res[m][0]):.3f}, latency min {min(res[m][1]):.3f})", flush=True)
        for m in MODES:
            x = x_of(m)
            k = kernel_ms(lambda: fwd(x))
            print(f"  kernels {m}: " + ", ".join(f"{n[:12]} {v:.3f}" for n, v in sorted(k.items(), key=lambda e: -e[1])
                                                 if n.startswith("gd_")), flush=True)
        xs = outs = x = None
        torch.cuda.empty_cache()
    use("fork")


if __name__ == "__main__":
    main()
