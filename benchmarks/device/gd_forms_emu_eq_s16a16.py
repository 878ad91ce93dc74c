"""gd_forms built with two values of a macro, run on the CPU emulation (tests/cuda_emu_gd_forms.cpp): their outputs
bit for bit (s16a16: GF_W64, the paired products on 16 x 64 warp tiles, must give the same sums in the same order).

    python benchmarks/device/gd_forms_emu_eq_s16a16.py [MACRO=a,b] [bf16,fp32] [T]
"""
import ctypes
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]
from helpers import emulation  # noqa: E402
from test_cupy_gated_delta import forms_source, scan_source  # noqa: E402

from lsattn.backends.cupy._arrays import narrow  # noqa: E402
from lsattn.backends.cupy._compile import make_config  # noqa: E402


def run(defines, half, T, D, DV, p=0):
    ta = "float"
    cfg = make_config(ta, D, 16, 64)
    lib = emulation("cuda_emu_gd_forms.cpp", {"TA": ta, "TI_BF16": int(half), "CH": 64, "DKP": cfg.DKP, **defines},
                    {"KERNEL": scan_source(), "FORMS_KERNEL": forms_source()})
    rng = np.random.default_rng(0)
    BH, L = 2, 1 + (p + T - 1).bit_length()
    k = rng.standard_normal((BH, T, D))
    xs = [rng.standard_normal((BH, T, D)) * D**-0.5, k / np.linalg.norm(k, axis=-1, keepdims=True) * 1.3,
          rng.standard_normal((BH, T, DV)), -rng.random((BH, T)) * 0.3, rng.random((BH, T)), 0.5 + rng.random((BH, T, L))]
    xs = [narrow(np, x.astype(np.float32), "bf16").view(np.uint16) if half else x.astype(np.float32) for x in xs]
    F = p // 64
    n = (p + T - 1) // 64 - F + 1
    outs = [np.zeros(s, np.float32) for s in [(BH, n, 64, D), (BH, n, 64, D), (BH, n, D, 64), (BH, n, D, DV), (BH, n),
                                               (BH, n, 64, DV)]]
    lamw, bad = np.zeros((BH, T, L), np.float32), np.zeros(1, np.int32)
    ptr = lambda a: a.ctypes.data_as(ctypes.c_void_p)  # noqa: E731
    cfg_smem = make_config(ta, D, 16, 64, "bf16" if half else "").smem("gd_forms")
    lib.run_forms(*map(ptr, xs), *map(ptr, outs), ptr(lamw) if half else None, ptr(bad),
                  *[ctypes.c_int(x) for x in (T, D, DV, L)], ctypes.c_longlong(p), ctypes.c_longlong(F), ctypes.c_int(n),
                  ctypes.c_int(BH), ctypes.c_uint(cfg_smem))
    return outs + [lamw, bad]


def main():
    macro, vals = (sys.argv[1] if len(sys.argv) > 1 else "GF_W64=0,3").split("=")
    kinds = (sys.argv[2] if len(sys.argv) > 2 else "bf16,fp32").split(",")
    T = int(sys.argv[3]) if len(sys.argv) > 3 else 150
    for kind in kinds:
        for D, DV, p in ((64, 64, 0), (64, 40, 5), (64, 100, 0)):
            got = [run({macro: v}, kind == "bf16", T, D, DV, p) for v in vals.split(",")]
            diffs = [max(float(np.abs(x.astype(np.float64) - y).max()) for x, y in zip(got[0], g)) for g in got[1:]]
            nan = [sum(int(np.isnan(x).sum()) for x in g) for g in got]
            print(f"{kind} T={T} d_k={D} d_v={DV} p={p}: {macro} {vals}: max |diff| vs the first {diffs}; NaNs {nan}; "
                  f"|qeff| max {float(np.abs(got[0][0]).max()):.3g}", flush=True)


if __name__ == "__main__":
    main()
