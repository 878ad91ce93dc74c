"""K4 gd_tier1_bwd (session 25, s25c, issue 16) on the GPU: its inputs from the real forward's gd_forms (bf16 inputs on
the GD_S16 build: qe, ek, ph, H as bfloat16; the float32 level weights gd_forms copies), random dout and dTot (what K2
would add; gd_tier1_bwd reads no other forward scratch: Tot / Z / Sb / Qp are K1-K3's), d_k = d_v = 64, C = 64.

    python benchmarks/device/gd_tier1_bwd_s25c.py small           (T = 1000, B H = 2: gd_tier1_bwd_x1 on GD_S16, then
                                                                  gd_tier1_bwd on float32 forms, then the timing build
                                                                  of 32 columns, once each: for compute-sanitizer)
    python benchmarks/device/gd_tier1_bwd_s25c.py compile         (the modules of `times` into CuPy's cache)
    python benchmarks/device/gd_tier1_bwd_s25c.py times [T,..] [reps]
                                                                  (B H = 32, S16 x1: gd_tier1_bwd_x1 alone (the
                                                                  production build, 64 value columns a block; the timing
                                                                  build GT4_BW_SET=32: 2 blocks per SM) and main's
                                                                  gd_scan_bwd_x1 (S16_TRAIN build) at the same size,
                                                                  CUDA events around each launch, its zeroed outputs
                                                                  set outside them; medians)"""
import sys

import cupy
import numpy as np

import lsattn
from lsattn._chunktree import chunk_layout
from lsattn.backends.cupy import _compile as cc
from lsattn.backends.cupy import gated_delta as cgd
from lsattn.backends.cupy._arrays import narrow

DK = DV = C = 64
PRED = {8192: "0.6-0.9", 16384: "1.2-1.8", 32768: "2.4-3.6"}  # benchmarks/NOTES.md s25c's prediction (ms)
ops = cc.CupyOps(cupy.cuda.Device().id)
rng = cupy.random.default_rng(0)


def inputs(BH, T, s16):
    """(cfg, qe, ek, ph, H, g, lam (float32), dout, dTot, n, nP, L) from gd_forms of random inputs."""
    L = lsattn.num_levels(T)
    half = "bf16" if s16 else ""
    cfg = cgd._config("float", DK, C, half, s16)

    def r(*shape, scale=1.0):
        return rng.standard_normal(shape, dtype=np.float32) * scale

    q, v, k = r(BH, T, DK), r(BH, T, DV), r(BH, T, DK)
    k /= cupy.linalg.norm(k, axis=-1, keepdims=True)
    a = -cupy.abs(r(BH, T, scale=0.1))
    beta = 1 / (1 + cupy.exp(-r(BH, T)))
    lam = cupy.abs(r(BH, T, L)) + 0.5
    lamw = None
    if s16:
        q, k, v, a, beta, lam = (cupy.ascontiguousarray(narrow(cupy, x, "bf16")) for x in (q, k, v, a, beta, lam))
        lamw = cupy.empty((BH, T, L), cupy.float32)
    qe, ek, ph, H, g, _ = cgd.forms(ops, cfg, q, k, v, a, beta, lam, 0, lamw)
    n = chunk_layout(0, T, C).n_chunks
    nP = -(-n // 4)
    return cfg, qe, ek, ph, H, g, lamw if s16 else lam, r(BH, n, C, DV), r(BH, nP, DK, DV), n, nP, L


def outs(BH, T, n, L):
    return [cupy.zeros(s, cupy.float32) for s in ((BH, n, C, DK), (BH, n, C, DK), (BH, n, DK, C), (BH, n, DK, DV),
                                                  (BH, n), (BH, T, L))]


def t1b(BH, T, s16, x, o=ops, bw=None):
    cfg, qe, ek, ph, H, g, lam, dout, dtot, n, nP, L = x
    zs = outs(BH, T, n, L)
    tier = cgd.Tier(nP, (nP - 1).bit_length(), n=n, C=C)
    return lambda: o.gd_tier1_bwd(cfg, tier, qe, ek, ph, H, g, lam, dout, dtot, *zs, T, DK, DV, L, n, BH, x1=s16, bw=bw), zs


class Ops32(cc.CupyOps):
    """CupyOps whose gd_tier1_bwd_x1 is the timing build GT4_BW_SET=32 (S16): 32 value columns a block, 94.5 KB of
    shared memory (2 blocks per SM)."""

    def __init__(self, device_id):
        super().__init__(device_id)
        cfg = cgd._config("float", DK, C, "bf16", True)
        code = "\n".join(cc._source(f) for f in ("common.cu",) + cc._SOURCES["gated_delta_tier_bwd"])
        opts = ("-std=c++17",) + tuple(cc.defines("gated_delta_tier_bwd", cfg)) + ("-DGT4_BW_SET=32",)
        self.fn = cupy.RawModule(code=code, options=opts).get_function("gd_tier1_bwd_x1")
        self.smem = (2 * C * (DK + 8) + DK * (C + 8)) * 2 + (4 * DK * 40 + 3 * C * 36 + 2 * C) * 4
        self.fn.max_dynamic_shared_size_bytes = self.smem

    def _tk(self, op, cfg, name):
        assert name == "gd_tier1_bwd_x1" and cfg.s16
        return self.fn, (256,), self.smem


def scan_bwd(BH, T, x):
    cfg, qe, ek, ph, H, g, lam, dout, _, n, _, L = x
    NLC = cgd.chunk_slots(0, n, T % C == 0)
    sv = cupy.empty((BH, n, NLC, DK, DV), cupy.float32)
    dS = cupy.zeros((BH, NLC, DK, DV), cupy.float32)
    zs = outs(BH, T, n, L) + [dS]
    oldc = cupy.zeros((1,), cupy.float32)
    return lambda: ops.gd_scan_bwd(cfg, qe, ek, ph, H, g, lam, dout, oldc, sv, dS, *zs[:6], T, DK, DV, L, 0, 0, n, 0,
                                   NLC, T % C == 0, BH, x1=True), zs


def median_ms(launch, zs, reps):
    ts = []
    for i in range(reps + 2):
        for z in zs:
            z.fill(0)
        e0, e1 = cupy.cuda.Event(), cupy.cuda.Event()
        e0.record()
        launch()
        e1.record()
        e1.synchronize()
        if i >= 2:
            ts.append(cupy.cuda.get_elapsed_time(e0, e1))
    return float(np.median(ts)), float(np.min(ts)), float(np.max(ts))


if sys.argv[1:2] == ["compile"]:  # every module of `times` into CuPy's cache (the tests' run, before the timing's)
    cfg = cgd._config("float", DK, C, "bf16", True)
    for op, name in (("gated_delta", "gd_forms"), ("gated_delta_tier_bwd", "gd_tier1_bwd_x1"), ("gated_delta_bwd", "gd_scan_bwd_x1")):
        ops._tk(op, cfg, name)
    Ops32(cupy.cuda.Device().id)
    print("compiled")
    sys.exit(0)
if sys.argv[1:2] == ["small"]:
    for s16, bw in ((True, None), (False, None), (True, 32)):
        f, zs = t1b(2, 1000, s16, inputs(2, 1000, s16), *((Ops32(cupy.cuda.Device().id), 32) if bw else ()))
        f()
        cupy.cuda.Device().synchronize()
        print("gd_tier1_bwd" + ("_x1 S16" if s16 else " float32") + (" bw 32" if bw else ""), "T=1000 finite:",
              all(bool(cupy.isfinite(z).all()) for z in zs), flush=True)
    print("small ok")
    sys.exit(0)
assert sys.argv[1:2] == ["times"], __doc__
Ts = [int(x) for x in sys.argv[2].split(",")] if len(sys.argv) > 2 else [8192, 16384, 32768]
reps = int(sys.argv[3]) if len(sys.argv) > 3 else 15
fn = ops._tk("gated_delta_tier_bwd", cgd._config("float", DK, C, "bf16", True), "gd_tier1_bwd_x1")[0]
o32 = Ops32(cupy.cuda.Device().id)
print(f"gd_tier1_bwd_x1: {fn.num_regs} registers, {fn.local_size_bytes} B local; bw 32: {o32.fn.num_regs} registers, "
      f"{o32.fn.local_size_bytes} B local, smem {o32.smem} B", flush=True)
print("| T | gd_tier1_bwd_x1 ms (min-max) | predicted | bw 32 ms (min-max) | gd_scan_bwd_x1 ms (min-max) | ratio | bw 32 vs 64 |")
print("|---|---:|---:|---:|---:|---:|---:|")
for T in Ts:
    x = inputs(32, T, True)
    f, zs = t1b(32, T, True, x)
    f32_, zs32 = t1b(32, T, True, x, o32, 32)
    a = median_ms(f, zs, reps)
    c = median_ms(f32_, zs32, reps)
    b = median_ms(*scan_bwd(32, T, x), reps)
    # the two builds' outputs (the last repetition's): the same sums in another order, the dlam / dqe atomics' order
    diff = max(float(cupy.abs(u - w).max() / cupy.abs(w).max()) for u, w in zip(zs32, zs))
    print(f"| {T} | {a[0]:.3f} ({a[1]:.3f}-{a[2]:.3f}) | {PRED.get(T, '-')} | {c[0]:.3f} ({c[1]:.3f}-{c[2]:.3f}) "
          f"| {b[0]:.3f} ({b[1]:.3f}-{b[2]:.3f}) | {a[0] / b[0]:.2f} | {c[0] / a[0]:.2f} (outputs {diff:.1e}) |",
          flush=True)
