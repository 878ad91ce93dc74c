"""K1 gd_tier3_bwd and K2 gd_coarse_bwd (session 25, s25a, issue 16) on the real forward's saved buffers: bfloat16
inputs, the GD_S16 build (gated_delta.forms + CupyOps.gd_tiers with scratch allocated here, T3FILL off: Sb complete),
d_k = d_v = 64, C = 64, the x1 kernels (bfloat16 callers).

    python benchmarks/device/gd_tier_bwd_s25a.py small            (T = 1000 and 2600, B H = 2: each kernel once, for
                                                                   compute-sanitizer)
    python benchmarks/device/gd_tier_bwd_s25a.py times [T,..] [reps]  (B H = 32; CUDA events around each launch, its
                                                                   zeroed outputs set outside them; medians: K1, K1 at
                                                                   R = 4 chunks held, one block a SM (GT3B_R_SET=4, a
                                                                   timing build: its first default), K2, and
                                                                   gd_scan_bwd_x1 (the kernel they replace) at the same
                                                                   size)
    python benchmarks/device/gd_tier_bwd_s25a.py compile          (times' builds into CuPy's cache; nothing run)"""
import sys

import cupy
import numpy as np

import lsattn
from lsattn._chunktree import chunk_layout
from lsattn.backends.cupy import _compile as cc
from lsattn.backends.cupy import gated_delta as cgd
from lsattn.backends.cupy._arrays import narrow

DK = DV = C = 64
cgd.T3FILL = False  # (the training forward's Sb: every slot stored)
cgd.TIER_MIN_CHUNKS = 0  # (the small calls' two tiers)
cfg = cgd._config("float", DK, C, "bf16", True)
ops = cc.CupyOps(cupy.cuda.Device().id)
rng = cupy.random.default_rng(0)


def forward(BH, T):
    """The GD_S16 forward's saved buffers: (tier, qe, ek, ph, H, g, lam (float32), Z, Sb, Qp)."""
    L = lsattn.num_levels(T)

    def r(*shape, scale=1.0):
        return rng.standard_normal(shape, dtype=np.float32) * scale

    q, v, k = r(BH, T, DK), r(BH, T, DV), r(BH, T, DK)
    k /= cupy.linalg.norm(k, axis=-1, keepdims=True)
    a = -cupy.abs(r(BH, T, scale=0.1))
    beta = 1 / (1 + cupy.exp(-r(BH, T)))
    lam = cupy.abs(r(BH, T, L)) + 0.5
    bf = [cupy.ascontiguousarray(narrow(cupy, x, "bf16")) for x in (q, k, v, a, beta, lam)]
    lamw = cupy.empty((BH, T, L), cupy.float32)
    qe, ek, ph, H, g, intra = cgd.forms(ops, cfg, *bf, 0, lamw)
    n = chunk_layout(0, T, C).n_chunks
    tier = cgd.tier_plan(cfg, 0, n, 0, False, DK, DV)
    assert tier is not None and tier.NCL > 0
    scratch = [cupy.empty((BH,) + s, dtype=d) for s, d in zip(tier.shapes(DK, DV), tier.dtypes(cupy.float32, cfg, cupy))]
    ops.gd_tiers(cfg, tier, qe, ek, ph, H, g, lamw, intra, T, DK, DV, L, n, BH, scratch=scratch)
    Z, _tot, Sb, Qp, _pc, _tg = scratch
    return tier, n, qe, ek, ph, H, g, lamw, Z, Sb, Qp


def buffers(tier, BH, T, n, L):
    z = cupy.zeros
    return dict(dQp=z((BH, n, C, DK), cupy.float32), dSb=cupy.empty((BH,) + tier.shapes(DK, DV)[2], cupy.float32),
                dlam=z((BH, T, L), cupy.float32), dZ=z((BH, tier.nP, DK, DK), cupy.float32),
                dTot=z((BH, tier.nP, DK, DV), cupy.float32))


if sys.argv[1] == "small":
    for T in (1000, 2600):
        BH = 2
        tier, n, qe, ek, ph, H, g, lam, Z, Sb, Qp = forward(BH, T)
        L = lam.shape[-1]
        dout = rng.standard_normal((BH, n, C, DV), dtype=np.float32)
        b = buffers(tier, BH, T, n, L)
        ops.gd_tier3_bwd(cfg, tier, qe, Qp, Sb, lam, dout, b["dQp"], b["dSb"], b["dlam"], T, DK, DV, L, n, BH, x1=True)
        ops.gd_coarse_bwd(cfg, tier, Z, Sb, b["dSb"], b["dZ"], b["dTot"], DK, DV, BH, x1=True)
        cupy.cuda.Device().synchronize()
        print(f"T={T}: nP {tier.nP}, NCL {tier.NCL}; finite:",
              {k: bool(cupy.isfinite(v).all()) for k, v in b.items()}, flush=True)
    print("sanitize ok")
    sys.exit(0)

Ts = [int(x) for x in sys.argv[2].split(",")] if len(sys.argv) > 2 else [8192, 16384, 32768]
reps = int(sys.argv[3]) if len(sys.argv) > 3 else 15
BH = 32


def build(*extra, name="gd_tier3_bwd_x1"):
    """``name`` of a timing build (-D options ``extra``)."""
    code = "\n".join(cc._source(f) for f in ("common.cu",) + cc._SOURCES["gated_delta_tier_bwd"])
    opts = ("-std=c++17",) + tuple(cc.defines("gated_delta_tier_bwd", cfg)) + extra
    fn = cupy.RawModule(code=code, options=opts).get_function(name)
    fn.max_dynamic_shared_size_bytes = cc.SMEM_MAX
    return fn


k1r4 = build("-DGT3B_R_SET=4")  # R = 4 chunks held, one block a SM
k1, _, s1 = ops._tk("gated_delta_tier_bwd", cfg, "gd_tier3_bwd_x1")
k2, _, s2 = ops._tk("gated_delta_tier_bwd", cfg, "gd_coarse_bwd_x1")
if sys.argv[1] == "compile":
    ops._tk("gated_delta_bwd", cfg, "gd_scan_bwd_x1")
    ops._tk("gated_delta", cfg, "gd_forms")
    sys.exit(0)
print(f"K1 {k1.num_regs} registers, {k1.local_size_bytes} B local, smem {s1}; K1 R=4 {k1r4.num_regs} registers, "
      f"{k1r4.local_size_bytes} B local, smem {cfg.gd_tier3_bwd_smem(4)}; K2 {k2.num_regs} registers, "
      f"{k2.local_size_bytes} B local, smem {s2}", flush=True)


def timed(fn, zero, reps):
    ts = []
    for i in range(reps + 2):
        zero()
        e0, e1 = cupy.cuda.Event(), cupy.cuda.Event()
        e0.record()
        fn()
        e1.record()
        e1.synchronize()
        if i >= 2:
            ts.append(cupy.cuda.get_elapsed_time(e0, e1))
    return float(np.median(ts)), float(np.min(ts)), float(np.max(ts))


rows = []
for T in Ts:
    tier, n, qe, ek, ph, H, g, lam, Z, Sb, Qp = forward(BH, T)
    L = lam.shape[-1]
    dout = rng.standard_normal((BH, n, C, DV), dtype=np.float32)
    b = buffers(tier, BH, T, n, L)
    i32 = np.int32
    NCB = -(-DV // 64)

    def zero1():
        b["dQp"].fill(0)
        b["dlam"].fill(0)

    def zero2():
        b["dZ"].fill(0)
        b["dTot"].fill(0)

    t1 = timed(lambda: ops.gd_tier3_bwd(cfg, tier, qe, Qp, Sb, lam, dout, b["dQp"], b["dSb"], b["dlam"], T, DK, DV, L, n,
                                        BH, x1=True), zero1, reps)
    ref = [b[k].copy() for k in ("dQp", "dSb", "dlam")]
    args1 = (qe, Qp, Sb, lam, dout, b["dQp"], b["dSb"], b["dlam"], i32(T), i32(DK), i32(DV), i32(L), i32(n), i32(tier.nP),
             i32(BH))
    t1r4 = timed(lambda: k1r4(((tier.nP - 1) * BH * NCB,), (256,), args1, shared_mem=cfg.gd_tier3_bwd_smem(4)), zero1, reps)
    dif = max(float(cupy.abs(b[k] - x).max() / cupy.abs(x).max()) for k, x in zip(("dQp", "dSb", "dlam"), ref))
    t2 = timed(lambda: ops.gd_coarse_bwd(cfg, tier, Z, Sb, b["dSb"], b["dZ"], b["dTot"], DK, DV, BH, x1=True), zero2, reps)
    del b
    NLC = cgd.chunk_slots(0, n, T % C == 0)
    sv = cupy.empty((BH, n, NLC, DK, DV), cupy.float32)
    zs = [cupy.zeros(s, cupy.float32) for s in ((BH, NLC, DK, DV), (BH, n, C, DK), (BH, n, C, DK), (BH, n, DK, C),
                                                (BH, n, DK, DV), (BH, n), (BH, T, L))]
    oldc = cupy.zeros((1,), cupy.float32)

    def zero0():
        for x in zs:
            x.fill(0)

    t0 = timed(lambda: ops.gd_scan_bwd(cfg, qe, ek, ph, H, g, lam, dout, oldc, sv, *zs, T, DK, DV, L, 0, 0, n, 0, NLC,
                                       T % C == 0, BH, x1=True), zero0, reps)
    del sv, zs
    rows.append((T, tier, t1, t1r4, t2, t0))
    print(f"T={T}: nP {tier.nP} NCL {tier.NCL} grouped {tier.grouped}; K1 {t1[0]:.3f} (min {t1[1]:.3f}, max {t1[2]:.3f}) "
          f"K1 R=4 {t1r4[0]:.3f} (its outputs against K1's: {dif:.1e} of max) K2 {t2[0]:.3f} (min {t2[1]:.3f}, max "
          f"{t2[2]:.3f}) gd_scan_bwd_x1 {t0[0]:.3f} ms", flush=True)
print("| T | K1 gd_tier3_bwd_x1 | K1 R=4, 1 / SM | K2 gd_coarse_bwd_x1 | K1 + K2 | gd_scan_bwd_x1 |")
print("|---|---:|---:|---:|---:|---:|")
for T, tier, t1, t1r4, t2, t0 in rows:
    print(f"| {T} | {t1[0]:.3f} | {t1r4[0]:.3f} | {t2[0]:.3f} | {t1[0] + t2[0]:.3f} | {t0[0]:.3f} |")
