"""gd_scan alone (CUDA events, ms per launch), B H = 32 sequences, d = 64, float32 (what the bf16
forward computes in), T from argv (default 2K / 8K / 32K):

- s10:      session 10's scan (one block per level chain and period), keep = 0, when ``gd_scan_s10.cu``
            is beside this file (``git show 3e2fd13:benchmarks/device/gd_scan_s10.cu``)
- main:     session 11's final scan (main's), when ``gd_scan_main.cu`` is beside this file (regenerate: git show 7c3e519:lsattn/backends/cupy/gated_delta.cu > benchmarks/device/gd_scan_main.cu)
            (``git show 7c3e519:lsattn/backends/cupy/gated_delta.cu``): the same launch as new_g2
- pf0, pf2, pf3: the L2 prefetch of the next chunk (GD_PF_SET): none / H and the tiles in the one-slot
            walks / in every walk (production: H only)
- wown0:    a one-slot walk's W over Qe / Ek as in session 11 (GD_WOWN_SET=0)
- pipe:     a one-slot walk copies the next chunk's Qe / Ek during (b) (GD_PIPE_SET=1); x1pipe: with x1
- x1g3:     x1 with 3 slots per block (its W, unsplit, fits over Qe / Ek; 2 blocks per SM)
- x1:       1xTF32 products (GD_X1_SET=1, W unsplit): the scan of bfloat16 inputs (production since session 12)
- new_g1, new_g2: the production build (GD_BW = 32 columns, W stored as tf32 pairs, 3 blocks per SM)
            launched with 1 and 2 (GD_G) slots per block, keep = 0 (the public forward's launch); the
            production launch takes ``scan_group(n)`` of them
- *_keep:   the same with the returned state (keep = 1)
- g2_ws0:   W stored unsplit (GD_WS_SET=0: each warp splits its B fragments in (b), as in session 10)
- g2_sr:    S in the registers of (b)'s threads, shared as tf32 pairs (GD_SR_SET=1; 2 blocks per SM)
- g3, g3_ws0, g4_ws0: builds with 3 / 4 slots per block (GD_G_SET; 2 blocks per SM)
- g2_bw64, g1_bw64: 64 value columns per block (GD_BW_SET; W unsplit; 2 blocks per SM)
- nomm:     new_g2 with its products removed (wrong values): what the walk costs besides the products
            (tile copies, barriers, atomics)
- *_top:    only the top group's blocks (s10: the two top chains'), keep = 1: the critical path
- *_top7:   only level NLC - 1's blocks (the longest chain without the state), keep = 0

then the public forward on the same float32 CuPy arrays. The first columns: the builds' outputs and
states against the production one's (max |difference| / max |new|).
    python benchmarks/device/ab_gd_scan.py [T,T,..] [build,build,..]"""
import os
import re
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
BH, DK, DV = 32, 64, 64
i32, i64 = np.int32, np.int64
cfg = cc.make_config("float", DK, 16, 64)
opts = ("-std=c++17", "-DTA=float", "-DTI_BF16=0", "-DTI_F16=0", f"-DCH={cfg.CH}", f"-DDKP={cfg.DKP}", f"-DDVP={cfg.DVP}",
        "-DLOGV=0")
Ts = [int(x) for x in sys.argv[1].split(",")] if len(sys.argv) > 1 else [2048, 8192, 32768]
want = sys.argv[2].split(",") if len(sys.argv) > 2 else None


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


# name -> (function, slots per block at run time, columns per block, W split or "sr"); s10: session 10's kernel
# and grid (g = 0)
prod = ops._tk("gated_delta", cfg, "gd_scan")[0]
builds = {"new_g2": (prod, cc.GD_G, cc.GD_BW, True), "new_g1": (prod, 1, cc.GD_BW, True)}
s10 = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gd_scan_s10.cu")
main = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gd_scan_main.cu")
ws0, two = "-DGD_WS_SET=0", "-DGD_MINB_SET=2"
for name, mk, g, bw, ws in (
        ("s10", lambda: build(open(s10).read()), 0, 32, False),
        ("main", lambda: build(open(main).read()), 2, 32, True),
        ("pf0", lambda: variant(extra=("-DGD_PF_SET=0",)), 2, 32, True),
        ("pf2", lambda: variant(extra=("-DGD_PF_SET=2",)), 2, 32, True),
        ("pf3", lambda: variant(extra=("-DGD_PF_SET=3",)), 2, 32, True),
        ("wown0", lambda: variant(extra=("-DGD_WOWN_SET=0",)), 2, 32, True),
        ("pipe", lambda: variant(extra=("-DGD_PIPE_SET=1",)), 2, 32, True),
        ("x1pipe", lambda: variant(extra=("-DGD_X1_SET=1", "-DGD_PIPE_SET=1")), 2, 32, False),
        ("x1g3", lambda: variant(extra=("-DGD_X1_SET=1", "-DGD_G_SET=3", two)), 3, 32, False),
        ("x1", lambda: variant(extra=("-DGD_X1_SET=1", ws0)), 2, 32, False),
        ("g2_ws0", lambda: variant(extra=(ws0,)), 2, 32, False),
        ("g2_sr", lambda: variant(extra=("-DGD_SR_SET=1", two)), 2, 32, "sr"),
        ("g3", lambda: variant(extra=("-DGD_G_SET=3", two)), 3, 32, True),
        ("g3_ws0", lambda: variant(extra=("-DGD_G_SET=3", two, ws0)), 3, 32, False),
        ("g4_ws0", lambda: variant(extra=("-DGD_G_SET=4", two, ws0)), 4, 32, False),
        ("g2_bw64", lambda: variant(extra=("-DGD_BW_SET=64", two, ws0)), 2, 64, False),
        ("g1_bw64", lambda: variant(extra=("-DGD_G_SET=1", "-DGD_BW_SET=64", two, ws0)), 1, 64, False),
        ("nomm", lambda: variant(r"gd_mm<(\d), (TW[AB])>\(", r"if (0) gd_mm<\1, \2>(", 2), cc.GD_G, cc.GD_BW, True)):
    if (want is None or name in want) and (name != "s10" or os.path.exists(s10)) and (name != "main" or os.path.exists(main)):
        builds[name] = (mk(), g, bw, ws)
block = (256,)
for T in Ts:
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
    row = [f"T={T:6d} n={n:4d} blocks/seq g2={cgd.scan_blocks(F, n, 0, NLC, 2)} s10={cgd.scan_chains(F, n, 0, NLC)}"]

    def launch(name, o, lv, keep, top=False):
        f, gs, bw, ws = builds[name]
        nb = (2 if gs == 0 or top == 7 else 1) if top else (cgd.scan_chains(F, n, 0, NLC) if gs == 0 else cgd.scan_blocks(F, n, 0, NLC, gs))
        smem = (cfg.gd_smem(1, bw, False) + cfg.CH * (bw + 8) * 4 if gs == 0  # s10: W apart
                else cfg.gd_smem(max(gs, cc.GD_G), bw, bool(ws), ws == "sr"))
        args = (qe, ek, ph, H, g, lam, o, lv, oldc, i32(T), i32(DK), i32(DV), i32(L), i64(0), i64(F), i32(n), i32(0),
                i32(NLC), i32(T % C == 0), i32(keep), i32(BH))
        f((nb * BH * -(-DV // bw),), block, args + (() if gs == 0 else (i32(gs),)), shared_mem=smem)

    for name in builds:  # the builds' outputs and states
        if name in ("new_g2", "nomm"):
            continue
        o_v, l_v = out.copy(), lev.copy()
        launch(name, o_v, l_v, 1)
        row.append(f"{name}-vs-new {float(cupy.abs(o_v - o_new).max() / cupy.abs(o_new).max()):.0e} "
                   f"{float(cupy.abs(l_v - l_new).max() / cupy.abs(l_new).max()):.0e}")
    timed = [(name, 0, False) for name in builds] + [(x, 1, False) for x in ("new_g2", "main", "new_g1", "s10")]
    timed += [(x, 1, True) for x in ("new_g2", "main", "pf2", "s10")]
    timed += [(x, 0, 7) for x in ("new_g2", "main", "pf0", "pf2", "wown0", "pipe", "x1", "x1pipe")]  # level NLC - 1 (NLC's blocks return at once)
    for name, keep, top in timed:
        if name in builds:
            row.append(f"{name}{'_keep' if keep and not top else ''}{'_top' if top is True else ''}{'_top7' if top == 7 else ''}: "
                       f"{ms(lambda: launch(name, out, lev, keep, top), 5):.3f} ms")
    row.append(f"forward: {ms(lambda: lsattn.loglinear_gated_delta(q, k, v, a, b, lam), 3):.3f} ms")
    print(" | ".join(row), flush=True)
