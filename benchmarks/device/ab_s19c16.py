"""Session 19, s19c16 (issue 16): the two-tier Gated DeltaNet scan's coarse kernels and gd_tier3 at 8K / 16K / 32K, this
branch's switches against their off builds in one process, interleaved (CUDA events, medians of ms per call), B H = 32,
d = 64, C = 64, from chunk 0 without state (the public forward's call); float32 compute: 3xTF32 (f32) and 1xTF32 (x1:
the bfloat16 inputs' build, TI_BF16=1). Builds (name: -D options, gated_delta.T3FILL, the grouped coarse form forced):
- off:   session 19's main's kernels but for the coarse chains' order (GD_T3FILL_SET=0; T3FILL off: gd_cfill runs;
         GD_CTP_SET, session 15's order, went in session 20)
- new:   production (T3FILL: gd_cfill folded into gd_tier3)
- fill0: new's kernels with T3FILL off (gd_cfill runs; gd_tier3's fold code compiled, not taken)
(s19c16's SUPERGROUPS and its build sup0 were removed in session 20, s20s: slower on the H200.)
- grp:   new with the grouped coarse form at every size (COARSE_GROUP_PERIODS = 0: 8K / 16K too)
The x1 rows run on forms rounded as gd_forms' GD_TAR stores them. Each build: max |build - off| / max |off| and against
gd_scan; the whole form, then its parts (t1 = gd_tier1 + gd_tier1x / coarse / t3), then its kernels one by one. Then
the public forward (torch B=2 H=16 d=64, bf16 and fp32) with off's tier kernels and T3FILL off against production.
    python ab_s19c16.py warm [x1|f32] [build ..] [public]  # compile (several processes in parallel; none: all)
    python ab_s19c16.py ab [T,T] [reps] [build ..]  # kernel-alone A/B (default 8192,16384,32768, 5 rounds, every build)
    python ab_s19c16.py public [T,T]      # public calls off vs new (default 8192,32768)"""
import os
import statistics
import sys

import cupy
import numpy as np

import lsattn
from lsattn._chunktree import chunk_layout
from lsattn.backends.cupy import _compile as cc
from lsattn.backends.cupy import gated_delta as cgd

HERE = os.path.dirname(os.path.abspath(__file__))
ops = cc.CupyOps(cupy.cuda.Device().id)
BH, DK, DV = 32, 64, 64
cfgs = {"x1": cgd._config("float", DK, 64, "bf16"), "f32": cgd._config("float", DK, 64, "")}
# name -> (-D options, T3FILL, grouped at every size)
BUILDS = {"off": (("-DGD_T3FILL_SET=0",), False, False), "new": ((), True, False),
          "fill0": ((), False, False), "grp": ((), True, True)}
PARTS = {"t1": ("gd_tier1", "gd_tier1x"), "coarse": ("gd_coarse", "gd_cgroup", "gd_coarse_g", "gd_cfill"),
         "t3": ("gd_tier3",)}
_mods = {}


def variant(cfg, build, name):
    extra = BUILDS[build][0]
    key = (cfg, extra)
    if key not in _mods:
        code = "\n".join(cc._source(f) for f in ("common.cu", "gated_delta.cu", "gated_delta_tier.cu", "gated_delta_coarse.cu"))
        _mods[key] = cupy.RawModule(code=code, options=("-std=c++17",) + cc.defines("gated_delta", cfg) + extra), {}
    mod, fns = _mods[key]
    if name not in fns:
        fn = mod.get_function(name)
        fn.max_dynamic_shared_size_bytes = cc.SMEM_MAX
        fns[name] = fn
    return fns[name]


class Build:
    """CupyOps.gd_tiers' kernel lookup for one build; ``only``: launch those kernels alone (the others skipped)."""

    _i, _l, _p = staticmethod(np.int32), staticmethod(np.int64), staticmethod(cc.CupyOps._p)

    def __init__(self, cfg, name, only=None):
        self.cfg, self.name, self.only = cfg, name, only
        cgd.T3FILL = BUILDS[name][1]  # (read by CupyOps.gd_tiers when it launches)

    def _tk(self, op, cfg, name):
        if self.only and name not in self.only:
            return (lambda *a, **k: None), (256,), 0
        return variant(cfg, self.name, name), (256,), cfg.smem(name)


def warm(which):
    """Compile the builds (``which``: config and build names, none: all) and the public path's kernels ('public')."""
    for key, cfg in cfgs.items() if which != ["public"] else ():
        if any(w in cfgs for w in which) and key not in which:
            continue
        for b in BUILDS:
            if any(w in BUILDS for w in which) and b not in which:
                continue
            for names in PARTS.values():
                for name in names:
                    variant(cfg, b, name)
    if "public" not in which and which:
        print("compiled", flush=True)
        return
    import torch

    for dt in (torch.bfloat16, torch.float32):  # the public path's production kernels
        x = [torch.randn((2, 256, 64), device="cuda", dtype=dt) for _ in range(3)]
        lsattn.loglinear_gated_delta(*x, -torch.rand((2, 256), device="cuda", dtype=dt), torch.rand((2, 256), device="cuda", dtype=dt),
                                     torch.rand((2, 256, lsattn.num_levels(256)), device="cuda", dtype=dt))
    torch.cuda.synchronize()
    print("compiled", flush=True)


def inputs(T):
    C, L = 64, lsattn.num_levels(T)
    lay = chunk_layout(0, T, C)
    rng = cupy.random.default_rng(0)
    q, k, v = (rng.standard_normal((BH, T, d), dtype=cupy.float32) for d in (DK, DK, DV))
    k /= cupy.linalg.norm(k, axis=-1, keepdims=True)
    a = -cupy.log1p(cupy.exp(-(rng.standard_normal((BH, T), dtype=cupy.float32) + 3)))
    b = rng.random((BH, T), dtype=cupy.float32)
    lam = rng.random((BH, T, L), dtype=cupy.float32) + 0.5
    qe, ek, ph, H, g, out = cgd.forms(ops, cfgs["f32"], q, k, v, a, b, lam, 0)
    return lay.n_chunks, L, lam, (qe, ek, ph, H, g), out


def tar(forms):
    """qe, ek, phi as gd_forms' GD_TAR stores them for bf16 inputs (cvt.rna's + half an ulp, the low 13 bits cleared)."""
    qe, ek, ph, H, g = forms

    def r(x):
        u = x.view(cupy.uint32)
        return cupy.where((u & 0x7F800000) == 0x7F800000, u, (u + 0x1000) & 0xFFFFE000).astype(cupy.uint32).view(cupy.float32)

    return r(qe), r(ek), r(ph), H, g


def event_ms(fn, k=2):
    e0, e1 = cupy.cuda.Event(), cupy.cuda.Event()
    e0.record()
    for _ in range(k):
        fn()
    e1.record()
    e1.synchronize()
    return cupy.cuda.get_elapsed_time(e0, e1) / k


def tiers(n):
    """The production plan and the grouped form's (COARSE_GROUP_PERIODS = 0) for n chunks."""
    t = cgd.tier_plan(cfgs["f32"], 0, n, 0, False, DK, DV)
    saved, cgd.COARSE_GROUP_PERIODS = cgd.COARSE_GROUP_PERIODS, 0
    g = cgd.tier_plan(cfgs["f32"], 0, n, 0, False, DK, DV)
    cgd.COARSE_GROUP_PERIODS = saved
    return t, g


def ab(Ts, reps, only=None):
    for T in Ts:
        n, L, lam, forms, intra = inputs(T)
        tier, gtier = tiers(n)
        scratch = [cupy.empty((BH,) + s, cupy.float32) for s in gtier.shapes(DK, DV)]  # (the grouped: the larger)
        out = intra.copy()
        for key, cfg in cfgs.items():
            fk = forms if key == "f32" else tar(forms)

            def run(name, o, only=None, fk=fk, cfg=cfg):
                t = gtier if BUILDS[name][2] else tier
                cc.CupyOps.gd_tiers(Build(cfg, name, only), cfg, t, *fk, lam, o, T, DK, DV, L, n, BH, scratch=scratch)

            ref = intra.copy()
            cgd.TIERED = False
            NLC = cgd.chunk_slots(0, n, T % 64 == 0)
            lev = cupy.zeros((BH, NLC, DK, DV), cupy.float32)
            ops.gd_scan(cfg, *fk, lam, ref, lev, lev, T, DK, DV, L, 0, 0, n, 0, NLC, T % 64 == 0, BH, False)
            cgd.TIERED = True
            builds = [b for b in BUILDS if (not only or b in only or b == "off")]
            if tier.grouped:  # (grp: the production plan from 65 periods)
                builds = [b for b in builds if b != "grp"]
            outs = {}
            for b in builds:
                o = intra.copy()
                run(b, o)
                outs[b] = o
            scale = float(cupy.abs(outs["off"]).max())
            errs = {b: (float(cupy.abs(o - outs["off"]).max()) / scale, float(cupy.abs(o - ref).max()) / scale)
                    for b, o in outs.items()}
            del outs
            for b in builds:  # warm-up
                run(b, out)
            times = {(b, p): [] for b in builds for p in (None,) + tuple(PARTS)}
            for _ in range(reps):  # interleaved rounds
                for b in builds:
                    times[b, None].append(event_ms(lambda: run(b, out)))
                    for p, names in PARTS.items():
                        times[b, p].append(event_ms(lambda: run(b, out, names)))
            med = {kk: statistics.median(v) for kk, v in times.items()}
            for b in builds:
                parts = " / ".join(f"{med[b, p]:.3f}" for p in PARTS)
                print(f"T={T:6d} {key:3s} {b:5s} {med[b, None]:.3f} ms (t1 / coarse / t3 {parts}; coarse+t3 "
                      f"{med[b, 'coarse'] + med[b, 't3']:.3f}); vs off {errs[b][0]:.1e}, vs gd_scan {errs[b][1]:.1e};"
                      f" /off {med[b, None] / med['off', None]:.3f}", flush=True)
            kt = {}  # every build's kernels one by one (the launched ones)
            names = sum(PARTS.values(), ())[2:]
            for _ in range(reps):
                for b in builds:
                    for name in names:
                        kt.setdefault((b, name), []).append(event_ms(lambda: run(b, out, (name,))))
            short = {"gd_coarse": "co", "gd_cgroup": "cg", "gd_coarse_g": "cc", "gd_cfill": "cf", "gd_tier3": "t3"}
            for b in builds:
                med_k = {name: statistics.median(kt[b, name]) for name in names if (b, name) in kt}
                print(f"T={T:6d} {key:3s} {b:6s} kernels: " + " ".join(
                    f"{short[k]} {v:.3f}" for k, v in med_k.items() if v > 0.012), flush=True)
            fk = None
        scratch = forms = intra = out = lam = None  # (freed before the next size's inputs)
    cgd.T3FILL = True


def public(Ts, reps=7):
    import torch

    real = cgd._Direct._tk
    off_tk = lambda self, op, cfg, name: (  # noqa: E731
        Build(cfg, "off")._tk(op, cfg, name) if name in sum(PARTS.values(), ()) else real(self, op, cfg, name))
    modes = (("off", off_tk, False), ("new", real, True))
    for T in Ts:
        x = [torch.randn((2, 16, T, 64), device="cuda") for _ in range(3)]
        x[1] = torch.nn.functional.normalize(x[1], dim=-1)
        x += [-torch.nn.functional.softplus(-torch.randn((2, 16, T), device="cuda") - 3), torch.rand((2, 16, T), device="cuda"),
              torch.rand((2, 16, T, lsattn.num_levels(T)), device="cuda") + 0.5]
        for dt in (torch.bfloat16, torch.float32):
            xs = [t.to(dt) for t in x]
            f = lambda: lsattn.loglinear_gated_delta(*xs)  # noqa: E731
            res = {}
            for b, tk, fill in modes:
                cgd._Direct._tk, cgd.T3FILL = tk, fill
                res[b] = f()
            times = {"off": [], "new": []}
            for _ in range(reps):
                for b, tk, fill in modes:
                    cgd._Direct._tk, cgd.T3FILL = tk, fill
                    f()
                    torch.cuda.synchronize()
                    e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                    e0.record()
                    for _ in range(3):
                        f()
                    e1.record()
                    e1.synchronize()
                    times[b].append(e0.elapsed_time(e1) / 3)
            cgd._Direct._tk, cgd.T3FILL = real, True
            m, nw = statistics.median(times["off"]), statistics.median(times["new"])
            d = float((res["new"].float() - res["off"].float()).abs().max()) / float(res["off"].float().abs().max())
            print(f"public {str(dt)[6:]:8s} T={T:6d} off {m:.3f} ms, new {nw:.3f} ms ({nw / m:.3f}); max |new - off| / max"
                  f" {d:.1e}", flush=True)
            xs = res = None
        x = None


if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else "ab"
    nums = [a for a in sys.argv[2:] if a[:1].isdigit()]
    Ts = [int(t) for t in nums[0].split(",")] if nums else [8192, 16384, 32768]
    if mode == "warm":
        warm(sys.argv[2:])
    elif mode == "ab":
        ab(Ts, int(nums[1]) if len(nums) > 1 else 5, [a for a in sys.argv[2:] if a in BUILDS])
    elif mode == "public":
        public(Ts if nums else [8192, 32768])
