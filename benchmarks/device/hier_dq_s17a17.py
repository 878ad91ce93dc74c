"""Session 17, s17a17 (issue 17): hib_dq alone, main's source (s17a17_base: hierarchical_bwd_{chunk,dq}.cu at 5793862)
against the tree's on the same arguments in one process, and the public bf16 fwd+bwd beside torch SDPA (a development
aid; results in NOTES.md). After s16c17's hier_dq_s16c17.py (hier_bwd_s15e17.py's setup / record).

    python benchmarks/device/hier_dq_s17a17.py warm KIND [VARIANTS]   # compiles the variants (CuPy's disk cache)
    python benchmarks/device/hier_dq_s17a17.py kab KIND T [VARIANTS] [ROUNDS]
        # KIND bf16: one bf16 backward (B=2, H=16, d=64, decay, level weights, the bf16 training forward's slots at
        # chunk 32: the bf16 callers' tensor-core variant); f32: one float32 backward (the FFMA variant, the training
        # forward's chunk and slots). Its hib_dq launch relaunched alone by every variant: median and best of ROUNDS
        # (default 7) rounds of bench_gpu.cupy_ms(10 calls), variants interleaved per round; registers / local bytes;
        # outputs against main's (largest difference relative to the array's largest magnitude, or bit-equal).
        # Variants: main, new (the tree), the tree with one change undone (ABL below: timing and equality), oldchunk
        # (the tree's hib_dq with main's hierarchical_bwd_chunk.cu: hib_shifts as before), sh (main's hib_dq with the
        # tree's chunk file), C / fold (VAR below). bf16: also every variant's dq / dlam against main's FFMA variant.
    python benchmarks/device/hier_dq_s17a17.py pub 16384 [ROUNDS]
        # the public bf16 loglinear_log_attention fwd+bwd against torch SDPA causal fwd+bwd, interleaved medians
"""
import os
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import hier_bwd_s15e17 as hb  # noqa: E402  (puts the repository and benchmarks/ on sys.path)
from bench_gpu import cupy_ms  # noqa: E402
from lsattn.backends.cupy import _compile, hierarchical as chi, hierarchical_bwd as chb  # noqa: E402

source = _compile._source
#: main's sources at 5793862 and the variants' hib_dq texts: removed after the session; restore them with
#: ``git checkout 6faca7f -- benchmarks/device/s17a17_base benchmarks/device/s17a17_var``
BASE = {f: open(os.path.join(HERE, "s17a17_base", f + ".txt")).read()
        for f in ("hierarchical_bwd_chunk.cu", "hierarchical_bwd_dq.cu") if os.path.exists(os.path.join(HERE, "s17a17_base"))}
#: other hib_dq texts (s17a17_var/): C (main's + the held-slot mask and the old slots' row levels in shared), fold
#: (request 2's tree: + m, z, n staged, the slot fold, one barrier per slot)
VAR = {v: open(os.path.join(HERE, "s17a17_var", f"dq_{v}.cu.txt")).read() for v in ("C", "fold")
       if os.path.exists(os.path.join(HERE, "s17a17_var"))}
#: the tree with one change undone (its switch defined 0 before hierarchical_bwd_dq.cu), or a phase left out (timing
#: only: its outputs are wrong): the held slots' products (nosl), the held slots' log-normaliser pass (nold)
ABL = {"nofold": "#define HIB_FOLD_OK 0\n", "nomz": "#define HIB_MZS_OK 0\n",
       "nosl": [("    int h = 0, s = next_slot(0), id = s < NSL ? slot_id(s) : -1;", "    int h = 0, s = NSL, id = -1;")],
       "nold": [("    for (int sc = next_slot(0), kc = 0; sc < NSL; kc += 2) {", "    for (int sc = NSL, kc = 0; sc < NSL; kc += 2) {")]}


def text(var, name):
    if (var == "main" and name in BASE) or (var == "oldchunk" and name == "hierarchical_bwd_chunk.cu"):
        return BASE[name]
    if var == "sh" and name == "hierarchical_bwd_dq.cu":  # main's hib_dq with the tree's chunk file (hib_shifts)
        return BASE[name]
    if var in VAR and name == "hierarchical_bwd_dq.cu":
        return VAR[var]
    s = source(name)
    if name != "hierarchical_bwd_dq.cu" or var not in ABL:
        return s
    if isinstance(ABL[var], str):
        return ABL[var] + s
    for a, b in ABL[var]:
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


def backward_call(kind, T):
    """(ops, fn): one backward of KIND through ops (its launches recordable)."""
    if kind == "bf16":
        ops, *rest = hb.setup(T)
        return ops, hb.calls(ops, *rest)["bf16"]
    import cupy
    import torch
    from bench_gpu_hierarchical import inputs
    from lsattn.backends.cupy._arrays import on_gpu

    xc = [cupy.asarray(t.detach()) for t in inputs(torch, T, torch.float32)]
    CH = chb.config("float", 64, 64, None).CH
    with on_gpu(xc[0]) as (_, _, ops):
        out, w = chi.compute(ops, *xc[:4], xc[4], 0, None, CH, keep=True)
    do = cupy.random.standard_normal(out.shape, dtype=cupy.float32)
    kept = chb.keep(w)
    return ops, lambda: chb.backward(ops, *xc[:4], xc[4], 0, None, out, do, None, False, kept, "")


def kab(kind, T, variants, rounds):
    import cupy

    dev = cupy.cuda.Device().id
    ops, fn = backward_call(kind, T)
    launches = {x[0]: x for x in hb.record(ops, fn)}
    name, cfg, grid, block, args, smem = launches["hib_dq"]
    mods = {v: kernels(v, cfg, dev)["hib_dq"] for v in variants}
    print(f"T={T} {kind} CH={cfg.CH} hib_dq registers / local bytes: " + ", ".join(
        f"{v} {getattr(k, 'num_regs', '?')} / {getattr(k, 'local_size_bytes', '?')}" for v, k in mods.items()), flush=True)
    at = [i for i, a in enumerate(args) if isinstance(a, cupy.ndarray)]

    def val(x):  # float64 values (16-bit outputs as their bit patterns: bf16 decoded)
        if x.dtype == cupy.uint16:
            return (x.astype(cupy.uint32) << 16).view(cupy.float32).astype(cupy.float64)
        return x.astype(cupy.float64)
    # the FFMA variant (float32 products) of main's hib_dq on the same arguments: each variant's largest dq / dlam
    # difference from it (relative to its largest magnitude) beside main's
    fref = None
    if cfg.tc:
        import dataclasses
        kf = kernels("main", dataclasses.replace(cfg, tc=False), dev)["hib_dq"]
        kf(grid, block, args, shared_mem=smem)
        fref = [val(args[i]).copy() for i in at]
    ref = None
    for v in variants:
        mods[v](grid, block, args, shared_mem=smem)
        got = [args[i].copy() for i in at]
        if fref is not None:
            e = [float(cupy.nanmax(cupy.abs(val(got[x]) - fref[x])) / cupy.nanmax(cupy.abs(fref[x]))) for x in
                 (at.index(14), at.index(15))]
            print(f"T={T} {kind} hib_dq {v}: dq / dlam against the FFMA variant {e[0]:.2e} / {e[1]:.2e}", flush=True)
        if ref is None:
            ref = got
            continue
        diff = []
        for x, (r, g) in enumerate(zip(ref, got)):
            if not bool(cupy.array_equal(r, g, equal_nan=True)):
                r, g = (val(y) for y in (r, g))
                diff.append(f"{at[x]}: {float(cupy.nanmax(cupy.abs(r - g)) / cupy.nanmax(cupy.abs(r))):.2e}")
        print(f"T={T} {kind} hib_dq {v}: outputs " + ("bit-equal to " + variants[0] if not diff else
                                                     f"differ from {variants[0]} at args " + ", ".join(diff) +
                                                     " (dq: arg 14, dlam: 15, dsum: 19)"), flush=True)
    ts = {v: [] for v in variants}
    for r in range(rounds):
        for v in variants[r % len(variants):] + variants[:r % len(variants)]:
            k = mods[v]
            ts[v].append(cupy_ms(lambda: k(grid, block, args, shared_mem=smem), 10))
    print(f"T={T} {kind} hib_dq median / best of {rounds}: " + ", ".join(
        f"{v} {statistics.median(x):.3f} / {min(x):.3f} ms" for v, x in ts.items()), flush=True)


def pub(T, rounds):
    import torch
    from bench_gpu_hierarchical import _table_calls, _train, interleaved_times

    calls = _table_calls(torch, T, torch.bfloat16)
    fns = {op: _train(torch, *calls[op]) for op in ("hier", "sdpa")}
    got = interleaved_times(fns, rounds, warmup=2, budget_s=6.0)
    print(f"T={T} bf16 fwd+bwd median of {rounds}: loglinear_log_attention {got['hier']:.3f} ms, SDPA {got['sdpa']:.3f} ms"
          f" ({got['hier'] / got['sdpa']:.3f}x)", flush=True)


if __name__ == "__main__":
    what = sys.argv[1]
    if what == "warm":
        import cupy

        kind = sys.argv[2]
        vs = (sys.argv[3] if len(sys.argv) > 3 else "main,new").split(",")
        ops, fn = backward_call(kind, 256)
        cfg = {x[0]: x for x in hb.record(ops, fn)}["hib_dq"][1]
        for v in vs:
            if v == "mainffma":  # (kab's FFMA reference of a tensor-core kind)
                import dataclasses
                kernels("main", dataclasses.replace(cfg, tc=False), cupy.cuda.Device().id)
            else:
                kernels(v, cfg, cupy.cuda.Device().id)
        cupy.cuda.Device().synchronize()
        print("warm", kind, *vs, flush=True)
    elif what == "kab":
        kab(sys.argv[2], int(sys.argv[3]), (sys.argv[4] if len(sys.argv) > 4 else "main,new").split(","),
            int(sys.argv[5]) if len(sys.argv) > 5 else 7)
    elif what == "pub":
        pub(int(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 10)
