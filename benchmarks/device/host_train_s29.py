"""The host side of one public bf16 ``loglinear_gated_delta`` fwd+bwd step, unprofiled (issue 16, session 29): the
fwd+bwd table's step (``(out.float() * dO.float()).sum().backward()``, B=2, H=16, d=64) with perf_counter spans around
the steps of the training path (entry offset from the step's start and duration, us, medians of 9 steps from an idle
GPU), beside the step's CUDA-event latency from an idle GPU and its pipelined time (9 steps back to back / 9).

    python benchmarks/device/host_train_s29.py [T[,T...]] [prof]

(prof: then cProfile of 9 steps, the top functions by cumulative and by own time.)
"""
import collections
import functools
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import lsattn  # noqa: E402
from bench_gpu_gated_delta import inputs  # noqa: E402
from lsattn import _prologue  # noqa: E402
from lsattn.backends.cupy import _autograd, _compile, gated_delta, gated_delta_bwd  # noqa: E402

T0 = [0.0]
SP = collections.defaultdict(list)


def span(name, fn):
    @functools.wraps(fn)
    def wrapped(*a, **kw):
        t = time.perf_counter()
        r = fn(*a, **kw)
        SP[name].append(((t - T0[0]) * 1e6, (time.perf_counter() - t) * 1e6))
        return r
    return wrapped


for mod, names in ((_prologue, ("_run", "_validate", "_compute")), (gated_delta, ("forward", "forms")),
                   (gated_delta_bwd, ("differentiable", "scan_tiers", "tier_backward", "forms_backward", "forms_x")),
                   (_autograd, ("apply_gated_delta_s16",))):
    for n in names:
        setattr(mod, n, span(n, getattr(mod, n)))
for n in ("gd_forms", "gd_tiers", "gd_tier3_bwd", "gd_coarse_bwd", "gd_tier1x_bwd", "gd_tier1_bwd", "gd_forms_bwd"):
    setattr(_compile.CupyOps, n, span("launch_" + n, getattr(_compile.CupyOps, n)))


PROF = "prof" in sys.argv[2:]


def main():
    for T in [int(t) for t in (sys.argv[1] if len(sys.argv) > 1 else "32768,8192").split(",")]:
        x = [t.requires_grad_(True) for t in inputs(T, torch.bfloat16)]
        dO = torch.randn_like(x[2]) / 64
        marks = {}

        def step():
            out = lsattn.loglinear_gated_delta(*x)
            marks["fwd_returned"] = time.perf_counter()
            loss = (out.float() * dO.float()).sum()
            marks["loss_launched"] = time.perf_counter()
            loss.backward()
            marks["bwd_returned"] = time.perf_counter()
            for t in x:
                t.grad = None

        for _ in range(3):
            step()
        torch.cuda.synchronize()
        SP.clear()
        lat, host, mk = [], [], collections.defaultdict(list)
        for _ in range(9):
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize()
            T0[0] = time.perf_counter()
            a.record()
            step()
            b.record()
            h = time.perf_counter()
            b.synchronize()
            lat.append(a.elapsed_time(b))
            host.append((h - T0[0]) * 1e6)
            for k, v in marks.items():
                mk[k].append((v - T0[0]) * 1e6)
        spans = dict(SP)
        torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(9):
            step()
        torch.cuda.synchronize()
        pipe = (time.perf_counter() - t) / 9 * 1e3
        if PROF:  # cProfile of 9 more steps from an idle GPU: where the host's time goes, by function
            import cProfile
            import pstats

            pr = cProfile.Profile()
            for _ in range(9):
                torch.cuda.synchronize()
                pr.enable()
                step()
                pr.disable()
            torch.cuda.synchronize()
            st = pstats.Stats(pr)
            st.sort_stats("cumulative").print_stats(45)
            st.sort_stats("tottime").print_stats(30)
        print(f"==== T={T} bf16 fwd+bwd: latency {statistics.median(lat):.3f} ms (idle GPU, CUDA events, median of 9), "
              f"pipelined {pipe:.3f} ms, host {statistics.median(host):.0f} us", flush=True)
        print("  " + ", ".join(f"{k}@{statistics.median(v):.0f}" for k, v in mk.items()))
        rows = sorted(spans.items(), key=lambda kv: statistics.median(s for s, _ in kv[1]))
        for name, v in rows:
            per = len(v) // 9 or 1  # (calls a step)
            print(f"  {name:24s} x{per}  at {statistics.median(s for s, _ in v):8.0f} us  for "
                  f"{statistics.median(d for _, d in v):7.0f} us")
        x = dO = step = None  # noqa: F841
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
