"""Session 19, s19b16 (issue 16), on this machine: ptxas's registers / spills of gd_forms for sm_90 with the local nvcc,
the tree's gated_delta_forms*.cu with switches set (-D...), and the kernel's static SASS instruction count (cuobjdump, where there is one).

    python benchmarks/device/ptxas_gd_forms_s19b16.py [KIND ...] [-DGF_S64=0 ...]   KIND: bf16 (default: the bf16
                                                                                     callers' build, lamw and the flag), f32
"""
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from lsattn.backends.cupy import _compile as cc  # noqa: E402

kinds = [k for k in sys.argv[1:] if not k.startswith("-")] or ["bf16"]
extra = [k for k in sys.argv[1:] if k.startswith("-")]
with tempfile.TemporaryDirectory() as tmp:
    nortc = os.path.join(tmp, "nortc.h")
    with open(nortc, "w") as f:
        f.write("".join(f"#undef {m}\n" for m in ("INFINITY", "NAN", "HUGE_VAL", "HUGE_VALF")))
    src = os.path.join(tmp, "k.cu")
    with open(src, "w") as f:
        f.write("\n".join(cc._source(x) for x in ("common.cu", "gated_delta.cu", "gated_delta_forms_tc.cu", "gated_delta_forms.cu")))
    for kind in kinds:
        opts = ["-DTA=float", f"-DTI_BF16={int(kind == 'bf16')}", "-DTI_F16=0", "-DCH=64", "-DDKP=64", "-DDVP=64", "-DLOGV=0"]
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
            if m and name == "gd_forms":
                try:  # (cuobjdump: not on every machine)
                    sass = subprocess.run(["cuobjdump", "-sass", "-fun", "gd_forms", cub], capture_output=True, text=True).stdout
                    ni = len(re.findall(r"^\s+/\*[0-9a-f]{4,}\*/", sass, re.M))
                except FileNotFoundError:
                    ni = "?"
                print(f"{kind} {' '.join(extra)} gd_forms: {m.group(1)} registers, stack {st[0]}, spill st/ld {st[1]}/{st[2]}, "
                      f"SASS {ni} instructions")
