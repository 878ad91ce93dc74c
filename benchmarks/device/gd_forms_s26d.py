"""gd_forms alone as the public bf16 forward runs it (s26d, issue 16): the GD_S16 + GD_O16 build of
``gated_delta.forward``'s bf16 plan (qeff, e^G K, phi, H and the intra output in bfloat16, lam's float32 copy, the
finiteness flag), B H = 32, d = C = 64, on bf16 inputs, in variants compiled from the production sources with text
substitutions or -D switches. Ablations (wrong outputs, timing only: what a phase costs): nosolve (X = (I + N)^-1 not
computed), nokq (K K^T and Q K^T's mma), nodec (the decay table's exponentials), noattn (attn = M X's k-loop), noqp
(qeff's and phi's k-loops), nohout (H's and the intra output's k-loops), noscan (the serial sums of the log decays),
nophst (phi's global stores), nolamw (lam's float32 copy), noqst (qeff's global stores). Switch builds: name=-DX=1.
Each line: ms per launch (20 launches between two events, the median of ROUNDS rounds, the variants interleaved) and
max |x - base| of each output (bit-equal builds: 0).
    python benchmarks/device/gd_forms_s26d.py compile VARIANTS      (CuPy's kernel cache warmed)
    python benchmarks/device/gd_forms_s26d.py T[,T] VARIANTS [ROUNDS]"""
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), os.path.dirname(os.path.dirname(HERE))]
import cupy  # noqa: E402
from bench_gpu import cupy_ms  # noqa: E402

from lsattn.backends.cupy import _compile as cc  # noqa: E402

BH, D, CH = 32, 64, 64
ABL = {
    "nosolve": [("for (int i = 1; i < 16; ++i)\n#pragma unroll\n                    for (int g", "for (int i = 1; i < 1; ++i)\n#pragma unroll\n                    for (int g"),
                ("if constexpr (GF_OD4) gf_offdiag16<GF_QS ? GF_LD : 20>(B0, S);", "if constexpr (false) {}"),
                ("if constexpr (GF_S64) gf_offdiag64<GF_QS ? GF_LD : 36>(R2, GF_QS ? R2 + 32 : R0, [] { __syncthreads(); });",
                 "if constexpr (true) {}")],
    "nokq": [("mma_bf16(cK[nt], aK, b0, b1);\n                        mma_bf16(cQ[nt], aQ, b0, b1);", "")],
    "nodec": [("const ta e = dec(i, jj);  // once", "const ta e = (ta)1;  // once")],
    "noattn": [("gf_tc<false, GF_H, false, (GF_B16M & 16) != 0>(m0, n0, n0, m0 + 16, la, lb, st);",
                "gf_tc<false, GF_H, false, (GF_B16M & 16) != 0>(m0, n0, n0, n0, la, lb, st);")],
    "noqp": [("if constexpr (GF_AL) gf_tc<GF_BX, false, GF_HL, true>(m0, n0, 0, m0 + 16, GfAH{AEh}, kel, st, Kh);",
              "if constexpr (GF_AL) gf_tc<GF_BX, false, GF_HL, true>(m0, n0, 0, 0, GfAH{AEh}, kel, st, Kh);"),
             ("gf_tc<GF_BX, GF_H, GF_HL, (GF_B16M & 2) != 0>(m0, n0, m0, CH, la, lb, st, Kh);",
              "gf_tc<GF_BX, GF_H, GF_HL, (GF_B16M & 2) != 0>(m0, n0, m0, m0, la, lb, st, Kh);")],
    "nohout": [("gf_tc<GF_BX, false, GF_HL, true>(m0, n0, 0, CH, GfAH{PTh}, vel, hst, Vh);",
                "gf_tc<GF_BX, false, GF_HL, true>(m0, n0, 0, 0, GfAH{PTh}, vel, hst, Vh);"),
               ("gf_tc<GF_BX, false, GF_HL, true>(m0, n0, 0, m0 + 16, GfAH{ALh}, vel, ost, Vh);",
                "gf_tc<GF_BX, false, GF_HL, true>(m0, n0, 0, 0, GfAH{ALh}, vel, ost, Vh);")],
    "noscan": [("for (int r = 0; r <= t; ++r) G += aa[r];", "G = aa[t];"),
               ("for (int r = CH - 1; r > t; --r) S += aa[r];", "S = aa[t];"),
               ("for (int r = (dc + 1) * GF_RC; r < dr * GF_RC; ++r) mid += aa[r];", "mid = aa[dr];")],
    "nophst": [("if (f < DK) gd_put(ph + (cj * DK + f) * CH + s, gd_tar(x0));\n                    if (f + 1 < DK) gd_put(ph + (cj * DK + f + 1) * CH + s, gd_tar(x1));", "")],
    "nolamw": [("if (bad || lamw) {\n            const i64 r0", "if (false) {\n            const i64 r0")],
    "noqst": [("gf_st2c(qej + t * DK, f, DK, gd_tar(eG[t] * y0 - x0), gd_tar(eG[t] * y1 - x1));", "")],
}


def cfg():
    c = cc.make_config("float", D, D, CH, "bf16")
    import dataclasses

    return dataclasses.replace(c, s16=True, o16=True)


def build(name):
    subs, extra = [], []
    for part in name.split("+"):
        if part in ABL:
            subs += ABL[part]
        elif part.startswith("-D"):
            extra.append(part)
        else:
            assert part == "base", part
    code = "\n".join(cc._source(f) for f in ("common.cu", "gated_delta.cu", "gated_delta_forms_tc.cu", "gated_delta_forms.cu"))
    for pat, rep in subs:
        assert pat in code, (name, pat[:60])
        code = code.replace(pat, rep)
    c = cfg()
    fn = cupy.RawModule(code=code, options=("-std=c++17",) + cc.defines("gated_delta", c) + tuple(extra)).get_function("gd_forms")
    smem = c.smem("gd_forms")
    fn.max_dynamic_shared_size_bytes = smem
    at = fn.attributes
    return fn, smem, f"regs {at['num_regs']} local {at['local_size_bytes']}"


def main():
    names = sys.argv[2].split(",")
    if sys.argv[1] == "compile":
        for nm in names:
            try:
                print("built", nm, build(nm)[2], flush=True)
            except Exception as exc:  # noqa: BLE001
                print(f"{nm} fails: {type(exc).__name__}: {str(exc)[:200]}", flush=True)
        return
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    for T in [int(t) for t in sys.argv[1].split(",")]:
        rng = cupy.random.default_rng(0)  # (on the device: the 32K inputs are 0.8 GB of float32)
        L = 1 + (T - 1).bit_length()
        n = T // CH
        f32 = cupy.float32
        k = rng.standard_normal((BH, T, D), dtype=f32)
        dev = [rng.standard_normal((BH, T, D), dtype=f32) * D**-0.5, k / cupy.linalg.norm(k, axis=-1, keepdims=True),
               rng.standard_normal((BH, T, D), dtype=f32), -rng.random((BH, T), dtype=f32) * 0.1,
               rng.random((BH, T), dtype=f32), 0.5 + rng.random((BH, T, L), dtype=f32)]
        u = [cupy.ascontiguousarray(x, dtype=f32).view(cupy.uint32) for x in dev]
        ins = [((x + 0x7FFF + ((x >> 16) & 1)) >> 16).astype(cupy.uint16) for x in u]  # bf16 bits (nearest even)
        del dev, u, k
        launches, times, outs0, lines = {}, {}, None, {}
        for nm in names:
            try:
                fn, smem, info = build(nm)
            except Exception as exc:  # noqa: BLE001  (one build's failure leaves the others timed)
                print(f"T={T} {nm} fails: {type(exc).__name__}: {str(exc)[:200]}", flush=True)
                continue
            outs = [cupy.zeros(s, dtype=cupy.uint16) for s in [(BH, n, CH, D), (BH, n, CH, D), (BH, n, D, CH), (BH, n, D, D)]]
            outs += [cupy.zeros((BH, n), cupy.float32), cupy.zeros((BH, n, CH, D), cupy.uint16), cupy.zeros((BH, T, L), cupy.float32),
                     cupy.zeros((1,), cupy.int32)]
            args = (*ins, *outs, np.int32(T), np.int32(D), np.int32(D), np.int32(L), np.int64(0), np.int64(0), np.int32(n))
            launch = lambda fn=fn, args=args, smem=smem: fn((n, BH), (256,), args, shared_mem=smem)  # noqa: E731
            launch()
            cupy.cuda.runtime.deviceSynchronize()
            if outs0 is None:
                outs0 = outs
                diff = ""
            else:
                def f32(x):  # (bf16 bits -> float32)
                    return (x.astype(cupy.uint32) << 16).view(cupy.float32) if x.dtype == cupy.uint16 else x

                d = [f"{float(cupy.abs(f32(x) - f32(w)).max()):.1e}" for x, w in zip(outs[:7], outs0[:7])]
                diff = " diff (qe ek ph H g out lamw) " + " ".join(d)
            lines[nm] = f"{info} flag {int(outs[7][0])}{diff}"
            launches[nm], times[nm] = launch, []
        for _ in range(rounds):  # (the variants interleaved)
            for nm, launch in launches.items():
                times[nm].append(cupy_ms(launch, 20, warmup=0))
        for nm in launches:
            ts = sorted(times[nm])
            print(f"T={T} {nm:24s} {ts[len(ts) // 2]:.4f} ms (min {ts[0]:.4f}) {lines[nm]}", flush=True)


if __name__ == "__main__":
    main()
