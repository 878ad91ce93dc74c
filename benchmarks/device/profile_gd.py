"""Where loglinear_gated_delta spends its time on the GPU (cupy path: the fused WY forms gd_forms + gd_scan):
wall time per call and the top kernels by CUDA time (torch profiler), B=2 H=16 d=64, bf16 and fp32 at
T = 2K, 8K, 32K (or the T list given as the first argument, e.g. ``2048,8192``): the per-kernel split
and, from the profiler's totals, how much of the wall time no kernel covers (host work between them);
with the argument ``train [T]``: one fwd+bwd step at T (default 8192, bf16) instead."""
import sys
import time

import torch
from torch.profiler import ProfilerActivity, profile

import lsattn


def inputs(T, dtype):
    g = torch.Generator(device="cuda").manual_seed(0)
    q, k = (torch.randn((2, 16, T, 64), generator=g, device="cuda") for _ in range(2))
    k = k / k.norm(dim=-1, keepdim=True)
    v = torch.randn((2, 16, T, 64), generator=g, device="cuda")
    a = torch.nn.functional.logsigmoid(torch.randn((2, 16, T), generator=g, device="cuda") + 3.0)
    b = torch.rand((2, 16, T), generator=g, device="cuda")
    lam = torch.rand((2, 16, T, lsattn.num_levels(T)), generator=g, device="cuda") + 0.5
    return [x.to(dtype) for x in (q, k, v, a, b, lam)]


def wall_ms(f, reps=3):
    """Wall time of f() per call (after one warm-up call), ms."""
    f()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(reps):
        f()
    torch.cuda.synchronize()
    return 1e3 * (time.perf_counter() - t) / reps


def kernels(f, rows):
    """The top ``rows`` of one profiled call of f(), by CUDA time."""
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        f()
        torch.cuda.synchronize()
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=rows, max_name_column_width=60), flush=True)


if sys.argv[1:2] == ["train"]:  # one fwd+bwd step at T (default 8192), bf16: wall time and the top kernels
    T = int(sys.argv[2]) if sys.argv[2:] else 8192
    x = [t.requires_grad_(True) for t in inputs(T, torch.bfloat16)]

    def step():
        lsattn.loglinear_gated_delta(*x).float().square().mean().backward()
        for t in x:
            t.grad = None

    print(f"==== train T={T} bf16: {wall_ms(step):.2f} ms per fwd+bwd step", flush=True)
    kernels(step, 30)
    sys.exit(0)

Ts = [int(t) for t in sys.argv[1].split(",")] if sys.argv[1:] else [2048, 8192, 32768]
for T in Ts:
    for dtype in (torch.bfloat16, torch.float32):
        x = inputs(T, dtype)
        f = lambda: lsattn.loglinear_gated_delta(*x)  # noqa: E731
        print(f"==== T={T} {dtype}: {wall_ms(f):.3f} ms per call (wall)", flush=True)
        kernels(f, 14)
