"""K4 gd_tier1_bwd (session 25, s25c, issue 16) on the GPU: its inputs from the real forward's gd_forms (bf16 inputs on
the GD_S16 build: qe, ek, ph, H as bfloat16; the float32 level weights gd_forms copies), random dout and dTot (what K2
would add; gd_tier1_bwd reads no other forward scratch: Tot / Z / Sb / Qp are K1-K3's), d_k = d_v = 64, C = 64.

    python benchmarks/device/gd_tier1_bwd_s25c.py small [s16]     (T = 1000, B H = 2: gd_tier1_bwd_x1 on GD_S16 (the
                                                                  production build: 32 columns a block), gd_tier1_bwd on
                                                                  float32 forms, the timing build of 64 columns, once
                                                                  each: for compute-sanitizer; s16: the first alone, the
                                                                  arrays' device address ranges printed)
    python benchmarks/device/gd_tier1_bwd_s25c.py compile         (the modules of `times` into CuPy's cache)
    python benchmarks/device/gd_tier1_bwd_s25c.py times [T,..] [reps]
                                                                  (B H = 32, S16 x1: gd_tier1_bwd_x1 alone, the
                                                                  production build and the timing builds GT4_BW_SET=64
                                                                  (session 25's first production: 1 block per SM) and
                                                                  GT4_PR_SET=0 (every operand rounded at its loads), and
                                                                  main's gd_scan_bwd_x1 (S16_TRAIN build) at the same
                                                                  size, CUDA events around each launch, its zeroed
                                                                  outputs set outside them; medians)"""
import sys

import cupy
import numpy as np

import lsattn
from lsattn._chunktree import chunk_layout
from lsattn.backends.cupy import _compile as cc
from lsattn.backends.cupy import gated_delta as cgd
from lsattn.backends.cupy._arrays import narrow

DK = DV = C = 64
# benchmarks/NOTES.md s25c's predictions (ms) for request 2's production build (32 columns, pre-rounded operands)
PRED = {8192: "0.43-0.47", 16384: "0.84-0.90", 32768: "1.65-1.77"}
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


class OpsB(cc.CupyOps):
    """CupyOps whose gd_tier1_bwd_x1 is a timing build of the S16 config (-D``defs``) at ``bw`` value columns a block."""

    def __init__(self, device_id, bw, defs):
        super().__init__(device_id)
        cfg = cgd._config("float", DK, C, "bf16", True)
        code = "\n".join(cc._source(f) for f in ("common.cu",) + cc._SOURCES["gated_delta_tier_bwd"])
        opts = ("-std=c++17",) + tuple(cc.defines("gated_delta_tier_bwd", cfg)) + tuple(f"-D{d}" for d in defs)
        self.fn = cupy.RawModule(code=code, options=opts).get_function("gd_tier1_bwd_x1")
        self.bw, self.smem = bw, cfg.tier1_bwd_smem(bw)
        self.fn.max_dynamic_shared_size_bytes = self.smem

    def _tk(self, op, cfg, name):
        assert name == "gd_tier1_bwd_x1" and cfg.s16
        return self.fn, (256,), self.smem


def builds():
    dev = cupy.cuda.Device().id
    return {"bw64": OpsB(dev, 64, ("GT4_BW_SET=64",)), "pr0": OpsB(dev, 32, ("GT4_PR_SET=0",))}


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
    builds()
    print("compiled")
    sys.exit(0)
if sys.argv[1:2] == ["small"]:
    one = sys.argv[2:3] == ["s16"]
    b64 = None if one else builds()["bw64"]
    for s16, o in ((True, None), (False, None), (True, b64))[:1 if one else 3]:
        x = inputs(2, 1000, s16)
        f, zs = t1b(2, 1000, s16, x, *((o, o.bw) if o else ()))
        if one:
            names = "qe ek ph H g lam dout dTot".split() + ["out_" + k for k in ("dqe", "dek", "dph", "dH", "dg", "dlam")]
            for nm, a in zip(names, list(x[1:9]) + zs):
                print(f"{nm}: [{a.data.ptr:#x}, {a.data.ptr + a.nbytes:#x}) {a.shape} {a.dtype}", flush=True)
        f()
        cupy.cuda.Device().synchronize()
        print("gd_tier1_bwd" + ("_x1 S16" if s16 else " float32") + (" bw 64" if o else ""), "T=1000 finite:",
              all(bool(cupy.isfinite(z).all()) for z in zs), flush=True)
    print("small ok")
    sys.exit(0)
assert sys.argv[1:2] == ["times"], __doc__
Ts = [int(x) for x in sys.argv[2].split(",")] if len(sys.argv) > 2 else [8192, 16384, 32768]
reps = int(sys.argv[3]) if len(sys.argv) > 3 else 15
fn = ops._tk("gated_delta_tier_bwd", cgd._config("float", DK, C, "bf16", True), "gd_tier1_bwd_x1")[0]
alt = builds()
print(f"gd_tier1_bwd_x1: {fn.num_regs} registers, {fn.local_size_bytes} B local; "
      + "; ".join(f"{k}: {o.fn.num_regs} registers, {o.fn.local_size_bytes} B local, smem {o.smem} B" for k, o in alt.items()),
      flush=True)
print("| T | gd_tier1_bwd_x1 ms (min-max) | predicted | bw64 ms | pr0 ms | gd_scan_bwd_x1 ms (min-max) | ratio | outputs |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
for T in Ts:
    x = inputs(32, T, True)
    f, zs = t1b(32, T, True, x)
    a = median_ms(f, zs, reps)
    other = {}
    diff = 0.0
    for k, o in alt.items():
        fo, zo = t1b(32, T, True, x, o, o.bw)
        other[k] = median_ms(fo, zo, reps)
        # the builds' outputs (the last repetition's): the same sums in another order (the atomics' order, columns)
        diff = max([diff] + [float(cupy.abs(u - w).max() / cupy.abs(w).max()) for u, w in zip(zo, zs)])
        del zo
    b = median_ms(*scan_bwd(32, T, x), reps)
    print(f"| {T} | {a[0]:.3f} ({a[1]:.3f}-{a[2]:.3f}) | {PRED.get(T, '-')} | {other['bw64'][0]:.3f} | "
          f"{other['pr0'][0]:.3f} | {b[0]:.3f} ({b[1]:.3f}-{b[2]:.3f}) | {a[0] / b[0]:.2f} | {diff:.1e} |", flush=True)
