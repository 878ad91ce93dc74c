"""Session 22, s22a16 (issue 16), on this machine: ptxas's registers / spills of the two-tier scan's kernels for sm_90
with the local nvcc (the sources of the tree given, default this one): bf16 inputs' production build (S16 + O16), the
float32 one.
    python benchmarks/device/ptxas_s22a.py [TREE]"""
import os
import re
import subprocess
import sys
import tempfile

TREE = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, TREE)
from lsattn.backends.cupy import _compile as cc  # noqa: E402
from lsattn.backends.cupy import gated_delta as cgd  # noqa: E402

assert cc.__file__.startswith(TREE), cc.__file__
KERNELS = ("gd_tier1", "gd_tier1x", "gd_coarse", "gd_cgroup", "gd_coarse_g", "gd_tier3")
with tempfile.TemporaryDirectory() as tmp:
    src = os.path.join(tmp, "gd.cu")
    with open(src, "w") as f:
        f.write("\n".join(open(os.path.join(cc._HERE, x)).read() for x in ("common.cu",) + cc._SOURCES["gated_delta"]))
    nortc = os.path.join(tmp, "nortc.h")
    with open(nortc, "w") as f:
        f.write("".join(f"#undef {m}\n" for m in ("INFINITY", "NAN", "HUGE_VAL", "HUGE_VALF")))
    for kind, cfg in (("bf16 s16+o16", cgd._config("float", 64, 64, "bf16", True, True)),
                      ("f32", cgd._config("float", 64, 64, ""))):
        r = subprocess.run(["nvcc", "-std=c++17", "-arch=sm_90", "-cubin", "-Xptxas", "-v", "-include", nortc,
                            *cc.defines("gated_delta", cfg), src, "-o", os.path.join(tmp, "k.cubin")],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr[-2000:]
        name = None
        for line in r.stderr.splitlines():
            m = re.search(r"Compiling entry function '(\w+)'", line)
            if m:
                name = m.group(1)
            m = re.search(r"(\d+) bytes spill stores", line)
            spill = m.group(1) if m else None
            m2 = re.search(r"Used (\d+) registers", line)
            if m2 and name in KERNELS:
                print(f"{kind:14s} {name:12s} {m2.group(1)} registers", flush=True)
            if spill and name in KERNELS and spill != "0":
                print(f"{kind:14s} {name:12s} {spill} bytes spilled", flush=True)
