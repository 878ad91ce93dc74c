"""Session 16, branch s16d17 (issue 17): where a hierarchical training step goes outside the backward's kernels, and
this branch's host / elementwise changes against main's order of the checks, in one process (a development aid;
results in NOTES.md). The calls are issue 17's table's (``bench_gpu_hierarchical._table_calls``: B=2, H=16, d=64,
leaves q, k, v, ``loss = out.float().square().mean()``).

    python benchmarks/device/hier_step_s16d17.py warm
        # compiles what ``times`` uses (B=H=1: fwd+bwd and the no-grad forward, bf16 16K and fp32 8K)
    python benchmarks/device/hier_step_s16d17.py times bf16:16384 fp32:8192 [--budget S] [--no-prof] [--no-spans]
        # per spec: (1) interleaved (bench_gpu_hierarchical.interleaved_times, the table's timing) fwd+bwd and no-grad
        # fwd of ours with the checks deferred and made after hi_intra's launch ("new": _nonfinite.DEFER, EARLY, the
        # tree's default), deferred to the prologue's access ("late": EARLY False, request 1's), made at the call's
        # start ("eager": main's order; all with the tree's other changes), torch SDPA; fp32 also the
        # array-API path's fwd+bwd (2 rounds); (2) hier_prof_s14g17's clocks (7 unprofiled steps) and torch.profiler
        # of one step: kernels per phase, GPU idle before the first op and between ops, the first 60 GPU ops'
        # timeline (host launch, GPU start, duration); (3) hier_prof_s14g17.hostspans (host clock per stage of the
        # forward call, GPU at hi_intra) with the checks deferred and eager
"""
import os
import statistics
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]
import hier_prof_s14g17 as hp  # noqa: E402
from bench_gpu_hierarchical import _table_calls, _train, interleaved_times  # noqa: E402  (puts the repo on sys.path)

import lsattn  # noqa: E402
from lsattn import _nonfinite  # noqa: E402

DT = {"fp32": torch.float32, "bf16": torch.bfloat16}


def deferred(flag, f, early=True):
    def run():
        _nonfinite.DEFER, _nonfinite.EARLY = flag, early
        try:
            return f()
        finally:
            _nonfinite.DEFER = _nonfinite.EARLY = True
    return run


def nograd(fn, xs):
    def run():
        with torch.no_grad():
            fn(*xs)
    return run


def ab(tag, T, budget):
    calls = _table_calls(torch, T, DT[tag])
    fn, xs = calls["hier"]
    sfn, sxs = calls["sdpa"]
    train = _train(torch, fn, xs)
    fns = {"train new": deferred(True, train), "train late": deferred(True, train, False),
           "train eager": deferred(False, train)}
    if tag == "bf16":
        fns["train sdpa"] = _train(torch, sfn, sxs)
    got = interleaved_times(fns, reps=40, budget_s=budget)
    fwd = {"fwd new": deferred(True, nograd(fn, xs)), "fwd late": deferred(True, nograd(fn, xs), False),
           "fwd eager": deferred(False, nograd(fn, xs))}
    if tag == "bf16":
        fwd["fwd sdpa"] = nograd(sfn, sxs)
    got.update(interleaved_times(fwd, reps=40, budget_s=budget / 3))
    print(f"T={T} {tag} ms (interleaved medians): " + ", ".join(
        f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in got.items()), flush=True)
    if tag == "bf16":
        for m in ("train", "fwd"):
            print(f"T={T} {tag} {m} ours / SDPA: new {got[m + ' new'] / got[m + ' sdpa']:.3f}, late "
                  f"{got[m + ' late'] / got[m + ' sdpa']:.3f}, eager {got[m + ' eager'] / got[m + ' sdpa']:.3f}",
                  flush=True)
    if tag == "fp32":
        lw, a = calls["hier_extra"]
        api = _train(torch, lambda q, k, v: lsattn.loglinear_log_attention(q, k, v, lw, log_decay=a, backend="array_api"),
                     xs)
        api()
        torch.cuda.synchronize()
        ts = []
        for _ in range(2):
            e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            e0.record()
            api()
            e1.record()
            e1.synchronize()
            ts.append(e0.elapsed_time(e1))
        print(f"T={T} fp32 fwd+bwd array-API {statistics.median(ts):.3f} ms: / new {statistics.median(ts) / got['train new']:.1f}x"
              f", / late {statistics.median(ts) / got['train late']:.1f}x, / eager {statistics.median(ts) / got['train eager']:.1f}x",
              flush=True)
    del calls, fn, xs, sxs, fns, fwd
    torch.cuda.empty_cache()


def prof(tag, T, tdir):
    fn, xs = hp.leaves(T, DT[tag])
    for _ in range(2):
        hp.step(fn, xs)
    print(f"T={T} {tag} clocks (median of 7, ms): {hp.clocks(fn, xs)}", flush=True)
    p = hp.profile(fn, xs, os.path.join(tdir, f"trace_{tag}_{T}.json"))
    for ph, r in p.items():
        print(f"T={T} {tag} {ph}: span {r['span_ms']:.3f} ms (profiled), GPU busy {r['busy_ms']:.3f}, idle before the "
              f"first GPU op {r['before_first_ms']:.3f}, idle between ops {r['gaps_ms']:.3f}, {r['launches']} GPU ops",
              flush=True)
        for k, (n, ms) in r["kernels"].items():
            print(f"    {ms:8.4f} ms  x{n:<3d} {k}", flush=True)
        print(f"T={T} {tag} {ph} timeline (ms from the phase's start: host launch, GPU start, GPU duration, op):",
              flush=True)
        for row in r["timeline"][:60]:
            print("  tl", *row, flush=True)
    del xs
    torch.cuda.empty_cache()


def main():
    what = sys.argv[1]
    if what == "warm":
        for tag, T in (("fp32", 8192), ("bf16", 16384)):
            fn, xs = hp.leaves(T, DT[tag], batch=True)
            hp.step(fn, xs)
            with torch.no_grad():
                fn(*xs)
            torch.cuda.synchronize()
            print("warm", tag, T, flush=True)
        return
    budget = float(sys.argv[sys.argv.index("--budget") + 1]) if "--budget" in sys.argv else 3.0
    specs = [(s.split(":")[0], int(s.split(":")[1])) for s in sys.argv[2:] if ":" in s]
    tdir = os.environ.get("OUT", "/tmp")
    t0 = time.perf_counter()
    pieces = (ab,) if "--no-prof" in sys.argv else (ab, prof)
    for tag, T in specs:
        for piece in pieces:
            try:
                piece(tag, T, budget if piece is ab else tdir)
            except Exception as exc:  # noqa: BLE001  (reported; the next piece runs)
                print(f"T={T} {tag} {piece.__name__} failed: {type(exc).__name__}: {exc}", flush=True)
        print(f"-- {tag}:{T} done at {time.perf_counter() - t0:.1f} s", flush=True)
    for flag in (True, False) if "--no-spans" not in sys.argv else ():
        _nonfinite.DEFER = flag
        print(f"hostspans, checks {'deferred' if flag else 'eager'}:", flush=True)
        hp.hostspans(specs)
    _nonfinite.DEFER = True


if __name__ == "__main__":
    main()
