"""Issue 19, session 12 (s12f19): where a packed ``exp_kernel_attention`` / ``log_attention`` call
spends the time an unpacked call of the same length does not (the issue's case: 16 long-tailed
documents, 64K tokens, bf16, H = 16, d = 64, ``bench_varlen_gpu.py``'s inputs).

For each operator and each of packed (offsets as a list: no read-back), packed (CUDA offsets) and
unpacked, forward and (``train``) a training step:
- ``latency``: CUDA events around one call on an idle GPU (as ``bench_varlen_gpu.py``), median;
- ``pipelined``: 10 calls back to back, ms per call;
- ``host``: the host time of one call (returns before the device is done: ``perf_counter``, the GPU
  drained before), median;
- one call under ``torch.profiler`` (CPU + CUDA, CuPy's launches included through CUPTI): the call's
  host span, when its first and last kernels start / end relative to it, the device busy time, and
  the kernels (name, start, duration in us); chrome traces under ``$OUT`` (``--trace``);
- ``--cprofile``: the host functions of 10 calls by own time.
Prints one dict per (operator, form) and the tables. Run from the repo root on a GPU machine.
Any of the five operators (s13f19: the log-linear ones); ``--forms=a,b``: only those forms (names
as printed), ``--top=N``: cProfile rows."""
from __future__ import annotations

import json
import os
import statistics
import sys
import time

import numpy as np
import torch

sys.path.insert(0, "benchmarks")
import lsattn  # noqa: E402
from bench_gpu import cuda_time  # noqa: E402
from bench_varlen_gpu import doc_lengths, make_inputs, op_call  # noqa: E402

OUT = os.environ.get("OUT", "/tmp")
ops = [a for a in sys.argv[1:] if not a.startswith("--")] or ["exp_kernel_attention", "log_attention"]
opt = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--") and "=" in a)


def pipelined(fn, reps=10):
    """Back-to-back calls (host and device overlap across calls): ms per call."""
    fn()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    torch.cuda.synchronize()
    return 1e3 * (time.perf_counter() - t) / reps


def host(fn, reps=15):
    ts = []
    for _ in range(reps):
        torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        ts.append(1e3 * (time.perf_counter() - t))
    torch.cuda.synchronize()
    return statistics.median(ts)


def traced(fn, name):
    """One call under the profiler: its host span and kernels (us, relative to the span's start)."""
    from torch.profiler import ProfilerActivity, profile, record_function

    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        with record_function("CALL"):
            fn()
        torch.cuda.synchronize()
    path = os.path.join(OUT, f"trace_{name}.json")
    prof.export_chrome_trace(path)
    with open(path) as fh:
        ev = json.load(fh)["traceEvents"]
    call = next(e for e in ev if e.get("name") == "CALL" and e.get("ph") == "X" and e.get("cat") != "gpu_user_annotation")
    t0, t1 = call["ts"], call["ts"] + call["dur"]
    kern = sorted((e for e in ev if e.get("cat") == "kernel"), key=lambda e: e["ts"])
    launches = [e for e in ev if e.get("cat") in ("cuda_runtime", "cuda_driver") and "aunch" in e.get("name", "")]
    busy = sum(e["dur"] for e in kern)
    if "--trace" not in sys.argv:
        os.remove(path)
    return {"host_span_us": round(call["dur"], 1),
            "first_launch_us": round(launches[0]["ts"] - t0, 1) if launches else None,
            "first_kernel_start_us": round(kern[0]["ts"] - t0, 1) if kern else None,
            "last_kernel_end_us": round(max(e["ts"] + e["dur"] for e in kern) - t0, 1) if kern else None,
            "device_busy_us": round(busy, 1), "launches": len(launches), "kernels": len(kern),
            "after_host_us": round(max(e["ts"] + e["dur"] for e in kern) - t1, 1) if kern else None}, \
        [(e["name"][:60], round(e["ts"] - t0, 1), round(e["dur"], 1)) for e in kern]


def s12(fn):
    """``fn()`` with session 13's packed host changes (s13f19) undone: CUDA offsets validated on every
    call (no plan keyed by their values), the token map's host layout built per call, the packed
    inputs' finiteness read before the launches (no one-read check). Not undone: the raw token-map
    kernel (was an ElementwiseKernel)."""
    from lsattn import _prologue, _varlen

    saved = _varlen.read_offsets, _varlen.token_map, _prologue.checks
    _varlen.read_offsets, _varlen.token_map, _prologue.checks = (lambda cu: None), _varlen.TokenMap, (lambda *a: None)
    try:
        return fn()
    finally:
        _varlen.read_offsets, _varlen.token_map, _prologue.checks = saved


lens = doc_lengths(16, 65536, 0)
cu = np.concatenate([[0], np.cumsum(lens)])
cu_dev = torch.as_tensor(cu, device="cuda")
print("lengths", lens.tolist(), flush=True)
for op in ops:
    x = make_inputs(torch, 65536, 16, 64, torch.bfloat16, "cuda", 0, op)
    f = op_call(lsattn, op)
    xg = [y.detach().requires_grad_(True) for y in x]

    def train(**kw):
        o = f(*xg, **kw)
        torch.where(torch.isfinite(o), o, 0).float().square().mean().backward()

    calls = {"packed_list": lambda: f(*x, cu_seqlens=cu.tolist()), "packed_cuda": lambda: f(*x, cu_seqlens=cu_dev),
             "unpacked": lambda: f(*x), "train_packed": lambda: train(cu_seqlens=cu.tolist()), "train_unpacked": train}
    # s13f19's A/B in one run: its packed host changes undone in-process (``s12`` forms)
    calls["packed_list_s12"] = lambda: s12(lambda: f(*x, cu_seqlens=cu.tolist()))
    calls["packed_cuda_s12"] = lambda: s12(lambda: f(*x, cu_seqlens=cu_dev))
    forms = opt["forms"].split(",") if "forms" in opt else list(calls)
    for name, fn in ((n, calls[n]) for n in forms):
        row = {"op": op, "form": name, "latency_ms": round(cuda_time(fn, reps=15), 3), "pipelined_ms": round(pipelined(fn), 3),
               "host_ms": round(host(fn), 3)}
        summary, kernels = traced(fn, f"{op}_{name}")
        row.update(summary)
        print(row, flush=True)
        if "--kernels" in sys.argv or not name.startswith("packed_cuda"):
            for k in kernels:
                print("   ", k)
    if "--cprofile" in sys.argv:
        import cProfile
        import io
        import pstats

        for name in [n for n in ("packed_list", "packed_cuda", "unpacked", "train_packed", "train_unpacked") if n in forms]:
            fn = calls[name]
            fn()
            torch.cuda.synchronize()
            pr = cProfile.Profile()
            pr.enable()
            for _ in range(10):
                fn()
            pr.disable()
            torch.cuda.synchronize()
            s = io.StringIO()
            pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(int(opt.get("top", 18)))
            print(f"==== {op} {name} (10 calls, by own time)\n" + "\n".join(s.getvalue().splitlines()[6:]), flush=True)
