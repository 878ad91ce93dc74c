"""Where the public CUDA call's time goes beyond its kernels, for every operator (issue 17, s9c17).

    python benchmarks/device/prologue_s9c17.py [T ...] [ops=hierarchical,...]   (default 8192 128; B=2, H=16, d=64)

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

Modes: ``device`` (this branch: the non-finite masks on the device, no host read, the inputs
sanitised by the fused CuPy kernel), ``device_xp`` (the same masks as array-API passes) and ``hostread``
(``_nonfinite._on_device`` patched to False: the session-8 rule, one host read in ``prepare`` and
one in ``undefined_rows``). Then a cProfile of the hierarchical 8K float32 call (device mode).
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
from lsattn import _nonfinite  # noqa: E402

B, H, D = 2, 16, 64


def make(T, dtype):
    g = torch.Generator(device="cuda").manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g, device="cuda")  # noqa: E731
    q, k = (r(B, H, T, D) * D ** -0.5 for _ in range(2))
    v = r(B, H, T, D)
    a = torch.nn.functional.logsigmoid(r(B, H, T) + 3)
    beta = torch.sigmoid(r(B, H, T))
    lam = torch.rand((B, H, T, lsattn.num_levels(T)), device="cuda", generator=g) + 0.5
    kn = k / k.norm(dim=-1, keepdim=True)
    c = lambda x: x.to(dtype)  # noqa: E731
    q, k, v, a, beta, lam, kn = map(c, (q, k, v, a, beta, lam, kn))
    lv, llam = c(r(B, H, T, D)), c(torch.randn(B, H, T, lam.shape[-1], device="cuda", generator=g))
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


def kernels(fn, n=5):
    """(device ms per call of all kernels and memcpys, top extra kernels) from torch.profiler."""
    from torch.profiler import ProfilerActivity, profile

    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(n):
            fn()
        torch.cuda.synchronize()
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
    return [str(x.message).splitlines()[0][:80] for x in w if "synchroniz" in str(x.message)]


def main():
    Ts = [int(x) for x in sys.argv[1:] if not x.startswith("ops=")] or [8192, 128]
    ops = next((x[4:].split(",") for x in sys.argv[1:] if x.startswith("ops=")), None)
    print(torch.cuda.get_device_name(0), flush=True)
    for T in Ts:
        for dtype, tag in ((torch.float32, "fp32"), (torch.bfloat16, "bf16")):
            calls = make(T, dtype)
            for name, fn in calls.items():
                if ops and name not in ops:
                    continue
                for mode in ("device", "device_xp", "hostread"):
                    ctx = {"hostread": mock.patch.object(_nonfinite, "_on_device", lambda xp, arrays: False),
                           "device_xp": mock.patch.object(_nonfinite, "_fused_available", lambda: False),
                           "device": contextlib.nullcontext()}[mode]
                    with ctx:
                        try:
                            lat = cuda_time(fn, reps=10)
                            pipe, host = sorted(pipelined(fn) for _ in range(3))[1]  # the median run
                            kern, top = kernels(fn)
                            sy = syncs(fn)
                        except Exception as exc:
                            print(f"T={T} {tag} {name:13s} {mode:8s} fails: {type(exc).__name__}: {exc}"[:300], flush=True)
                            continue
                    print(f"T={T} {tag} {name:13s} {mode:8s} latency {lat:8.3f}  pipelined {pipe:8.3f}  host {host:7.3f}  "
                          f"kernels {kern:7.3f} ms  syncs {len(sy)}", flush=True)
                    if mode == "device":
                        print(f"      top device: {top}", flush=True)
                        if sy:
                            print(f"      syncs: {sy[:4]}", flush=True)
            del calls
            torch.cuda.empty_cache()
    if ops and "hierarchical" not in ops:
        return
    fn = make(8192, torch.float32)["hierarchical"]
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
    st.sort_stats("tottime").print_stats(16)
    st.sort_stats("cumtime").print_stats(30)
    print(s.getvalue())


if __name__ == "__main__":
    main()
