"""Host cost of one public call per operator: torch ops, Python calls, CPU time (issue 17, s10f17).

    python benchmarks/host_cost.py            # CPU: torch tensors checked as CUDA ones, kernels stubbed
    python benchmarks/host_cost.py --gpu      # CUDA torch tensors, the real call (kernels included)
    python benchmarks/host_cost.py --gpu --train   # the training step (prologue_s10f17.train_calls)
    options: --T 128 --dtypes fp32,bf16 --ops exp_kernel,... --n 50 --profile (cProfile, top 25 by own time)

Per operator and dtype (B=2, H=16, d=64): ``aten`` the torch operators one call dispatches (views
apart: on CUDA each other one is a kernel launch or a copy), ``pycalls`` the Python function calls
(cProfile), ``cpu_us`` the process CPU time per call (``time.process_time``, median of 5 batches of
``n`` calls; meaningful on a quiet machine only). The CPU mode runs the prologue and the checks as
on CUDA arrays (``_nonfinite._cuda_checks`` patched) and replaces the backend's implementation by
one that returns an empty output: it counts what every CUDA call shares (validation, dispatch, the
checks), not the CuPy host modules, which need a device (``--gpu`` counts those too).
"""
from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import os
import pstats
import statistics
import sys
import time
from unittest import mock

import torch
from torch.utils._python_dispatch import TorchDispatchMode

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), HERE, os.path.join(HERE, "device")]
from lsattn import _nonfinite, backends  # noqa: E402
from prologue_s9c17 import make  # noqa: E402  (the calls: B=2, H=16, d=64)


class Count(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops, self.views = 0, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if torch.Tag.view_copy in func.tags or func.is_view or "view" in func.__name__ or func.__name__.startswith(
                ("as_strided", "select", "slice", "expand", "unsqueeze", "squeeze", "t.", "transpose", "alias")):
            self.views += 1
        else:
            self.ops += 1
        return func(*args, **(kwargs or {}))


def stubbed():
    """The CPU mode: checks as on CUDA arrays, implementations returning an empty output."""
    def impl(op, step=False):
        def run(*args, **kw):
            q, v = args[0], args[2]
            return torch.empty(q.shape[:-1] + v.shape[-1:], dtype=q.dtype), None
        return run

    stack = contextlib.ExitStack()
    stack.enter_context(mock.patch.object(_nonfinite, "_cuda_checks", lambda xp, arrays: True))
    stack.enter_context(mock.patch.object(backends.Backend, "implementation", lambda self, op, step=False: impl(op)))
    return stack


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gpu", action="store_true")
    ap.add_argument("--T", type=int, default=128)
    ap.add_argument("--dtypes", default="fp32,bf16")
    ap.add_argument("--ops", default=None)
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--train", action="store_true", help="forward + backward (--gpu only)")
    a = ap.parse_args()
    device = "cuda" if a.gpu else "cpu"
    sync = torch.cuda.synchronize if a.gpu else (lambda: None)
    ctx = contextlib.nullcontext() if a.gpu else stubbed()
    with ctx:
        for tag in a.dtypes.split(","):
            dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[tag]
            if a.train:
                from prologue_s10f17 import train_calls

                calls = train_calls(a.T, dtype)
            else:
                calls = make(a.T, dtype, device)
            for name, fn in calls.items():
                if a.ops and name not in a.ops.split(","):
                    continue
                for _ in range(3):
                    fn()
                sync()
                with Count() as c:
                    fn()
                pr = cProfile.Profile()
                pr.enable()
                fn()
                pr.disable()
                sync()
                st = pstats.Stats(pr)
                times = []
                for _ in range(5):
                    t0 = time.process_time()
                    for _ in range(a.n):
                        fn()
                    sync()
                    times.append((time.process_time() - t0) / a.n * 1e6)
                print(f"T={a.T} {tag} {name:13s} aten {c.ops:3d} (+{c.views:3d} views)  pycalls {st.total_calls:5d}  "
                      f"cpu_us {statistics.median(times):8.1f}", flush=True)
                if a.profile:
                    pr = cProfile.Profile()
                    pr.enable()
                    for _ in range(20):
                        fn()
                    sync()
                    pr.disable()
                    s = io.StringIO()
                    pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(25)
                    print("\n".join(s.getvalue().splitlines()[:45]), flush=True)


if __name__ == "__main__":
    main()
