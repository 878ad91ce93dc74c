"""CPU model of the host's time before gd_forms' launch in a public ``loglinear_gated_delta`` forward on CUDA torch
tensors (issue 16, s23a): CPU torch tensors (B=2, H=16, d=64, the forward table's shapes) dispatched as CUDA ones, the
backend's own ``forward`` and ``_torch_call`` with their plan, the CUDA-only steps stood in for (CuPy's device and
event, torch's raw stream, the check's pinned flag, the kernels' lookup; the driver's launch a Python function that
stamps the time, the two-tier scan's launches no-ops).

Per call, ``time.perf_counter_ns`` stamps (us after the call's start) at: the backend's ``forward``, ``_torch_call``,
gd_forms' launch; medians over the calls, in rounds (the machine is shared: say what else ran). cProfile misled here: at
8K it charged the CPU allocations' page mapping, ~140 us a call, to ``cached_plan``.

    python benchmarks/host_gd_s23a.py [T] [calls] [--fp32]

T = 1024 by default with the two-tier scan from any size (``TIER_MIN_CHUNKS = 0``): the 8K call's path (OUT16, the
tiers) at a size whose CPU tensors are small; the plan's scratch is then cut to 4 KB (a CPU ``torch.empty`` of tens of
MB maps fresh pages on each call, ~20 us, where the CUDA caching allocator reuses its block, ~2-4 us; the kernels,
no-ops here, never read it).
"""
import contextlib
import functools
import os
import statistics
import sys
import time
import types

import numpy as np
import torch

sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # (after $PYTHONPATH: an A/B tree first)
import lsattn  # noqa: E402
from lsattn import _nonfinite, backends  # noqa: E402
from lsattn.backends import cupy as cupy_backend  # noqa: E402
from lsattn.backends.cupy import _compile, _rawlaunch  # noqa: E402
from lsattn.backends.cupy import gated_delta as cgd  # noqa: E402

STAMPS = []


def stamp(name):
    STAMPS.append((name, time.perf_counter_ns()))


def fake_cuda():
    """The cupy backend serving CPU torch tensors as CUDA ones, its CUDA-only steps stood in for."""
    b = backends.get("cupy")
    b._status = (True, "ok")
    cupy_backend._kind = lambda a: "torch" if type(a).__module__.startswith("torch") else None
    _nonfinite._cuda_checks = lambda xp, arrays: True
    sys.modules["cupy"] = types.SimpleNamespace(
        ndarray=type("ndarray", (), {}),
        cuda=types.SimpleNamespace(runtime=types.SimpleNamespace(getDevice=lambda: -1, eventRecord=lambda e, s: None),
                                   Event=lambda **kw: types.SimpleNamespace(ptr=0, record=lambda *a: None,
                                                                            synchronize=lambda: None)))
    torch._C._cuda_getCurrentRawStream = lambda dev: 0
    _nonfinite._FLAG.buf = np.zeros(1, np.int32)  # the thread's pinned flag
    _nonfinite._FLAG.addr = _nonfinite._FLAG.buf.ctypes.data
    cgd._external_stream = lambda ptr, dev: contextlib.nullcontext()
    cgd._launch = lambda op, dev, cfg, name: (types.SimpleNamespace(ptr=1), (256,), 0)
    cgd.array_kind = lambda a: "torch"

    def driver(func, *args):  # cuLaunchKernel's stand-in: the launch's moment
        stamp("launch")
        return 0

    _rawlaunch._DRIVER[:] = [driver]
    _compile.CupyOps.gd_tiers = staticmethod(lambda *a, **kw: None)


def wrap(owner, attr, name):
    fn = getattr(owner, attr)

    @functools.wraps(fn)  # (forward's checks_inputs kept)
    def wrapped(*a, **kw):
        stamp(name)
        return fn(*a, **kw)
    setattr(owner, attr, wrapped)


def one(f):
    STAMPS.clear()
    t0 = time.perf_counter_ns()
    f()
    t1 = time.perf_counter_ns()
    out = {}
    for name, t in STAMPS:  # the first of each (gd_forms' launch before the scan's)
        out.setdefault(name, (t - t0) / 1e3)
    out["return"] = (t1 - t0) / 1e3
    return out


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    T = int(args[0]) if args else 1024
    calls = int(args[1]) if len(args) > 1 else 400
    dtype = torch.float32 if "--fp32" in sys.argv else torch.bfloat16
    fake_cuda()
    cgd.TIER_MIN_CHUNKS = 0  # (the two-tier path at any size, as the 8K call's on the GPU)
    B, H, d = 2, 16, 64
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(B, H, T, d, generator=g).to(dtype) for _ in range(3))
    a = -torch.rand(B, H, T, generator=g).to(dtype)
    beta = torch.rand(B, H, T, generator=g).to(dtype)
    lam = torch.rand(B, H, T, lsattn.num_levels(T), generator=g).to(dtype)
    f = lambda: lsattn.loglinear_gated_delta(q, k, v, a, beta, lam)  # noqa: E731
    wrap(cgd, "forward", "forward")
    wrap(cgd, "_torch_call", "torch_call")
    f()
    for plan in cgd._TORCH_PLANS.values():
        plan.nbytes = 4096
    for _ in range(20):
        f()
    for r in range(5):
        runs = [one(f) for _ in range(calls)]
        med = {key: statistics.median(x[key] for x in runs) for key in runs[-1]}
        print(f"round {r}: " + ", ".join(f"{key} {val:.1f}" for key, val in med.items()), flush=True)


if __name__ == "__main__":
    main()
