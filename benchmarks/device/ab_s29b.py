"""s29b (issue 16): ``gated_delta_bwd.TRAIN_OUT16`` A/B in one process: the public bf16 fwd+bwd step (ab_s24a.one: B=2,
H=16, d=64, bench_gpu_gated_delta's inputs; CUDA-event medians of REPS rounds of 5 steps, every sample printed, one
step's latency, peak memory, the gd_ kernels per step, the gradients on / off) with the switch off (the float32 scan
output, cast to bfloat16 by the registry: a torch copy in the forward, ToCopyBackward's widening of the output gradient
in the backward, K1 / K4 / gd_forms_bwd_x1 reading float32 dout) and on (gd_tier3 writes the bfloat16 output, K1 / K4 /
gd_forms_bwd_x1's GD_DO16 builds read the bfloat16 gradient) rotated; then the aten::copy_ calls and copy kernels per
step of each (torch profiler). Predicted (benchmarks/NOTES.md "Session 29 — s29b"): 20 E bytes less a step (E = B H T
d_v): 8K -0.05..-0.07 ms, 16K -0.10..-0.15, 32K -0.2..-0.3 (14.66 -> ~14.35-14.45 ms), the library's aten copies per
step 2 -> 0, peak memory ~-268 MB at 32K.

    python ab_s29b.py public T,T [REPS] [LOSS]   LOSS 'bf16' (default): (out * dO).sum() in bfloat16 (no cast of the
                                                  loss's own); 'f32': ab_s24a's (out.float() * dO.float()).sum()
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE), os.path.dirname(os.path.dirname(HERE))]
import torch  # noqa: E402

import ab_s24a  # noqa: E402
from lsattn.backends.cupy import gated_delta_bwd as gdb  # noqa: E402


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
        elif "copy" in e.key.lower() and "CUDA" in str(getattr(e, "device_type", "")):
            kern += e.count
            us += getattr(e, "device_time_total", 0) or getattr(e, "cuda_time_total", 0)
    return ops / calls, kern / calls, us / 1e3 / calls


def public(Ts, reps, loss):
    ab_s24a.mode = mode  # (ab_s24a.one reads its module's ``mode`` and ``loss``; MODES ("on", "off"))
    if loss == "bf16":
        ab_s24a.loss = lambda out, do: (out * do).sum()
    rows = []
    for T in Ts:
        rows.append(ab_s24a.one(T, reps))
        _, _, step = ab_s24a.case(T)
        cp = {}
        for m in ab_s24a.MODES:
            mode(m)
            cp[m] = copies(step)
            print(f"T={T} {m}: aten::copy_ {cp[m][0]:.1f} a step, copy kernels {cp[m][1]:.1f} ({cp[m][2]:.3f} ms)",
                  flush=True)
        rows[-1] += (cp,)
        del step
        torch.cuda.empty_cache()
    mode("on")
    print(f"| T | off ms | on (TRAIN_OUT16) ms | on/off | latency off / on | peak GB off / on | aten::copy_ off / on "
          f"(loss {loss}) |")
    print("|---|---:|---:|---:|---|---|---|")
    for T, med, ml, mem, cp in rows:
        print(f"| {T} | {med['off']:.3f} | {med['on']:.3f} | {med['on'] / med['off']:.3f} | {ml['off']:.3f} / "
              f"{ml['on']:.3f} | {mem['off']:.2f} / {mem['on']:.2f} | {cp['off'][0]:.0f} / {cp['on'][0]:.0f} |",
              flush=True)


if __name__ == "__main__":
    assert sys.argv[1] == "public", sys.argv
    public([int(t) for t in sys.argv[2].split(",")], int(sys.argv[3]) if len(sys.argv) > 3 else 9,
           sys.argv[4] if len(sys.argv) > 4 else "bf16")
