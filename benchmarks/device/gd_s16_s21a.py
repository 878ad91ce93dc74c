"""Session 21, s21a16 (issue 16): gated_delta.S16 (the GD_S16 build: bfloat16 inputs' two-tier scan on bfloat16
intermediates qeff, e^G K, phi, H, Qp) on / off in one process, interleaved rounds, B=2 H=16 d=64 bf16 from chunk 0
without state (bench_gpu_gated_delta's inputs; CUDA torch tensors, no backend=).
- kernels: per kernel of the forward, mean ms per call from torch.profiler over CALLS calls, medians over ROUNDS rounds
- public: the forward's latency (one call from an idle GPU) and pipelined time (10 calls back to back / 10), CUDA
  events, medians; fla's chunk_gated_delta_rule (bf16, pipelined) in the same rounds for the ratio; peak memory
  (bench_gpu.peak_mem) on / off; max |on - off| / max |off| of the outputs (and vs fla's float32 as a sanity check)
    python benchmarks/device/gd_s16_s21a.py warm [T,T]            # compile both builds, fla's Triton (tests mode)
    python benchmarks/device/gd_s16_s21a.py kernels [T,T] [ROUNDS]
    python benchmarks/device/gd_s16_s21a.py public [T,T] [ROUNDS]"""
import os
import statistics
import sys
from collections import defaultdict

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), os.path.dirname(os.path.dirname(HERE))]
import lsattn  # noqa: E402
from bench_gpu import peak_mem  # noqa: E402
from bench_gpu_gated_delta import fla_args, inputs  # noqa: E402
from lsattn.backends.cupy import gated_delta as cgd  # noqa: E402

MODE = sys.argv[1] if len(sys.argv) > 1 else "public"
Ts = [int(t) for t in (sys.argv[2] if len(sys.argv) > 2 else "8192,16384,32768").split(",")]
ROUNDS = int(sys.argv[3]) if len(sys.argv) > 3 else 7
try:
    from fla.ops.gated_delta_rule import chunk_gated_delta_rule
except Exception as exc:  # noqa: BLE001
    print("fla not importable:", exc)
    chunk_gated_delta_rule = None


def use(on):
    cgd.S16 = on
    cgd._TORCH_PLANS.clear()


def fwd(x):
    return lsattn.loglinear_gated_delta(*x)


def timed(f, n):
    ev = [torch.cuda.Event(enable_timing=True) for _ in range(2)]
    torch.cuda.synchronize()
    ev[0].record()
    for _ in range(n):
        f()
    ev[1].record()
    ev[1].synchronize()
    return ev[0].elapsed_time(ev[1]) / n


def kernel_ms(f, calls=3):
    """Mean ms per call of each CUDA kernel over ``calls`` profiled calls."""
    from torch.profiler import ProfilerActivity, profile

    f()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(calls):
            f()
        torch.cuda.synchronize()
    out = {}
    for e in prof.key_averages():
        us = getattr(e, "device_time_total", None)
        us = e.cuda_time_total if us is None else us
        if us:
            out[e.key] = us / 1e3 / calls
    return out


def rel(a, b):
    return float((a.double() - b.double()).abs().max() / b.double().abs().max())


if MODE == "warm":
    for T in Ts:
        x = inputs(T, torch.bfloat16)
        for on in (True, False):
            use(on)
            fwd(x)
        if chunk_gated_delta_rule is not None:
            chunk_gated_delta_rule(*fla_args(*x[:5]), scale=1.0)
        torch.cuda.synchronize()
        print(f"compiled T={T}", flush=True)
elif MODE == "kernels":
    for T in Ts:
        x = inputs(T, torch.bfloat16)
        res = {on: defaultdict(list) for on in (True, False)}
        for r in range(ROUNDS):
            for on in (True, False):
                use(on)
                for k, v in kernel_ms(lambda: fwd(x)).items():
                    res[on][k].append(v)
        med = {on: {k: statistics.median(v) for k, v in d.items()} for on, d in res.items()}
        names = sorted(set(med[True]) | set(med[False]), key=lambda k: -max(med[True].get(k, 0), med[False].get(k, 0)))
        tot = {on: sum(med[on].values()) for on in med}
        print(f"T={T} kernels (ms, S16 on / off, medians of {ROUNDS}): total {tot[True]:.3f} / {tot[False]:.3f}", flush=True)
        for k in names[:10]:
            a, b = med[True].get(k, 0.0), med[False].get(k, 0.0)
            print(f"  {k[:48]:48s} {a:7.3f} / {b:7.3f}  ({a - b:+.3f})", flush=True)
    use(True)
else:
    for T in Ts:
        x = inputs(T, torch.bfloat16)
        fx = fla_args(*x[:5]) if chunk_gated_delta_rule is not None else None
        res, outs = {k: ([], []) for k in (True, False, "fla")}, {}
        for r in range(ROUNDS + 1):
            for on in (True, False):
                use(on)
                outs[on] = fwd(x)
                lat, pipe = timed(lambda: fwd(x), 1), timed(lambda: fwd(x), 10)
                if r:
                    res[on][0].append(lat), res[on][1].append(pipe)
            if fx is not None:
                chunk_gated_delta_rule(*fx, scale=1.0)
                lat, pipe = timed(lambda: chunk_gated_delta_rule(*fx, scale=1.0), 1), \
                    timed(lambda: chunk_gated_delta_rule(*fx, scale=1.0), 10)
                if r:
                    res["fla"][0].append(lat), res["fla"][1].append(pipe)
        m = {k: (statistics.median(a), statistics.median(b)) if a else (float("nan"),) * 2 for k, (a, b) in res.items()}
        mem = {}
        for on in (True, False):
            use(on)
            mem[on] = peak_mem(lambda: fwd(x)) / 1e9
        use(True)
        print(f"T={T} bf16 public fwd (ms): S16 on latency {m[True][0]:.3f} pipelined {m[True][1]:.3f} | off latency "
              f"{m[False][0]:.3f} pipelined {m[False][1]:.3f} | fla latency {m['fla'][0]:.3f} pipelined {m['fla'][1]:.3f} "
              f"| on/fla {m[True][1] / m['fla'][1]:.2f}x off/fla {m[False][1] / m['fla'][1]:.2f}x | peak GB on "
              f"{mem[True]:.3f} off {mem[False]:.3f} | |on-off|/max {rel(outs[True], outs[False]):.2e}", flush=True)
