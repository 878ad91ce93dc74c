"""A small exp-kernel / log_attention forward + backward on the GPU (for compute-sanitizer): padded
and full head dims, bf16 and fp32 (log_attention: and fp64), with and without an incoming state;
log_attention with -inf log values and a column without any non-zero value (-inf outputs);
non-causal with Tk != Tq."""
import torch

import lsattn


def loss(o):
    return torch.where(torch.isfinite(o), o, 0).float().square().mean()


for op in (lsattn.exp_kernel_attention, lsattn.log_attention):
    dtypes = (torch.float32, torch.bfloat16) + ((torch.float64,) if op is lsattn.log_attention else ())
    for dtype in dtypes:
        for T, d in ((100, 40), (70, 64)):
            g = torch.Generator("cuda").manual_seed(0)
            q, k, v = (torch.randn(2, T, d, device="cuda", generator=g) for _ in range(3))
            if op is lsattn.log_attention:
                v[:, ::3, 0] = -float("inf")
                v[:, :, 1] = -float("inf")
            q, k, v = (x.to(dtype).requires_grad_(True) for x in (q, k, v))
            _, st = op(q[:, :30].detach(), k[:, :30].detach(), v[:, :30].detach(), return_state=True)
            for n in st.tensors:
                st.tensors[n].requires_grad_(True)
            loss(op(q, k, v)).backward()
            loss(op(q, k, v, state=st)).backward()
            loss(op(q, k[:, :-7], v[:, :-7], causal=False)).backward()
            assert all(torch.isfinite(x.grad).all() for x in (q, k, v)), (op.__name__, dtype)
torch.cuda.synchronize()
print("ok")
