"""Compile-check the CuPy backend's kernel families with the local nvcc (no GPU needed): every
family's sources, concatenated after ``common.cu`` as ``_compile._kernels`` does, for each variant
the host can ask for (compute type float / double, 16-bit inputs, LOGV mode, padded head dims;
the forward chunk and the backward's shrunken chunk), compiled to PTX for sm_90; every kernel the
host launches for that variant must be in the PTX. The host's math macros (``INFINITY``, ``NAN``,
``HUGE_VAL``), which nvcc's implicit ``cuda_runtime.h`` brings and CuPy's NVRTC does not, are
undefined first (session 11: a kernel that compiled here failed under NVRTC).

    python benchmarks/device/nvcc_check.py [--ops exp_kernel,exp_kernel_bwd,loglinear,loglinear_bwd,step,hierarchical_bwd]
"""
from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from lsattn.backends.cupy import _compile as cc  # noqa: E402

GRAD = {"exp_kernel": "exp_kernel", "exp_kernel_bwd": "exp_kernel", "loglinear": "loglinear", "loglinear_bwd": "loglinear"}
DIMS = [(16, 16), (64, 64), (128, 128), (64, 128), (128, 16)]


def configs(op):
    """The variants of ``op``: the forward's (chunk 64) and, for the families with a backward, the
    backward's (its chunk shrinks until the tiles fit)."""
    out = []
    if op == "hierarchical_bwd":  # its backward: the forward's chunk, shrunk until the tiles fit
        from lsattn.backends.cupy.hierarchical_bwd import config, fits

        for ta, (dk, dv), ch, tc, half in itertools.product(["float", "double"], DIMS, [16, 32, 64], [False, True],
                                                            ["", "bf16", "f16"]):
            if fits(ta, dk, dv) and not (tc and ta == "double") and not (half and ta == "double"):
                out.append(config(ta, dk, dv, ch, tc, half))
        return list(dict.fromkeys(out))
    if op == "gated_delta_bwd":  # the training path: float32 (float16 inputs widened) / float64, the chunk as asked;
        # bfloat16 inputs (GRAD_BF16): gd_forms_bwd's TI_BF16 build (gated_delta_bwd.Scan.fcfg)
        import dataclasses

        for ta, (dk, _), ch, half in itertools.product(["float", "double"], DIMS, [16, 32, 64], ["", "bf16"]):
            if not (half and ta == "double"):
                cfg = cc.make_config(ta, dk, 16, ch)
                out.append(dataclasses.replace(cfg, half=half, tc=False) if half else cfg)
                if half and ch == 64:  # S16_TRAIN: gd_scan_bwd reading the GD_S16 forward's bfloat16 intermediates
                    out.append(dataclasses.replace(cfg, half=half, tc=False, s16=True))
        # FORMS_X_SAVED (float32 compute): gd_forms_bwd's FB_XIN build (Scan.fcfg with xs)
        out += [dataclasses.replace(c, xs=True) for c in out if c.ta == "float"]
        # TRAIN_OUT16: gd_forms_bwd's GD_DO16 build (the S16 path's forms config, bfloat16 dI)
        out += [dataclasses.replace(c, do16=True) for c in out if c.half == "bf16" and c.CH == 64]
        return list(dict.fromkeys(out))
    if op == "gated_delta_tier_bwd":  # the two-tier scan's backward: float32 callers, bfloat16 ones on GD_S16 intermediates
        import dataclasses

        from lsattn.backends.cupy.gated_delta import _config

        for (dk, _), ch, half in itertools.product(DIMS, [16, 32, 64], ["", "bf16"]):
            if not half or ch == 64:
                out.append(_config("float", dk, ch, half, bool(half)))
                if half:  # TRAIN_OUT16: K1 and K4 reading bfloat16 dout (GD_DO16)
                    out.append(dataclasses.replace(out[-1], do16=True))
        return list(dict.fromkeys(out))
    if op == "hierarchical":  # loglinear_log_attention: its own chunk choice (16, 32, 64)
        from lsattn.backends.cupy.hierarchical import config

        for ta, half, (dk, dv), ch in itertools.product(["float", "double"], ["", "bf16", "f16"], DIMS, [16, 32, 64]):
            if not (ta == "double" and half):
                out.append(config(ta, dk, dv, ch, half))
        return list(dict.fromkeys(out))
    if op == "gated_delta":  # the forward's variants (gated_delta._config): 16-bit inputs' FFMA forms, bfloat16's GD_S16 build
        from lsattn.backends.cupy.gated_delta import _config

        for ta, half, (dk, _), s16 in itertools.product(["float", "double"], ["", "bf16", "f16"], DIMS, [0, 1, 2]):
            if not (ta == "double" and half) and not (s16 and half != "bf16"):
                out.append(_config(ta, dk, 64, half, s16 > 0, s16 > 1))
        # FORMS_X_SAVED: the training forward's gd_forms in its GF_XO build (Scan.fcfg with xs: float32 compute, bfloat16
        # inputs on the S16 path or not; float32 at the smaller chunks too)
        import dataclasses

        for half, (dk, _), ch, s16 in itertools.product(["", "bf16"], DIMS, [16, 32, 64], [False, True]):
            if (not half or ch == 64) and not (s16 and not half):
                out.append(dataclasses.replace(_config("float", dk, ch, half, s16), xs=True))
        return list(dict.fromkeys(out))
    for ta, half, logv, (dk, dv) in itertools.product(["float", "double"], ["", "bf16", "f16"], [False, True], DIMS):
        if (ta == "double" and half) or (logv and not op.startswith("exp_kernel")):
            continue
        if not op.endswith("_bwd"):
            out.append(cc.make_config(ta, dk, dv, 64, half, logv=logv))
        if op in GRAD:
            out.append(cc.make_config(ta, dk, dv, 32, half, grad=GRAD[op], logv=logv))
    return list(dict.fromkeys(out))


def launched(op, cfg):
    names = list(cc._KERNELS[op])
    if cfg.bwd and op == "exp_kernel_bwd":
        return [cfg.kernel(n)[0] for n in names]
    if cfg.bf16 and cfg.tc:
        names += [cfg.kernel(n)[0] for n in names if cfg.kernel(n)[0] != n]
        if op == "exp_kernel":
            names += ["ek_scan_Shv", "ek_scan_Sh1", "ek_output_tc5f"]
    return names


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ops", default=",".join(cc._KERNELS))
    args = ap.parse_args()
    bad = total = 0
    with tempfile.TemporaryDirectory() as tmp:
        nortc = os.path.join(tmp, "nortc.h")  # what NVRTC lacks
        with open(nortc, "w") as f:
            f.write("".join(f"#undef {m}\n" for m in ("INFINITY", "NAN", "HUGE_VAL", "HUGE_VALF")))
        for op in args.ops.split(","):
            src = os.path.join(tmp, f"{op}.cu")
            with open(src, "w") as f:
                f.write("\n".join(open(os.path.join(cc._HERE, x)).read() for x in ("common.cu",) + cc._SOURCES.get(op, (f"{op}.cu",))))
            for cfg in configs(op):
                flags = list(cc.defines(op, cfg))
                ptx = os.path.join(tmp, "k.ptx")
                r = subprocess.run(["nvcc", "-std=c++17", "-arch=sm_90", "-ptx", "-include", nortc, *flags, src, "-o", ptx],
                                   capture_output=True, text=True)
                missing = [] if r.returncode else [n for n in launched(op, cfg) if f".entry {n}(" not in open(ptx).read()]
                ok = r.returncode == 0 and not missing
                total += 1
                bad += not ok
                print(f"{'ok  ' if ok else 'FAIL'} {op:15s} {' '.join(flags)}{' tc' if cfg.bf16 and cfg.tc else ''}"
                      f"{' missing ' + ','.join(missing) if missing else ''}{r.stderr[-400:] if r.returncode else ''}", flush=True)
    print(f"{total - bad} of {total} variants compile with every kernel present")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
