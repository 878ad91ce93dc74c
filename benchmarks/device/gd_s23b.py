"""Session 23, s23b (issue 16): the two-tier scan's programmatic dependent launches (``gated_delta.PDL``) on / off in
one process, interleaved rounds; the public bf16 forward, B=2 H=16 d=64 from chunk 0 without state
(bench_gpu_gated_delta's inputs; CUDA torch tensors: the direct path, gd_forms launched by the driver, the scan's
launches by gd_tiers).
- latency: one call from an idle GPU (CUDA events on torch's stream: bench_gpu.events_ms(f, 1), cuda_time's measure),
  the median of 5 per round; pipelined: 10 calls back to back / 10; medians over ROUNDS rounds; whether the output
  equals mode off's bit for bit
- kernels (once per mode): torch.profiler's mean ms per kernel
Modes: off (plain launches: main), pdl (PDL on: a dependent starts as its producer's last block exits), off1 / pdl1:
TIER_FORK off (gd_tier1x on the one stream after gd_tier1: with PDL every launch after gd_forms a dependent one; the
default below 16 periods, T < 4K). Batches 1 and 2 also timed a build whose producers triggered their dependents as
each block started (griddepcontrol.launch_dependents; GD_PDL_TRIG_SET, compiled in-process beside the default): it
lost and was removed (benchmarks/NOTES.md "Session 23 — s23b").
    python benchmarks/device/gd_s23b.py warm|ab [T,T] [ROUNDS] [MODES]
"""
import os
import statistics
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), os.path.dirname(os.path.dirname(HERE))]
import lsattn  # noqa: E402
from bench_gpu import events_ms as timed, kernel_ms  # noqa: E402
from bench_gpu_gated_delta import inputs  # noqa: E402
from lsattn.backends.cupy import gated_delta as cgd  # noqa: E402

MODE = sys.argv[1] if len(sys.argv) > 1 else "ab"
Ts = [int(t) for t in (sys.argv[2] if len(sys.argv) > 2 else "8192,32768").split(",")]
ROUNDS = int(sys.argv[3]) if len(sys.argv) > 3 else 15
MODES = (sys.argv[4] if len(sys.argv) > 4 else "off,pdl").split(",")


def use(mode):
    cgd.PDL = mode.startswith("pdl")
    cgd.TIER_FORK = not mode.endswith("1")
    cgd._TORCH_PLANS.clear()


def fwd(x):
    return lsattn.loglinear_gated_delta(*x)


def main():
    for T in Ts:
        x = inputs(T, torch.bfloat16)
        if MODE == "warm":
            for m in MODES:
                use(m)
                fwd(x)
            torch.cuda.synchronize()
            print(f"compiled T={T}", flush=True)
            continue
        res = {m: ([], []) for m in MODES}
        outs = {}
        for r in range(ROUNDS + 1):
            for m in MODES:
                use(m)
                outs[m] = fwd(x)  # (the plan, its launches' blocks)
                lat = statistics.median(timed(lambda: fwd(x), 1) for _ in range(5))
                pipe = timed(lambda: fwd(x), 10)
                if r:
                    res[m][0].append(lat)
                    res[m][1].append(pipe)
        med = {m: [statistics.median(v) for v in res[m]] for m in MODES}
        base = med[MODES[0]]
        print(f"T={T} bf16, ms medians of {ROUNDS} rounds (latency: median of 5 a round | pipelined | vs {MODES[0]} | "
              f"bit-equal to {MODES[0]}):", flush=True)
        for m in MODES:
            lat, pipe = med[m]
            eq = torch.equal(outs[m], outs[MODES[0]])
            print(f"  {m:9s} latency {lat:.4f} | pipelined {pipe:.4f} | {1e3 * (lat - base[0]):+6.1f} / "
                  f"{1e3 * (pipe - base[1]):+6.1f} us | {'equal' if eq else 'DIFFER'}  "
                  f"(latency min {min(res[m][0]):.4f}, pipelined min {min(res[m][1]):.4f})", flush=True)
        for m in MODES:
            use(m)
            k = kernel_ms(lambda: fwd(x))
            print(f"  kernels {m}: " + ", ".join(f"{n[:12]} {v:.4f}" for n, v in sorted(k.items(), key=lambda e: -e[1])
                                                 if n.startswith("gd_")), flush=True)
        x = outs = None
        torch.cuda.empty_cache()
    use("pdl")


if __name__ == "__main__":
    main()
