"""s20k's one-off check: the split of gated_delta_tier.cu (-> + gated_delta_coarse.cu) and gated_delta_bwd.cu
(-> + gated_delta_bwd_scan.cu) moved text only. Builds every operator's source as _compile._kernels does ("common.cu"
then _SOURCES, joined by newlines) at BASE (git show) and in this tree, and the emulated tests' kernel texts
(scan_source, forms_source, the backward's BWD_KERNEL), and prints each one's unified diff (expected: the files' header
comments only; the code lines, bar blank and comment-only ones, asserted equal).

    python benchmarks/device/split_check_s20k.py [BASE]   # BASE: a commit before the split (default 49df6c6)
    python benchmarks/device/split_check_s20k.py --ptx [BASE]   # and PTX / ptxas sm_90 of a few variants of both operators

--ptx: each variant compiled (nvcc -ptx sm_90, nvcc_check.py's flags) from BASE's and this tree's sources, the PTX
compared and each kernel's registers / spills (ptxas -v) printed for both.
"""
import ast
import difflib
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]
from lsattn.backends.cupy import _compile as cc  # noqa: E402

PTX = "--ptx" in sys.argv[1:]
ARGS = [a for a in sys.argv[1:] if a != "--ptx"]
BASE = ARGS[0] if ARGS else "49df6c6"
CU = "lsattn/backends/cupy/"


def old(name):
    return subprocess.run(["git", "show", f"{BASE}:{CU}{name}"], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout


def old_sources():
    tree = ast.parse(old("_compile.py"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "_SOURCES":
            return ast.literal_eval(node.value)
    raise LookupError("_SOURCES")


def code(text):
    """The text's lines bar blank and comment-only ones."""
    return [x for x in text.splitlines() if x.strip() and not x.lstrip().startswith("//")]


def report(label, a, b):
    assert code(a) == code(b), label  # every line of code the same, in the same order
    d = list(difflib.unified_diff(a.splitlines(), b.splitlines(), "before", "after", n=0, lineterm=""))
    print(f"== {label}: {len(a.splitlines())} -> {len(b.splitlines())} lines, "
          f"{sum(1 for x in d[2:] if x[:1] in '+-')} changed")
    for x in d[2:]:
        print("   " + x)


def ptxas(tmp, name, code, flags):
    """PTX of code (nvcc -ptx, sm_90) and ptxas -v's registers / spills per kernel."""
    import re

    src, ptx = os.path.join(tmp, name + ".cu"), os.path.join(tmp, name + ".ptx")
    nortc = os.path.join(tmp, "nortc.h")
    with open(nortc, "w") as f:
        f.write("".join(f"#undef {m}\n" for m in ("INFINITY", "NAN", "HUGE_VAL", "HUGE_VALF")))
    with open(src, "w") as f:
        f.write(code)
    subprocess.run(["nvcc", "-std=c++17", "-arch=sm_90", "-ptx", "-include", nortc, *flags, src, "-o", ptx], check=True)
    r = subprocess.run(["ptxas", "-arch=sm_90", "-v", ptx, "-o", os.devnull], capture_output=True, text=True, check=True)
    regs, fn = {}, None
    for ln in r.stderr.splitlines():
        m = re.search(r"Compiling entry function '(\w+)'", ln)
        fn = m.group(1) if m else fn
        m = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", ln)
        if m:
            regs.setdefault(fn, [None, m.group(1), m.group(2)])
        m = re.search(r"Used (\d+) registers", ln)
        if m:
            regs.setdefault(fn, [None, "?", "?"])[0] = m.group(1)
    return open(ptx).read(), regs


def ptx_check(srcs):
    import dataclasses
    import tempfile

    variants = [("gated_delta", cc.make_config("float", 64, 64, 64)),
                ("gated_delta", cc.make_config("float", 64, 64, 64, "bf16")),
                ("gated_delta", cc.make_config("float", 128, 128, 64)),
                ("gated_delta", cc.make_config("double", 64, 64, 64)),
                ("gated_delta_bwd", cc.make_config("float", 64, 16, 64)),
                ("gated_delta_bwd", dataclasses.replace(cc.make_config("float", 64, 16, 64), half="bf16", tc=False)),
                ("gated_delta_bwd", cc.make_config("float", 128, 16, 32)),
                ("gated_delta_bwd", cc.make_config("double", 64, 16, 32))]
    same = 0
    with tempfile.TemporaryDirectory() as tmp:
        for op, cfg in variants:
            flags = list(cc.defines(op, cfg))
            a = "\n".join(old(f) for f in ("common.cu",) + srcs[op])
            b = "\n".join(cc._source(f) for f in ("common.cu",) + cc._SOURCES[op])
            (pa, ra), (pb, rb) = ptxas(tmp, "before", a, flags), ptxas(tmp, "after", b, flags)
            same += pa == pb and ra == rb
            print(f"== {op} {' '.join(flags[:6])}: PTX {'identical' if pa == pb else 'DIFFERS'}, ptxas "
                  f"{'same' if ra == rb else 'DIFFERS'}", flush=True)
            for k in sorted(rb):
                print(f"   {k:18s} {rb[k][0]:>4s} registers, spill {rb[k][1]} / {rb[k][2]} B"
                      + ("" if ra.get(k) == rb[k] else f"   (before: {ra.get(k)})"))
    print(f"{same} of {len(variants)} variants: the same PTX and ptxas")


def main():
    srcs = old_sources()
    if PTX:
        return ptx_check(srcs)
    for op in cc._KERNELS:
        a = "\n".join(old(f) for f in ("common.cu",) + srcs.get(op, (f"{op}.cu",)))
        b = "\n".join(cc._source(f) for f in ("common.cu",) + cc._SOURCES.get(op, (f"{op}.cu",)))
        report(f"operator {op}", a, b)
    import test_cupy_gated_delta as tg
    import test_cupy_gated_delta_grad as tgg
    report("tests: scan_source (KERNEL)", old("gated_delta.cu") + "\n" + old("gated_delta_tier.cu"), tg.scan_source())
    report("tests: forms_source (FORMS_KERNEL)", old("gated_delta_forms_tc.cu") + "\n" + old("gated_delta_forms.cu"),
           tg.forms_source())
    report("tests: BWD_KERNEL", old("gated_delta_bwd.cu"), tgg.bwd_source())


if __name__ == "__main__":
    main()
