"""Session 23, s23d16 (CPU, issue 16): the S16 path's float32 output (before its rounding) against the float64
reference with the walks' slots stored tf32-rounded (GD_T1SRN_SET 1, the default) and as float32 (0, session 22's), on
tests/test_cupy_gated_delta.py's emulation (gd_coarse, not the grouped form, unless T passes 32 periods); max |x - ref|
/ max |ref| per case (S16 = 1e-2).

    python benchmarks/device/gd_srn_err_s23d.py [T 1100] [cases 24]
"""
import itertools
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]
import test_cupy_gated_delta as t  # noqa: E402

from lsattn import reference as ref  # noqa: E402
from lsattn.backends.cupy import gated_delta as cgd  # noqa: E402


def main():
    T = int(sys.argv[1]) if len(sys.argv) > 1 else 1100
    ncase = int(sys.argv[2]) if len(sys.argv) > 2 else 24
    cgd.S16, cgd.TIER_MIN_CHUNKS, cgd.COARSE_GROUP_PERIODS = True, 0, 10**9
    emus = {}
    for s in (1, 0):
        e = t.Emulated()
        e.extra = {"GD_T1SRN_SET": s}
        emus[s] = e
    cases = list(itertools.product([("normalised", 0.5), ("raw", 0.3), ("raw", 1.0)], ["zero", "moderate", "strong", "mixed"],
                                   [False, True]))[:ncase]
    worst = {s: 0.0 for s in emus}
    for i, ((keys, ks), decay, resets) in enumerate(cases):
        dk, dv = (64, 64) if i % 2 == 0 else (40, 33)
        if keys == "raw":
            ks = min(ks, 0.5) / np.sqrt(dk)
        arrays = t.make(100 + i, (1,), T + 7 * i, dk, dv, keys=keys, key_scale=ks, decay=decay, resets=resets)
        bits, full, half = t.kernel_inputs(arrays, "bfloat16")
        r = np.asarray(ref.loglinear_gated_delta(*full), np.float64)
        errs = []
        for s, e in emus.items():
            out, _ = cgd.compute(e, *bits, 64, 0, None, False, half)
            err = float(np.abs(np.asarray(out, np.float64) - r).max() / np.abs(r).max())
            worst[s] = max(worst[s], err)
            errs.append(f"srn {s}: {err:.2e}")
        print(f"{keys} {ks:.3g} {decay} resets={resets} T={T + 7 * i} dk={dk} dv={dv}: " + "  ".join(errs), flush=True)
    print("worst " + "  ".join(f"srn {s}: {w:.2e}" for s, w in worst.items()))


if __name__ == "__main__":
    main()
