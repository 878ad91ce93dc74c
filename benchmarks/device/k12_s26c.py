"""s26c (issue 16): K1 gd_tier3_bwd_x1 (this branch's, and session 25's form: a build with -DGT3B_V2_SET=0) and K2 alone, K2's per-level chains (gd_coarse_bwd_x1, session 25's) against its
walk form (gd_coarse_walk_bwd_x1), and tier_backward's zeroing of its buffers (session 25's nine fills against those
left with TIER_BWD_STORES), on gd_tier_bwd_kernels.py's real forward buffers (bf16 inputs, GD_S16, d = C = 64, x1).
CUDA events around each launch, medians.
    python benchmarks/device/k12_s26c.py [T,..] [reps] [BH]        (default 8192,16384,32768 15 32)
    python benchmarks/device/k12_s26c.py 32768 0 32 walk            (one K2 walk launch alone: for ncu)"""
import os
import sys

import cupy

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gd_tier_bwd_kernels import C, DK, DV, cfg, f32, forward, median_ms, ops, rng  # noqa: E402
from lsattn.backends.cupy import _compile as cc  # noqa: E402


class OldK1(cc.CupyOps):
    """CupyOps whose gd_tier3_bwd_x1 is session 25's form (GT3B_V2_SET=0)."""

    def _tk(self, op, cfg, name):
        if name != "gd_tier3_bwd_x1":
            return super()._tk(op, cfg, name)
        if not hasattr(self, "_k1"):
            code = "\n".join(cc._source(f) for f in ("common.cu",) + cc._SOURCES[op])
            self._k1 = cupy.RawModule(code=code, options=("-std=c++17",) + cc.defines(op, cfg) + ("-DGT3B_V2_SET=0",)
                                      ).get_function(name)
            self._k1.max_dynamic_shared_size_bytes = cfg.smem(name)
            print(f"K1 (GT3B_V2_SET=0): {self._k1.num_regs} registers, {self._k1.local_size_bytes} B local", flush=True)
        return self._k1, (256,), cfg.smem(name)


old_ops = OldK1(cupy.cuda.Device().id)


def main():
    Ts = [int(x) for x in sys.argv[1].split(",")] if len(sys.argv) > 1 else [8192, 16384, 32768]
    reps = int(sys.argv[2]) if len(sys.argv) > 2 else 15
    BH = int(sys.argv[3]) if len(sys.argv) > 3 else 32
    only = sys.argv[4] if len(sys.argv) > 4 else ""
    if not only:
        print(f"{cupy.cuda.runtime.getDeviceProperties(0)['name'].decode()}, B H = {BH}, d = C = 64, bf16 inputs, "
              f"GD_S16, x1, medians of {reps}")
        print("| T | K1 s25 (V2=0) | K1 | K1 / s25 | K2 chains (s25) | K2 walk | walk / chains | zeroing s25 (8 fills) | "
              "zeroing now | K1 + K2 + zeroing s25 | now | now / s25 |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for T in Ts:
        tier, n, L, qe, ek, ph, H, g, lam, Z, Sb, Qp = forward(BH, T)
        dout = rng.standard_normal((BH, n, C, DV), dtype=f32)
        z = cupy.zeros
        dQp, dSb, dlam = z((BH, n, C, DK), f32), cupy.empty(Sb.shape, f32), z((BH, T, L), f32)
        dZ, dTot = z((BH, tier.nP, DK, DK), f32), z((BH, tier.nP, DK, DV), f32)
        a = (cfg, tier)
        k1 = median_ms(lambda: ops.gd_tier3_bwd(*a, qe, Qp, Sb, lam, dout, dQp, dSb, dlam, T, DK, DV, L, n, BH, True),
                       (dQp, dlam), reps) if not only else 0
        k1o, q1, s1, l1 = 0, None, None, None
        if not only:
            q1, s1, l1 = dQp.copy(), dSb.copy(), dlam.copy()
            k1o = median_ms(lambda: old_ops.gd_tier3_bwd(*a, qe, Qp, Sb, lam, dout, dQp, dSb, dlam, T, DK, DV, L, n, BH,
                                                         True), (dQp, dlam), reps)
            e1 = [float(cupy.abs(x - y).max() / cupy.abs(y).max()) for x, y in ((q1, dQp), (s1, dSb), (l1, dlam))]
            del q1, s1, l1
        if only == "walk":
            ops.gd_coarse_bwd(*a, Z, Sb, dSb, dZ, dTot, DK, DV, BH, True, walk=True)
            cupy.cuda.Device().synchronize()
            print("walk launched once")
            return
        k2c = median_ms(lambda: ops.gd_coarse_bwd(*a, Z, Sb, dSb, dZ, dTot, DK, DV, BH, True, walk=False), (dZ, dTot),
                        reps)
        dZc, dTc = dZ.copy(), dTot.copy()
        k2w = median_ms(lambda: ops.gd_coarse_bwd(*a, Z, Sb, dSb, dZ, dTot, DK, DV, BH, True, walk=True), (dZ,), reps)
        err = [float(cupy.abs(x - y).max() / cupy.abs(y).max()) for x, y in ((dZ, dZc), (dTot, dTc))]
        del dQp, dSb, dZ, dTot, Z, Sb, Qp, dZc, dTc
        # tier_backward's zeroed buffers: session 25 (dqe, dek, dph, dg, dlam, dTot, dQp, dZ; and dQp's, dTot's
        # allocations) against now (dQp's period 0 only, dTot none)
        bufs = [z(s, f32) for s in ((BH, n, C, DK), (BH, n, C, DK), (BH, n, DK, C), (BH, n), (BH, T, L),
                                    (BH, tier.nP, DK, DV), (BH, n, C, DK), (BH, tier.nP, DK, DK))]
        zs = median_ms(lambda: [b.fill(0) for b in bufs], (), reps)

        def now():
            for b in bufs[:5] + bufs[7:]:
                b.fill(0)
            bufs[6][:, :4] = 0

        zn = median_ms(now, (), reps)
        del bufs
        old, new = k1o + k2c + zs, k1 + k2w + zn
        print(f"| {T} | {k1o:.3f} | {k1:.3f} | {k1 / k1o:.2f} | {k2c:.3f} | {k2w:.3f} | {k2w / k2c:.2f} | {zs:.3f} | {zn:.3f} | {old:.3f} | "
              f"{new:.3f} | {new / old:.2f} |", flush=True)
        print(f"T={T}: walk against chains: max |d| / max (dZ, dTot) {err[0]:.1e} {err[1]:.1e}; K1 against V2=0 "
              f"(dQp, dSb, dlam) {e1[0]:.1e} {e1[1]:.1e} {e1[2]:.1e}", flush=True)


if __name__ == "__main__":
    main()
