"""Session 19, branch s19e17 (issue 17 hygiene): initcheck's uninitialized reads in the hierarchical kernels, the two
switches' A/B (a development aid; results in NOTES.md, "Session 19 — s19e17"). Switches (defines, default 1):
``HI_GCHW`` (hierarchical_intra.cu: hi_intra writes the call's last chunk's total decay too) and ``HIB_IRD``
(hierarchical_bwd.cu: masked loads' fallback addresses inside written rows, hib_dkdv and hib_dq). Variants: ``on``
(the tree), ``off`` (both defines 0: main's code).

    python benchmarks/device/hier_ird_s19e17.py warm [T]
        # compiles both variants of the forward's and the backward's families for the bf16 training call
    python benchmarks/device/hier_ird_s19e17.py ab 16384 [ROUNDS] [PUBREPS]
        # kab: the bf16 training forward (chunk 32, slots kept) and backward (B=2, H=16, d=64: hier_bwd_s15e17's setup)
        # recorded once, then hi_intra, hib_dq, hib_dkdv relaunched alone on those arguments by each variant
        # (bench_gpu.cupy_ms of 10 calls per round, variants interleaved, ROUNDS rounds: median / best), outputs
        # compared bit for bit (on against off); registers / local bytes. pub: the public bf16 fwd+bwd (issue 17's
        # table's call and loss, torch tensors, no backend=) with each variant, alternated per round (the variant's
        # kernels switched outside the timed call, two untimed calls after each switch), medians of PUBREPS rounds.
"""
import os
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]
import hier_bwd_s15e17 as hb  # noqa: E402  (puts the repository on sys.path)
from bench_gpu import cupy_ms  # noqa: E402
from lsattn.backends.cupy import _compile, hierarchical_direct as hd  # noqa: E402

SOURCE = _compile._source
DEFS = {"on": "", "off": "#define HI_GCHW 0\n#define HIB_IRD 0\n"}
_BUILD = _compile._kernels.__wrapped__
_MEMO = {}
VAR = ["on"]


def _kernels(op, dev, cfg):
    """``_compile._kernels`` per variant (both kept: switching costs no compile)."""
    key = (VAR[0], op, dev, cfg)
    if key not in _MEMO:
        _compile._source = lambda n: (DEFS[VAR[0]] + SOURCE(n)) if n == "common.cu" else SOURCE(n)
        try:
            _MEMO[key] = _BUILD(op, dev, cfg)
        finally:
            _compile._source = SOURCE
    return _MEMO[key]


_compile._kernels = _kernels


def use(v):
    """Every later launch (CupyOps, the direct hi_intra) on variant v's kernels."""
    VAR[0] = v
    _compile._launch.cache_clear()  # (the same object as hierarchical_direct._launch)
    _compile._RAW.clear()
    hd._PLANS.clear()


def kern(v, op, cfg, name):
    old = VAR[0]
    VAR[0] = v
    try:
        return _kernels(op, _dev(), cfg)[name]
    finally:
        VAR[0] = old


def _dev():
    import cupy

    return cupy.cuda.Device().id


def record(T):
    """[(name, cfg, grid, block, args, smem)] of the bf16 training forward (compute keep=True at chunk 32) and of the
    backward on its slots, variant 'on'."""
    import cupy

    from lsattn.backends.cupy import hierarchical as chi, hierarchical_bwd as chb
    use("on")
    ops, xh, wide, kept, out, do16 = hb.setup(T)
    fwd = hb.record(ops, lambda: chi.compute(ops, *xh[:4], xh[4], 0, None, 32, "bf16", wide=True, keep=True))
    bwd = hb.record(ops, hb.calls(ops, xh, wide, kept, out, do16)["bf16"])
    cupy.cuda.Device().synchronize()
    return fwd + bwd


def kab(T, rounds):
    import cupy

    launches = {x[0]: x for x in record(T)}
    # (op, kernel, arguments restored before each launch (read, then written), arguments filled with NaN before each
    # variant's launch of the equality check: hi_intra's gch, whose last entry only 'on' writes)
    plan = (("hierarchical", "hi_intra", (), (11,)), ("hierarchical_bwd", "hib_dq", (), ()),
            ("hierarchical_bwd", "hib_dkdv", (19,), ()))
    for op, name, restore, poison in plan:
        if name not in launches:  # (session 20's batch 1: no hi_intra recorded at 16384)
            print(f"T={T} {name} not recorded; recorded: {sorted(launches)}", flush=True)
            continue
        _, cfg, grid, block, args, smem = launches[name]
        ks = {v: kern(v, op, cfg, name) for v in DEFS}
        print(f"T={T} {name} registers / local bytes: " + ", ".join(
            f"{v} {getattr(k, 'num_regs', '?')} / {getattr(k, 'local_size_bytes', '?')}" for v, k in ks.items()),
            flush=True)
        at = [i for i, a in enumerate(args) if isinstance(a, cupy.ndarray)]
        saved = {i: args[i].copy() for i in restore if isinstance(args[i], cupy.ndarray)}

        def launch(v):
            for i, x in saved.items():
                args[i][...] = x
            ks[v](grid, block, args, shared_mem=smem)

        got = {}
        for v in ("off", "on"):  # (on last: its gch's last entry stays in the arrays the later kernels read)
            for i in poison:
                args[i].fill(float("nan"))
            launch(v)
            got[v] = [args[i].copy() for i in at]
        diff = []
        for x, (r, g) in enumerate(zip(got["off"], got["on"])):
            ne = ~((r == g) | (cupy.isnan(r) & cupy.isnan(g))) if r.dtype.kind == "f" else r != g
            if bool(ne.any()):
                where = cupy.argwhere(ne)
                diff.append(f"{at[x]} ({int(ne.sum())} elements, first at {tuple(int(y) for y in where[0])})")
        print(f"T={T} {name}: on vs off " + ("bit-equal" if not diff else "differ at arrays " + ", ".join(diff)),
              flush=True)
        ms = {v: [] for v in DEFS}
        for r in range(rounds):
            for v in (("on", "off") if r % 2 == 0 else ("off", "on")):
                ms[v].append(cupy_ms(lambda: launch(v), 10))
        print(f"T={T} {name} median / best of {rounds} x 10 calls: " + ", ".join(
            f"{v} {statistics.median(x):.4f} / {min(x):.4f}" for v, x in ms.items()) + " ms", flush=True)


def pub(T, reps):
    import torch

    from bench_gpu_hierarchical import _table_calls, _train

    calls = _table_calls(torch, T, torch.bfloat16)
    run = _train(torch, *calls["hier"])
    e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    ms = {v: [] for v in DEFS}
    for r in range(reps):
        for v in (("on", "off") if r % 2 == 0 else ("off", "on")):
            use(v)
            run(), run()
            torch.cuda.synchronize()
            e0.record()
            run()
            e1.record()
            e1.synchronize()
            ms[v].append(e0.elapsed_time(e1))
    use("on")
    print(f"T={T} public bf16 fwd+bwd, medians of {reps} (min): " + ", ".join(
        f"{v} {statistics.median(x):.3f} ({min(x):.3f})" for v, x in ms.items())
        + f" ms; on / off {statistics.median(ms['on']) / statistics.median(ms['off']):.4f}", flush=True)


def warm(T):
    import torch

    from bench_gpu_hierarchical import _table_calls, _train

    for v in DEFS:
        use(v)
        _train(torch, *_table_calls(torch, T, torch.bfloat16)["hier"])()
    torch.cuda.synchronize()
    print("warm", *DEFS, flush=True)


if __name__ == "__main__":
    what = sys.argv[1]
    if what == "warm":
        warm(int(sys.argv[2]) if len(sys.argv) > 2 else 256)
    elif what == "ab":
        T = int(sys.argv[2])
        kab(T, int(sys.argv[3]) if len(sys.argv) > 3 else 6)
        pub(T, int(sys.argv[4]) if len(sys.argv) > 4 else 10)
