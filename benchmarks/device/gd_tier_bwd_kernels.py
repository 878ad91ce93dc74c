"""The two-tier scan backward's kernels alone (K1 gd_tier3_bwd, K2 gd_coarse_bwd, K3 gd_tier1x_bwd, K4 gd_tier1_bwd;
benchmarks/NOTES.md "Session 24 — s24c", session 25) beside gd_scan_bwd_x1, the serial kernel they replace, on the
real forward's buffers: bfloat16 inputs, the GD_S16 build (gated_delta.forms, then CupyOps.gd_tiers on scratch of its
own with the coarse fill as its own kernel, as the training forward runs it), d_k = d_v = C = 64, the x1 builds
(bfloat16 callers), random output gradients. CUDA events around each launch (its zeroed outputs set outside them),
medians. Replaces session 25's per-kernel scripts (gd_tier_bwd_s25a.py, gd_tier1x_bwd_s25b.py, gd_tier1_bwd_s25c.py:
their timing builds, recoverable at the session's merge commits).

    python benchmarks/device/gd_tier_bwd_kernels.py [T,..] [reps] [BH]     (default 8192,16384,32768 15 32)"""
import sys

import cupy
import numpy as np

import lsattn
from lsattn._chunktree import chunk_layout
from lsattn.backends.cupy import _compile as cc
from lsattn.backends.cupy import gated_delta as cgd
from lsattn.backends.cupy._arrays import narrow

DK = DV = C = 64
cfg = cgd._config("float", DK, C, "bf16", True)
ops = cc.CupyOps(cupy.cuda.Device().id)
rng = cupy.random.default_rng(0)
f32 = cupy.float32


def forward(BH, T):
    """The forward's buffers: (tier, n, L, qe, ek, ph, H, g, lam (float32), Z, Sb, Qp)."""
    L = lsattn.num_levels(T)

    def r(*shape, scale=1.0):
        return rng.standard_normal(shape, dtype=np.float32) * scale

    q, v, k = r(BH, T, DK), r(BH, T, DV), r(BH, T, DK)
    k /= cupy.linalg.norm(k, axis=-1, keepdims=True)
    a, beta, lam = -cupy.abs(r(BH, T, scale=0.1)), 1 / (1 + cupy.exp(-r(BH, T))), cupy.abs(r(BH, T, L)) + 0.5
    bf = [cupy.ascontiguousarray(narrow(cupy, x, "bf16")) for x in (q, k, v, a, beta, lam)]
    lamw = cupy.empty((BH, T, L), f32)
    qe, ek, ph, H, g, intra = cgd.forms(ops, cfg, *bf, 0, lamw)
    n = chunk_layout(0, T, C).n_chunks
    tier = cgd.tier_plan(cfg, 0, n, 0, False, DK, DV)
    scratch = [cupy.empty((BH,) + s, dtype=d) for s, d in zip(tier.shapes(DK, DV), tier.dtypes(f32, cfg, cupy))]
    ops.gd_tiers(cfg, tier, qe, ek, ph, H, g, lamw, intra, T, DK, DV, L, n, BH, scratch=scratch, t3fill=False)
    Z, _, Sb, Qp, _, _ = scratch
    return tier, n, L, qe, ek, ph, H, g, lamw, Z, Sb, Qp


def median_ms(launch, zeroed, reps):
    ts = []
    for i in range(reps + 2):
        for z in zeroed:
            z.fill(0)
        e0, e1 = cupy.cuda.Event(), cupy.cuda.Event()
        e0.record()
        launch()
        e1.record()
        e1.synchronize()
        if i >= 2:
            ts.append(cupy.cuda.get_elapsed_time(e0, e1))
    return float(np.median(ts))


def main():
    Ts = [int(x) for x in sys.argv[1].split(",")] if len(sys.argv) > 1 else [8192, 16384, 32768]
    reps = int(sys.argv[2]) if len(sys.argv) > 2 else 15
    BH = int(sys.argv[3]) if len(sys.argv) > 3 else 32
    print(f"{cupy.cuda.runtime.getDeviceProperties(0)['name'].decode()}, B H = {BH}, d = C = 64, bf16 inputs, GD_S16, "
          f"x1, medians of {reps}")
    print("| T | K1 gd_tier3_bwd | K2 gd_coarse_bwd | K3 gd_tier1x_bwd | K4 gd_tier1_bwd | K1-K4 | gd_scan_bwd_x1 | ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for T in Ts:
        tier, n, L, qe, ek, ph, H, g, lam, Z, Sb, Qp = forward(BH, T)
        dout = rng.standard_normal((BH, n, C, DV), dtype=np.float32)
        z = cupy.zeros
        dQp, dSb, dlam = z((BH, n, C, DK), f32), cupy.empty(Sb.shape, f32), z((BH, T, L), f32)
        dZ, dTot = z((BH, tier.nP, DK, DK), f32), z((BH, tier.nP, DK, DV), f32)
        dqe, dek, dph, dH, dg = z((BH, n, C, DK), f32), z((BH, n, C, DK), f32), z((BH, n, DK, C), f32), \
            z((BH, n, DK, DV), f32), z((BH, n), f32)
        a = (cfg, tier)
        k1 = median_ms(lambda: ops.gd_tier3_bwd(*a, qe, Qp, Sb, lam, dout, dQp, dSb, dlam, T, DK, DV, L, n, BH, True),
                       (dQp, dlam), reps)
        k2 = median_ms(lambda: ops.gd_coarse_bwd(*a, Z, Sb, dSb, dZ, dTot, DK, DV, BH, True), (dZ, dTot), reps)
        k3 = median_ms(lambda: ops.gd_tier1x_bwd(*a, qe, ek, ph, g, dQp, dZ, dqe, dek, dph, dg, T, DK, n, BH, True),
                       (dqe, dek, dph, dg), reps)
        k4 = median_ms(lambda: ops.gd_tier1_bwd(*a, qe, ek, ph, H, g, lam, dout, dTot, dqe, dek, dph, dH, dg, dlam, T, DK,
                                                DV, L, n, BH, True), (dqe, dek, dph, dg, dlam), reps)
        del dQp, dSb, dZ, dTot, Z, Sb, Qp
        NLC = cgd.chunk_slots(0, n, T % C == 0)
        sv, dS = cupy.empty((BH, n, NLC, DK, DV), f32), z((BH, NLC, DK, DV), f32)
        oldc = z((1,), f32)
        s = median_ms(lambda: ops.gd_scan_bwd(cfg, qe, ek, ph, H, g, lam, dout, oldc, sv, dS, dqe, dek, dph, dH, dg, dlam,
                                              T, DK, DV, L, 0, 0, n, 0, NLC, T % C == 0, BH, x1=True),
                      (dS, dqe, dek, dph, dH, dg, dlam), reps)
        tot = k1 + k2 + k3 + k4
        print(f"| {T} | {k1:.3f} | {k2:.3f} | {k3:.3f} | {k4:.3f} | {tot:.3f} | {s:.3f} | {tot / s:.2f} |", flush=True)


if __name__ == "__main__":
    main()
