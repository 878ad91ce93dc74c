"""gd_tier1 (the two-tier scan's low walks and transfers, gated_delta_tier.cu), session 14's kernel against this branch's
builds in one process (CUDA events, ms per call), B H = 32 sequences, d = 64, C = 64, from chunk 0 without state,
float32 compute: 1xTF32 (x1: the bfloat16 inputs' build, TI_BF16=1) and 3xTF32 (f32). Builds (-D switches of
gated_delta_tier.cu; gd_coarse and gd_tier3 are the same in all):
- main:   session 14's gd_tier1 (GD_T1SPLIT_SET=0 GD_T1X0_SET=0 GD_T1HPRE_SET=0 GD_T1MW_SET=0 GD_T1V2_SET=0: transfers
          and low walks in one kernel)
- x0:     main with a transfer's first chunk without products (W = Ek, Qp = Qe)
- hp:     x0 with the low walk's H copied into shared memory with the tiles (not loaded in (b))
- split:  x0 with the transfers in their own kernel (gd_tier1x, 3 blocks per SM)
- nomw:   split + hp
- nov2:   nomw + mw (the merging slots' W summed, one (b) product fewer)
- new:    the production kernels: nov2 + v2 ((a)'s outputs by column pairs: float2 Qp stores, float2 atomics)
(Request 1, commit 63a925a, also timed builds since removed: xw (gd_tier1x's W apart, 2 blocks per SM), ku2 / ku4 (the
products' k-steps unrolled); there every build's gd_mm carried #pragma unroll 1, which changed gd_coarse / gd_scan, not
gd_tier1 / gd_tier1x: their SASS is that of this commit's builds.)
Each build: max |build - gd_scan| / max |gd_scan| (gd_scan: TIERED off), the whole scan, then gd_tier1 alone (with
gd_tier1x when split: "t1 = low + xfer") and coarse / t3; gd_scan itself.
    python benchmarks/device/ab_tier1_s15a16.py [T,T,..] [f32,x1] [build,build,..]
    python benchmarks/device/ab_tier1_s15a16.py --compile-only [f32|x1] [build,..]   (several processes in parallel)
    python benchmarks/device/ab_tier1_s15a16.py --ncu [build,..]   (each build's two-tier scan once at 8K x1, for ncu)"""
import os
import sys

import cupy
import numpy as np

import lsattn
from lsattn._chunktree import chunk_layout
from lsattn.backends.cupy import _compile as cc
from lsattn.backends.cupy import gated_delta as cgd

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))  # benchmarks/
from bench_gpu import cupy_ms as ms  # noqa: E402

ops = cc.CupyOps(cupy.cuda.Device().id)
cgd.TIER_MIN_CHUNKS = 0
BH, DK, DV = 32, 64, 64
cfgs = {"f32": cgd._config("float", DK, 64, ""), "x1": cgd._config("float", DK, 64, "bf16")}
MW0, V20 = "-DGD_T1MW_SET=0", "-DGD_T1V2_SET=0"
OFF = ("-DGD_T1SPLIT_SET=0", "-DGD_T1X0_SET=0", "-DGD_T1HPRE_SET=0", MW0, V20)
# name -> -D options (None: the production kernels)
BUILDS = {"main": OFF, "x0": ("-DGD_T1SPLIT_SET=0", "-DGD_T1HPRE_SET=0", MW0, V20), "hp": ("-DGD_T1SPLIT_SET=0", MW0, V20),
          "split": ("-DGD_T1HPRE_SET=0", MW0, V20), "nomw": (MW0, V20), "nov2": (V20,), "new": None}
_mods = {}


def variant(cfg, name, extra):
    if (cfg, extra) not in _mods:
        code = "\n".join(cc._source(f) for f in ("common.cu", "gated_delta.cu", "gated_delta_tier.cu", "gated_delta_coarse.cu"))
        _mods[cfg, extra] = cupy.RawModule(code=code, options=("-std=c++17",) + cc.defines("gated_delta", cfg) + extra), {}
    mod, fns = _mods[cfg, extra]
    if name not in fns:
        fns[name] = mod.get_function(name)
        fns[name].max_dynamic_shared_size_bytes = cc.SMEM_MAX
    return fns[name]


class Build:
    """CupyOps.gd_tiers' kernel lookup for one build; ``only``: launch those kernels alone (the others skipped)."""

    _i, _p = staticmethod(np.int32), staticmethod(cc.CupyOps._p)

    def __init__(self, cfg, extra, only=()):
        self.cfg, self.extra, self.only = cfg, extra, only
        ex = extra or ()
        self.split, self.hp = "-DGD_T1SPLIT_SET=0" not in ex, "-DGD_T1HPRE_SET=0" not in ex

    def _tk(self, op, cfg, name):
        if self.only and name not in self.only:
            return (lambda *a, **k: None), (256,), 0
        if self.extra is None:
            return ops._tk(op, cfg, name)
        bw = cfg.tier_bw
        smem = (cfg.gd_coarse_smem() if name == "gd_coarse" else cfg.gd_tier3_smem(bw) if name == "gd_tier3" else
                cfg.gd_smem(1, bw, bw <= 32) if name == "gd_tier1x" else cfg.gd_smem(2, bw, bw <= 32, hc=self.hp))
        return variant(cfg, name, self.extra), (256,), smem

    def run(self, tier, a, o, T, n):
        cc.CupyOps.gd_tiers(self, self.cfg, tier, *a[:6], o, T, DK, DV, a[6], n, BH, a[7], split=self.split)


args = [a for a in sys.argv[1:] if not a.startswith("--")]
nums = [a for a in args if a[:1].isdigit()]
Ts = [int(x) for x in nums[0].split(",")] if nums else [8192, 32768, 2048]
keys = [k for a in args for k in a.split(",") if k in cfgs] or list(cfgs)
pick = [b for a in args for b in a.split(",") if b in BUILDS] or list(BUILDS)
if "--compile-only" in sys.argv:
    for key in keys:
        for b in pick:
            for name in ("gd_tier1", "gd_tier1x", "gd_coarse", "gd_tier3") + (("gd_scan",) if b == "new" else ()):
                Build(cfgs[key], BUILDS[b])._tk("gated_delta", cfgs[key], name)
    print("compiled", keys, pick)
    sys.exit(0)


def inputs(T):
    C, L = 64, lsattn.num_levels(T)
    lay = chunk_layout(0, T, C)
    F, n = lay.first_chunk, lay.n_chunks
    rng = cupy.random.default_rng(0)
    q, k, v = (rng.standard_normal((BH, T, d), dtype=cupy.float32) for d in (DK, DK, DV))
    k /= cupy.linalg.norm(k, axis=-1, keepdims=True)
    a = -cupy.log1p(cupy.exp(-(rng.standard_normal((BH, T), dtype=cupy.float32) + 3)))
    b = rng.random((BH, T), dtype=cupy.float32)
    lam = rng.random((BH, T, L), dtype=cupy.float32) + 0.5
    qe, ek, ph, H, g, out = cgd.forms(ops, cfgs["f32"], q, k, v, a, b, lam, 0)
    tier = cgd.tier_plan(cfgs["f32"], F, n, 0, False, DK, DV)
    scratch = [cupy.empty((BH,) + s, cupy.float32) for s in tier.shapes(DK, DV)]
    return (qe, ek, ph, H, g, lam, L, scratch), out, tier, F, n


if "--ncu" in sys.argv:  # each build's scan once at 8K x1 (compiled first: the profiled launches are the only ones)
    a, out, tier, F, n = inputs(8192)
    for b in pick:
        for name in ("gd_tier1", "gd_tier1x", "gd_coarse", "gd_tier3"):
            Build(cfgs["x1"], BUILDS[b])._tk("gated_delta", cfgs["x1"], name)
    cupy.cuda.Device().synchronize()
    for b in pick:
        Build(cfgs["x1"], BUILDS[b], ("gd_tier1", "gd_tier1x")).run(tier, a, out, 8192, n)
        cupy.cuda.Device().synchronize()
        print("ncu launch", b, flush=True)
    sys.exit(0)

for T in Ts:
    a, out, tier, F, n = inputs(T)
    intra = out.copy()
    NLC = cgd.chunk_slots(F, n, T % 64 == 0)
    lev = cupy.zeros((BH, NLC, DK, DV), cupy.float32)
    for key in keys:
        cfg = cfgs[key]

        def scan(o):
            cgd.TIERED = False
            ops.gd_scan(cfg, *a[:6], o, lev, lev, T, DK, DV, a[6], 0, F, n, 0, NLC, T % 64 == 0, BH, False)
            cgd.TIERED = True

        o_scan = intra.copy()
        scan(o_scan)
        print(f"T={T:6d} {key} gd_scan {ms(lambda: scan(out), 5):.3f}", flush=True)
        for b in pick:
            try:
                bd = Build(cfg, BUILDS[b])
                o = intra.copy()
                bd.run(tier, a, o, T, n)
                err = float(cupy.abs(o - o_scan).max() / cupy.abs(o_scan).max())
                t = lambda only: ms(lambda: Build(cfg, BUILDS[b], only).run(tier, a, out, T, n), 5)  # noqa: E731
                t1 = f"{t(('gd_tier1', 'gd_tier1x')):.3f}"
                if bd.split:
                    t1 += f" = {t(('gd_tier1',)):.3f} + {t(('gd_tier1x',)):.3f}"
                print(f"T={T:6d} {key} {b:5s} {ms(lambda: bd.run(tier, a, out, T, n), 5):.3f} (t1 {t1}; coarse/t3 "
                      f"{t(('gd_coarse',)):.3f}/{t(('gd_tier3',)):.3f}; vs gd_scan {err:.0e})", flush=True)
            except Exception as e:  # noqa: BLE001
                print(f"T={T:6d} {key} {b} failed: {e!r}", flush=True)
