"""Host time before ``gd_forms`` in the public ``loglinear_gated_delta`` forward (issue 16, s13h16): CUDA torch
tensors without state, B=2, H=16, d=64, bf16 and fp32, four configurations alternated in one run:

- ``new``: the prologue's plan keeps the backend choice and the cast decisions (``memo``), the direct path launches
  through ``cuLaunchKernel`` with prebuilt argument blocks (``gated_delta.RAW_LAUNCH``)
- ``cupy``: the same with CuPy's RawKernel launches in CuPy's current stream (session 12's launch)
- ``nomemo``: RAW_LAUNCH with the backend resolved per call (``backends.generation`` made to change every call)
- ``old``: both off (session 12's host path)

Per configuration, as ``gd_host_s12b16.py``: ``latency`` (median CUDA-event ms of one call, the forward table's
measure), ``pipelined`` (20 calls back to back / 20), ``host`` (median wall ms of one call from an idle GPU),
``to_backend`` / ``to_forms`` (host us from the call to the backend's ``forward`` / to gd_forms' launch).
Then (``new``) the host cost of single steps (median us of 300) per dtype and a cProfile of 300 bf16 calls (top 25 by
own time). ``fp32first``: the float32 rounds before the bfloat16 ones.

    python benchmarks/device/gd_host_s13h16.py [T] [fp32first]
"""
import cProfile
import functools
import os
import pstats
import statistics
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), os.path.dirname(os.path.dirname(HERE))]
import lsattn  # noqa: E402
from bench_gpu import cuda_time  # noqa: E402
from bench_gpu_gated_delta import inputs  # noqa: E402
from gd_host_s12b16 import STAMP, Stamped, host, pipelined  # noqa: E402  (STAMP: the backend's entry, gd_forms' launch)
from lsattn import backends  # noqa: E402
from lsattn.backends.cupy import _rawlaunch, gated_delta  # noqa: E402

GENERATION = backends.generation


def stamp():
    """Note the host time at the backend's entry and at gd_forms' launch (both launch kinds)."""
    forward = gated_delta.forward

    @functools.wraps(forward)
    def entry(*a, **kw):
        STAMP.append(("backend", time.perf_counter()))
        return forward(*a, **kw)

    gated_delta.forward = entry
    orig_plan = gated_delta._Plan.__init__

    def plan_init(self, *a, **kw):
        orig_plan(self, *a, **kw)
        for name in ("raw_forms", "forms"):
            fn = getattr(self, name)
            if fn is not None:
                setattr(self, name, Stamped(fn))

    gated_delta._Plan.__init__ = plan_init


def configure(name):
    gated_delta.RAW_LAUNCH = name in ("new", "nomemo")
    gated_delta._TORCH_PLANS.clear()
    backends.generation = (lambda: object()) if name in ("nomemo", "old") else GENERATION


def steps(x):
    """Median host us of single steps of the direct path (the plan of ``x``), 300 each, the GPU kept busy little."""
    q, k, v, a, beta, lam = x
    plan = next(iter(gated_delta._TORCH_PLANS.values()))
    dev = q.get_device()
    stream = torch._C._cuda_getCurrentRawStream(dev)
    scratch = torch.empty(plan.nbytes, dtype=torch.uint8, device=q.device)
    out = torch.empty(plan.out_shape, dtype=plan.dtype, device=q.device)
    base = scratch.data_ptr()
    ptrs = [t.data_ptr() for t in x]
    args = (*ptrs, *(base + o for o in plan.offsets[:5]), out.data_ptr(), base + plan.offsets[5] if plan.half else 0, 0)
    raw = plan.raw_forms.fn if isinstance(plan.raw_forms, Stamped) else plan.raw_forms
    cp = plan.forms.fn if isinstance(plan.forms, Stamped) else plan.forms
    import cupy

    from lsattn import _nonfinite

    ext = gated_delta._external_stream(stream, dev)

    def cupy_launch():
        with ext:
            cp(plan.forms_grid, plan.forms_block, (*args, *plan.forms_tail), shared_mem=plan.forms_smem)

    chk = _nonfinite.KernelCheck(None)
    items = {
        "torch.empty scratch": lambda: torch.empty(plan.nbytes, dtype=torch.uint8, device=plan.device),
        "torch.empty out": lambda: torch.empty(plan.out_shape, dtype=plan.dtype, device=plan.device),
        "raw launch gd_forms": lambda: raw(stream, *args),
        "CuPy launch gd_forms (+ stream ctx)": cupy_launch,
        "getDevice": lambda: cupy.cuda.runtime.getDevice(),
        "check.pointer": lambda: chk.pointer(),
        "check.launched(stream)": lambda: chk.launched(stream),
        "6 is_contiguous + data_ptr": lambda: [(t.is_contiguous(), t.data_ptr()) for t in x],
        "backends.generation()": lambda: backends.generation(),
        "_torch_call (backend path)": lambda: gated_delta._torch_call(q, k, v, a, beta, lam, 64, None),
        "public call": lambda: lsattn.loglinear_gated_delta(*x),
    }
    for name, fn in items.items():
        ts = []
        for i in range(300):
            if i % 50 == 0:
                torch.cuda.synchronize()
            t = time.perf_counter()
            fn()
            ts.append((time.perf_counter() - t) * 1e6)
        torch.cuda.synchronize()
        print(f"step {name:36s} {statistics.median(ts):7.1f} us", flush=True)
    assert _rawlaunch is not None


def main():
    T = int(sys.argv[1]) if len(sys.argv) > 1 else 8192
    stamp()
    names = ("new", "cupy", "nomemo", "old")
    order = ((torch.bfloat16, "bf16"), (torch.float32, "fp32"))
    for dtype, dname in order[::-1] if "fp32first" in sys.argv else order:
        x = inputs(T, dtype)
        f = lambda: lsattn.loglinear_gated_delta(*x)  # noqa: E731
        outs = {}
        for name in names:
            configure(name)
            outs[name] = f().float()
        torch.cuda.synchronize()
        for name in names[1:]:
            d = (outs[name] - outs["new"]).abs().max().item()
            print(f"T={T} {dname}: max |{name} - new| = {d:.2e}", flush=True)
        rows = {n: [] for n in names}
        for _ in range(3):  # alternated rounds
            for name in names:
                configure(name)
                for _ in range(3):
                    f()
                rows[name].append((cuda_time(f, warmup=0, reps=15), pipelined(f), *host(f)))
        for name in names:
            r = rows[name]
            print(f"T={T} {dname} {name:6s}: latency " + " / ".join(f"{x[0]:.3f}" for x in r)
                  + " ms, pipelined " + " / ".join(f"{x[1]:.3f}" for x in r) + " ms, host " + " / ".join(
                      f"{x[2]:.3f}" for x in r) + " ms, to_backend " + " / ".join(f"{x[3]:.0f}" for x in r)
                  + " us, to_forms " + " / ".join(f"{x[4]:.0f}" for x in r) + " us", flush=True)
        configure("new")
        f()
        print(f"steps {dname}:", flush=True)
        steps(x)
        if dname == "bf16":
            pr = cProfile.Profile()
            torch.cuda.synchronize()
            pr.enable()
            for i in range(300):
                f()
                if i % 20 == 0:
                    torch.cuda.synchronize()
            pr.disable()
            torch.cuda.synchronize()
            pstats.Stats(pr, stream=sys.stdout).sort_stats("tottime").print_stats(25)
    configure("new")


if __name__ == "__main__":
    main()
