"""TIER_BWD A/B (s25d, issue 16): ab_s24a.py's measurement of the public bfloat16 fwd+bwd step (B=2, H=16, d=64,
bench_gpu_gated_delta's inputs; CUDA-event medians of REPS rounds of 5 pipelined steps, every sample printed, one
step's latency, peak memory (torch allocator and CuPy pool), the gd_ kernels per step, the gradients on / off) with its
two modes rotated in one process being ``off`` (``gated_delta_bwd.TIER_BWD`` off: main's gd_scan_bwd_x1, nothing kept
by the forward) and ``on`` (the forward keeps gd_tiers' Qp, Z, Sb; the backward runs K1-K4: gd_tier3_bwd,
gd_coarse_bwd, gd_tier1x_bwd, gd_tier1_bwd).
    python benchmarks/device/ab_s25d.py 8192,16384,32768 [REPS]"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ab_s24a  # noqa: E402
from lsattn.backends.cupy import gated_delta_bwd as gdb  # noqa: E402


def mode(m):
    """'off': main's path (gd_scan_bwd); 'on': TIER_BWD."""
    gdb.TIER_BWD = m == "on"


def main():
    ab_s24a.mode = mode  # (ab_s24a.one reads its module's ``mode``; its MODES are ("on", "off") too)
    Ts = [int(t) for t in sys.argv[1].split(",")]
    REPS = int(sys.argv[2]) if len(sys.argv) > 2 else 7
    rows = [ab_s24a.one(T, REPS) for T in Ts]
    mode("on")
    print("| T | off (main: gd_scan_bwd) ms | on (TIER_BWD) ms | on/off | latency off / on | peak GB off / on |")
    print("|---|---:|---:|---:|---|---|")
    for T, med, ml, mem in rows:
        print(f"| {T} | {med['off']:.3f} | {med['on']:.3f} | {med['on'] / med['off']:.3f} | {ml['off']:.3f} / "
              f"{ml['on']:.3f} | {mem['off']:.2f} / {mem['on']:.2f} |")


if __name__ == "__main__":
    main()
