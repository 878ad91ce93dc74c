"""Where gd_forms (gated_delta_forms.cu) spends its time: the kernel alone at B H = 32, T = 8192,
d = 64, CH = 64, in variants compiled from the production source by text substitution (timing
only; the substituted ones compute wrong values):

- fp32:        float32 inputs, FFMA products (the production float32 kernel)
- fp32_suN:    the same with N partial sums in the forward substitution (production: 8; 1 = one chain)
- tc:          bfloat16 inputs, tensor-core products with split operands (the production bf16 kernel)
- tc_nosplit:  bfloat16 inputs, tensor-core products without the low halves (1 mma per tile)
- tc_nomma:    bfloat16 inputs, the mma instructions removed (the fragments then die too): the
               kernel without its products
- ffma_bf16:   bfloat16 inputs, the FFMA products

Each line: ms per launch (median-free: 20 launches between two events) and, for the bf16 variants,
max |x - fp32| / max |fp32| of each output, the fp32 kernel run on the same (bf16-rounded) values.

    python benchmarks/device/gd_forms_variants.py
"""
import re
import sys
import os

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
import cupy  # noqa: E402

from lsattn.backends.cupy import _compile as cc  # noqa: E402
from lsattn.backends.cupy._arrays import narrow, widen  # noqa: E402

BH, T, D, CH = 32, 8192, 64, 64
SUBS = {
    "fp32": [],
    # the forward substitution's partial sums (GF_SU; 1: session 8's measured kernel, one dependent chain)
    "fp32_su1": [(r"GF_SU = 8;", "GF_SU = 1;")],
    "fp32_su4": [(r"GF_SU = 8;", "GF_SU = 4;")],
    "fp32_su16": [(r"GF_SU = 8;", "GF_SU = 16;")],
    "tc": [],
    "tc_nosplit": [(r"if \(SA\)\n", "if (false)\n"), (r"if \(SB\)\n", "if (false)\n")],
    "tc_nomma": [(r"mma_bf16\(acc\[u\], [^;]*\);", ";")],
    "ffma_bf16": [(r"#if TI_BF16\n// bf16 halves", "#if 0\n// bf16 halves")],
}


def build(name, cfg):
    forms = cc._source("gated_delta_forms.cu")
    for pat, rep in SUBS[name]:
        forms, k = re.subn(pat, rep, forms)
        assert k, (name, pat)
    code = "\n".join([cc._source("common.cu"), cc._source("gated_delta.cu"), forms])
    opts = ("-std=c++17", f"-DTA={cfg.ta}", f"-DTI_BF16={int(cfg.bf16)}", "-DTI_F16=0", f"-DCH={cfg.CH}",
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
    bf = [narrow(cupy, cupy.asarray(x), "bf16") for x in host]
    same = [widen(cupy, x, "bf16") for x in bf]  # the fp32 kernel on the bf16-rounded values: the same inputs
    want = None
    for name in SUBS:
        half = "" if name.startswith("fp32") else "bf16"
        cfg = cc.make_config("float", D, 16, CH, half)
        ins = bf if half else same
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
