"""Where gd_forms (gated_delta_forms.cu) spends its time: the kernel alone at B H = 32, T = 8192,
d = 64, CH = 64, in variants compiled from the production source by text substitution:

- fp32:      the production kernel (float32; 3 blocks per SM by its launch bounds and shared memory; every
             product on tensor cores in 3xTF32 since s11b16, GF_TF32)
- fp32_lb2:  the same with __launch_bounds__(256, 2) (registers for 2 blocks per SM: no spills)
- fp32_narrow, bf16in_narrow: the tensor-core kernels with session 10's tile layout (rows padded by 4, Q / K
             swizzled by groups of 4 rows: 2- and 4-way bank conflicts on the fragments; GF_WIDE 0)
- fp32_ffma: every product in FFMA (GF_TF32 0: session 10's kernel)
- bf16in:    float32 compute reading bfloat16 q, k, v, a, beta, lam (TI_BF16, the dispatched bf16 path:
             K K^T and Q K^T on bf16 tensor cores, GF_TC; the other products 3xTF32)
- bf16in_ffma: the same with the products after the solve in FFMA (GF_TF32 0: session 10's kernel)
- fp64:      the float64 build (the error reference)
- fp32_chk:  fp32 with the finiteness flag (``bad``: the prologue's check done by the kernel)
- bf16in_chk_lamw: bf16in with the flag and the float32 copy of the level weights for gd_scan (the
             dispatched bf16 path since s11b16)
- bf16in_split, bf16in_chk_lamw_split: the same with every B operand of the 3xTF32 products split (GF_BEXACT 0:
             the kernel before s12b16, which skips the split of K and V, exact tf32 values for 16-bit inputs)
- *_noprev:  GF_PREV 0: without the prefetch of the chunk's V and level-weight rows towards L2 at the block's
             start (the production kernel's since s13h16: bf16 0.472 -> 0.462 ms at 8K, float32 unchanged)
- *_u2:      the tensor-core products' k-step loop (gf_tc) unrolled by 2 instead of 1 (s13h16: no gain)
- *_su:      the solve's off-diagonal block products (gf_offdiag) fully unrolled instead of by 4 (s13h16)
- bf16in*: since s14d16 Q, K and V as 16-bit tiles (GF_H16: 55 KB, 4 blocks per SM); *_f32t: GF_H16 0, the float32
             tiles of session 13 (75 KB, 3 blocks per SM; main's kernel before s14d16); *_lb3: the 16-bit tiles with
             __launch_bounds__(256, 3) (80 registers: 3 blocks per SM by registers, the spills of 64 gone); *_noldm:
             the 16-bit tiles' B operands by single 16-bit loads (GF_LDM 0) instead of ldmatrix (the balanced triangular
             products of s14d16, GF_BAL, +7%, removed in session 15); bf16in_chk_lamw_main: main's kernel before s14d16
             (= _f32t). Session 15's timing builds, measured and removed (benchmarks/NOTES.md "Session 15 — s15c16"):
             GF_PAIR (_pair), GF_ISPLIT 0 (_cvt), GF_ST2 0 (_st1), GF_TRID (_trid, now the default), GF_LDA (_lda)
- Session 16's GF_ASPLIT / GF_OSPLIT (attn's / the output's longest tile reductions split with other warps): timed in
             s17d16 (bf16 +1.1 / +2.2 / +2.8% both, on 1xTF32 +3.8%; float32 -0.2%) and removed with their variants.
             Session 16's 16 x 64 warp tiles (GF_W64) and float32 K K^T, Q K^T by one split (GF_KQ) likewise
             (benchmarks/NOTES.md, s16a16). (Session 14's kernel, gd_forms_s14.cu, and its s14_* variants: removed in
             session 16.)
- *_lam0:    GF_LAM1 0 (s17d16): the level weights' staging and lam's checked copy beside the solve's warp stage on 6
             warps (the kernel before s17d16) instead of in the load phase by every thread (the same outputs; H200, 8K:
             bf16 0.343 against 0.340 ms; float32 0.472 against 0.479: its build keeps them beside the warp stage)
- *_nodiag, *_no32, *_no64: H200, 8K, on 1xTF32 (0.340 ms): 0.333 / 0.333 / 0.306 (_nosolve 0.293)
- *_nokq, *_nodec, *_noattn, *_noqp, *_nolam, *_nohout (ablations, s19b16): K K^T and Q K^T's mma, the decay table's
             exponentials, attn = M X's k-loop, qeff's and phi's k-loops, Lambda's level lookups, H's and the intra
             output's k-loops (the stores of each stay)
- *_nodiag, *_no32, *_no64 (ablations, s17d16): the solve's parts alone: the 16 x 16 diagonal blocks' substitution, the
             warps' 32 x 32 off-diagonal blocks, the 64 x 64 stage
- s19b16's switches, each off alone (the same outputs bit for bit): GF_S64 (s0: the solve's 64 x 64 stage over every
             term, zeros included), GF_OD4 (od0: the warp stage's 32 x 32 blocks alike), GF_QSH (qs0: Q read again for
             qeff, the solve's scratch over Q's tile; off with either of the two before), GF_VEA (ve0: the first value
             block loaded after Lambda's pass), GF_LAM4 (l40: a level per element), GF_GZB (gz0: G and the suffixes on
             warps 0-3), GF_DROW (dr0: the 16 x 16 substitutions by columns); *_off: all seven off (the kernel before
             s19b16; fp32_chk_off: S64, OD4, LAM4, DROW, the others are the 16-bit tiles' / the bf16 tensor cores')
- *_x3:      GF_X1 0 (s17d16): bf16 inputs' products after the solve in 3xTF32 (main's kernel before s17d16; the
             default since is 1xTF32, GF_X1 1: one mma per tile and k-step, no low halves; H200, 8K: 0.360 -> 0.339 ms)
Each line also gives the build's registers, local (spill) bytes and resident blocks per SM (the occupancy API).
- ablations (wrong outputs, timing only: what a phase costs): *_nosolve (X = (I + N)^-1 not computed: no
             substitution steps, no off-diagonal block products), *_noscan (the serial per-thread sums of the log
             decays, G, the suffixes and the decay table's middle stretch, replaced by one term each)

The inputs are bf16-representable values (so every variant reads the same numbers). Each line: ms per
launch (20 launches between two events; the median of ROUNDS rounds, the variants interleaved; env ROUNDS, 5) and max |x - fp64| / max |fp64| of qeff, eGK, phi, H, g, intra.

    python benchmarks/device/gd_forms_variants.py [T[,T...]] [variant,variant...]   (default: all; fp64 first for the errors)
    python benchmarks/device/gd_forms_variants.py compile variant,variant...         (build them only, into CuPy's
                                                                                     kernel cache: registers, spills,
                                                                                     blocks per SM)
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
import cupy  # noqa: E402

from lsattn.backends.cupy import _compile as cc  # noqa: E402

BH, D, CH = 32, 64, 64
COMPILE = sys.argv[1:2] == ["compile"]
TS = [] if COMPILE else [int(t) for t in (sys.argv[1] if len(sys.argv) > 1 else "8192").split(",")]
NOPREV = ("#define GF_PREV 1", "#define GF_PREV 0")
SU = [("#pragma unroll 4\n    for (int m = 0; m < HB; ++m) {  // N_10 X_00", "#pragma unroll\n    for (int m = 0; m < HB; ++m) {  // N_10 X_00"),
      ("#pragma unroll 4\n    for (int m = 0; m < HB; ++m) {  // X_11 S", "#pragma unroll\n    for (int m = 0; m < HB; ++m) {  // X_11 S")]
U2 = ("#pragma unroll 1\n    for (int k0 = lo; k0 < hi; k0 += 8)", "#pragma unroll 2\n    for (int k0 = lo; k0 < hi; k0 += 8)")
OD_CALL = ("if constexpr (GF_OD4) gf_offdiag16<GF_QS ? GF_LD : 20>(B0, S);\n            "
           "else gf_offdiag<16, 8>(B0, S, i, j0, [] { __syncwarp(); });", "")
S64_CALL = ("if constexpr (GF_S64) gf_offdiag64<GF_QS ? GF_LD : 36>(R2, GF_QS ? R2 + 32 : R0, [] { __syncthreads(); });\n        "
            "else gf_offdiag<32, 4>(R2, R0, i, j0, [] { __syncthreads(); });", "")
DROW = ("for (int i = 1; i < 16; ++i)\n#pragma unroll\n                    for (int g", "for (int i = 1; i < 1; ++i)\n#pragma unroll\n                    for (int g")
NOSOLVE = [("for (int r = 0; r < 15; ++r) {", "for (int r = 0; r < 0; ++r) {"), DROW, OD_CALL, S64_CALL]
NOSCAN = [("for (int r = 0; r <= tid; ++r) G += aa[r];", "G = aa[tid];"),
          ("for (int r = CH - 1; r > t; --r) S += aa[r];", "S = aa[t];"),
          ("for (int r = (dc + 1) * GF_RC; r < dr * GF_RC; ++r) mid += aa[r];", "mid = aa[dr];")]
F32T = ("#define GF_H16 1", "#define GF_H16 0")
FFMA = ("#define GF_TF32 1", "#define GF_TF32 0")
NOLDM = ("#define GF_LDM 1", "#define GF_LDM 0")
LB3 = ("__launch_bounds__(NT, GF_H ? 4 :", "__launch_bounds__(NT, GF_H ? 3 :")
X3 = ("#define GF_X1 1", "#define GF_X1 0")
LAM0 = ("#define GF_LAM1 1", "#define GF_LAM1 0")
NODIAG = [("for (int r = 0; r < 15; ++r) {", "for (int r = 0; r < 0; ++r) {"), DROW]
NO32 = [OD_CALL]
NO64 = [S64_CALL]
# s19b16's per-phase ablations (bf16 inputs; wrong outputs, timing only): each removes one phase's work and keeps the rest
NOKQ = [("mma_bf16(cK[nt], aK, b0, b1);\n                        mma_bf16(cQ[nt], aQ, b0, b1);", "")]
NODEC = [("const ta e = dec(i, jj);  // once", "const ta e = (ta)1;  // once")]
NOATTN = [("gf_tc<false, GF_H>(m0, n0, n0, m0 + 16, la, lb, st);", "gf_tc<false, GF_H>(m0, n0, n0, n0, la, lb, st);")]
NOQP = [("gf_tc<GF_BX, false, GF_HL>(m0, n0, 0, m0 + 16, la, kel, st, Kh);", "gf_tc<GF_BX, false, GF_HL>(m0, n0, 0, 0, la, kel, st, Kh);"),
        ("gf_tc<GF_BX, GF_H, GF_HL>(m0, n0, m0, CH, la, lb, st, Kh);", "gf_tc<GF_BX, GF_H, GF_HL>(m0, n0, m0, m0, la, lb, st, Kh);")]
NOLAM = [("x[e] *= lamS[(t0 + e) * 8 + l];", "x[e] *= (ta)2;"),
         ("lamS[(t0 + e) * 8 + (GF_LAM4 ? gf_bitlen32((t0 + e) ^ s) : fen_level(t0 + e, s))]", "(ta)2")]
NOHOUT = [("gf_tc<GF_BX, false, GF_HL>(m0, n0, 0, CH, GfAT<false>{PT, GF_LK, nullptr}, vel, hst, Kh);",
           "gf_tc<GF_BX, false, GF_HL>(m0, n0, 0, 0, GfAT<false>{PT, GF_LK, nullptr}, vel, hst, Kh);"),
          ("gf_tc<GF_BX, false, GF_HL>(m0, n0, 0, m0 + 16, la, vel, ost, Kh);", "gf_tc<GF_BX, false, GF_HL>(m0, n0, 0, 0, la, vel, ost, Kh);")]
S0 = ("#define GF_S64 1", "#define GF_S64 0")
OD0 = ("#define GF_OD4 1", "#define GF_OD4 0")
QS0 = ("#define GF_QSH 1", "#define GF_QSH 0")
VE0 = ("#define GF_VEA 1", "#define GF_VEA 0")
L40 = ("#define GF_LAM4 1", "#define GF_LAM4 0")
GZ0 = ("#define GF_GZB 1", "#define GF_GZB 0")
DR0 = ("#define GF_DROW 1", "#define GF_DROW 0")
#: each variant's outputs are compared with these (the production kernel of the inputs' kind)
BASE_BF16, BASE_FP32 = "bf16in_chk_lamw", "fp32_chk"
ROUNDS = int(os.environ.get("ROUNDS", "5"))
VARIANTS = {  # name: (compute type, bf16 inputs, substitutions); "_chk": with the flag, "_lamw": with lam's copy
    "fp64": ("double", False, []),
    "fp32_chk": ("float", False, []),
    "bf16in_chk_lamw": ("float", True, []),
    "bf16in_chk_lamw_split": ("float", True, [("#define GF_BEXACT 1", "#define GF_BEXACT 0")]),
    "bf16in_chk_lamw_x3": ("float", True, [X3]),
    "bf16in_chk_lamw_lam0": ("float", True, [LAM0]),
    "bf16in_chk_lamw_nodiag": ("float", True, NODIAG),
    "bf16in_chk_lamw_no32": ("float", True, NO32),
    "bf16in_chk_lamw_no64": ("float", True, NO64),
    "bf16in_chk_lamw_off": ("float", True, [S0, OD0, QS0, VE0, L40, GZ0, DR0]),
    "bf16in_chk_lamw_dr0": ("float", True, [DR0]),
    "bf16in_chk_lamw_s0": ("float", True, [S0]),
    "bf16in_chk_lamw_od0": ("float", True, [OD0]),
    "bf16in_chk_lamw_qs0": ("float", True, [QS0]),
    "bf16in_chk_lamw_ve0": ("float", True, [VE0]),
    "bf16in_chk_lamw_l40": ("float", True, [L40]),
    "bf16in_chk_lamw_gz0": ("float", True, [GZ0]),
    "fp32_chk_off": ("float", False, [S0, OD0, L40, DR0]),
    "bf16in_chk_lamw_nokq": ("float", True, NOKQ),
    "bf16in_chk_lamw_nodec": ("float", True, NODEC),
    "bf16in_chk_lamw_noattn": ("float", True, NOATTN),
    "bf16in_chk_lamw_noqp": ("float", True, NOQP),
    "bf16in_chk_lamw_nolam": ("float", True, NOLAM),
    "bf16in_chk_lamw_nohout": ("float", True, NOHOUT),

    "fp32_chk_noprev": ("float", False, [NOPREV]),
    "bf16in_chk_lamw_noprev": ("float", True, [NOPREV]),
    "fp32_chk_u2": ("float", False, [U2]),
    "bf16in_chk_lamw_u2": ("float", True, [U2]),
    "fp32_chk_su": ("float", False, SU),
    "bf16in_chk_lamw_su": ("float", True, SU),
    "bf16in_chk_lamw_nosolve": ("float", True, NOSOLVE),
    "bf16in_chk_lamw_f32t": ("float", True, [F32T]),
    "bf16in_chk_lamw_lb3": ("float", True, [LB3]),
    "bf16in_chk_lamw_noldm": ("float", True, [NOLDM]),
    "bf16in_chk_lamw_main": ("float", True, [F32T]),
    "bf16in_chk_lamw_noscan": ("float", True, NOSCAN),

    "fp32": ("float", False, []),
    "fp32_lb2": ("float", False, [("sizeof(ta) == 4) ? 3 : 1)", "sizeof(ta) == 4) ? 2 : 1)")]),
    "fp32_ffma": ("float", False, [FFMA]),
    "fp32_narrow": ("float", False, [("#define GF_WIDE 1", "#define GF_WIDE 0")]),
    "bf16in_narrow": ("float", True, [("#define GF_WIDE 1", "#define GF_WIDE 0")]),
    "bf16in": ("float", True, []),
    "bf16in_ffma": ("float", True, [FFMA]),
    "bf16in_split": ("float", True, [("#define GF_BEXACT 1", "#define GF_BEXACT 0")]),
}
if len(sys.argv) > 2:
    VARIANTS = {k: VARIANTS[k] for k in ([] if COMPILE else ["fp64"]) + [x for x in sys.argv[2].split(",") if COMPILE or x != "fp64"]}


def build(ta, bf16, subs, smem, src=None):
    forms = open(src).read() if src else cc._source("gated_delta_forms_tc.cu") + "\n" + cc._source("gated_delta_forms.cu")
    for pat, rep in subs:
        assert pat in forms, pat
        forms = forms.replace(pat, rep)
    code = "\n".join([cc._source("common.cu"), cc._source("gated_delta.cu"), forms])
    opts = ("-std=c++17", f"-DTA={ta}", f"-DTI_BF16={int(bf16)}", "-DTI_F16=0", f"-DCH={CH}",
            f"-DDKP={D}", f"-DDVP={D}", "-DLOGV=0")
    fn = cupy.RawModule(code=code, options=opts).get_function("gd_forms")
    fn.max_dynamic_shared_size_bytes = smem
    return fn


def occupancy(fn, smem):
    """`` regs R local L blocks/SM B`` of a built variant (what the driver reports; empty where it cannot)."""
    try:
        at = fn.attributes
        out = f"   regs {at['num_regs']} local {at['local_size_bytes']}"
    except Exception:  # noqa: BLE001
        return ""
    try:
        from cupy.cuda import driver

        out += f" blocks/SM {driver.occupancyMaxActiveBlocksPerMultiprocessor(fn.kernel.ptr, 256, smem)}"
    except Exception as exc:  # noqa: BLE001
        out += f" (occupancy: {type(exc).__name__})"
    return out


def bf16_bits(x):
    """float32 -> (bf16-rounded float32, its bf16 bits as uint16)."""
    u = x.astype(np.float32).view(np.uint32)
    b = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    return (b.astype(np.uint32) << 16).view(np.float32), b


def main():
    fns = {}
    if COMPILE:
        for name, (ta, bf16, subs, *src) in VARIANTS.items():
            smem = variant_smem(ta, bf16, subs)
            print(f"built {name:15s}{occupancy(build(ta, bf16, subs, smem, *src), smem)}", flush=True)
    for T in TS:
        run(T, fns)


def variant_smem(ta, bf16, subs):
    """Shared memory: the 16-bit tiles' layout for bf16 inputs (GF_H), the float32 tiles' otherwise (F32T, FFMA)."""
    h16 = bf16 and F32T not in subs and FFMA not in subs
    return cc.make_config(ta, D, D, CH, "bf16" if h16 else "").smem("gd_forms")


def run(T, fns):
    rng = np.random.default_rng(0)
    L = 1 + (T - 1).bit_length()
    k = rng.standard_normal((BH, T, D)).astype(np.float32)
    host = [rng.standard_normal((BH, T, D)).astype(np.float32) * D**-0.5, k / np.linalg.norm(k, axis=-1, keepdims=True),
            rng.standard_normal((BH, T, D)).astype(np.float32), -rng.random((BH, T)).astype(np.float32) * 0.1,
            rng.random((BH, T)).astype(np.float32), (0.5 + rng.random((BH, T, L))).astype(np.float32)]
    pairs = [bf16_bits(x) for x in host]
    n = T // CH
    want, base, lines, launches, times = None, {}, {}, {}, {}
    for name, (ta, bf16, subs, *src) in VARIANTS.items():
        dt = np.float64 if ta == "double" else np.float32
        ins = [cupy.asarray(b if bf16 else f.astype(dt)) for f, b in pairs]
        outs = [cupy.empty(s, dtype=dt) for s in [(BH, n, CH, D), (BH, n, CH, D), (BH, n, D, CH), (BH, n, D, D), (BH, n),
                                                  (BH, n, CH, D)]]
        smem = variant_smem(ta, bf16, subs)
        extra = [cupy.empty((BH, T, L), dtype=dt) if "_lamw" in name else np.uint64(0),
                 cupy.zeros((1,), dtype=cupy.int32) if "_chk" in name else np.uint64(0)]
        try:
            key = (ta, bf16, tuple(subs), *src)
            if key not in fns:
                fns[key] = build(ta, bf16, subs, smem, *src)
            fn = fns[key]
            args = (*ins, *outs, *extra, np.int32(T), np.int32(D), np.int32(D), np.int32(L), np.int64(0), np.int64(0), np.int32(n))
            launch = lambda fn=fn, args=args, smem=smem: fn((n, BH), (256,), args, shared_mem=smem)  # noqa: E731
            launch()
            cupy.cuda.runtime.deviceSynchronize()
            err = ""
            if name == "fp64":
                want = outs
            elif want is not None:
                err = " ".join(f"{float(cupy.abs(x - w).max() / cupy.abs(w).max()):.1e}" for x, w in zip(outs, want))
                err = f"   vs fp64 (qeff eGK phi H g intra): {err}"
            flag = f" flag {int(extra[1][0])}" if "_chk" in name else ""
            ref = BASE_BF16 if bf16 else BASE_FP32  # main's kernel of the same inputs: the others' outputs against its
            if name == ref:
                base[ref] = [x.copy() for x in outs]
            elif ref in base and "_no" not in name:  # (ablations excluded)
                flag += f"   same as {ref}: {max(float(cupy.abs(x - w).max()) for x, w in zip(outs, base[ref])):.1e}"
            lines[name] = (err + flag + occupancy(fn, smem))
            if name != "fp64":  # (the errors' reference: not timed)
                launches[name], times[name] = launch, []
        except Exception as exc:
            print(f"T={T} {name:11s} fails: {type(exc).__name__}: {str(exc)[:300]}", flush=True)
    for _ in range(ROUNDS):  # the variants interleaved, 20 launches each per round
        for name, launch in launches.items():
            ev = [cupy.cuda.Event() for _ in range(2)]
            ev[0].record()
            for _ in range(20):
                launch()
            ev[1].record()
            ev[1].synchronize()
            times[name].append(cupy.cuda.get_elapsed_time(ev[0], ev[1]) / 20)
    for name in launches:
        ts = sorted(times[name])
        print(f"T={T} {name:15s} {ts[len(ts) // 2]:.3f} ms (median of {len(ts)} rounds; min {ts[0]:.3f}){lines[name]}",
              flush=True)


if __name__ == "__main__":
    main()
