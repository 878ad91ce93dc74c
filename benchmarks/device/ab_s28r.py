"""s27r (issue 16, R1 of benchmarks/NOTES.md "Session 27 — s27p"): ``gated_delta_bwd.FORMS_X_SAVED`` (gd_forms' GF_XO
build keeps each chunk's X = (I + N)^{-1}, gd_forms_bwd(_x1)'s FB_XIN build reads it instead of fb_solve + the X^T pass),
A/B in one process. Predicted (s27p): gd_forms_bwd_x1 0.75-0.8x (32K 6.13 -> 4.6-4.85 ms, 16K 3.14 -> 2.35-2.5), gd_forms
+0.03-0.08 ms at 32K, the bf16 fwd+bwd step 16K 8.11 -> 7.35-7.5, 32K 15.88 -> 14.4-14.7 ms, peak memory + 256 T bytes a
sequence (32K, B H = 32: +268 MB).

    python ab_s28r.py public T,T [REPS]   the public bf16 fwd+bwd step (ab_s24a.one: B=2, H=16, d=64, CUDA-event
                                          medians of REPS rounds of 5 steps, latency, peak memory, the gd_ kernels per
                                          step, the gradients on / off) with FORMS_X_SAVED off / on rotated
    python ab_s28r.py public32 T,T [REPS] the same with float32 inputs
    python ab_s28r.py kernel T,T [ROUNDS] the kernels alone on the S16 path's builds (B=2, H=16, d=64, C=64, random
                                          output gradients): gd_forms default (f0) / GF_XO writing X (f1), outputs bit
                                          for bit; gd_forms_bwd_x1 default (b0) / FB_XIN reading the forward's X (b1),
                                          interleaved per round (CUDA
                                          events over 10 calls of the host function), medians; gradients against b0's
"""
import dataclasses
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE), os.path.dirname(os.path.dirname(HERE))]
import cupy  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import lsattn  # noqa: E402
from lsattn._chunktree import chunk_layout  # noqa: E402
from lsattn.backends.cupy import _compile as cc, gated_delta as cgd, gated_delta_bwd as gdb  # noqa: E402
from ab_s24b import timed  # noqa: E402  (builds interleaved, CUDA events over 10 calls)

B, H, D, C = 2, 16, 64, 64
BH = B * H


def mode(m):
    """'off': the default (X solved again by gd_forms_bwd_x1); 'on': FORMS_X_SAVED."""
    gdb.FORMS_X_SAVED = m == "on"


def public(Ts, reps):
    import ab_s24a

    ab_s24a.mode = mode  # (ab_s24a.one reads its module's ``mode``; MODES ("on", "off"))
    rows = [ab_s24a.one(T, reps) for T in Ts]
    mode("off")
    print("| T | off ms | on (FORMS_X_SAVED) ms | on/off | latency off / on | peak GB off / on |")
    print("|---|---:|---:|---:|---|---|")
    for T, med, ml, mem in rows:
        print(f"| {T} | {med['off']:.3f} | {med['on']:.3f} | {med['on'] / med['off']:.3f} | {ml['off']:.3f} / "
              f"{ml['on']:.3f} | {mem['off']:.2f} / {mem['on']:.2f} |", flush=True)


def kernel(Ts, rounds):
    from ab_s19g16 import inputs

    ops = cc.CupyOps(cupy.cuda.Device().id)
    cfg = cgd._config("float", D, C, "bf16", True)  # the S16 training path's forms builds (Scan.fcfg)
    for T in Ts:
        L = lsattn.num_levels(T)
        lay = chunk_layout(0, T, C)
        n = lay.n_chunks
        keep = [x.reshape((BH,) + x.shape[2:]).contiguous() for x in inputs(T)]
        x16 = [cupy.asarray(x.view(torch.int16)) for x in keep]
        sc0 = gdb.Scan(cfg, T, 0, lay.first_chunk, n, 1, False, True, "bf16")
        sc1 = dataclasses.replace(sc0, xs=True)
        lamw = cupy.empty((BH, T, L), dtype=cupy.float32)
        xo = gdb.forms_x(ops, sc1, BH)
        fo = {"f0": lambda: cgd.forms(ops, sc0.fcfg, *x16, 0, lamw),
              "f1": lambda: cgd.forms(ops, sc1.fcfg, *x16, 0, lamw, xo=xo)}
        outs = {k: [cupy.array(y) for y in f()] for k, f in fo.items()}
        mis = [int((a.view(cupy.int32 if a.dtype.itemsize == 4 else cupy.int16) !=
                    b.view(cupy.int32 if b.dtype.itemsize == 4 else cupy.int16)).sum()) for a, b in zip(outs["f0"], outs["f1"])]
        print(f"T={T} gd_forms GF_XO vs default: mismatching entries (qe ek ph H g out) {mis}; X {xo.nbytes / 1e6:.1f} MB, "
              f"finite {bool(cupy.isfinite(xo).all())}", flush=True)
        med, ms = timed(fo, rounds)
        print(f"T={T} gd_forms ms (median of {rounds}): f0 {med['f0']:.4f} f1 {med['f1']:.4f} f1-f0 "
              f"{med['f1'] - med['f0']:+.4f} | spread " + " ".join(f"{k} {min(v):.4f}-{max(v):.4f}" for k, v in ms.items()),
              flush=True)
        rng = cupy.random.default_rng(1)
        grads = [rng.standard_normal(s, dtype=np.float32) for s in
                 [(BH, n, C, D), (BH, n, C, D), (BH, n, D, C), (BH, n, D, D), (BH, n), (BH, n, C, D)]]
        bw = {"b0": lambda: gdb.forms_backward(ops, sc0, *x16, grads),
              "b1": lambda: gdb.forms_backward(ops, sc1, *x16, grads, xin=xo)}
        res = {k: [torch.as_tensor(y, device="cuda").view(torch.bfloat16).float() for y in f()] for k, f in bw.items()}
        names = ["dq", "dk", "dv", "da", "dbeta", "dlam"]
        for k in ("b1",):
            mm = [int((g != r).sum()) for g, r in zip(res[k], res["b0"])]
            err = [float((g - r).abs().max() / r.abs().max()) for g, r in zip(res[k], res["b0"])]
            print(f"T={T} {k} vs b0: mismatches " + " ".join(f"{a} {m}" for a, m in zip(names, mm)) + " | max rel "
                  + " ".join(f"{a} {e:.1e}" for a, e in zip(names, err)), flush=True)
        del res
        med, ms = timed(bw, rounds)
        print(f"T={T} gd_forms_bwd_x1 ms (median of {rounds}, host call included): "
              + " ".join(f"{k} {v:.4f}" for k, v in med.items())
              + f" | b1/b0 {med['b1'] / med['b0']:.3f} | spread "
              + " ".join(f"{k} {min(v):.4f}-{max(v):.4f}" for k, v in ms.items()), flush=True)
        del x16, keep, grads, outs, xo, lamw
        cupy.get_default_memory_pool().free_all_blocks()


if __name__ == "__main__":
    Ts = [int(t) for t in sys.argv[2].split(",")]
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 7
    if sys.argv[1] == "public32":  # the float32 callers' step (3xTF32 gd_forms_bwd, its FB_XIN build)
        import ab_s24a

        ab_s24a.DTYPE = torch.float32
    (public if sys.argv[1].startswith("public") else kernel)(Ts, n)
