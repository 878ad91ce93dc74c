"""A small exp-kernel forward + backward on the GPU (for compute-sanitizer): padded and full head
dims, bf16 and fp32, with and without an incoming state."""
import torch

import lsattn

for dtype in (torch.float32, torch.bfloat16):
    for T, d in ((100, 40), (70, 64)):
        g = torch.Generator("cuda").manual_seed(0)
        q, k, v = (torch.randn(2, T, d, device="cuda", generator=g).to(dtype).requires_grad_(True) for _ in range(3))
        _, st = lsattn.exp_kernel_attention(q[:, :30].detach(), k[:, :30].detach(), v[:, :30].detach(), return_state=True)
        for n in st.tensors:
            st.tensors[n].requires_grad_(True)
        lsattn.exp_kernel_attention(q, k, v).float().square().mean().backward()
        lsattn.exp_kernel_attention(q, k, v, state=st).float().square().mean().backward()
torch.cuda.synchronize()
print("ok")
