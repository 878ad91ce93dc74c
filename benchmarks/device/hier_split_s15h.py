"""Session 15 (s15h): the hierarchical forward after hierarchical.cu's split (hi_intra into hierarchical_intra.cu) and
_compile.py's (the variants into _config.py): public calls of ``loglinear_log_attention`` (B=2, H=16, d=64, CUDA torch
tensors), forward at 8K / 16K and forward + backward at 16K, bf16 and fp32; median ms of CUDA events. Against session 14's
final table (``results/gpu_issue17_2026-12-02_s14_final.md``: fwd 8K 1.154 / 1.371, 16K 1.989 / 2.598, fwd+bwd 16K
11.868 / 13.394 ms). Every launched kernel's PTX is identical to session 14's (NOTES), so the expectation is "no change".

    python benchmarks/device/hier_split_s15h.py warm    # compile and run every variant once (the tests step)
    python benchmarks/device/hier_split_s15h.py time    # the timings (nothing new compiled)
    python benchmarks/device/hier_split_s15h.py compile # NVRTC time of hierarchical_bwd's module with / without hi_intra
"""
from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def cases():
    for T, train in ((8192, False), (16384, False), (16384, True)):
        for dt in ("bfloat16", "float32"):
            yield T, train, dt


def run(mode):
    import torch

    import lsattn
    from bench_gpu_hierarchical import inputs

    for T, train, dt in cases():
        x = inputs(torch, T, getattr(torch, dt))
        if train:
            x = [t.requires_grad_(i < 3) for i, t in enumerate(x)]

        def step():
            out = lsattn.loglinear_log_attention(*x[:4], log_decay=x[4])
            if train:
                out.float().square().mean().backward()
            return out

        step()
        torch.cuda.synchronize()
        if mode == "warm":
            print(f"warm T={T} {'fwd+bwd' if train else 'fwd'} {dt}", flush=True)
            continue
        ms = []
        for _ in range(12 if train else 30):
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            step()
            b.record()
            b.synchronize()
            ms.append(a.elapsed_time(b))
        ms.sort()
        print(f"T={T:6d} {'fwd+bwd' if train else 'fwd':8s} {dt:9s} median {ms[len(ms) // 2]:8.3f} ms  min {ms[0]:8.3f}",
              flush=True)
        x = None  # (freed before the next case)
        torch.cuda.empty_cache()


def compile_times():
    """hierarchical_bwd's module (bf16 tensor-core variant, d=64) compiled by NVRTC without a cache: its sources now
    (hierarchical.cu without hi_intra) against session 14's set (hi_intra's text included, as before the split)."""
    import tempfile

    os.environ["CUPY_CACHE_DIR"] = tempfile.mkdtemp()  # read by CuPy at compile time: nothing cached

    from lsattn.backends.cupy import _compile, hierarchical_bwd as chb

    cfg = chb.config("float", 64, 64, 64, True, "bf16")
    now = _compile._SOURCES["hierarchical_bwd"]
    before = ("hierarchical.cu", "hierarchical_intra.cu") + now[1:]
    source = _compile._source
    for i, (tag, srcs) in enumerate((("with hi_intra (s14)", before), ("without (s15h)", now), ("with hi_intra (s14)", before),
                                     ("without (s15h)", now))):
        _compile._SOURCES["hierarchical_bwd"] = srcs
        # a comment of its own: no module CuPy memoised in this process is reused
        _compile._source = lambda n, i=i: (f"// run {i}\n" if n == "common.cu" else "") + source(n)
        _compile._kernels.cache_clear()
        t = time.perf_counter()
        _compile._kernels("hierarchical_bwd", 0, cfg)
        print(f"hierarchical_bwd bf16 d=64 module {tag:22s} {time.perf_counter() - t:6.2f} s", flush=True)
        os.environ["CUPY_CACHE_DIR"] = tempfile.mkdtemp()
    _compile._SOURCES["hierarchical_bwd"] = now
    _compile._source = source


if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else "time"
    compile_times() if mode == "compile" else run(mode)
