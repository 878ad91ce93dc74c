"""TIER_BWD A/B (s25d, issue 16): the public bfloat16 fwd+bwd step (``lsattn.loglinear_gated_delta`` on CUDA bf16
tensors, ``(out.float() * dO).sum().backward()``, B=2, H=16, d=64, bench_gpu_gated_delta's inputs) in two modes
rotated in one process: ``off`` (``gated_delta_bwd.TIER_BWD`` off: main's gd_scan_bwd_x1, nothing kept by the forward)
and ``on`` (the forward keeps gd_tiers' Qp, Z, Sb; the backward runs K1-K4: gd_tier3_bwd, gd_coarse_bwd,
gd_tier1x_bwd, gd_tier1_bwd). CUDA-event medians of REPS rounds of 5 pipelined steps (samples printed, sorted), one
step's latency, peak memory (torch allocator and CuPy pool), the gd_ kernels' times per step (torch profiler), and the
gradients' difference on / off.
    python benchmarks/device/ab_s25d.py 8192,16384,32768 [REPS]"""
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import torch  # noqa: E402

import lsattn  # noqa: E402
from bench_gpu import events_ms, kernel_ms, peak_mem  # noqa: E402
from bench_gpu_gated_delta import inputs  # noqa: E402
from lsattn.backends.cupy import gated_delta_bwd as gdb  # noqa: E402

MODES = ("on", "off")
#: the scan's backward kernels of each mode (their sum: the scan backward's time)
SCAN_BWD = {"on": ("gd_tier3_bwd", "gd_coarse_bwd", "gd_tier1x_bwd", "gd_tier1_bwd"), "off": ("gd_scan_bwd",)}


def mode(m):
    """'off': main's path (gd_scan_bwd); 'on': TIER_BWD."""
    gdb.TIER_BWD = m == "on"


def main():
    Ts = [int(t) for t in sys.argv[1].split(",")]
    REPS = int(sys.argv[2]) if len(sys.argv) > 2 else 7
    rows = [one(T, REPS) for T in Ts]
    print("| T | off (main) ms | on (TIER_BWD) ms | on/off | latency off / on | peak GB off / on "
          "| scan bwd ms off / on |")
    print("|---|---:|---:|---:|---|---|---|")
    for T, med, ml, mem, sb in rows:
        print(f"| {T} | {med['off']:.3f} | {med['on']:.3f} | {med['on'] / med['off']:.3f} | {ml['off']:.3f} / "
              f"{ml['on']:.3f} | {mem['off']:.2f} / {mem['on']:.2f} | {sb['off']:.3f} / {sb['on']:.3f} |")


def one(T, REPS):
    x = [t.requires_grad_(True) for t in inputs(T, torch.bfloat16)]
    do = torch.randn(x[2].shape, device="cuda", dtype=torch.bfloat16, generator=torch.Generator("cuda").manual_seed(1))

    def timed():
        out = lsattn.loglinear_gated_delta(*x)
        (out.float() * do.float()).sum().backward()
        for t in x:
            t.grad = None

    grads = {}
    for m in MODES + MODES:  # warm twice (compiles, the pools' sizes) and the gradients of each
        mode(m)
        out = lsattn.loglinear_gated_delta(*x)
        (out.float() * do.float()).sum().backward()
        grads[m] = [t.grad.float().clone() for t in x]
        for t in x:
            t.grad = None
    diff = [float((u - w).abs().max() / w.abs().max()) for u, w in zip(grads["on"], grads["off"])]
    del grads, out
    times = {m: [] for m in MODES}
    lat = {m: [] for m in MODES}
    for r in range(REPS):
        for m in MODES[r % 2:] + MODES[:r % 2]:
            mode(m)
            times[m].append(events_ms(timed, 5))
            lat[m].append(events_ms(timed, 1))
    mem = {}
    for m in MODES:
        mode(m)
        mem[m] = peak_mem(timed) / 1e9
    med = {m: statistics.median(v) for m, v in times.items()}
    ml = {m: statistics.median(v) for m, v in lat.items()}
    for m in MODES:
        print(f"T={T} {m}: median {med[m]:.3f} ms, latency {ml[m]:.3f}, peak {mem[m]:.3f} GB; samples "
              + " ".join(f"{v:.3f}" for v in sorted(times[m])), flush=True)
    print(f"T={T}: max |grad on - off| / max |grad off| (q k v a beta lam): " + " ".join(f"{e:.2e}" for e in diff),
          flush=True)
    sb = {}
    for m in MODES:
        mode(m)
        ks = kernel_ms(timed, 3)
        gd = sorted(((k, v) for k, v in ks.items() if k.startswith("gd_")), key=lambda kv: -kv[1])
        rest = sum(v for k, v in ks.items() if not k.startswith("gd_"))
        sb[m] = sum(v for k, v in ks.items() if k.removesuffix("_x1") in SCAN_BWD[m])
        print(f"T={T} {m} kernels (ms per step): " + "; ".join(f"{k} {v:.3f}" for k, v in gd) + f"; other {rest:.3f}",
              flush=True)
    mode("on")
    del x
    torch.cuda.empty_cache()
    return T, med, ml, mem, sb


if __name__ == "__main__":
    main()
