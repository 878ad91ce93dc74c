"""gd_scan (main's, still the fallback) against its two-tier form (gd_tier1, gd_coarse, gd_tier3; session 13, s13b16),
alone (CUDA events, ms per call), B H = 32 sequences, d = 64, from chunk 0 without state (the public forward's
call), float32 compute: 3xTF32 (float32 inputs) and 1xTF32 (bfloat16 inputs' build, TI_BF16=1 -> GD_X1); the
two-tier form's kernels one by one (t1 / coarse / t3, each alone: t1 + t3 is its work, coarse its serial phase);
timing builds: gd_tier1 at 2 blocks per SM (minb2), periods of 8 chunks (tm3); then the public bf16 forward on torch
tensors with TIERED on and off. First columns: max |tier - main| / max |main|.
    python benchmarks/device/ab_tier_s13b16.py [T,T,..] [--compile-only]
Session 13's launches (gd_tier1 without Qp, gd_tier3 as walks): runs at 6f997b6..c675226 only; session 14's
ab_tier_s14a16.py times those kernels as its build "main"."""
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
cgd.TIER_MIN_CHUNKS = 0  # the two-tier form at every size timed (production: from 128 chunks)
BH, DK, DV = 32, 64, 64
cfgs = {"f32": cgd._config("float", DK, 64, ""), "x1": cgd._config("float", DK, 64, "bf16")}
for cfg in cfgs.values():
    for name in ("gd_scan", "gd_tier1", "gd_coarse", "gd_tier3"):
        ops._tk("gated_delta", cfg, name)
_builds = {}


def variant(cfg, name, extra):
    """``name`` of gated_delta.cu built for ``cfg`` with the extra -D options (a timing build), cached."""
    if (cfg, extra) not in _builds:  # one module a build
        code = "\n".join(cc._source(f) for f in ("common.cu", "gated_delta.cu", "gated_delta_tier.cu"))
        _builds[cfg, extra] = cupy.RawModule(code=code, options=("-std=c++17",) + cc.defines("gated_delta", cfg) + extra), {}
    mod, fns = _builds[cfg, extra]
    if name not in fns:
        fns[name] = mod.get_function(name)
        fns[name].max_dynamic_shared_size_bytes = cc.SMEM_MAX
    return fns[name]


TM3_OPTS = ("-DGD_TM_SET=3", "-DGD_MINB_SET=2")  # 2 blocks per SM by shared memory: 128 registers, no spills


class TM3:
    """CupyOps.gd_tiers' kernel lookup for the timing build GD_TM_SET=3."""

    _i = staticmethod(np.int32)

    def __init__(self, cfg):
        self.cfg = cfg

    def _tk(self, op, cfg, name):
        smem = cfg.gd_coarse_smem() if name == "gd_coarse" else cfg.gd_smem(3)
        return variant(cfg, name, TM3_OPTS), (256,), smem


args = [a for a in sys.argv[1:] if not a.startswith("--")]
Ts = [int(x) for x in args[0].split(",")] if args else [2048, 8192, 32768]
try:
    import torch
except ImportError:
    torch = None
if "--compile-only" in sys.argv:
    for cfg in cfgs.values():
        variant(cfg, "gd_tier1", ("-DGD_T1MINB_SET=2",))
        for name in ("gd_tier1", "gd_coarse", "gd_tier3"):
            variant(cfg, name, TM3_OPTS)
    if torch is not None:  # the bf16 direct path's kernels (gd_forms of TI_BF16)
        x = [torch.randn((2, 256, 64), device="cuda", dtype=torch.bfloat16) for _ in range(3)]
        lsattn.loglinear_gated_delta(*x, -torch.rand((2, 256), device="cuda").bfloat16(), torch.rand((2, 256), device="cuda").bfloat16(),
                                     torch.rand((2, 256, lsattn.num_levels(256)), device="cuda").bfloat16())
        torch.cuda.synchronize()
    print("compiled")
    sys.exit(0)


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
    intra = out.copy()  # the timed calls add their reads into out: the builds' checks start from this
    NLC = cgd.chunk_slots(F, n, T % C == 0)
    lev = cupy.zeros((BH, NLC, DK, DV), cupy.float32)
    tier = cgd.tier_plan(cfgs["f32"], F, n, 0, False, DK, DV)
    scratch = [cupy.empty((BH,) + s, cupy.float32) for s in tier.shapes(DK, DV)]
    row = [f"T={T:6d} n={n} nP={tier.nP} NCL={tier.NCL}"]
    for key, cfg in cfgs.items():
        def scan(o, tiered):
            cgd.TIERED = tiered
            ops.gd_scan(cfg, qe, ek, ph, H, g, lam, o, lev, lev, T, DK, DV, L, 0, F, n, 0, NLC, T % C == 0, BH, False)
            cgd.TIERED = True

        o_main, o_tier = intra.copy(), intra.copy()
        scan(o_main, False)
        scan(o_tier, True)
        row.append(f"{key} tier-vs-main {float(cupy.abs(o_tier - o_main).max() / cupy.abs(o_main).max()):.0e}")
        row.append(f"{key} main {ms(lambda: scan(out, False), 5):.3f} ms")
        row.append(f"{key} tier {ms(lambda: ops.gd_tiers(cfg, tier, qe, ek, ph, H, g, lam, out, T, DK, DV, L, n, BH, scratch), 5):.3f} ms")
        # the kernels one by one (gd_tiers' launches)
        NCB, NCK, i = -(-DV // cc.GD_BW), -(-DK // cc.GD_BW), np.int32
        Z, Tot, Sb = scratch
        head = (qe, ek, ph, H, g, lam, out)
        f1, blk, sm1 = ops._tk("gated_delta", cfg, "gd_tier1")
        fc, _, smc = ops._tk("gated_delta", cfg, "gd_coarse")
        f3, _, sm3 = ops._tk("gated_delta", cfg, "gd_tier3")
        t1 = lambda: f1((tier.nP * BH * (NCB + NCK),), blk, head + (Z, Tot, i(T), i(DK), i(DV), i(L), i(n), i(tier.nP), i(BH)), shared_mem=sm1)  # noqa: E731
        tc = lambda: fc((tier.coarse_chains * BH * NCB,), blk, (Z, Tot, Sb, i(DK), i(DV), i(tier.nP), i(tier.NCL), i(BH)), shared_mem=smc)  # noqa: E731
        t3 = lambda: f3((tier.nP * tier.NPR * BH * NCB,), blk, head + (Sb, i(T), i(DK), i(DV), i(L), i(n), i(tier.nP), i(tier.NPR), i(BH)), shared_mem=sm3)  # noqa: E731
        row.append(f"{key} t1/coarse/t3 {ms(t1, 5):.3f}/{ms(tc, 5):.3f}/{ms(t3, 5):.3f} ms")
        # a timing build: gd_tier1 at 2 blocks per SM (no spills; production: 3, ~150 bytes spilled)
        fb = variant(cfg, "gd_tier1", ("-DGD_T1MINB_SET=2",))
        t1b = lambda: fb((tier.nP * BH * (NCB + NCK),), blk, head + (Z, Tot, i(T), i(DK), i(DV), i(L), i(n), i(tier.nP), i(BH)), shared_mem=sm1)  # noqa: E731
        row.append(f"{key} t1 minb2 {ms(t1b, 5):.3f} ms")
        # a timing build: periods of 8 chunks (GD_TM_SET=3: 3 low levels, gd_tier3's slots 3 a block; 2 blocks per SM)
        tier3 = cgd.tier_plan(cfg, F, n, 0, False, DK, DV, TM=3)
        scratch3 = [cupy.empty((BH,) + s, cupy.float32) for s in tier3.shapes(DK, DV)]
        v3 = TM3(cfg)
        o_3 = intra.copy()
        cc.CupyOps.gd_tiers(v3, cfg, tier3, qe, ek, ph, H, g, lam, o_3, T, DK, DV, L, n, BH, scratch3)
        row.append(f"{key} tm3-vs-main {float(cupy.abs(o_3 - o_main).max() / cupy.abs(o_main).max()):.0e}")
        row.append(f"{key} tm3 {ms(lambda: cc.CupyOps.gd_tiers(v3, cfg, tier3, qe, ek, ph, H, g, lam, out, T, DK, DV, L, n, BH, scratch3), 5):.3f} ms")
    print(" | ".join(row), flush=True)
if torch is not None:
    for T in Ts:
        if T > 8192:
            continue
        x = [torch.randn((2, 16, T, 64), device="cuda") for _ in range(3)]
        x[1] = torch.nn.functional.normalize(x[1], dim=-1)
        x += [-torch.nn.functional.softplus(-torch.randn((2, 16, T), device="cuda") - 3), torch.rand((2, 16, T), device="cuda"),
              torch.rand((2, 16, T, lsattn.num_levels(T)), device="cuda") + 0.5]
        xb = [t.bfloat16() for t in x]
        row = [f"public bf16 forward T={T}"]
        for tiered in (False, True):
            cgd.TIERED = tiered
            cgd._TORCH_PLANS.clear()
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
            row.append(f"{'tier' if tiered else 'main'} {e0.elapsed_time(e1) / 10:.3f} ms")
        cgd.TIERED = True
        print(" | ".join(row), flush=True)
