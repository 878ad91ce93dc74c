"""Session 13, branch s13e17 (issue 17): the hierarchical forward's kernels against main's, and the public bf16
forward of ``loglinear_log_attention`` against ``loglinear_attention`` (a development aid; results in NOTES.md).

    python benchmarks/device/hier_fwd_s13e17.py warm tree,BASE_DIR,noftz,rsh
        # compiles what the timings use (CuPy's kernel cache): each variant's bf16 kernels at chunks 64 and 32 ("noftz":
        # 64), both public bf16 calls at 2K tokens
    python benchmarks/device/hier_fwd_s13e17.py kernels 65536,16384 tree,BASE_DIR,noftz,rsh
        # the forward's kernels (bench_gpu_hierarchical.kernels: hierarchical.compute on bf16 CuPy arrays, each kernel
        # between CUDA events), chunks 64 and 32, per variant: "tree" (this branch), a directory: main's sources from it
        # ("base": hi_read at 256 threads as main launched it), "noftz" (hr_ex without .ftz; first T, chunk 64 only),
        # "rsh" (-DHI_RSH=1)
    python benchmarks/device/hier_fwd_s13e17.py rshcheck 16384
        # log y of the tree's kernels against -DHI_RSH=1's, bf16, chunks 64 and 32 (max |diff|, bit for bit)
    python benchmarks/device/hier_fwd_s13e17.py public 16384,65536
        # the public bf16 forwards (bench_gpu_hierarchical._table_calls: the issue table's calls), timed interleaved
        # (bench_gpu_hierarchical.interleaved_times, 10 rounds): ours / loglinear_attention

BASE_DIR: a copy of lsattn/backends/cupy at main (run_s13e17.sh: s13e17_base.patch reversed on a copy).
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from bench_gpu_hierarchical import _table_calls, interleaved_times, kernels  # noqa: E402  (puts the repository on sys.path)
from lsattn.backends.cupy import _compile  # noqa: E402

what = sys.argv[1]
source, kernel, smem = _compile._source, _compile.Config.kernel, _compile.Config.smem


def use(base=None):
    """The tree's kernels, main's from the directory ``base`` (its hierarchical.cu holds hi_read, launched with
    256 threads), with ``base="noftz"`` the tree's with hi_read's hr_ex as ex2.approx without .ftz (fex's values
    everywhere), with ``base="rsh"`` the tree's built with -DHI_RSH=1 (each row's E made once per m-tile, shared
    through shared memory: CH d_k + CH more floats); the compiled kernels dropped."""
    _compile.Config.smem = smem
    if base is None:
        _compile._source, _compile.Config.kernel = source, kernel
    elif base == "noftz":
        _compile._source = lambda n: source(n).replace("ex2.approx.ftz.f32", "ex2.approx.f32")
        _compile.Config.kernel = kernel
    elif base == "rsh":
        _compile._source = lambda n: ("#define HI_RSH 1\n" if n == "hierarchical_read.cu" else "") + source(n)
        _compile.Config.kernel = kernel
        _compile.Config.smem = lambda self, k: smem(self, k) + ((self.CH * self.DKP + self.CH) * 4 if k == "hi_read" else 0)
    else:
        def src(n):
            path = os.path.join(base, n)
            return open(path, encoding="utf-8").read() if os.path.exists(path) else ""

        _compile._source = src
        _compile.Config.kernel = lambda self, name: (name, 256) if name == "hi_read" else kernel(self, name)
    _compile._kernels.cache_clear()
    _compile._launch.cache_clear()


VARIANTS = {"tree": None, "noftz": "noftz", "rsh": "rsh"}

if what == "warm":
    import torch

    for base in [VARIANTS.get(x, x) for x in sys.argv[2].split(",")]:
        use(base)
        kernels(argparse.Namespace(T=[2048], dtypes=["bfloat16"], chunks=[64, 32] if base != "noftz" else [64]))
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
        kernels(argparse.Namespace(T=Ts[:1] if name == "noftz" else Ts, dtypes=["bfloat16"],
                                   chunks=[64] if name == "noftz" else [64, 32]))
    use()
elif what == "rshcheck":  # the tree's log y against -DHI_RSH=1's on the same bf16 inputs (expected: bit for bit)
    import cupy
    import numpy as np

    from lsattn.backends.cupy import hierarchical as chi
    from lsattn.backends.cupy._arrays import narrow, on_gpu

    T = int(sys.argv[2])
    rng = np.random.default_rng(1)
    x = [cupy.asarray(rng.standard_normal(s).astype(np.float32)) for s in
         ((2, 16, T, 64), (2, 16, T, 64), (2, 16, T, 64), (2, 16, T, T.bit_length() + 1), (2, 16, T))]
    x[4] = -0.1 * cupy.abs(x[4])
    xs = [narrow(cupy, t, "bf16") for t in x]
    for C in (64, 32):
        outs = []
        for base in (None, "rsh"):
            use(base)
            with on_gpu(x[0]) as (_, _, ops):
                outs.append(chi.compute(ops, *xs[:4], xs[4], 0, None, C, "bf16", wide=True))
        d = float(cupy.max(cupy.abs(outs[0] - outs[1])))
        print(f"T={T} C={C} rsh against tree: max |diff| {d:.3g}, bit-identical {bool(cupy.array_equal(outs[0], outs[1]))}",
              flush=True)
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
