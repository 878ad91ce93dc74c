"""Where gd_forms (gated_delta_forms.cu) spends its time: the kernel alone at B H = 32, T = 8192,
d = 64, CH = 64, float32, in variants compiled from the production source by text substitution:

- fp32:        the production kernel (FFMA products; the forward substitution in GF_SU = 8 partial sums)
- fp32_suN:    the same with N partial sums in the forward substitution (1: one dependent chain, the
               kernel session 8 measured)

Each line: ms per launch (20 launches between two events) and max |x - fp32| / max |fp32| of each
output against the production kernel's. (Session 8's bf16 tensor-core variants, measured 1.97 ms
against 1.04 ms, were removed with the variant: benchmarks/NOTES.md, issue 16.)

    python benchmarks/device/gd_forms_variants.py
"""
import re
import sys
import os

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
import cupy  # noqa: E402

from lsattn.backends.cupy import _compile as cc  # noqa: E402

BH, T, D, CH = 32, 8192, 64, 64
SUBS = {
    "fp32": [],
    "fp32_su1": [(r"GF_SU = 8;", "GF_SU = 1;")],
    "fp32_su4": [(r"GF_SU = 8;", "GF_SU = 4;")],
    "fp32_su16": [(r"GF_SU = 8;", "GF_SU = 16;")],
}


def build(name, cfg):
    forms = cc._source("gated_delta_forms.cu")
    for pat, rep in SUBS[name]:
        forms, k = re.subn(pat, rep, forms)
        assert k, (name, pat)
    code = "\n".join([cc._source("common.cu"), cc._source("gated_delta.cu"), forms])
    opts = ("-std=c++17", f"-DTA={cfg.ta}", "-DTI_BF16=0", "-DTI_F16=0", f"-DCH={cfg.CH}",
            f"-DDKP={cfg.DKP}", f"-DDVP={cfg.DVP}", "-DLOGV=0")
    fn = cupy.RawModule(code=code, options=opts).get_function("gd_forms")
    fn.max_dynamic_shared_size_bytes = cfg.smem("gd_forms")
    return fn


def main():
    rng = np.random.default_rng(0)
    L = 1 + (T - 1).bit_length()
    k = rng.standard_normal((BH, T, D)).astype(np.float32)
    host = [rng.standard_normal((BH, T, D)).astype(np.float32) * D**-0.5, k / np.linalg.norm(k, axis=-1, keepdims=True),
            rng.standard_normal((BH, T, D)).astype(np.float32), -rng.random((BH, T)).astype(np.float32) * 0.1,
            rng.random((BH, T)).astype(np.float32), (0.5 + rng.random((BH, T, L))).astype(np.float32)]
    n = T // CH
    ins = [cupy.asarray(x) for x in host]
    cfg = cc.make_config("float", D, 16, CH)
    want = None
    for name in SUBS:
        outs = [cupy.empty(s, dtype=cupy.float32) for s in [(BH, n, CH, D), (BH, n, CH, D), (BH, n, D, CH),
                                                               (BH, n, D, D), (BH, n), (BH, n, CH, D)]]
        try:
            fn = build(name, cfg)
            args = (*ins, *outs, np.int32(T), np.int32(D), np.int32(D), np.int32(L), np.int64(0), np.int64(0), np.int32(n))
            launch = lambda: fn((n, BH), (256,), args, shared_mem=cfg.smem("gd_forms"))  # noqa: E731
            launch()
            cupy.cuda.runtime.deviceSynchronize()
            ev = [cupy.cuda.Event() for _ in range(2)]
            ev[0].record()
            for _ in range(20):
                launch()
            ev[1].record()
            ev[1].synchronize()
            err = ""
            if name == "fp32":
                want = outs
            elif want is not None:  # max |x - fp32| / max |fp32| of qeff, eGK, phi, H, g, intra
                err = " ".join(f"{float(cupy.abs(x - w).max() / cupy.abs(w).max()):.1e}" for x, w in zip(outs, want))
                err = f"   vs fp32 (qeff eGK phi H g intra): {err}"
            print(f"{name:12s} {cupy.cuda.get_elapsed_time(ev[0], ev[1]) / 20:.3f} ms{err}", flush=True)
        except Exception as exc:
            print(f"{name:12s} fails: {type(exc).__name__}: {str(exc)[:300]}", flush=True)


if __name__ == "__main__":
    main()
