"""Session 14, branch s14f17 (issue 17): the hierarchical backward's kernels alone, variants of the source A/B'd on the
same arguments in one run (a development aid; results in NOTES.md).

    python benchmarks/device/hier_bwd_s14f17.py warm KIND:VARIANT[,...]
        # compiles the variants below for the bf16 callers' config (KIND bf16) or float32 inputs (f32in)
    python benchmarks/device/hier_bwd_s14f17.py kab 16384 [VARIANTS]
        # one bf16 backward (B=2, H=16, d=64, decay, level weights; the slots kept by the bf16 training forward at
        # chunk 32) run once with its launches recorded (grid, arguments), then each recorded kernel relaunched alone
        # on those arguments by every variant (bench_gpu.cupy_ms, 10 calls, best of 3 rounds, the variants of a kernel
        # interleaved in each round); registers and local memory of each variant's kernels; a variant's outputs
        # compared bit for bit with the tree's ("new") where the variant must not change them.
        # Variants: new (the tree), s12b (hib_blocks' loads as session 12's main, 23e0c42: no output masks in its
        # loads, which this call's finite outputs do not need), f32in (new and s12b's hib_blocks on float32 copies of
        # the 16-bit inputs: session 12's kernel inputs). Outputs: "bit-equal", or the arguments that differ with
        # max |a - b| / max |a| (hib_dkdv's dsum, argument 19, is read-modified-written by every launch).
        # (Session 14's request also timed sa0 / sc0 / fx0 / ua0, timing builds of main's forms removed after it.)
"""
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from bench_gpu import cupy_ms  # noqa: E402  (puts the repository on sys.path)
from lsattn.backends.cupy import _compile, hierarchical_bwd as chb  # noqa: E402

source = _compile._source
#: hib_blocks' two masked loads (s13d17) and session 12's plain ones
S12B = [("""                ta g = (ta)0, o = hib_ld(om, (bh * T + g0 + t) * DV + jj, (t < t1) & (jj < DV), -lo_v());
                hib_go(g, o);
                return o;""", """                return hib_ld(om, (bh * T + g0 + t) * DV + jj, (t < t1) & (jj < DV), -lo_v());"""),
        ("""                const int at = (idx / DVP) * HIB_TVL + idx % DVP;
                Gr[at] = Gp[at] == lo_v() ? (ta)0 : x;""", """                Gr[(idx / DVP) * HIB_TVL + idx % DVP] = x;""")]


def text(var, name):
    s = source(name)
    if name != "hierarchical_bwd.cu":
        return s
    if var == "s12b":
        for a, b in S12B:
            assert a in s, "hib_blocks' loads changed: update S12B"
            s = s.replace(a, b)
    return s


def kernels(var, cfg, dev):
    """{name: compiled kernel} of variant ``var`` (the module compiled for it; the caches cleared after)."""
    _compile._source = lambda n: text(var, n)
    _compile._kernels.cache_clear()
    _compile._launch.cache_clear()
    try:
        return dict(_compile._kernels("hierarchical_bwd", dev, cfg))
    finally:
        _compile._source = source
        _compile._kernels.cache_clear()
        _compile._launch.cache_clear()


def setup(T):
    """(ops, bf16 inputs, float32 copies, kept slots, forward output, bf16 output gradient)."""
    import cupy

    from bench_gpu_hierarchical import inputs
    from lsattn.backends.cupy import hierarchical as chi
    from lsattn.backends.cupy._arrays import narrow, on_gpu, widen

    xc = [cupy.asarray(t.detach()) for t in inputs(torch, T, torch.float32)]
    xh = [narrow(cupy, x, "bf16") for x in xc]
    with on_gpu(xc[0]) as (_, _, ops):
        out, w = chi.compute(ops, *xh[:4], xh[4], 0, None, 32, "bf16", wide=True, keep=True)
    do16 = narrow(cupy, cupy.random.standard_normal(out.shape, dtype=cupy.float32), "bf16")
    wide = [widen(cupy, x, "bf16") for x in xh] + [widen(cupy, do16, "bf16")]
    return ops, xh, wide, chb.keep(w), out, do16


def record(ops, fn):
    """The launches of ``fn()`` through ``ops``: [(kernel name, cfg, grid, block, args, shared bytes)]."""
    seen, tk = [], ops._tk

    def rec(op, cfg, name):
        kern, block, smem = tk(op, cfg, name)

        def launch(grid, block_, args, shared_mem=0):
            seen.append((name, cfg, grid, block_, args, shared_mem))
            kern(grid, block_, args, shared_mem=shared_mem)
        return launch, block, smem
    ops._tk = rec
    try:
        fn()
    finally:
        ops._tk = tk
    return seen


def kab(T, variants):
    import cupy

    dev = cupy.cuda.Device().id
    ops, xh, wide, kept, out, do16 = setup(T)
    calls = {"bf16": lambda: chb.backward(ops, *xh[:4], xh[4], 0, None, out, do16, None, True, kept, "bf16"),
             "f32in": lambda: chb.backward(ops, *wide[:4], wide[4], 0, None, out, wide[5], None, True, kept, "")}
    for kind in ("bf16", "f32in") if "f32in" in variants else ("bf16",):
        launches = {x[0]: x for x in record(ops, calls[kind])}
        cfg = launches["hib_dq"][1]
        vs = [v for v in variants if v != "f32in" and (kind == "bf16" or v in ("new", "s12b"))]
        mods = {v: kernels(v, cfg, dev) for v in vs}
        for v in vs:
            print(f"T={T} {kind} {v} registers / local bytes: " + ", ".join(
                f"{n} {getattr(k, 'num_regs', '?')} / {getattr(k, 'local_size_bytes', '?')}" for n, k in mods[v].items()),
                flush=True)
        for name in ("hib_dq", "hib_blocks", "hib_bmerge", "hib_dkdv"):
            if name not in launches or (kind == "f32in" and name != "hib_blocks"):
                continue
            _, _, grid, block, args, smem = launches[name]
            at = [i for i, a in enumerate(args) if isinstance(a, cupy.ndarray)]
            arrays = [args[i] for i in at]
            mine = [v for v in vs if v == "new" or (v == "s12b" and name == "hib_blocks")]
            ref = None
            for v in mine:  # the outputs of each variant against the tree's
                mods[v][name](grid, block, args, shared_mem=smem)
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
                print(f"T={T} {kind} {name} {v}: outputs " + ("bit-equal to new" if not diff else
                                                             "differ from new at arrays " + ", ".join(diff)), flush=True)
            best = {v: float("inf") for v in mine}
            for _ in range(3):
                for v in mine:
                    k = mods[v][name]
                    best[v] = min(best[v], cupy_ms(lambda: k(grid, block, args, shared_mem=smem), 10))
            print(f"T={T} {kind} {name}: " + ", ".join(f"{v} {ms:.3f} ms" for v, ms in best.items()), flush=True)


if __name__ == "__main__":
    what = sys.argv[1]
    variants = (sys.argv[3] if len(sys.argv) > 3 else "new,s12b,f32in").split(",")
    if what == "warm":
        import cupy

        ops, xh, wide, kept, out, do16 = setup(256)
        calls = {"bf16": lambda: chb.backward(ops, *xh[:4], xh[4], 0, None, out, do16, None, True, kept, "bf16"),
                 "f32in": lambda: chb.backward(ops, *wide[:4], wide[4], 0, None, out, wide[5], None, True, kept, "")}
        for kind, v in (x.split(":") for x in sys.argv[2].split(",")):
            kernels(v, record(ops, calls[kind])[0][1], cupy.cuda.Device().id)
            print("warm", kind, v, flush=True)
    else:
        for T in [int(x) for x in sys.argv[2].split(",")]:
            kab(T, variants)
