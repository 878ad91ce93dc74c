"""S16_TRAIN A/B (s24a, issue 16): the public bfloat16 fwd+bwd step (``lsattn.loglinear_gated_delta`` on CUDA bf16
tensors, ``(out.float() * dO).sum().backward()``, B=2, H=16, d=64, bench_gpu_gated_delta's inputs) with
``gated_delta_bwd.S16_TRAIN`` on (the forward's GD_S16 build, gd_scan_bwd_x1 reading its bfloat16 intermediates) and off
(main's float32 intermediates) alternated in one process: CUDA-event medians of REPS rounds of 5 pipelined steps, one
step's latency, peak memory, the kernels' times at the first T, and the gradients' difference on / off.
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

Ts = [int(t) for t in sys.argv[1].split(",")]
REPS = int(sys.argv[2]) if len(sys.argv) > 2 else 7
rows = []
for i, T in enumerate(Ts):
    x = [t.requires_grad_(True) for t in inputs(T, torch.bfloat16)]
    do = torch.randn(x[2].shape, device="cuda", dtype=torch.bfloat16, generator=torch.Generator("cuda").manual_seed(1))

    def step():
        out = lsattn.loglinear_gated_delta(*x)
        (out.float() * do.float()).sum().backward()

    grads = {}
    for on in (True, False):  # warm (compiles) and the gradients of each
        gdb.S16_TRAIN = on
        for t in x:
            t.grad = None
        step()
        grads[on] = [t.grad.float().clone() for t in x]
        for t in x:
            t.grad = None
    diff = [float((a - b).abs().max() / b.abs().max()) for a, b in zip(grads[True], grads[False])]
    del grads

    def timed():
        step()
        for t in x:
            t.grad = None

    times = {True: [], False: []}
    lat = {True: [], False: []}
    for r in range(REPS):
        for on in ((True, False) if r % 2 == 0 else (False, True)):
            gdb.S16_TRAIN = on
            times[on].append(events_ms(timed, 5))
            lat[on].append(events_ms(timed, 1))
    mem = {}
    for on in (True, False):
        gdb.S16_TRAIN = on
        mem[on] = peak_mem(timed) / 1e9
    med = {on: statistics.median(v) for on, v in times.items()}
    ml = {on: statistics.median(v) for on, v in lat.items()}
    rows.append((T, med[False], med[True], ml[False], ml[True], mem[False], mem[True]))
    print(f"T={T}: off {med[False]:.3f} ms (spread {min(times[False]):.3f}-{max(times[False]):.3f}), on {med[True]:.3f} ms "
          f"(spread {min(times[True]):.3f}-{max(times[True]):.3f}); latency off {ml[False]:.3f} on {ml[True]:.3f}; "
          f"peak GB off {mem[False]:.3f} on {mem[True]:.3f}", flush=True)
    print(f"T={T}: max |grad on - off| / max |off| (q k v a beta lam): " + " ".join(f"{d:.2e}" for d in diff), flush=True)
    if i == 0:
        for on in (True, False):
            gdb.S16_TRAIN = on
            ks = kernel_ms(timed, 3)
            top = sorted(ks.items(), key=lambda kv: -kv[1])[:14]
            print(f"T={T} S16_TRAIN={on} kernels (ms per step): " + "; ".join(f"{k[:40]} {v:.3f}" for k, v in top), flush=True)
    del x
    torch.cuda.empty_cache()
print("| T | off (main) ms | on (S16_TRAIN) ms | on/off | latency off | latency on | peak GB off | peak GB on |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
for T, a, b, la, lb, ma, mb in rows:
    print(f"| {T} | {a:.3f} | {b:.3f} | {b / a:.3f} | {la:.3f} | {lb:.3f} | {ma:.2f} | {mb:.2f} |")
