"""gd_scan alone (CUDA events, ms per launch), B H = 32 sequences, d = 64, float32 (what the bf16
forward computes in), T = 2K / 8K / 32K:

- new:      the production level-parallel scan without the returned state (keep = 0: the public
            forward's launch; GD_BW = 32 columns per block, 3 blocks per SM)
- new_keep: the same with the returned state (keep = 1: the top level's accumulation chain too)
- new_bw16, new_bw64: builds with 16 / 64 value columns per block (GD_BW_SET; 64: 2 blocks per SM)
- new_nomm: the production launch with its products removed (wrong values): what the chains cost
            besides the products (tile copies, barriers, atomics)
- new_top, new_top_bw16: only the two longest level chains per sequence (levels NLC, NLC - 1,
            keep = 1): the critical path on an otherwise idle GPU

then the public forward on the same float32 CuPy arrays. The first columns: the builds' outputs and
states against the production one's (max |difference| / max |new|). Session 10's runs also timed
session 9's sequential scan beside them (`git show 458e248:benchmarks/device/gd_scan_s9.cu`, launched as
that commit's ab_gd_scan.py does; benchmarks/NOTES.md, "Session 10 — s10a16")."""
import re

import cupy
import numpy as np

import lsattn
from lsattn._chunktree import chunk_layout
from lsattn.backends.cupy import _compile as cc
from lsattn.backends.cupy import gated_delta as cgd

ops = cc.CupyOps(cupy.cuda.Device().id)
BH, DK, DV = 32, 64, 64
i32, i64 = np.int32, np.int64
cfg = cc.make_config("float", DK, 16, 64)
opts = ("-std=c++17", "-DTA=float", "-DTI_BF16=0", "-DTI_F16=0", f"-DCH={cfg.CH}", f"-DDKP={cfg.DKP}", f"-DDVP={cfg.DVP}",
        "-DLOGV=0")


def build(src, extra=()):
    fn = cupy.RawModule(code=cc._source("common.cu") + "\n" + src, options=opts + tuple(extra)).get_function("gd_scan")
    fn.max_dynamic_shared_size_bytes = cc.SMEM_MAX
    return fn


def variant(pat=None, rep=None, count=0, extra=()):
    src = cc._source("gated_delta.cu")
    if pat:
        src, k = re.subn(pat, rep, src)
        assert k == count, (pat, k)
    return build(src, extra)


def ms(f, reps):
    """Milliseconds per call of f (after two warm calls), by CUDA events."""
    for _ in range(2):
        f()
    e0, e1 = cupy.cuda.Event(), cupy.cuda.Event()
    e0.record()
    for _ in range(reps):
        f()
    e1.record()
    e1.synchronize()
    return cupy.cuda.get_elapsed_time(e0, e1) / reps


no_mm = variant(r"gd_mm<(\d), (TW[AB])>\(", r"if (0) gd_mm<\1, \2>(", 3)
bw16 = variant(extra=("-DGD_BW_SET=16",))
bw64 = variant(extra=("-DGD_BW_SET=64", "-DGD_MINB_SET=2"))
for T in (2048, 8192, 32768):
    C, L = cfg.CH, lsattn.num_levels(T)
    lay = chunk_layout(0, T, C)
    F, n = lay.first_chunk, lay.n_chunks
    rng = cupy.random.default_rng(0)
    q, k, v = (rng.standard_normal((BH, T, d), dtype=cupy.float32) for d in (DK, DK, DV))
    k /= cupy.linalg.norm(k, axis=-1, keepdims=True)
    a = -cupy.log1p(cupy.exp(-(rng.standard_normal((BH, T), dtype=cupy.float32) + 3)))
    b = rng.random((BH, T), dtype=cupy.float32)
    lam = rng.random((BH, T, L), dtype=cupy.float32) + 0.5
    qe, ek = cupy.empty((BH, n, C, DK), cupy.float32), cupy.empty((BH, n, C, DK), cupy.float32)
    ph, H = cupy.empty((BH, n, DK, C), cupy.float32), cupy.empty((BH, n, DK, DV), cupy.float32)
    g, out = cupy.empty((BH, n), cupy.float32), cupy.empty((BH, n, C, DV), cupy.float32)
    ops.gd_forms(cfg, q, k, v, a, b, lam, qe, ek, ph, H, g, out, T, DK, DV, L, 0, F, n, BH)
    NLC = cgd.chunk_slots(F, n, T % C == 0)
    lev, oldc = cupy.zeros((BH, NLC, DK, DV), cupy.float32), cupy.zeros((1,), cupy.float32)
    # the production scan's output and state, for the builds' checks
    o_new, l_new = out.copy(), lev.copy()
    ops.gd_scan(cfg, qe, ek, ph, H, g, lam, o_new, l_new, oldc, T, DK, DV, L, 0, F, n, 0, NLC, T % C == 0, BH, True)
    row = [f"T={T:6d} n={n:4d} chains={cgd.scan_chains(F, n, 0, NLC):4d}"]
    fn, block, smem = ops._tk("gated_delta", cfg, "gd_scan")
    nch = cgd.scan_chains(F, n, 0, NLC)

    def launch_new(f, keep, bw=cc.GD_BW, chains=nch):
        per = BH * -(-DV // bw)
        f((chains * per,), block, (qe, ek, ph, H, g, lam, out, lev, oldc, i32(T), i32(DK), i32(DV), i32(L), i64(0), i64(F),
                                   i32(n), i32(0), i32(NLC), i32(T % C == 0), i32(keep), i32(BH)),
          shared_mem=smem + (cfg.DKP + C) * (bw - cc.GD_BW) * 4)

    for name, f, bw in (("bw16", bw16, 16), ("bw64", bw64, 64)):  # the builds' outputs
        o_v, l_v = out.copy(), lev.copy()
        f((nch * BH * -(-DV // bw),), block, (qe, ek, ph, H, g, lam, o_v, l_v, oldc, i32(T), i32(DK), i32(DV), i32(L),
                                              i64(0), i64(F), i32(n), i32(0), i32(NLC), i32(T % C == 0), i32(1), i32(BH)),
          shared_mem=smem + (cfg.DKP + C) * (bw - cc.GD_BW) * 4)
        row.append(f"{name}-vs-new {float(cupy.abs(o_v - o_new).max() / cupy.abs(o_new).max()):.0e} "
                   f"{float(cupy.abs(l_v - l_new).max() / cupy.abs(l_new).max()):.0e}")

    for name, f in (("new", lambda: launch_new(fn, 0)), ("new_keep", lambda: launch_new(fn, 1)),
                    ("new_bw16", lambda: launch_new(bw16, 0, 16)), ("new_bw64", lambda: launch_new(bw64, 0, 64)),
                    ("new_nomm", lambda: launch_new(no_mm, 0)),
                    ("new_top", lambda: launch_new(fn, 1, chains=2)),
                    ("new_top_bw16", lambda: launch_new(bw16, 1, 16, chains=2))):
        row.append(f"{name}: {ms(f, 5):.3f} ms")
    row.append(f"forward: {ms(lambda: lsattn.loglinear_gated_delta(q, k, v, a, b, lam), 3):.3f} ms")
    print(" | ".join(row), flush=True)
