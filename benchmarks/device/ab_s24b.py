"""s24b (issue 16): gd_forms_bwd_x1's switches FB_XR (1xTF32 operands that are a tf32 already passed to the mma as they
are), FB_XF (W's and phi's X from a whole X^T tile),
FB_BFREE (dV's operand without branches), FB_P2 (the epilogues' global accesses by pairs), A/B in one process. Builds of
gated_delta_bwd's sources (the training path's defines), TI_BF16 (bf16 callers, GRAD_BF16): b0 = all five 0 (main's
kernel), b1 = the tree's default (all on: bit-equal to b0), x0 / p0 = b1 without FB_XF / FB_P2; f0 / f1 = the float32
build (main's / the tree's: the switches are off there) on the widened inputs (f0 against b0: what main's TI_BF16 build
costs against its float32 build); ns / nm = b1 without the solve / without every product (FB_ABL 1 / 2: timing ablations, wrong
gradients). (Requests 1 / 2 also timed FB_XR 3, FB_KU 2 and FB_TAIL, since removed: NOTES, s24b.)

    python ab_s24b.py warm 0 0 B,B,..       compile the builds (into CuPy's cache), nothing timed
    python ab_s24b.py kernel T,T ROUNDS [B,B,..]   gd_forms_bwd_x1 alone (B=2, H=16, d=64, C=64, random output
                                            gradients), b0 and the builds (default: all but f1, ns, nm) interleaved per
                                            round (CUDA events over 10 launches), medians; the bf16 outputs against b0's
                                            (mismatching entries: 0 expected but for ns / nm)
    python ab_s24b.py public T,T ROUNDS [B,B,..]   one public bf16 fwd+bwd step (lsattn.loglinear_gated_delta on CUDA
                                            bf16 tensors, .backward()) with gd_forms_bwd_x1 from b0 and the builds (of b1,
                                            x0, p0; default b1), interleaved, medians (CUDA events), gradients against b0's
"""
import dataclasses
import os
import statistics
import sys

import cupy
import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), os.path.dirname(os.path.dirname(HERE))]
import lsattn  # noqa: E402
from ab_s19g16 import inputs  # noqa: E402  (B=2, H=16, d=64 bf16 inputs, as s19g16's A/B)
from bench_gpu import events_ms  # noqa: E402
from lsattn._chunktree import chunk_layout  # noqa: E402
from lsattn.backends.cupy import _compile as cc  # noqa: E402

B, H, D, C = 2, 16, 64, 64
BH = B * H
OP = "gated_delta_bwd"
cfg32 = cc.make_config("float", D, 16, C)
cfg16 = dataclasses.replace(cfg32, half="bf16", tc=False)  # gated_delta_bwd.Scan.fcfg
MAIN = ("-DFB_XR=0", "-DFB_XF=0", "-DFB_BFREE=0", "-DFB_P2=0")  # main's kernel (its PTX)
BUILDS = {"b0": (cfg16, MAIN), "b1": (cfg16, ()), "x0": (cfg16, ("-DFB_XF=0",)),
          "p0": (cfg16, ("-DFB_P2=0",)),
          "f0": (cfg32, MAIN), "f1": (cfg32, ()),
          "ns": (cfg16, ("-DFB_ABL=1",)), "nm": (cfg16, ("-DFB_ABL=2",))}  # (ablations, wrong gradients: no solve / no product)
SEL = [b for b in BUILDS if b not in ("ns", "nm", "f1")]  # the builds of this run (argv[4]; b0 always)
if len(sys.argv) <= 4 and sys.argv[1:2] == ["public"]:
    SEL[:] = ["b0", "b1"]
_fns = {}


def fn(name):
    if name not in _fns:
        cfg, extra = BUILDS[name]
        code = "\n".join(cc._source(f) for f in ("common.cu",) + cc._SOURCES[OP])
        f = cupy.RawModule(code=code, options=("-std=c++17",) + cc.defines(OP, cfg) + extra).get_function("gd_forms_bwd_x1")
        f.max_dynamic_shared_size_bytes = cfg.smem("gd_forms_bwd_x1")
        _fns[name] = f
        print(f"{name}: {f.num_regs} registers, {f.local_size_bytes} B local", flush=True)
    return _fns[name]


def timed(runs, rounds):
    """{name: median ms}, {name: [ms a round]} of the callables ``runs`` interleaved: each round runs each once (warm),
    then times 10 calls by CUDA events."""
    ms = {k: [] for k in runs}
    e0, e1 = cupy.cuda.Event(), cupy.cuda.Event()
    for _ in range(rounds):
        for k, run in runs.items():
            run()
            e0.record()
            for _ in range(10):
                run()
            e1.record()
            e1.synchronize()
            ms[k].append(cupy.cuda.get_elapsed_time(e0, e1) / 10)
    return {k: statistics.median(v) for k, v in ms.items()}, ms


def kernel(Ts, rounds):
    for T in Ts:
        L = lsattn.num_levels(T)
        n = chunk_layout(0, T, C).n_chunks
        xs16 = [x.reshape((BH,) + x.shape[2:]).contiguous() for x in inputs(T)]
        x16 = [cupy.asarray(x.view(torch.int16)) for x in xs16]
        w32 = [x.float() for x in xs16]  # (kept: cupy.asarray holds no reference to a torch tensor)
        x32 = [cupy.asarray(x) for x in w32]
        rng = cupy.random.default_rng(1)
        grads = [rng.standard_normal(s, dtype=np.float32) for s in
                 [(BH, n, C, D), (BH, n, C, D), (BH, n, D, C), (BH, n, D, D), (BH, n), (BH, n, C, D)]]
        outs = {}
        for name in SEL:
            xin = x32 if name[0] == "f" else x16
            outs[name] = [cupy.empty_like(x) for x in xin]
        runs = {}
        for name in SEL:
            xin, o, cfg = (x32 if name[0] == "f" else x16), outs[name], BUILDS[name][0]
            args = (*xin, *grads, *o, np.uint64(0), np.int32(T), np.int32(D), np.int32(D), np.int32(L), np.int64(0),
                    np.int64(0), np.int32(n))
            f = fn(name)
            runs[name] = (lambda f=f, args=args, smem=cfg.smem("gd_forms_bwd_x1"): f((n, BH), (256,), args, shared_mem=smem))
            runs[name]()
        cupy.cuda.Device().synchronize()
        names = ["dq", "dk", "dv", "da", "dbeta", "dlam"]
        ref = [torch.as_tensor(x, device="cuda").view(torch.bfloat16).float() for x in outs["b0"]]
        for name in SEL[1:]:
            got = [torch.as_tensor(x, device="cuda") for x in outs[name]]
            got = [x.to(torch.bfloat16).float() if name[0] == "f" else x.view(torch.bfloat16).float() for x in got]
            mis = [int((g != r).sum()) for g, r in zip(got, ref)]
            err = [float((g - r).abs().max() / r.abs().max()) for g, r in zip(got, ref)]
            print(f"T={T} {name} vs b0: mismatches " + " ".join(f"{m} {x}" for m, x in zip(names, mis))
                  + " | max rel " + " ".join(f"{m} {e:.1e}" for m, e in zip(names, err)), flush=True)
        med, ms = timed(runs, rounds)
        print(f"T={T} gd_forms_bwd_x1 ms (median of {rounds}): " + " ".join(f"{k} {v:.4f}" for k, v in med.items())
              + " | /b0 " + " ".join(f"{k} {v / med['b0']:.3f}" for k, v in med.items() if k != "b0")
              + (f" | f0/b0 {med['f0'] / med['b0']:.3f}" if "f0" in med else "") + (f" f1/b1 {med['f1'] / med['b1']:.3f}" if "f1" in med and "b1" in med else "")
              + " | spread " + " ".join(f"{k} {min(v):.4f}-{max(v):.4f}" for k, v in ms.items()),
              flush=True)


MODE = ["b1"]
_orig_launch = cc._launch


def _launch(op, device_id, cfg, name):
    if op == OP and name == "gd_forms_bwd_x1" and cfg.half == "bf16":
        return fn(MODE[0]), (256,), cfg.smem(name)
    return _orig_launch(op, device_id, cfg, name)


def public(Ts, rounds):
    cc._launch = _launch
    names = tuple(b for b in SEL if b in ("b0", "b1", "x0", "p0"))
    for T in Ts:
        xs = [x.requires_grad_(True) for x in inputs(T)]

        def step():
            for x in xs:
                x.grad = None
            lsattn.loglinear_gated_delta(*xs).float().square().mean().backward()

        grads = {}
        for name in names:
            MODE[0] = name
            step()
            step()
            torch.cuda.synchronize()
            grads[name] = [x.grad.float() for x in xs]
        for name in names[1:]:
            err = [float((g - r).abs().max() / r.abs().max()) for g, r in zip(grads[name], grads["b0"])]
            print(f"T={T} public {name} vs b0 grads max rel: " + " ".join(f"{e:.1e}" for e in err), flush=True)
        ms = {name: [] for name in names}
        for _ in range(rounds):
            for name in names:
                MODE[0] = name
                ms[name].append(events_ms(step, 3))
        med = {name: statistics.median(v) for name, v in ms.items()}
        print(f"T={T} public bf16 fwd+bwd ms (median of {rounds}, 3 steps each): "
              + " ".join(f"{k} {v:.3f}" for k, v in med.items())
              + " | /b0 " + " ".join(f"{k} {v / med['b0']:.3f}" for k, v in med.items() if k != "b0"), flush=True)


if __name__ == "__main__":
    mode = sys.argv[1]
    Ts = [int(t) for t in (sys.argv[2] if len(sys.argv) > 2 else "8192").split(",")]
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 7
    if len(sys.argv) > 4:
        SEL[:] = ([] if mode == "warm" else ["b0"]) + [b for b in sys.argv[4].split(",") if b != "b0" or mode == "warm"]
    if mode == "warm":
        for name in SEL:
            fn(name)
    elif mode == "kernel":
        kernel(Ts, rounds)
    else:
        public(Ts, rounds)
