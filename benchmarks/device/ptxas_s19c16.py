"""Session 19, s19c16 (issue 16), on this machine: ptxas's registers / spills of the two-tier scan's coarse kernels and
gd_tier3 for sm_90 with the local nvcc (the tree's sources; extra -D options after the kinds).

    python benchmarks/device/ptxas_s19c16.py [x1|f32 ...] [-DNAME=V ...]   (default: x1 f32)
"""
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from lsattn.backends.cupy import _compile as cc  # noqa: E402
from lsattn.backends.cupy import gated_delta as cgd  # noqa: E402

KERNELS = ("gd_cgroup", "gd_coarse_g", "gd_cfill", "gd_csup", "gd_tier3")
kinds = [a for a in sys.argv[1:] if not a.startswith("-D")] or ["x1", "f32"]
extra = [a for a in sys.argv[1:] if a.startswith("-D")]
with tempfile.TemporaryDirectory() as tmp:
    src = os.path.join(tmp, "gd.cu")
    with open(src, "w") as f:
        f.write("\n".join(open(os.path.join(cc._HERE, x)).read() for x in ("common.cu",) + cc._SOURCES["gated_delta"]))
    nortc = os.path.join(tmp, "nortc.h")
    with open(nortc, "w") as f:
        f.write("".join(f"#undef {m}\n" for m in ("INFINITY", "NAN", "HUGE_VAL", "HUGE_VALF")))
    for kind in kinds:
        cfg = cgd._config("float", 64, 64, "bf16" if kind == "x1" else "")
        r = subprocess.run(["nvcc", "-std=c++17", "-arch=sm_90", "-cubin", "-Xptxas", "-v", "-include", nortc,
                            *cc.defines("gated_delta", cfg), *extra, src, "-o", os.path.join(tmp, "k.cubin")],
                           capture_output=True, text=True)
        if r.returncode:
            print(r.stderr[-2000:])
            continue
        name = None
        for line in r.stderr.splitlines():
            m = re.search(r"Compiling entry function '(\w+)'", line)
            if m:
                name = m.group(1)
            elif name in KERNELS and ("registers" in line or "spill" in line):
                print(f"{kind:3s} {name:12s} {line.split(':', 1)[-1].strip()}")
