"""s29b (issue 16): ``gated_delta_bwd.TRAIN_OUT16`` A/B in one process: the public bf16 fwd+bwd step (B=2, H=16, d=64,
bench_gpu_gated_delta's inputs) with the switch off (the float32 scan output, cast to bfloat16 by the registry: a torch
copy in the forward, ToCopyBackward's widening of the output gradient in the backward, K1 / K4 / gd_forms_bwd_x1 reading
float32 dout) and on (gd_tier3 writes the bfloat16 output, K1 / K4 / gd_forms_bwd_x1's GD_DO16 builds read the bfloat16
gradient), rotated per round. Predicted (benchmarks/NOTES.md "Session 29 — s29b"): 20 E bytes less a step (E = B H T
d_v): 8K -0.05..-0.07 ms, 16K -0.10..-0.15, 32K -0.2..-0.3 (14.66 -> ~14.35-14.45 ms), the library's aten copies per
step 2 -> 0, peak memory ~-268 MB at 32K.

    python ab_s29b.py public T,T [REPS] [LOSS]   CUDA-event medians of REPS rounds of 5 steps (every sample printed),
                                                  one step's latency, peak memory, the aten::copy_ calls and copy
                                                  kernels per step (torch profiler), the gd_ kernels' ms per step, the
                                                  gradients on against off. LOSS 'f32': ab_s24a's loss
                                                  (out.float() * dO).sum() (its own two casts in both modes); 'bf16'
                                                  (default): (out * dO).sum() in bfloat16, no cast of the loss's own
"""
import os
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE), os.path.dirname(os.path.dirname(HERE))]
import torch  # noqa: E402

import lsattn  # noqa: E402
from bench_gpu import events_ms, kernel_ms, peak_mem  # noqa: E402
from bench_gpu_gated_delta import inputs  # noqa: E402
from lsattn.backends.cupy import gated_delta_bwd as gdb  # noqa: E402

MODES = ("on", "off")


def mode(m):
    """'off': the float32 output the registry casts; 'on': TRAIN_OUT16."""
    gdb.TRAIN_OUT16 = m == "on"


def copies(fn, calls=3):
    """(aten::copy_ calls, copy kernels, their ms) per call of ``fn`` under torch.profiler (after one warm call)."""
    from torch.profiler import ProfilerActivity, profile

    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(calls):
            fn()
        torch.cuda.synchronize()
    ops = kern = us = 0
    for e in prof.key_averages():
        if e.key == "aten::copy_":
            ops += e.count
        elif "copy" in e.key.lower() and getattr(e, "device_type", None) is not None and "CUDA" in str(e.device_type):
            kern += e.count
            us += getattr(e, "device_time_total", 0) or getattr(e, "cuda_time_total", 0)
    return ops / calls, kern / calls, us / 1e3 / calls


def one(T, reps, loss):
    x = [t.requires_grad_(True) for t in inputs(T, torch.bfloat16)]
    do = torch.randn(x[2].shape, device="cuda", dtype=torch.bfloat16, generator=torch.Generator("cuda").manual_seed(1))

    def step():
        out = lsattn.loglinear_gated_delta(*x)
        (((out.float() * do.float()) if loss == "f32" else out * do)).sum().backward()
        for t in x:
            t.grad = None

    grads, dts = {}, {}
    for m in MODES + MODES:  # warm twice (compiles, the pools' sizes), the gradients of each
        mode(m)
        out = lsattn.loglinear_gated_delta(*x)
        dts[m] = str(out.dtype)
        (((out.float() * do.float()) if loss == "f32" else out * do)).sum().backward()
        grads[m] = [t.grad.float().clone() for t in x]
        for t in x:
            t.grad = None
    diff = [float((u - w).abs().max() / w.abs().max()) for u, w in zip(grads["on"], grads["off"])]
    del grads, out
    times, lat = {m: [] for m in MODES}, {m: [] for m in MODES}
    for r in range(reps):
        for m in MODES[r % 2:] + MODES[:r % 2]:
            mode(m)
            times[m].append(events_ms(step, 5))
            lat[m].append(events_ms(step, 1))
    mem, cp = {}, {}
    for m in MODES:
        mode(m)
        mem[m] = peak_mem(step) / 1e9
        cp[m] = copies(step)
    med = {m: statistics.median(v) for m, v in times.items()}
    ml = {m: statistics.median(v) for m, v in lat.items()}
    for m in MODES:
        print(f"T={T} {m} (loss {loss}, out {dts[m]}): median {med[m]:.3f} ms, latency {ml[m]:.3f}, peak {mem[m]:.3f} GB; "
              f"aten::copy_ {cp[m][0]:.1f} a step, copy kernels {cp[m][1]:.1f} ({cp[m][2]:.3f} ms); samples "
              + " ".join(f"{v:.3f}" for v in sorted(times[m])), flush=True)
    print(f"T={T}: max |grad on - off| / max |grad off| (q k v a beta lam): " + " ".join(f"{e:.2e}" for e in diff),
          flush=True)
    for m in MODES:
        mode(m)
        ks = kernel_ms(step, 3)
        gd = sorted(((k, v) for k, v in ks.items() if k.startswith("gd_")), key=lambda kv: -kv[1])
        rest = sum(v for k, v in ks.items() if not k.startswith("gd_"))
        print(f"T={T} {m} kernels (ms per step): " + "; ".join(f"{k} {v:.3f}" for k, v in gd) + f"; other {rest:.3f}",
              flush=True)
    mode("on")
    del x
    torch.cuda.empty_cache()
    return T, med, ml, mem, cp


if __name__ == "__main__":
    assert sys.argv[1] == "public", sys.argv
    Ts = [int(t) for t in sys.argv[2].split(",")]
    reps = int(sys.argv[3]) if len(sys.argv) > 3 else 9
    loss = sys.argv[4] if len(sys.argv) > 4 else "bf16"
    rows = [one(T, reps, loss) for T in Ts]
    print(f"| T | off ms | on (TRAIN_OUT16) ms | on/off | latency off / on | peak GB off / on | aten::copy_ off / on "
          f"(loss {loss}) |")
    print("|---|---:|---:|---:|---|---|---|")
    for T, med, ml, mem, cp in rows:
        print(f"| {T} | {med['off']:.3f} | {med['on']:.3f} | {med['on'] / med['off']:.3f} | {ml['off']:.3f} / "
              f"{ml['on']:.3f} | {mem['off']:.2f} / {mem['on']:.2f} | {cp['off'][0]:.0f} / {cp['on'][0]:.0f} |", flush=True)
