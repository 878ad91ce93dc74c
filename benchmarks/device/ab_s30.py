"""Session 30 (issue 16): ``gated_delta.TRAIN_DIRECT`` A/B in one process: the public bf16 fwd+bwd step (ab_s24a.one:
B=2, H=16, d=64, bench_gpu_gated_delta's inputs; CUDA-event medians of REPS rounds of 5 steps, one step's latency from
an idle GPU, peak memory) with the switch off (gd_forms through CupyOps after six CuPy views and eight CuPy
allocations) and on (gd_forms by the driver on the inputs' pointers into two torch allocations, before any CuPy view),
rotated. Predicted (benchmarks/NOTES.md "Session 30 — lead"): the pipelined step unchanged, the latency -0.25..-0.4 ms
at every T (the host's time to gd_forms' launch).

    python ab_s30.py public T,T [REPS]
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE), os.path.dirname(os.path.dirname(HERE))]

import ab_s24a  # noqa: E402
from lsattn.backends.cupy import gated_delta as cgd  # noqa: E402


def mode(m):
    """'off': gd_forms through CupyOps; 'on': TRAIN_DIRECT."""
    cgd.TRAIN_DIRECT = m == "on"


def public(Ts, reps):
    ab_s24a.mode = mode  # (ab_s24a.one reads its module's ``mode``; MODES ("on", "off"))
    rows = [ab_s24a.one(T, reps) for T in Ts]
    mode("on")
    print("| T | off ms | on (TRAIN_DIRECT) ms | on/off | latency off / on ms | peak GB off / on |")
    print("|---|---:|---:|---:|---|---|")
    for T, med, ml, mem in rows:
        print(f"| {T} | {med['off']:.3f} | {med['on']:.3f} | {med['on'] / med['off']:.3f} | {ml['off']:.3f} / "
              f"{ml['on']:.3f} | {mem['off']:.2f} / {mem['on']:.2f} |", flush=True)


if __name__ == "__main__":
    assert sys.argv[1] == "public", sys.argv
    public([int(t) for t in sys.argv[2].split(",")], int(sys.argv[3]) if len(sys.argv) > 3 else 9)
