"""S16_TRAIN A/B (s24a, issue 16): the public bfloat16 fwd+bwd step (``lsattn.loglinear_gated_delta`` on CUDA bf16
tensors, ``(out.float() * dO).sum().backward()``, B=2, H=16, d=64, bench_gpu_gated_delta's inputs) in three modes
rotated in one process: ``off`` (``gated_delta_bwd.S16_TRAIN`` off: main's float32 intermediates), ``on`` (the forward's
GD_S16 build, gd_scan_bwd_x1 reading its bfloat16 intermediates through a staging area over its slot buffers) and
``sep`` (on, with gd_scan_bwd_x1 from the timing build GDB_STSEP=1: the staging area after the block's other arrays,
24 KB more shared memory: batch 1's layout; patched into CupyOps here). CUDA-event medians of REPS rounds of 5
pipelined steps (every sample printed, sorted), one step's latency, peak memory, the gd_ kernels' times, and the
gradients' difference between the modes.
    python benchmarks/device/ab_s24a.py 8192,32768 [REPS]"""
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import cupy  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import lsattn  # noqa: E402
from bench_gpu import events_ms, kernel_ms, peak_mem  # noqa: E402
from bench_gpu_gated_delta import inputs  # noqa: E402
from lsattn.backends.cupy import _compile as cc  # noqa: E402
from lsattn.backends.cupy import gated_delta_bwd as gdb  # noqa: E402

_SEP, SEP_ON, _real = {}, [False], cc.CupyOps.gd_scan_bwd
MODES = ("on", "off", "sep")


def _sep_bwd(self, cfg, *a, x1=False):
    """CupyOps.gd_scan_bwd, with gd_scan_bwd_x1 of the GDB_STSEP=1 build where SEP_ON and the call is S16_TRAIN's."""
    if not (SEP_ON[0] and cfg.s16 and x1):
        return _real(self, cfg, *a, x1=x1)
    smem = cfg.smem("gd_scan_bwd_x1") + 3 * cfg.CH * cfg.DKP * 2  # (GDB_STG)
    if cfg not in _SEP:
        code = "\n".join(cc._source(f) for f in ("common.cu",) + cc._SOURCES["gated_delta_bwd"])
        mod = cupy.RawModule(code=code, options=("-std=c++17",) + cc.defines("gated_delta_bwd", cfg) + ("-DGDB_STSEP=1",))
        fn = mod.get_function("gd_scan_bwd_x1")
        fn.max_dynamic_shared_size_bytes = smem
        _SEP[cfg] = fn
    T, DK, DV, L, p, F, n, n_old, NLC, merge_last, BH = a[16:]
    i = np.int32
    _SEP[cfg]((BH, -(-DV // 16)), (256,), (*a[:16], i(T), i(DK), i(DV), i(L), np.int64(p), np.int64(F), i(n), i(n_old),
                                           i(NLC), i(int(merge_last))), shared_mem=smem)


cc.CupyOps.gd_scan_bwd = _sep_bwd


def mode(m):
    """'off': main's path; 'on': S16_TRAIN; 'sep': S16_TRAIN with the GDB_STSEP=1 build's gd_scan_bwd_x1."""
    gdb.S16_TRAIN, SEP_ON[0] = m != "off", m == "sep"


def main():
    Ts = [int(t) for t in sys.argv[1].split(",")]
    REPS = int(sys.argv[2]) if len(sys.argv) > 2 else 7
    rows = [one(T, REPS) for T in Ts]
    print("| T | off (main) ms | on (S16_TRAIN) ms | on/off | sep ms | sep/on | latency off / on / sep | peak GB off / on |")
    print("|---|---:|---:|---:|---:|---:|---|---|")
    for T, med, ml, mem in rows:
        print(f"| {T} | {med['off']:.3f} | {med['on']:.3f} | {med['on'] / med['off']:.3f} | {med['sep']:.3f} | "
              f"{med['sep'] / med['on']:.3f} | {ml['off']:.3f} / {ml['on']:.3f} / {ml['sep']:.3f} | {mem['off']:.2f} / {mem['on']:.2f} |")


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
    diff = {f"{a} vs {b}": [float((u - w).abs().max() / w.abs().max()) for u, w in zip(grads[a], grads[b])]
            for a, b in (("on", "off"), ("sep", "on"))}
    del grads, out
    times = {m: [] for m in MODES}
    lat = {m: [] for m in MODES}
    for r in range(REPS):
        for m in MODES[r % 3:] + MODES[:r % 3]:
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
