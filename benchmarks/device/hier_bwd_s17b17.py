"""Session 17, branch s17b17 (issue 17): ``hib_blocks`` and ``hib_dkdv`` alone, the tree's against its variants on the
same recorded arguments in one run, and the public bf16 training step against SDPA (a development aid; results in
NOTES.md). Uses ``hier_bwd_s15e17``'s setup (B=2, H=16, d=64, bf16 callers' kernels, the slots kept by the training
forward at chunk 32) and recording.

    python benchmarks/device/hier_bwd_s17b17.py warm VARIANT[,...]
        # compiles the variants (B=H=1; CuPy's disk cache serves kab)
    python benchmarks/device/hier_bwd_s17b17.py kab 16384 VARIANT[,...] [ROUNDS]
        # one bf16 backward with its launches recorded, then hib_blocks and hib_dkdv relaunched alone on those arguments
        # by each variant (bench_gpu.cupy_ms of 10 calls per round, variants interleaved, ROUNDS rounds: median and
        # best; hib_dkdv's dsum restored before every launch); registers / local bytes; outputs compared bit for bit
        # with the first variant's
    python benchmarks/device/hier_bwd_s17b17.py pub 16384 [REPS]
        # the public bf16 fwd+bwd (issue 17's table's call and loss) against torch SDPA's, interleaved medians
Variants: new (the tree), or defines before hierarchical_bwd.cu as NAME=VALUE+NAME=VALUE (e.g. HIB_BMX=0). The variants
requests 1 and 2 timed (each of this branch's changes off, main's sources) are in NOTES.md, "Session 17 — s17b17".
"""
import os
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]
import hier_bwd_s15e17 as hb  # noqa: E402  (puts the repository on sys.path)
from bench_gpu import cupy_ms  # noqa: E402
from lsattn.backends.cupy import _compile  # noqa: E402

DEFS = {"new": ""}


def defines(var):
    return DEFS[var] if var in DEFS else "".join(f"#define {d.replace('=', ' ')}\n" for d in var.split("+"))


KERNELS = ("hib_blocks", "hib_dkdv")


def text(var, n):
    return defines(var) + hb.source(n) if n == "hierarchical_bwd.cu" else hb.source(n)


def kernels(var, cfg, dev):
    """{name: compiled kernel} of ``var`` (the caches cleared after)."""
    _compile._source = lambda n: text(var, n)
    _compile._kernels.cache_clear()
    _compile._launch.cache_clear()
    try:
        return dict(_compile._kernels("hierarchical_bwd", dev, cfg))
    finally:
        _compile._source = hb.source
        _compile._kernels.cache_clear()
        _compile._launch.cache_clear()


def kab(T, variants, rounds):
    import cupy

    dev = cupy.cuda.Device().id
    ops, *rest = hb.setup(T)
    launches = {x[0]: x for x in hb.record(ops, hb.calls(ops, *rest)["bf16"])}
    cfg = launches["hib_dkdv"][1]
    mods = {}
    for stage in (variants[:2], variants) if len(variants) > 2 else (variants,):  # (the first two timed first: a
        for v in stage:                                                              # cold compile of the rest cut)
            if v not in mods:
                mods[v] = kernels(v, cfg, dev)
                print(f"T={T} {v} registers / local bytes: " + ", ".join(
                    f"{n} {getattr(mods[v][n], 'num_regs', '?')} / {getattr(mods[v][n], 'local_size_bytes', '?')}"
                    for n in KERNELS), flush=True)
        ab(T, stage, mods, launches, rounds)


def ab(T, variants, mods, launches, rounds):
    import cupy

    for name in KERNELS:
        _, _, grid, block, args, smem = launches[name]
        at = [i for i, a in enumerate(args) if isinstance(a, cupy.ndarray)]
        arrays = [args[i] for i in at]
        dsum = args[19] if name == "hib_dkdv" and isinstance(args[19], cupy.ndarray) else None  # read, then written
        saved = None if dsum is None else dsum.copy()

        def launch(v):
            if saved is not None:
                dsum[...] = saved
            mods[v][name](grid, block, args, shared_mem=smem)

        ref = None
        for v in variants:
            launch(v)
            got = [a.copy() for a in arrays]
            if ref is None:
                ref = got
                continue
            diff = []
            for x, (r, g) in enumerate(zip(ref, got)):
                if not bool(cupy.array_equal(r, g, equal_nan=True)):
                    r, g = (y.astype(cupy.float64) if y.dtype.kind == "f" else None for y in (r, g))
                    rel = "?" if r is None else f"{float(cupy.nanmax(cupy.abs(r - g)) / cupy.nanmax(cupy.abs(r))):.2e}"
                    diff.append(f"{at[x]}: {rel}")
            print(f"T={T} {name} {v}: outputs " + (f"bit-equal to {variants[0]}'s" if not diff else
                                                  f"differ from {variants[0]}'s at arrays " + ", ".join(diff)), flush=True)
        ms = {v: [] for v in variants}
        for r in range(rounds):
            for i in range(len(variants)):
                v = variants[(i + r) % len(variants)]
                ms[v].append(cupy_ms(lambda: launch(v), 10))
        print(f"T={T} {name} median / best of {rounds} x 10 calls: " + ", ".join(
            f"{v} {statistics.median(x):.3f} / {min(x):.3f}" for v, x in ms.items())
            + (" ms (each with dsum's restore: a (BH, T) copy)" if saved is not None else " ms"), flush=True)


def pub(T, reps):
    import torch

    from bench_gpu_hierarchical import _table_calls, _train, interleaved_times

    calls = _table_calls(torch, T, torch.bfloat16)
    fns = {n: _train(torch, *calls[n]) for n in ("hier", "sdpa")}
    got = interleaved_times(fns, reps, budget_s=8.0)
    ratio = got["hier"] / got["sdpa"] if all(isinstance(x, float) for x in got.values()) else float("nan")
    print(f"T={T} bf16 fwd+bwd interleaved medians: hier {got['hier']:.3f} ms, sdpa {got['sdpa']:.3f} ms, "
          f"hier / sdpa {ratio:.3f}", flush=True)


if __name__ == "__main__":
    what = sys.argv[1]
    if what == "warm":
        import cupy

        ops, *rest = hb.setup(256)
        cfg = {x[0]: x for x in hb.record(ops, hb.calls(ops, *rest)["bf16"])}["hib_dkdv"][1]
        vs = sys.argv[2].split(",")
        for v in vs:
            kernels(v, cfg, cupy.cuda.Device().id)
        cupy.cuda.Device().synchronize()
        print("warm", *vs, flush=True)
    elif what == "kab":
        kab(int(sys.argv[2]), sys.argv[3].split(","), int(sys.argv[4]) if len(sys.argv) > 4 else 5)
    elif what == "pub":
        pub(int(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 10)
