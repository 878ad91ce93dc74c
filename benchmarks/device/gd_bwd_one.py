"""Two loglinear_gated_delta fwd+bwd steps on CUDA torch tensors (B=2, H=16, d=64, bf16, T = 8192 or the
first argument), for ncu on the backward kernels (``--launch-skip 1 --launch-count 1``: the second step's)."""
import sys

import torch

import lsattn

T = int(sys.argv[1]) if sys.argv[1:] else 8192
g = torch.Generator(device="cuda").manual_seed(0)
q, k, v = (torch.randn((2, 16, T, 64), generator=g, device="cuda") for _ in range(3))
k = k / k.norm(dim=-1, keepdim=True)
a = torch.nn.functional.logsigmoid(torch.randn((2, 16, T), generator=g, device="cuda") + 3.0)
b = torch.rand((2, 16, T), generator=g, device="cuda")
lam = torch.rand((2, 16, T, lsattn.num_levels(T)), generator=g, device="cuda") + 0.5
xs = [x.to(torch.bfloat16).requires_grad_(True) for x in (q, k, v, a, b, lam)]
for _ in range(2):
    lsattn.loglinear_gated_delta(*xs).float().square().mean().backward()
torch.cuda.synchronize()
print("ok", [float(x.grad.float().abs().max()) for x in xs])
