"""A few small loglinear_gated_delta forward + backward calls on CUDA torch tensors (the scan's
backward kernels gd_scan_bwd and gd_forms_bwd), for compute-sanitizer (memcheck / racecheck): float32 and float64,
odd T, a continuation with an incoming state, d_v not a multiple of the column block, bfloat16 inputs (the 1xTF32
kernels). The cases to run: the first argument (indices, e.g. ``0,3``; default all).
    python benchmarks/device/gd_bwd_small.py [0,1,2,3]"""
import sys

import numpy as np
import torch

import lsattn
from lsattn.state import State

CASES = (("float32", 100, 64, 64, 64, 0), ("float64", 37, 5, 19, 16, 45), ("float32", 150, 128, 40, 32, 77),
         ("bfloat16", 200, 64, 40, 64, 0))
sel = [int(x) for x in sys.argv[1].split(",")] if sys.argv[1:] else range(len(CASES))
rng = np.random.default_rng(0)
for dtype, T, dk, dv, C, P in (CASES[i] for i in sel):
    def t(*shape):
        return torch.tensor(rng.standard_normal(shape), device="cuda", dtype=getattr(torch, dtype))

    q, k, v = t(2, T, dk), t(2, T, dk), t(2, T, dv)
    k = k / k.norm(dim=-1, keepdim=True)
    a, beta = -t(2, T).abs(), torch.sigmoid(t(2, T))
    lam = t(2, T, lsattn.num_levels(P + T))
    xs = [x.requires_grad_(True) for x in (q, k, v, a, beta, lam)]
    state = None
    if P:
        levels = t(2, P.bit_length(), dk, dv).requires_grad_(True)
        state = State("loglinear_gated_delta", P, (2,), dk, dv, levels.dtype, {"levels": levels})
        xs.append(levels)
    out = lsattn.loglinear_gated_delta(*xs[:6], chunk_size=C, state=state)
    out.square().sum().backward()
    torch.cuda.synchronize()
    print(dtype, T, P, float(out.abs().max()), [float(x.grad.abs().max()) for x in xs])
print("sanitize ok")
