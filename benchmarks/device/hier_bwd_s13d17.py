"""Session 13, branch s13d17 (issue 17): loglinear_log_attention bf16 training against torch SDPA (a development
aid; results in NOTES.md).

    python benchmarks/device/hier_bwd_s13d17.py warm 256
        # compiles what the timings use: one bf16 fwd+bwd of the public call at the training chunk 32 and 64
    python benchmarks/device/hier_bwd_s13d17.py train 16384,32768 [SPECS]
        # bf16 fwd+bwd (bench_gpu_hierarchical's table calls: grad of q, k, v; loss out.float().square().mean()),
        # ours for each CHUNK:VARIANT of SPECS (default 32:new,64:new): the autograd forward and the backward at
        # that chunk (the training chunk when the caller gives none, hierarchical_bwd.config's default, set here),
        # the variant of the code ("new": the tree's; "pf0": in requests 1-2 hib_blocks without its prefetch of the
        # next chunk, -DHIB_PF=0; the prefetch is gone since, so "pf0" builds the tree's); the specs of one variant
        # timed interleaved with torch SDPA
        # (bench_gpu_hierarchical.interleaved_times), the variants one after another
    python benchmarks/device/hier_bwd_s13d17.py kab 16384 [VARIANTS]
        # the backward's kernels (CUDA events after each launch, median of 5 after a warm-up) of a bf16 call
        # (B=2, H=16, d=64, decay, level weights; the slots kept by the bf16 training forward at chunk 32):
        # "bf16" the inputs read as they are, "f32in" on float32 copies (main's kernel inputs before session 13;
        # the copies not timed), for each variant of the code (default new,pf0)
"""
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from bench_gpu_hierarchical import _table_calls, _train, interleaved_times  # noqa: E402  (puts the repository on sys.path)
from lsattn.backends.cupy import _compile, hierarchical_bwd as chb  # noqa: E402

what, Ts = sys.argv[1], [int(x) for x in sys.argv[2].split(",")]
arg = sys.argv[3] if len(sys.argv) > 3 else ("new,pf0" if what == "kab" else "32:new,64:new")
specs = [] if what == "kab" else [(int(c), v) for c, v in (x.split(":") for x in arg.split(","))]
variants = arg.split(",") if what == "kab" else list(dict.fromkeys(v for _, v in specs))
config, source = chb.config, _compile._source


def use(name):
    """The variant ``name`` of the tree's backward; the compiled kernels dropped."""
    pre = {"pf0": "#define HIB_PF 0\n"}.get(name, "")
    _compile._source = lambda n: pre + source(n) if n == "hierarchical_bwd.cu" else source(n)
    _compile._kernels.cache_clear()
    _compile._launch.cache_clear()


def at(ch):
    """The call's training chunk ``ch`` (the autograd forward's and the backward's default)."""
    def run(fn):
        def f():
            chb.config = lambda ta, DK, DV, chunk_size=None, *a, **kw: config(ta, DK, DV, chunk_size or ch, *a, **kw)
            try:
                fn()
            finally:
                chb.config = config
        return f
    return run


def kab(T):
    import statistics

    import cupy

    from bench_gpu_hierarchical import inputs
    from lsattn.backends.cupy import hierarchical as chi
    from lsattn.backends.cupy._arrays import narrow, on_gpu, widen

    names = ("hib_dq", "hib_blocks", "hib_bmerge", "hib_dkdv")
    xc = [cupy.asarray(t.detach()) for t in inputs(torch, T, torch.float32)]
    xh = [narrow(cupy, x, "bf16") for x in xc]
    for var in variants:
        use(var)
        with on_gpu(xc[0]) as (_, _, ops):
            out, w = chi.compute(ops, *xh[:4], xh[4], 0, None, 32, "bf16", wide=True, keep=True)
            kept = chb.keep(w)
            do16 = narrow(cupy, cupy.random.standard_normal(out.shape, dtype=cupy.float32), "bf16")
            wide = [widen(cupy, x, "bf16") for x in xh] + [widen(cupy, do16, "bf16")]
            marks, orig = {}, {n: getattr(ops, n) for n in names}

            def wrap(name):
                def f(*a, **kw):
                    orig[name](*a, **kw)
                    marks[name] = cupy.cuda.Event()
                    marks[name].record()
                return f

            for n in names:
                setattr(ops, n, wrap(n))
            for kind in ("bf16", "f32in"):
                rows = []
                for _ in range(6):
                    start, end = cupy.cuda.Event(), cupy.cuda.Event()
                    start.record()
                    if kind == "bf16":
                        chb.backward(ops, *xh[:4], xh[4], 0, None, out, do16, None, True, kept, "bf16")
                    else:
                        chb.backward(ops, *wide[:4], wide[4], 0, None, out, wide[5], None, True, kept, "")
                    end.record()
                    end.synchronize()
                    t, bm = cupy.cuda.get_elapsed_time, marks.pop("hib_bmerge", marks["hib_blocks"])  # (no split block)
                    rows.append([t(start, marks["hib_dq"]), t(marks["hib_dq"], marks["hib_blocks"]),
                                 t(marks["hib_blocks"], bm), t(bm, marks["hib_dkdv"]), t(start, end)])
                med = [statistics.median(r[i] for r in rows[1:]) for i in range(5)]
                print(f"T={T} {var} {kind}: hib_dq {med[0]:.3f} hib_blocks {med[1]:.3f} hib_bmerge {med[2]:.3f} "
                      f"hib_dkdv {med[3]:.3f} backward {med[4]:.3f} ms", flush=True)
            for n in names:
                delattr(ops, n)
    use("new")


if what == "kab":
    for T in Ts:
        kab(T)
    sys.exit(0)
for T in Ts:
    calls = _table_calls(torch, T, torch.bfloat16)
    for var in variants:
        use(var)
        fns = {f"hier c{ch} {var}": at(ch)(_train(torch, *calls["hier"])) for ch, v in specs if v == var}
        if what == "warm":
            for name, fn in fns.items():
                fn()
                print("warm", name, flush=True)
            torch.cuda.synchronize()
            continue
        fns["sdpa"] = _train(torch, *calls["sdpa"])
        res = interleaved_times(fns, reps=7, budget_s=5.0)
        print(f"T={T} bf16 fwd+bwd ms: " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                                                     for k, v in res.items()), flush=True)
        if isinstance(res.get("sdpa"), float):
            print(f"T={T} / SDPA: " + ", ".join(f"{k} {v / res['sdpa']:.3f}" for k, v in res.items()
                                                if isinstance(v, float) and k != "sdpa"), flush=True)
        del fns
    use("new")
    del calls
