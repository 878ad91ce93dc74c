"""gd_forms_bwd and gd_scan_bwd alone (CUDA events, ms per launch): B H = 32 sequences, d_k = d_v = 64, C = 64,
float32 (what the bf16 training path computes in), T from argv (default 8K), L = num_levels(T), random output
gradients; gd_scan_bwd on the forms gd_forms computes from the same inputs (keep: bounded states).

gd_forms_bwd:
- s12:  session 12's kernel (main at the start of session 13: ``gd_forms_bwd_s12.cu`` beside this file,
        ``git show d812904:lsattn/backends/cupy/gated_delta_forms_bwd.cu``), FFMA register tiles, its own smem
- main, x1main: main's gd_forms_bwd / gd_forms_bwd_x1 at the start of session 14 (``gd_forms_bwd_main.cu`` beside this
        file, not kept: ``git show c675226:lsattn/backends/cupy/gated_delta_forms_bwd.cu``), the smem of this branch's layout
- pf, x1pf: this branch with the k-loop software-pipelined (FB_PF=1); nosplit: cvt.rna's split (FB_FSPLIT=0);
        nov4: the tile copies element by element (FB_V4=0); subst: the solve by 63 steps of substitution (FB_BSOLVE=0);
        nosolve / nomm (FB_ABL=1 / 2, timing only, wrong gradients): without the solve / without every product
- ffma: this branch built with FB_TCM=0 (the FFMA register tiles, session 12's layout; 186 registers: 1 block per SM)
- cb:   this branch's tensor-core products bounded by the warps' columns as well as their rows (FB_CBND=1)
- nost: this branch with its tile copies one element at a time (FB_STAGED=0: request 1's copies, unrolled by 4)
- new:  this branch (the products on tensor cores, 3xTF32, bounded by the warps' rows; the tile copies batched)
- x1:   this branch's gd_forms_bwd_x1 (1xTF32 products: what bfloat16 callers run)


gd_scan_bwd (16 value columns per block, B H x 4 blocks): sffma (GDB_TCM=0: main's FFMA products, session 13), stc
(the products on tensor cores, 3xTF32: float32 callers), sx1 (gd_scan_bwd_x1, 1xTF32: bfloat16 callers; the operands that are only operands rounded once in shared memory),
sx1r (sx1 rounding every operand at its fragment loads, GDB_PR=0), sx1s1 (sx1 with one set of slot buffers and a
barrier at every slot step's end, GDB_SB2=0), sx1db (sx1 with two sets of chunk tiles, GDB_DB=1: the next chunk's
copied during this one's slots; session 14's request 1 measured it slower in 3xTF32, its stc1 the default since).

Each build's gradients against new's / sffma's (max |difference| / max |reference| per output), then the times.
    python benchmarks/device/ab_gd_forms_bwd.py [T,T,..] [reps] [build,build,..]
    python benchmarks/device/ab_gd_forms_bwd.py compile [build,build,..]   (NVRTC only, into CuPy's cache; time none)"""
import os
import sys

import cupy
import numpy as np

import lsattn
from lsattn._chunktree import chunk_layout
from lsattn.backends.cupy import _compile as cc
from lsattn.backends.cupy import gated_delta as cgd
from lsattn.backends.cupy import gated_delta_bwd as gdb

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))  # benchmarks/
from bench_gpu import cupy_ms as ms  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
BH, DK, DV, C = 32, 64, 64, 64
cfg = cc.make_config("float", DK, 16, C)
opts = ("-std=c++17",) + tuple(cc.defines("gated_delta_bwd", cfg))
compile_only = sys.argv[1:2] == ["compile"]
Ts = [] if compile_only else [int(x) for x in sys.argv[1].split(",")] if len(sys.argv) > 1 else [8192]
reps = int(sys.argv[2]) if len(sys.argv) > 2 and not compile_only else 10
# the builds to compile (compile) or time (else: the third argument); None: all
only = (sys.argv[2] if compile_only else sys.argv[3]).split(",") if len(sys.argv) > (2 if compile_only else 3) else None
SMEM_OLD = (C * (DK + 1) + 4 * C * (C + 1) + max(2 * C * 33, C * (C + 1)) + 32 * C) * 4  # session 12's FB_SMEM


def build(src, extra=(), name="gd_forms_bwd"):
    code = "\n".join(cc._source(f) for f in ("common.cu", "gated_delta.cu", "gated_delta_bwd.cu", "gated_delta_bwd_scan.cu")) + "\n" + src
    fn = cupy.RawModule(code=code, options=opts + tuple(extra)).get_function(name)
    fn.max_dynamic_shared_size_bytes = cc.SMEM_MAX
    return fn


fsrc = cc._source("gated_delta_forms_bwd.cu")
s12 = os.path.join(HERE, "gd_forms_bwd_s12.cu")
# name -> (source, options, kernel, smem or the scan's columns per block)
plan = {"s12": (open(s12).read() if os.path.exists(s12) else None, (), "gd_forms_bwd", SMEM_OLD),
        "ffma": (fsrc, ("-DFB_TCM=0",), "gd_forms_bwd", SMEM_OLD),
        "cb": (fsrc, ("-DFB_CBND=1",), "gd_forms_bwd", cfg.smem("gd_forms_bwd")),
        "nost": (fsrc, ("-DFB_STAGED=0",), "gd_forms_bwd", cfg.smem("gd_forms_bwd")),
        "new": (fsrc, (), "gd_forms_bwd", cfg.smem("gd_forms_bwd")),
        "x1": (fsrc, (), "gd_forms_bwd_x1", cfg.smem("gd_forms_bwd"))}
mainf = os.path.join(HERE, "gd_forms_bwd_main.cu")
for name, (kern, extra) in {"main": ("gd_forms_bwd", ()), "x1main": ("gd_forms_bwd_x1", ()), "pf": ("gd_forms_bwd", ("-DFB_PF=1",)),
                            "x1pf": ("gd_forms_bwd_x1", ("-DFB_PF=1",)), "nosplit": ("gd_forms_bwd", ("-DFB_FSPLIT=0",)),
                            "nov4": ("gd_forms_bwd", ("-DFB_V4=0",)), "subst": ("gd_forms_bwd", ("-DFB_BSOLVE=0",)),
                            "nosolve": ("gd_forms_bwd", ("-DFB_ABL=1",)),
                            "nomm": ("gd_forms_bwd", ("-DFB_ABL=2",))}.items():
    src = (open(mainf).read() if os.path.exists(mainf) else None) if name.endswith("main") else fsrc
    plan[name] = (src, extra, kern, cfg.smem("gd_forms_bwd"))
# gd_scan_bwd (smem: FFMA's layout or the tensor cores' padded rows)
FF_SMEM = (3 * DK * C + 2 * DK * 17 + 3 * C * 16 + 256) * 4
plan["sffma"] = (fsrc, ("-DGDB_TCM=0",), "gd_scan_bwd", FF_SMEM)  # main's FFMA products (session 13)
plan["stc"] = (fsrc, (), "gd_scan_bwd", cfg.smem("gd_scan_bwd"))  # tensor cores, 3xTF32 (float32 callers)
plan["sx1"] = (fsrc, (), "gd_scan_bwd_x1", cfg.smem("gd_scan_bwd"))  # tensor cores, 1xTF32 (bfloat16 callers)
TILES = 2 * C * (DK + 4) + DK * (C + 8)  # one set of the chunk tiles (GDB_TW)
plan["sx1r"] = (fsrc, ("-DGDB_PR=0",), "gd_scan_bwd_x1", cfg.smem("gd_scan_bwd"))  # sx1 rounding at every fragment load
SET = 2 * DK * 24 + 3 * C * 20  # one set of the slot buffers (GDB_SET)
plan["sx1s1"] = (fsrc, ("-DGDB_SB2=0",), "gd_scan_bwd_x1", cfg.smem("gd_scan_bwd") - SET * 4)  # sx1, one set of slot buffers
plan["sx1db"] = (fsrc, ("-DGDB_DB=1",), "gd_scan_bwd_x1", cfg.smem("gd_scan_bwd") + TILES * 4)  # sx1, two sets of tiles
builds, sbuilds = {}, {}
for name, (src, extra, kern, x) in plan.items():
    if src is None or (only and name not in only):
        continue
    (builds if kern.startswith("gd_forms") else sbuilds)[name] = (build(src, extra, kern), x)
for name, (fn, smem) in builds.items():
    print(f"{name}: {fn.num_regs} registers, {fn.local_size_bytes} B local, smem {smem} B", flush=True)
for name, (fn, smem) in sbuilds.items():
    print(f"{name}: {fn.num_regs} registers, {fn.local_size_bytes} B local, smem {smem} B", flush=True)
ops = cc.CupyOps(cupy.cuda.Device().id)


class ScanOps:
    """``ops`` for gdb.scan_backward with gd_scan_bwd from one build (smem bytes per block)."""
    xp = cupy

    def __init__(self, fn, smem):
        self.fn, self.smem = fn, smem

    def gd_scan_bwd(self, cfg, *a, x1=False):
        arrays, (T, DK, DV, L, p, F, n, n_old, NLC, merge_last, BH) = a[:16], a[16:]
        self.fn((BH, -(-DV // 16)), (256,), (*arrays, np.int32(T), np.int32(DK), np.int32(DV), np.int32(L),
                np.int64(p), np.int64(F), np.int32(n), np.int32(n_old), np.int32(NLC), np.int32(merge_last)),
                shared_mem=self.smem)


rng = cupy.random.default_rng(0)  # on the device: 32K inputs in milliseconds
for T in Ts:
    L = lsattn.num_levels(T)
    lay = chunk_layout(0, T, C)
    n = lay.n_chunks

    def r(*shape, scale=1.0):
        return rng.standard_normal(shape, dtype=np.float32) * scale

    q, v = r(BH, T, DK), r(BH, T, DV)
    k = r(BH, T, DK)
    k /= cupy.linalg.norm(k, axis=-1, keepdims=True)
    a = -cupy.abs(r(BH, T, scale=0.1))
    beta = 1 / (1 + cupy.exp(-r(BH, T)))
    lam = cupy.abs(r(BH, T, L)) + 0.5
    grads = [r(BH, n, C, DK), r(BH, n, C, DK), r(BH, n, DK, C), r(BH, n, DK, DV), r(BH, n), r(BH, n, C, DV)]
    outs = {}
    times = {}
    for name, (fn, smem) in builds.items():
        o = [cupy.empty_like(x) for x in (q, k, v, a, beta, lam)]
        args = (q, k, v, a, beta, lam, *grads, *o, np.uint64(0), np.int32(T), np.int32(DK), np.int32(DV), np.int32(L), np.int64(0),
                np.int64(lay.first_chunk), np.int32(n))

        times[name] = ms(lambda: fn((n, BH), (256,), args, shared_mem=smem), reps)
        outs[name] = o
    names = ["dq", "dk", "dv", "da", "dbeta", "dlam"]
    for name, o in outs.items():
        err = [float(cupy.abs(x - y).max() / cupy.abs(y).max()) for x, y in zip(o, outs.get("new", o))]
        print(f"T={T} {name}: " + " ".join(f"{m} {e:.1e}" for m, e in zip(names, err)))
    print(f"T={T} ms: " + " ".join(f"{name} {t:.3f}" for name, t in times.items()), flush=True)

    # gd_scan_bwd on the forms of these inputs (the chunk scan's backward for the output gradient grads[5])
    fq = cgd.forms(ops, cfg, q, k, v, a, beta, lam, 0)
    sc = gdb.Scan(cfg, T, 0, lay.first_chunk, n, cgd.chunk_slots(lay.first_chunk, n, T % C == 0), T % C == 0)
    souts, stimes = {}, {}
    for name, (fn, smem) in sbuilds.items():
        so = ScanOps(fn, smem)
        souts[name] = gdb.scan_backward(so, sc, *fq[:5], lam, None, grads[5])
        stimes[name] = ms(lambda: gdb.scan_backward(so, sc, *fq[:5], lam, None, grads[5]), reps)
    names = ["dqe", "dek", "dph", "dH", "dg", "dlam"]
    for name, o in souts.items():
        err = [float(cupy.abs(x - y).max() / cupy.abs(y).max()) for x, y in zip(o[:6], souts["sffma"][:6])]
        print(f"T={T} scan {name}: " + " ".join(f"{m} {e:.1e}" for m, e in zip(names, err)))
    print(f"T={T} scan_backward ms (with its zeroed outputs and scratch): "
          + " ".join(f"{name} {t:.3f}" for name, t in stimes.items()), flush=True)
