"""Session 13, branch s13e17 (issue 17): the hierarchical forward's kernels against main's, and the public bf16
forward of ``loglinear_log_attention`` against ``loglinear_attention`` (a development aid; results in NOTES.md).

    python benchmarks/device/hier_fwd_s13e17.py warm tree,BASE_DIR
        # compiles what the timings use (CuPy's kernel cache): each variant's bf16 kernels at chunks 64 and 32, both
        # public bf16 calls at 2K tokens
    python benchmarks/device/hier_fwd_s13e17.py kernels 65536,16384 tree,BASE_DIR
        # the forward's kernels (bench_gpu_hierarchical.kernels: hierarchical.compute on bf16 CuPy arrays, each kernel
        # between CUDA events), chunks 64 and 32, per variant: "tree" (this branch), a directory: main's sources from it
        # ("base": hi_read at 256 threads as main launched it)
    python benchmarks/device/hier_fwd_s13e17.py public 16384,65536
        # the public bf16 forwards (bench_gpu_hierarchical._table_calls: the issue table's calls), timed interleaved
        # (bench_gpu_hierarchical.interleaved_times, 10 rounds): ours / loglinear_attention

BASE_DIR: a copy of lsattn/backends/cupy at main (run_s13e17.sh: s13e17_base.patch reversed on a copy). Request 2
(run_s13e17b.sh, at eac09b9) also timed "noftz" and "rsh" and ran "rshcheck": variants of code removed since
(benchmarks/NOTES.md, session 13 — s13e17).
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from bench_gpu_hierarchical import _table_calls, interleaved_times, kernels  # noqa: E402  (puts the repository on sys.path)
from lsattn.backends.cupy import _compile  # noqa: E402

what = sys.argv[1]
source, kernel = _compile._source, _compile.Config.kernel


def use(base=None):
    """The tree's kernels, or main's from the directory ``base`` (its hierarchical.cu holds hi_read, launched
    with 256 threads); the compiled kernels dropped."""
    if base is None:
        _compile._source, _compile.Config.kernel = source, kernel
    else:
        def src(n):
            path = os.path.join(base, n)
            return open(path, encoding="utf-8").read() if os.path.exists(path) else ""

        _compile._source = src
        _compile.Config.kernel = lambda self, name: (name, 256) if name == "hi_read" else kernel(self, name)
    _compile._kernels.cache_clear()
    _compile._launch.cache_clear()


VARIANTS = {"tree": None}

if what == "warm":
    import torch

    for base in [VARIANTS.get(x, x) for x in sys.argv[2].split(",")]:
        use(base)
        kernels(argparse.Namespace(T=[2048], dtypes=["bfloat16"], chunks=[64, 32]))
    use()
    calls = _table_calls(torch, 2048, torch.bfloat16)
    for op in ("hier", "ll"):
        fn, xs = calls[op]
        fn(*xs)
    torch.cuda.synchronize()
    print("warm", flush=True)
elif what == "kernels":
    Ts = [int(x) for x in sys.argv[2].split(",")]
    for name in sys.argv[3].split(","):
        use(VARIANTS.get(name, name))
        print(name if name in VARIANTS else "base", flush=True)
        kernels(argparse.Namespace(T=Ts, dtypes=["bfloat16"], chunks=[64, 32]))
    use()
elif what == "public":
    import torch

    for T in [int(x) for x in sys.argv[2].split(",")]:
        calls = _table_calls(torch, T, torch.bfloat16)
        got = interleaved_times({op: (lambda fn=calls[op][0], xs=calls[op][1]: fn(*xs)) for op in ("hier", "ll")}, 10)
        if all(isinstance(got[op], float) for op in ("hier", "ll")):
            print(f"T={T} bf16 fwd: loglinear_log_attention {got['hier']:.3f} ms, loglinear_attention {got['ll']:.3f} ms, "
                  f"ratio {got['hier'] / got['ll']:.2f}", flush=True)
        else:
            print(f"T={T}", got, flush=True)
        del calls
        torch.cuda.empty_cache()
