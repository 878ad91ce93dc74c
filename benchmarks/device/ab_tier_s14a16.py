"""gd_scan's two-tier form (gd_tier1, gd_coarse, gd_tier3), session 13's kernels against this branch's, alone (CUDA
events, ms per call), B H = 32 sequences, d = 64, from chunk 0 without state (the public forward's call), float32
compute: 3xTF32 (f32: float32 inputs) and 1xTF32 (x1: the bfloat16 inputs' build, TI_BF16=1). Builds:
- main:     session 13's kernels (GD_TBW_SET=32: 32 columns a block in gd_tier1 / gd_tier3; GD_CPRE_SET=0: gd_coarse
            loads Tot after its product; GD_T3WALK_SET=1: gd_tier3 as walks over the period's chunks; gd_tier1 then
            stores no Qp but walks the last period's transfer too: ~1/nP more transfer steps than session 13's)
- new:      the production kernels (64 columns in float32; gd_tier1's transfers store Qp, gd_tier3 reads Qp S per
            chunk and slot with no walk; gd_coarse's Tot loaded before its product)
- qp32:     new at 32 columns a block (GD_TBW_SET=32)
- tpf:      new with the next chunk's tiles prefetched into L2 during a chunk of gd_tier1 (GD_TPF_SET=1)
- cring:    new with gd_coarse's Z copied two steps ahead (three buffers) and Tot loaded a step ahead (GD_CRING_SET=1)
Each build: max |build - gd_scan| / max |gd_scan| (gd_scan: TIERED off), the whole form, then its kernels one by one
(t1 / coarse / t3), printed as it goes; gd_scan itself; first the public bf16 / fp32 forward at 8K (torch, production).
    python benchmarks/device/ab_tier_s14a16.py [T,T,..] [--compile-only [f32|x1] [build,build,..]]"""
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
TIER = ("gd_tier1", "gd_coarse", "gd_tier3")
# name -> (columns of gd_tier1 / gd_tier3 (None: Config.tier_bw), -D options (None: the production kernels))
W3 = "-DGD_T3WALK_SET=1"
BUILDS = {"new": (None, None), "main": (32, ("-DGD_TBW_SET=32", "-DGD_CPRE_SET=0", W3)), "qp32": (32, ("-DGD_TBW_SET=32",)),
          "tpf": (None, ("-DGD_TPF_SET=1",)), "cring": (None, ("-DGD_CRING_SET=1",))}
_mods = {}


def variant(cfg, name, extra):
    """``name`` of the scan's sources built for ``cfg`` with the extra -D options (a timing build), cached."""
    if (cfg, extra) not in _mods:  # one module a build
        code = "\n".join(cc._source(f) for f in ("common.cu", "gated_delta.cu", "gated_delta_tier.cu"))
        _mods[cfg, extra] = cupy.RawModule(code=code, options=("-std=c++17",) + cc.defines("gated_delta", cfg) + extra), {}
    mod, fns = _mods[cfg, extra]
    if name not in fns:
        fns[name] = mod.get_function(name)
        fns[name].max_dynamic_shared_size_bytes = cc.SMEM_MAX
    return fns[name]


class Build:
    """CupyOps.gd_tiers' kernel lookup for one build; ``only``: launch that kernel alone (the others skipped)."""

    _i, _p = staticmethod(np.int32), staticmethod(cc.CupyOps._p)

    def __init__(self, cfg, bw, extra, only=None):
        self.cfg, self.bw, self.extra, self.only = cfg, bw or cfg.tier_bw, extra, only
        self.walk3 = W3 in (extra or ())

    def _tk(self, op, cfg, name):
        if self.only and name != self.only:
            return (lambda *a, **k: None), (256,), 0
        if self.extra is None:
            return ops._tk(op, cfg, name)
        smem = (cfg.gd_coarse_smem(zb=3 if "-DGD_CRING_SET=1" in self.extra else 2) if name == "gd_coarse" else
                cfg.gd_tier3_smem(self.bw) if name == "gd_tier3" and not self.walk3 else
                cfg.gd_smem(1, self.bw, self.bw <= 32) if name == "gd_tier1x" else  # (session 15: gd_tier1x, H's tile)
                cfg.gd_smem(2, self.bw, self.bw <= 32, hc=True))
        return variant(cfg, name, self.extra), (256,), smem


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
        for bw, extra in (BUILDS[b] for b in pick):  # (new: the production module, gd_scan's too)
            for name in TIER:
                Build(cfg, bw, extra)._tk("gated_delta", cfg, name)
    if torch is not None and "f32" not in args and "new" in pick:  # the bf16 direct path's kernels (gd_forms of TI_BF16)
        x = [torch.randn((2, 256, 64), device="cuda", dtype=torch.bfloat16) for _ in range(3)]
        lsattn.loglinear_gated_delta(*x, -torch.rand((2, 256), device="cuda").bfloat16(), torch.rand((2, 256), device="cuda").bfloat16(),
                                     torch.rand((2, 256, lsattn.num_levels(256)), device="cuda").bfloat16())
        torch.cuda.synchronize()
    print("compiled")
    sys.exit(0)

if torch is not None:
    for T in Ts:
        if T != 8192:
            continue
        x = [torch.randn((2, 16, T, 64), device="cuda") for _ in range(3)]
        x[1] = torch.nn.functional.normalize(x[1], dim=-1)
        x += [-torch.nn.functional.softplus(-torch.randn((2, 16, T), device="cuda") - 3), torch.rand((2, 16, T), device="cuda"),
              torch.rand((2, 16, T, lsattn.num_levels(T)), device="cuda") + 0.5]
        for dt in (torch.bfloat16, torch.float32):
            xb = [t.to(dt) for t in x]
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
            print(f"public {str(dt)[6:]} forward T={T} {e0.elapsed_time(e1) / 10:.3f} ms", flush=True)
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
    tier = cgd.tier_plan(cfgs["f32"], F, n, 0, False, DK, DV)
    scratch = [cupy.empty((BH,) + s, cupy.float32) for s in tier.shapes(DK, DV)]
    for key, cfg in cfgs.items():
        def scan(o):
            cgd.TIERED = False
            ops.gd_scan(cfg, qe, ek, ph, H, g, lam, o, lev, lev, T, DK, DV, L, 0, F, n, 0, NLC, T % C == 0, BH, False)
            cgd.TIERED = True

        o_scan = intra.copy()
        scan(o_scan)
        print(f"T={T:6d} {key} gd_scan {ms(lambda: scan(out), 5):.3f}", flush=True)
        for name, (bw, extra) in BUILDS.items():
            def tiers(o, only=None):
                kb = Build(cfg, bw, extra, only)
                cc.CupyOps.gd_tiers(kb, cfg, tier, qe, ek, ph, H, g, lam, o, T, DK, DV, L, n, BH, scratch, bw=bw, walk3=kb.walk3)

            try:
                o = intra.copy()
                tiers(o)
                err = float(cupy.abs(o - o_scan).max() / cupy.abs(o_scan).max())
                parts = "/".join(f"{ms(lambda: tiers(out, nm), 5):.3f}" for nm in TIER)
                print(f"T={T:6d} {key} {name} {ms(lambda: tiers(out), 5):.3f} (t1/coarse/t3 {parts}; vs gd_scan {err:.0e})",
                      flush=True)
            except Exception as e:  # noqa: BLE001 (a build that fails leaves the others' rows)
                print(f"T={T:6d} {key} {name} failed: {e!r}", flush=True)
