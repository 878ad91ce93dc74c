"""S16_TRAIN A/B (s24a, issue 16): the public bfloat16 fwd+bwd step (``lsattn.loglinear_gated_delta`` on CUDA bf16
tensors, ``(out.float() * dO).sum().backward()``, B=2, H=16, d=64, bench_gpu_gated_delta's inputs) in two modes
rotated in one process: ``off`` (``gated_delta_bwd.S16_TRAIN`` off: main's float32 intermediates) and ``on`` (the
forward's GD_S16 build, gd_scan_bwd_x1 reading its bfloat16 intermediates). CUDA-event medians of REPS rounds of 5
pipelined steps (every sample printed, sorted), one step's latency, peak memory, the gd_ kernels' times, and the
gradients' difference on / off. (Batch 2 of session 24 ran a third mode, a staging area of its own: commit d12d0d4.)
    python benchmarks/device/ab_s24a.py 8192,32768 [REPS]"""
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
DTYPE = torch.bfloat16  # the inputs' and the output gradient's (ab_s28r.py public32: float32)


def mode(m):
    """'off': main's path; 'on': S16_TRAIN."""
    gdb.S16_TRAIN = m == "on"


def main():
    Ts = [int(t) for t in sys.argv[1].split(",")]
    REPS = int(sys.argv[2]) if len(sys.argv) > 2 else 7
    rows = [one(T, REPS) for T in Ts]
    print("| T | off (main) ms | on (S16_TRAIN) ms | on/off | latency off / on | peak GB off / on |")
    print("|---|---:|---:|---:|---|---|")
    for T, med, ml, mem in rows:
        print(f"| {T} | {med['off']:.3f} | {med['on']:.3f} | {med['on'] / med['off']:.3f} | {ml['off']:.3f} / {ml['on']:.3f} | "
              f"{mem['off']:.2f} / {mem['on']:.2f} |")


def loss(out, do):
    """The step's loss (ab_s29b.py's bf16 mode: ``(out * do).sum()``, no cast of its own)."""
    return (out.float() * do.float()).sum()


def case(T):
    """The inputs (requiring grad) and dO of a step at T, and the step itself (fwd + bwd, grads cleared)."""
    x = [t.requires_grad_(True) for t in inputs(T, DTYPE)]
    do = torch.randn(x[2].shape, device="cuda", dtype=DTYPE, generator=torch.Generator("cuda").manual_seed(1))

    def timed():
        loss(lsattn.loglinear_gated_delta(*x), do).backward()
        for t in x:
            t.grad = None

    return x, do, timed


def one(T, REPS):
    x, do, timed = case(T)
    grads = {}
    for m in MODES + MODES:  # warm twice (compiles, the pools' sizes) and the gradients of each
        mode(m)
        out = lsattn.loglinear_gated_delta(*x)
        loss(out, do).backward()
        grads[m] = [t.grad.float().clone() for t in x]
        for t in x:
            t.grad = None
    diff = {f"{a} vs {b}": [float((u - w).abs().max() / w.abs().max()) for u, w in zip(grads[a], grads[b])]
            for a, b in (("on", "off"),)}
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
    for k, d in diff.items():
        print(f"T={T}: max |grad {k}| / max |grad| (q k v a beta lam): " + " ".join(f"{e:.2e}" for e in d), flush=True)
    for m in MODES:
        mode(m)
        ks = kernel_ms(timed, 3)
        gd = sorted(((k, v) for k, v in ks.items() if k.startswith("gd_")), key=lambda kv: -kv[1])
        rest = sum(v for k, v in ks.items() if not k.startswith("gd_"))
        print(f"T={T} {m} kernels (ms per step): " + "; ".join(f"{k} {v:.3f}" for k, v in gd) + f"; other {rest:.3f}",
              flush=True)
    del x
    torch.cuda.empty_cache()
    return T, med, ml, mem


if __name__ == "__main__":
    main()
