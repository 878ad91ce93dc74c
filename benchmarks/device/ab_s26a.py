"""s26a (issue 16): gd_forms_bwd_x1's product engine, FB_LDM (the tile operands by ldmatrix, products that share their B
operand in one k-loop) against session 24's (FB_LDM 0), A/B in one process: ab_s24b.py's kernel / public / warm modes
(its inputs, its interleaved rounds, bf16 outputs against b0's bit for bit) on these builds of gated_delta_bwd's sources,
TI_BF16 (bf16 callers, GRAD_BF16): b0 = FB_LDM 0, FB_DLQ 0 (session 24's kernel), b1 = the default (FB_LDM 1, FB_DLQ 1:
dlam's level sums by quads of lanes), d0 = b1 with FB_DLQ 0 (bit-equal to b0; b1: dlam moves by its sums' order),
u2 = b1 with its k-loop unrolled by 2 (FB_LDMU 2), f0 / f1 = the float32 build (b0's / b1's switches) on the widened inputs,
ns / nm = b1 without the solve / without every product (FB_ABL 1 / 2: timing ablations, wrong gradients).

    python ab_s26a.py warm|kernel|public T,T ROUNDS [B,B,..]   (ab_s24b.py's arguments)
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ab_s24b as ab  # noqa: E402

OLD = ("-DFB_LDM=0", "-DFB_DLQ=0")
ab.BUILDS.clear()
ab.BUILDS.update({"b0": (ab.cfg16, OLD), "b1": (ab.cfg16, ()), "d0": (ab.cfg16, ("-DFB_DLQ=0",)), "u2": (ab.cfg16, ("-DFB_LDMU=2",)),
                  "f0": (ab.cfg32, OLD), "f1": (ab.cfg32, ()),
                  "ns": (ab.cfg16, ("-DFB_ABL=1",)), "nm": (ab.cfg16, ("-DFB_ABL=2",))})

if __name__ == "__main__":
    mode = sys.argv[1]
    Ts = [int(t) for t in (sys.argv[2] if len(sys.argv) > 2 else "8192").split(",")]
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 7
    sel = [b for b in sys.argv[4].split(",") if b] if len(sys.argv) > 4 else []
    ab.SEL[:] = ([] if mode == "warm" else ["b0"]) + [b for b in (sel or ["b1"]) if b != "b0" or mode == "warm"]
    if mode == "warm":
        for name in ab.SEL:
            ab.fn(name)
    elif mode == "kernel":
        ab.kernel(Ts, rounds)
    else:
        ab.public(Ts, rounds)
