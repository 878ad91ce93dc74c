"""Session 11, branch s11d17 (issue 17): the hierarchical backward's kernels, before / after, in one run
(a development aid; results in NOTES.md).

    python benchmarks/device/hib_ab_s11d17.py ab 8192,16384 BASE.cu [VARIANT:fp32,tc ...]
        # the backward's split by kernel (bench_gpu_hierarchical._split: FFMA and / or the bf16 callers'
        # tensor-core variant) with hierarchical_bwd.cu from BASE.cu ("base": the code before the change,
        # same host interface), the tree's ("new"), the tree's with hib_blocks at __launch_bounds__(NT)
        # ("blocks2"); default base:fp32,tc new:fp32,tc blocks2:fp32,tc (request 1 of s11d17 also timed the
        # held slots' loads one slot ahead in registers, since removed)
    python benchmarks/device/hib_ab_s11d17.py one 16384 0|1 SRC_OUT.cu
        # two backward calls (FFMA or tensor cores) for ncu, compiled with -lineinfo; the compiled source
        # written to SRC_OUT.cu (its #line directive: ncu's source view finds it there)
"""
import os
import sys

import cupy
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from bench_gpu_hierarchical import _split, inputs  # noqa: E402  (puts the repository on sys.path)
from lsattn.backends.cupy import _compile, hierarchical as chi, hierarchical_bwd as chb  # noqa: E402
from lsattn.backends.cupy._arrays import on_gpu  # noqa: E402

what, Ts = sys.argv[1], [int(x) for x in sys.argv[2].split(",")]
source = _compile._source


def blocks2(text):
    """The tree's with hib_blocks free to take 128 registers (two blocks of NT threads per SM, not three)."""
    old = "__launch_bounds__(NT, 3) hib_blocks("
    assert text.count(old) == 1
    return text.replace(old, "__launch_bounds__(NT) hib_blocks(")


def use(path):
    """hierarchical_bwd.cu from ``path`` (None: the tree's; "blocks2": the tree's, transformed);
    the compiled kernels dropped."""
    def src(n):
        if n != "hierarchical_bwd.cu" or path is None:
            return source(n)
        if path == "blocks2":
            return blocks2(source(n))
        return open(path).read()

    _compile._source = src
    _compile._kernels.cache_clear()
    _compile._launch.cache_clear()


if what == "ab":
    for T in Ts:
        xc = [cupy.asarray(t.detach()) for t in inputs(torch, T, torch.float32)]
        for spec in sys.argv[4:] or ["base:fp32,tc", "new:fp32,tc", "blocks2:fp32,tc"]:
            name, modes = spec.split(":")
            use({"base": sys.argv[3], "new": None}.get(name, name))
            for tc in [m == "tc" for m in modes.split(",")]:
                print(f"T={T} {name} {'tc' if tc else 'fp32'}", _split(cupy, chi, chb, on_gpu, xc, tc=tc), flush=True)
        del xc
else:
    tc, src_out = sys.argv[3] == "1", os.path.abspath(sys.argv[4])
    raw = cupy.RawModule

    def lineinfo(code, options=(), **kw):
        if "hib_dq" in code:
            with open(src_out, "w") as f:
                f.write(code)
            code, options = f'#line 1 "{src_out}"\n' + code, tuple(options) + ("-lineinfo",)
        return raw(code=code, options=options, **kw)

    cupy.RawModule = lineinfo
    xc = [cupy.asarray(t.detach()) for t in inputs(torch, Ts[0], torch.float32)]
    with on_gpu(xc[0]) as (_, _, ops):
        out = chi.compute(ops, *xc[:4], xc[4], 0, None)
        do = cupy.random.default_rng(0).standard_normal(out.shape, dtype=cupy.float32)
        for _ in range(2):
            chb.backward(ops, *xc[:4], xc[4], 0, None, out, do, None, tc)
    cupy.cuda.Device().synchronize()
    print("done", Ts[0], "tc" if tc else "fp32")
