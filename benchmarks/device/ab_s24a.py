"""S16_TRAIN A/B (s24a, issue 16): the public bfloat16 fwd+bwd step (``lsattn.loglinear_gated_delta`` on CUDA bf16
tensors, ``(out.float() * dO).sum().backward()``, B=2, H=16, d=64, bench_gpu_gated_delta's inputs) with
``gated_delta_bwd.S16_TRAIN`` on (the forward's GD_S16 build, gd_scan_bwd_x1 reading its bfloat16 intermediates) and off
(main's float32 intermediates) alternated in one process, and a third mode ``spf``: on with gd_scan_bwd_x1 from the
timing build GDB_SPF=1 (the next chunk's tiles staged during this chunk's passes; patched into CupyOps here):
CUDA-event medians of REPS rounds of 5 pipelined steps, one step's latency, peak memory, the kernels' times at the
first T, and the gradients' difference against off (on, spf) and on (spf).
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

_SPF, SPF_ON, _real = {}, [False], cc.CupyOps.gd_scan_bwd


def _spf_bwd(self, cfg, *a, x1=False):
    """CupyOps.gd_scan_bwd, with gd_scan_bwd_x1 of the GDB_SPF=1 build where SPF_ON and the call is S16_TRAIN's."""
    if not (SPF_ON[0] and cfg.s16 and x1):
        return _real(self, cfg, *a, x1=x1)
    if cfg not in _SPF:
        code = "\n".join(cc._source(f) for f in ("common.cu",) + cc._SOURCES["gated_delta_bwd"])
        mod = cupy.RawModule(code=code, options=("-std=c++17",) + cc.defines("gated_delta_bwd", cfg) + ("-DGDB_SPF=1",))
        fn = mod.get_function("gd_scan_bwd_x1")
        fn.max_dynamic_shared_size_bytes = cfg.smem("gd_scan_bwd_x1")
        _SPF[cfg] = fn
    T, DK, DV, L, p, F, n, n_old, NLC, merge_last, BH = a[16:]
    i = np.int32
    _SPF[cfg]((BH, -(-DV // 16)), (256,), (*a[:16], i(T), i(DK), i(DV), i(L), np.int64(p), np.int64(F), i(n), i(n_old),
                                           i(NLC), i(int(merge_last))), shared_mem=cfg.smem("gd_scan_bwd_x1"))


cc.CupyOps.gd_scan_bwd = _spf_bwd
MODES = ("on", "off", "spf")


def mode(m):
    """'off': main's path; 'on': S16_TRAIN; 'spf': S16_TRAIN with the GDB_SPF=1 build's gd_scan_bwd_x1."""
    gdb.S16_TRAIN, SPF_ON[0] = m != "off", m == "spf"


def main():
    Ts = [int(t) for t in sys.argv[1].split(",")]
    REPS = int(sys.argv[2]) if len(sys.argv) > 2 else 7
    rows = []
    for i, T in enumerate(Ts):
        one(i, T, REPS, rows)
    print("| T | off (main) ms | on (S16_TRAIN) ms | on/off | spf ms | spf/on | latency off / on / spf | peak GB off / on |")
    print("|---|---:|---:|---:|---:|---:|---|---|")
    for T, med, ml, mem in rows:
        print(f"| {T} | {med['off']:.3f} | {med['on']:.3f} | {med['on'] / med['off']:.3f} | {med['spf']:.3f} | "
              f"{med['spf'] / med['on']:.3f} | {ml['off']:.3f} / {ml['on']:.3f} / {ml['spf']:.3f} | {mem['off']:.2f} / {mem['on']:.2f} |")


def one(i, T, REPS, rows):
    x = [t.requires_grad_(True) for t in inputs(T, torch.bfloat16)]
    do = torch.randn(x[2].shape, device="cuda", dtype=torch.bfloat16, generator=torch.Generator("cuda").manual_seed(1))

    def step():
        out = lsattn.loglinear_gated_delta(*x)
        (out.float() * do.float()).sum().backward()

    grads = {}
    for m in MODES:  # warm (compiles) and the gradients of each
        mode(m)
        for t in x:
            t.grad = None
        step()
        grads[m] = [t.grad.float().clone() for t in x]
        for t in x:
            t.grad = None
    diff = {f"{a} vs {b}": [float((u - w).abs().max() / w.abs().max()) for u, w in zip(grads[a], grads[b])]
            for a, b in (("on", "off"), ("spf", "off"), ("spf", "on"))}
    del grads

    def timed():
        step()
        for t in x:
            t.grad = None

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
    rows.append((T, med, ml, mem))
    for m in MODES:
        print(f"T={T} {m}: {med[m]:.3f} ms (spread {min(times[m]):.3f}-{max(times[m]):.3f}), latency {ml[m]:.3f}, "
              f"peak {mem[m]:.3f} GB", flush=True)
    for k, d in diff.items():
        print(f"T={T}: max |grad {k}| / max |grad| (q k v a beta lam): " + " ".join(f"{e:.2e}" for e in d), flush=True)
    if i == 0:
        for m in MODES:
            mode(m)
            ks = kernel_ms(timed, 3)
            top = sorted(ks.items(), key=lambda kv: -kv[1])[:14]
            print(f"T={T} {m} kernels (ms per step): " + "; ".join(f"{k[:40]} {v:.3f}" for k, v in top), flush=True)
    del x
    torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
