"""gd_tier3 and gd_coarse (the two-tier scan, gated_delta_tier.cu) at 2K / 8K / 32K: session 14's merged main against
this branch's builds, in one process (CUDA events, ms per call), B H = 32, d = 64, from chunk 0 without state (the public
forward's call); float32 compute: 3xTF32 (f32) and 1xTF32 (x1: the bfloat16 inputs' build, TI_BF16=1). Builds:
- main: gated_delta_tier.cu at 26378e6 (ab_s15b16_main_tier.cu: gd_tier3 one chunk a block; gd_coarse one chain per
        level and period of it, over the periods; its launches as session 14's CupyOps.gd_tiers: gd_tiers_main)
- new:  the production kernels (gd_tier3: Config.tier3_chunks chunks a block, lam in the A fragments; the coarse slots
        grouped (gd_cgroup, gd_coarse_g over groups of 4 periods from level 3, gd_cfill: "coarse" is their sum) from
        gated_delta.COARSE_GROUP_PERIODS periods, else gd_coarse)
- grp / per: new with the coarse slots always grouped / always over periods (COARSE_GROUP_PERIODS 0 / none)
- r1 / r2: new with gd_tier3 at 1 / 2 chunks a block (GD_T3R_SET)
(Run at 17d413d, the lead's batch of 10:18 UTC, with the grouped form at 32 columns (new) and 64 (c64: GD_CBW_SET=64).)
Each build: max |build - gd_scan| / max |gd_scan| (gd_scan: TIERED off), the whole form, then its kernels one by one
(t1 / coarse / t3); gd_scan itself; first the public bf16 forward at 8K / 32K (torch, production).
    python benchmarks/device/ab_s15b16.py [T,T,..] [--compile-only [f32|x1] [build,build,..]]"""
import os
import sys

import cupy
import numpy as np

import lsattn
from lsattn._chunktree import chunk_layout
from lsattn.backends.cupy import _compile as cc
from lsattn.backends.cupy import gated_delta as cgd

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))  # benchmarks/
from bench_gpu import cupy_ms as ms  # noqa: E402

ops = cc.CupyOps(cupy.cuda.Device().id)
cgd.TIER_MIN_CHUNKS = 0
BH, DK, DV = 32, 64, 64
cfgs = {"f32": cgd._config("float", DK, 64, ""), "x1": cgd._config("float", DK, 64, "bf16")}
TIER = ("gd_tier1", "coarse", "gd_tier3")  # coarse: gd_cgroup, gd_coarse, gd_cfill (main: its gd_coarse)
COARSE = ("gd_coarse", "gd_cgroup", "gd_coarse_g", "gd_cfill")
# name -> (tier source, -D options, gd_tier3's chunks a block (None: Config.tier3_chunks), COARSE_GROUP_PERIODS)
MAIN = os.path.join(HERE, "ab_s15b16_main_tier.cu")
BUILDS = {"main": (MAIN, (), 1, None), "new": (None, (), None, None), "grp": (None, (), None, 0), "per": (None, (), None, 10**9),
          "r1": (None, ("-DGD_T3R_SET=1",), 1, None), "r2": (None, ("-DGD_T3R_SET=2",), 2, None)}
PRODUCTION_GROUP = cgd.COARSE_GROUP_PERIODS
_mods = {}


def variant(cfg, src, extra, name):
    key = (cfg, src, extra)
    if key not in _mods:
        tier = open(src).read() if src else cc._source("gated_delta_tier.cu")
        code = "\n".join([cc._source("common.cu"), cc._source("gated_delta.cu"), tier])
        _mods[key] = cupy.RawModule(code=code, options=("-std=c++17",) + cc.defines("gated_delta", cfg) + extra), {}
    mod, fns = _mods[key]
    if name not in fns:
        fns[name] = mod.get_function(name)
        fns[name].max_dynamic_shared_size_bytes = cc.SMEM_MAX
    return fns[name]


class Build:
    """CupyOps.gd_tiers' kernel lookup for one build; ``only``: launch that kernel alone (the others skipped)."""

    _i, _p = staticmethod(np.int32), staticmethod(cc.CupyOps._p)

    def __init__(self, cfg, name, only=None):
        self.src, self.extra, self.r3, self.grp = BUILDS[name]
        self.r3 = self.r3 or cfg.tier3_chunks()
        self.cfg, self.only = cfg, only

    def _tk(self, op, cfg, name):
        if self.only and not (name == self.only or self.only == "coarse" and name in COARSE):
            return (lambda *a, **k: None), (256,), 0
        smem = (cfg.smem(name) if name in COARSE else
                cfg.gd_tier3_smem(cfg.tier_bw, self.r3) if name == "gd_tier3" else cfg.gd_smem(2, cfg.tier_bw, cfg.tier_bw <= 32))
        return variant(cfg, self.src, self.extra, name), (256,), smem

    def kernels(self):
        return ("gd_tier1", "gd_coarse", "gd_tier3") if self.src else ("gd_tier1",) + COARSE + ("gd_tier3",)

    def run(self, *a):
        if self.src:
            gd_tiers_main(self, self.cfg, *a)
        else:  # the tier plan with this build's coarse form
            cgd.COARSE_GROUP_PERIODS = PRODUCTION_GROUP if self.grp is None else self.grp
            tier = cgd.tier_plan(self.cfg, 0, a[0].n, 0, False, a[9], a[10])  # (n, DK, DV)
            cc.CupyOps.gd_tiers(self, self.cfg, tier, *a[1:], r3=self.r3)
            cgd.COARSE_GROUP_PERIODS = PRODUCTION_GROUP


def gd_tiers_main(ops, cfg, tier, qe, ek, ph, H, g, lam, out, T, DK, DV, L, n, BH, scratch):
    """Session 14's CupyOps.gd_tiers (main's launches: gd_tier1, gd_coarse over the periods, gd_tier3 per chunk)."""
    nP, NCL = tier.nP, tier.NCL
    Z, Tot, Sb, Qp = scratch[:4]
    bw = cfg.tier_bw
    NCB, NCK, i = -(-DV // bw), -(-DK // bw), np.int32
    fn, block, smem = ops._tk("gated_delta", cfg, "gd_tier1")
    fn((nP * BH * (NCB + NCK),), block, (qe, ek, ph, H, g, lam, out, Z, Tot, Qp, i(T), i(DK), i(DV), i(L), i(n), i(nP), i(BH)),
       shared_mem=smem)
    if NCL == 0:
        return
    fn, block, smem = ops._tk("gated_delta", cfg, "gd_coarse")
    fn((tier.coarse_chains * BH * -(-DV // 32),), block, (Z, Tot, Sb, i(DK), i(DV), i(nP), i(NCL), i(BH)), shared_mem=smem)
    fn, block, smem = ops._tk("gated_delta", cfg, "gd_tier3")
    fn((n * BH * NCB,), block, (Qp, lam, out, Sb, i(T), i(DK), i(DV), i(L), i(n), i(nP), i(BH)), shared_mem=smem)


args = [a for a in sys.argv[1:] if not a.startswith("--")]
nums = [a for a in args if a[:1].isdigit()]
Ts = [int(x) for x in nums[0].split(",")] if nums else [8192, 32768, 2048]
try:
    import torch
except ImportError:
    torch = None
if "--compile-only" in sys.argv:  # [config] [build,build,..]: several processes compile in parallel
    pick = [b for a in args if "," in a or a in BUILDS for b in a.split(",")] or list(BUILDS)
    for cfg in [cfgs[a] for a in args if a in cfgs] or cfgs.values():
        for b in pick:
            kb = Build(cfg, b)
            for name in kb.kernels():
                kb._tk("gated_delta", cfg, name)
    if torch is not None and "f32" not in args and "new" in pick:  # the bf16 direct path's kernels (production)
        x = [torch.randn((2, 256, 64), device="cuda", dtype=torch.bfloat16) for _ in range(3)]
        lsattn.loglinear_gated_delta(*x, -torch.rand((2, 256), device="cuda").bfloat16(), torch.rand((2, 256), device="cuda").bfloat16(),
                                     torch.rand((2, 256, lsattn.num_levels(256)), device="cuda").bfloat16())
        torch.cuda.synchronize()
    print("compiled")
    sys.exit(0)

if torch is not None:
    for T in (8192, 32768):
        x = [torch.randn((2, 16, T, 64), device="cuda") for _ in range(3)]
        x[1] = torch.nn.functional.normalize(x[1], dim=-1)
        x += [-torch.nn.functional.softplus(-torch.randn((2, 16, T), device="cuda") - 3), torch.rand((2, 16, T), device="cuda"),
              torch.rand((2, 16, T, lsattn.num_levels(T)), device="cuda") + 0.5]
        xb = [t.to(torch.bfloat16) for t in x]
        f = lambda: lsattn.loglinear_gated_delta(*xb)  # noqa: E731
        for _ in range(3):
            f()
        torch.cuda.synchronize()
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        e0.record()
        for _ in range(10):
            f()
        e1.record()
        e1.synchronize()
        print(f"public bf16 forward T={T} {e0.elapsed_time(e1) / 10:.3f} ms", flush=True)
        del x, xb
for T in Ts:
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
    intra = out.copy()  # the timed calls add their reads into out: the checks start from this
    NLC = cgd.chunk_slots(F, n, T % C == 0)
    lev = cupy.zeros((BH, NLC, DK, DV), cupy.float32)
    cgd.COARSE_GROUP_PERIODS = 0  # the scratch of the grouped form (the largest)
    tier = cgd.tier_plan(cfgs["f32"], F, n, 0, False, DK, DV)
    cgd.COARSE_GROUP_PERIODS = PRODUCTION_GROUP
    scratch = [cupy.empty((BH,) + s, cupy.float32) for s in tier.shapes(DK, DV)]
    for key, cfg in cfgs.items():
        def scan(o):
            cgd.TIERED = False
            ops.gd_scan(cfg, qe, ek, ph, H, g, lam, o, lev, lev, T, DK, DV, L, 0, F, n, 0, NLC, T % C == 0, BH, False)
            cgd.TIERED = True

        o_scan = intra.copy()
        scan(o_scan)
        print(f"T={T:6d} {key} gd_scan {ms(lambda: scan(out), 5):.3f}", flush=True)
        for name in BUILDS:
            def tiers(o, only=None):
                Build(cfg, name, only).run(tier, qe, ek, ph, H, g, lam, o, T, DK, DV, L, n, BH, scratch)

            try:
                o = intra.copy()
                tiers(o)
                err = float(cupy.abs(o - o_scan).max() / cupy.abs(o_scan).max())
                parts = "/".join(f"{ms(lambda: tiers(out, nm), 5):.3f}" for nm in TIER)
                if name == "new":  # the coarse kernels one by one
                    parts += " [" + "/".join(f"{ms(lambda: tiers(out, nm), 5):.3f}" for nm in COARSE) + "]"
                print(f"T={T:6d} {key} {name} {ms(lambda: tiers(out), 5):.3f} (t1/coarse/t3 {parts}; vs gd_scan {err:.0e})",
                      flush=True)
            except Exception as e:  # noqa: BLE001 (a build that fails leaves the others' rows)
                print(f"T={T:6d} {key} {name} failed: {e!r}", flush=True)
