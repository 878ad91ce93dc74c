"""s20k's one-off check: the split of gated_delta_tier.cu (-> + gated_delta_coarse.cu) and gated_delta_bwd.cu
(-> + gated_delta_bwd_scan.cu) moved text only. Builds every operator's source as _compile._kernels does ("common.cu"
then _SOURCES, joined by newlines) at BASE (git show) and in this tree, and the emulated tests' kernel texts
(scan_source, forms_source, the backward's BWD_KERNEL), and prints each one's unified diff (expected: the files' header
comments only; the code lines, bar blank and comment-only ones, asserted equal).

    python benchmarks/split_check_s20k.py [BASE]   # BASE: a commit before the split (default 49df6c6)
"""
import ast
import difflib
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]
from lsattn.backends.cupy import _compile as cc  # noqa: E402

BASE = sys.argv[1] if len(sys.argv) > 1 else "49df6c6"
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


def main():
    srcs = old_sources()
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
