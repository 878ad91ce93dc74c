"""The bf16 exp-kernel / log_attention backward on tensor cores (``exp_kernel_bwd_tc.cu``) against
float64 autograd of the reference on the rounded inputs, and against the float32 kernels' gradients
on the same inputs: the largest error of dq, dk, dv per case, relative to the largest reference
gradient (a development aid; the tests hold the bound). ``--small``: two small cases only (for
compute-sanitizer racecheck); ``--tiny``: one, bf16 only (memcheck). In log_attention's rows, an
output that is -inf in the kernels (its visible values all -inf) is finite in the reference (-inf
log values replaced by -1e5 there), so its d log_v differs by the output gradient: there fp32 and
bf16 show the same large number.

    python benchmarks/device/ek_bwd_tc_check.py [--small | --tiny]
"""
import sys

import torch

import lsattn
from lsattn import reference as ref

small, tiny = "--small" in sys.argv, "--tiny" in sys.argv
cases = [(100, 40, 24, 1.0, True)] if tiny else [(70, 40, 24, 1.0, False), (100, 64, 64, 1.0, True)] if small else [
    (1, 64, 64, 1.0, False), (37, 16, 2, 1.0, False), (64, 64, 64, 1.0, False), (65, 64, 64, 3.0, False),
    (200, 24, 40, 1.0, True), (300, 128, 128, 1.0, False), (300, 64, 64, 30.0, False), (777, 64, 64, 1.0, True),
    (1000, 64, 64, 1e3, False)]


def grads(fn, xs, do):
    xs = [x.detach().requires_grad_(True) for x in xs]
    out = fn(*xs)
    (torch.where(torch.isfinite(out), out.double(), 0.0) * do).sum().backward()
    return [x.grad.double() for x in xs]


for op in ("exp_kernel_attention", "log_attention"):
    fn = getattr(lsattn, op)
    for T, dk, dv, scale, spike in cases:
        g = torch.Generator("cuda").manual_seed(T + dk)
        q, k = (torch.randn(2, 2, T, dk, device="cuda", generator=g, dtype=torch.float64) * scale for _ in range(2))
        v = torch.randn(2, 2, T, dv, device="cuda", generator=g, dtype=torch.float64)
        if op == "log_attention":
            v = v * (30.0 if scale > 1 else 3.0)
            v[..., ::5, 0] = -float("inf")
        if spike and T > 2:
            k[..., 2 * T // 3, :] += 20.0
            if op == "log_attention":
                v[..., 2 * T // 3, 1] = 90.0
        bf = [x.to(torch.bfloat16) for x in (q, k, v)]
        rounded = [x.double() for x in bf]
        do = torch.randn(2, 2, T, dv, device="cuda", generator=g, dtype=torch.float64)
        got = grads(fn, bf, do)
        if tiny:  # compute-sanitizer: the bf16 kernels only
            assert all(torch.isfinite(g).all() for g in got)
            continue
        f32 = grads(fn, [x.float() for x in rounded], do)
        if op == "log_attention":
            safe = [rounded[0], rounded[1], torch.where(torch.isneginf(rounded[2]), -1e5, rounded[2])]
            want = grads(lambda *x: ref.log_attention(*x), safe, do)
        else:
            want = grads(lambda *x: ref.exp_kernel_attention(*x), rounded, do)
        line = []
        for name, a, b, c in zip(("dq", "dk", "dv"), got, f32, want):
            scl = float(c.abs().max()) or 1.0
            line.append(f"{name} {float((a - c).abs().max()) / scl:.2e} (fp32 {float((b - c).abs().max()) / scl:.2e})"
                        f"{'' if torch.isfinite(a).all() else ' NONFINITE'}")
        print(f"{op:22s} T={T:5d} dk={dk:3d} dv={dv:3d} scale={scale:g} spike={spike:d}: " + ", ".join(line), flush=True)
torch.cuda.synchronize()
print("ok")
