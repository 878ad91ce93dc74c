"""Session 14, branch s14g17 (issue 17): where one ``loglinear_log_attention`` fwd+bwd goes (a development aid;
results in NOTES.md). The calls are issue 17's table's (``bench_gpu_hierarchical._table_calls`` / ``_train``:
B=2, H=16, d=64, leaves q, k, v, ``loss = out.float().square().mean()``).

    python benchmarks/device/hier_prof_s14g17.py warm
        # compiles what the timings use: one fp32 and one bf16 fwd+bwd at B=H=1 (T 8192 / 16384: the chunks of
        # the table's calls), the no-grad forwards
    python benchmarks/device/hier_prof_s14g17.py profile fp32:8192 bf16:16384 [--trace DIR]
        # per (dtype, T): (1) CUDA events and host clocks of 7 unprofiled steps (forward call, loss, backward):
        # GPU ms of the forward / backward, the host's ms until each call returns; (2) torch.profiler of one
        # step, forward and backward each ended by a synchronize: per-kernel CUDA time by phase, the GPU's busy
        # time (union of kernels, copies, sets) and idle time inside each phase
    python benchmarks/device/hier_prof_s14g17.py kab fp32:8192 bf16:16384 [VARIANT ...]
        # the training forward's kernels (``hierarchical.compute(keep=True)`` at chunk 32 on CuPy arrays: float32 on
        # 3xTF32, bfloat16 patterns), each kernel timed apart (CUDA events around each launch, median of 7), per
        # variant of the source (VARIANTS below; default: all); ``kab warm [NAME,..]`` compiles them (B=H=1)
    python benchmarks/device/hier_prof_s14g17.py hostspans fp32:8192 bf16:16384
        # the host's clock (no profiler) at the entry / exit of each stage of the forward call, ms from the step's
        # start, median of 9 steps (queue drained before each, as the table's timing): the prologue (_compute, checks,
        # prepare), the autograd Function (hierarchical_bwd.apply), hierarchical.compute / slots, the first and last
        # kernels' launches (hi_intra, hi_read), the call's return; and the GPU's start of hi_intra (CUDA event)
    python benchmarks/device/hier_prof_s14g17.py one fp32:8192
        # for ncu: the training forward's kernels (chunk 32, slots kept) twice, B=2, H=16 (hi_intra, 7 hi_merge at 8K,
        # hi_snap, hi_read per call)
    python benchmarks/device/hier_prof_s14g17.py api 8192 [REPS]
        # ours fp32 fwd+bwd against the array-API path (``backend="array_api"``) on the same tensors, same run
"""
import json
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench_gpu_hierarchical import _table_calls  # noqa: E402  (puts the repository on sys.path)

import lsattn  # noqa: E402

DT = {"fp32": torch.float32, "bf16": torch.bfloat16}
#: timing builds of hierarchical.cu (defines before the source). Request 1 timed, against the defaults then (HI_MG 2,
#: HI_MMINB 3, HI_IMINB 3, hi_read's 512 / HI_RNT blocks per SM): "mg1" hi_merge one held slot at a time at 4 blocks per
#: SM, "i4" / "i5" hi_intra at 4 / 5, "r3" hi_read at 3 (a define since removed); "mg1" and "i4" are the defaults since,
#: "old" builds the defaults before them, "final" the tree's
VARIANTS = {"final": "", "old": "#define HI_MG 2\n#define HI_MMINB 3\n#define HI_IMINB 3\n", "i5": "#define HI_IMINB 5\n"}


def use(name):
    """The variant ``name`` of the forward's source; the compiled kernels dropped."""
    from lsattn.backends.cupy import _compile

    source = getattr(_compile, "_source_s14g17", None) or _compile._source
    _compile._source_s14g17 = source
    pre = VARIANTS[name]
    _compile._source = lambda n: (pre + source(n)) if n == "hierarchical.cu" else source(n)
    _compile._kernels.cache_clear()
    _compile._launch.cache_clear()


def kab(specs, names, reps=7):
    """Per-kernel ms of the training forward (chunk 32, slots kept) per variant; specs [(tag, T)]."""
    import cupy

    from bench_gpu_hierarchical import _Split, inputs
    from lsattn.backends.cupy import hierarchical as chi
    from lsattn.backends.cupy._arrays import narrow, on_gpu

    for tag, T in specs:
        batch = (1, 1) if T <= 512 else (2, 16)
        x = [cupy.asarray(t.detach()) for t in inputs(torch, T, torch.float32, batch=batch)]
        half = "bf16" if tag == "bf16" else ""
        xs = [narrow(cupy, t, half) for t in x] if half else x
        for name in names:
            use(name)
            with on_gpu(x[0]) as (_, _, ops):
                per = []
                for r in range(reps + 1):
                    split = _Split(ops)
                    chi.compute(split, *xs[:4], xs[4], 0, None, 32, half, wide=bool(half), keep=True)
                    if r:
                        per.append(split.times())
                    else:
                        split.times()
            med = {k: statistics.median(p[k] for p in per) for k in per[0]}
            print(f"T={T} {tag} C=32 {name}: " + ", ".join(f"{k} {v:.4f}" for k, v in med.items())
                  + f" (kernels {sum(med.values()):.4f}) ms", flush=True)
    use("final")


def leaves(T, dt, batch=None):
    fn, xs = _table_calls(torch, T, dt)["hier"]
    if batch:  # (compilation only) the same call on fewer sequences
        xs = tuple(x[:1, :1] for x in xs)
        lw, a = _table_calls(torch, T, dt)["hier_extra"]
        lw, a = lw[:1, :1], a[:1, :1]
        fn = lambda q, k, v: lsattn.loglinear_log_attention(q, k, v, lw, log_decay=a)  # noqa: E731
    return fn, [x.detach().clone().requires_grad_(True) for x in xs]


def step(fn, xs, marks=None):
    """One training step as the table's; ``marks``: CUDA events / host clocks after the forward and backward."""
    for x in xs:
        x.grad = None
    h0 = time.perf_counter()
    out = fn(*xs)
    h1 = time.perf_counter()
    loss = out.float().square().mean()
    if marks is not None:
        marks["e_fwd"].record()
    h2 = time.perf_counter()
    loss.backward()
    h3 = time.perf_counter()
    if marks is not None:
        marks["e_bwd"].record()
        marks.update(h_fwd=(h1 - h0) * 1e3, h_bwd=(h3 - h2) * 1e3)


def clocks(fn, xs, reps=7):
    """Medians over ``reps`` unprofiled steps (queue drained before each): GPU ms of the forward (with the
    loss) and of the backward, host ms until the forward call and ``backward()`` return."""
    rows = []
    for _ in range(reps):
        m = {k: torch.cuda.Event(enable_timing=True) for k in ("e0", "e_fwd", "e_bwd")}
        torch.cuda.synchronize()
        m["e0"].record()
        step(fn, xs, m)
        m["e_bwd"].synchronize()
        rows.append({"gpu_fwd": m["e0"].elapsed_time(m["e_fwd"]), "gpu_bwd": m["e_fwd"].elapsed_time(m["e_bwd"]),
                     "gpu_total": m["e0"].elapsed_time(m["e_bwd"]), "host_fwd": m["h_fwd"], "host_bwd": m["h_bwd"]})
    return {k: round(statistics.median(r[k] for r in rows), 3) for k in rows[0]}


def union(iv):
    """Length of the union of intervals [(a, b)]."""
    tot, end = 0.0, None
    for a, b in sorted(iv):
        if end is None or a > end:
            tot += b - a
            end = b
        elif b > end:
            tot += b - end
            end = b
    return tot


def profile(fn, xs, trace):
    acts = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
    with torch.profiler.profile(activities=acts) as prof:
        torch.cuda.synchronize()
        with torch.profiler.record_function("s14g17_fwd"):
            for x in xs:
                x.grad = None
            loss = fn(*xs).float().square().mean()
            torch.cuda.synchronize()
        with torch.profiler.record_function("s14g17_bwd"):
            loss.backward()
            torch.cuda.synchronize()
    prof.export_chrome_trace(trace)
    with open(trace) as f:
        ev = json.load(f)
    ev = ev.get("traceEvents", ev)
    span = {e["name"]: (e["ts"], e["ts"] + e["dur"]) for e in ev if e.get("cat") == "user_annotation"
            and e.get("name", "").startswith("s14g17_")}
    out = {}
    for ph in ("fwd", "bwd"):
        a, b = span[f"s14g17_{ph}"]
        gpu = [e for e in ev if e.get("cat") in ("kernel", "gpu_memcpy", "gpu_memset") and a <= e["ts"] <= b]
        per = {}
        for e in gpu:
            name = e["name"] if e["cat"] == "kernel" else e["cat"]
            name = name.split("<")[0].split("(")[0][:60]
            c, t = per.get(name, (0, 0.0))
            per[name] = (c + 1, t + e["dur"])
        busy = union([(e["ts"], e["ts"] + e["dur"]) for e in gpu])
        first = min((e["ts"] for e in gpu), default=a)
        last = max((e["ts"] + e["dur"] for e in gpu), default=a)
        # the host's launches (runtime / driver API) and the GPU op each one started, by correlation id
        host = {e.get("args", {}).get("correlation"): e for e in ev if e.get("cat") in ("cuda_runtime", "cuda_driver")
                and a <= e["ts"] <= b}
        line = []
        for e in sorted(gpu, key=lambda e: e["ts"]):
            h = host.get(e.get("args", {}).get("correlation"))
            line.append((None if h is None else round((h["ts"] - a) / 1e3, 3), round((e["ts"] - a) / 1e3, 3),
                         round(e["dur"] / 1e3, 4), (e["name"] if e["cat"] == "kernel" else e["cat"]).split("<")[0][:40]))
        syncs = [(round((e["ts"] - a) / 1e3, 3), round(e["dur"] / 1e3, 3), e["name"]) for e in ev
                 if e.get("cat") in ("cuda_runtime", "cuda_driver") and a <= e["ts"] <= b and "ynchronize" in e["name"]]
        out[ph] = {"span_ms": (b - a) / 1e3, "busy_ms": busy / 1e3, "before_first_ms": (first - a) / 1e3,
                   "gaps_ms": (last - first - busy) / 1e3, "launches": len(gpu),
                   "kernels": {k: (c, round(t / 1e3, 4)) for k, (c, t) in sorted(per.items(), key=lambda x: -x[1][1])},
                   "timeline": line, "syncs": syncs}
    return out


def hostspans(specs, reps=9):
    """See the module docstring (``hostspans``)."""
    import cupy

    from lsattn import _prologue
    from lsattn.backends.cupy import _compile, hierarchical as chi, hierarchical_bwd as chb
    from lsattn.backends.cupy._arrays import on_gpu

    marks = []
    orig = []

    def wrap(owner, name):
        fn = getattr(owner, name)
        orig.append((owner, name, fn))

        def f(*a, **kw):
            marks.append((name + ">", time.perf_counter()))
            try:
                return fn(*a, **kw)
            finally:
                marks.append(("<" + name, time.perf_counter()))
        setattr(owner, name, f)

    for owner, name in ((_prologue, "_compute"), (_prologue, "checks"), (_prologue, "prepare"), (chb, "apply"),
                        (chi, "compute"), (chi, "slots")):
        wrap(owner, name)
    ev = {}
    for name in ("hi_intra", "hi_read"):
        fn = getattr(_compile.CupyOps, name)
        orig.append((_compile.CupyOps, name, fn))

        def launch(self, *a, _fn=fn, _name=name, **kw):
            marks.append((_name + ">", time.perf_counter()))
            if _name == "hi_intra":
                ev["e1"] = cupy.cuda.Event()
                ev["e1"].record()
            _fn(self, *a, **kw)
            marks.append(("<" + _name, time.perf_counter()))
        setattr(_compile.CupyOps, name, launch)
    try:
        for tag, T in specs:
            fn, xs = leaves(T, DT[tag])
            for _ in range(2):
                step(fn, xs)
            rows = []
            for _ in range(reps):
                torch.cuda.synchronize()
                del marks[:]
                with on_gpu(xs[0]):  # a CuPy event on the call's (torch's) stream
                    e0 = cupy.cuda.Event()
                    e0.record()
                h0 = time.perf_counter()
                for x in xs:
                    x.grad = None
                out = fn(*xs)
                h1 = time.perf_counter()
                out.float().square().mean().backward()
                torch.cuda.synchronize()
                row = {}
                for k, t in marks:
                    row.setdefault(k, (t - h0) * 1e3)  # the first entry / exit of each (the forward's)
                row["return"] = (h1 - h0) * 1e3
                row["GPU at hi_intra"] = cupy.cuda.get_elapsed_time(e0, ev["e1"])  # the stream's clock, same origin
                rows.append(row)
            med = {k: statistics.median(r[k] for r in rows if k in r) for k in rows[0]}
            print(f"T={T} {tag} host ms from the step's start (median of {reps}): "
                  + ", ".join(f"{k} {v:.3f}" for k, v in sorted(med.items(), key=lambda x: x[1])), flush=True)
            del xs
    finally:
        for owner, name, fn in orig:
            setattr(owner, name, fn)


def main():
    what = sys.argv[1]
    if what == "warm":
        for tag, T in (("fp32", 8192), ("bf16", 16384)):
            fn, xs = leaves(T, DT[tag], batch=True)
            step(fn, xs)
            with torch.no_grad():
                fn(*xs)
            torch.cuda.synchronize()
            print("warm", tag, T, flush=True)
    elif what == "profile":
        tdir = sys.argv[sys.argv.index("--trace") + 1] if "--trace" in sys.argv else "/tmp"
        for spec in [s for s in sys.argv[2:] if ":" in s]:
            tag, T = spec.split(":")
            T = int(T)
            fn, xs = leaves(T, DT[tag])
            for _ in range(2):
                step(fn, xs)
            c = clocks(fn, xs)
            print(f"T={T} {tag} clocks (median of 7, ms): {c}", flush=True)
            p = profile(fn, xs, os.path.join(tdir, f"trace_{tag}_{T}.json"))
            for ph, r in p.items():
                print(f"T={T} {tag} {ph}: span {r['span_ms']:.3f} ms (profiled), GPU busy {r['busy_ms']:.3f}, idle before the "
                      f"first GPU op {r['before_first_ms']:.3f}, idle between ops {r['gaps_ms']:.3f}, {r['launches']} GPU ops",
                      flush=True)
                for k, (n, ms) in r["kernels"].items():
                    print(f"    {ms:8.4f} ms  x{n:<3d} {k}", flush=True)
                print(f"T={T} {tag} {ph} timeline (ms from the phase's start: host launch, GPU start, GPU duration, op):",
                      flush=True)
                for row in r["timeline"][:60]:
                    print("  tl", *row, flush=True)
                for row in r["syncs"][:10]:
                    print("  sync", *row, flush=True)
            del xs
            torch.cuda.empty_cache()
    elif what == "kab":
        rest = sys.argv[2:]
        if rest and rest[0] == "warm":  # kab warm [NAME,NAME,..]
            kab([("fp32", 256), ("bf16", 256)], rest[1].split(",") if len(rest) > 1 else list(VARIANTS), reps=1)
            print("warm kab", flush=True)
            return
        specs = [(s.split(":")[0], int(s.split(":")[1])) for s in rest if ":" in s]
        kab(specs, [s for s in rest if ":" not in s] or list(VARIANTS))
    elif what == "hostspans":
        hostspans([(x.split(":")[0], int(x.split(":")[1])) for x in sys.argv[2:]])
    elif what == "one":
        tag, T = sys.argv[2].split(":")
        kab([(tag, int(T))], ["final"], reps=1)
    elif what == "api":
        T, reps = int(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 2
        fn, xs = leaves(T, torch.float32)
        lw, a = _table_calls(torch, T, torch.float32)["hier_extra"]
        api = lambda q, k, v: lsattn.loglinear_log_attention(q, k, v, lw, log_decay=a, backend="array_api")  # noqa: E731
        res = {}
        for name, f, n in (("ours", fn, 10), ("array_api", api, reps), ("ours again", fn, 10)):
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
            print(f"T={T} fp32 fwd+bwd {name}: {res[name]:.3f} ms (median of {n})", flush=True)
        print(f"T={T} fp32 fwd+bwd array-API / ours: {res['array_api'] / min(res['ours'], res['ours again']):.1f}x",
              flush=True)


if __name__ == "__main__":
    main()
