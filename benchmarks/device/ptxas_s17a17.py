"""Session 17, s17a17 (issue 17), on this machine: ptxas's registers / spills of the hierarchical backward's kernels for
sm_90 with the local nvcc, the tree's sources or main's (s17a17_base: hierarchical_bwd_{chunk,dq}.cu at 5793862;
restore it with ``git checkout 6faca7f -- benchmarks/device/s17a17_base``).

    python benchmarks/device/ptxas_s17a17.py [main] [KIND ...]    KIND: bf16 (default; the bf16 callers' variant, CH 32,
                                                                   d 64), f32 (float32 FFMA), f64
"""
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from lsattn.backends.cupy import _compile as cc  # noqa: E402
from lsattn.backends.cupy.hierarchical_bwd import config  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
main = "main" in sys.argv[1:]
kinds = [k for k in sys.argv[1:] if k != "main"] or ["bf16"]
CFG = {"bf16": ("float", 64, 64, 32, True, "bf16"), "f32": ("float", 64, 64, 32, False, ""),
       "f64": ("double", 64, 64, 32, False, "")}


def text(f):
    if f == "hierarchical_bwd_dq.cu" and os.environ.get("DQ"):  # a variant's hib_dq text (s17a17_var/)
        return open(os.environ["DQ"]).read()
    if main and f in ("hierarchical_bwd_chunk.cu", "hierarchical_bwd_dq.cu"):
        return open(os.path.join(HERE, "s17a17_base", f + ".txt")).read()
    return open(os.path.join(cc._HERE, f)).read()


with tempfile.TemporaryDirectory() as tmp:
    nortc = os.path.join(tmp, "nortc.h")
    with open(nortc, "w") as f:
        f.write("".join(f"#undef {m}\n" for m in ("INFINITY", "NAN", "HUGE_VAL", "HUGE_VALF")))
    src = os.path.join(tmp, "k.cu")
    with open(src, "w") as f:
        f.write("\n".join(text(x) for x in ("common.cu",) + cc._SOURCES["hierarchical_bwd"]))
    for kind in kinds:
        cfg = config(*CFG[kind])
        r = subprocess.run(["nvcc", "-std=c++17", "-arch=sm_90", "-cubin", "-Xptxas", "-v", "-include", nortc,
                            *cc.defines("hierarchical_bwd", cfg), *os.environ.get("EXTRA", "").split(), src, "-o", os.path.join(tmp, "k.cubin")],
                           capture_output=True, text=True)
        if r.returncode:
            print(r.stderr[-3000:])
            sys.exit(1)
        name = None
        for ln in r.stderr.splitlines():
            m = re.search(r"Compiling entry function '(\w+)'", ln)
            if m:
                name = m.group(1)
            m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", ln)
            if m and name:
                st = m.groups()
            m = re.search(r"Used (\d+) registers", ln)
            if m and name:
                print(f"{'main' if main else 'tree'} {kind} {name}: {m.group(1)} registers, stack {st[0]}, spill st/ld {st[1]}/{st[2]}")
