"""Session 22, s22b16 (CPU, issue 16): the S16 path's float32 output (before its rounding) against the float64
reference, gd_forms built with GF_B16 = each mask given (0: 1xTF32, the kernel before; 15: qeff, phi, H, out on bf16
mma; 31: M X too), on tests/test_cupy_gated_delta.py's emulation; max |x - ref| / max |ref| per case (S16 = 1e-2).

    python benchmarks/device/gd_b16_err_s22b.py [masks 0,15,31] [T 300]
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
    masks = [int(x) for x in (sys.argv[1] if len(sys.argv) > 1 else "0,15,31").split(",")]
    T = int(sys.argv[2]) if len(sys.argv) > 2 else 300
    cgd.S16, cgd.TIER_MIN_CHUNKS = True, 0
    emus = {}
    for m in masks:
        e = t.Emulated()
        e.extra = {"GF_B16": m}
        emus[m] = e
    cases = list(itertools.product([("normalised", 0.5), ("raw", 0.3), ("raw", 1.0)], ["zero", "moderate", "strong", "mixed"],
                                   [False, True]))
    worst = {m: 0.0 for m in masks}
    for i, ((keys, ks), decay, resets) in enumerate(cases):
        dk, dv = (64, 64) if i % 2 == 0 else (40, 33)
        if keys == "raw":
            ks = min(ks, 0.5) / np.sqrt(dk)
        arrays = t.make(100 + i, (1,), T + 7 * i, dk, dv, keys=keys, key_scale=ks, decay=decay, resets=resets)
        bits, full, half = t.kernel_inputs(arrays, "bfloat16")
        r = np.asarray(ref.loglinear_gated_delta(*full), np.float64)
        errs = []
        for m in masks:
            out, _ = cgd.compute(emus[m], *bits, 64, 0, None, False, half)
            e = float(np.abs(np.asarray(out, np.float64) - r).max() / np.abs(r).max())
            worst[m] = max(worst[m], e)
            errs.append(f"{m}: {e:.2e}")
        print(f"{keys} {ks:.3g} {decay} resets={resets} T={T + 7 * i} dk={dk} dv={dv}: " + "  ".join(errs), flush=True)
    print("worst " + "  ".join(f"{m}: {w:.2e}" for m, w in worst.items()))


if __name__ == "__main__":
    main()
