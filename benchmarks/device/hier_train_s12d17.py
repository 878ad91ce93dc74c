"""Session 12, branch s12d17 (issue 17): loglinear_log_attention bf16 training toward torch SDPA at 16K
(a development aid; results in NOTES.md).

    python benchmarks/device/hier_train_s12d17.py public 16384,32768
        # issue 17's table cells of the hierarchical operator and SDPA, bf16 (``bench_gpu_hierarchical.table``'s
        # calls and timing: fwd and fwd+bwd of q, k, v), plus ours fwd fp32 (the forward bf16 training ran before),
        # ours bf16 fwd with the checks from one kernel (lsattn._nonfinite.KERNEL) and without again
    python benchmarks/device/hier_train_s12d17.py ab 8192,16384 [VARIANT:fp32,tc ...]
        # the backward's split by kernel (bench_gpu_hierarchical._split, third run): "new" the tree's, "ffma" the tree's
        # with the backward's slots (hi_intra, hi_merge, hi_snap) on the FFMA kernels (before this branch), "c16" /
        # "c64" the tree's at backward chunk 16 / 64 (the default: 32). (Request 1 also timed hib_blocks variants
        # since removed: benchmarks/NOTES.md, session 12.)
    python benchmarks/device/hier_train_s12d17.py kab 16384 [VARIANT ...]
        # the forward's kernels (bench_gpu_hierarchical.kernels, bf16 and fp32, chunk 64) for "new" (the tree's; also at
        # chunk 32, the training forward's) and "rpro0" (requests 1-2: hi_read's first loads one at a time, -DHI_RPRO=0;
        # that form is gone from hierarchical.cu since, so "rpro0" now builds the tree's)
    python benchmarks/device/hier_train_s12d17.py warm 256 [AB_VARIANTS KAB_VARIANTS]
        # compiles what the timings use (CuPy's kernel cache): kab's first variant (bf16, fp32, chunk 64), one B=H=1
        # fwd+bwd at 8K per dtype, kab's other variants, ab's at T; variants comma-separated ("" none; default:
        # new,ffma and new,rpro0)
    python benchmarks/device/hier_train_s12d17.py ncu 16384 SRC_OUT.cu
        # for ncu: one bf16 forward of the kernels (hierarchical.compute, chunk 64) compiled with -lineinfo, the
        # compiled source written to SRC_OUT.cu (its #line directive: ncu's source view finds it there)
    python benchmarks/device/hier_train_s12d17.py profile 16384
        # torch.profiler of one public bf16 forward (no grad), then of one fwd+bwd (after two warm-up calls each):
        # CUDA time per kernel
"""
import dataclasses
import os
import sys

import cupy
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from bench_gpu import measure  # noqa: E402
from bench_gpu_hierarchical import _split, _table_calls, _train, inputs  # noqa: E402  (puts the repository on sys.path)
from lsattn.backends.cupy import _compile, hierarchical as chi, hierarchical_bwd as chb  # noqa: E402
from lsattn.backends.cupy._arrays import narrow, on_gpu  # noqa: E402

what, Ts = sys.argv[1], [int(x) for x in sys.argv[2].split(",")]
source, slots = _compile._source, chi.slots


def use(name):
    """The variant ``name`` of the tree's code; the compiled kernels dropped."""
    pre = {"rpro0": "#define HI_RPRO 0\n"}.get(name, "")

    def src(n):
        text = source(n)
        return pre + text if n == "hierarchical.cu" else text

    _compile._source = src
    _compile._kernels.cache_clear()
    _compile._launch.cache_clear()
    chi.slots = (lambda ops, cfg, *a: slots(ops, dataclasses.replace(cfg, tc=False), *a)) if name == "ffma" else slots


if what == "public":
    res = {}
    for T in Ts:
        print(f"T = {T}", flush=True)
        for dt, tag in ((torch.bfloat16, "bf16"), (torch.float32, "fp32")):
            calls = _table_calls(torch, T, dt)
            for op in ("hier", "sdpa") if tag == "bf16" else ("hier",):
                fn, xs = calls[op]
                measure(f"{op} {tag} fwd", lambda fn=fn, xs=xs: fn(*xs), res, f"{T}_{op}_{tag}_fwd", reps=5)
                if tag == "bf16":
                    measure(f"{op} {tag} fwd+bwd", _train(torch, fn, xs), res, f"{T}_{op}_{tag}_train", reps=5)
            del calls
        import lsattn._nonfinite as nf  # the checks from one extrema kernel (off on main: s11e17's measurements were noisy)

        calls = _table_calls(torch, T, torch.bfloat16)
        fn, xs = calls["hier"]
        nf.KERNEL = True
        measure("hier bf16 fwd, _nonfinite.KERNEL", lambda: fn(*xs), res, f"{T}_hier_bf16_fwd_kernel", reps=5)
        nf.KERNEL = False
        measure("hier bf16 fwd (again)", lambda: fn(*xs), res, f"{T}_hier_bf16_fwd_again", reps=5)
        del calls
        r = lambda k: res.get(f"{T}_{k}", {}).get("ms")  # noqa: E731
        if r("hier_bf16_fwd") and r("sdpa_bf16_fwd"):
            print(f"T={T} hier / SDPA bf16: fwd {r('hier_bf16_fwd') / r('sdpa_bf16_fwd'):.2f}, fwd+bwd "
                  f"{r('hier_bf16_train') / r('sdpa_bf16_train'):.2f}", flush=True)
elif what == "kab":
    import argparse

    from bench_gpu_hierarchical import kernels

    for name in sys.argv[3:] or ["new", "rpro0"]:
        use(name)
        print(name, flush=True)
        kernels(argparse.Namespace(T=Ts, dtypes=["bfloat16", "float32"], chunks=[64] if name != "new" else [64, 32]))
    use("new")
elif what == "warm":
    import lsattn

    ab = sys.argv[3].split(",") if len(sys.argv) > 3 else ["new", "ffma"]
    kab = sys.argv[4].split(",") if len(sys.argv) > 4 else ["new", "rpro0"]
    xc = [cupy.asarray(t.detach()) for t in inputs(torch, Ts[0], torch.float32)]

    def fwd64(name):  # the forward's chunk-64 kernels (bf16, fp32) of kab and of public's calls without grad
        use(name)
        for half in ("bf16", ""):
            ys = [narrow(cupy, t, half) for t in xc] if half else xc
            with on_gpu(xc[0]) as (_, _, ops):
                chi.compute(ops, *ys[:4], ys[4], 0, None, 64, half)

    fwd64(kab[0])  # first what the timings need most, in case the time runs out
    use("new")
    for dt in (torch.bfloat16, torch.float32):
        x = [t.requires_grad_(True) for t in inputs(torch, 8192, dt, batch=(1, 1))]
        lsattn.loglinear_log_attention(*x[:4], log_decay=x[4]).float().sum().backward()
    for name in kab[1:]:
        fwd64(name)
    for name in ab if ab != [""] else []:
        use(name)
        for tc in (False, True):
            _split(cupy, chi, chb, on_gpu, xc, 16 if name == "c16" else None, tc=tc)
    use("new")
    print("warm", flush=True)
elif what == "ab":
    for T in Ts:
        xc = [cupy.asarray(t.detach()) for t in inputs(torch, T, torch.float32)]
        for spec in sys.argv[3:] or ["new:fp32,tc", "ffma:tc"]:
            name, modes = spec.split(":")
            use(name)
            ch = {"c16": 16, "c64": 64}.get(name)
            for tc in [m == "tc" for m in modes.split(",")]:
                print(f"T={T} {name} {'tc' if tc else 'fp32'}", _split(cupy, chi, chb, on_gpu, xc, ch, tc=tc), flush=True)
        use("new")
        del xc
elif what == "ncu":
    src_out, raw = os.path.abspath(sys.argv[3]), cupy.RawModule

    def lineinfo(code, options=(), **kw):
        if "hi_read" in code:
            with open(src_out, "w") as f:
                f.write(code)
            code, options = f'#line 1 "{src_out}"\n' + code, tuple(options) + ("-lineinfo",)
        return raw(code=code, options=options, **kw)

    cupy.RawModule = lineinfo
    xs = [narrow(cupy, cupy.asarray(t.detach()), "bf16") for t in inputs(torch, Ts[0], torch.float32)]
    with on_gpu(xs[0]) as (_, _, ops):
        chi.compute(ops, *xs[:4], xs[4], 0, None, 64, "bf16")
    cupy.cuda.Device().synchronize()
    print("done", Ts[0], flush=True)
else:
    import lsattn

    T = Ts[0]
    x = [t.requires_grad_(True) for t in inputs(torch, T, torch.bfloat16)]
    do = torch.randn_like(x[2])

    def train():
        lsattn.loglinear_log_attention(*x[:4], log_decay=x[4]).backward(do)

    def fwd():
        with torch.no_grad():
            lsattn.loglinear_log_attention(*x[:4], log_decay=x[4])

    acts = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
    for name, step in (("fwd", fwd), ("fwd+bwd", train)):
        for _ in range(2):
            step()
        torch.cuda.synchronize()
        with torch.profiler.profile(activities=acts) as prof:
            step()
            torch.cuda.synchronize()
        print(f"=== {name} bf16 T={T}", flush=True)
        for key in ("device_time_total", "cuda_time_total"):
            try:
                print(prof.key_averages().table(sort_by=key, row_limit=22, max_name_column_width=40))
                break
            except (AttributeError, KeyError, ValueError):
                continue
