"""A few small loglinear_log_attention backward calls on the cupy kernels (hierarchical_bwd.cu), for
compute-sanitizer (memcheck / racecheck): float32 and float64, odd T, several right-block levels,
a call after a state that does not require grad, d_v and d_k not multiples of 16, d_k = d_v = 128,
bfloat16 inputs, no decay."""
import numpy as np
import torch

import lsattn

rng = np.random.default_rng(0)
for dtype, T, dk, dv, P, decay in (("float32", 200, 64, 64, 0, True), ("float64", 37, 5, 19, 0, True),
                                   ("float32", 150, 128, 128, 41, True), ("bfloat16", 130, 64, 64, 0, False)):
    dt = getattr(torch, dtype)
    L = lsattn.num_levels(P + T)
    x = [torch.tensor(rng.standard_normal((2, P + T, d)), device="cuda").to(dt) for d in (dk, dk, dv, L)]
    a = torch.tensor(-rng.random((2, P + T)), device="cuda").to(dt) if decay else None
    state = None
    if P:
        _, state = lsattn.loglinear_log_attention(*[y[:, :P] for y in x], log_decay=None if a is None else a[:, :P],
                                                  return_state=True)
    xs = [y[:, P:].clone().requires_grad_(True) for y in x] + ([a[:, P:].clone().requires_grad_(True)] if decay else [])
    out = lsattn.loglinear_log_attention(*xs[:4], log_decay=xs[4] if decay else None, state=state)
    assert "Hierarchical" in type(out.grad_fn).__name__, type(out.grad_fn).__name__
    out.float().sum().backward()
    torch.cuda.synchronize()
    print(dtype, T, [float(y.grad.float().abs().max()) for y in xs], flush=True)
print("sanitize ok")
