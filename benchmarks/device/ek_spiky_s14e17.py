"""A spiky log_attention backward for compute-sanitizer (session 14, s14e17): float32 (d = 40, 64) and float64
(d = 24), log values of scale 30 with -inf entries and a -inf column, a key spike (+60 at token 66) and a value
spike (+200 at token 40): rows flagged to the per-pair path (exp_kernel_bwd.cu's logv_GE) in several chunks."""
import torch

import lsattn

for dt, d in ((torch.float32, 40), (torch.float64, 24), (torch.float32, 64)):
    g = torch.Generator("cuda").manual_seed(0)
    q, k, v = (torch.randn(2, 100, d, device="cuda", generator=g, dtype=torch.float64) for _ in range(3))
    v = v * 30
    v[:, ::3, 0] = -float("inf")
    v[:, :, 1] = -float("inf")
    k[:, 66] += 60
    v[:, 40, 2:] += 200
    q, k, v = (x.to(dt).requires_grad_(True) for x in (q, k, v))
    o = lsattn.log_attention(q, k, v)
    torch.where(torch.isfinite(o), o, 0).float().square().mean().backward()
    torch.cuda.synchronize()
    print("ok", dt, all(bool(torch.isfinite(x.grad).all()) for x in (q, k, v)))
