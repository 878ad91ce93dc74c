"""A few small loglinear_log_attention backward calls on the cupy kernels (hierarchical_bwd.cu), for
compute-sanitizer (memcheck / racecheck), each checked against torch autograd of the array-API path
on the same device: float32 and float64, odd T, several right-block levels, a call after a state
that does not require grad, d_v and d_k not multiples of 16, d_k = d_v = 128, bfloat16 inputs, no
decay, right blocks split into pieces (hib_blocks, hib_bmerge; T = 1100), exact rows beside product
rows (a key spike at T = 200). Prints the largest error of every gradient relative to its largest magnitude.

    python benchmarks/device/hier_bwd_small.py [race]      (race: racecheck's three cases)"""
import sys

import numpy as np
import torch

import lsattn

TOL = {"float32": 2e-3, "float64": 1e-9, "bfloat16": 5e-2}
rng = np.random.default_rng(0)


def grads(xs, state, backend):
    ts = [x.detach().clone().requires_grad_(True) for x in xs]
    out = lsattn.loglinear_log_attention(*ts[:4], log_decay=ts[4] if len(ts) > 4 else None, state=state, backend=backend)
    out.float().square().sum().backward()
    return out, [t.grad.double() for t in ts]


CASES = (("float32", 200, 64, 64, 0, True), ("float64", 37, 5, 19, 0, True), ("float32", 150, 128, 128, 41, True),
         ("bfloat16", 130, 64, 64, 0, False), ("float32", 1100, 16, 16, 0, True))  # 35 chunks: split blocks, empty pieces
if "race" in sys.argv[1:]:  # racecheck's shorter list: product and exact rows, a split block with an empty piece, the
    CASES = (CASES[0], ("float32", 600, 16, 16, 0, True), CASES[3])  # tensor-core variant (bfloat16)
for dtype, T, dk, dv, P, decay in CASES:
    dt = getattr(torch, dtype)
    L = lsattn.num_levels(P + T)
    x = [torch.tensor(rng.standard_normal((2, P + T, d)), device="cuda").to(dt) for d in (dk, dk, dv, L)]
    if T == 200:  # a dominating key late in chunk [128, 160): its earlier rows take the exact per-pair path
        x[1][:, 150] += 60.0
    a = torch.tensor(-rng.random((2, P + T)), device="cuda").to(dt) if decay else None
    state = None
    if P:
        _, state = lsattn.loglinear_log_attention(*[y[:, :P] for y in x], log_decay=None if a is None else a[:, :P],
                                                  return_state=True)
    xs = [y[:, P:] for y in x] + ([a[:, P:]] if decay else [])
    out, got = grads(xs, state, None)
    assert "Hierarchical" in type(out.grad_fn).__name__, type(out.grad_fn).__name__
    _, want = grads(xs, state, "array_api")
    torch.cuda.synchronize()
    errs = [float((g - w).abs().max() / w.abs().max().clamp_min(1e-30)) for g, w in zip(got, want)]
    print(dtype, T, dk, dv, P, ["%.1e" % e for e in errs], flush=True)
    assert max(errs) <= TOL[dtype], (dtype, errs)
print("sanitize ok")
