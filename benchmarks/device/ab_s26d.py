"""The public bfloat16 forward ``lsattn.loglinear_gated_delta`` (B=2, H=16, d=64, bench_gpu_gated_delta's inputs) on
builds of its kernels rotated call by call in one process (s26d, issue 16; session 27 took out PIPE_PARTS, which this
script measured slower): ``off`` (the defaults), ``main`` (GF_STG, GF_FEX, GD_T1B16_SET off: session 26's kernels),
``b16`` (GD_T1B16_SET), ``nob16`` (GD_T1B16_SET off), ``sf`` (GF_STG 3 and GF_FEX), ``all`` (the three).
REPS 0: the modes' plans and modules only (a warm-up).
Per mode and T, medians over REPS rounds: ``lat`` one call's CUDA-event time from an idle GPU (the forward table's
measure), ``pipe`` 10 calls back to back / 10, ``wall`` one call's host time to its end (synchronized); every mode's
output against off's; then one profiled call per mode at the first T given for the timeline argument: each GPU
kernel's start / end relative to the first kernel's start (us), and the GPU span.
    python benchmarks/device/ab_s26d.py 8192,16384,32768 [REPS] [MODES] [TIMELINE_T]"""
import os
import statistics
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), os.path.dirname(os.path.dirname(HERE))]
import lsattn  # noqa: E402
from bench_gpu import events_ms  # noqa: E402
from bench_gpu_gated_delta import inputs  # noqa: E402
from lsattn.backends.cupy import _compile as cc  # noqa: E402
from lsattn.backends.cupy import gated_delta as cgd  # noqa: E402

# mode: gd_forms' / the tiers' extra -D switches
MODES = {"off": (), "main": ("-DGF_STG=0", "-DGF_FEX=0", "-DGD_T1B16_SET=0"), "b16": ("-DGD_T1B16_SET=1",),
         "nob16": ("-DGD_T1B16_SET=0",), "sf": ("-DGF_STG=3", "-DGF_FEX=1"),
         "all": ("-DGD_T1B16_SET=1", "-DGF_STG=3", "-DGF_FEX=1")}
PLANS = {}  # a plan cache per mode
_LAUNCH, _MODS = cgd._launch, {}


def launch_with(extra):
    """``gated_delta._launch`` whose kernels come from modules compiled with the extra -D switches (once each)."""
    if not extra:
        return _LAUNCH

    def launch(op, dev, cfg, name):
        key = (op, dev, cfg, extra)
        if key not in _MODS:
            saved = cc.defines
            cc.defines = lambda o, c: saved(o, c) + (extra if o == "gated_delta" else ())
            try:
                _MODS[key] = cc._kernels.__wrapped__(op, dev, cfg)
            finally:
                cc.defines = saved
        real, threads = cfg.kernel(name)
        return _MODS[key][real], (threads,), cfg.smem(real)

    return launch


def mode(m):
    extra = MODES[m]
    cgd._TORCH_PLANS = PLANS.setdefault(m, {})
    cgd._launch = launch_with(extra)


def wall(fn):
    torch.cuda.synchronize()
    t = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t) * 1e3


def timeline(fn):
    """GPU kernels of one call: (name, start us, end us) from the first kernel's start, sorted by start."""
    from torch.profiler import ProfilerActivity, profile

    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    ev = [(e.name, e.time_range.start, e.time_range.end) for e in prof.events()
          if e.device_type == torch.autograd.DeviceType.CUDA and e.name.startswith("gd_")]
    t0 = min(s for _, s, _ in ev)
    return sorted((n, s - t0, e - t0) for n, s, e in ev), max(e for _, _, e in ev) - t0


def main():
    Ts = [int(t) for t in sys.argv[1].split(",")]
    REPS = int(sys.argv[2]) if len(sys.argv) > 2 else 9
    modes = sys.argv[3].split(",") if len(sys.argv) > 3 else ["off", "main", "nob16"]
    tl_T = int(sys.argv[4]) if len(sys.argv) > 4 else Ts[0]
    rows = []
    for T in Ts:
        x = [t.to(torch.bfloat16) for t in inputs(T, torch.float32)]
        fn = lambda: lsattn.loglinear_gated_delta(*x)  # noqa: E731
        outs = {}
        for m in modes:  # plans, compiles, the outputs
            mode(m)
            outs[m] = fn()
            fn()
            print(f"T={T} {m}: planned", flush=True)
        for m in modes:
            d = (outs[m].float() - outs["off"].float()).abs().max().item()
            print(f"T={T} {m} vs off: max |diff| {d:.3g} (max |off| {outs['off'].float().abs().max().item():.3g}), "
                  f"equal {torch.equal(outs[m], outs['off'])}", flush=True)
        if REPS == 0:  # (a warm-up: the modes' modules compiled into CuPy's cache)
            continue
        res = {m: {"lat": [], "pipe": [], "wall": []} for m in modes}
        for r in range(REPS):
            for m in (modes if r % 2 == 0 else modes[::-1]):
                mode(m)
                res[m]["lat"].append(events_ms(fn, 1))
                res[m]["pipe"].append(events_ms(fn, 10))
                res[m]["wall"].append(wall(fn))
        med = {m: {k: statistics.median(v) for k, v in res[m].items()} for m in modes}
        for m in modes:
            print(f"T={T} {m} lat samples " + " ".join(f"{v:.3f}" for v in res[m]["lat"]), flush=True)
        rows.append((T, med))
        if T == tl_T:
            for m in modes:
                mode(m)
                ev, span = timeline(fn)
                print(f"--- timeline T={T} {m}: GPU span {span:.1f} us")
                for n, s, e in ev:
                    print(f"  {n:12s} {s:8.1f} {e:8.1f} {e - s:7.1f}")
        del x, outs
        torch.cuda.empty_cache()
    mode("off")
    if not rows:
        return
    print("| T | mode | latency ms | pipelined ms | wall ms | latency vs off |")
    print("|---|---|---:|---:|---:|---:|")
    for T, med in rows:
        for m in modes:
            print(f"| {T} | {m} | {med[m]['lat']:.4f} | {med[m]['pipe']:.4f} | {med[m]['wall']:.4f} | "
                  f"{(med[m]['lat'] - med['off']['lat']) * 1e3:+.1f} us |")


if __name__ == "__main__":
    main()
