"""Session 17, branch s17c17 (issue 17): ``hierarchical.slots``' split (hi_isum, then hi_merge and hi_snap on a side
stream beside hi_ipair) against the serial order (hi_intra, hi_merge, hi_snap on the caller's stream;
``hierarchical.SPLIT`` False), in one process (a development aid; results in NOTES.md).

    python benchmarks/device/hier_split_s17c17.py warm
        # compiles what the other modes use (B=H=1: bf16 train / no-grad forward, fp32 the same)
    python benchmarks/device/hier_split_s17c17.py equal [T]
        # issue 17's table's bf16 call at T (16384): no-grad output, training output and the gradients of q, k, v,
        # split against serial, bit for bit (prints the largest difference of each)
    python benchmarks/device/hier_split_s17c17.py kab [T] [rounds]
        # the forward's kernels alone (bf16, B=2, H=16, d=64; chunk 32 as the training forward, 64 as the no-grad
        # default from 8K): CUDA events around slots() and around compute() (slots + hi_read) on a queue the host
        # is ahead of (torch.cuda._sleep first), split / serial interleaved, medians
    python benchmarks/device/hier_split_s17c17.py pub bf16:16384 fp32:8192 [--budget S]
        # the table's calls (bench_gpu_hierarchical's timing: empty queue per call, interleaved rounds): fwd+bwd and
        # no-grad fwd, split / serial (bf16: and torch SDPA)
    python benchmarks/device/hier_split_s17c17.py prof bf16:16384
        # hier_prof_s14g17's clocks (7 steps) and one profiled step per configuration: kernels, GPU idle (the first
        # spec only)
    python benchmarks/device/hier_split_s17c17.py kab,pub,prof bf16:16384 fp32:8192 16384 15
        # several modes in one process
"""
import os
import statistics
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]
from bench_gpu_hierarchical import _table_calls, _train, interleaved_times  # noqa: E402  (puts the repo on sys.path)

from lsattn.backends.cupy import hierarchical as chi  # noqa: E402
from lsattn.backends.cupy._arrays import inputs, on_gpu  # noqa: E402

DT = {"fp32": torch.float32, "bf16": torch.bfloat16}


def mode(split, f):
    def run():
        chi.SPLIT = split
        try:
            return f()
        finally:
            chi.SPLIT = True
    return run


def nograd(fn, xs):
    def run():
        with torch.no_grad():
            return fn(*xs)
    return run


def warm():
    for tag, T in (("bf16", 16384), ("fp32", 8192)):
        calls = _table_calls(torch, 256, DT[tag])
        fn, xs = calls["hier"]
        for split in (True, False):
            mode(split, _train(torch, fn, xs))()
            mode(split, nograd(fn, xs))()
            for C in (32, 64):
                with torch.no_grad():
                    chi.SPLIT = split
                    chi.SPLIT_MIN = 0
                    lw, a = calls["hier_extra"]
                    chi.forward(*xs, lw, a, None, False, chunk_size=C)
                    chi.SPLIT, chi.SPLIT_MIN = True, 1024
        torch.cuda.synchronize()
        print("warm", tag, flush=True)
    sd = _table_calls(torch, 256, torch.bfloat16)["sdpa"]
    _train(torch, *sd)()
    torch.cuda.synchronize()


def equal(T):
    calls = _table_calls(torch, T, torch.bfloat16)
    fn, xs = calls["hier"]
    got = {}
    for split in (False, True):
        chi.SPLIT = split
        leaves = [x.detach().clone().requires_grad_(True) for x in xs]
        with torch.no_grad():
            plain = fn(*leaves)
        out = fn(*leaves)
        out.float().square().mean().backward()
        got[split] = [plain, out.detach()] + [x.grad for x in leaves]
    chi.SPLIT = True
    torch.cuda.synchronize()
    for name, a, b in zip(("fwd", "train out", "dq", "dk", "dv"), got[False], got[True]):
        same = torch.equal(torch.nan_to_num(a), torch.nan_to_num(b))
        print(f"T={T} bf16 equal {name}: {'bit-equal' if same else 'DIFFERENT'} (max |diff| "
              f"{(a.float() - b.float()).abs().max().item():.3g})", flush=True)


def kab(T, rounds):
    calls = _table_calls(torch, T, torch.bfloat16)
    (q, k, v), (lw, a) = calls["hier"][1], calls["hier_extra"]
    res = {}
    with on_gpu(q) as (to_cp, back, ops):
        xs, half = inputs(to_cp, [q, k, v, lw, a])
        for C in (32, 64):
            cfg = chi.config("float", 64, 64, C, half)
            f_slots = lambda: chi.slots(ops, cfg, *xs[:4], xs[4], 0, None)  # noqa: E731
            f_comp = lambda: chi.compute(ops, *xs[:4], xs[4], 0, None, C, half)  # noqa: E731
            fns = {f"C={C} slots split": mode(True, f_slots), f"C={C} slots serial": mode(False, f_slots),
                   f"C={C} compute split": mode(True, f_comp), f"C={C} compute serial": mode(False, f_comp)}
            for f in fns.values():
                f()
            torch.cuda.synchronize()
            ts = {n: [] for n in fns}
            names = list(fns)
            for r in range(rounds):
                for i in range(len(names)):
                    n = names[(i + r) % len(names)]
                    torch.cuda._sleep(2_000_000)  # ~1 ms: the host queues the call before the GPU reaches it
                    e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                    e0.record()
                    fns[n]()
                    e1.record()
                    e1.synchronize()
                    ts[n].append(e0.elapsed_time(e1))
            res.update({n: statistics.median(v) for n, v in ts.items()})
    print(f"T={T} bf16 kernels alone (ms, median of {rounds}): " + ", ".join(f"{n} {v:.3f}" for n, v in res.items()),
          flush=True)


def pub(specs, budget):
    for tag, T in specs:
        calls = _table_calls(torch, T, DT[tag])
        fn, xs = calls["hier"]
        train = _train(torch, fn, xs)
        fns = {"train split": mode(True, train), "train serial": mode(False, train)}
        if tag == "bf16":
            fns["train sdpa"] = _train(torch, *calls["sdpa"])
        got = interleaved_times(fns, reps=40, budget_s=budget)
        fwd = {"fwd split": mode(True, nograd(fn, xs)), "fwd serial": mode(False, nograd(fn, xs))}
        if tag == "bf16":
            fwd["fwd sdpa"] = nograd(*calls["sdpa"])
        got.update(interleaved_times(fwd, reps=40, budget_s=budget / 2))
        print(f"T={T} {tag} ms (interleaved medians): " + ", ".join(
            f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in got.items()), flush=True)
        if tag == "bf16":
            for m in ("train", "fwd"):
                print(f"T={T} {tag} {m} ours / SDPA: split {got[m + ' split'] / got[m + ' sdpa']:.3f}, serial "
                      f"{got[m + ' serial'] / got[m + ' sdpa']:.3f}", flush=True)
        del calls, fn, xs, fns, fwd
        torch.cuda.empty_cache()


def prof(specs):
    import hier_prof_s14g17 as hp

    tdir = os.environ.get("OUT", "/tmp")
    for tag, T in specs:
        fn, xs = hp.leaves(T, DT[tag])
        for split in (True, False):
            chi.SPLIT = split
            for _ in range(2):
                hp.step(fn, xs)
            print(f"T={T} {tag} split={split} clocks (median of 7, ms): {hp.clocks(fn, xs)}", flush=True)
            p = hp.profile(fn, xs, os.path.join(tdir, f"trace_{tag}_{T}_{'split' if split else 'serial'}.json"))
            for ph, r in p.items():
                print(f"T={T} {tag} split={split} {ph}: span {r['span_ms']:.3f} ms (profiled), GPU busy "
                      f"{r['busy_ms']:.3f}, idle before the first GPU op {r['before_first_ms']:.3f}, idle between ops "
                      f"{r['gaps_ms']:.3f}, {r['launches']} GPU ops", flush=True)
                for k, (n, ms) in r["kernels"].items():
                    print(f"    {ms:8.4f} ms  x{n:<3d} {k}", flush=True)
                if ph == "fwd":  # (host launch, GPU start, GPU duration, op) of the forward's ops, ms from its start
                    for row in r["timeline"][:24]:
                        print("  tl", *row, flush=True)
        chi.SPLIT = True
        del xs
        torch.cuda.empty_cache()


def main():
    """``what`` may list several modes (``kab,pub,prof``): one process, one import."""
    t0 = time.perf_counter()
    specs = [(s.split(":")[0], int(s.split(":")[1])) for s in sys.argv[2:] if ":" in s]
    nums = [int(s) for s in sys.argv[2:] if s.isdigit()]
    for what in sys.argv[1].split(","):
        try:
            if what == "warm":
                warm()
            elif what == "equal":
                equal(nums[0] if nums else 16384)
            elif what == "kab":
                kab(nums[0] if nums else 16384, nums[1] if len(nums) > 1 else 15)
            elif what == "pub":
                pub(specs, float(sys.argv[sys.argv.index("--budget") + 1]) if "--budget" in sys.argv else 3.0)
            elif what == "prof":
                prof(specs[:1])
        except Exception as exc:  # noqa: BLE001  (reported; the next mode runs)
            print(f"{what} failed: {type(exc).__name__}: {exc}", flush=True)
        print(f"-- {what} done at {time.perf_counter() - t0:.1f} s", flush=True)


if __name__ == "__main__":
    main()
