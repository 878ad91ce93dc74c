"""Where the public CUDA call's time goes beyond its kernels, for every operator (issue 17, s9c17).

    python benchmarks/device/prologue_s9c17.py [T ...] [ops=hierarchical,...] [dtypes=fp32,bf16]   (default 8192 128; B=2, H=16, d=64)

Per operator, dtype (float32, bfloat16) and prologue mode, the public call on CUDA torch tensors:

- ``latency``: median CUDA-event time of one call with an empty queue (``bench_gpu.cuda_time``,
  the tables' number: host work before the first kernel counts);
- ``pipelined``: 20 calls back to back between two events, per call (a model's steady state: the
  host runs ahead unless a call reads a device value);
- ``host``: host time per call of those 20 launches (perf_counter, no sync after each: a host
  read inside the call blocks here);
- ``kernels``: device time of the call's kernels and copies (torch.profiler / CUPTI: CuPy's
  launches included), with the largest non-operator kernels (the prologue's elementwise passes);
- ``syncs``: torch's synchronizing calls in one call (``torch.cuda.set_sync_debug_mode``; CuPy
  reads are not seen by it).

Modes: ``onecheck`` (this branch: every finiteness flag and ``undefined_rows``' flag in one read;
in run 2 each array checked by a fused CuPy pass, since ed9db1c by its minimum and maximum) and ``session8`` (``_prologue.checks`` and
``_cuda_checks`` patched off: a maximum and a minimum per array, a read in ``prepare`` and one in
``undefined_rows``). Run 1 (commit c9805b9) measured the device-mask modes (``device``,
``device_xp``: no read at all, masks applied unconditionally) against the host reads: slower
everywhere, removed. Then a cProfile of the hierarchical T = 128 float32 call (host time).
"""
from __future__ import annotations

import contextlib
import cProfile
import io
import pstats
import sys
import time
import warnings
from unittest import mock

import torch

sys.path.insert(0, "benchmarks")
import lsattn  # noqa: E402
from bench_gpu import cuda_time  # noqa: E402
from lsattn import _nonfinite, _prologue  # noqa: E402

B, H, D = 2, 16, 64


def make(T, dtype, device="cuda"):
    g = torch.Generator(device=device).manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g, device=device)  # noqa: E731
    q, k = (r(B, H, T, D) * D ** -0.5 for _ in range(2))
    v = r(B, H, T, D)
    a = torch.nn.functional.logsigmoid(r(B, H, T) + 3)
    beta = torch.sigmoid(r(B, H, T))
    lam = torch.rand((B, H, T, lsattn.num_levels(T)), device=device, generator=g) + 0.5
    kn = k / k.norm(dim=-1, keepdim=True)
    c = lambda x: x.to(dtype)  # noqa: E731
    q, k, v, a, beta, lam, kn = map(c, (q, k, v, a, beta, lam, kn))
    lv, llam = c(r(B, H, T, D)), c(torch.randn(B, H, T, lam.shape[-1], device=device, generator=g))
    return {
        "exp_kernel": lambda: lsattn.exp_kernel_attention(q, k, v),
        "log_attention": lambda: lsattn.log_attention(q, k, lv),
        "loglinear": lambda: lsattn.loglinear_attention(q, k, v, a, lam),
        "gated_delta": lambda: lsattn.loglinear_gated_delta(q, kn, v, a, beta, lam),
        "hierarchical": lambda: lsattn.loglinear_log_attention(q, k, lv, llam, log_decay=a),
    }


def pipelined(fn, n=20):
    fn()
    torch.cuda.synchronize()
    e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    t0 = time.perf_counter()
    e0.record()
    for _ in range(n):
        fn()
    e1.record()
    host = (time.perf_counter() - t0) / n
    e1.synchronize()
    return e0.elapsed_time(e1) / n, 1e3 * host


def profiled(fn, n=5):
    """torch.profiler (CUDA activity) of ``n`` calls of ``fn`` after one more."""
    from torch.profiler import ProfilerActivity, profile

    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(n):
            fn()
        torch.cuda.synchronize()
    return prof


def kernels(fn, n=5):
    """(device ms per call of all kernels and memcpys, top extra kernels) from torch.profiler."""
    prof = profiled(fn, n)
    tot, per = 0.0, {}
    for e in prof.events():
        if e.device_type == torch.autograd.DeviceType.CUDA:
            us = e.time_range.elapsed_us()  # a kernel or memcpy: its time on the device
            tot += us
            per[e.name[:60]] = per.get(e.name[:60], 0.0) + us
    top = sorted(per.items(), key=lambda kv: -kv[1])[:8]
    return tot / n / 1e3, [(name, round(us / n / 1e3, 3)) for name, us in top]


def syncs(fn):
    fn()
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode(0)
    # not the mode's own notice ("Synchronization debug mode is a prototype feature ..."): session 9
    # counted it as a sync (the first call of a process: exp_kernel fp32's "syncs 1" / "2" in runs s9c17b, j)
    return [str(x.message).splitlines()[0][:80] for x in w
            if "synchroniz" in str(x.message) and "debug mode is a prototype" not in str(x.message)]


def measure(fn, runs=3, profile=True):
    """(latency, pipelined, host, kernels, top device kernels, syncs) of ``fn``; pipelined and host
    from the median of ``runs`` runs; ``profile=False``: no kernels (NaN, [])."""
    lat = cuda_time(fn, reps=10)
    pipe, host = sorted(pipelined(fn) for _ in range(runs))[runs // 2]
    kern, top = kernels(fn) if profile else (float("nan"), [])
    return lat, pipe, host, kern, top, syncs(fn)


def main():
    Ts = [int(x) for x in sys.argv[1:] if not x.startswith(("ops=", "dtypes="))] or [8192, 128]
    dts = next((x[7:].split(",") for x in sys.argv[1:] if x.startswith("dtypes=")), ["fp32", "bf16"])
    ops = next((x[4:].split(",") for x in sys.argv[1:] if x.startswith("ops=")), None)
    print(torch.cuda.get_device_name(0), flush=True)
    for T in Ts:
        for dtype, tag in ((torch.float32, "fp32"), (torch.bfloat16, "bf16")):
            if tag not in dts:
                continue
            calls = make(T, dtype)
            for name, fn in calls.items():
                if ops and name not in ops:
                    continue
                for mode in ("onecheck", "session8"):
                    ctx = contextlib.ExitStack()
                    if mode == "session8":
                        ctx.enter_context(mock.patch.object(_prologue, "checks", lambda *a: None))
                        ctx.enter_context(mock.patch.object(_nonfinite, "_cuda_checks", lambda xp, arrays: False))
                    with ctx:
                        try:
                            lat, pipe, host, kern, top, sy = measure(fn)
                        except Exception as exc:
                            print(f"T={T} {tag} {name:13s} {mode:8s} fails: {type(exc).__name__}: {exc}"[:300], flush=True)
                            continue
                    print(f"T={T} {tag} {name:13s} {mode:8s} latency {lat:8.3f}  pipelined {pipe:8.3f}  host {host:7.3f}  "
                          f"kernels {kern:7.3f} ms  syncs {len(sy)}", flush=True)
                    if mode == "onecheck":
                        print(f"      top device: {top}", flush=True)
                        if sy:
                            print(f"      syncs: {sy[:4]}", flush=True)
            del calls
            torch.cuda.empty_cache()
    if ops and "hierarchical" not in ops:
        return
    fn = make(128, torch.float32)["hierarchical"]
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    pr = cProfile.Profile()
    pr.enable()
    for _ in range(20):
        fn()
    torch.cuda.synchronize()
    pr.disable()
    s = io.StringIO()
    st = pstats.Stats(pr, stream=s)
    st.sort_stats("tottime").print_stats(14)
    print(s.getvalue())


if __name__ == "__main__":
    main()
