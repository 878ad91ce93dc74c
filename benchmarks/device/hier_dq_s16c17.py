"""Session 16, s16c17 (issue 17): hib_dq alone, main's source (s16c17_main: hierarchical_bwd{,_chunk}.cu at 0b5d11b)
against the tree's on the same arguments in one process, and the public bf16 fwd+bwd beside torch SDPA (a development
aid; results in NOTES.md). After hier_bwd_s15e17.py (its setup / record / kernels).

    python benchmarks/device/hier_dq_s16c17.py warm [VARIANTS]     # compiles the variants (CuPy's cache serves later runs)
    python benchmarks/device/hier_dq_s16c17.py kab 16384 [VARIANTS] [ROUNDS]
        # one bf16 backward (B=2, H=16, d=64, decay, level weights, the bf16 training forward's slots at chunk 32),
        # its hib_dq launch relaunched alone by every variant: median and best of ROUNDS (default 7) rounds of
        # bench_gpu.cupy_ms(10 calls), variants interleaved per round; registers / local bytes; outputs against main's
        # (dq, lden, delta, P, D, flags, dsum bit for bit; dlam to rounding). Variants: main, new (the tree),
        # nosl / nold (the tree without its held slots' products / log-normaliser pass: timing only, wrong outputs)
    python benchmarks/device/hier_dq_s16c17.py pub 16384 [ROUNDS]
        # the public bf16 loglinear_log_attention fwd+bwd against torch SDPA causal fwd+bwd, interleaved medians
        # (bench_gpu_hierarchical's table calls)
"""
import os
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import hier_bwd_s15e17 as hb  # noqa: E402  (puts the repository and benchmarks/ on sys.path)
from bench_gpu import cupy_ms  # noqa: E402
from lsattn.backends.cupy import _compile  # noqa: E402

source = _compile._source
MAIN = {f: open(os.path.join(HERE, "s16c17_main", f + ".txt")).read() for f in ("hierarchical_bwd.cu", "hierarchical_bwd_chunk.cu")}
ABL = {"nosl": [("    int h = 0, s = next_slot(0), id = s < NSL ? slot_id(s) : -1;", "    int h = 0, s = NSL, id = -1;")],
       "nold": [("    int sc = next_slot(0);\n    if (sc < NSL) slot_mz(sc, mc, zc);", "    int sc = NSL;")]}


def text(var, name):
    if var == "main" and name in MAIN:
        return MAIN[name]
    s = source(name)
    for a, b in (ABL.get(var, []) if name == "hierarchical_bwd_chunk.cu" else []):
        assert s.count(a) == 1, f"{var}: the tree changed; update its replacements ({a[:60]!r})"
        s = s.replace(a, b)
    return s


def kernels(var, cfg, dev):
    _compile._source = lambda n: text(var, n)
    _compile._kernels.cache_clear()
    _compile._launch.cache_clear()
    try:
        return dict(_compile._kernels("hierarchical_bwd", dev, cfg))
    finally:
        _compile._source = source
        _compile._kernels.cache_clear()
        _compile._launch.cache_clear()


def kab(T, variants, rounds):
    import cupy

    dev = cupy.cuda.Device().id
    ops, *rest = hb.setup(T)
    launches = {x[0]: x for x in hb.record(ops, hb.calls(ops, *rest)["bf16"])}
    name, cfg, grid, block, args, smem = launches["hib_dq"]
    mods = {v: kernels(v, cfg, dev)["hib_dq"] for v in variants}
    print(f"T={T} hib_dq registers / local bytes: " + ", ".join(
        f"{v} {getattr(k, 'num_regs', '?')} / {getattr(k, 'local_size_bytes', '?')}" for v, k in mods.items()), flush=True)
    at = [i for i, a in enumerate(args) if isinstance(a, cupy.ndarray)]
    ref = None
    for v in [v for v in variants if v in ("main", "new")]:
        mods[v](grid, block, args, shared_mem=smem)
        got = [args[i].copy() for i in at]
        if ref is None:
            ref = got
            continue
        diff = []
        for x, (r, g) in enumerate(zip(ref, got)):
            if not bool(cupy.array_equal(r, g, equal_nan=True)):
                r, g = (y.astype(cupy.float64) for y in (r, g))
                diff.append(f"{at[x]}: {float(cupy.nanmax(cupy.abs(r - g)) / cupy.nanmax(cupy.abs(r))):.2e}")
        print(f"T={T} hib_dq {v}: outputs " + ("bit-equal to main" if not diff else "differ from main at args " +
                                              ", ".join(diff) + " (dlam: arg 15)"), flush=True)
    ts = {v: [] for v in variants}
    for r in range(rounds):
        for v in variants[r % len(variants):] + variants[:r % len(variants)]:
            k = mods[v]
            ts[v].append(cupy_ms(lambda: k(grid, block, args, shared_mem=smem), 10))
    print(f"T={T} hib_dq median / best of {rounds}: " + ", ".join(
        f"{v} {statistics.median(x):.3f} / {min(x):.3f} ms" for v, x in ts.items()), flush=True)


def pub(T, rounds):
    import torch
    from bench_gpu_hierarchical import _table_calls, _train, interleaved_times

    calls = _table_calls(torch, T, torch.bfloat16)
    fns = {op: _train(torch, *calls[op]) for op in ("hier", "sdpa")}
    got = interleaved_times(fns, rounds, warmup=2, budget_s=12.0)
    print(f"T={T} bf16 fwd+bwd median of {rounds}: loglinear_log_attention {got['hier']:.3f} ms, SDPA {got['sdpa']:.3f} ms"
          f" ({got['hier'] / got['sdpa']:.3f}x)", flush=True)


if __name__ == "__main__":
    what = sys.argv[1]
    if what == "warm":
        import cupy

        vs = (sys.argv[2] if len(sys.argv) > 2 else "main,new,nosl,nold").split(",")
        ops, *rest = hb.setup(256)
        cfg = hb.record(ops, hb.calls(ops, *rest)["bf16"])[0][1]
        for v in vs:
            kernels(v, cfg, cupy.cuda.Device().id)
        cupy.cuda.Device().synchronize()
        print("warm", *vs, flush=True)
    elif what == "kab":
        kab(int(sys.argv[2]), (sys.argv[3] if len(sys.argv) > 3 else "main,new,nosl,nold").split(","),
            int(sys.argv[4]) if len(sys.argv) > 4 else 7)
    elif what == "pub":
        pub(int(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 10)
