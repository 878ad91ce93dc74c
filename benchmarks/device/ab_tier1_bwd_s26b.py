"""K3 gd_tier1x_bwd_x1 and K4 gd_tier1_bwd_x1 (the two-tier scan backward's transfers and low walks, session 26 s26b)
against session 25's forms (build defines selecting them) on the real forward's buffers (gd_tier_bwd_kernels.forward:
bf16 inputs, GD_S16, d_k = d_v = C = 64), random adjoints; launches alternated within each repetition, CUDA events,
medians (ms).

    python benchmarks/device/ab_tier1_bwd_s26b.py compile               (the builds: NVRTC's disk cache for `times`)
    python benchmarks/device/ab_tier1_bwd_s26b.py times [T,..] [reps]   (default 8192,16384,32768 15; B H = 32)
    python benchmarks/device/ab_tier1_bwd_s26b.py one T                 (K3, K4's production launch once each: ncu)"""
import os
import sys

import cupy
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gd_tier_bwd_kernels import C, DK, DV, cfg, forward, ops, rng  # noqa: E402

from lsattn.backends.cupy import _compile as cc  # noqa: E402

#: session 25's forms: K4 scalar adds, runtime k loops; K3 (as main)
OLD = {"gd_tier1_bwd_x1": ("GT4_F2_SET=0", "GT4_KU_SET=0"), "gd_tier1x_bwd_x1": ()}
BH = 32
f32 = cupy.float32


class Build(cc.CupyOps):
    """CupyOps whose gd_tier1_bwd_x1 / gd_tier1x_bwd_x1 come from a build of the family with OLD's defines."""

    def __init__(self):
        super().__init__(cupy.cuda.Device().id)
        code = "\n".join(cc._source(f) for f in ("common.cu",) + cc._SOURCES["gated_delta_tier_bwd"])
        self.fns = {}
        for name, defs in OLD.items():
            opts = ("-std=c++17",) + tuple(cc.defines("gated_delta_tier_bwd", cfg)) + tuple(f"-D{d}" for d in defs)
            fn = cupy.RawModule(code=code, options=opts).get_function(name)
            fn.max_dynamic_shared_size_bytes = cfg.smem(name)
            self.fns[name] = fn

    def _tk(self, op, cfg_, name):
        return self.fns[name], (256,), cfg_.smem(name)


def launches(T):
    """{(kernel, form): launch}, the outputs zeroed before each."""
    tier, n, L, qe, ek, ph, H, g, lam, Z, Sb, Qp = forward(BH, T)
    del Z, Sb, Qp
    r = lambda *s: rng.standard_normal(s, dtype=np.float32)  # noqa: E731
    dQp, dZ, dTot, dout = r(BH, n, C, DK), r(BH, tier.nP, DK, DK), r(BH, tier.nP, DK, DV), r(BH, n, C, DV)
    z = cupy.zeros
    dqe, dek, dph, dH, dg, dlam = z((BH, n, C, DK), f32), z((BH, n, C, DK), f32), z((BH, n, DK, C), f32), \
        z((BH, n, DK, DV), f32), z((BH, n), f32), z((BH, T, L), f32)
    zs = (dqe, dek, dph, dg, dlam)
    a = (cfg, tier)
    out = {}
    for form, o in (("new", ops), ("old", OLD_OPS)):
        out["K3", form] = lambda o=o: o.gd_tier1x_bwd(*a, qe, ek, ph, g, dQp, dZ, dqe, dek, dph, dg, T, DK, n, BH, True)
        out["K4", form] = lambda o=o: o.gd_tier1_bwd(*a, qe, ek, ph, H, g, lam, dout, dTot, dqe, dek, dph, dH, dg, dlam,
                                                    T, DK, DV, L, n, BH, True)
    return out, zs


def main():
    global OLD_OPS
    mode = sys.argv[1]
    OLD_OPS = Build() if mode != "one" else ops
    if mode == "compile":
        launches(8192)  # (the forward's and the production family's builds too)
        print("compiled")
        return
    if mode == "one":
        fs, _ = launches(int(sys.argv[2]))
        fs["K3", "new"](), fs["K4", "new"]()
        cupy.cuda.runtime.deviceSynchronize()
        print("one ok")
        return
    Ts = [int(x) for x in sys.argv[2].split(",")] if len(sys.argv) > 2 else [8192, 16384, 32768]
    reps = int(sys.argv[3]) if len(sys.argv) > 3 else 15
    print(f"{cupy.cuda.runtime.getDeviceProperties(0)['name'].decode()}, B H = {BH}, d = C = 64, GD_S16 x1, "
          f"medians of {reps} (alternated), ms; old = {OLD}")
    print("| T | K3 new | K3 old | K3 new/old | K4 new | K4 old | K4 new/old | K3 + K4 new | K3 + K4 old |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for T in Ts:
        fs, zs = launches(T)
        ts = {k: [] for k in fs}
        for i in range(reps + 2):
            for k, f in fs.items():
                for x in zs:
                    x.fill(0)
                e0, e1 = cupy.cuda.Event(), cupy.cuda.Event()
                e0.record()
                f()
                e1.record()
                e1.synchronize()
                if i >= 2:
                    ts[k].append(cupy.cuda.get_elapsed_time(e0, e1))
        m = {k: float(np.median(v)) for k, v in ts.items()}
        k3n, k3o, k4n, k4o = m["K3", "new"], m["K3", "old"], m["K4", "new"], m["K4", "old"]
        print(f"| {T} | {k3n:.3f} | {k3o:.3f} | {k3n / k3o:.3f} | {k4n:.3f} | {k4o:.3f} | {k4n / k4o:.3f} | "
              f"{k3n + k4n:.3f} | {k3o + k4o:.3f} |", flush=True)
        del fs, zs
        cupy.get_default_memory_pool().free_all_blocks()


if __name__ == "__main__":
    main()
