"""Session 15, branch s15e17 (issue 17): the hierarchical backward's kernels alone, main's source against the tree's on
the same arguments in one run, and one backward for ncu (a development aid; results in NOTES.md).

    python benchmarks/device/hier_bwd_s15e17.py warm KIND:VARIANT[,...] | warm lineinfo SRC_OUT.cu
        # compiles the variants kab times for KIND (bf16: the bf16 callers' config, f32in: float32 inputs), or the
        # -lineinfo build of the ncu mode (the same text and options: the CuPy cache serves the later runs)
    python benchmarks/device/hier_bwd_s15e17.py kab 16384 [VARIANTS]
        # one bf16 backward (B=2, H=16, d=64, decay, level weights; the slots kept by the bf16 training forward at
        # chunk 32) run once with its launches recorded, then each recorded kernel relaunched alone on those
        # arguments by every variant (bench_gpu.cupy_ms, 10 calls, best of 3 rounds, variants interleaved per round);
        # registers / local bytes of each; every variant's outputs compared bit for bit with main's.
        # Variants: main (main's sources at 26378e6, rebuilt from the tree's by hier_bwd_s15e17_main.MAIN), r1 (request
        # 1's, 7ca9571: hib_blocks' masks where used), new (the tree),
        # qsel (the tree's with main's q loads in hib_blocks: hib_ld's fill), s12b (the tree's hib_blocks with no
        # output masks at all: session 12's loads, right only for finite
        # outputs, the lower bound s14f17 measured); f32in: hib_blocks of each on float32 copies of the inputs; masked:
        # hib_blocks of main and new on bf16 inputs with -inf / NaN outputs (their masks; outputs bit for bit);
        # nosl, nold (bf16, hib_dq only): hib_dq without its held slots' products / log-normaliser pass (ABL; timing
        # only), the phases' costs.
    python benchmarks/device/hier_bwd_s15e17.py mkmain
        # (with git) writes hier_bwd_s15e17_main.py: main's and request 1's sources as replacements of the tree's
    python benchmarks/device/hier_bwd_s15e17.py ncu 16384 SRC_OUT.cu
        # the tree's kernels built with -lineinfo (source written to SRC_OUT.cu for ncu's source view), one bf16
        # backward after a warm one (ncu: --launch-skip past the first backward's kernels)
"""
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from bench_gpu import cupy_ms  # noqa: E402  (puts the repository on sys.path)
from lsattn.backends.cupy import _compile, hierarchical_bwd as chb  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
try:
    from hier_bwd_s15e17_main import MAIN, R1  # noqa: E402  (main's / request 1's sources as replacements of the tree's)
except ImportError:  # (mkmain writes it)
    MAIN = R1 = {}

source = _compile._source
#: the tree's hib_blocks without the output masks (session 12's loads) / with q's fill (main's q loads)
S12B = [("Gp[at] = ro[u] > lo_v() / 2 ? -ro[u] : lo_v();", "Gp[at] = -ro[u];"),
        ("(t < t1 && jj < DV && o != lo_v()) ?", "(t < t1 && jj < DV) ?")]
QSEL = [("rq[u] = ld(qc + ((t < t1) & (i < DK) ? t * DK + i : 0));", "rq[u] = hib_ld(qc, t * DK + i, (t < t1) & (i < DK), neg_big());")]
#: hib_dq's phases left out (timing only: their outputs are wrong): the held slots' products (nosl), the held slots'
#: log-normaliser pass (nold)
ABL = {"nosl": [("    int h = 0, s = next_slot(0), id = s < NSL ? slot_id(s) : -1;", "    int h = 0, s = NSL, id = -1;")],
       "nold": [("    int sc = next_slot(0);\n    if (sc < NSL) slot_mz(sc, mc, zc);", "    int sc = NSL;")]}


def text(var, name):
    s = source(name)
    if var in ("main", "r1"):
        reps = (MAIN if var == "main" else R1).get(name, [])
    else:
        reps = {"hierarchical_bwd.cu": {"s12b": S12B, "qsel": QSEL}, "hierarchical_bwd_dq.cu": ABL}.get(name, {}).get(var, [])
    for a, b in reps:
        assert s.count(a) == 1, f"{var}: the tree changed; update its replacements ({a[:60]!r})"
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


def calls(ops, xh, wide, kept, out, do16):
    """The backward calls: bf16 inputs (the bf16 callers' kernels), float32 copies (f32in), and bf16 with masked
    outputs (masked: every 5th row of the first 4 heads -inf, every 7th NaN: hib_go's rows)."""
    om = out.copy()  # (B, H, T, DV)
    om[0, :4, ::5] = -float("inf")
    om[0, :4, ::7] = float("nan")
    return {"bf16": lambda: chb.backward(ops, *xh[:4], xh[4], 0, None, out, do16, None, True, kept, "bf16"),
            "f32in": lambda: chb.backward(ops, *wide[:4], wide[4], 0, None, out, wide[5], None, True, kept, ""),
            "masked": lambda: chb.backward(ops, *xh[:4], xh[4], 0, None, om, do16, None, True, kept, "bf16")}


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


def lineinfo(src_out):
    """CuPy's RawModule from here on: hierarchical_bwd's module with -lineinfo, its text written to src_out."""
    import cupy

    raw = cupy.RawModule

    def mod(code, options=(), **kw):
        if "void __launch_bounds__(NT, HIB_MINB) hib_dkdv(" in code:
            with open(src_out, "w") as f:
                f.write(code)
            code, options = f'#line 1 "{src_out}"\n' + code, tuple(options) + ("-lineinfo",)
        return raw(code=code, options=options, **kw)
    cupy.RawModule = mod


def kab(T, variants):
    import cupy

    dev = cupy.cuda.Device().id
    ops, *rest = setup(T)
    fns = calls(ops, *rest)
    for kind in ["bf16"] + [k for k in ("f32in", "masked") if k in variants]:
        launches = {x[0]: x for x in record(ops, fns[kind])}
        cfg = launches["hib_dq"][1]
        vs = [v for v in variants if v not in ("f32in", "masked") and (kind == "bf16" or v not in ABL)
              and (kind != "masked" or v != "s12b")]
        mods = {v: kernels(v, cfg, dev) for v in vs}
        for v in vs:
            print(f"T={T} {kind} {v} registers / local bytes: " + ", ".join(
                f"{n} {getattr(k, 'num_regs', '?')} / {getattr(k, 'local_size_bytes', '?')}" for n, k in mods[v].items()
                if n.startswith("hib_")), flush=True)
        for name in ("hib_dq", "hib_blocks", "hib_bmerge", "hib_dkdv"):
            if name not in launches or (kind != "bf16" and name != "hib_blocks"):
                continue
            _, _, grid, block, args, smem = launches[name]
            at = [i for i, a in enumerate(args) if isinstance(a, cupy.ndarray)]
            arrays = [args[i] for i in at]
            mine = [v for v in vs if v in ("main", "r1", "new") or (name == "hib_blocks") == (v in ("qsel", "s12b"))
                    and (name == "hib_dq" or v not in ABL)]
            ref = None
            for v in mine:  # the outputs of each variant against main's
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
                print(f"T={T} {kind} {name} {v}: outputs " + ("bit-equal to main" if not diff else
                                                             "differ from main at arrays " + ", ".join(diff)), flush=True)
            best = {v: float("inf") for v in mine}
            for _ in range(3):
                for v in mine:
                    k = mods[v][name]
                    best[v] = min(best[v], cupy_ms(lambda: k(grid, block, args, shared_mem=smem), 10))
            print(f"T={T} {kind} {name}: " + ", ".join(f"{v} {ms:.3f} ms" for v, ms in best.items()), flush=True)


def mkmain():
    """Writes hier_bwd_s15e17_main.py (on a machine with git): the sources of main (26378e6) and of request 1 (7ca9571)
    as replacements of the tree's (difflib's grouped hunks, 3 lines of context)."""
    import difflib
    import subprocess

    out = ['"""Session 15, s15e17: the hierarchical backward\'s sources of main (26378e6) and of request 1 (7ca9571) as\n'
           'replacements of the tree\'s (written by ``hier_bwd_s15e17.py mkmain``; applied by its variants main, r1)."""\n']
    for var, base in (("MAIN", "26378e6"), ("R1", "7ca9571")):
        out.append(f"{var} = {{\n")
        for f in ("hierarchical_bwd.cu", "hierarchical_bwd_chunk.cu"):
            path = "lsattn/backends/cupy/" + f
            old = subprocess.run(["git", "show", f"{base}:{path}"], capture_output=True, text=True, check=True).stdout.split("\n")
            new = source(f).split("\n")
            pairs = []
            for grp in difflib.SequenceMatcher(None, new, old, autojunk=False).get_grouped_opcodes(3):
                a_, b_ = "\n".join(new[grp[0][1]:grp[-1][2]]), "\n".join(old[grp[0][3]:grp[-1][4]])
                assert "\n".join(new).count(a_) == 1, (f, grp)
                pairs.append((a_, b_))
            s = "\n".join(new)
            for a_, b_ in pairs:
                s = s.replace(a_, b_)
            assert s == "\n".join(old), (var, f)
            out.append(f"    {f!r}: [\n" + "".join(f"        ({a_!r},\n         {b_!r}),\n" for a_, b_ in pairs) + "    ],\n")
        out.append("}\n")
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "hier_bwd_s15e17_main.py"), "w") as f:
        f.write("".join(out))


if __name__ == "__main__":
    what = sys.argv[1]
    if what == "mkmain":
        mkmain()
    elif what == "warm":  # warm KIND:VARIANT[,...] or warm lineinfo SRC_OUT.cu (several processes side by side)
        import cupy

        ops, *rest = setup(256)
        fns = calls(ops, *rest)
        if sys.argv[2] == "lineinfo":  # the ncu mode's build
            lineinfo(os.path.abspath(sys.argv[3]))
            _compile._kernels.cache_clear()
            _compile._launch.cache_clear()
            fns["bf16"]()
        else:
            kind, vs = sys.argv[2].split(":")
            cfg = record(ops, fns[kind])[0][1]
            for v in vs.split(","):
                kernels(v, cfg, cupy.cuda.Device().id)
        cupy.cuda.Device().synchronize()
        print("warm", *sys.argv[2:], flush=True)
    elif what == "kab":
        variants = (sys.argv[3] if len(sys.argv) > 3 else "main,r1,new,qsel,s12b,nosl,nold,f32in,masked").split(",")
        for T in [int(x) for x in sys.argv[2].split(",")]:
            kab(T, variants)
    elif what == "ncu":
        import cupy

        ops, *rest = setup(int(sys.argv[2]))
        lineinfo(os.path.abspath(sys.argv[3]))  # (after the forward: its module as warm's)
        _compile._kernels.cache_clear()
        _compile._launch.cache_clear()
        fn = calls(ops, *rest)["bf16"]
        for _ in range(2):
            fn()
        cupy.cuda.Device().synchronize()
        print("done", sys.argv[2], flush=True)
