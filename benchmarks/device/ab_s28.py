"""Session 28 (issue 16): s27p's step 1 (benchmarks/NOTES.md "Session 27 — s27p", order of work), the timing builds that
decide R2's regime, gd_forms_bwd_x1 alone on ab_s24b.py's kernel mode (its inputs, interleaved rounds, outputs against
b0's): b0 = the default (2 blocks an SM, 128 registers), m1 = FB_MINB 1 (one block an SM), mu = m1 + FB_LDMU 8 (k-loops
unrolled), ns = FB_ABL 1 (no solve: R1's stand-in), mun = mu + FB_ABL 1. Predicted (s27p): m1 1.05-1.35x of b0, mu
0.9-1.2x, **mun / ns 0.85-1.1x** (<= 0.9: R2 at one block an SM pays; >= 1.0: R2 stays at two).

    python ab_s28.py kernel T,T ROUNDS [B,B,..]
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ab_s24b as ab  # noqa: E402

ab.BUILDS.clear()
ab.BUILDS.update({"b0": (ab.cfg16, ()), "m1": (ab.cfg16, ("-DFB_MINB=1",)),
                  "mu": (ab.cfg16, ("-DFB_MINB=1", "-DFB_LDMU=8")), "ns": (ab.cfg16, ("-DFB_ABL=1",)),
                  "mun": (ab.cfg16, ("-DFB_MINB=1", "-DFB_LDMU=8", "-DFB_ABL=1"))})

if __name__ == "__main__":
    Ts = [int(t) for t in sys.argv[2].split(",")]
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 7
    sel = [b for b in sys.argv[4].split(",") if b] if len(sys.argv) > 4 else ["m1", "mu", "ns", "mun"]
    ab.SEL[:] = ["b0"] + [b for b in sel if b != "b0"]
    ab.kernel(Ts, rounds)
