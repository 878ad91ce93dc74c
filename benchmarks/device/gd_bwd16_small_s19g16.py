"""Small bfloat16 loglinear_gated_delta forward + backward calls on CUDA torch tensors through GRAD_BF16's path
(gd_forms' bf16 build under autograd, gd_forms_bwd_x1's TI_BF16 build: bf16 reads, bf16 gradient writes, dk's partial
sums across dk's and dq's halves, lam's float32 gradient added), for compute-sanitizer (memcheck / racecheck /
initcheck): the production tiles (d = 64, C = 64, tensor cores), odd T, d_v not a multiple of 32, and a continuation
with an incoming state at C = 16 (FFMA tiles, element loads: d_k = 20). s19g16.
    python benchmarks/device/gd_bwd16_small_s19g16.py"""
import numpy as np
import torch

import lsattn
from lsattn.state import State

CASES = ((130, 64, 64, 64, 0), (200, 64, 40, 64, 0), (70, 20, 19, 16, 45))
rng = np.random.default_rng(0)
for T, dk, dv, C, P in CASES:
    def t(*shape, dtype=torch.bfloat16):
        return torch.tensor(rng.standard_normal(shape), device="cuda", dtype=dtype)

    q, k, v = t(2, T, dk), t(2, T, dk), t(2, T, dv)
    k = k / k.float().norm(dim=-1, keepdim=True).to(k.dtype)
    a, beta = -t(2, T).abs(), torch.sigmoid(t(2, T))
    lam = t(2, T, lsattn.num_levels(P + T))
    xs = [x.requires_grad_(True) for x in (q, k, v, a, beta, lam)]
    state = None
    if P:
        levels = t(2, P.bit_length(), dk, dv, dtype=torch.float32).requires_grad_(True)
        state = State("loglinear_gated_delta", P, (2,), dk, dv, levels.dtype, {"levels": levels})
        xs.append(levels)
    out = lsattn.loglinear_gated_delta(*xs[:6], chunk_size=C, state=state)
    out.float().square().sum().backward()
    torch.cuda.synchronize()
    print("bf16-small", T, dk, dv, C, P, float(out.float().abs().max()),
          [(str(x.grad.dtype)[6:], float(x.grad.float().abs().max())) for x in xs])
print("sanitize ok")
