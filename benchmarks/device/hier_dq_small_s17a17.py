"""Session 17, s17a17: a few small loglinear_log_attention backward calls for compute-sanitizer on hib_dq (after
s16c17's hier_dq_small_s16c17.py): the bf16 callers' variant (d 64: hib_slot_rows' DKP >= 64 branch and the slot fold;
d 16 after a state: DKP < 64, the old slots), float32 FFMA with a key spike (exact rows), bf16 and float32 with a value
spike of 90 (the fold's block-uniform fallback: c_j - o_tj > 64), and a long bf16 call (T 2000: up to 6 held slots per
chunk); each against torch autograd of the array-API path on the device. Prints the largest error of every gradient
relative to its largest magnitude.

    python benchmarks/device/hier_dq_small_s17a17.py
"""
import numpy as np
import torch

import lsattn

TOL = {"float32": 2e-3, "bfloat16": 5e-2}
rng = np.random.default_rng(0)


def grads(xs, state, backend):
    ts = [x.detach().clone().requires_grad_(True) for x in xs]
    out = lsattn.loglinear_log_attention(*ts[:4], log_decay=ts[4], state=state, backend=backend)
    out.float().square().sum().backward()
    return out, [t.grad.double() for t in ts]


for dtype, T, d, P, which, spike in (("bfloat16", 130, 64, 0, 1, 0.0), ("bfloat16", 100, 16, 21, 1, 0.0),
                                     ("float32", 200, 64, 0, 1, 60.0), ("bfloat16", 160, 64, 0, 2, 90.0),
                                     ("float32", 160, 64, 0, 2, 90.0), ("bfloat16", 2000, 64, 0, 1, 0.0)):
    dt = getattr(torch, dtype)
    L = lsattn.num_levels(P + T)
    x = [torch.tensor(rng.standard_normal((2, P + T, e)), device="cuda").to(dt) for e in (d, d, d, L)]
    x[which][:, P + T * 3 // 4] += spike
    a = torch.tensor(-rng.random((2, P + T)), device="cuda").to(dt)
    state = None
    if P:
        _, state = lsattn.loglinear_log_attention(*[y[:, :P] for y in x], log_decay=a[:, :P], return_state=True)
    xs = [y[:, P:] for y in x] + [a[:, P:]]
    out, got = grads(xs, state, None)
    assert "Hierarchical" in type(out.grad_fn).__name__, type(out.grad_fn).__name__
    _, want = grads(xs, state, "array_api")
    torch.cuda.synchronize()
    errs = [float((g - w).abs().max() / w.abs().max().clamp_min(1e-30)) for g, w in zip(got, want)]
    print(dtype, T, d, P, which, spike, ["%.1e" % e for e in errs], flush=True)
    assert max(errs) <= TOL[dtype], (dtype, errs)
print("sanitize ok")
