"""K3 gd_tier1x_bwd (session 25, s25b, issue 16) on the GPU: the two-tier scan backward's transfers kernel.

    python benchmarks/device/gd_tier1x_bwd_s25b.py small          one launch each of gd_tier1x_bwd_x1 (GD_S16: bf16
                                                                   intermediates) and gd_tier1x_bwd (float32) at
                                                                   T = 1000, d = 64, C = 64, B H = 2 (compute-sanitizer)
    python benchmarks/device/gd_tier1x_bwd_s25b.py times [T,..] [reps]
        B H = 32, d_k = d_v = 64, C = 64, bf16 inputs on the GD_S16 build (what bf16 training runs): gd_tier1x_bwd_x1
        alone (the production build: two tile sets, the next step's copies under this one's; and its GX_DB_SET=0 timing
        build: one set, each step's copies waited for) against gd_scan_bwd_x1 (the kernel the two-tier backward
        replaces; its GD_S16 build) at the same size;
        CUDA events around each launch (zeroed outputs set outside them), medians of reps (default 15). Inputs: gd_forms
        of random bf16 inputs (qe, ek, ph, g as the forward makes them), random dQp, dZ (K1 / K2 not yet merged) and
        output gradients.
    python benchmarks/device/gd_tier1x_bwd_s25b.py compile        the builds `times` runs, compiled into CuPy's cache"""
import sys

import cupy
import numpy as np

import lsattn
from lsattn._chunktree import chunk_layout
from lsattn.backends.cupy import _compile as cc
from lsattn.backends.cupy import gated_delta as cgd

#: written before the GPU run (benchmarks/NOTES.md, s25b): ms of gd_tier1x_bwd_x1 at B H = 32
PREDICTED = {8192: "0.55-0.8", 16384: "1.1-1.6", 32768: "2.2-3.2"}
mode = sys.argv[1] if len(sys.argv) > 1 else "times"
DK = DV = C = 64
ops = cc.CupyOps(cupy.cuda.Device().id)
rng = cupy.random.default_rng(0)


def bf16(x):  # float32 -> bfloat16 patterns (truncated: inputs of a timing)
    return (cupy.ascontiguousarray(x, dtype=cupy.float32).view(cupy.uint32) >> 16).astype(cupy.uint16)


def inputs(BH, T, s16):
    """gd_forms' outputs of random inputs (bf16 patterns on the GD_S16 build, else float32), lam in float32."""
    cfg = cgd._config("float", DK, C, "bf16", True) if s16 else cc.make_config("float", DK, 16, C)
    L = lsattn.num_levels(T)

    def r(*shape, scale=1.0):
        return rng.standard_normal(shape, dtype=np.float32) * scale

    q, v, k = r(BH, T, DK), r(BH, T, DV), r(BH, T, DK)
    k /= cupy.linalg.norm(k, axis=-1, keepdims=True)
    a = -cupy.abs(r(BH, T, scale=0.1))
    beta = 1 / (1 + cupy.exp(-r(BH, T)))
    lam = cupy.abs(r(BH, T, L)) + 0.5
    xs = [bf16(x) if s16 else x for x in (q, k, v, a, beta, lam)]
    lamw = cupy.empty((BH, T, L), cupy.float32)
    qe, ek, ph, H, g, _ = cgd.forms(ops, cfg, *xs, 0, lamw=lamw)
    return cfg, qe, ek, ph, H, g, lamw


def k3_args(BH, T, n):
    nP = -(-n // 4)
    tier = cgd.Tier(nP, (nP - 1).bit_length(), n=n, C=C)
    dQp = rng.standard_normal((BH, n, C, DK), dtype=np.float32)
    dZ = rng.standard_normal((BH, nP, DK, DK), dtype=np.float32)
    outs = [cupy.zeros(s, cupy.float32) for s in ((BH, n, C, DK), (BH, n, C, DK), (BH, n, DK, C), (BH, n))]
    return tier, dQp, dZ, outs


def one_set(cfg):
    """gd_tier1x_bwd_x1's GX_DB_SET=0 build (one set of the chunk's tiles: a timing build)."""
    code = "\n".join(cc._source(f) for f in ("common.cu",) + cc._SOURCES["gated_delta_tier_bwd"])
    opts = ("-std=c++17",) + tuple(cc.defines("gated_delta_tier_bwd", cfg)) + ("-DGX_DB_SET=0",)
    fn = cupy.RawModule(code=code, options=opts).get_function("gd_tier1x_bwd_x1")
    fn.max_dynamic_shared_size_bytes = cc.SMEM_MAX
    return fn


if mode == "compile":
    cfg = cgd._config("float", DK, C, "bf16", True)
    for op, name in (("gated_delta", "gd_forms"), ("gated_delta_bwd", "gd_scan_bwd_x1"),
                     ("gated_delta_tier_bwd", "gd_tier1x_bwd_x1")):
        ops._tk(op, cfg, name)
    one_set(cfg)
    print("compiled")
    sys.exit(0)
if mode == "small":
    BH, T = 2, 1000
    for s16 in (True, False):
        cfg, qe, ek, ph, H, g, lamw = inputs(BH, T, s16)
        n = qe.shape[1]
        tier, dQp, dZ, outs = k3_args(BH, T, n)
        ops.gd_tier1x_bwd(cfg, tier, qe, ek, ph, g, dQp, dZ, *outs, T, DK, n, BH, x1=s16)
        cupy.cuda.Device().synchronize()
        print(f"s16={s16} x1={s16} T={T} n={n}: finite {all(bool(cupy.isfinite(o).all()) for o in outs)}", flush=True)
    print("sanitize ok")
    sys.exit(0)

Ts = [int(x) for x in sys.argv[2].split(",")] if len(sys.argv) > 2 else [8192, 16384, 32768]
reps = int(sys.argv[3]) if len(sys.argv) > 3 else 15
BH = 32
fn3, block3, smem3 = None, None, None
one = None  # the GX_DB_SET=0 build of gd_tier1x_bwd_x1
print(f"B H = {BH}, d = {DK}, C = {C}, bf16 inputs, GD_S16 build, reps {reps}")
print("| T | chunks | K3 blocks | gd_tier1x_bwd_x1 ms median (min-max) | its GX_DB_SET=0 build | gd_scan_bwd_x1 ms | "
      "K3 / scan_bwd | predicted K3 |")
for T in Ts:
    cfg, qe, ek, ph, H, g, lamw = inputs(BH, T, True)
    n = qe.shape[1]
    tier, dQp, dZ, outs = k3_args(BH, T, n)
    L = lamw.shape[-1]
    lay = chunk_layout(0, T, C)
    NLC = cgd.chunk_slots(lay.first_chunk, n, T % C == 0)
    dout = rng.standard_normal((BH, n, C, DV), dtype=np.float32)
    sv = cupy.empty((BH, n, NLC, DK, DV), cupy.float32)
    zs = [cupy.zeros(s, cupy.float32) for s in ((BH, NLC, DK, DV), (BH, n, C, DK), (BH, n, C, DK), (BH, n, DK, C),
                                                (BH, n, DK, DV), (BH, n), (BH, T, L))]
    oldc = cupy.zeros((1,), cupy.float32)

    def k3():
        ops.gd_tier1x_bwd(cfg, tier, qe, ek, ph, g, dQp, dZ, *outs, T, DK, n, BH, x1=True)

    if one is None:
        one = one_set(cfg)

    def k3_one():
        _, block, smem = ops._tk("gated_delta_tier_bwd", cfg, "gd_tier1x_bwd_x1")
        i = np.int32
        one((tier.nP * BH * -(-DK // cfg.tier1x_bwd_bw),), block,
            (qe, ek, ph, g, dQp, dZ, *outs, i(T), i(DK), i(n), i(tier.nP), i(BH)), shared_mem=smem)

    def scan_bwd():
        ops.gd_scan_bwd(cfg, qe, ek, ph, H, g, lamw, dout, oldc, sv, *zs, T, DK, DV, L, 0, 0, n, 0, NLC, T % C == 0, BH,
                        x1=True)

    times = {}
    for name, fn, zero in (("gd_tier1x_bwd_x1", k3, outs), ("one set", k3_one, outs), ("gd_scan_bwd_x1", scan_bwd, zs)):
        ts = []
        for i in range(reps + 2):
            for z in zero:
                z.fill(0)
            e0, e1 = cupy.cuda.Event(), cupy.cuda.Event()
            e0.record()
            fn()
            e1.record()
            e1.synchronize()
            if i >= 2:
                ts.append(cupy.cuda.get_elapsed_time(e0, e1))
        times[name] = (float(np.median(ts)), float(np.min(ts)), float(np.max(ts)))
    if fn3 is None:
        fn3, block3, smem3 = ops._tk("gated_delta_tier_bwd", cfg, "gd_tier1x_bwd_x1")
        print(f"gd_tier1x_bwd_x1: {fn3.num_regs} registers, {fn3.local_size_bytes} B local, smem {smem3} B", flush=True)
    k, s = times["gd_tier1x_bwd_x1"][0], times["gd_scan_bwd_x1"][0]
    print(f"| {T} | {n} | {tier.nP * BH} | " + " | ".join(f"{m:.3f} ({lo:.3f}-{hi:.3f})" for m, lo, hi in times.values())
          + f" | {k / s:.2f} | {PREDICTED.get(T, '')} |", flush=True)
    del sv, zs
