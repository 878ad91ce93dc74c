"""Session 17, branch s17g17 (issue 17): ``hi_intra`` of the hierarchical training forward launched from the torch
tensors' pointers before the CuPy views (``hierarchical_direct.DIRECT``) against the views first (False: main's host
path), in one process (a development aid; results in NOTES.md). The calls are issue 17's table's
(``bench_gpu_hierarchical._table_calls`` / ``_train``: B=2, H=16, d=64, leaves q, k, v, ``out.float().square().mean()``).

    python benchmarks/device/hier_direct_s17g17.py warm          # compiles (B=H=1: bf16 16K, fp32 8K; both flags)
    python benchmarks/device/hier_direct_s17g17.py eq bf16:300 fp32:300 bf16:16384
        # one step per flag on the same leaves: output and gradients bit-equal? (and whether the direct path ran)
    python benchmarks/device/hier_direct_s17g17.py times bf16:16384 [fp32:8192] [--budget S]
        # (1) interleaved medians (the table's timing) of fwd+bwd direct / views / SDPA (bf16); (2) per flag, median of
        # 9 alternated steps on an empty queue: host ms at hi_intra's launch and GPU ms at hi_intra's end from the
        # step's start (a CUDA event recorded right after the launch), the forward call's host ms
(Run at 68f48d5, where every dtype took the direct path; the tree's takes it for bfloat16 only. The views path's
"GPU at hi_intra's end" is wrong: its event did not order after hi_intra, NOTES s17g17.)
"""
import os
import statistics
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]
import hier_prof_s14g17 as hp  # noqa: E402
from bench_gpu_hierarchical import _table_calls, _train, interleaved_times  # noqa: E402

from lsattn.backends.cupy import _compile, hierarchical_direct as hd  # noqa: E402

DT = {"fp32": torch.float32, "bf16": torch.bfloat16}
MARK = {}


def flag(on, f):
    def run():
        hd.DIRECT = on
        try:
            return f()
        finally:
            hd.DIRECT = True
    return run


def _instrument():
    """Host clock and a CUDA event right after hi_intra's launch, on either path."""
    import cupy

    orig_intra, orig_op = hd.intra, _compile.CupyOps.hi_intra

    def intra(*a, **kw):
        r = orig_intra(*a, **kw)
        if r is not None and "h" not in MARK:  # (the step's first)
            MARK["h"] = time.perf_counter()
            MARK["e"] = torch.cuda.Event(enable_timing=True)
            MARK["e"].record()
            MARK["direct"] = MARK.get("direct", 0) + 1
        return r

    def op(self, *a, **kw):
        orig_op(self, *a, **kw)
        MARK["views"] = MARK.get("views", 0) + 1
        if "h" in MARK:  # (the step's first only)
            return
        MARK["h"] = time.perf_counter()
        MARK["e"] = torch.cuda.Event(enable_timing=True)
        with torch.cuda.stream(torch.cuda.ExternalStream(cupy.cuda.get_current_stream().ptr)):
            MARK["e"].record()
    hd.intra = intra
    _compile.CupyOps.hi_intra = op


def eq(specs):
    _instrument()
    for tag, T in specs:
        fn, xs = hp.leaves(T, DT[tag])
        got = {}
        for on in (True, False):
            MARK.clear()  # (the counts)
            hd.DIRECT = on
            for x in xs:
                x.grad = None
            out = fn(*xs)
            out.float().square().mean().backward()
            torch.cuda.synchronize()
            got[on] = [out.detach().clone()] + [x.grad.clone() for x in xs]
            print(f"{tag}:{T} DIRECT={on}: direct launches {MARK.get('direct', 0)}, view-path launches "
                  f"{MARK.get('views', 0)}", flush=True)
        hd.DIRECT = True
        same = [torch.equal(a, b) for a, b in zip(got[True], got[False])]
        print(f"{tag}:{T} bit-equal (out, dq, dk, dv): {same}", flush=True)


def times(specs, budget):
    for tag, T in specs:
        calls = _table_calls(torch, T, DT[tag])
        fn, xs = calls["hier"]
        train = _train(torch, fn, xs)
        fns = {"direct": flag(True, train), "views": flag(False, train)}
        if tag == "bf16":
            fns["sdpa"] = _train(torch, *calls["sdpa"])
        got = interleaved_times(fns, reps=40, budget_s=budget)
        print(f"T={T} {tag} fwd+bwd ms (interleaved medians): " + ", ".join(
            f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in got.items()), flush=True)
        if tag == "bf16" and all(isinstance(got[k], float) for k in fns):
            print(f"T={T} {tag} / SDPA: direct {got['direct'] / got['sdpa']:.3f}, views {got['views'] / got['sdpa']:.3f}",
                  flush=True)
        del calls, fns
    _instrument()
    for tag, T in specs:
        fn, xs = hp.leaves(T, DT[tag])
        rows = {True: [], False: []}
        for r in range(18):
            on = bool(r % 2)
            hd.DIRECT = on
            for x in xs:
                x.grad = None
            MARK.pop("h", None)
            torch.cuda.synchronize()
            e0 = torch.cuda.Event(enable_timing=True)
            e0.record()
            h0 = time.perf_counter()
            out = fn(*xs)
            h1 = time.perf_counter()
            out.float().square().mean().backward()
            torch.cuda.synchronize()
            rows[on].append(((MARK["h"] - h0) * 1e3, e0.elapsed_time(MARK["e"]), (h1 - h0) * 1e3))
        hd.DIRECT = True
        for on in (False, True):
            med = [statistics.median(x[i] for x in rows[on]) for i in range(3)]
            print(f"T={T} {tag} {'direct' if on else 'views '}: host at hi_intra's launch {med[0]:.3f} ms, GPU at "
                  f"hi_intra's end {med[1]:.3f} ms, forward call host {med[2]:.3f} ms (medians of 9)", flush=True)


def main():
    what = sys.argv[1]
    specs = [(s.split(":")[0], int(s.split(":")[1])) for s in sys.argv[2:] if ":" in s]
    if what == "warm":
        for tag, T in (("bf16", 16384), ("fp32", 8192)):
            fn, xs = hp.leaves(T, DT[tag], batch=True)
            for on in (True, False):
                hd.DIRECT = on
                hp.step(fn, xs)
            torch.cuda.synchronize()
            print("warm", tag, T, flush=True)
        hd.DIRECT = True
    elif what == "eq":
        eq(specs)
    else:
        budget = float(sys.argv[sys.argv.index("--budget") + 1]) if "--budget" in sys.argv else 6.0
        times(specs, budget)


if __name__ == "__main__":
    main()
