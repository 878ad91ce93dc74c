"""gd_scan_bwd's session-19 switches (s19f16, issue 16) at 8K / 32K: builds of gated_delta_bwd.cu interleaved in one
process (CUDA events, medians of ms per ``gated_delta_bwd.scan_backward`` with its zeroed outputs and scratch), B H = 32,
d_k = d_v = 64, C = 64, from chunk 0 without state (the public training call), on the forms gd_forms computes; x1:
gd_scan_bwd_x1 (1xTF32, bfloat16 callers), f32: gd_scan_bwd (3xTF32). Builds (-D switches; benchmarks/NOTES.md
"Session 19 — s19f16"):
- off:  GDB_G=1 GDB_GF=1 GDB_MG=0 GDB_CB=0 GDB_LA=0 (session 18's kernel: one slot a pass, the merges row by row)
- new:  production (x1: GDB_G=2 two slots a pass; both: GDB_MG=1 the merges' loads first, GDB_CB=1 a chunk's boundary
        in fewer round trips, GDB_LA=1 lambda a pass ahead)
- cb0, la0: new with GDB_CB=0 / GDB_LA=0 (request 2's switches, each off)
- g1:   new with GDB_G=1 (x1: one slot a pass);  mg0: new with GDB_MG=0 (and so without GDB_CB, which needs it)
- gf2:  new with GDB_GF=2 (f32: two slots a pass in 3xTF32, whose ptxas spills 68 B at 64 x 64)
- db:   new with GDB_DB=1 (x1: two sets of chunk tiles, the next chunk's copied during this one's slots)
- ds2:  new with GDB_DS2=1 (dS's two products in two accumulators: shorter mma chains; not bit-equal)
- pr0:  new with GDB_PR=0 (x1: the chunk tiles, W, dr, dW rounded at their fragment loads, no rounding pass a chunk)
- noat, nop1: new without the chunks' outer-product atomicAdds / without phase 1 (GDB_ABL=1 / 2: timing only, wrong
        gradients: where the time goes)
Each build's gradients against off's (max |build - off| / max |off|; bit-equal but for the atomicAdd orders), then the
times. ``public``: one bf16 / fp32 training step (loglinear_gated_delta forward + backward on torch CUDA tensors, no
backend=) with off's kernels patched into CupyOps against production's, interleaved.
    python ab_s19f16.py warm [build ..]             # compile every build (none named: all)
    python ab_s19f16.py ab [T,T] [reps] [build ..]  # kernel-alone A/B (default 8192,32768, 7 rounds)
    python ab_s19f16.py public [T,T] [reps]         # the public training step, off vs new
    python ab_s19f16.py small [0,1,2]               # small bf16 / fp32 training calls (sanitizers; production)"""
import statistics
import sys

import cupy
import numpy as np

import lsattn
from lsattn._chunktree import chunk_layout
from lsattn.backends.cupy import _compile as cc
from lsattn.backends.cupy import gated_delta as cgd
from lsattn.backends.cupy import gated_delta_bwd as gdb

BH, DK, DV, C = 32, 64, 64, 64
cfg = cc.make_config("float", DK, 16, C)  # the training path's (gated_delta_bwd.differentiable)
TILES = 2 * C * (DK + 4) + DK * (C + 8)  # one set of the chunk tiles (GDB_TW)
# name -> (-D switches, kernels ('x1': gd_scan_bwd_x1, 'f32': gd_scan_bwd), extra shared bytes)
BUILDS = {"off": ({"GDB_G": 1, "GDB_GF": 1, "GDB_MG": 0, "GDB_CB": 0, "GDB_LA": 0}, ("x1", "f32"), 0),
          "new": ({}, ("x1", "f32"), 0), "cb0": ({"GDB_CB": 0}, ("x1", "f32"), 0), "la0": ({"GDB_LA": 0}, ("x1", "f32"), 0),
          "g1": ({"GDB_G": 1}, ("x1",), 0), "mg0": ({"GDB_MG": 0}, ("x1",), 0), "gf2": ({"GDB_GF": 2}, ("f32",), 0),
          "db": ({"GDB_DB": 1}, ("x1",), TILES * 4), "ds2": ({"GDB_DS2": 1}, ("x1", "f32"), 0),
          "pr0": ({"GDB_PR": 0}, ("x1",), 0), "noat": ({"GDB_ABL": 1}, ("x1",), 0),
          "nop1": ({"GDB_ABL": 2}, ("x1",), 0)}
KERN = {"x1": "gd_scan_bwd_x1", "f32": "gd_scan_bwd"}
_mods = {}


def kernel(build, kind):
    defs, _, extra = BUILDS[build]
    if build not in _mods:
        code = "\n".join(cc._source(f) for f in ("common.cu", "gated_delta.cu", "gated_delta_bwd.cu", "gated_delta_bwd_scan.cu"))  # (no gd_forms_bwd)
        opts = ("-std=c++17",) + tuple(cc.defines("gated_delta_bwd", cfg)) + tuple(f"-D{k}={v}" for k, v in defs.items())
        _mods[build] = cupy.RawModule(code=code, options=opts), {}
    mod, fns = _mods[build]
    if kind not in fns:
        fn = mod.get_function(KERN[kind])
        fn.max_dynamic_shared_size_bytes = cc.SMEM_MAX
        fns[kind] = fn, cfg.smem(KERN[kind]) + extra
    return fns[kind]


class ScanOps:
    """``ops`` for gdb.scan_backward with gd_scan_bwd(_x1) from one build."""
    xp = cupy

    def __init__(self, build):
        self.build = build

    def gd_scan_bwd(self, cfg_, *a, x1=False):
        fn, smem = kernel(self.build, "x1" if x1 else "f32")
        arrays, (T, DK_, DV_, L, p, F, n, n_old, NLC, merge_last, BH_) = a[:16], a[16:]
        fn((BH_, -(-DV_ // 16)), (256,), (*arrays, np.int32(T), np.int32(DK_), np.int32(DV_), np.int32(L),
                                           np.int64(p), np.int64(F), np.int32(n), np.int32(n_old), np.int32(NLC),
                                           np.int32(merge_last)), shared_mem=smem)


def warm(only):
    for b, (_, kinds, _) in BUILDS.items():
        if not only or b in only:
            for k in kinds:
                fn, smem = kernel(b, k)
                print(f"compiled {b} {k}: {fn.num_regs} registers, {fn.local_size_bytes} B local, smem {smem}", flush=True)


def event_ms(fn, k=1):
    e0, e1 = cupy.cuda.Event(), cupy.cuda.Event()
    e0.record()
    for _ in range(k):
        fn()
    e1.record()
    e1.synchronize()
    return cupy.cuda.get_elapsed_time(e0, e1) / k


def ab(Ts, reps, only):
    ops = cc.CupyOps(cupy.cuda.Device().id)
    rng = cupy.random.default_rng(0)
    for T in Ts:
        L = lsattn.num_levels(T)
        n = chunk_layout(0, T, C).n_chunks
        q, k, v = (rng.standard_normal((BH, T, d), dtype=cupy.float32) for d in (DK, DK, DV))
        k /= cupy.linalg.norm(k, axis=-1, keepdims=True)
        a = -cupy.log1p(cupy.exp(-(rng.standard_normal((BH, T), dtype=cupy.float32) + 3)))
        beta = rng.random((BH, T), dtype=cupy.float32)
        lam = rng.random((BH, T, L), dtype=cupy.float32) + 0.5
        fq = cgd.forms(ops, cfg, q, k, v, a, beta, lam, 0)
        dout = rng.standard_normal((BH, n, C, DV), dtype=cupy.float32)
        q = k = v = None
        for kind in ("x1", "f32"):
            sc = gdb.Scan(cfg, T, 0, 0, n, cgd.chunk_slots(0, n, T % C == 0), T % C == 0, kind == "x1")
            builds = [b for b, (_, kinds, _) in BUILDS.items() if kind in kinds and (not only or b in only or b == "off")]
            run = {b: (lambda so=ScanOps(b): gdb.scan_backward(so, sc, *fq[:5], lam, None, dout)) for b in builds}
            ref = run["off"]()
            errs = {}
            for b in builds:
                o = run[b]()
                errs[b] = max(float(cupy.abs(x - y).max() / cupy.abs(y).max()) for x, y in zip(o[:6], ref[:6]))
                o = None
            ref = None
            times = {b: [] for b in builds}
            for _ in range(reps):  # interleaved rounds
                for b in builds:
                    times[b].append(event_ms(run[b]))
            med = {b: statistics.median(t) for b, t in times.items()}
            for b in builds:
                print(f"T={T:6d} {kind:3s} {b:4s} {med[b]:7.3f} ms  /off {med[b] / med['off']:.3f}  max rel diff vs off "
                      f"{errs[b]:.1e}", flush=True)
        fq = lam = dout = None
        cupy.get_default_memory_pool().free_all_blocks()


def public(Ts, reps):
    import torch

    real = cc.CupyOps._tk

    def off_tk(self, op, cfg_, name):
        if name.startswith("gd_scan_bwd") and cfg_.ta == "float" and cfg_.CH == C and cfg_.DKP == DK:
            fn, smem = kernel("off", "x1" if name.endswith("x1") else "f32")
            return fn, (256,), smem
        return real(self, op, cfg_, name)

    for T in Ts:
        g = torch.Generator(device="cuda").manual_seed(0)
        x = [torch.randn((2, 16, T, 64), device="cuda", generator=g) for _ in range(3)]
        x[1] = torch.nn.functional.normalize(x[1], dim=-1)
        x += [-torch.nn.functional.softplus(-torch.randn((2, 16, T), device="cuda", generator=g) - 3),
              torch.rand((2, 16, T), device="cuda", generator=g),
              torch.rand((2, 16, T, lsattn.num_levels(T)), device="cuda", generator=g) + 0.5]
        do = torch.randn((2, 16, T, 64), device="cuda", generator=g)
        for dt in (torch.bfloat16, torch.float32):
            xs = [t.to(dt).requires_grad_(True) for t in x]

            def step():
                for t in xs:
                    t.grad = None
                lsattn.loglinear_gated_delta(*xs).backward(do.to(dt))

            res, times = {}, {"off": [], "new": []}
            for b, tk in (("off", off_tk), ("new", real)):
                cc.CupyOps._tk = tk
                step()
                res[b] = [t.grad.float().clone() for t in xs]
            for _ in range(reps):
                for b, tk in (("off", off_tk), ("new", real)):
                    cc.CupyOps._tk = tk
                    torch.cuda.synchronize()
                    e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                    e0.record()
                    step()
                    e1.record()
                    e1.synchronize()
                    times[b].append(e0.elapsed_time(e1))
            cc.CupyOps._tk = real
            m, nw = statistics.median(times["off"]), statistics.median(times["new"])
            d = max(float((a - b).abs().max() / b.abs().max()) for a, b in zip(res["new"], res["off"]))
            print(f"public fwd+bwd {str(dt)[6:]:8s} T={T:6d} off {m:.3f} ms, new {nw:.3f} ms ({nw / m:.3f}); grads max rel "
                  f"|new - off| {d:.1e}", flush=True)
            xs = res = None
        x = do = None
        torch.cuda.empty_cache()


def small(sel=(0, 1, 2)):
    """Small training calls on the production kernels: bf16 (gd_scan_bwd_x1, two slots a pass: 10 and 12 chunks,
    passes of two and of one), fp32 (gd_scan_bwd), with and without an incoming state."""
    import torch

    from lsattn.state import State

    gen = torch.Generator(device="cuda").manual_seed(1)
    cases = ((torch.bfloat16, 600, 0), (torch.bfloat16, 700, 77), (torch.float32, 600, 77))
    for dt, T, P in (cases[i] for i in sel):
        def t(*shape):
            return torch.randn(shape, device="cuda", generator=gen).to(dt)

        q, k, v = t(1, T, 64), t(1, T, 64), t(1, T, 64)
        k = k / k.norm(dim=-1, keepdim=True)
        xs = [q, k, v, -t(1, T).abs(), torch.sigmoid(t(1, T)), t(1, T, lsattn.num_levels(P + T))]
        xs = [x.requires_grad_(True) for x in xs]
        state = None
        if P:
            lv = t(1, P.bit_length(), 64, 64).requires_grad_(True)
            state = State("loglinear_gated_delta", P, (1,), 64, 64, dt, {"levels": lv})
            xs.append(lv)
        out = lsattn.loglinear_gated_delta(*xs[:6], state=state)
        out.float().square().sum().backward()
        torch.cuda.synchronize()
        print("small", str(dt)[6:], T, P, [float(x.grad.float().abs().max()) for x in xs], flush=True)
    print("small ok", flush=True)


if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else "ab"
    nums = [a for a in sys.argv[2:] if a[:1].isdigit()]
    Ts = [int(t) for t in nums[0].split(",")] if nums else [8192, 32768]
    names = [a for a in sys.argv[2:] if a in BUILDS]
    if mode == "warm":
        warm(names)
    elif mode == "ab":
        ab(Ts, int(nums[1]) if len(nums) > 1 else 7, names)
    elif mode == "public":
        public(Ts, int(nums[1]) if len(nums) > 1 else 5)
    elif mode == "small":
        small([int(i) for i in sys.argv[2].split(",")] if len(sys.argv) > 2 else (0, 1, 2))
