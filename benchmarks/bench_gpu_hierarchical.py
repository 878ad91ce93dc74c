"""GPU benchmark of ``loglinear_log_attention`` (hierarchical exp-kernel attention) on the CuPy
kernels (``hierarchical.cu``) against ``loglinear_attention`` (cupy), torch SDPA and its own
array-API path, in one run.

    python benchmarks/bench_gpu_hierarchical.py [--out DIR] [--T 2048,4096,...] [--api-max 8192]
    python benchmarks/bench_gpu_hierarchical.py kernels [--T 8192] [--dtypes float32,float32-ffma,bfloat16] [--chunks 32,64]
        # the kernels' forward per chunk, per kernel
    python benchmarks/bench_gpu_hierarchical.py train [--T 8192]     # forward + backward (see ``train``)
    python benchmarks/bench_gpu_hierarchical.py table [--T 2048,...,65536] [--out DIR] [--reps 10] [--small-reps 40]   # issue 17's full table
    python benchmarks/bench_gpu_hierarchical.py report DIR/gpu_issue17.json [--md F] [--png F]   # its table + plot again

Shapes: B=2, H=16, d_k=d_v=64, forward only, median of CUDA-event times after warm-up, CUDA torch
tensors. Rows: ours (the public function, no ``backend=``) in float32 and bfloat16; the array-API
path (``backend="array_api"``, float32, up to ``--api-max`` tokens); ``loglinear_attention``
(public, float32 and bfloat16); torch SDPA (causal, float32 and bfloat16). Also the float32 error
of ours against ``lsattn.reference`` (float64) at B=1, H=2, T=2048 (max |log y - ref|, and the
test bound of tests/test_hierarchical.py). Writes ``bench_gpu_hierarchical.json`` and ``.md``
(device name and date in both) under ``--out`` (default ``$OUT`` or benchmarks/results).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

from _common import pyplot, utc_now, write_json
from bench_gpu import cuda_time, device_info, measure, peak_mem

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

B, H, D = 2, 16, 64


def inputs(torch, T, dtype, batch=(B, H), seed=0):
    """q, k, log_v, log_level_weights, log_decay (moderate decays, random level weights)."""
    import lsattn

    g = torch.Generator(device="cuda").manual_seed(seed)
    r = lambda *s: torch.randn(*s, device="cuda", generator=g)  # noqa: E731
    q, k, lv = (r(*batch, T, D) * (D ** -0.5 if i < 2 else 1.0) for i in range(3))
    lam = r(*batch, T, lsattn.num_levels(T))
    a = -0.1 * torch.rand(*batch, T, device="cuda", generator=g)
    return [x.to(dtype) for x in (q, k, lv, lam, a)]


def timed(name, fn, row, key):
    import torch

    try:
        ms = cuda_time(fn, reps=10)
        row[key] = ms
        print(f"  {name:40s} {ms:9.3f} ms", flush=True)
    except Exception as exc:  # out of memory, unsupported: recorded, not fatal
        row[key] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''}"
        print(f"  {name:40s} fails: {row[key]}", flush=True)
    torch.cuda.synchronize()
    torch.cuda.empty_cache()


def accuracy(torch):
    """float32 error of ours at B=1, H=2, T=2048 against the float64 reference, and the test bound."""
    import lsattn
    from lsattn import reference as ref

    x = inputs(torch, 2048, torch.float32, batch=(1, 2), seed=1)
    out = lsattn.loglinear_log_attention(*x[:4], log_decay=x[4]).double().cpu().numpy()
    x64 = [t.double() for t in x]  # the reference on the GPU (float64 torch)
    want = ref.loglinear_log_attention(*x64[:4], log_decay=x64[4]).cpu().numpy()
    x64 = [t.cpu().numpy() for t in x64]
    tol = 1e-5 + 2 * np.finfo(np.float32).eps * (np.abs(x64[0]).max() + np.abs(x64[1]).max())
    err = float(np.max(np.abs(out - want)))
    return {"max_abs_err": err, "bound": tol * (1 + float(np.abs(want).max())), "T": 2048, "batch": [1, 2]}


def bench(args):
    import torch
    import torch.nn.functional as Fn

    import lsattn

    props = torch.cuda.get_device_properties(0)
    res = {"device": props.name, "date": utc_now(), "shape": {"B": B, "H": H, "d": D}, "rows": {}}
    res["accuracy_fp32"] = accuracy(torch)
    print(f"{props.name}  accuracy {res['accuracy_fp32']}", flush=True)
    for T in args.T:
        print(f"T={T}", flush=True)
        row = res["rows"][str(T)] = {}
        for dt, tag in ((torch.float32, "fp32"), (torch.bfloat16, "bf16")):
            q, k, lv, lam, a = inputs(torch, T, dt)
            timed(f"loglinear_log_attention {tag}", lambda: lsattn.loglinear_log_attention(q, k, lv, lam, log_decay=a),
                  row, f"ours_{tag}")
            if dt == torch.float32 and T <= args.api_max:
                timed("  array-API path fp32", lambda: lsattn.loglinear_log_attention(q, k, lv, lam, log_decay=a,
                                                                                       backend="array_api"),
                      row, "array_api_fp32")
            v, w = torch.exp(lv), torch.exp(lam)
            timed(f"loglinear_attention {tag}", lambda: lsattn.loglinear_attention(q, k, v, a, w), row, f"loglinear_{tag}")
            timed(f"torch SDPA causal {tag}", lambda: Fn.scaled_dot_product_attention(q, k, v, is_causal=True), row,
                  f"sdpa_{tag}")
            del q, k, lv, lam, a, v, w
    write_json(os.path.join(args.out, "bench_gpu_hierarchical.json"), res)
    lines = [f"# loglinear_log_attention on the cupy kernels ({props.name}, {res['date']})", "",
             f"B={B}, H={H}, d_k=d_v={D}, forward, median ms (CUDA events), CUDA torch tensors. "
             f"fp32 error at B=1, H=2, T=2048: {res['accuracy_fp32']['max_abs_err']:.2e} "
             f"(test bound {res['accuracy_fp32']['bound']:.2e}).", "",
             "| T | ours fp32 | ours bf16 | array-API fp32 | loglinear fp32 | loglinear bf16 | SDPA fp32 | SDPA bf16 | "
             "ours / loglinear (fp32) | array-API / ours (fp32) |", "|---" * 10 + "|"]
    fmt = lambda x: f"{x:.3f}" if isinstance(x, float) else ("-" if x is None else "fail")  # noqa: E731
    for T, row in res["rows"].items():
        o, ll, api = row.get("ours_fp32"), row.get("loglinear_fp32"), row.get("array_api_fp32")
        r1 = f"{o / ll:.2f}" if isinstance(o, float) and isinstance(ll, float) else "-"
        r2 = f"{api / o:.1f}" if isinstance(o, float) and isinstance(api, float) else "-"
        cells = [row.get(x) for x in ("ours_fp32", "ours_bf16", "array_api_fp32", "loglinear_fp32", "loglinear_bf16",
                                      "sdpa_fp32", "sdpa_bf16")]
        lines.append(f"| {T} | " + " | ".join(fmt(x) for x in cells) + f" | {r1} | {r2} |")
    with open(os.path.join(args.out, "bench_gpu_hierarchical.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


class _Split:
    """``ops`` whose hierarchical kernels record CUDA events around each launch (per-kernel times)."""

    def __init__(self, ops):
        self.ops, self.xp, self.ev = ops, ops.xp, []

    def __getattr__(self, name):
        fn = getattr(self.ops, name)
        if not name.startswith("hi_"):
            return fn

        def timed_launch(*a, **kw):
            import cupy

            e0, e1 = cupy.cuda.Event(), cupy.cuda.Event()
            e0.record()
            fn(*a, **kw)
            e1.record()
            self.ev.append((name, e0, e1))
        return timed_launch

    def times(self):
        import cupy

        out = {}
        for name, e0, e1 in self.ev:
            e1.synchronize()
            out[name] = out.get(name, 0.0) + cupy.cuda.get_elapsed_time(e0, e1)
        self.ev = []
        return out


def kernels(args):
    """The forward's host logic and kernels (``hierarchical.compute`` on CuPy arrays: float32, or bfloat16
    patterns read as they are) at each of ``--chunks``, then the same call with each kernel timed apart
    (CUDA events around each launch: ``hi_intra``, ``hi_merge`` (all its launches), ``hi_snap``,
    ``hi_read``; the rest of the forward's time is the host logic and allocations). dtype ``float32-ffma``:
    float32 on the FFMA kernels (``Config.tc`` off: session 10's float32 path, for comparison)."""
    import dataclasses

    import cupy

    from lsattn.backends.cupy import hierarchical as chi
    from lsattn.backends.cupy._arrays import narrow, on_gpu

    for T in args.T:
        rng = np.random.default_rng(0)
        x = [cupy.asarray(rng.standard_normal(s).astype(np.float32)) for s in
             ((B, H, T, D), (B, H, T, D), (B, H, T, D), (B, H, T, T.bit_length() + 1))]
        a = cupy.asarray(-0.1 * rng.random((B, H, T)).astype(np.float32))
        for dtype in args.dtypes:
            half = {"float32": "", "float32-ffma": "", "bfloat16": "bf16"}[dtype]
            xs = [narrow(cupy, t, half) for t in x + [a]] if half else x + [a]
            config = chi.config
            if dtype == "float32-ffma":
                chi.config = lambda *c, f=config: dataclasses.replace(f(*c), tc=False)  # noqa: E731
            with on_gpu(x[0]) as (_, _, ops):
                for C in args.chunks:
                    full = lambda o=ops: chi.compute(o, *xs[:4], xs[4], 0, None, C, half)  # noqa: E731
                    start, end = cupy.cuda.Event(), cupy.cuda.Event()
                    for _ in range(2):
                        full()
                    start.record()
                    for _ in range(5):
                        full()
                    end.record()
                    end.synchronize()
                    split = _Split(ops)
                    reps = 5
                    for _ in range(reps):
                        chi.compute(split, *xs[:4], xs[4], 0, None, C, half)
                    per = {k: v / reps for k, v in split.times().items()}
                    cfg = chi.config("float", D, D, C, half)
                    print(f"T={T} {dtype} C={cfg.CH}: forward {cupy.cuda.get_elapsed_time(start, end) / 5:.3f} ms; "
                          + ", ".join(f"{k} {v:.3f}" for k, v in per.items())
                          + f" (kernels {sum(per.values()):.3f}) ms", flush=True)
            chi.config = config


def train(args):
    """Forward + backward (one ``.backward()`` of ``sum(out * dO)``) at B=2, H=16, d=64: ours (the
    backward kernels, float32 and bfloat16), ``loglinear_attention`` (its backward kernels, float32),
    torch SDPA (causal, bfloat16) and the array-API path (float32, differentiated by torch, up to
    ``--api-max``); the backward's
    host logic split by kernel (``hierarchical_bwd.backward`` on CuPy float32 arrays, CUDA events
    around the forward's slots, hib_dq, hib_blocks, hib_bmerge, hib_dkdv; FFMA and the bfloat16
    callers' tensor-core variant); the peak memory of ours. Prints a
    table and writes ``bench_gpu_hierarchical_train.json`` and ``.md``."""
    import cupy
    import torch

    import lsattn
    from bench_gpu import peak_mem
    from lsattn.backends.cupy import hierarchical as chi, hierarchical_bwd as chb
    from lsattn.backends.cupy._arrays import on_gpu

    res = {"device": torch.cuda.get_device_properties(0).name, "date": utc_now(), "shape": {"B": B, "H": H, "d": D},
           "rows": {}}
    for T in args.T:
        row = res["rows"][str(T)] = {}
        print(f"T={T}", flush=True)
        for dt, tag in ((torch.float32, "fp32"), (torch.bfloat16, "bf16")):
            x = [t.requires_grad_(True) for t in inputs(torch, T, dt)]
            do = torch.randn(B, H, T, D, device="cuda", dtype=dt)

            def ours():
                lsattn.loglinear_log_attention(*x[:4], log_decay=x[4]).backward(do)

            timed(f"ours fwd+bwd {tag}", ours, row, f"ours_{tag}")
            if dt == torch.float32:
                row["ours_fp32_peak_GB"] = peak_mem(ours) / 1e9
                if T <= args.api_max:
                    timed("array-API fwd+bwd fp32", lambda: lsattn.loglinear_log_attention(
                        *x[:4], log_decay=x[4], backend="array_api").backward(do), row, "array_api_fp32")
                v, w = torch.exp(x[2].detach()).requires_grad_(True), torch.exp(x[3].detach()).requires_grad_(True)
                timed("loglinear_attention fwd+bwd fp32",
                      lambda: lsattn.loglinear_attention(x[0], x[1], v, x[4], w).backward(do), row, "loglinear_fp32")
                timed("ours fwd fp32", lambda: lsattn.loglinear_log_attention(*x[:4], log_decay=x[4]), row,
                      "ours_fwd_fp32")
            else:  # the softmax peer at the same shapes (fp32 SDPA's backward is minutes at 64K: bf16 only)
                sd = [x[0].detach().clone(), x[1].detach().clone(), torch.exp(x[2].detach()), do]
                for t in sd[:3]:
                    t.requires_grad_(True)
                timed("torch SDPA causal fwd+bwd bf16", lambda: torch.nn.functional.scaled_dot_product_attention(
                    *sd[:3], is_causal=True).backward(sd[3]), row, "sdpa_bf16")
                del sd
            del x, do
        xc = [cupy.asarray(t.detach()) for t in inputs(torch, T, torch.float32)]
        for tc, key in ((False, "backward_split_fp32_ms"), (True, "backward_split_tc_ms")):
            try:
                row[key] = _split(cupy, chi, chb, on_gpu, xc, tc=tc)
            except Exception as exc:  # recorded, not fatal
                row[key] = f"{type(exc).__name__}: {exc}"
            print(f"  backward split ({'tensor cores (bf16 callers)' if tc else 'fp32'}, CuPy):", row[key], flush=True)
        del xc
    write_json(os.path.join(args.out, "bench_gpu_hierarchical_train.json"), res)
    keys = ("ours_fp32", "ours_bf16", "array_api_fp32", "loglinear_fp32", "sdpa_bf16", "ours_fwd_fp32")
    fmt = lambda x: f"{x:.3f}" if isinstance(x, float) else ("-" if x is None else "fail")  # noqa: E731
    lines = [f"# loglinear_log_attention forward + backward ({res['device']}, {res['date']})", "",
             f"B={B}, H={H}, d_k=d_v={D}, median ms (CUDA events) of one forward + backward from leaf tensors.", "",
             "| T | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    lines += [f"| {T} | " + " | ".join(fmt(row.get(k)) for k in keys) + " |" for T, row in res["rows"].items()]
    with open(os.path.join(args.out, "bench_gpu_hierarchical_train.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


def _split(cupy, chi, chb, on_gpu, xc, chunk_size=None, tc=False):
    """ms of the backward's parts (``hierarchical_bwd.backward`` on CuPy float32 arrays, third run; its
    chunk ``chunk_size`` or the default; ``tc``: the bfloat16 callers' variant, products on tensor cores):
    CUDA events recorded after each launch by wrappers set on the ``ops`` object (removed after)."""
    names = ("hi_snap", "hib_dq", "hib_blocks", "hib_bmerge", "hib_dkdv")
    with on_gpu(xc[0]) as (_, _, ops):
        out = chi.compute(ops, *xc[:4], xc[4], 0, None)
        doc = cupy.asarray(np.random.default_rng(0).standard_normal(out.shape).astype(np.float32))
        marks, orig = {}, {n: getattr(ops, n) for n in names}

        def wrap(name):
            def f(*a, **kw):
                orig[name](*a, **kw)
                marks[name] = cupy.cuda.Event()
                marks[name].record()
            return f

        for n in names:
            setattr(ops, n, wrap(n))
        try:
            for _ in range(3):
                start, end = cupy.cuda.Event(), cupy.cuda.Event()
                start.record()
                chb.backward(ops, *xc[:4], xc[4], 0, None, out, doc, chunk_size, tc)
                end.record()
                end.synchronize()
        finally:
            for n in names:
                delattr(ops, n)
    t = lambda a, b: round(cupy.cuda.get_elapsed_time(a, b), 3)  # noqa: E731
    return {"slots (hi_intra, hi_merge, hi_snap)": t(start, marks["hi_snap"]), "hib_dq": t(marks["hi_snap"], marks["hib_dq"]),
            "hib_blocks": t(marks["hib_dq"], marks["hib_blocks"]),
            "hib_bmerge": t(marks["hib_blocks"], marks.get("hib_bmerge", marks["hib_blocks"])),
            "hib_dkdv": t(marks.get("hib_bmerge", marks["hib_blocks"]), marks["hib_dkdv"]),
            "total": t(start, end)}


#: issue 17's table: (key, label, operator, dtype, fwd+bwd); the peers of each target on the same shapes
TABLE = [(f"{op}_{dt}_{m}", f"{label} {dt} {m}", op, dt, m == "train")
         for op, label in (("ek", "exp_kernel_attention"), ("la", "log_attention"), ("hier", "loglinear_log_attention"),
                           ("ll", "loglinear_attention"), ("sdpa", "torch SDPA causal"))
         for dt in ("bf16", "fp32") for m in ("fwd", "train")]
#: the issue's targets: (label, ours, peer, ours / peer must be at most this)
TARGETS = [("log_attention within 1.2x of exp_kernel_attention", "la", "ek", 1.2),
           ("loglinear_log_attention within 2x of loglinear_attention", "hier", "ll", 2.0)]


def _table_calls(torch, T, dt):
    """The calls of one row (T, dtype): operator -> (forward of q, k, v, (q, k, v)); ``hier_extra``: the
    level weights and decays of ``loglinear_log_attention`` (the array-API row's too)."""
    import lsattn

    g = torch.Generator(device="cuda").manual_seed(0)
    r = lambda *s: torch.randn(*s, device="cuda", generator=g)  # noqa: E731
    q, k = (r(B, H, T, D) * D ** -0.5 for _ in range(2))
    v = r(B, H, T, D)  # values of both signs; log_attention takes them as log values
    a = torch.nn.functional.logsigmoid(r(B, H, T) + 3)
    L = lsattn.num_levels(T)
    w = torch.rand(B, H, T, L, device="cuda", generator=g) + 0.5  # loglinear_attention's level weights
    lw = torch.randn(B, H, T, L, device="cuda", generator=g)  # loglinear_log_attention's log level weights
    q, k, v, a, w, lw = (x.to(dt) for x in (q, k, v, a, w, lw))
    sd = torch.nn.functional.scaled_dot_product_attention
    return {"ek": (lambda q, k, v: lsattn.exp_kernel_attention(q, k, v), (q, k, v)),
            "la": (lambda q, k, v: lsattn.log_attention(q, k, v), (q, k, v)),
            "hier": (lambda q, k, v: lsattn.loglinear_log_attention(q, k, v, lw, log_decay=a), (q, k, v)),
            "ll": (lambda q, k, v: lsattn.loglinear_attention(q, k, v, a, w), (q, k, v)),
            "sdpa": (lambda q, k, v: sd(q, k, v, is_causal=True), (q, k, v)),
            "hier_extra": (lw, a)}


def _train(torch, fn, xs):
    """fwd+bwd from leaf tensors: ``loss = out.float().square().mean()`` (bench_gpu_train's)."""
    leaves = [x.detach().clone().requires_grad_(True) for x in xs]

    def run():
        for x in leaves:
            x.grad = None
        fn(*leaves).float().square().mean().backward()
    return run


def interleaved_times(fns, reps, warmup=2, budget_s=8.0):
    """{name: median ms} of the calls ``fns`` (name -> fn), timed in rounds: each round times every
    call once (CUDA events around one call, empty queue: ``bench_gpu.cuda_time``'s setting), in an order
    rotated every round, so a drift of the host (another process, clocks) reaches every call of a round
    alike and the ratio of two medians compares calls measured side by side. At least 3 rounds, at most
    ``reps``, stopping after ``budget_s``. Failing calls: the exception's text instead of a time."""
    import torch

    out, live = {}, {}
    for name, fn in fns.items():
        try:
            for _ in range(warmup):
                fn()
            torch.cuda.synchronize()
            live[name] = fn
        except Exception as exc:  # out of memory, unsupported: recorded, not fatal
            out[name] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"
            torch.cuda.synchronize()
    times = {name: [] for name in live}
    names = list(live)
    t0 = time.perf_counter()
    for r in range(reps):
        for i in range(len(names)):
            name = names[(i + r) % len(names)]
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            live[name]()
            b.record()
            b.synchronize()
            times[name].append(a.elapsed_time(b))
        if r >= 2 and time.perf_counter() - t0 > budget_s:
            break
    out.update({name: statistics.median(ts) for name, ts in times.items()})
    return out


def table(args):
    """Issue 17's table in one run: bf16 and fp32, B=2, H=16, d=64, T = ``--T``, forward and forward +
    backward, median ms (CUDA events) and peak GB of each public call (no ``backend=``): ``log_attention``
    against ``exp_kernel_attention``, ``loglinear_log_attention`` against ``loglinear_attention`` and its
    own array-API path (``backend="array_api"``, fp32 at ``--api-T``, forward and forward + backward),
    both against torch SDPA (causal; fp32 SDPA up to ``--sdpa-fp32-max`` tokens: its fp32 kernels take
    seconds beyond). The calls of one (dtype, fwd / fwd+bwd) are timed interleaved (:func:`interleaved_times`),
    ``--reps`` rounds, ``--small-reps`` up to ``--small-T`` tokens (host-bound calls: the medians of more
    rounds). Writes ``gpu_issue17.json``, ``.md`` and ``.png`` under ``--out``."""
    import torch

    import lsattn

    res = {"info": device_info(), "shape": {"B": B, "H": H, "d": D}, "rows": {}, "api": {}}
    print(f"{res['info']['device']}, {res['info']['date']}", flush=True)
    for T in args.T:
        print(f"T = {T}", flush=True)
        row = res["rows"][str(T)] = {}
        reps = max(args.reps, args.small_reps) if T <= args.small_T else args.reps
        for dt in ("bf16", "fp32"):
            calls = _table_calls(torch, T, {"bf16": torch.bfloat16, "fp32": torch.float32}[dt])
            for train in (False, True):
                group = {}
                for key, label, op, d, tr in TABLE:
                    if d != dt or tr != train or (op == "sdpa" and dt == "fp32" and T > args.sdpa_fp32_max) or \
                            (args.ops and op not in args.ops):
                        continue
                    fn, xs = calls[op]
                    group[key] = (label, _train(torch, fn, xs) if train else (lambda fn=fn, xs=xs: fn(*xs)))
                gb = {}
                for key, (label, fn) in group.items():  # peak memory, one call each (its pool emptied first)
                    try:
                        gb[key] = peak_mem(fn) / 1e9
                    except Exception:  # noqa: BLE001  (the timing records the failure)
                        gb[key] = float("nan")
                    _free(torch)
                got = interleaved_times({key: fn for key, (_, fn) in group.items()}, reps)
                for key, (label, _) in group.items():
                    ms = got[key]
                    if isinstance(ms, str):
                        row[key] = {"error": ms}
                        print(f"  {label:42s} fails: {ms}", flush=True)
                    else:
                        row[key] = {"ms": ms, "gb": gb[key]}
                        print(f"  {label:42s} {ms:9.3f} ms  {gb[key]:7.2f} GB", flush=True)
                _free(torch)
            if dt == "fp32" and T == args.api_T and (not args.ops or "hier" in args.ops):  # issue 17's 20x: the array-API path on the same tensors
                fn, xs = calls["hier"]
                lw, a = calls["hier_extra"]
                api = lambda q, k, v: lsattn.loglinear_log_attention(q, k, v, lw, log_decay=a, backend="array_api")  # noqa: E731
                measure("loglinear_log_attention fp32 fwd, array-API path", lambda: api(*xs), res["api"], "fwd", reps=3)
                measure("loglinear_log_attention fp32 train, array-API path", _train(torch, api, xs), res["api"], "train",
                        reps=3)
                res["api"]["T"] = T
            del calls
            torch.cuda.empty_cache()
    write_json(os.path.join(args.out, "gpu_issue17.json"), res)
    _report(res, args.out)


def _free(torch):
    """Both pools emptied between groups (as ``bench_gpu.measure``)."""
    import cupy

    torch.cuda.synchronize()
    cupy.get_default_memory_pool().free_all_blocks()
    torch.cuda.empty_cache()


def _ms(row, key):
    d = row.get(key) or {}
    return d.get("ms")


def table_markdown(res):
    info, rows = res["info"], res["rows"]
    fmt = lambda d: "-" if not d else ("fails" if "error" in d else f"{d['ms']:.3f} ({d['gb']:.2f})")  # noqa: E731
    lines = [f"# Issue 17's table ({info['device']}, {info['date']}; torch {info.get('torch')}, cupy {info.get('cupy')})",
             "", f"B={B}, H={H}, d_k=d_v={D}, causal, public calls (no `backend=`), median ms of CUDA events (peak GB "
             "allocated by the call, torch's allocator and CuPy's pool); `train` = forward + backward of "
             "`out.float().square().mean()` from leaf q, k, v. `python benchmarks/bench_gpu_hierarchical.py table`.", ""]
    for m in ("fwd", "train"):
        keys = [(key, label) for key, label, _, _, train in TABLE if train == (m == "train")]
        lines += [f"## {'forward' if m == 'fwd' else 'forward + backward'}", "",
                  "| T | " + " | ".join(label.rsplit(" ", 1)[0] for _, label in keys) + " |", "|---" * (len(keys) + 1) + "|"]
        lines += [f"| {T} | " + " | ".join(fmt(row.get(key)) for key, _ in keys) + " |" for T, row in rows.items()]
        lines.append("")
    lines += ["## Targets (ours / peer, same run)", "", "| T | " + " | ".join(
        f"{o} / {p} {dt} {m} (<= {lim})" for _, o, p, lim in TARGETS for dt in ("bf16", "fp32") for m in ("fwd", "train"))
        + " | hier / SDPA bf16 fwd | train | la / SDPA bf16 fwd | train |", "|---" * 13 + "|"]
    for T, row in rows.items():
        cells = []
        for _, o, p, _ in TARGETS:
            for dt in ("bf16", "fp32"):
                for m in ("fwd", "train"):
                    a, b = _ms(row, f"{o}_{dt}_{m}"), _ms(row, f"{p}_{dt}_{m}")
                    cells.append(f"{a / b:.2f}" if a and b else "-")
        for o in ("hier", "la"):
            for m in ("fwd", "train"):
                a, b = _ms(row, f"{o}_bf16_{m}"), _ms(row, f"sdpa_bf16_{m}")
                cells.append(f"{a / b:.2f}" if a and b else "-")
        lines.append(f"| {T} | " + " | ".join(cells) + " |")
    api = res.get("api") or {}
    if "T" in api:
        row = rows[str(api["T"])]
        for m in ("fwd", "train"):
            o, x = _ms(row, f"hier_fp32_{m}"), _ms(api, m)
            if o and x:
                base = f"; against the issue's 46 ms: {46 / o:.1f}x" if m == "fwd" else ""
                lines.append(f"\n`loglinear_log_attention` fp32 {m} at T = {api['T']}: ours {o:.3f} ms, array-API path "
                             f"{x:.3f} ms: **{x / o:.1f}x** (target >= 20x{base})")
    return "\n".join(lines) + "\n"


def _report(res, out):
    md = table_markdown(res)
    print(md)
    with open(os.path.join(out, "gpu_issue17.md"), "w") as f:
        f.write(md)
    plt = pyplot()
    if plt is None:
        return
    Ts = [int(t) for t in res["rows"]]
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8))
    for ax, m in zip(axes, ("fwd", "train")):
        for key, label, op, dt, train in TABLE:
            if train != (m == "train"):
                continue
            pts = [(T, _ms(res["rows"][str(T)], key)) for T in Ts]
            pts = [(t, y) for t, y in pts if y]
            if pts:
                ax.plot(*zip(*pts), marker="o", label=label.rsplit(" ", 1)[0],
                        linestyle="-" if dt == "bf16" else "--")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("T")
        ax.set_ylabel("ms")
        ax.set_title("forward" if m == "fwd" else "forward + backward")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"issue 17: {res['info']['device']}, {res['info']['date']}, B={B} H={H} d={D} (solid bf16, dashed fp32)")
    fig.tight_layout()
    fig.savefig(os.path.join(out, "gpu_issue17.png"), dpi=120)
    print("wrote", os.path.join(out, "gpu_issue17.png"))


def report(args):
    import json

    with open(args.results) as f:
        res = json.load(f)
    out = os.path.dirname(os.path.abspath(args.results))
    _report(res, out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", nargs="?", default="bench", choices=["bench", "kernels", "train", "table", "report"])
    ap.add_argument("results", nargs="?", help="report: a gpu_issue17.json")
    ap.add_argument("--out", default=os.environ.get("OUT", os.path.join(ROOT, "benchmarks", "results")))
    ap.add_argument("--T", type=lambda s: [int(x) for x in s.split(",")], default=[2048, 4096, 8192, 16384, 32768, 65536])
    ap.add_argument("--api-max", type=int, default=8192, help="longest T of the array-API row")
    ap.add_argument("--dtypes", type=lambda s: s.split(","), default=["float32"], help="kernels: float32,float32-ffma,bfloat16")
    ap.add_argument("--chunks", type=lambda s: [int(x) for x in s.split(",")], default=[32, 64], help="kernels: chunks")
    ap.add_argument("--api-T", type=int, default=8192, help="table: T of the array-API row")
    ap.add_argument("--sdpa-fp32-max", type=int, default=16384, help="table: longest T of fp32 SDPA")
    ap.add_argument("--reps", type=int, default=10, help="table: timed rounds per cell (median)")
    ap.add_argument("--small-reps", type=int, default=40, help="table: rounds per cell up to --small-T tokens")
    ap.add_argument("--small-T", type=int, default=8192, help="table: the longest T timed with --small-reps")
    ap.add_argument("--ops", type=lambda s: s.split(","), default=None, help="table: only these (ek,la,hier,ll,sdpa)")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    {"bench": bench, "kernels": kernels, "train": train, "table": table, "report": report}[args.what](args)


if __name__ == "__main__":
    main()
