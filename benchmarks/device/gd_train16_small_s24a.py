"""Small bfloat16 loglinear_gated_delta training steps (forward + backward) on CUDA torch tensors through S16_TRAIN's
path (s24a: the forward's GD_S16 build, gd_scan_bwd_x1's GD_S16 build reading its bfloat16 intermediates through a
16-bit staging area), for compute-sanitizer (memcheck / racecheck / initcheck): the two-tier path from 3 chunks
(TIER_MIN_CHUNKS 0), one period and several, padded d_k (40: 16-byte staged copies; 20: element copies), d_v not a
multiple of 16, the grouped coarse form.
    python benchmarks/device/gd_train16_small_s24a.py"""
import numpy as np
import torch

import lsattn
from lsattn.backends.cupy import _autograd, gated_delta as cgd

cgd.TIER_MIN_CHUNKS = 0
taken, real = [], _autograd.apply_gated_delta_s16
_autograd.apply_gated_delta_s16 = lambda *a, **k: taken.append(1) or real(*a, **k)
CASES = ((130, 64, 64, False), (600, 40, 33, False), (330, 20, 17, False), (1100, 64, 64, True))
rng = np.random.default_rng(0)
for T, dk, dv, grouped in CASES:
    cgd.COARSE_GROUP_PERIODS = 0 if grouped else 64

    def t(*shape, dtype=torch.bfloat16):
        return torch.tensor(rng.standard_normal(shape), device="cuda", dtype=dtype)

    q, k, v = t(2, T, dk), t(2, T, dk), t(2, T, dv)
    k = k / k.float().norm(dim=-1, keepdim=True).to(k.dtype)
    a, beta = -t(2, T).abs(), torch.sigmoid(t(2, T))
    lam = t(2, T, lsattn.num_levels(T))
    xs = [x.requires_grad_(True) for x in (q, k, v, a, beta, lam)]
    taken.clear()
    out = lsattn.loglinear_gated_delta(*xs)
    out.float().square().sum().backward()
    torch.cuda.synchronize()
    assert taken == [1], "the S16 training path"
    print("bf16-train-s16", T, dk, dv, grouped, float(out.float().abs().max()),
          [float(x.grad.float().abs().max()) for x in xs])
print("sanitize ok")
