"""The public CUDA call's host cost with the checks read after the kernels' launch (issue 17, s10f17).

    python benchmarks/device/prologue_s10f17.py [T ...] [ops=exp_kernel,...] [dtypes=fp32,bf16] [modes=spec,wait,s9]
    python benchmarks/device/prologue_s10f17.py train [T ...] [ops=...] [dtypes=...]   # forward + backward
    python benchmarks/device/prologue_s10f17.py trace [T]     # torch.profiler table of one exp_kernel fp32 call per mode
    python benchmarks/device/prologue_s10f17.py ratio [T]     # loglinear_log_attention fp32: kernels against the array-API path

B=2, H=16, d=64 CUDA torch tensors; the measurements of ``prologue_s9c17.py`` (latency, pipelined,
host per call, kernels, syncs). Modes, all in one run:

- ``spec`` (this branch): every array's minimum and maximum stacked and copied to pinned host memory
  without waiting; the kernels are launched on the inputs as they are and the call waits for the copy
  after them (a non-finite input: the results are dropped and the call computes again, sanitised);
- ``wait``: the same checks, waited for before the kernels (the copy read at once);
- ``s9``: session 9's checks (a 0-d flag per array from its extrema, ~4 torch ops each, stacked and
  read before the kernels; the function as it was at 885e11f, copied below);
- ``s8`` (``trace`` only, or ``modes=``): session 8's reads in ``prepare`` (no ``checks``);
- ``mm`` (``trace`` only, or ``modes=``): ``spec`` with ``amin`` and ``amax`` per array instead of ``aminmax``;
- ``fe`` (``modes=``): ``spec`` with one ``torch._foreach_norm(ord=inf)`` over the arrays that must be finite.

``train``: forward + ``backward`` of ``out.float().square().mean()`` with q, k, v requiring grad.
"""
from __future__ import annotations

import contextlib
import math
import sys
import time
from unittest import mock

import numpy as np
import torch

sys.path.insert(0, "benchmarks")
sys.path.insert(0, "benchmarks/device")
import lsattn  # noqa: E402
from bench_gpu import cuda_time  # noqa: E402
from lsattn import _nonfinite  # noqa: E402
from prologue_s9c17 import make, measure  # noqa: E402

_checks = _nonfinite.checks


class _Answer:
    def __init__(self, finite, own_off):
        self.finite, self.own_off = finite, own_off


def _s9_checks(op, args, state, xp):
    """Session 9's ``_nonfinite.checks`` (885e11f): a 0-d flag per array, stacked, read at once."""
    present = [a for a in args if a is not None] + ([] if state is None else list(state.tensors.values()))
    if not _nonfinite._cuda_checks(xp, present):
        return None
    passes = _nonfinite._passes(op)
    flags = [_s9_clean(x, -math.inf if name in passes else None) for (name, _), x in zip(op.inputs, args)
             if x is not None]
    flags += [_s9_clean(t) for t in ([] if state is None else state.tensors.values())]
    flags = [f for f in flags if f is not None]
    lam = next((x for (_, role), x in zip(op.inputs, args) if role == "lev"), None) if op.normalised else None
    own = None if lam is None or 0 in lam.shape[-2:] else _s9_clean(lam[..., 0], None, None)
    every = flags + ([] if own is None else [own])
    ok = np.asarray(torch.stack(every).cpu()) if every else np.ones(0, bool)
    return _Answer(bool(ok[: len(flags)].all()), own is not None and not ok[-1])


def _s9_clean(x, low=None, high=math.inf):
    if math.prod(x.shape) == 0:
        return None
    x = x[tuple(0 if st == 0 and n > 1 else slice(None) for st, n in zip(x.stride(), x.shape))]
    with torch.no_grad():
        if x.is_contiguous():
            lo, hi = torch.aminmax(x)
        else:
            dims = tuple(range(x.ndim))
            lo, hi = torch.amin(x, dim=dims), torch.amax(x, dim=dims)
    ok = lo > -math.inf if low is None else (lo >= low) & (lo == lo)
    return ok & (hi < high) if high is not None else ok


class _Lazy:
    """``finite`` / ``own_off`` from ``answer()``, waited for on first access (as ``_nonfinite.Checked``)."""

    def __init__(self, answer):
        self._answer, self._got = answer, None

    def _get(self):
        if self._got is None:
            self._got = self._answer()
        return self._got

    finite = property(lambda self: self._get()[0])
    own_off = property(lambda self: self._get()[1])


def _fe_checks(op, args, state, xp):
    """``spec`` with one ``torch._foreach_norm(ord=inf)`` (max |x|, one multi-tensor launch) over every
    array whose every entry must be finite, the extrema of the others (a ``-inf`` that passes)."""
    tensors = [] if state is None else list(state.tensors.values())
    if not _nonfinite._cuda_checks(xp, [a for a in args if a is not None] + tensors):
        return None
    passes = _nonfinite._passes(op)
    named = [(x, name in passes) for (name, _), x in zip(op.inputs, args) if x is not None] + [(t, False) for t in tensors]
    full = [x for x, ok in named if not ok and x.numel()]
    part = [x for x, ok in named if ok and x.numel()]
    lam = next((x for (_, role), x in zip(op.inputs, args) if role == "lev"), None) if op.normalised else None
    own = lam is not None and lam.numel() > 0
    with torch.no_grad():
        vals = list(torch._foreach_norm(full, math.inf)) if full else []
        vals += [e for x in part for e in _nonfinite._extrema(xp, x)] + ([_nonfinite._extrema(xp, lam[..., 0], True)] if own else [])
        wait = _nonfinite._read(xp, torch.stack(vals))
    nf = len(full)

    def answer():
        v = wait()
        ok = all(v[i] < math.inf for i in range(nf))  # NaN compares False
        ok = ok and all(v[nf + 2 * j] >= -math.inf and v[nf + 2 * j + 1] < math.inf for j in range(len(part)))
        return ok, own and not v[-1] > -math.inf

    return _Lazy(answer)


def foreach_propagates():
    """Whether ``torch._foreach_norm(ord=inf)`` sees NaN, +inf and -inf on this device (the ``fe``
    mode is exact only if it does): one line."""
    xs = [torch.randn(4096, device="cuda") for _ in range(4)]
    for x, bad in zip(xs[1:], (math.nan, math.inf, -math.inf)):
        x[1234] = bad
    got = [float(v) for v in torch._foreach_norm(xs + [xs[1].to(torch.bfloat16)], math.inf)]
    print(f"_foreach_norm(inf) of finite / NaN / +inf / -inf / bf16 NaN: {got}", flush=True)


def _two_passes(xp, x, low_only=False):
    if 0 in x.stride():
        x = x[tuple(0 if st == 0 and n > 1 else slice(None) for st, n in zip(x.stride(), x.shape))]
    dims = tuple(range(x.ndim))
    lo = torch.amin(x, dim=dims)
    return lo if low_only else (lo, torch.amax(x, dim=dims))


def _waited(*a):
    c = _checks(*a)
    if c is not None:
        c.finite  # noqa: B018  the copy waited for here, before the kernels
    return c


def mode(name):
    stack = contextlib.ExitStack()
    if name == "wait":
        stack.enter_context(mock.patch("lsattn._prologue.checks", _waited))
    elif name == "s9":
        stack.enter_context(mock.patch("lsattn._prologue.checks", _s9_checks))
    elif name == "fe":
        stack.enter_context(mock.patch("lsattn._prologue.checks", _fe_checks))
    elif name == "mm":  # this branch with a separate minimum and maximum per array (aminmax's device time?)
        stack.enter_context(mock.patch.object(_nonfinite, "_extrema", _two_passes))
    elif name == "s8":  # session 8: no one-read checks (prepare reads a max and a min per array itself)
        stack.enter_context(mock.patch("lsattn._prologue.checks", lambda *a: None))
        stack.enter_context(mock.patch.object(_nonfinite, "_cuda_checks", lambda xp, arrays: False))
    return stack


def train_calls(T, dtype):
    g = torch.Generator(device="cuda").manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g, device="cuda")  # noqa: E731
    B, H, D = 2, 16, 64
    q, k, v = ((r(B, H, T, D) * (D ** -0.5 if i < 2 else 1)).to(dtype).requires_grad_() for i in range(3))
    a = torch.nn.functional.logsigmoid(r(B, H, T) + 3).to(dtype)
    lam = (torch.rand((B, H, T, lsattn.num_levels(T)), device="cuda", generator=g) + 0.5).to(dtype)
    llam = torch.randn(B, H, T, lam.shape[-1], device="cuda", generator=g).to(dtype)

    def step(f):
        def run():
            out = f()
            out.float().square().mean().backward()
        return run

    return {
        "exp_kernel": step(lambda: lsattn.exp_kernel_attention(q, k, v)),
        "log_attention": step(lambda: lsattn.log_attention(q, k, v)),
        "loglinear": step(lambda: lsattn.loglinear_attention(q, k, v, a, lam)),
        "hierarchical": step(lambda: lsattn.loglinear_log_attention(q, k, v, llam, log_decay=a)),
    }


def main():
    argv = sys.argv[1:]
    what = argv.pop(0) if argv and argv[0] in ("train", "trace", "ratio") else "fwd"
    Ts = [int(x) for x in argv if x.isdigit()] or ([8192] if what == "trace" else [128, 8192])
    opt = lambda key, default: next((x[len(key) + 1:].split(",") for x in argv if x.startswith(key + "=")), default)  # noqa: E731
    dts, ops, modes = opt("dtypes", ["fp32", "bf16"]), opt("ops", None), opt("modes", ["spec", "wait", "s9"])
    print(torch.cuda.get_device_name(0), what, flush=True)
    if "fe" in modes:
        foreach_propagates()
    if what == "trace":
        return trace(Ts[0])
    if what == "ratio":
        return ratio(Ts[0])
    for T in Ts:
        for tag in dts:
            dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[tag]
            calls = train_calls(T, dtype) if what == "train" else make(T, dtype)
            for name, fn in calls.items():
                if ops and name not in ops:
                    continue
                for m in modes:
                    with mode(m):
                        try:
                            lat, pipe, host, kern, top, sy = measure(fn, runs=1, profile=m == "spec")
                        except Exception as exc:
                            print(f"T={T} {tag} {name:13s} {m:5s} fails: {type(exc).__name__}: {exc}"[:300], flush=True)
                            continue
                    print(f"T={T} {tag} {name:13s} {what} {m:5s} latency {lat:8.3f}  pipelined {pipe:8.3f}  host {host:7.3f}  "
                          f"kernels {kern:7.3f} ms  syncs {len(sy)}", flush=True)
                    if top:
                        print(f"      top device: {top[:5]}", flush=True)
            del calls
            torch.cuda.empty_cache()


def ratio(T):
    """Issue 17's ratio: the fp32 ``loglinear_log_attention`` forward, automatic choice against
    ``backend="array_api"`` on the same tensors, and ``loglinear_attention`` beside them."""
    calls = make(T, torch.float32)
    g = torch.Generator(device="cuda").manual_seed(1)
    q, k, lv = (torch.randn(2, 16, T, 64, device="cuda", generator=g) * s for s in (0.125, 0.125, 1.0))
    llam = torch.randn(2, 16, T, lsattn.num_levels(T), device="cuda", generator=g)
    a = torch.nn.functional.logsigmoid(torch.randn(2, 16, T, device="cuda", generator=g) + 3)
    ours = cuda_time(lambda: lsattn.loglinear_log_attention(q, k, lv, llam, log_decay=a), reps=10)
    api = cuda_time(lambda: lsattn.loglinear_log_attention(q, k, lv, llam, log_decay=a, backend="array_api"), reps=5)
    ll = cuda_time(calls["loglinear"], reps=10)
    print(f"T={T} fp32 loglinear_log_attention: ours {ours:.3f} ms, array_api {api:.3f} ms ({api / ours:.1f}x), "
          f"loglinear_attention {ll:.3f} ms ({ours / ll:.2f}x)", flush=True)


def trace(T):
    """One exp_kernel fp32 call per mode under torch.profiler: host (CPU) and device time by op."""
    from torch.profiler import ProfilerActivity, profile

    fn = make(T, torch.float32)["exp_kernel"]
    for m in ("spec", "mm", "wait", "s9", "s8"):
        with mode(m):
            for _ in range(3):
                fn()
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                fn()
                torch.cuda.synchronize()
            print(f"==== {m}: {1e3 * (time.perf_counter() - t0):.3f} ms under the profiler", flush=True)
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=14, max_name_column_width=40))


if __name__ == "__main__":
    main()
