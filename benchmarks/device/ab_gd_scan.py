"""gd_scan alone (CUDA events, ms per launch), B H = 32 sequences, d = 64, float32 (what the bf16
forward computes in), T = 2K / 8K / 32K, in builds compiled from the production source by text
substitution (timing only; the substituted ones compute wrong values where said):

- tc:        the production kernel (float32: the passes' products on tensor cores, 3xTF32)
- tc_global: the same launch with every slot in global memory
- ffma:      the passes' products in FFMA (session 8's kernel: GD_TC false)
- no_pass:   every pass without its products (gd_pass<0>: the barriers only; wrong values): what a
             chunk costs besides the products (tile copies, barriers, reduction, merge)

then the public forward on the same float32 CuPy arrays."""
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
SUBS = {"ffma": [(r"constexpr bool GD_TC = sizeof\(ta\) == 4;", "constexpr bool GD_TC = false;")],
        "no_pass": [(r"gd_pass<[12]>\(", "gd_pass<0>(")]}


def build(name):
    src = cc._source("gated_delta.cu")
    for pat, rep in SUBS[name]:
        src, k = re.subn(pat, rep, src)
        assert k, (name, pat)
    fn = cupy.RawModule(code=cc._source("common.cu") + "\n" + src, options=opts).get_function("gd_scan")
    fn.max_dynamic_shared_size_bytes = cc.SMEM_MAX
    return fn


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


alt = {name: build(name) for name in SUBS}
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
    fn, block, _ = ops._tk("gated_delta", cfg, "gd_scan")
    nres = cfg.gd_scan_resident(NLC, L)
    row = [f"T={T:6d} n={n:4d} slots={NLC:2d}"]
    for name, res, f in (("tc", nres, fn), ("tc_global", 0, fn), ("ffma", nres, alt["ffma"]),
                         ("no_pass", nres, alt["no_pass"])):
        def launch():
            f((BH, -(-DV // 16)), block, (qe, ek, ph, H, g, lam, out, lev, oldc, i32(T), i32(DK), i32(DV), i32(L),
                                          i64(0), i64(F), i32(n), i32(0), i32(NLC), i32(T % C == 0), i32(res)),
              shared_mem=cfg.gd_scan_smem(res, L))
        row.append(f"{name}: {ms(launch, 5):.3f} ms")
    row.append(f"forward: {ms(lambda: lsattn.loglinear_gated_delta(q, k, v, a, b, lam), 3):.3f} ms")
    print(" | ".join(row), flush=True)
