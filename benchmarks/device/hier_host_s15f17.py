"""Session 15, branch s15f17 (issue 17): the host time of a hierarchical training step, main's host path against
this branch's in one process (a development aid; results in NOTES.md). The calls are issue 17's table's
(``bench_gpu_hierarchical._table_calls``: B=2, H=16, d=64, leaves q, k, v, ``loss = out.float().square().mean()``).

Configurations (``configure``): ``main`` (the finiteness checks' extrema launched through CuPy on the caller's
stream before the kernels, ``hierarchical_bwd.config`` / ``fits``, the chunk layout, ``merge_levels``, ``pieces``
computed per call, the kernels launched by CuPy's RawKernel call: session 14's host path but for the inputs' ``detach``
and ``_arrays.flat``'s copy of a contiguous view) and ``new`` (the tree's: the checks on a side stream with prebuilt launches and
kept buffers, ``_extrema.SIDE``; the cached variants; the hierarchical kernels through the driver with prebuilt argument
blocks, ``_compile.RAW_LAUNCH``). Outputs of the two are bit-equal (same kernels on the same inputs): checked per spec.

    python benchmarks/device/hier_host_s15f17.py warm
        # compiles what the timings use (B=H=1: the training forward / backward at chunk 32, the extrema kernels
        # through both paths), fp32 and bf16
    python benchmarks/device/hier_host_s15f17.py timeline fp32:8192 bf16:16384 ...
        # per spec and configuration (alternated step by step, 15 steps each, queue drained before each step as
        # the table times them), medians: GPU ms from the step's start to hi_intra's start (a CUDA event recorded
        # just before its launch: when the stream could start it), to the end of the forward (call + loss), from
        # there to hib_dq's start and to the end of the backward; host ms until hi_intra's launch, the forward
        # call's return and backward()'s return
    python benchmarks/device/hier_host_s15f17.py profile fp32:8192 bf16:16384
        # torch.profiler of one step per configuration (hier_prof_s14g17.profile): per-kernel device ms, the GPU
        # idle before the forward's first op; full tables in $OUT/prof_*.txt when OUT is set
    python benchmarks/device/hier_host_s15f17.py api 8192
        # fp32 fwd+bwd, ours (new, main) against the array-API path (backend="array_api"), same tensors
    python benchmarks/device/hier_host_s15f17.py sdpa bf16:16384
        # fwd+bwd interleaved (bench_gpu_hierarchical.interleaved_times): ours new, ours main, torch SDPA
    python benchmarks/device/hier_host_s15f17.py others bf16:16384 fp32:8192
        # fwd+bwd of exp_kernel_attention, log_attention, loglinear_attention (the table's calls), main against new
    python benchmarks/device/hier_host_s15f17.py spans fp32:8192 bf16:16384
        # hier_prof_s14g17.hostspans per configuration: the host's clock at each stage of the forward call
"""
import os
import statistics
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]
from bench_gpu_hierarchical import _table_calls, interleaved_times  # noqa: E402  (puts the repository on sys.path)

import lsattn  # noqa: E402
from lsattn.backends.cupy import _compile, _extrema, hierarchical as chi, hierarchical_bwd as chb  # noqa: E402

DT = {"fp32": torch.float32, "bf16": torch.bfloat16}
CONFIG, FITS = chb.config, chb.fits
CACHED = (chi._layout, chi.merge_levels, chb._pieces, chi._fmax)
CONFIGS = ("main", "new")


def configure(name):
    """Session 14's host path (``main``) or the tree's (``new``)."""
    main = name == "main"
    _extrema.SIDE = not main
    _compile.RAW_LAUNCH = not main
    chb.config = CONFIG.__wrapped__ if main else CONFIG
    chb.fits = FITS.__wrapped__ if main else FITS
    chi._layout, chi.merge_levels, chb._pieces, chi._fmax = (f.__wrapped__ for f in CACHED) if main else CACHED


def leaves(T, dt, small=False):
    calls = _table_calls(torch, T, dt)
    fn, xs = calls["hier"]
    if small:  # (compilation only) the same call on one sequence
        lw, a = (x[:1, :1] for x in calls["hier_extra"])
        xs = tuple(x[:1, :1] for x in xs)
        fn = lambda q, k, v: lsattn.loglinear_log_attention(q, k, v, lw, log_decay=a)  # noqa: E731
    return fn, [x.detach().clone().requires_grad_(True) for x in xs]


def step(fn, xs):
    for x in xs:
        x.grad = None
    out = fn(*xs)
    out.float().square().mean().backward()
    return out


class Marks:
    """CUDA events (CuPy's, on the call's stream) and host clocks just before hi_intra's and hib_dq's launches."""

    def __init__(self):
        self.on, self.ev, self.host = False, {}, {}
        for name in ("hi_intra", "hib_dq"):
            orig = getattr(_compile.CupyOps, name)

            def launch(ops, *a, _orig=orig, _name=name, **kw):
                if self.on and _name not in self.ev:
                    import cupy

                    self.host[_name] = time.perf_counter()
                    e = self.ev[_name] = cupy.cuda.Event()
                    e.record()
                return _orig(ops, *a, **kw)
            setattr(_compile.CupyOps, name, launch)


def timeline(specs, reps=15):
    import cupy

    marks = Marks()
    for tag, T in specs:
        fn, xs = leaves(T, DT[tag])
        outs = {}
        for name in CONFIGS:
            configure(name)
            for _ in range(2):
                outs[name] = step(fn, xs).detach()
        same = torch.equal(outs["main"], outs["new"])
        rows = {name: [] for name in CONFIGS}
        for r in range(reps):
            for name in (CONFIGS if r % 2 else CONFIGS[::-1]):
                configure(name)
                torch.cuda.synchronize()
                marks.ev.clear()
                marks.on = True
                e0, e_fwd, e_bwd = (torch.cuda.Event(enable_timing=True) for _ in range(3))
                with torch.cuda.device(xs[0].device):
                    ce0 = cupy.cuda.Event()
                    from lsattn.backends.cupy._arrays import on_gpu

                    with on_gpu(xs[0]):  # the CuPy event on torch's stream (the call's)
                        ce0.record()
                e0.record()
                h0 = time.perf_counter()
                for x in xs:
                    x.grad = None
                out = fn(*xs)
                h1 = time.perf_counter()
                loss = out.float().square().mean()
                e_fwd.record()
                with on_gpu(xs[0]):
                    ce_fwd = cupy.cuda.Event()
                    ce_fwd.record()
                loss.backward()
                h2 = time.perf_counter()
                e_bwd.record()
                e_bwd.synchronize()
                marks.on = False
                ev = marks.ev
                rows[name].append({
                    "gpu_intra": cupy.cuda.get_elapsed_time(ce0, ev["hi_intra"]),
                    "gpu_fwd": e0.elapsed_time(e_fwd),
                    "gpu_dq_after_fwd": cupy.cuda.get_elapsed_time(ce_fwd, ev["hib_dq"]),
                    "gpu_bwd": e_fwd.elapsed_time(e_bwd),
                    "gpu_step": e0.elapsed_time(e_bwd),
                    "host_intra": (marks.host["hi_intra"] - h0) * 1e3,
                    "host_return": (h1 - h0) * 1e3,
                    "host_bwd": (h2 - h1) * 1e3})
        for name in CONFIGS:
            med = {k: statistics.median(r[k] for r in rows[name]) for k in rows[name][0]}
            print(f"T={T} {tag} {name:4s} (ms, median of {reps}): " + " ".join(f"{k} {v:.3f}" for k, v in med.items())
                  + ("" if name == "main" else f" | outputs equal to main's: {same}"), flush=True)
        del xs, outs
        torch.cuda.empty_cache()
    configure("new")


def profile(specs):
    from hier_prof_s14g17 import profile as prof

    out = os.environ.get("OUT", "/tmp")
    for tag, T in specs:
        fn, xs = leaves(T, DT[tag])
        for name in CONFIGS:
            configure(name)
            for _ in range(2):
                step(fn, xs)
            torch.cuda.synchronize()
            p = prof(fn, xs, os.path.join("/tmp", f"trace_s15f17_{tag}_{T}_{name}.json"))
            with open(os.path.join(out, f"prof_{tag}_{T}_{name}.txt"), "w") as f:
                for ph, r in p.items():
                    print(f"{ph}: span {r['span_ms']:.3f} busy {r['busy_ms']:.3f} before_first {r['before_first_ms']:.3f} "
                          f"gaps {r['gaps_ms']:.3f} ops {r['launches']}", file=f)
                    for k, (n, ms) in r["kernels"].items():
                        print(f"    {ms:8.4f} ms  x{n:<3d} {k}", file=f)
                    for row in r["timeline"][:40]:
                        print("  tl", *row, file=f)
            f, b = p["fwd"], p["bwd"]
            kern = lambda r, pre: sum(ms for k, (n, ms) in r["kernels"].items() if k.startswith(pre))  # noqa: E731
            print(f"T={T} {tag} {name:4s} profiled: fwd busy {f['busy_ms']:.3f} idle-before-first {f['before_first_ms']:.3f} "
                  f"gaps {f['gaps_ms']:.3f} (hi_ {kern(f, 'hi_'):.3f}, extrema {kern(f, 'lsattn_extrema'):.3f}) | bwd busy "
                  f"{b['busy_ms']:.3f} idle-before-first {b['before_first_ms']:.3f} gaps {b['gaps_ms']:.3f} (hib_ "
                  f"{kern(b, 'hib_'):.3f})", flush=True)
        del xs
        torch.cuda.empty_cache()
    configure("new")


def api(T, reps=3):
    fn, xs = leaves(T, torch.float32)
    lw, a = _table_calls(torch, T, torch.float32)["hier_extra"]
    arr = lambda q, k, v: lsattn.loglinear_log_attention(q, k, v, lw, log_decay=a, backend="array_api")  # noqa: E731
    res = {}
    for name, f, n, cfg in (("ours new", fn, 15, "new"), ("ours main", fn, 15, "main"), ("array_api", arr, reps, "new"),
                            ("ours new again", fn, 15, "new")):
        configure(cfg)
        step(f, xs)
        torch.cuda.synchronize()
        ts = []
        for _ in range(n):
            e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            e0.record()
            step(f, xs)
            e1.record()
            e1.synchronize()
            ts.append(e0.elapsed_time(e1))
        res[name] = statistics.median(ts)
    ours = min(res["ours new"], res["ours new again"])
    print(f"T={T} fp32 fwd+bwd (ms): " + ", ".join(f"{k} {v:.3f}" for k, v in res.items())
          + f" | array-API / ours new {res['array_api'] / ours:.1f}x, / ours main {res['array_api'] / res['ours main']:.1f}x",
          flush=True)
    configure("new")


def sdpa(specs):
    for tag, T in specs:
        calls = _table_calls(torch, T, DT[tag])
        fn, xs = leaves(T, DT[tag])
        sfn, sxs = calls["sdpa"]
        sl = [x.detach().clone().requires_grad_(True) for x in sxs]

        def ours(cfg):
            def run():
                configure(cfg)
                step(fn, xs)
            return run
        got = interleaved_times({"ours new": ours("new"), "ours main": ours("main"), "sdpa": lambda: step(sfn, sl)}, 40,
                                budget_s=4.0)
        print(f"T={T} {tag} fwd+bwd interleaved (ms): " + ", ".join(f"{k} {v:.3f}" for k, v in got.items())
              + f" | ours new / sdpa {got['ours new'] / got['sdpa']:.2f}x", flush=True)
        calls = fn = xs = sfn = sl = None  # (freed before the next spec)
        torch.cuda.empty_cache()
    configure("new")


def others(specs, ops=("ek", "la", "ll")):
    """fwd+bwd of the other operators' table calls (their checks take the same path): main's configuration against
    the tree's, interleaved (a small T compiles their kernels: the training chunks do not depend on T)."""
    from bench_gpu_hierarchical import _train

    for tag, T in specs:
        calls = _table_calls(torch, T, DT[tag])
        fns = {}
        for op in ops:
            fn, xs = calls[op]
            run = _train(torch, fn, xs)
            for cfg in CONFIGS:
                fns[f"{op} {cfg}"] = (lambda run=run, cfg=cfg: (configure(cfg), run()))
        got = interleaved_times(fns, 30, budget_s=4.0)
        print(f"T={T} {tag} fwd+bwd interleaved (ms): " + ", ".join(
            f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in got.items()), flush=True)
        calls = fns = None
        torch.cuda.empty_cache()
    configure("new")


def main():
    what, rest = sys.argv[1], sys.argv[2:]
    specs = [(s.split(":")[0], int(s.split(":")[1])) for s in rest if ":" in s]
    if what == "warm":
        for tag in ("fp32", "bf16"):
            for name in CONFIGS:
                configure(name)
                fn, xs = leaves(8192, DT[tag], small=True)
                step(fn, xs)
            torch.cuda.synchronize()
            print("warm", tag, flush=True)
        configure("new")
    elif what == "timeline":
        timeline(specs)
    elif what == "profile":
        profile(specs)
    elif what == "api":
        api(int(rest[0]) if rest else 8192)
    elif what == "sdpa":
        sdpa(specs)
    elif what == "others":
        others(specs)
    elif what == "spans":  # hier_prof_s14g17.hostspans per configuration (the forward call's stages, host ms)
        from hier_prof_s14g17 import hostspans

        for name in CONFIGS:
            configure(name)
            print(f"== {name}", flush=True)
            hostspans(specs)
        configure("new")


if __name__ == "__main__":
    main()
