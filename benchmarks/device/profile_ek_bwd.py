"""Per-stage times of the exp-kernel backward on the GPU (a development aid; results in NOTES.md).

    python benchmarks/device/profile_ek_bwd.py [T]
"""
import sys

import cupy
import numpy as np
import torch

sys.path.insert(0, "benchmarks")
from bench_gpu import cuda_time, ll_inputs_bhtd  # noqa: E402  (puts the repository on sys.path)
import lsattn  # noqa: E402
from lsattn.backends.cupy import exp_kernel as cek  # noqa: E402
from lsattn.backends.cupy._compile import CupyOps, make_config  # noqa: E402

T = int(sys.argv[1]) if len(sys.argv) > 1 else 8192
ops = CupyOps(0)
for dt in (torch.float32,):
    xs = [x.requires_grad_(True) for x in ll_inputs_bhtd(T, dt)[:3]]
    fwd = lambda: lsattn.exp_kernel_attention(*xs)  # noqa: E731

    def step():
        for x in xs:
            x.grad = None
        fwd().float().square().mean().backward()

    with torch.no_grad():
        out = fwd()
    q, k, v = (cupy.asarray(x.detach()) for x in xs)
    BH, DK, DV = q.shape[0] * q.shape[1], q.shape[-1], v.shape[-1]
    q3, k3, v3 = (x.reshape(BH, T, -1) for x in (q, k, v))
    o = cupy.asarray(out).reshape(BH, T, DV)
    do = cupy.asarray(torch.randn_like(out)).reshape(BH, T, DV)
    cfg = make_config("float", DK, DV, 32, "", grad="exp_kernel")
    n = -(-T // cfg.CH)
    f32 = np.float32
    mk, z, m_in = (cupy.empty((BH, n, DK), f32) for _ in range(3))
    S = cupy.empty((BH, n, DK, DV), f32)
    m_out, z_out, S_out = cupy.empty((BH, DK), f32), cupy.empty((BH, DK), f32), cupy.empty((BH, DK, DV), f32)
    lden, dl = cupy.empty((BH, T), f32), cupy.empty((BH, T), f32)
    dq, dk, dv = cupy.empty_like(q3), cupy.empty_like(k3), cupy.empty_like(v3)
    R0 = cupy.empty((BH, DK * DV + DK), f32)
    m_next = cupy.empty((BH, n, DK), f32)
    stages = {
        "forward (public)": fwd,
        "fwd+bwd (public)": step,
        "whole backward host logic": lambda: cek.backward(ops, q3, k3, v3, None, o, do, False),
        "ek_chunk (CH 32)": lambda: ops.ek_chunk(cfg, k3, v3, mk, S, z, T, DK, DV, n, BH),
        "ek_scan": lambda: ops.ek_scan(cfg, mk, S, z, None, None, None, m_in, m_out, S_out, z_out, DK, DV, n, BH),
        "ekb_dq": lambda: ops.ekb_dq(cfg, q3, k3, v3, o, do, m_in, S, z, dq, lden, dl, T, DK, DV, n, BH),
        "ekb_rscan": lambda: ops.ekb_rscan(cfg, S, z, m_in, m_next, R0, DK, DV, n, BH),
        "ekb_dkdv": lambda: ops.ekb_dkdv(cfg, q3, k3, v3, do, lden, dl, S, z, m_next, dk, dv, T, DK, DV, n, BH),
    }
    for name, fn in stages.items():
        print(f"{str(dt):15s} T={T} {name:30s} {cuda_time(fn, reps=10):8.3f} ms", flush=True)
