"""Session 16, branch s16d17 (issue 17): ``hib_dkdv`` alone, the tree's against its variants on the same recorded
arguments in one run (a development aid; results in NOTES.md). Uses ``hier_bwd_s15e17``'s setup (B=2, H=16, d=64,
bf16 callers' kernels, the slots kept by the training forward at chunk 32), recording and timing.

    python benchmarks/device/hier_dkdv_s16d17.py warm [VARIANT,...]
        # compiles the variants (B=H=1)
    python benchmarks/device/hier_dkdv_s16d17.py kab 16384 [VARIANT,...]
        # one bf16 backward with its launches recorded, then hib_dkdv relaunched alone on those arguments by each
        # variant (bench_gpu.cupy_ms, 10 calls, best of 3 rounds, variants interleaved per round; dsum, which
        # hib_dkdv reads and writes, restored before every launch); registers / local bytes; outputs compared bit for
        # bit with the first variant's
Variants (defines before hierarchical_bwd_chunk.cu): new (the tree), main (-DHIB_DKR=0: dk, dlv stored by the pair
products and summed per right block in their shared rows, main's hib_dkdv). Request 1 timed new (then: dk, dlv in
registers over the right blocks only) against it as dkr0; request 2 also "etm0" (E^T formed by columns, HIB_ETM: since
removed, no gain).
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]
import hier_bwd_s15e17 as hb  # noqa: E402  (puts the repository on sys.path)
from bench_gpu import cupy_ms  # noqa: E402
from lsattn.backends.cupy import _compile  # noqa: E402

DEFS = {"new": "", "main": "#define HIB_DKR 0\n"}


def kernels(var, cfg, dev):
    """{name: compiled kernel} of ``var`` (the caches cleared after)."""
    pre = DEFS[var]
    _compile._source = lambda n: (pre + hb.source(n)) if n == "hierarchical_bwd_chunk.cu" else hb.source(n)
    _compile._kernels.cache_clear()
    _compile._launch.cache_clear()
    try:
        return dict(_compile._kernels("hierarchical_bwd", dev, cfg))
    finally:
        _compile._source = hb.source
        _compile._kernels.cache_clear()
        _compile._launch.cache_clear()


def kab(T, variants):
    import cupy

    dev = cupy.cuda.Device().id
    ops, *rest = hb.setup(T)
    fn = hb.calls(ops, *rest)["bf16"]
    launches = {x[0]: x for x in hb.record(ops, fn)}
    _, cfg, grid, block, args, smem = launches["hib_dkdv"]
    mods = {v: kernels(v, cfg, dev) for v in variants}
    for v in variants:
        k = mods[v]["hib_dkdv"]
        print(f"T={T} hib_dkdv {v} registers / local bytes: {getattr(k, 'num_regs', '?')} / "
              f"{getattr(k, 'local_size_bytes', '?')}", flush=True)
    at = [i for i, a in enumerate(args) if isinstance(a, cupy.ndarray)]
    arrays = [args[i] for i in at]
    dsum = args[19] if isinstance(args[19], cupy.ndarray) else None  # (BH, T), hib_dkdv's 20th pointer: read, then written
    saved = None if dsum is None else dsum.copy()

    def launch(v):
        if saved is not None:
            dsum[...] = saved
        mods[v]["hib_dkdv"](grid, block, args, shared_mem=smem)

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
        print(f"T={T} hib_dkdv {v}: outputs " + (f"bit-equal to {variants[0]}'s" if not diff else
                                                 f"differ from {variants[0]}'s at arrays " + ", ".join(diff)), flush=True)
    best = {v: float("inf") for v in variants}
    for _ in range(3):
        for v in variants:
            best[v] = min(best[v], cupy_ms(lambda: launch(v), 10))
    print(f"T={T} hib_dkdv: " + ", ".join(f"{v} {ms:.3f} ms" for v, ms in best.items())
          + " (each with dsum's restore: a (BH, T) copy)", flush=True)


if __name__ == "__main__":
    what = sys.argv[1]
    if what == "warm":
        import cupy

        vs = sys.argv[2].split(",") if len(sys.argv) > 2 else list(DEFS)
        ops, *rest = hb.setup(256)
        cfg = hb.record(ops, hb.calls(ops, *rest)["bf16"])[0][1]
        for v in vs:
            kernels(v, cfg, cupy.cuda.Device().id)
        cupy.cuda.Device().synchronize()
        print("warm", *vs, flush=True)
    elif what == "kab":
        vs = sys.argv[3].split(",") if len(sys.argv) > 3 else list(DEFS)
        for T in [int(x) for x in sys.argv[2].split(",")]:
            kab(T, vs)
