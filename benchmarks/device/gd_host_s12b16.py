"""Host time before ``gd_forms`` in the public ``loglinear_gated_delta`` forward (issue 16, s12b16): CUDA torch
tensors without state, B=2, H=16, d=64, bf16 and fp32, the direct path (``gated_delta.TORCH_DIRECT``: the kernels
launched on the tensors' pointers, cached plan, one scratch allocation) against the CuPy views (``TORCH_DIRECT``
off), alternated in one run, no timers inside the library.

Per dtype and path: ``latency`` = median CUDA-event time of one call (``bench_gpu.cuda_time``: the forward table's
measure, each call after the previous one's end); ``pipelined`` = 20 calls back to back / 20 (the GPU's time per call when the host keeps up);
``host`` = median wall time of one call from an idle GPU (its one wait for gd_forms included); ``to_backend`` /
``to_forms`` = the host's time from the call to the backend's ``forward`` / to gd_forms' launch (perf_counter
stamps, us; the only instrumentation: the backend's entry and the kernel object's call). latency - pipelined ~ the GPU's idle time before gd_forms.

    python benchmarks/device/gd_host_s12b16.py [T]
"""
import functools
import os
import statistics
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), os.path.dirname(os.path.dirname(HERE))]
import lsattn  # noqa: E402
from bench_gpu import cuda_time  # noqa: E402
from bench_gpu_gated_delta import inputs  # noqa: E402
from lsattn.backends.cupy import _compile, gated_delta  # noqa: E402

STAMP = []  # host times: the backend's entry ("backend"), gd_forms' launch ("forms")


class Stamped:
    """A kernel (CuPy RawKernel) whose launches note the host time just before them."""

    def __init__(self, fn):
        self.fn = fn

    def __call__(self, *a, **kw):
        STAMP.append(("forms", time.perf_counter()))
        return self.fn(*a, **kw)

    def __getattr__(self, name):
        return getattr(self.fn, name)


def stamp_forms():
    """gd_forms' kernel objects (both paths get them from _compile._launch) wrapped by Stamped."""
    orig = _compile._launch

    def launch(op, dev, cfg, name):
        fn, block, smem = orig(op, dev, cfg, name)
        return (Stamped(fn) if name == "gd_forms" else fn), block, smem

    gated_delta._launch = launch  # the direct path's plan
    _compile._launch = launch  # CupyOps._tk
    forward = gated_delta.forward  # the backend's entry (before the registry imports it: it keeps what it found)

    @functools.wraps(forward)
    def entry(*a, **kw):
        STAMP.append(("backend", time.perf_counter()))
        return forward(*a, **kw)

    gated_delta.forward = entry


def host(f, reps=15):
    """Median wall ms of one call from an idle GPU, and the median us from its start to the backend's entry and to
    gd_forms' launch."""
    walls, stamps = [], {"backend": [], "forms": []}
    for _ in range(reps):
        torch.cuda.synchronize()
        STAMP.clear()
        t = time.perf_counter()
        f()
        walls.append((time.perf_counter() - t) * 1e3)
        for name, at in STAMP:
            stamps[name].append((at - t) * 1e6)
    torch.cuda.synchronize()
    return (statistics.median(walls), *(statistics.median(v) if v else float("nan") for v in stamps.values()))


def pipelined(f, reps=20):
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(reps):
        f()
    torch.cuda.synchronize()
    return (time.perf_counter() - t) * 1e3 / reps


def main():
    T = int(sys.argv[1]) if len(sys.argv) > 1 else 8192
    stamp_forms()
    for dtype, name in ((torch.bfloat16, "bf16"), (torch.float32, "fp32")):
        x = inputs(T, dtype)
        f = lambda: lsattn.loglinear_gated_delta(*x)  # noqa: E731
        outs = {}
        for direct in (True, False):
            gated_delta.TORCH_DIRECT = direct
            outs[direct] = f().float()
        torch.cuda.synchronize()
        diff = (outs[True] - outs[False]).abs().max().item() / outs[False].abs().max().item()
        print(f"T={T} {name}: max |direct - views| / max |views| = {diff:.2e}", flush=True)
        rows = {True: [], False: []}
        for _ in range(3):  # alternated rounds
            for direct in (True, False):
                gated_delta.TORCH_DIRECT = direct
                for _ in range(3):
                    f()
                rows[direct].append((cuda_time(f, warmup=0, reps=15), pipelined(f), *host(f)))
        for direct in (True, False):
            r = rows[direct]
            print(f"T={T} {name} {'direct' if direct else 'views '}: latency " + " / ".join(f"{x[0]:.3f}" for x in r)
                  + " ms, pipelined " + " / ".join(f"{x[1]:.3f}" for x in r) + " ms, host " + " / ".join(
                      f"{x[2]:.3f}" for x in r) + " ms, to_backend " + " / ".join(f"{x[3]:.0f}" for x in r) + " us, to_forms " + " / ".join(
                      f"{x[4]:.0f}" for x in r) + " us",
                  flush=True)
    gated_delta.TORCH_DIRECT = True


if __name__ == "__main__":
    main()
