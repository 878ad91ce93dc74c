"""The timing build GD_PIPE_SET=1 of gd_scan (a one-slot walk copies the next chunk's Qe / Ek during (b)), in float32
and with 1xTF32 (bfloat16 inputs' scan), on a few small calls for compute-sanitizer racecheck: its output and state
against the production kernel's of the same precision (printed: max |difference| / max |production|).
    compute-sanitizer --tool racecheck --kernel-name kns=gd_scan python benchmarks/device/gd_pipe_small.py"""
import cupy
import numpy as np

import lsattn
from lsattn._chunktree import chunk_layout
from lsattn.backends.cupy import _compile as cc
from lsattn.backends.cupy import gated_delta as cgd

ops = cc.CupyOps(cupy.cuda.Device().id)
i32, i64 = np.int32, np.int64
for DK, DV, C, T, p in ((64, 64, 64, 700, 0), (64, 40, 32, 300, 77), (20, 17, 16, 250, 5)):
    cfg = cc.make_config("float", DK, 16, C)
    opts = ("-std=c++17", "-DTA=float", "-DTI_BF16=0", "-DTI_F16=0", f"-DCH={cfg.CH}", f"-DDKP={cfg.DKP}",
            f"-DDVP={cfg.DVP}", "-DLOGV=0")
    fns = {}
    for name, extra in (("pipe", ("-DGD_PIPE_SET=1",)), ("x1", ("-DGD_X1_SET=1",)),
                        ("x1pipe", ("-DGD_X1_SET=1", "-DGD_PIPE_SET=1"))):
        src = cc._source("common.cu") + "\n" + cc._source("gated_delta.cu")
        fns[name] = cupy.RawModule(code=src, options=opts + extra).get_function("gd_scan")
        fns[name].max_dynamic_shared_size_bytes = cc.SMEM_MAX
    BH, L = 3, lsattn.num_levels(p + T)
    lay = chunk_layout(p, T, C)
    F, n = lay.first_chunk, lay.n_chunks
    rng = cupy.random.default_rng(1)
    q, k, v = (rng.standard_normal((BH, T, d), dtype=cupy.float32) for d in (DK, DK, DV))
    k /= cupy.linalg.norm(k, axis=-1, keepdims=True)
    a = -cupy.log1p(cupy.exp(-(rng.standard_normal((BH, T), dtype=cupy.float32) + 3)))
    b = rng.random((BH, T), dtype=cupy.float32)
    lam = rng.random((BH, T, L), dtype=cupy.float32) + 0.5
    qe, ek, ph, H, g, out = cgd.forms(ops, cfg, q, k, v, a, b, lam, p)
    NLC = cgd.chunk_slots(F, n, (p + T) % C == 0)
    n_old = p.bit_length()
    oldc = rng.standard_normal((BH, max(n_old, 1), DK, DV), dtype=cupy.float32) * 0.1
    G = cgd.scan_group(n)

    def run(f):
        o, lv, oc = out.copy(), cupy.zeros((BH, NLC, DK, DV), cupy.float32), oldc.copy()
        if f is None:
            ops.gd_scan(cfg, qe, ek, ph, H, g, lam, o, lv, oc, T, DK, DV, L, p, F, n, n_old, NLC, (p + T) % C == 0, BH, True)
        else:
            f((cgd.scan_blocks(F, n, n_old, NLC, G) * BH * -(-DV // cc.GD_BW),), (256,),
              (qe, ek, ph, H, g, lam, o, lv, oc, i32(T), i32(DK), i32(DV), i32(L), i64(p), i64(F), i32(n), i32(n_old),
               i32(NLC), i32((p + T) % C == 0), i32(1), i32(BH), i32(G)), shared_mem=cfg.gd_smem())
        return o, lv, oc

    def rel(x, y):
        return float(cupy.abs(x - y).max() / cupy.abs(y).max())

    prod, x1 = run(None), run(fns["x1"])
    for name, want in (("pipe", prod), ("x1pipe", x1)):
        got = run(fns[name])
        print(f"DK={DK} DV={DV} C={C} T={T} p={p} {name}: out {rel(got[0], want[0]):.1e} lev {rel(got[1], want[1]):.1e}"
              f" old {rel(got[2], want[2]):.1e}", flush=True)
print("pipe ok")
