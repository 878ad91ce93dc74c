"""Where the host time of one public CUDA call goes, span by span (issue 17, s11e17).

    python benchmarks/device/host_spans_s11e17.py spans [T ...] [ops=...] [dtypes=fp32,bf16] [train] [cpu]
    python benchmarks/device/host_spans_s11e17.py prims          # the host cost of the primitives a call uses
    python benchmarks/device/host_spans_s11e17.py latency [T ...] [ops=...] [dtypes=...] [train] [prof] [foreach|noforeach] [kernel]

``spans``: the library's host functions wrapped by timers (``time.perf_counter_ns``; the wrapper
costs ~0.3 us a call, included), 30 calls each after a warm-up, the queue drained after every call
(the latency setting: nothing overlaps the host work but the call's own kernels). Per function: calls
per public call, inclusive and exclusive (own, minus wrapped children) microseconds per public call.
``prims``: host microseconds of single primitives on this machine (torch and CuPy launches, views,
DLPack, allocations, events), each the median of 200. ``latency``: the tables' numbers of
``prologue_s9c17.measure`` (latency, pipelined, host per call; kernels with ``prof``: torch.profiler).
B=2, H=16, d=64 CUDA torch tensors (``prologue_s9c17.make``; ``train``: ``prologue_s10f17.train_calls``).
"""
from __future__ import annotations

import statistics
import sys
import time

import torch

sys.path[:0] = ["benchmarks", "benchmarks/device"]
from lsattn import _nonfinite, _prologue, backends  # noqa: E402

_ns = time.perf_counter_ns


class Spans:
    def __init__(self):
        self.incl, self.excl, self.count, self.stack, self.undo = {}, {}, {}, [], []

    def wrap(self, owner, attr, label=None):
        fn = getattr(owner, attr, None)
        if fn is None or getattr(fn, "_spanned", False):
            return
        label = label or f"{getattr(owner, '__name__', type(owner).__name__)}.{attr}"
        spans = self

        def wrapped(*a, **kw):
            spans.stack.append(0)
            t0 = _ns()
            try:
                return fn(*a, **kw)
            finally:
                dt = _ns() - t0
                child = spans.stack.pop()
                if spans.stack:
                    spans.stack[-1] += dt
                spans.incl[label] = spans.incl.get(label, 0) + dt
                spans.excl[label] = spans.excl.get(label, 0) + dt - child
                spans.count[label] = spans.count.get(label, 0) + 1

        wrapped._spanned = True
        setattr(owner, attr, wrapped)
        self.undo.append((owner, attr, fn))

    def reset(self):
        self.incl, self.excl, self.count = {}, {}, {}

    def restore(self):
        for owner, attr, fn in reversed(self.undo):
            setattr(owner, attr, fn)
        self.undo = []


def instrument(spans, cpu=False):
    for name in ("_run", "namespace", "_shapes", "checks", "prepare", "undefined_rows", "where_undefined",
                 "canonical_shifts", "_broadcast_inputs", "check_float", "compute_dtype", "check_levels", "_grad",
                 "_validate", "_plan_key", "_compute"):
        spans.wrap(_prologue, name, f"prologue.{name}")
    spans.wrap(backends, "resolve", "backends.resolve")
    for name in ("_extrema", "_read"):
        spans.wrap(_nonfinite, name, f"nonfinite.{name}")
    spans.wrap(_nonfinite.Checked, "_answer", "Checked._answer (the wait)")
    if cpu:
        return
    import cupy

    from lsattn.backends.cupy import (_arrays, _autograd, _compile, exp_kernel as cek, gated_delta as cgd,
                                      hierarchical as chi, hierarchical_bwd as chb, loglinear as cll)

    for mod, names in ((cek, ("forward", "log_forward", "compute", "backward")), (cll, ("forward", "compute", "backward")),
                       (cgd, ("forward", "compute", "forms")), (chi, ("forward", "compute", "slots", "config")),
                       (chb, ("apply", "backward")), (_arrays, ("_torch_view", "_from_cupy", "inputs", "_to_cupy",
                                                                "shared_inputs", "batch_layout", "flat")),
                       (_autograd, ("apply_exp_kernel", "apply_loglinear"))):
        for n in names:
            spans.wrap(mod, n, f"{mod.__name__.split('.')[-1]}.{n}")
    for mod in (cek, cll, cgd, chi, chb, _autograd):  # their own bindings of the _arrays helpers
        for n in ("inputs", "flat", "batch_layout", "shared_inputs", "widen", "narrow"):
            if hasattr(mod, n):
                spans.wrap(mod, n, f"_arrays.{n}")
    for n in dir(_compile.CupyOps):
        if n[:3] in ("ll_", "ek_", "ekb", "hi_", "hib", "gd_"):
            spans.wrap(_compile.CupyOps, n, f"launch.{n}")
    for n in ("empty", "zeros", "full", "ascontiguousarray"):
        spans.wrap(cupy, n, f"cupy.{n}")
    for b in backends._REGISTRY.values():
        b._impls.clear()  # implementations looked up again: the wrapped module attributes


def spans_main(Ts, ops, dts, train, cpu=False):
    """cpu: CPU torch tensors checked as CUDA ones, the backend stubbed (``host_cost.stubbed``): the
    shared prologue only (a count, not a GPU number)."""
    import contextlib

    from prologue_s9c17 import make

    spans = Spans()
    instrument(spans, cpu)
    sync = (lambda: None) if cpu else torch.cuda.synchronize
    stack = contextlib.ExitStack()
    if cpu:
        from host_cost import stubbed

        stack.enter_context(stubbed())
    with stack:
        _spans_loop(spans, Ts, ops, dts, train, cpu, make, sync)
    spans.restore()


def _spans_loop(spans, Ts, ops, dts, train, cpu, make, sync):
    for T in Ts:
        for tag in dts:
            dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[tag]
            if train:
                from prologue_s10f17 import train_calls

                calls = train_calls(T, dtype)
            else:
                calls = make(T, dtype, "cpu" if cpu else "cuda")
            for name, fn in calls.items():
                if ops and name not in ops:
                    continue
                try:
                    for _ in range(3):
                        fn()
                    sync()
                    spans.reset()
                    n, host = 30, []
                    for _ in range(n):
                        t0 = _ns()
                        fn()
                        host.append(_ns() - t0)
                        sync()
                except Exception as exc:
                    print(f"T={T} {tag} {name} fails: {type(exc).__name__}: {exc}"[:300], flush=True)
                    continue
                print(f"T={T} {tag} {name} {'train' if train else 'fwd'}: host per call {statistics.median(host) / 1e3:.1f} us "
                      f"(median of {n}; spans below are means, us per call)", flush=True)
                rows = sorted(spans.incl, key=lambda k: -spans.excl[k])
                for k in rows:
                    print(f"    {k:36s} calls {spans.count[k] / n:5.1f}  incl {spans.incl[k] / n / 1e3:8.1f}  "
                          f"own {spans.excl[k] / n / 1e3:8.1f}", flush=True)
            del calls


def prims():
    """Host microseconds of the primitives of a call (median of 200 after 20)."""
    import array_api_compat
    import cupy
    import numpy as np

    from lsattn.backends.cupy import _arrays

    x = torch.randn(2, 16, 8192, 64, device="cuda")
    xb = x.to(torch.bfloat16)
    small = [torch.randn(()) .cuda() for _ in range(10)]
    cx = _arrays._torch_view(cupy, x)
    ptr = torch.cuda.current_stream(0).cuda_stream
    k = cupy.RawKernel(r'''extern "C" __global__ void f(const float* a, float* b, int n0, int n1, int n2, int n3,
        int n4, int n5, int n6, int n7, long long n8, long long n9, float s) { if (threadIdx.x == 0 && n0 < 0) b[0] = a[0]; }''', "f")
    out = cupy.empty(1, dtype=cupy.float32)
    args20 = (cx, out) + tuple(np.int32(i) for i in range(8)) + (np.int64(1), np.int64(2), np.float32(0.5))

    def rawlaunch():
        k((1,), (32,), args20)

    def rawlaunch_conv():
        k((1,), (32,), (cx, out) + tuple(np.int32(i) for i in range(8)) + (np.int64(1), np.int64(2), np.float32(0.5)))

    ev = torch.cuda.Event()
    from lsattn.hierarchical import SPEC

    lam = torch.randn(2, 16, 8192, 14, device="cuda")
    a = torch.randn(2, 16, 8192, device="cuda")
    hier = [x, x.clone(), x.clone(), lam, a]
    xp = array_api_compat.array_namespace(x)
    try:
        from prologue_s10f17 import _fe_checks
    except Exception:  # noqa: BLE001
        _fe_checks = None
    tests = {
        "checks(hierarchical fp32 8K) + wait": lambda: _nonfinite.checks(SPEC, hier, None, xp).finite,
        "checks(hierarchical fp32 8K), no wait": lambda: _nonfinite.checks(SPEC, hier, None, xp),
        "fe checks(hierarchical fp32 8K) + wait": lambda: _fe_checks(SPEC, hier, None, xp).finite,
        "kernel checks(hierarchical fp32 8K) + wait": lambda: _kernel_mode(SPEC, hier, xp),
        "kernel checks(hierarchical fp32 8K), no wait": lambda: _kernel_mode(SPEC, hier, xp, False),
        "_arrays.inputs(5 views) in on_gpu": lambda: _in_gpu(_arrays, hier),
        "torch._foreach_max 3x8K": lambda: torch._foreach_max([x, x, x]),
        "output: cupy.empty + torch.from_dlpack(stream)": lambda: torch.from_dlpack(
            cupy.empty((2, 16, 8192, 64), dtype=cupy.float32).__dlpack__(stream=ptr)),
        "output: torch.empty + _torch_view": lambda: _arrays._torch_view(cupy, torch.empty((2, 16, 8192, 64), device="cuda")),
        "torch.cuda.current_stream(0)": lambda: torch.cuda.current_stream(0),
        "torch.cuda.current_stream(0).cuda_stream": lambda: torch.cuda.current_stream(0).cuda_stream,
        "torch._C._cuda_getCurrentRawStream(0)": lambda: torch._C._cuda_getCurrentRawStream(0),
        "_external_stream (cached)": lambda: _arrays._external_stream(ptr, 0),
        "with cupy.cuda.Device(0), ExternalStream": lambda: _with(cupy.cuda.Device(0), _arrays._external_stream(ptr, 0)),
        "on_gpu(x) enter+exit": lambda: _with(_arrays.on_gpu(x)),
        "_torch_view fp32 8K": lambda: _arrays._torch_view(cupy, x),
        "_torch_view bf16 8K": lambda: _arrays._torch_view(cupy, xb),
        "torch.from_dlpack(cupy, stream)": lambda: torch.from_dlpack(cx.__dlpack__(stream=ptr)),
        "torch.from_dlpack(cupy)": lambda: torch.from_dlpack(cx),
        "cupy.empty (B,H,T,D)": lambda: cupy.empty((2, 16, 8192, 64), dtype=cupy.float32),
        "torch.empty (B,H,T,D) cuda": lambda: torch.empty((2, 16, 8192, 64), device="cuda"),
        "torch.empty_like": lambda: torch.empty_like(x),
        "cupy reshape+ascontiguousarray": lambda: cupy.ascontiguousarray(cupy.reshape(cx, (32, 8192, 64))),
        "RawKernel launch 13 args (np scalars)": rawlaunch,
        "RawKernel launch 13 args + np.int32()": rawlaunch_conv,
        "np.int32(5)": lambda: np.int32(5),
        "torch.aminmax fp32 8K": lambda: torch.aminmax(x),
        "torch.aminmax bf16 8K": lambda: torch.aminmax(xb),
        "torch.amin dims bf16 8K": lambda: torch.amin(xb, dim=(0, 1, 2, 3)),
        "torch._foreach_norm inf 3x8K": lambda: torch._foreach_norm([x, x, x], float("inf")),
        "torch.stack 10 0-d": lambda: torch.stack(small),
        "x.to(cpu, non_blocking) 0-d x10": lambda: torch.stack(small).to("cpu", non_blocking=True),
        "torch.cuda.Event() + record": lambda: torch.cuda.Event().record(),
        "event.record (reused)": lambda: ev.record(),
        "cupy.cuda.Event + record": lambda: cupy.cuda.Event(disable_timing=True).record(),
        "x.detach()": lambda: x.detach(),
        "x.contiguous() (contiguous)": lambda: x.contiguous(),
        "x.float() (fp32)": lambda: x.float(),
        "x.stride() / x.shape / x.dtype": lambda: (x.stride(), x.shape, x.dtype),
        "x.device": lambda: x.device,
        "x.is_cuda": lambda: x.is_cuda,
        "x.requires_grad": lambda: x.requires_grad,
        "x.data_ptr()": lambda: x.data_ptr(),
        "x.get_device()": lambda: x.get_device(),
        "str(x.dtype)": lambda: str(x.dtype),
        "np.finfo(np.float32).max": lambda: np.finfo(np.float32).max,
        "torch.is_grad_enabled()": torch.is_grad_enabled,
        "torch.compiler.is_compiling()": torch.compiler.is_compiling,
    }
    for name, f in tests.items():
        try:
            for _ in range(20):
                f()
            ts = []
            for _ in range(200):
                t0 = _ns()
                f()
                ts.append(_ns() - t0)
            torch.cuda.synchronize()
            print(f"  {name:44s} {statistics.median(ts) / 1e3:8.2f} us", flush=True)
        except Exception as exc:
            print(f"  {name:44s} fails: {type(exc).__name__}: {exc}"[:200], flush=True)


def propagation():
    """Whether ``torch._foreach_max`` / ``_foreach_norm(inf)`` see NaN, +inf, -inf (fp32, bf16, a
    non-contiguous view): one line each."""
    for dt in (torch.float32, torch.bfloat16):
        xs = [torch.randn(2, 16, 8192, 64, device="cuda").to(dt) for _ in range(4)]
        for x, bad in zip(xs[1:], (float("nan"), float("inf"), float("-inf"))):
            x[1, 3, 4000, 7] = bad
        xs.append(xs[1][..., 0])  # a strided view holding the NaN
        xs[-1][1, 3, 4000] = float("nan")
        for name, f in (("_foreach_max", torch._foreach_max), ("_foreach_norm(inf)", lambda v: torch._foreach_norm(v, float("inf")))):
            try:
                print(f"  {dt} {name} of finite / NaN / +inf / -inf / strided NaN: {[float(v) for v in f(xs)]}", flush=True)
            except Exception as exc:  # noqa: BLE001
                print(f"  {dt} {name} fails: {type(exc).__name__}: {exc}"[:200], flush=True)


def _kernel_mode(spec, xs, xp, wait=True):
    old = _nonfinite.KERNEL
    _nonfinite.KERNEL = True
    try:
        c = _nonfinite.checks(spec, xs, None, xp)
        return c.finite if wait else c
    finally:
        _nonfinite.KERNEL = old


def _in_gpu(_arrays, xs):
    with _arrays.on_gpu(xs[0]) as (to_cp, back, ops):
        return _arrays.inputs(to_cp, xs)


def _with(*ctxs):
    for c in ctxs:
        c.__enter__()
    for c in reversed(ctxs):
        c.__exit__(None, None, None)


def latency_main(Ts, ops, dts, train, prof):
    from prologue_s9c17 import make, measure
    from prologue_s10f17 import train_calls

    for T in Ts:
        for tag in dts:
            dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[tag]
            calls = train_calls(T, dtype) if train else make(T, dtype)
            for name, fn in calls.items():
                if ops and name not in ops:
                    continue
                try:
                    lat, pipe, host, kern, top, sy = measure(fn, runs=1, profile=prof)
                except Exception as exc:
                    print(f"T={T} {tag} {name:13s} fails: {type(exc).__name__}: {exc}"[:300], flush=True)
                    continue
                print(f"T={T} {tag} {name:13s} {'train' if train else 'fwd'} latency {lat:8.3f}  pipelined {pipe:8.3f}  "
                      f"host {host:7.3f}  kernels {kern:7.3f} ms  syncs {len(sy)}", flush=True)
            del calls
            torch.cuda.empty_cache()


def main():
    argv = sys.argv[1:]
    what = argv.pop(0) if argv else "spans"
    Ts = [int(x) for x in argv if x.isdigit()] or [128, 8192]
    opt = lambda key, default: next((x[len(key) + 1:].split(",") for x in argv if x.startswith(key + "=")), default)  # noqa: E731
    dts, ops, train = opt("dtypes", ["fp32", "bf16"]), opt("ops", None), "train" in argv
    cpu = "cpu" in argv
    print("cpu (stubbed)" if cpu else torch.cuda.get_device_name(0), what, " ".join(argv), flush=True)
    if what == "prims":
        propagation()
        return prims()
    if "foreach" in argv:  # the checks from torch's multi-tensor max |x| and max (``_nonfinite.FOREACH``)
        _nonfinite.FOREACH = True
    if "noforeach" in argv:
        _nonfinite.FOREACH = False
    if "kernel" in argv and hasattr(_nonfinite, "KERNEL"):  # the checks by one launch (``_nonfinite.KERNEL``)
        _nonfinite.KERNEL = True
    if what == "latency":
        return latency_main(Ts, ops, dts, train, "prof" in argv)
    return spans_main(Ts, ops, dts, train, cpu)


if __name__ == "__main__":
    main()
