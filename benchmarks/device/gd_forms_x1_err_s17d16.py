"""bfloat16 inputs: the public output's error (float32, before its rounding) with gd_forms' products in 1xTF32 (GF_X1 1,
s17d16) against 3xTF32 (GF_X1 0), on the CPU emulation (tests/cuda_emu_gd_forms.cpp) through the host logic (gd_scan /
the two-tier scan in 1xTF32 for both), against the float64 reference on the rounded inputs: max |x - ref| / max |ref|
per case (keys normalised / raw at |k| ~0.5 .. 1, decays moderate / strong / zero / mixed, hard resets).

    PYTHONPATH=. python benchmarks/device/gd_forms_x1_err_s17d16.py [T] [cases]
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "tests"))
import test_cupy_gated_delta as tg  # noqa: E402
from lsattn import reference as ref  # noqa: E402
from lsattn.backends.cupy import gated_delta as cgd  # noqa: E402
from lsattn.backends.cupy._arrays import narrow, widen  # noqa: E402
from helpers import emulation  # noqa: E402


class X(tg.Emulated):
    x1 = 1

    def _lib(self, cfg):
        defines = {"TA": cfg.ta, "TI_BF16": int(cfg.half == "bf16"), "CH": cfg.CH, "DKP": cfg.DKP, "GF_X1": self.x1}
        return emulation("cuda_emu_gd_forms.cpp", defines, {"KERNEL": tg.scan_source(), "FORMS_KERNEL": tg.forms_source()})


T = int(sys.argv[1]) if len(sys.argv) > 1 else 300
CASES = [("normalised", "moderate", 1.0), ("raw", "moderate", 0.5), ("raw", "strong", 0.5), ("raw", "zero", 0.5),
         ("raw", "mixed", 1.0), ("raw", "zero", 1.0)]
cgd.TIER_MIN_CHUNKS = 0
for keys, decay, scale in CASES:
    arrays = tg.make(5, (2,), T, 64, 64, keys=keys, key_scale=scale / np.sqrt(64), decay=decay, resets=True)
    bits = [narrow(np, x.astype(np.float32), "bf16").view(np.uint16) for x in arrays]
    full = [widen(np, b, "bf16").astype(np.float64) for b in bits]
    want = ref.loglinear_gated_delta(*full)
    row = []
    outs = {}
    for x1 in (0, 1):
        ops = X()
        ops.x1 = x1
        out, _ = cgd.compute(ops, *bits, 64, 0, None, False, "bf16")
        outs[x1] = out
        row.append(np.abs(out - want).max() / np.abs(want).max())
    d = np.abs(outs[1] - outs[0]).max() / np.abs(want).max()
    print(f"T={T} {keys:10s} {decay:8s} |k|~{scale}: err x3 {row[0]:.2e}  x1 {row[1]:.2e}  |x1 - x3| {d:.2e}  max|ref| {np.abs(want).max():.3g}",
          flush=True)
