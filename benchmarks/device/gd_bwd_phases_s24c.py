"""gd_scan_bwd_x1 (what bf16 training runs) alone, split into its two phases (session 24, s24c, issue 16): CUDA events
around each launch (its zeroed outputs set outside them), medians, B H = 32, d_k = d_v = 64, C = 64, float32 forms of
random inputs (gd_forms), random output gradients, T from argv (default 8K, 32K):

- full:   main's kernel (the production build, from the registry)
- p1:     the same source returning after phase 1 (the slots' recompute into sv; a `return` inserted before phase 2's
          loop: a timing build, wrong gradients)
- p2:     GDB_ABL=2 (phase 1 dropped: phase 2 alone on whatever sv holds; a timing build, wrong gradients)
- forms:  gd_forms_bwd_x1 on random gradients of the forms (its time and, under ncu, its tensor pipe: what a parallel
          per-chunk kernel of this code reaches)

    python benchmarks/device/gd_bwd_phases_s24c.py [T,T,..] [reps]
    python benchmarks/device/gd_bwd_phases_s24c.py one [T]     (gd_scan_bwd_x1, then gd_forms_bwd_x1, launched once each:
                                                               for ncu)
    python benchmarks/device/gd_bwd_phases_s24c.py compile     (every build compiled into CuPy's cache; nothing run)"""
import re
import sys

import cupy
import numpy as np

import lsattn
from lsattn._chunktree import chunk_layout
from lsattn.backends.cupy import _compile as cc
from lsattn.backends.cupy import gated_delta as cgd

BH, DK, DV, C = 32, 64, 64, 64
cfg = cc.make_config("float", DK, 16, C)
one, compile_only = sys.argv[1:2] == ["one"], sys.argv[1:2] == ["compile"]
args = sys.argv[2:] if one or compile_only else sys.argv[1:]
Ts = [int(x) for x in args[0].split(",")] if args else ([8192] if one else [8192, 32768])
reps = int(args[1]) if len(args) > 1 and not one else 15
ops = cc.CupyOps(cupy.cuda.Device().id)
prod, block, smem = ops._tk("gated_delta_bwd", cfg, "gd_scan_bwd_x1")


def build(pat=None, rep=None, extra=()):
    src = cc._source("gated_delta_bwd_scan.cu")
    if pat:
        src, k = re.subn(pat, rep, src)
        assert k == 1, (pat, k)
    code = "\n".join(cc._source(f) for f in ("common.cu", "gated_delta.cu", "gated_delta_bwd.cu")) + "\n" + src
    opts = ("-std=c++17",) + tuple(cc.defines("gated_delta_bwd", cfg)) + tuple(extra)
    fn = cupy.RawModule(code=code, options=opts).get_function("gd_scan_bwd_x1")
    fn.max_dynamic_shared_size_bytes = cc.SMEM_MAX
    return fn


builds = {"full": prod}
if not one:
    builds["p1"] = build(r"(\n    // ---- phase 2: the reverse scan ----)", r"\n    return;\1")
    builds["p2"] = build(extra=("-DGDB_ABL=2",))
    for name, fn in builds.items():
        print(f"{name}: {fn.num_regs} registers, {fn.local_size_bytes} B local, smem {smem} B", flush=True)
if compile_only:
    ops._tk("gated_delta", cfg, "gd_forms")
    sys.exit(0)
rng = cupy.random.default_rng(0)
for T in Ts:
    L = lsattn.num_levels(T)
    lay = chunk_layout(0, T, C)
    F, n = lay.first_chunk, lay.n_chunks
    NLC = cgd.chunk_slots(F, n, T % C == 0)

    def r(*shape, scale=1.0):
        return rng.standard_normal(shape, dtype=np.float32) * scale

    q, v, k = r(BH, T, DK), r(BH, T, DV), r(BH, T, DK)
    k /= cupy.linalg.norm(k, axis=-1, keepdims=True)
    a = -cupy.abs(r(BH, T, scale=0.1))
    beta = 1 / (1 + cupy.exp(-r(BH, T)))
    lam = cupy.abs(r(BH, T, L)) + 0.5
    qe, ek, ph, H, g, _ = cgd.forms(ops, cfg, q, k, v, a, beta, lam, 0)
    dout = r(BH, n, C, DV)
    sv = cupy.empty((BH, n, NLC, DK, DV), cupy.float32)
    zs = [cupy.zeros(s, cupy.float32) for s in ((BH, NLC, DK, DV), (BH, n, C, DK), (BH, n, C, DK), (BH, n, DK, C),
                                                (BH, n, DK, DV), (BH, n), (BH, T, L))]
    oldc = cupy.zeros((1,), cupy.float32)
    tail = (np.int32(T), np.int32(DK), np.int32(DV), np.int32(L), np.int64(0), np.int64(F), np.int32(n), np.int32(0),
            np.int32(NLC), np.int32(T % C == 0))
    grid = (BH, -(-DV // cc.gd_scan_bwd_columns(cfg)))

    def launch(fn):
        fn(grid, block, (qe, ek, ph, H, g, lam, dout, oldc, sv, *zs, *tail), shared_mem=smem)

    fgrads = [r(BH, n, C, DK), r(BH, n, C, DK), r(BH, n, DK, C), r(BH, n, DK, DV), r(BH, n), dout]
    fouts = [cupy.empty_like(x) for x in (q, k, v, a, beta, lam)]

    def forms_bwd():
        ops.gd_forms_bwd(cfg, q, k, v, a, beta, lam, *fgrads, *fouts, T, DK, DV, L, 0, F, n, BH, x1=True)

    if one:
        launch(prod)
        forms_bwd()
        cupy.cuda.Device().synchronize()
        print(f"T={T}: one launch of gd_scan_bwd_x1 (grid {grid}, smem {smem} B), one of gd_forms_bwd_x1", flush=True)
        continue
    times = {}
    for name, fn in builds.items():
        ts = []
        for i in range(reps + 2):
            for z in zs:
                z.fill(0)
            e0, e1 = cupy.cuda.Event(), cupy.cuda.Event()
            e0.record()
            launch(fn)
            e1.record()
            e1.synchronize()
            if i >= 2:
                ts.append(cupy.cuda.get_elapsed_time(e0, e1))
        times[name] = (float(np.median(ts)), float(np.min(ts)), float(np.max(ts)))
    ts = []
    for i in range(reps + 2):
        e0, e1 = cupy.cuda.Event(), cupy.cuda.Event()
        e0.record()
        forms_bwd()
        e1.record()
        e1.synchronize()
        if i >= 2:
            ts.append(cupy.cuda.get_elapsed_time(e0, e1))
    f = times["full"][0]
    times["forms"] = (float(np.median(ts)), float(np.min(ts)), float(np.max(ts)))
    print(f"T={T} n={n} NLC={NLC} grid={grid} reps={reps} ms median (min-max): "
          + "  ".join(f"{k} {m:.3f} ({lo:.3f}-{hi:.3f}, {m / f:.0%})" for k, (m, lo, hi) in times.items()), flush=True)
