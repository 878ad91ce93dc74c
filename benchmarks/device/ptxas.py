"""ptxas's registers / stack / spills of a CuPy kernel family for sm_90 with the local nvcc (no GPU needed), and each
kernel's static SASS instruction count with its HMMA / LDS / STS / LDG / STG / BAR / F2F / FFMA / MUFU shares (cuobjdump,
else nvdisasm: this machine has none on PATH; a wheel's, nvidia-cuda-nvdisasm, through NVDISASM=). The sources are
concatenated as ``_compile`` does, with ``_compile.defines`` of the variant and any extra ``-D`` switches (a timing
build's). Replaces sessions 17-24's one-off ptxas_*.py (recoverable at commit 11f7b35).

    python benchmarks/device/ptxas.py OP [KIND ...] [--only PREFIX] [--sass NAME] [-DX=1 ...]
    OP: a family of _compile._SOURCES (gated_delta, gated_delta_bwd, gated_delta_tier_bwd, hierarchical_bwd, ...)
    KIND: f32 (default: float32, d 64, chunk 64), f64, bf16 (bfloat16 inputs: the family's training / inference
          variant: gated_delta and gated_delta_bwd's GD_S16 builds), bf16-s (bfloat16 inputs without GD_S16)
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from lsattn.backends.cupy import _compile as cc  # noqa: E402

NVDISASM = os.environ.get("NVDISASM", "nvdisasm")
SHARES = ("HMMA", "LDS", "STS", "LDG", "STG", "BAR", "F2F", "FMUL", "FADD", "FFMA", "MUFU")


def config(op, kind):
    """The variant ``kind`` of family ``op`` (d = 64, the family's chunk)."""
    if op == "hierarchical_bwd":
        from lsattn.backends.cupy.hierarchical_bwd import config as hcfg

        return hcfg("double" if kind == "f64" else "float", 64, 64, 32, kind.startswith("bf16"),
                    "bf16" if kind.startswith("bf16") else "")
    cfg = cc.make_config("double" if kind == "f64" else "float", 64, 16, 64)
    if kind.startswith("bf16"):
        cfg = dataclasses.replace(cfg, half="bf16", tc=False, s16=kind == "bf16" and op.startswith("gated_delta"))
    return cfg


def sass_of(cub, name):
    """The SASS of kernel ``name`` in the cubin (cuobjdump if there is one, else nvdisasm's whole listing cut; else
    empty)."""
    try:
        return subprocess.run(["cuobjdump", "-sass", "-fun", name, cub], capture_output=True, text=True).stdout
    except FileNotFoundError:
        try:
            out = subprocess.run([NVDISASM, "-c", cub], capture_output=True, text=True).stdout
        except FileNotFoundError:
            return ""  # (no disassembler: registers and spills only)
        parts = re.split(r"^\s*\.text\.(\w+):", out, flags=re.M)
        return dict(zip(parts[1::2], parts[2::2])).get(name, "")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("op")
    ap.add_argument("kinds", nargs="*", default=["f32"])
    ap.add_argument("--only", default="", help="kernels whose name starts with this")
    ap.add_argument("--sass", default=None, help="print this kernel's SASS")
    args, extra = ap.parse_known_args()
    with tempfile.TemporaryDirectory() as tmp:
        nortc = os.path.join(tmp, "nortc.h")  # the math macros NVRTC lacks (nvcc_check.py's)
        with open(nortc, "w") as f:
            f.write("".join(f"#undef {m}\n" for m in ("INFINITY", "NAN", "HUGE_VAL", "HUGE_VALF")))
        src, cub = os.path.join(tmp, "k.cu"), os.path.join(tmp, "k.cubin")
        with open(src, "w") as f:
            f.write("\n".join(cc._source(x) for x in ("common.cu",) + cc._SOURCES.get(args.op, (f"{args.op}.cu",))))
        for kind in args.kinds:
            r = subprocess.run(["nvcc", "-std=c++17", "-arch=sm_90", "-cubin", "-Xptxas", "-v", "-include", nortc,
                                *cc.defines(args.op, config(args.op, kind)), *extra, src, "-o", cub],
                               capture_output=True, text=True)
            if r.returncode:
                sys.exit(r.stderr[-3000:])
            name = st = None
            for ln in r.stderr.splitlines():
                if m := re.search(r"Compiling entry function '(\w+)'", ln):
                    name = m.group(1)
                if (m := re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", ln)) and name:
                    st = m.groups()
                if (m := re.search(r"Used (\d+) registers", ln)) and name and name.startswith(args.only):
                    ins = re.findall(r"^\s+/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]+)", sass_of(cub, name), re.M)
                    ops = {}
                    for o in ins:
                        ops[o.split(".")[0]] = ops.get(o.split(".")[0], 0) + 1
                    top = " ".join(f"{k} {ops.get(k, 0)}" for k in SHARES)
                    print(f"{kind} {' '.join(extra)} {name}: {m.group(1)} registers, stack {st[0]}, spill st/ld "
                          f"{st[1]}/{st[2]}, SASS {len(ins)} instructions ({top})")
                    if args.sass == name:
                        print(sass_of(cub, name))


if __name__ == "__main__":
    main()
