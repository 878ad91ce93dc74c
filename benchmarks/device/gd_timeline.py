"""Where one public ``loglinear_gated_delta`` forward spends its time (issue 16, s11b16): B=2, H=16, d=64, CUDA
torch tensors, bf16 and fp32, at the T given (default 8192).

Per dtype:
- ``latency``: median CUDA-event time of one call from an idle GPU (``bench_gpu.cuda_time``'s measure, the
  forward tables'); ``pipelined``: 10 calls back to back / 10; ``host``: wall time of one call from an idle GPU
  (the host's whole path, its one wait included); the host phases (``time.perf_counter_ns`` around the
  prologue's and the backend's steps, median of 10 calls, us; phases nest: ``compute`` holds ``forms``).
- one call under torch.profiler: every GPU operation (kernels, memsets, copies) with its start relative to
  the call's start and its duration, the host phases as annotations, and the GPU's idle time inside the call
  (before its first operation, between operations). The chrome trace goes to ``$OUT/trace_<dtype>.json``.
- the same with the prologue's own finiteness checks (``checks_inputs`` off: the extrema of
  every input read before the kernels) instead of ``gd_forms``' flag, in the same run.

    python benchmarks/device/gd_timeline.py [T[,T...]] [bf16,fp32] [nochecks]

(``nochecks``: without the prologue-checks runs; each timeline ends with one line per kernel name: count, total us.)
"""
import collections
import functools
import json
import os
import statistics
import sys
import time

import torch
from torch.profiler import ProfilerActivity, profile, record_function

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), os.path.dirname(os.path.dirname(HERE))]
import lsattn  # noqa: E402
from bench_gpu_gated_delta import inputs  # noqa: E402  (the forward table's inputs)
from lsattn import _prologue  # noqa: E402
from lsattn.backends.cupy import _arrays, _compile, gated_delta  # noqa: E402

OUT = os.environ.get("OUT", "/tmp")
SPANS = collections.defaultdict(list)


def span(name, fn):
    @functools.wraps(fn)
    def wrapped(*a, **kw):
        t = time.perf_counter_ns()
        with record_function(name):
            r = fn(*a, **kw)
        SPANS[name].append((time.perf_counter_ns() - t) / 1e3)
        return r
    return wrapped


# the prologue's steps (names bound in lsattn._prologue) and the backend's
for mod, names in ((_prologue, ("namespace", "_shapes", "check_levels", "checks", "prepare", "undefined_rows",
                                "where_undefined", "canonical_shifts", "_broadcast_inputs")),
                   (gated_delta, ("compute", "forms", "inputs", "widen", "assemble_levels", "from_chunks",
                                  "_tracks_grad", "_torch_call")),
                   (_prologue.backends, ("resolve",))):
    for n in names:
        setattr(mod, n, span(n, getattr(mod, n)))
for n in ("gd_forms", "gd_scan"):
    setattr(_compile.CupyOps, n, span("launch_" + n, getattr(_compile.CupyOps, n)))
_arrays._from_cupy = span("from_cupy", _arrays._from_cupy)
_prologue._run = span("_run", _prologue._run)


def latency(f, reps=10):
    ts = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()
        a.record()
        f()
        b.record()
        b.synchronize()
        ts.append(a.elapsed_time(b))
    return statistics.median(ts)


def timeline(f, name):
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        with record_function("call"):
            f()
        torch.cuda.synchronize()
    path = os.path.join(OUT, f"trace_{name.replace(' ', '_')}.json")
    prof.export_chrome_trace(path)
    ev = [e for e in json.load(open(path))["traceEvents"] if e.get("ph") == "X"]
    call = next(e for e in ev if e["name"] == "call" and e.get("cat") == "user_annotation")
    t0 = call["ts"]
    gpu = sorted((e for e in ev if e.get("cat") in ("kernel", "gpu_memset", "gpu_memcpy")), key=lambda e: e["ts"])
    ann = sorted((e for e in ev if e.get("cat") == "user_annotation" and e["name"] != "call"), key=lambda e: e["ts"])
    launches = sorted((e for e in ev if e.get("cat") == "cuda_runtime" and "aunch" in e["name"]), key=lambda e: e["ts"])
    print(f"  call (host, profiled): {call['dur']:.0f} us; first launch at {launches[0]['ts'] - t0:.0f} us" if launches
          else f"  call (host, profiled): {call['dur']:.0f} us")
    print("  host phases (profiled): " + ", ".join(f"{e['name']}@{e['ts'] - t0:.0f}+{e['dur']:.0f}" for e in ann))
    busy, idle, end = 0.0, [], None
    for e in gpu:
        s = e["ts"] - t0
        if end is not None and s - end > 2:
            idle.append((end, s - end))
        busy += e["dur"]
        end = s + e["dur"] if end is None else max(end, s + e["dur"])
        print(f"    gpu {s:8.1f} +{e['dur']:7.1f}  {e['name'][:70]}")
    if gpu:
        first = gpu[0]["ts"] - t0
        per = collections.defaultdict(lambda: [0, 0.0])
        for e in gpu:
            per[e["name"][:40]][0] += 1
            per[e["name"][:40]][1] += e["dur"]
        print("  per kernel (us): " + "; ".join(f"{k} x{c} {d:.0f}" for k, (c, d) in sorted(per.items(), key=lambda x: -x[1][1])))
        print(f"  GPU: first op at {first:.0f} us after the call's start, last ends at {end:.0f}; busy {busy:.0f} us; "
              f"idle gaps > 2 us: {sum(d for _, d in idle):.0f} us in {len(idle)} "
              f"({', '.join(f'{s:.0f}+{d:.0f}' for s, d in idle[:12])})")


def main():
    Ts = [int(t) for t in (sys.argv[1] if len(sys.argv) > 1 else "8192").split(",")]
    names = (sys.argv[2] if len(sys.argv) > 2 else "bf16,fp32").split(",")
    modes = (True,) if "nochecks" in sys.argv[3:] else (True, False)
    for T in Ts:
        for dtype, name in ((torch.bfloat16, "bf16"), (torch.float32, "fp32")):
            if name not in names:
                continue
            x = inputs(T, dtype)
            f = lambda: lsattn.loglinear_gated_delta(*x)  # noqa: E731
            for mode in modes:
                gated_delta.forward.checks_inputs = mode
                measure(f, T, name + ("" if mode else " prologue-checks"), timeline_too=mode)
            gated_delta.forward.checks_inputs = True
            x = f = None  # noqa: F841 (the inputs freed before the next size)
            torch.cuda.empty_cache()


def measure(f, T, name, timeline_too):
    if True:
        for _ in range(3):
            f()
        torch.cuda.synchronize()
        lat = latency(f)
        torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(10):
            f()
        torch.cuda.synchronize()
        pipe = (time.perf_counter() - t) * 100
        hosts = []
        SPANS.clear()
        for _ in range(10):
            torch.cuda.synchronize()
            t = time.perf_counter()
            f()
            hosts.append((time.perf_counter() - t) * 1e3)
        torch.cuda.synchronize()
        print(f"==== T={T} {name}: latency {lat:.3f} ms, pipelined {pipe:.3f} ms, host {statistics.median(hosts):.3f} ms "
              "per call", flush=True)
        print("  host phases (us, median of 10): " + ", ".join(
            f"{k} {statistics.median(v[-10:]):.0f}" + (f" x{len(v) // 10}" if len(v) > 10 else "")
            for k, v in SPANS.items()), flush=True)
        if timeline_too:
            timeline(f, f"{T}_{name}")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
