"""The loglinear_log_attention backward's split by kernel for each backward chunk (the ``chunk_size`` of
``hierarchical_bwd.backward``: 16, 32, 64, as ``hierarchical_bwd.config`` shrinks it to fit), float32,
B=2, H=16, d=64 (a development aid; results in NOTES.md).

    python benchmarks/device/hier_bwd_chunks.py [T,...]
"""
import os
import sys

import cupy
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from bench_gpu_hierarchical import D, _split, inputs  # noqa: E402  (puts the repository on sys.path)
from lsattn.backends.cupy import hierarchical as chi, hierarchical_bwd as chb  # noqa: E402
from lsattn.backends.cupy._arrays import on_gpu  # noqa: E402

for T in [int(x) for x in (sys.argv[1] if len(sys.argv) > 1 else "8192,32768").split(",")]:
    xc = [cupy.asarray(t.detach()) for t in inputs(torch, T, torch.float32)]
    for C in (16, 32, 64):
        cfg = chb.config("float", D, D, C)
        print(f"T={T} chunk {C} (compiled {cfg.CH})", _split(cupy, chi, chb, on_gpu, xc, C), flush=True)
    del xc
