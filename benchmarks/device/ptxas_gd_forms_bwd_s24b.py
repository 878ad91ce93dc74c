"""Session 24, s24b (issue 16), on this machine: ptxas's registers / spills of gd_forms_bwd(_x1) for sm_90 with the local
nvcc (the sources as ``_compile`` concatenates them, the training path's defines), and each kernel's static SASS
instruction count with its HMMA / F2F / BAR / LDS / LDG / STG shares (cuobjdump).

    python benchmarks/device/ptxas_gd_forms_bwd_s24b.py [KIND ...] [-DFB_...=1 ...]   KIND: bf16 (default: GRAD_BF16's
        TI_BF16 build), f32;  --sass NAME: print the kernel's SASS
"""
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from lsattn.backends.cupy import _compile as cc  # noqa: E402

args = sys.argv[1:]
dump = args[args.index("--sass") + 1] if "--sass" in args else None
args = [a for i, a in enumerate(args) if a != "--sass" and (i == 0 or args[i - 1] != "--sass")]
kinds = [k for k in args if not k.startswith("-")] or ["bf16"]
extra = [k for k in args if k.startswith("-")]
cfg = cc.make_config("float", 64, 16, 64)
NVDISASM = os.environ.get("NVDISASM", "nvdisasm")  # (this machine: none on PATH; a wheel's, nvidia-cuda-nvdisasm)


def sass_of(cub, name):
    """The SASS of kernel ``name`` in the cubin (cuobjdump if there is one, else nvdisasm's whole listing cut)."""
    try:
        return subprocess.run(["cuobjdump", "-sass", "-fun", name, cub], capture_output=True, text=True).stdout
    except FileNotFoundError:
        out = subprocess.run([NVDISASM, "-c", cub], capture_output=True, text=True).stdout
        parts = re.split(r"^\s*\.text\.(\w+):", out, flags=re.M)
        return dict(zip(parts[1::2], parts[2::2])).get(name, "")


with tempfile.TemporaryDirectory() as tmp:
    nortc = os.path.join(tmp, "nortc.h")
    with open(nortc, "w") as f:
        f.write("".join(f"#undef {m}\n" for m in ("INFINITY", "NAN", "HUGE_VAL", "HUGE_VALF")))
    src = os.path.join(tmp, "k.cu")
    with open(src, "w") as f:
        f.write("\n".join(cc._source(x) for x in ("common.cu",) + cc._SOURCES["gated_delta_bwd"]))
    for kind in kinds:
        opts = [o if not o.startswith("-DTI_BF16") else f"-DTI_BF16={int(kind == 'bf16')}" for o in cc.defines("gated_delta_bwd", cfg)]
        cub = os.path.join(tmp, "k.cubin")
        r = subprocess.run(["nvcc", "-std=c++17", "-arch=sm_90", "-cubin", "-Xptxas", "-v", "-include", nortc, *opts, *extra,
                            src, "-o", cub], capture_output=True, text=True)
        if r.returncode:
            print(r.stderr[-3000:])
            sys.exit(1)
        name, st = None, None
        for ln in r.stderr.splitlines():
            m = re.search(r"Compiling entry function '(\w+)'", ln)
            if m:
                name = m.group(1)
            m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", ln)
            if m and name:
                st = m.groups()
            m = re.search(r"Used (\d+) registers", ln)
            if m and name and name.startswith("gd_forms_bwd"):
                sass = sass_of(cub, name)
                ins = re.findall(r"^\s+/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]+)", sass, re.M)
                ops = {}
                for op in ins:
                    key = op.split(".")[0]
                    ops[key] = ops.get(key, 0) + 1
                top = " ".join(f"{k} {ops.get(k, 0)}" for k in ("HMMA", "LDS", "STS", "LDG", "STG", "BAR", "F2F", "FMUL", "FADD", "FFMA", "MUFU"))
                print(f"{kind} {' '.join(extra)} {name}: {m.group(1)} registers, stack {st[0]}, spill st/ld {st[1]}/{st[2]}, "
                      f"SASS {len(ins)} instructions ({top})")
                if dump == name:
                    print(sass)
