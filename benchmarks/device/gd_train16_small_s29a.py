"""gd_train16_small_s24a.py's small bfloat16 training steps (S16_TRAIN, the two-tier path from 3 chunks: one period and
several, padded d_k, d_v not a multiple of 16, padding rows, the grouped coarse form) with
``gated_delta_bwd.TIER_BWD_STORES`` on (s29a: tier_backward's dQp and dqe / dek / dph allocated empty, K1 and K3 storing
them), then float32 steps (3xTF32; d_v = 100: K1's two column blocks add into a zeroed dQp), CuPy's memory pool off (each
buffer a fresh cudaMalloc: a read of an element no kernel wrote is one initcheck sees), for compute-sanitizer (memcheck /
initcheck). Asserts that the stores ran ((True, True) in the bf16 steps with coarse levels).
    python benchmarks/device/gd_train16_small_s29a.py"""
import os
import runpy

import cupy
import numpy as np
import torch

import lsattn
from lsattn.backends.cupy import gated_delta as cgd, gated_delta_bwd as gdb

cupy.cuda.set_allocator(None)
gdb.TIER_BWD_STORES = True
seen, real = [], gdb.tier_stores
gdb.tier_stores = lambda *a: seen.append(real(*a)) or seen[-1]
runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), "gd_train16_small_s24a.py"), run_name="__main__")
assert (True, True) in seen and (False, False) in seen, seen  # (T = 130: one period, nothing stored)
cgd.TIER_MIN_CHUNKS = 0
rng = np.random.default_rng(1)
for T, dk, dv, want in ((1100, 64, 64, (True, True)), (700, 64, 100, (False, True))):
    def t(*shape):
        return torch.tensor(rng.standard_normal(shape), device="cuda", dtype=torch.float32)

    q, k, v = t(2, T, dk), t(2, T, dk), t(2, T, dv)
    k = k / k.norm(dim=-1, keepdim=True)
    a, beta, lam = -t(2, T).abs(), torch.sigmoid(t(2, T)), t(2, T, lsattn.num_levels(T))
    xs = [x.requires_grad_(True) for x in (q, k, v, a, beta, lam)]
    seen.clear()
    out = lsattn.loglinear_gated_delta(*xs)
    out.square().sum().backward()
    torch.cuda.synchronize()
    assert seen == [want], seen
    assert all(bool(torch.isfinite(x.grad).all()) for x in xs)
    print("f32-train-stores", T, dk, dv, float(out.abs().max()), [float(x.grad.abs().max()) for x in xs])
print("sanitize ok (TIER_BWD_STORES)")
