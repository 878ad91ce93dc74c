"""Per-stage times of the log-linear backward on the GPU (a development aid; results in NOTES.md).

    python benchmarks/device/profile_bwd.py [T]
"""
import sys

import cupy
import torch

sys.path.insert(0, "benchmarks")
from bench_gpu import cuda_time, ll_inputs_bhtd  # noqa: E402  (puts the repository on sys.path)
import lsattn  # noqa: E402
from lsattn.backends.cupy import loglinear as cll  # noqa: E402
from lsattn.backends.cupy._compile import CupyOps  # noqa: E402

T = int(sys.argv[1]) if len(sys.argv) > 1 else 8192
for dt in (torch.bfloat16, torch.float32):
    xs = [x.requires_grad_(True) for x in ll_inputs_bhtd(T, dt)]
    fwd = lambda: lsattn.loglinear_attention(*xs)  # noqa: E731

    def step():
        for x in xs:
            x.grad = None
        fwd().float().square().mean().backward()

    with torch.no_grad():
        out = lsattn.loglinear_attention(*xs)
    f = [cupy.asarray(x.detach().float()) for x in xs]
    q, k, v, a, lam = f
    o = cupy.asarray(out.float())
    do = cupy.asarray(torch.randn_like(out.float()))
    ops = CupyOps(0)
    stages = {
        "forward (public)": lambda: fwd(),
        "fwd+bwd (public)": step,
        "dq pass (compute dots)": lambda: cll.compute(ops, do, v, k, a, lam, 64, 0, None, False, "", dots=(q, k)),
        "dk dv (compute_dkdv)": lambda: cll.compute_dkdv(ops, q, k, v, do, a, lam, 64, 0),
        "whole backward host logic": lambda: cll.backward(ops, q, k, v, a, lam, None, o, do, 64, 0, False),
        "widen 7 inputs to fp32": lambda: [x.detach().float().contiguous() for x in xs + [out, out]],
    }
    for name, fn in stages.items():
        print(f"{str(dt):15s} T={T} {name:30s} {cuda_time(fn, reps=10):8.3f} ms", flush=True)
