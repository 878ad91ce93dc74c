"""Small packed (cu_seqlens) exp-kernel / log_attention calls on the cupy kernels (for
compute-sanitizer, issue 19): fp32 and bf16, padded and full head dims, segments of length 0 and 1
and across chunk edges, fresh streams and continued ones (return_state, state=), -inf log values;
the backward of a packed call.
Prints the max difference to the per-segment calls."""
import torch

import lsattn

lens = [1, 70, 0, 63, 64, 65, 2, 100]
off = [0]
for n in lens:
    off.append(off[-1] + n)
T = off[-1]
for op in (lsattn.exp_kernel_attention, lsattn.log_attention):
    for dtype in (torch.float32, torch.bfloat16):
        for d in (40, 64):
            g = torch.Generator("cuda").manual_seed(0)
            q, k, v = (torch.randn(2, T, d, device="cuda", generator=g).to(dtype) for _ in range(3))
            if op is lsattn.log_attention:
                v[:, ::3, 0] = -float("inf")
            o1, st = op(q, k, v, cu_seqlens=off, return_state=True)
            o2 = op(q, k, v, cu_seqlens=off, state=st)
            loop = torch.cat([op(q[:, a:b], k[:, a:b], v[:, a:b]) for a, b in zip(off[:-1], off[1:]) if b > a], dim=1)
            xs = [x.detach().requires_grad_(True) for x in (q, k, v)]  # the backward on the chunk-aligned layout
            o3 = op(*xs, cu_seqlens=off)
            torch.where(torch.isfinite(o3), o3, 0).float().square().mean().backward()
            assert all(torch.isfinite(x.grad).all() for x in xs), (op.__name__, dtype)
            fin = torch.isfinite(loop)
            diff = (torch.where(fin, o1.float() - loop.float(), 0)).abs().max().item()
            print(f"{op.__name__} {dtype} d={d}: max |packed - loop| {diff:.2e}, continued finite "
                  f"{bool(torch.isfinite(o2[torch.isfinite(o1)]).all())}", flush=True)
torch.cuda.synchronize()
print("done")
