"""s29a (issue 16): ``gated_delta_bwd.TIER_BWD_STORES`` (tier_backward's dQp and dqe / dek / dph allocated empty, K1 and
K3 gd_tier1x_bwd storing them, where session 28 zeroed them), A/B in one process. Predicted (benchmarks/NOTES.md "Session
29 — s29a"): the memsets 8K ~0.075 -> ~0.015 ms, 16K 0.15 -> ~0.03, 32K 0.29 -> ~0.055; K3 0.93-1.0x; the bf16 step 8K
-0.05 to -0.08 ms, 16K -0.11 to -0.17, 32K -0.22 to -0.33; peak memory unchanged.

    python ab_s29a.py public T,T [REPS]   the public bf16 fwd+bwd step (ab_s24a.one: B=2, H=16, d=64, CUDA-event
                                          medians of REPS rounds of 5 steps, latency, peak memory, the gd_ kernels per
                                          step, the gradients on / off) with TIER_BWD_STORES off / on rotated; then per
                                          mode the step's other kernels (memsets, fills) by torch.profiler
    python ab_s29a.py public32 T,T [REPS] the same with float32 inputs
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE), os.path.dirname(os.path.dirname(HERE))]
import torch  # noqa: E402

import lsattn  # noqa: E402
from lsattn.backends.cupy import gated_delta_bwd as gdb  # noqa: E402


def mode(m):
    """'off': every buffer the two-tier backward's kernels add into zeroed (session 28's); 'on': TIER_BWD_STORES."""
    gdb.TIER_BWD_STORES = m == "on"


def others(T):
    """Per mode, the step's kernels that are not gd_ kernels (the memsets first), ms per step (torch.profiler)."""
    import ab_s24a
    from bench_gpu import kernel_ms
    from bench_gpu_gated_delta import inputs

    x = [t.requires_grad_(True) for t in inputs(T, ab_s24a.DTYPE)]
    do = torch.randn(x[2].shape, device="cuda", dtype=ab_s24a.DTYPE, generator=torch.Generator("cuda").manual_seed(1))

    def step():
        out = lsattn.loglinear_gated_delta(*x)
        (out.float() * do.float()).sum().backward()
        for t in x:
            t.grad = None

    for m in ("off", "on"):
        mode(m)
        ks = kernel_ms(step, 3)
        rest = sorted(((k, v) for k, v in ks.items() if not k.startswith("gd_")), key=lambda kv: -kv[1])
        mem = sum(v for k, v in rest if "emset" in k)
        print(f"T={T} {m} other kernels (ms per step): memsets {mem:.4f}; " + "; ".join(
            f"{k[:60]} {v:.4f}" for k, v in rest[:10]), flush=True)
    del x
    torch.cuda.empty_cache()


def public(Ts, reps):
    import ab_s24a

    ab_s24a.mode = mode  # (ab_s24a.one reads its module's ``mode``; MODES ("on", "off"))
    rows = [ab_s24a.one(T, reps) for T in Ts]
    for T in Ts:
        others(T)
    mode("on")
    print("| T | off ms | on (TIER_BWD_STORES) ms | on - off ms | on/off | latency off / on | peak GB off / on |")
    print("|---|---:|---:|---:|---:|---|---|")
    for T, med, ml, mem in rows:
        print(f"| {T} | {med['off']:.3f} | {med['on']:.3f} | {med['on'] - med['off']:+.3f} | "
              f"{med['on'] / med['off']:.3f} | {ml['off']:.3f} / {ml['on']:.3f} | {mem['off']:.2f} / {mem['on']:.2f} |",
              flush=True)


if __name__ == "__main__":
    Ts = [int(t) for t in sys.argv[2].split(",")]
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 7
    if sys.argv[1] == "public32":  # the float32 callers' step (3xTF32)
        import ab_s24a

        ab_s24a.DTYPE = torch.float32
    public(Ts, n)
