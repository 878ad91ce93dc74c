"""K2_WALK + TIER_BWD_STORES A/B (s26c, issue 16): ab_s24a.py's measurement of the public bfloat16 fwd+bwd step
(B=2, H=16, d=64; CUDA-event medians of REPS rounds of 5 pipelined steps, latency, peak memory, the gd_ kernels per
step, the gradients on / off) with ``off`` (session 25's tier_backward: K2's per-level chains gd_coarse_bwd, every
buffer zeroed) and ``on`` (K2's walk form gd_coarse_walk_bwd, dQp / dTot not zeroed) rotated in one process.
    python benchmarks/device/ab_s26c.py 16384,32768 [REPS]"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ab_s24a  # noqa: E402
from lsattn.backends.cupy import gated_delta_bwd as gdb  # noqa: E402


def mode(m):
    """'off': session 25's tier_backward; 'on': this branch's."""
    gdb.K2_WALK = gdb.TIER_BWD_STORES = m == "on"


def main():
    ab_s24a.mode = mode
    Ts = [int(t) for t in sys.argv[1].split(",")]
    REPS = int(sys.argv[2]) if len(sys.argv) > 2 else 7
    rows = [ab_s24a.one(T, REPS) for T in Ts]
    mode("on")
    print("| T | off (s25: chains, zeroed) ms | on (walk, stores) ms | on/off | latency off / on | peak GB off / on |")
    print("|---|---:|---:|---:|---|---|")
    for T, med, ml, mem in rows:
        print(f"| {T} | {med['off']:.3f} | {med['on']:.3f} | {med['on'] / med['off']:.3f} | {ml['off']:.3f} / "
              f"{ml['on']:.3f} | {mem['off']:.2f} / {mem['on']:.2f} |")


if __name__ == "__main__":
    main()
