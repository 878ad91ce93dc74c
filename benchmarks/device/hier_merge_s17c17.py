"""Session 17, branch s17c17 (issue 17): hi_merge with its held slots staged in shared memory (``HI_MSTAGE`` 1, the
tree) against session 14's loads into registers (``HI_MSTAGE`` 0, main's), in one process (a development aid; results
in NOTES.md). Request 1 timed the split of ``hierarchical.slots`` (hi_isum / hi_ipair on two streams, since removed)
with this file's earlier form (``hier_split_s17c17.py`` at 717c7ae).

    python benchmarks/device/hier_merge_s17c17.py warm
        # compiles what the other modes use (B=H=1: bf16 train / no-grad forward, fp32 the same; both hi_merge builds)
    python benchmarks/device/hier_merge_s17c17.py equal [T]
        # issue 17's table's bf16 call at T (16384): no-grad output, training output and the gradients of q, k, v,
        # staged against main's hi_merge, bit for bit
    python benchmarks/device/hier_merge_s17c17.py merge [T] [rounds]
        # hi_merge alone (every depth of one bf16 call at chunk 32 and 64, the same summaries restored before each
        # timing): staged against main's and staged at 5 blocks per SM, interleaved medians; slots and total decays
        # compared bit for bit
    python benchmarks/device/hier_merge_s17c17.py pub bf16:16384 fp32:8192 [--budget S]
        # the table's calls (bench_gpu_hierarchical's timing: empty queue per call, interleaved rounds): fwd+bwd and
        # no-grad fwd, staged / main's hi_merge (bf16: and torch SDPA)
    python benchmarks/device/hier_merge_s17c17.py prof bf16:16384
        # hier_prof_s14g17's clocks (7 steps) and one profiled step of the tree: kernels, GPU idle (the first spec)
    python benchmarks/device/hier_merge_s17c17.py merge,pub,prof bf16:16384 fp32:8192 16384 15
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
from lsattn.backends.cupy._compile import CupyOps  # noqa: E402

DT = {"fp32": torch.float32, "bf16": torch.bfloat16}


def _main_smem(cfg):
    return (cfg.DKP + 16 + 64) * (8 if cfg.ta == "double" else 4)  # main's hi_merge's (it reads none)


_MAIN = {}  # cfg -> main's hi_merge (HI_MSTAGE 0)


def _main_merge(self, cfg, wm, wz, wn, wS, gch, gnode, DK, DV, F, n, n_old, c0, d, count, BH):
    """CupyOps.hi_merge with main's kernel (CuPy's launch: its host time is beside the GPU's queue here)."""
    k = _MAIN.get(cfg)
    if k is None:
        k = _MAIN[cfg] = merge_variant(0, cfg, self.device_id)
    i, l = self._i, self._l
    k((count, wm.shape[1], BH), (256,), (wm, wz, wn, wS, gch, gnode, i(DK), i(DV), l(F), i(n), i(n_old), l(c0), i(d)),
      shared_mem=_main_smem(cfg))


_STAGED = CupyOps.hi_merge


def mode(main, f):
    def run():
        CupyOps.hi_merge = _main_merge if main else _STAGED
        try:
            return f()
        finally:
            CupyOps.hi_merge = _STAGED
    return run


def nograd(fn, xs):
    def run():
        with torch.no_grad():
            return fn(*xs)
    return run


def warm():
    import cupy

    for tag in ("bf16", "fp32"):
        calls = _table_calls(torch, 256, DT[tag])
        fn, xs = calls["hier"]
        for main in (False, True):
            mode(main, _train(torch, fn, xs))()
            mode(main, nograd(fn, xs))()
            with torch.no_grad():  # chunk 64 (the no-grad default from 8K tokens)
                mode(main, lambda: chi.forward(*xs, *calls["hier_extra"], None, False, chunk_size=64))()
        torch.cuda.synchronize()
        print("warm", tag, flush=True)
    _train(torch, *_table_calls(torch, 256, torch.bfloat16)["sdpa"])()
    for C in (32, 64):  # merge's builds
        for stage, minb in ((0, None), (1, None), (1, 5)):
            merge_variant(stage, chi.config("float", 64, 64, C, "bf16"), cupy.cuda.Device().id, minb)
    torch.cuda.synchronize()
    print("warm merge builds", flush=True)


def equal(T):
    calls = _table_calls(torch, T, torch.bfloat16)
    fn, xs = calls["hier"]
    got = {}
    for main in (True, False):
        def run():
            leaves = [x.detach().clone().requires_grad_(True) for x in xs]
            with torch.no_grad():
                plain = fn(*leaves)
            out = fn(*leaves)
            out.float().square().mean().backward()
            return [plain, out.detach()] + [x.grad for x in leaves]
        got[main] = mode(main, run)()
    torch.cuda.synchronize()
    for name, a, b in zip(("fwd", "train out", "dq", "dk", "dv"), got[True], got[False]):
        same = torch.equal(torch.nan_to_num(a), torch.nan_to_num(b))
        print(f"T={T} bf16 staged vs main's hi_merge, {name}: {'bit-equal' if same else 'DIFFERENT'} (max |diff| "
              f"{(a.float() - b.float()).abs().max().item():.3g})", flush=True)


def merge_variant(stage, cfg, dev, minb=None):
    """hi_merge compiled with ``HI_MSTAGE`` = ``stage`` (and ``HI_MMINB`` = ``minb`` blocks per SM) from common.cu and
    hierarchical.cu alone (the forward's other files left out: a short NVRTC compile; the caches cleared after)."""
    from lsattn.backends.cupy import _compile

    orig, names = _compile._source, _compile._KERNELS["hierarchical"]
    pre = f"#define HI_MSTAGE {stage}\n" + ("" if minb is None else f"#define HI_MMINB {minb}\n")
    _compile._source = lambda n: (pre + orig(n) if n == "hierarchical.cu" else
                                  "" if n.startswith("hierarchical_") else orig(n))
    _compile._KERNELS["hierarchical"] = ("hi_merge",)
    _compile._kernels.cache_clear()
    _compile._launch.cache_clear()
    try:
        return dict(_compile._kernels("hierarchical", dev, cfg))["hi_merge"]
    finally:
        _compile._source, _compile._KERNELS["hierarchical"] = orig, names
        _compile._kernels.cache_clear()
        _compile._launch.cache_clear()
        _compile._RAW.clear()


def kab_merge(T, rounds, C=32):
    """hi_merge alone (all depths of one call, bf16, chunk C): staged (HI_MSTAGE 1, the tree) against main's (0: session
    14's loads into registers) on the same summaries (restored before every timing), interleaved; outputs compared."""
    import cupy

    calls = _table_calls(torch, T, torch.bfloat16)
    (q, k, v), (lw, a) = calls["hier"][1], calls["hier_extra"]
    with on_gpu(q) as (to_cp, back, ops):
        xs, half = inputs(to_cp, [q, k, v, lw, a])
        cfg = chi.config("float", 64, 64, C, half)
        rec = []
        merge, snap = ops.hi_merge, ops.hi_snap
        ops.hi_merge = lambda *args: rec.append(args)  # (the summaries before any merge, and the launches' arguments)
        ops.hi_snap = lambda *args: None
        try:
            w = chi.slots(ops, cfg, *xs[:4], xs[4], 0, None)
        finally:
            ops.hi_merge, ops.hi_snap = merge, snap
        gnode = rec[0][6]
        state = [w.wm, w.wz, w.wn, w.wS, gnode]
        saved = [x.copy() for x in state]
        _, block, smem = ops._tk("hierarchical", cfg, "hi_merge")
        dev = cupy.cuda.Device().id
        mods = {"staged": (merge_variant(1, cfg, dev), smem), "main": (merge_variant(0, cfg, dev), _main_smem(cfg)),
                "staged5": (merge_variant(1, cfg, dev, 5), smem)}  # (5 blocks per SM: 46 registers)
        i, l = ops._i, ops._l

        def run(name):
            for x, y in zip(state, saved):
                x[...] = y
            k, sm = mods[name]
            e0, e1 = cupy.cuda.Event(), cupy.cuda.Event()
            e0.record()
            for (_, wm, wz, wn, wS, gch, gn, DK, DV, F, n, n_old, c0, d, count, BH) in rec:
                k((count, wm.shape[1], BH), block, (wm, wz, wn, wS, gch, gn, i(DK), i(DV), l(F), i(n), i(n_old), l(c0),
                                                    i(d)), shared_mem=sm)
            e1.record()
            e1.synchronize()
            return cupy.cuda.get_elapsed_time(e0, e1)

        outs = {}
        for name in mods:
            run(name)
            outs[name] = [x.copy() for x in state]
        same = all(bool(cupy.array_equal(x, y, equal_nan=True)) for v in ("main", "staged5")
                   for x, y in zip(outs["staged"], outs[v]))
        ts = {name: [] for name in mods}
        names = list(mods)
        for r in range(rounds):
            for x in range(len(names)):
                name = names[(x + r) % len(names)]
                ts[name].append(run(name))
    print(f"T={T} bf16 C={C} hi_merge alone ({len(rec)} launches, ms, median of {rounds}): "
          + ", ".join(f"{n} {statistics.median(v):.4f}" for n, v in ts.items())
          + f"; slots and total decays of the three {'bit-equal' if same else 'DIFFERENT'}", flush=True)


def pub(specs, budget):
    for tag, T in specs:
        calls = _table_calls(torch, T, DT[tag])
        fn, xs = calls["hier"]
        train = _train(torch, fn, xs)
        fns = {"train staged": mode(False, train), "train main": mode(True, train)}
        if tag == "bf16":
            fns["train sdpa"] = _train(torch, *calls["sdpa"])
        got = interleaved_times(fns, reps=40, budget_s=budget)
        fwd = {"fwd staged": mode(False, nograd(fn, xs)), "fwd main": mode(True, nograd(fn, xs))}
        if tag == "bf16":
            fwd["fwd sdpa"] = nograd(*calls["sdpa"])
        got.update(interleaved_times(fwd, reps=40, budget_s=budget / 2))
        print(f"T={T} {tag} ms (interleaved medians): " + ", ".join(
            f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in got.items()), flush=True)
        if tag == "bf16":
            for m in ("train", "fwd"):
                print(f"T={T} {tag} {m} ours / SDPA: staged {got[m + ' staged'] / got[m + ' sdpa']:.3f}, main's merge "
                      f"{got[m + ' main'] / got[m + ' sdpa']:.3f}", flush=True)
        del calls, fn, xs, fns, fwd
        torch.cuda.empty_cache()


def prof(specs):
    import hier_prof_s14g17 as hp

    tdir = os.environ.get("OUT", "/tmp")
    for tag, T in specs:
        fn, xs = hp.leaves(T, DT[tag])
        for _ in range(2):
            hp.step(fn, xs)
        print(f"T={T} {tag} staged clocks (median of 7, ms): {hp.clocks(fn, xs)}", flush=True)
        p = hp.profile(fn, xs, os.path.join(tdir, f"trace_{tag}_{T}.json"))
        for ph, r in p.items():
            print(f"T={T} {tag} staged {ph}: span {r['span_ms']:.3f} ms (profiled), GPU busy {r['busy_ms']:.3f}, idle "
                  f"before the first GPU op {r['before_first_ms']:.3f}, idle between ops {r['gaps_ms']:.3f}, "
                  f"{r['launches']} GPU ops", flush=True)
            for k, (n, ms) in r["kernels"].items():
                print(f"    {ms:8.4f} ms  x{n:<3d} {k}", flush=True)
            if ph == "fwd":  # (host launch, GPU start, GPU duration, op) of the forward's ops, ms from its start
                for row in r["timeline"][:24]:
                    print("  tl", *row, flush=True)
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
            elif what == "merge":
                for C in (32, 64):
                    kab_merge(nums[0] if nums else 16384, nums[1] if len(nums) > 1 else 15, C)
            elif what == "pub":
                pub(specs, float(sys.argv[sys.argv.index("--budget") + 1]) if "--budget" in sys.argv else 3.0)
            elif what == "prof":
                prof(specs[:1])
        except Exception as exc:  # noqa: BLE001  (reported; the next mode runs)
            print(f"{what} failed: {type(exc).__name__}: {exc}", flush=True)
        print(f"-- {what} done at {time.perf_counter() - t0:.1f} s", flush=True)


if __name__ == "__main__":
    main()
