// Log-linear Gated DeltaNet: the backward of the per-chunk WY forms (gd_forms, gated_delta_forms.cu)
// in one kernel, one block per (chunk j, sequence bh), for torch autograd (host: gated_delta_bwd.py,
// forms_backward). Compiled after common.cu, gated_delta.cu, gated_delta_bwd.cu and gated_delta_bwd_scan.cu.
//
// Per chunk (C = CH tokens aligned to absolute multiples of CH; tokens outside the call are the
// identity padding q = k = v = 0, a = beta = 0, as in gd_forms), from the saved inputs and the
// gradients of (qeff, eGK, phi, H, g, intra): recompute the decay table D[t, s] = e^{a_{s+1} + ..
// + a_t} (s <= t; sums over each stretch, never differences of cumulative sums: a hard reset stays
// exact), N = strict(beta_t D * K K^T), X = (I + N)^{-1}, M = D * Q K^T, W = M X, attn = W diag(beta),
// phi = Z^T X diag(beta) (Z = e^{suffix} K), then (the formulas of gated_delta_bwd.forms_backward's
// docstring; P = dI V^T, Lam[t, s] = lam[t, min(level(t, s), L - 1)]):
//   dV = (Lam * attn)^T dI + phi^T dH;  dphi = dph + dH V^T;  dlam[t, l] = sum_{level(t,s) = l} attn * P
//   d attn = Lam * P - dqe eGK^T;  d eGK = dek - attn^T dqe;  dQ = e^G dqe;  dK = e^G d eGK
//   dG = e^G (rowsum(Q * dqe) + rowsum(K * d eGK));  dW = d attn diag(beta);  dM = dW X^T
//   dY = Z dphi;  dX = M^T dW + dY diag(beta);  dZ = X diag(beta) dphi^T;  dK += e^S dZ;  dS = e^S rowsum(K dZ)
//   dN = strict(-X^T dX X^T);  dbeta = colsum(W * d attn) + colsum(X * dY) + rowsum(dN * D * KK^T)
//   dQ += (dM * D) K;  dK += (dKK + dKK^T) K + (dM * D)^T Q,  dKK = dN * beta_t D
//   E = strict(dN * beta_t D KK^T + dM * M) (= D * dD);  da_r = sum_{s < r <= t} E[t, s] + sum_{t >= r} dG_t
//       + dg + sum_{s < r} dS_s
// Only the lower triangles of d attn, dW, dM, dX, dY, dN matter (D, M, X, W are lower triangular), so
// only they are computed / kept. Every C x C temporary lives in shared memory; every gradient row is
// written by the block that owns its token (no atomics, no partial sums).
//
// Shared tiles (ta, odd row strides: rows and columns read without bank conflicts), reused by phase:
//   sK   K [t][f]
//   sDD  D (lower, diagonal 1) | (D * K K^T)[t][s] at [s][t] (upper, t > s)
//   sMX  M (lower) | X[r][s] at [s][r] (upper, r > s; X's diagonal is 1, not stored)
//   sA   Q [t][f] (until M) -> W -> dM
//   sP   phi [f][s] (FB_LDM: [s][f], dV's A operand) -> dqe [t][f] -> dphi [f][s] -> dX -> dN
//   sS   the value passes' stages (dI | dH, V) -> P -> dW = d attn diag(beta) -> X^T dX -> Q [t][f] -> E
// Products: FFMA register tiles on 16 x 16 threads, element (ty RM + i, tx + 16 j) of the output
// (fb_row, fb_col: a warp's rows are 2 RM consecutive ones, so a product whose terms vanish above (or
// below) the row's index stops (starts) its reduction at the warp's last (first) row: ~56% of the
// terms); fp32 accumulation for float32 (float64 for float64). X by blocks (fb_solve, as gd_forms: 16 x 16 diagonal
// blocks by substitution in registers, then the 32 x 32 and 64 x 64 off-diagonal blocks by two products each; sA
// (free between M and W) its scratch).
constexpr int fb_max(int a, int b) { return a > b ? a : b; }
// float32 at CH = DKP = 64: every product on tensor cores (3xTF32 as gd_forms' gf_tc: operands split into
// tf32 halves, A_lo B_hi + A_hi B_lo + A_hi B_hi, ~2^-21 relative, fp32 sums); each warp owns a 16-row band
// of every 64-row product (m16n8k8 accumulator fragments); FB_TCM 0: the FFMA register tiles (a timing build)
#ifndef FB_TCM
#define FB_TCM 1
#endif
#ifndef FB_CBND  // FB_TC: the reductions bounded by the warp's columns too (a timing build: 8K 2.25 ms against 2.18 without,
#define FB_CBND 0  // H200 session 13: ptxas spills 56 B against 32)
#endif
constexpr bool FB_TC = FB_TCM && sizeof(ta) == 4 && CH == 64 && DKP == 64;
constexpr int FB_PAD = FB_TC ? 4 : 1;   // row padding: mma fragments' [row][k] reads on 32 banks; FFMA: odd strides
constexpr int FB_VB = 32;               // value columns per pass
constexpr int FB_LC = CH + FB_PAD;      // row stride of the CH x CH tiles and of phi [f][s]
constexpr int FB_LK = DKP + FB_PAD;     // row stride of the [t][f] tiles
constexpr int FB_LV = FB_VB + FB_PAD;   // row stride of the value stages
// register tile extents: rows per thread of a CH- / DKP-row product, columns per thread of a CH- / DKP- /
// FB_VB-column one (tensor cores: rows g, g + 8 of the warp's band, columns 2 t4, 2 t4 + 1 of each 8-column tile)
constexpr int FB_R = FB_TC ? 2 : CH / 16, FB_RK = FB_TC ? 2 : DKP / 16;
constexpr int FB_C = FB_TC ? CH / 8 : CH / 16, FB_CK = FB_TC ? DKP / 8 : DKP / 16, FB_CV = FB_TC ? FB_VB / 8 : FB_VB / 16;
constexpr int FB_NL = CH == 16 ? 5 : (CH == 32 ? 6 : 7);            // chunk-local levels 0 .. log2 CH
constexpr int FB_TT = CH * FB_LC, FB_TK = CH * FB_LK;
constexpr int FB_S1 = fb_max(CH, DKP) * FB_LV;                     // dI, then dH
constexpr int FB_TA = fb_max(FB_TT, FB_TK);
constexpr int FB_TP = fb_max(fb_max(DKP * FB_LC, FB_TK), FB_TT);
constexpr int FB_TS = fb_max(FB_S1 + CH * FB_LV, FB_TA);
// + a, beta, e^G, e^S, dG, dS, dbeta (CH each), lam's CH x 8 levels, a CH x 17 reduction
constexpr int FB_SMEM = FB_TK + 2 * FB_TT + FB_TA + FB_TP + FB_TS + 7 * CH + 8 * CH + 17 * CH;

// Row i of this thread's register tile (RM rows per thread), and its column j (RN columns per thread).
template <int RM>
__device__ __forceinline__ int fb_row(int i) {
    if constexpr (FB_TC) return 16 * (threadIdx.x / 64) + threadIdx.x % 32 / 4 + 8 * i;
    else return threadIdx.x / 16 * RM + i;
}
template <int RN>
__device__ __forceinline__ int fb_col(int j) {
    if constexpr (FB_TC) return 4 * RN * (threadIdx.x / 32 % 2) + 8 * (j >> 1) + 2 * (threadIdx.x % 4) + (j & 1);
    else return threadIdx.x % 16 + 16 * j;
}

// FB_FSPLIT 1: 3xTF32's operands split by truncation (fb_cvt: a mask, a subtraction, a mask) instead of cvt.rna, which
// ptxas emulates by ~3 instructions (an add, a compare with inf, a select) per conversion, 2 per split: the products'
// k-step 118 -> ~60 instructions (sm_90 SASS); hi keeps x's top 10 mantissa bits, |lo| < 2^-10 |x|, lo's own
// truncation and the dropped A_lo B_lo ~2^-20 relative (fp32 sums). FB_PF 1: the k-loop software-pipelined, the
// next k-step's operands loaded before this step's mma (12 registers). FB_ABL (timing builds only, wrong
// gradients): 1 skips the solve, 2 every product.
#ifndef FB_FSPLIT
#define FB_FSPLIT 1
#endif
#ifndef FB_PF
#define FB_PF 0
#endif
#ifndef FB_ABL
#define FB_ABL 0
#endif
// Session 24's switches (FB_XF, FB_BFREE, FB_XR, FB_P2; each bit-equal to its 0): on in the TI_BF16 build (GRAD_BF16's
// gd_forms_bwd_x1, where they were measured: H200 8K 1.702 -> 1.581 ms, 32K 6.679 -> 6.428), off in the float32 and
// float64 builds (main's kernels: the float32 x1 build measured slower with FB_XR). A fifth, the last products' A
// operands formed once as tiles by an element-wise pass (FB_TAIL), was measured +2.3% at 8K and removed.
// FB_XF 1: W's and phi's B operand X read from a whole copy of X^T (diagonal and zeros stored) in sS, free until the
// value passes, instead of X's masked upper-triangle lookup (two compares, two selects an element): -0.25%
#ifndef FB_XF
#define FB_XF 1
#endif
// FB_BFREE 1: dV's operand Lambda * attn^T loaded for every element, then masked (ptxas branched around each element's
// level lookup: BSSY / BSYNC and a branch an element)
#ifndef FB_BFREE
#define FB_BFREE 1
#endif
// FB_XR 1 (gd_forms_bwd_x1 on tensor cores): the 1xTF32 operands that are a tf32 already pass their bits to the mma
// (fb_x) instead of cvt.rna's emulation (a compare and a predicated add an element, 24 of a k-step's ~50 SASS
// instructions): the tiles read only as mma operands (dI, dH, phi, dphi, dW, dX, X^T dX, FB_XF's X^T) rounded
// once where they are stored, and in TI_BF16 builds the inputs' tiles (K, Q, V: bf16, exact in tf32): the same mma
// operands (0: every operand rounded at its load). H200, 8K: -2.2% (the conversions are ALU work beside the LDS -> HMMA
// chain; X, M, W and dqe rounded where stored too, not bit-equal: no further gain, removed)
#ifndef FB_XR
#define FB_XR 1
#endif
struct fb_x {  // an x1 operand that is exactly a tf32
    float v;
};
template <bool C, typename T, typename F>
struct fb_if {
    using type = T;
};
template <typename T, typename F>
struct fb_if<false, T, F> {
    using type = F;
};
// x rounded to tf32 as cvt.rna would at an operand load (R: pre-rounding on; else x)
template <bool R>
__device__ __forceinline__ ta fb_rnd(ta x) {
    if constexpr (R) return (ta)__uint_as_float(to_tf32((float)x));
    else return x;
}

// x as mma operands: X1 one tf32 (cvt.rna), else hi + lo
template <bool X1>
__device__ __forceinline__ void fb_cvt(fb_x x, unsigned& hi, unsigned& lo) {
    if constexpr (X1) hi = __float_as_uint(x.v);
    else tf32_split(x.v, hi, lo);
}
template <bool X1>
__device__ __forceinline__ void fb_cvt(float x, unsigned& hi, unsigned& lo) {
    if constexpr (X1) {
        hi = to_tf32(x);
    } else if constexpr (FB_FSPLIT) {
        hi = __float_as_uint(x) & 0xffffe000u;
        lo = __float_as_uint(x - __uint_as_float(hi)) & 0xffffe000u;
    } else {
        tf32_split(x, hi, lo);
    }
}

// acc[i][j] += sum_{lo <= k < hi} la(fb_row(i), k) lb(k, fb_col(j)) (FB_TC: lo, hi multiples of 8; X1: 1xTF32,
// the operands rounded to tf32 (~2^-11 relative), one mma per tile: gd_forms_bwd_x1, for bfloat16 callers)
// FB_LDM 1 (tensor-core builds): the operands that are whole shared tiles in mma's order (fb_ta: A [m][k], fb_tb: B
// [n][k]) loaded by ldmatrix (x4, a 32-bit element as two b16: one A fragment, or the B fragments of two n-tiles, for 4
// or 12 scalar loads and their index arithmetic), and products that share their B operand in one k-loop (fb_mm2: B
// loaded once for both); 0: session 24's engine (every element by a scalar load through the lambdas). Bit-equal: the
// same operand values (a masked element selected after its load instead of not loaded), each accumulator's mma in the
// same order.
#ifndef FB_LDM
#define FB_LDM 1
#endif
// FB_DLQ 1: dlam's level sums by a quad of lanes a row (every 4th key each, two shuffles; s24b: the loop over (row,
// level) items left ~30 of a warp's lanes idle over the longest level's 32 keys); 0: one thread an item, its keys in
// order. Not bit-equal (the sum's order: fp32 rounding of the level sums, ~1e-7 relative)
#ifndef FB_DLQ
#define FB_DLQ 1
#endif
// FB_LDMU: the new engine's k-loop unrolled by FB_LDMU (a timing build; 1 the default)
#ifndef FB_LDMU
#define FB_LDMU 1
#endif
constexpr bool FB_LM = FB_LDM && FB_TC;
// A shared tile as an mma operand: A(m, k) = p[m ld + k] (fb_ta), B(k, n) = p[n ld + k] (fb_tb); E: its values are
// tf32 already (FB_XR's tiles: passed as fb_x); A's mask M: 0 none, 1 k <= m (M's lower triangle and diagonal), 2 the
// upper triangle k > m, 1 at k = m, 0 below (X^T from X's upper-triangle storage). Callable as the lambdas are (the
// old engine, the FFMA tiles, the CPU emulation).
template <bool E, int M = 0>
struct fb_ta {
    const ta* p;
    int ld;
    __device__ __forceinline__ static ta mask(int m, int k, ta x) {
        if constexpr (M == 1) return k <= m ? x : (ta)0;
        else if constexpr (M == 2) return k > m ? x : (k == m ? (ta)1 : (ta)0);
        else return x;
    }
    __device__ __forceinline__ auto operator()(int m, int k) const {
        return typename fb_if<E, fb_x, ta>::type{mask(m, k, p[m * ld + k])};
    }
};
template <bool E>
struct fb_tb {
    const ta* p;
    int ld;
    __device__ __forceinline__ auto operator()(int k, int n) const { return typename fb_if<E, fb_x, ta>::type{p[n * ld + k]}; }
};
template <typename T>
struct fb_tl {  // (which operands are tiles; f: an A operand with its own fragment loader, frag(m0, k0, v))
    static constexpr bool a = false, b = false, f = false;
};
template <bool E, int M>
struct fb_tl<fb_ta<E, M>> {
    static constexpr bool a = true, b = false, f = false, e = E;
};
template <bool E>
struct fb_tl<fb_tb<E>> {
    static constexpr bool a = false, b = true, f = false, e = E;
};
struct fb_lw;
template <>
struct fb_tl<fb_lw> {
    static constexpr bool a = false, b = false, f = true;
};
struct fb_tp;
template <>
struct fb_tl<fb_tp> {
    static constexpr bool a = false, b = false, f = true;
};
template <bool TWO>
struct fb_lt;
template <bool TWO>
struct fb_tl<fb_lt<TWO>> {
    static constexpr bool a = false, b = false, f = true;
};
struct fb_xs;
template <>
struct fb_tl<fb_xs> {
    static constexpr bool a = false, b = false, f = true;
};
struct fb_xt;
template <>
struct fb_tl<fb_xt> {  // (a B operand with its own fragment loader, frag2(n0, k0, v))
    static constexpr bool a = false, b = false, f = true;
};
template <typename L>
__device__ __forceinline__ int fb_tld(const L& o) {  // a tile's row stride (0: not a tile)
    if constexpr (fb_tl<L>::a || fb_tl<L>::b) return o.ld;
    else return 0;
}
// four 8 x 4 blocks of 32-bit elements (rows from the lanes' addresses: lanes 8 i .. 8 i + 7 block i's; lane 4 g + t4
// gets element (g, t4) of each block in r[i])
__device__ __forceinline__ void fb_ldsm(unsigned (&r)[4], unsigned a) {
#ifdef __CUDA_ARCH__
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a));
#endif
}
// the shared address of this lane's row of an ldmatrix x4 of tile `o` (fb_fa: A's rows m0 + lane % 8 (+ 8), column 0
// (+ 4); fb_fb2: B's rows n0 + lane % 8 (+ 8), column 0 (+ 4)): a k-step adds 4 k0 bytes
template <typename L>
__device__ __forceinline__ unsigned fb_lane_a(const L& o, int m0) {
#ifdef __CUDA_ARCH__
    if constexpr (fb_tl<L>::a || fb_tl<L>::b) {
        const int ln = threadIdx.x % 32;
        const int r = fb_tl<L>::a ? (ln & 7) + 8 * (ln >> 3 & 1) : (ln & 7) + 8 * (ln >> 4);
        const int c = fb_tl<L>::a ? 4 * (ln >> 4) : 4 * (ln >> 3 & 1);
        return smem_u32(o.p) + 4u * (unsigned)((m0 + r) * o.ld + c);
    }
#endif
    return 0u;
}
// la's A fragment (rows m0 + g, + 8; columns k0 + t4, + 4) as mma operands (fb_cvt: hi, lo)
template <bool X1, typename LA>
__device__ __forceinline__ void fb_fa(const LA& la, unsigned sa, int m0, int k0, unsigned (&h)[4], unsigned (&l)[4]) {
    const int g = threadIdx.x % 32 / 4, t4 = threadIdx.x % 4;
#ifdef __CUDA_ARCH__
    if constexpr (fb_tl<LA>::a) {  // (sa: fb_lane_a(la, m0))
        unsigned r[4];
        fb_ldsm(r, sa + 4u * k0);
#pragma unroll
        for (int x = 0; x < 4; ++x) {
            const ta v = la.mask(m0 + g + 8 * (x & 1), k0 + t4 + 4 * (x >> 1), __uint_as_float(r[x]));
            fb_cvt<X1>(typename fb_if<fb_tl<LA>::e, fb_x, ta>::type{v}, h[x], l[x]);
        }
        return;
    }
#endif
    if constexpr (fb_tl<LA>::f) {
        ta v[4];
        la.frag(m0, k0, v);
#pragma unroll
        for (int x = 0; x < 4; ++x) fb_cvt<X1>(v[x], h[x], l[x]);
        return;
    }
#pragma unroll
    for (int x = 0; x < 4; ++x) fb_cvt<X1>(la(m0 + g + 8 * (x & 1), k0 + t4 + 4 * (x >> 1)), h[x], l[x]);
}
// lb's B fragments of the n-tiles n0, n0 + 8 (rows k0 + t4, + 4; column g) as mma operands
template <bool X1, typename LB>
__device__ __forceinline__ void fb_fb2(const LB& lb, unsigned sb, int n0, int k0, unsigned (&h)[2][2], unsigned (&l)[2][2]) {
    const int g = threadIdx.x % 32 / 4, t4 = threadIdx.x % 4;
#ifdef __CUDA_ARCH__
    if constexpr (fb_tl<LB>::b) {  // (sb: fb_lane_a(lb, n0))
        unsigned r[4];
        fb_ldsm(r, sb + 4u * k0);
#pragma unroll
        for (int x = 0; x < 4; ++x) fb_cvt<X1>(typename fb_if<fb_tl<LB>::e, fb_x, ta>::type{__uint_as_float(r[x])}, h[x >> 1][x & 1], l[x >> 1][x & 1]);
        return;
    }
#endif
    if constexpr (fb_tl<LB>::f) {
        ta v[2][2];
        lb.frag2(n0, k0, v);
#pragma unroll
        for (int x = 0; x < 4; ++x) fb_cvt<X1>(v[x >> 1][x & 1], h[x >> 1][x & 1], l[x >> 1][x & 1]);
        return;
    }
#pragma unroll
    for (int nt = 0; nt < 2; ++nt)
#pragma unroll
        for (int y = 0; y < 2; ++y) fb_cvt<X1>(lb(k0 + t4 + 4 * y, n0 + 8 * nt + g), h[nt][y], l[nt][y]);
}
// acc (the warp's 16 x 4 RN band) += A B for one k-step's fragments (3xTF32: A_lo B_hi + A_hi B_lo + A_hi B_hi)
template <bool X1, int RN>
__device__ __forceinline__ void fb_mac(ta (&acc)[2][RN], const unsigned (&ah)[4], const unsigned (&al)[4],
                                       const unsigned (&bh)[RN / 2][2], const unsigned (&bl)[RN / 2][2]) {
#pragma unroll
    for (int nt = 0; nt < RN / 2; ++nt) {
        float c[4] = {(float)acc[0][2 * nt], (float)acc[0][2 * nt + 1], (float)acc[1][2 * nt], (float)acc[1][2 * nt + 1]};
        if (!X1) {
            mma_tf32(c, al, bh[nt][0], bh[nt][1]);  // A_lo B_lo dropped (~2^-20)
            mma_tf32(c, ah, bl[nt][0], bl[nt][1]);
        }
        mma_tf32(c, ah, bh[nt][0], bh[nt][1]);
        acc[0][2 * nt] = (ta)c[0], acc[0][2 * nt + 1] = (ta)c[1], acc[1][2 * nt] = (ta)c[2], acc[1][2 * nt + 1] = (ta)c[3];
    }
}
// the new engine (FB_LM): c0 += A0 B over k in [lo0, hi0), and (NA 2) c1 += A1 B over [lo1, hi1), B's fragments loaded
// once a k-step for both (the warp's 16 x 4 RN band, as fb_mm; RN a multiple of 4)
template <bool X1, int NA, int RN, typename LA0, typename LA1, typename LB>
__device__ __forceinline__ void fb_mmn(ta (&c0)[2][RN], int lo0, int hi0, const LA0& la0, ta (&c1)[2][RN], int lo1, int hi1,
                                       const LA1& la1, const LB& lb) {
    static_assert(RN % 4 == 0, "fb_mmn: pairs of n-tiles");
    constexpr int LU = FB_LDMU;
    const int m0 = 16 * (threadIdx.x / 64), n0 = 4 * RN * (threadIdx.x / 32 % 2);
    const int lo = NA > 1 ? min(lo0, lo1) : lo0, hi = NA > 1 ? max(hi0, hi1) : hi0;
    const unsigned sa0 = fb_lane_a(la0, m0), sa1 = fb_lane_a(la1, m0), sb = fb_lane_a(lb, n0);
#pragma unroll LU
    for (int k0 = lo; k0 < hi; k0 += 8) {
        unsigned bh[RN / 2][2], bl[RN / 2][2];
#pragma unroll
        for (int np = 0; np < RN / 4; ++np) {
            unsigned h[2][2], l[2][2];
            fb_fb2<X1>(lb, sb + 4u * (16 * np) * fb_tld(lb), n0 + 16 * np, k0, h, l);
#pragma unroll
            for (int x = 0; x < 4; ++x) bh[2 * np + (x >> 1)][x & 1] = h[x >> 1][x & 1], bl[2 * np + (x >> 1)][x & 1] = l[x >> 1][x & 1];
        }
        unsigned ah[4], al[4];
        if (NA == 1 || (k0 >= lo0 && k0 < hi0)) {
            fb_fa<X1>(la0, sa0, m0, k0, ah, al);
            fb_mac<X1>(c0, ah, al, bh, bl);
        }
        if constexpr (NA > 1) {
            if (k0 >= lo1 && k0 < hi1) {
                fb_fa<X1>(la1, sa1, m0, k0, ah, al);
                fb_mac<X1>(c1, ah, al, bh, bl);
            }
        }
    }
}
template <bool X1 = false, int RM, int RN, typename LA, typename LB>
__device__ __forceinline__ void fb_mm(ta (&acc)[RM][RN], int lo, int hi, LA la, LB lb) {
    if constexpr (FB_ABL & 2) return;
    if constexpr (FB_LM) {
        fb_mmn<X1, 1>(acc, lo, hi, la, acc, lo, hi, la, lb);
    } else if constexpr (FB_TC) {  // the warp's 16 x 4 RN band: RN / 2 mma tiles of 16 x 8 (3xTF32: A_lo B_hi + A_hi B_lo + A_hi B_hi)
        static_assert(RM == 2 && RN % 2 == 0, "FB_TC: 64-row products");
        const int g = threadIdx.x % 32 / 4, t4 = threadIdx.x % 4;
        const int m0 = 16 * (threadIdx.x / 64), n0 = 4 * RN * (threadIdx.x / 32 % 2);
        using VA = decltype(la(0, 0));  // (float, or fb_x: a tf32 already)
        using VB = decltype(lb(0, 0));
        VA ra[4];  // one k-step's operands as loaded
        VB rb[RN / 2][2];
        const auto load = [&](int k0) {
#pragma unroll
            for (int x = 0; x < 4; ++x) ra[x] = la(m0 + g + 8 * (x & 1), k0 + t4 + 4 * (x >> 1));
#pragma unroll
            for (int nt = 0; nt < RN / 2; ++nt)
#pragma unroll
                for (int y = 0; y < 2; ++y) rb[nt][y] = lb(k0 + t4 + 4 * y, n0 + 8 * nt + g);
        };
        if (FB_PF && lo < hi) load(lo);
#pragma unroll 1
        for (int k0 = lo; k0 < hi; k0 += 8) {
            if (!FB_PF) load(k0);
            unsigned ah[4], al[4], bh[RN / 2][2], bl[RN / 2][2];
#pragma unroll
            for (int x = 0; x < 4; ++x) fb_cvt<X1>(ra[x], ah[x], al[x]);
#pragma unroll
            for (int nt = 0; nt < RN / 2; ++nt)
#pragma unroll
                for (int y = 0; y < 2; ++y) fb_cvt<X1>(rb[nt][y], bh[nt][y], bl[nt][y]);
            if (FB_PF) load(k0 + 8 < hi ? k0 + 8 : k0);  // (the last step reloads its own: a valid index)
            fb_mac<X1>(acc, ah, al, bh, bl);
        }
    } else {
#pragma unroll 2
        for (int k = lo; k < hi; ++k) {
            ta x[RM], y[RN];
#pragma unroll
            for (int i = 0; i < RM; ++i) x[i] = la(fb_row<RM>(i), k);
#pragma unroll
            for (int j = 0; j < RN; ++j) y[j] = lb(k, fb_col<RN>(j));
#pragma unroll
            for (int i = 0; i < RM; ++i)
#pragma unroll
                for (int j = 0; j < RN; ++j) acc[i][j] = fma(x[i], y[j], acc[i][j]);
        }
    }
}

// c0 += A0 B over [lo0, hi0) and c1 += A1 B over [lo1, hi1) (FB_LM: one k-loop, B loaded once; else two fb_mm)
template <bool X1 = false, int RM, int RN, int RM1, int RN1, typename LA0, typename LA1, typename LB>
__device__ __forceinline__ void fb_mm2(ta (&c0)[RM][RN], int lo0, int hi0, LA0 la0, ta (&c1)[RM1][RN1], int lo1, int hi1, LA1 la1,
                                       LB lb) {
    if constexpr (FB_LM && !(FB_ABL & 2)) {
        fb_mmn<X1, 2>(c0, lo0, hi0, la0, c1, lo1, hi1, la1, lb);
    } else {
        fb_mm<X1>(c0, lo0, hi0, la0, lb);
        fb_mm<X1>(c1, lo1, hi1, la1, lb);
    }
}

// f(i, j, fb_row(i), fb_col(j)) over the elements of an RM x RN register tile
template <int RM, int RN, typename F>
__device__ __forceinline__ void fb_ij(F f) {
#pragma unroll
    for (int i = 0; i < RM; ++i)
#pragma unroll
        for (int j = 0; j < RN; ++j) f(i, j, fb_row<RM>(i), fb_col<RN>(j));
}

// f(row, column, acc[i][j]) over this thread's elements of a register tile
template <int RM, int RN, typename F>
__device__ __forceinline__ void fb_each(ta (&acc)[RM][RN], F f) {
    fb_ij<RM, RN>([&](int i, int j, int r, int c) { f(r, c, acc[i][j]); });
}

// out[r] (+)= the sum over the block of part[i] for rows r = fb_row(i) (red: CH x 17)
template <int RM>
__device__ __forceinline__ void fb_rows(const ta (&part)[RM], ta* red, ta* out, bool add) {
    if constexpr (FB_TC) {  // a row's 8 parts: 4 lanes (shuffles), then the band's two warps
#pragma unroll
        for (int i = 0; i < RM; ++i) {
            ta x = part[i];
            x += __shfl_xor_sync(0xffffffffu, x, 1, 32);
            x += __shfl_xor_sync(0xffffffffu, x, 2, 32);
            if (threadIdx.x % 4 == 0) red[fb_row<RM>(i) * 2 + threadIdx.x / 32 % 2] = x;
        }
        __syncthreads();
        if (threadIdx.x < 16 * (NT / 64)) {
            const ta s = red[2 * threadIdx.x] + red[2 * threadIdx.x + 1];
            out[threadIdx.x] = add ? out[threadIdx.x] + s : s;
        }
    } else {
#pragma unroll
        for (int i = 0; i < RM; ++i) red[fb_row<RM>(i) * 17 + threadIdx.x % 16] = part[i];
        __syncthreads();
        if (threadIdx.x < 16 * RM) {
            ta s = (ta)0;
            for (int u = 0; u < 16; ++u) s += red[threadIdx.x * 17 + u];
            out[threadIdx.x] = add ? out[threadIdx.x] + s : s;
        }
    }
    __syncthreads();
}

// out[c] (+)= the sum over the block of part[j] for columns c = fb_col(j) (red: 16 x (16 RN + 1), FB_TC 4 x 8 RN)
template <int RN>
__device__ __forceinline__ void fb_cols(const ta (&part)[RN], ta* red, ta* out, bool add) {
    if constexpr (FB_TC) {  // a column's 32 parts: 8 lanes (shuffles), then the 4 bands' warps
#pragma unroll
        for (int j = 0; j < RN; ++j) {
            ta x = part[j];
#pragma unroll
            for (int off = 4; off < 32; off *= 2) x += __shfl_xor_sync(0xffffffffu, x, off, 32);
            if (threadIdx.x % 32 < 4) red[threadIdx.x / 64 * 8 * RN + fb_col<RN>(j)] = x;
        }
        __syncthreads();
        if (threadIdx.x < 8 * RN) {
            ta s = (ta)0;
            for (int u = 0; u < NT / 64; ++u) s += red[u * 8 * RN + threadIdx.x];
            out[threadIdx.x] = add ? out[threadIdx.x] + s : s;
        }
    } else {
#pragma unroll
        for (int j = 0; j < RN; ++j) red[threadIdx.x / 16 * (16 * RN + 1) + fb_col<RN>(j)] = part[j];
        __syncthreads();
        if (threadIdx.x < 16 * RN) {
            ta s = (ta)0;
            for (int u = 0; u < 16; ++u) s += red[u * (16 * RN + 1) + threadIdx.x];
            out[threadIdx.x] = add ? out[threadIdx.x] + s : s;
        }
    }
    __syncthreads();
}

// 16-bit builds (TI_BF16: gd_forms_bwd_x1 for bfloat16 callers under GRAD_BF16, gated_delta.py): q, k, v, a, beta, lam
// read as 16-bit patterns, widened exactly (every product and sum as in the float32 build on the widened inputs), and
// dq, dk, dv, da, dbeta, dlam written rounded once to nearest even (common.cu's st, torch's cast): the float32 build's
// gradients of the widened inputs cast to the inputs' dtype, bit for bit
constexpr bool FB_H = sizeof(ti) != sizeof(ta);
#if defined(TI_BF16) && TI_BF16
constexpr bool FB_BF16 = true;
#else
constexpr bool FB_BF16 = false;
#endif
template <typename S>
__device__ __forceinline__ ta fb_ld(const S* p) {
    if constexpr (sizeof(S) == sizeof(ta)) return *p;
    else return ld(p);
}
__device__ __forceinline__ ta fb_ld(const gd_bf* p) { return gd_wid(*p); }  // (GD_DO16's dI)
__device__ __forceinline__ void fb_st(ti* p, ta x) {
    if constexpr (FB_H) st(p, x);
    else *p = x;
}
// dk's partial sums between the three phases that add into it, exactly in ta: FB_H keeps the float32 across dk's and
// dq's 16-bit entries (the high half in dk, the low half in dq), which the last phase reads before it writes dq (the
// thread that owns an element of dk owns it, and the same element of dq, in every phase)
__device__ __forceinline__ void fb_kput(ti* dk, ti* dq, i64 i, ta x) {
    if constexpr (FB_H) {
        const unsigned u = __float_as_uint((float)x);
        dk[i] = (ti)(u >> 16);
        dq[i] = (ti)(u & 0xffffu);
    } else {
        dk[i] = x;
    }
}
__device__ __forceinline__ ta fb_kget(const ti* dk, const ti* dq, i64 i) {
    if constexpr (FB_H) return (ta)__uint_as_float(((unsigned)dk[i] << 16) | (unsigned)dq[i]);
    else return dk[i];
}

// FB_P2 (tensor-core tiles: a thread's columns c, c + 1 of jj, jj + 1 are adjacent): the epilogues' global reads and
// writes of such a pair as one 4-byte (16-bit arrays) or 8-byte (float32) access where `pr` (the row length even,
// the arrays aligned) and both are inside (ok0, ok1), else element by element as before; the same values. H200: -2.9%
// at 8K, -2.0% at 32K (the TI_BF16 build's dk halves, q loads and bf16 stores were ~+800 SASS a warp over float32's)
#ifndef FB_P2
#define FB_P2 1
#endif
constexpr bool FB_PAIR = FB_P2 && FB_TC && FB_BF16;
__device__ __forceinline__ unsigned fb_bfbits(ta x) {  // common.cu's st (bfloat16): the 16 bits it stores
    unsigned u = __float_as_uint((float)x);
    if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x7fffffu)) return (u >> 16) | 0x40u;  // NaN
    u += 0x7fffu + ((u >> 16) & 1u);
    return u >> 16;
}
template <typename S>
__device__ __forceinline__ void fb_ld2(const S* p, bool pr, bool ok0, bool ok1, ta& x0, ta& x1) {
    if (pr && ok0 && ok1) {
        if constexpr (sizeof(S) == 2) {
            const unsigned u = *reinterpret_cast<const unsigned*>(p);
            x0 = (ta)__uint_as_float(u << 16), x1 = (ta)__uint_as_float(u & 0xffff0000u);
        } else {
            const float2 v = *reinterpret_cast<const float2*>(p);
            x0 = v.x, x1 = v.y;
        }
    } else {
        x0 = ok0 ? fb_ld(p) : (ta)0;
        x1 = ok1 ? fb_ld(p + 1) : (ta)0;
    }
}
__device__ __forceinline__ void fb_st2(ti* p, bool pr, bool ok0, bool ok1, ta x0, ta x1) {
    if (pr && ok0 && ok1) {
        if constexpr (FB_H) *reinterpret_cast<unsigned*>(p) = fb_bfbits(x0) | (fb_bfbits(x1) << 16);
        else *reinterpret_cast<float2*>(p) = float2{(float)x0, (float)x1};
    } else {
        if (ok0) fb_st(p, x0);
        if (ok1) fb_st(p + 1, x1);
    }
}
__device__ __forceinline__ void fb_kput2(ti* dk, ti* dq, i64 i, bool pr, bool ok0, bool ok1, ta x0, ta x1) {
    if (pr && ok0 && ok1) {
        if constexpr (FB_H) {
            const unsigned u0 = __float_as_uint((float)x0), u1 = __float_as_uint((float)x1);
            *reinterpret_cast<unsigned*>(dk + i) = (u0 >> 16) | (u1 & 0xffff0000u);
            *reinterpret_cast<unsigned*>(dq + i) = (u0 & 0xffffu) | (u1 << 16);
        } else {
            *reinterpret_cast<float2*>(dk + i) = float2{(float)x0, (float)x1};
        }
    } else {
        if (ok0) fb_kput(dk, dq, i, x0);
        if (ok1) fb_kput(dk, dq, i + 1, x1);
    }
}
__device__ __forceinline__ void fb_kget2(const ti* dk, const ti* dq, i64 i, bool pr, bool ok0, bool ok1, ta& x0, ta& x1) {
    if (pr && ok0 && ok1) {
        if constexpr (FB_H) {
            const unsigned h = *reinterpret_cast<const unsigned*>(dk + i), l = *reinterpret_cast<const unsigned*>(dq + i);
            x0 = (ta)__uint_as_float((h << 16) | (l & 0xffffu));
            x1 = (ta)__uint_as_float((h & 0xffff0000u) | (l >> 16));
        } else {
            const float2 v = *reinterpret_cast<const float2*>(dk + i);
            x0 = v.x, x1 = v.y;
        }
    } else {
        x0 = ok0 ? fb_kget(dk, dq, i) : (ta)0;
        x1 = ok1 ? fb_kget(dk, dq, i + 1) : (ta)0;
    }
}
// f(i, jj, row, column) for the even jj of an RM x RN tensor-core tile (the pair jj, jj + 1: columns c, c + 1)
template <int RM, int RN, typename F>
__device__ __forceinline__ void fb_ij2(F f) {
#pragma unroll
    for (int i = 0; i < RM; ++i)
#pragma unroll
        for (int j = 0; j < RN; j += 2) f(i, j, fb_row<RM>(i), fb_col<RN>(j));
}

// dst[r ld + c] = src(r, c) over an RT x CW tile, by a loop unrolled 4 times; ST (FB_STAGED=1, a timing build): the
// global loads issued in batches of 16 before their stores (common.cu's staged), measured slower (H200, 8K: 2.49 ms
// against 2.24; 32K 9.83 against 8.68: the registers of the loads in flight)
#ifndef FB_STAGED
#define FB_STAGED 0
#endif
template <int RT, int CW, bool ST = FB_STAGED, typename L>
__device__ __forceinline__ void fb_tile(ta* dst, int ld, L src) {
    const auto put = [&](int idx, ta x) { dst[idx / CW * ld + idx % CW] = x; };
    if constexpr (ST) {
        staged<RT * CW, NT>([&](int idx) { return src(idx / CW, idx % CW); }, put);
    } else {  // a few in flight
#pragma unroll 4
        for (int idx = threadIdx.x; idx < RT * CW; idx += NT) put(idx, src(idx / CW, idx % CW));
    }
}

// dst[r ld + c] = src[(r0 + r) rs + c] for rows r_lo <= r < r_hi and columns c < cols, else 0, over an RT x CW
// tile: 16 bytes a load and a store where rs, cols, ld and src allow (FB_V4; the index arithmetic of fb_tile's
// element loop, ~29 instructions an element in sm_90 SASS, once per 4), else fb_tile
#ifndef FB_V4
#define FB_V4 1
#endif
// (src: ta, or the 16-bit inputs of a TI_BF16 build: 8 bytes a load, widened exactly)
// (RND: the values stored rounded to tf32, fb_rnd: a tile read only as x1 operands)
template <int RT, int CW, bool RND = false, typename S>
__device__ __forceinline__ void fb_copy(ta* dst, int ld, const S* src, i64 r0, i64 rs, int r_lo, int r_hi, int cols) {
    if constexpr (FB_V4 && sizeof(ta) == 4 && CW % 4 == 0 && (sizeof(S) == 4 || (sizeof(S) == 2 && FB_BF16))) {
        if (rs % 4 == 0 && cols % 4 == 0 && ld % 4 == 0 && reinterpret_cast<unsigned long long>(src) % (4 * sizeof(S)) == 0) {
#pragma unroll 2
            for (int idx = threadIdx.x; idx < RT * CW / 4; idx += NT) {
                const int r = idx / (CW / 4), c = 4 * (idx % (CW / 4));
                float4 x = {0.f, 0.f, 0.f, 0.f};
                if (r >= r_lo && r < r_hi && c < cols) {
                    if constexpr (sizeof(S) == 4) {
                        x = *reinterpret_cast<const float4*>(src + (r0 + r) * rs + c);
                    } else {  // 4 bfloat16 (element c in the low half of u.x)
                        const uint2 u = *reinterpret_cast<const uint2*>(src + (r0 + r) * rs + c);
                        x.x = __uint_as_float(u.x << 16), x.y = __uint_as_float(u.x & 0xffff0000u);
                        x.z = __uint_as_float(u.y << 16), x.w = __uint_as_float(u.y & 0xffff0000u);
                    }
                }
                if constexpr (RND) x = {fb_rnd<true>(x.x), fb_rnd<true>(x.y), fb_rnd<true>(x.z), fb_rnd<true>(x.w)};
                *reinterpret_cast<float4*>(dst + r * ld + c) = x;
            }
            return;
        }
    }
    fb_tile<RT, CW>(dst, ld, [&](int r, int c) {
        return fb_rnd<RND>((r >= r_lo && r < r_hi && c < cols) ? fb_ld(src + (r0 + r) * rs + c) : (ta)0);
    });
}

// The Fenwick level of key s seen from query t inside a chunk: bit_length(t XOR s), 0 when equal.
__device__ __forceinline__ int fb_level(int t, int s) {
#ifdef __CUDA_ARCH__
    return 32 - __clz(t ^ s);
#else
    return bitlen64(t ^ s);
#endif
}

// A(m, k) = p[m ld + k] q[m ld + k] for k <= m, else 0 (dQ's dM * D); frag (FB_LDM): both fragments by ldmatrix
struct fb_tp {
    const ta *p, *q;
    int ld;
    __device__ __forceinline__ ta operator()(int m, int k) const { return k <= m ? p[m * ld + k] * q[m * ld + k] : (ta)0; }
    __device__ __forceinline__ void frag(int m0, int k0, ta (&v)[4]) const {
#ifdef __CUDA_ARCH__
        const int g = threadIdx.x % 32 / 4, t4 = threadIdx.x % 4, ln = threadIdx.x % 32;
        const unsigned o = 4u * (unsigned)((m0 + (ln & 7) + 8 * (ln >> 3 & 1)) * ld + k0 + 4 * (ln >> 4));
        unsigned a[4], b[4];
        fb_ldsm(a, smem_u32(p) + o);
        fb_ldsm(b, smem_u32(q) + o);
#pragma unroll
        for (int x = 0; x < 4; ++x) {
            const int m = m0 + g + 8 * (x & 1), k = k0 + t4 + 4 * (x >> 1);
            v[x] = k <= m ? __uint_as_float(a[x]) * __uint_as_float(b[x]) : (ta)0;
        }
#else
        const int g = threadIdx.x % 32 / 4, t4 = threadIdx.x % 4;
        for (int x = 0; x < 4; ++x) v[x] = (*this)(m0 + g + 8 * (x & 1), k0 + t4 + 4 * (x >> 1));
#endif
    }
};

// The transposed lower-triangle operands (FB_LDM), by a fragment's place against the diagonal (warp-uniform: a k-step
// wholly past the warp's 16 rows, or wholly before them, needs no mask; the diagonal blocks element by element):
// fb_lt: A(m, k) = p[k LC + m] (* q[k LC + m]) for k >= m, else 0 (d eGK's W^T, dX's M^T, dK's (dM * D)^T)
template <bool TWO>
struct fb_lt {
    const ta *p, *q;
    __device__ __forceinline__ ta at(int m, int k) const {
        if constexpr (TWO) return p[k * FB_LC + m] * q[k * FB_LC + m];
        else return p[k * FB_LC + m];
    }
    __device__ __forceinline__ ta operator()(int m, int k) const { return k >= m ? at(m, k) : (ta)0; }
    __device__ __forceinline__ void frag(int m0, int k0, ta (&v)[4]) const {
        const int g = threadIdx.x % 32 / 4, t4 = threadIdx.x % 4;
        if (k0 >= m0 + 16) {
#pragma unroll
            for (int x = 0; x < 4; ++x) v[x] = at(m0 + g + 8 * (x & 1), k0 + t4 + 4 * (x >> 1));
        } else {
#pragma unroll
            for (int x = 0; x < 4; ++x) v[x] = (*this)(m0 + g + 8 * (x & 1), k0 + t4 + 4 * (x >> 1));
        }
    }
};
// fb_xs: dZ's A(s, r) = X(s, r) beta_r (X[s][r] at MX[r][s] for s > r, 1 on the diagonal, 0 above)
struct fb_xs {
    const ta *MX, *bt;
    __device__ __forceinline__ ta operator()(int s, int r) const {
        return (s > r ? MX[r * FB_LC + s] : (s == r ? (ta)1 : (ta)0)) * bt[r];
    }
    __device__ __forceinline__ void frag(int m0, int k0, ta (&v)[4]) const {
        const int g = threadIdx.x % 32 / 4, t4 = threadIdx.x % 4;
        if (k0 + 8 <= m0) {
#pragma unroll
            for (int x = 0; x < 4; ++x) {
                const int s = m0 + g + 8 * (x & 1), r = k0 + t4 + 4 * (x >> 1);
                v[x] = MX[r * FB_LC + s] * bt[r];
            }
        } else {
#pragma unroll
            for (int x = 0; x < 4; ++x) v[x] = (*this)(m0 + g + 8 * (x & 1), k0 + t4 + 4 * (x >> 1));
        }
    }
};
// fb_xt: B(k, n) = X(n, k) (dM's, dN's X^T; X[n][k] at MX[k][n]); frag2: the n-tiles n0, n0 + 8 (an n-tile wholly
// right of the k-step: no mask; wholly left: zeros, no load)
struct fb_xt {
    const ta* MX;
    __device__ __forceinline__ ta operator()(int k, int n) const { return n > k ? MX[k * FB_LC + n] : (n == k ? (ta)1 : (ta)0); }
    __device__ __forceinline__ void frag2(int n0, int k0, ta (&v)[2][2]) const {
        const int g = threadIdx.x % 32 / 4, t4 = threadIdx.x % 4;
#pragma unroll
        for (int nt = 0; nt < 2; ++nt) {
            const int nb = n0 + 8 * nt;
            if (nb >= k0 + 8) {
#pragma unroll
                for (int y = 0; y < 2; ++y) v[nt][y] = MX[(k0 + t4 + 4 * y) * FB_LC + nb + g];
            } else if (nb + 8 <= k0) {
                v[nt][0] = v[nt][1] = (ta)0;
            } else {
#pragma unroll
                for (int y = 0; y < 2; ++y) v[nt][y] = (*this)(k0 + t4 + 4 * y, nb + g);
            }
        }
    }
};

// dV's A operand (Lambda * W)^T: A(s, t) = lam[t][min(level(t, s), L - 1)] W[t][s] for t >= s, else 0 (lamS [t][8],
// W in sA). frag (FB_LDM): a k-step past the warp's 16-row block (k0 >= m0 + 16) has one level for all its elements,
// 4 + level(k0 / 16, m0 / 16), and no mask; else element by element (the same products)
struct fb_lw {
    const ta *lamS, *sA;
    int L;
    __device__ __forceinline__ ta operator()(int s, int t) const {
        const ta x = lamS[t * 8 + min(fb_level(t, s), L - 1)] * sA[t * FB_LC + s];
        return t >= s ? x : (ta)0;
    }
    __device__ __forceinline__ void frag(int m0, int k0, ta (&v)[4]) const {
        const int g = threadIdx.x % 32 / 4, t4 = threadIdx.x % 4;
        if (k0 >= m0 + 16) {
            const int l = min(4 + fb_level(k0 >> 4, m0 >> 4), L - 1);
#pragma unroll
            for (int x = 0; x < 4; ++x) {
                const int s = m0 + g + 8 * (x & 1), t = k0 + t4 + 4 * (x >> 1);
                v[x] = lamS[t * 8 + l] * sA[t * FB_LC + s];
            }
        } else {
#pragma unroll
            for (int x = 0; x < 4; ++x) v[x] = (*this)(m0 + g + 8 * (x & 1), k0 + t4 + 4 * (x >> 1));
        }
    }
};

// X = (I + N)^{-1} by blocks, as gd_forms (gated_delta_forms.cu) solves it: the 16 x 16 diagonal blocks by forward
// substitution in registers (thread = column), then twice X_10 = -X_11 (N_10 X_00) over the 2 HB x 2 HB diagonal blocks
// (HB = 16, 32), a barrier apart: a chain of ~15 + 4 x HB dependent steps instead of 63 steps of shuffles (FB_BSOLVE 0).
// N[i][r] = beta_i (D * K K^T)[i][r] (i > r) at bt[i] DD[r][i]; X[r][s] (r > s) stored at MX[s][r] (unit diagonal
// implied; the lower triangle of MX, M, untouched); S: HB (HB + 1) scratch per diagonal block. Ends with a barrier.
#ifndef FB_BSOLVE
#define FB_BSOLVE 1
#endif
// X_10 = -X_11 (N_10 X_00) in each 2 HB x 2 HB diagonal block of X (fb_solve's layout; none when CH < 2 HB): row i,
// columns j0 + JS u of one block's result for this thread, after a barrier (the previous stage's X written)
template <int HB>
__device__ __forceinline__ void fb_offdiag(const ta* DD, ta* MX, const ta* bt, ta* S) {
    constexpr int NBLK = CH / (2 * HB);
    if constexpr (NBLK >= 1) {
        constexpr int TPB = NT / NBLK, JS = TPB / HB, NJ = HB * HB / TPB;  // threads a block; j step; j's a thread
        static_assert(NT % NBLK == 0 && TPB % HB == 0 && (HB * HB) % TPB == 0, "fb_offdiag: the threads of a block");
        __syncthreads();
        const int tid = threadIdx.x, o = 2 * HB * (tid / TPB), i = tid % TPB % HB, j0 = tid % TPB / HB;
        ta* Sb = S + (tid / TPB) * HB * (HB + 1);
        ta r[NJ];
#pragma unroll
        for (int u = 0; u < NJ; ++u) r[u] = (ta)0;
        const ta bi = bt[o + HB + i];
        for (int m = j0; m < HB; ++m) {  // S = N_10 X_00 (X_00[m][j] = 0 for m < j, 1 at m = j)
            const ta nv = bi * DD[(o + m) * FB_LC + o + HB + i];
#pragma unroll
            for (int u = 0; u < NJ; ++u) {
                const int j = j0 + JS * u;
                r[u] = fma(nv, m > j ? MX[(o + j) * FB_LC + o + m] : (ta)(m == j), r[u]);
            }
        }
#pragma unroll
        for (int u = 0; u < NJ; ++u) Sb[i * (HB + 1) + j0 + JS * u] = r[u];
        __syncthreads();
#pragma unroll
        for (int u = 0; u < NJ; ++u) r[u] = Sb[i * (HB + 1) + j0 + JS * u];
        for (int m = 0; m < i; ++m) {  // X_10 = -X_11 S (X_11[i][m] = 0 for m > i, 1 at m = i)
            const ta xv = MX[(o + HB + m) * FB_LC + o + HB + i];
#pragma unroll
            for (int u = 0; u < NJ; ++u) r[u] = fma(xv, Sb[m * (HB + 1) + j0 + JS * u], r[u]);
        }
#pragma unroll
        for (int u = 0; u < NJ; ++u) MX[(o + j0 + JS * u) * FB_LC + o + HB + i] = -r[u];
    }
}

__device__ __forceinline__ void fb_solve(const ta* DD, ta* MX, const ta* bt, ta* S) {
    const int tid = threadIdx.x;
    if (tid < CH) {  // block b, column c: x = X[16 b ..][16 b + c]
        const int b = tid / 16, c = tid % 16, o = 16 * b;
        ta x[16], nb[16];
#pragma unroll
        for (int i = 0; i < 16; ++i) x[i] = (ta)(i == c), nb[i] = bt[o + i];
#pragma unroll
        for (int r = 0; r < 15; ++r) {
            if (r >= c) {
                const ta xr = x[r];
#pragma unroll
                for (int i = r + 1; i < 16; ++i) x[i] = fma(-nb[i] * DD[(o + r) * FB_LC + o + i], xr, x[i]);
            }
        }
#pragma unroll
        for (int i = 1; i < 16; ++i)
            if (i > c) MX[(o + c) * FB_LC + o + i] = x[i];
    }
    fb_offdiag<16>(DD, MX, bt, S);
    fb_offdiag<32>(DD, MX, bt, S);
    __syncthreads();
}

// The arguments of both entry points (gd_forms_bwd, gd_forms_bwd_x1 at the end):
//   q, k (BH, T, DK); v (BH, T, DV); a, bt (BH, T) log decays, beta; lam (BH, T, L);
//   dqe, dek (BH, n, CH, DK); dph (BH, n, DK, CH); dHc (BH, n, DK, DV); dgc (BH, n); dI (BH, n, CH, DV) (gd_do: GD_DO16's
//   bfloat16, widened exactly where fb_copy loads it);
//   out: dq, dk (BH, T, DK); dv (BH, T, DV); da, dbeta (BH, T); dlam (BH, T, L) (every level of the call's rows written);
//   (q .. lam and dq .. dlam: ti, 16-bit in TI_BF16 builds; the rest ta)
//   dlw (BH, T, L) or null: a gradient of lam from elsewhere (the scan's, of gd_forms' float32 copy lamw), added into dlam
//   FB_XIN 1: xin (BH, n, CH, CH) after n: each chunk's X = (I + N)^{-1} [r][s] as gd_forms' GF_XO build wrote it
// FB_XIN (s27r, R1 of s27p's plan; host: gated_delta_bwd.FORMS_X_SAVED, Config.xs): 1: the kernels take xin (never
// null: the host picks this build only with the forward's X) and copy X from it into sMX's upper triangle (and FB_XF's
// X^T tile in sS) instead of fb_solve and the X^T pass, neither of which is compiled (the forward's X: its solve's FFMA
// order, not fb_solve's, so the gradients move by float32 roundings of X). 0 (default): no such argument, the kernel as
// before. (A runtime fallback to fb_solve on a null xin kept both paths: ptxas spills 84 / 104 B against the default's
// 76 / 80; without it: see NOTES s27r.)
#ifndef FB_XIN
#define FB_XIN 0
#endif
#if FB_XIN
#define FB_XPARAM , const ta *__restrict__ xin
#define FB_XARG , xin
#else
#define FB_XPARAM
#define FB_XARG
#endif
#define FB_PARAMS                                                                                                    \
    const ti *__restrict__ q, const ti *__restrict__ k, const ti *__restrict__ v, const ti *__restrict__ a,          \
        const ti *__restrict__ bt, const ti *__restrict__ lam, const ta *__restrict__ dqe, const ta *__restrict__ dek, \
        const ta *__restrict__ dph, const ta *__restrict__ dHc, const ta *__restrict__ dgc, const gd_do *__restrict__ dI, \
        ti *__restrict__ dq, ti *__restrict__ dk, ti *__restrict__ dv, ti *__restrict__ da, ti *__restrict__ dbeta,   \
        ti *__restrict__ dlam, const ta *__restrict__ dlw, int T, int DK, int DV, int L, i64 p, i64 F, int n FB_XPARAM
#define FB_ARGS q, k, v, a, bt, lam, dqe, dek, dph, dHc, dgc, dI, dq, dk, dv, da, dbeta, dlam, dlw, T, DK, DV, L, p, F, n FB_XARG

// The kernel's body (gd_forms_bwd: X1 false, 3xTF32; gd_forms_bwd_x1: 1xTF32 products under FB_TC)
template <bool X1>
__device__ __forceinline__ void fb_kernel(FB_PARAMS) {
    extern __shared__ __align__(16) unsigned char smem_raw[];
    ta* sK = reinterpret_cast<ta*>(smem_raw);
    ta* sDD = sK + FB_TK;
    ta* sMX = sDD + FB_TT;
    ta* sA = sMX + FB_TT;
    ta* sP = sA + FB_TA;
    ta* sS = sP + FB_TP;
    ta* va = sS + FB_TS;
    ta *vb = va + CH, *veG = vb + CH, *veS = veG + CH, *vdG = veS + CH, *vdS = vdG + CH, *vdb = vdS + CH;
    ta* lamS = vdb + CH;  // [t][l], l < 8
    ta* red = lamS + 8 * CH;
    check_smem(FB_SMEM * sizeof(ta));
    constexpr int R = FB_R, RK = FB_RK, CC = FB_C, CK = FB_CK;
    const int tid = threadIdx.x;
    // the rows of this warp's register tiles (FB_TC: its 16-row band)
    const int wlo = FB_TC ? 16 * (tid / 64) : tid / 32 * 2 * R, whi = wlo + (FB_TC ? 16 : 2 * R);
    // the warp's columns of a CH-column product (FB_TC: one 32-column half; FFMA: every column): a reduction whose
    // B operand vanishes left (right) of the column starts (stops) there; up: the warp's tile lies above the
    // diagonal (every column past every row), skipped in products used only on or below it (FB_CBND 0: no column bounds)
    const int cl = FB_TC && FB_CBND ? 32 * (tid / 32 % 2) : 0, ch = FB_TC && FB_CBND ? cl + 32 : CH;
    const bool up = FB_TC && FB_CBND && cl >= whi;
    const int j = blockIdx.x;
    const i64 bh = blockIdx.y, cj = bh * n + j;
    const i64 t0 = (F + j) * CH - p;  // the call's index of the chunk's first token
    auto in = [&](int t) { return t0 + t >= 0 && t0 + t < T; };
    auto row = [&](int t) { return bh * T + t0 + t; };  // the call's row of token t (in(t))
    // FB_PAIR: the pairs' accesses (fb_ld2 ..) as one when the rows' lengths are even and the arrays aligned
    const auto al = [](const void* x, int b) { return reinterpret_cast<unsigned long long>(x) % b == 0; };
    constexpr int EB = 2 * sizeof(ti), AB = 2 * sizeof(ta);
    const bool pk = FB_PAIR && DK % 2 == 0 && al(q, EB) && al(dk, EB) && al(dq, EB) && al(dek, AB) && al(dqe, AB);
    const bool pv = FB_PAIR && DV % 2 == 0 && al(dv, EB);
    auto X = [&](int r, int s) { return r > s ? sMX[s * FB_LC + r] : (r == s ? (ta)1 : (ta)0); };
    // FB_XR: xr(x) an x1 operand that is a tf32 (a tile rounded where stored, rnd), xi(x) an input's value (TI_BF16:
    // bf16)
    constexpr bool XR = X1 && FB_TC && FB_XR && FB_BF16, XF = FB_XF && FB_BF16;  // (session 24's switches: TI_BF16 only)
    using XT = typename fb_if<XR, fb_x, ta>::type;
    using XIT = typename fb_if<XR && FB_BF16, fb_x, ta>::type;
    const auto xr = [](ta x) { return XT{x}; };
    const auto xi = [](ta x) { return XIT{x}; };
    const auto rnd = [](ta x) { return fb_rnd<XR>(x); };
    auto lamat = [&](int t, int s) { return lamS[t * 8 + min(fb_level(t, s), L - 1)]; };
    // the tiles read as operands in mma's order (FB_LDM: by ldmatrix; EX: the tiles xr / xi pass as tf32s)
    using FTA = fb_ta<XR>;
    using FTB = fb_tb<XR>;

    // ---- the chunk's inputs, decays, D ----
    // the chunk's rows inside the call: r_in <= t < r_out
    const int r_in = t0 < 0 ? (int)-t0 : 0, r_out = T - t0 < CH ? (int)(T - t0) : CH;
    const auto qtile = [&](ta* dst) { fb_copy<CH, DKP>(dst, FB_LK, q, bh * T + t0, DK, r_in, r_out, DK); };
    fb_copy<CH, DKP>(sK, FB_LK, k, bh * T + t0, DK, r_in, r_out, DK);
    qtile(sA);
    for (int t = tid; t < CH; t += NT) {
        va[t] = in(t) ? fb_ld(a + row(t)) : (ta)0;
        vb[t] = in(t) ? fb_ld(bt + row(t)) : (ta)0;
    }
    fb_tile<CH, 8>(lamS, 8, [&](int t, int l) { return (in(t) && l < L) ? fb_ld(lam + row(t) * L + l) : (ta)0; });
    __syncthreads();
    if (tid == 0) {  // e^{G_t}, G_t = a_0 + .. + a_t
        ta s = (ta)0;
        for (int t = 0; t < CH; ++t) veG[t] = ex(s += va[t]);
    } else if (tid == 32) {  // e^{S_s}, S_s = a_{s+1} + .. + a_{CH-1}
        ta s = (ta)0;
        for (int t = CH - 1; t >= 0; --t) {
            veS[t] = ex(s);
            s += va[t];
        }
    } else if (tid >= 64 && tid < 64 + CH) {  // column s of D
        const int s = tid - 64;
        ta c = (ta)0;
        sDD[s * FB_LC + s] = (ta)1;
        for (int t = s + 1; t < CH; ++t) sDD[t * FB_LC + s] = ex(c += va[t]);
    }
    __syncthreads();
    {  // M = D * Q K^T (lower), D * K K^T (strict, at [s][t])
        ta kk[R][CC], qk[R][CC];
        zero_acc(kk);
        zero_acc(qk);
        fb_mm2<X1>(kk, 0, up ? 0 : DKP, FTA{sK, FB_LK}, qk, 0, up ? 0 : DKP, FTA{sA, FB_LK}, FTB{sK, FB_LK});
        fb_each(qk, [&](int t, int s, ta x) {
            if (s <= t) sMX[t * FB_LC + s] = sDD[t * FB_LC + s] * x;
        });
        fb_each(kk, [&](int t, int s, ta x) {
            if (s < t) sDD[s * FB_LC + t] = sDD[t * FB_LC + s] * x;
        });
    }
    __syncthreads();
    // FB_XIN: X from the forward (xin) into sMX's upper triangle and, FB_XF, X^T whole into sS (as the pass below)
    constexpr bool xdone = FB_XIN;
#if FB_XIN
    {
        const ta* xj = xin + cj * CH * CH;
        for (int idx = tid; idx < CH * CH; idx += NT) {
            const int r = idx / CH, s = idx % CH;  // X[r][s] (coalesced), stored at [s][r]
            const ta x = xj[idx];
            if (r > s) sMX[s * FB_LC + r] = x;
            if constexpr (XF) sS[s * FB_LC + r] = rnd(r > s ? x : (ta)(r == s));
        }
    }
#endif
    if constexpr (xdone) {
    } else if constexpr (FB_BSOLVE) {
        if constexpr (!(FB_ABL & 1)) fb_solve(sDD, sMX, vb, sA);
    } else {  // X = (I + N)^{-1}: column c by forward substitution, TPC threads summing every TPC-th term
        constexpr int TPC = NT / CH;
        const int c = tid / TPC, lane = tid % TPC;
        for (int i = 1; i < (FB_ABL & 1 ? 1 : CH); ++i) {
            ta part = (ta)0;
            // X[r][c] (r > c) was stored by this thread (lane (r - c) % TPC): no barrier needed
            if (c < i)
                for (int r = c + lane; r < i; r += TPC) part = fma(vb[i] * sDD[r * FB_LC + i], X(r, c), part);
#pragma unroll
            for (int off = TPC / 2; off > 0; off /= 2) part += __shfl_xor_sync(0xffffffffu, part, off, TPC);
            if (c < i && lane == (i - c) % TPC) sMX[c * FB_LC + i] = -part;
        }
    }
    __syncthreads();
    if constexpr (XF && !xdone) {  // X^T, whole (x1: rounded)
        for (int idx = tid; idx < CH * CH; idx += NT) {
            const int a = idx / CH, b = idx % CH;
            sS[a * FB_LC + b] = rnd(X(b, a));
        }
        __syncthreads();
    }
    {  // W = M X -> sA (Q no longer read), phi = Z^T X diag(beta) -> sP [f][s]
        ta w[R][CC], ph[RK][CC];
        zero_acc(w);
        zero_acc(ph);
        const auto zk = [&](int f, int r) { return veS[r] * sK[r * FB_LK + f]; };
        if constexpr (XF) {  // X[r][s] at sS[s][r]
            fb_mm2<X1>(w, cl, whi, fb_ta<false, 1>{sMX, FB_LC}, ph, cl, CH, zk, FTB{sS, FB_LC});
        } else {
            fb_mm2<X1>(w, cl, whi, fb_ta<false, 1>{sMX, FB_LC}, ph, cl, CH, zk, X);
        }
        fb_each(w, [&](int t, int s, ta x) { sA[t * FB_LC + s] = x; });
        fb_each(ph, [&](int f, int s, ta x) { sP[FB_LM ? s * FB_LK + f : f * FB_LC + s] = rnd(x * vb[s]); });
    }
    __syncthreads();

    // ---- the value passes: P = dI V^T, dphi = dph + dH V^T (registers), dV (written) ----
    ta P[R][CC], dphi[RK][CC];
    zero_acc(P);
    zero_acc(dphi);
    for (int c0 = 0; c0 < DV; c0 += FB_VB) {
        ta* S1 = sS;
        ta* S2 = sS + FB_S1;
        fb_copy<CH, FB_VB, XR>(S1, FB_LV, dI + c0, cj * CH, DV, r_in, r_out, DV - c0);
        fb_copy<CH, FB_VB>(S2, FB_LV, v + c0, bh * T + t0, DV, r_in, r_out, DV - c0);
        __syncthreads();
        fb_mm<X1>(P, 0, FB_VB, FTA{S1, FB_LV}, FTB{S2, FB_LV});
        ta dvv[R][FB_CV];
        zero_acc(dvv);
        if constexpr (FB_LM) fb_mm<X1>(dvv, wlo, CH, fb_lw{lamS, sA, L}, [&](int t, int c) { return xr(S1[t * FB_LV + c]); });
        else fb_mm<X1>(dvv, wlo, CH, [&](int s, int t) {  // (FB_BFREE: both loads made, then the mask: no branch)
                  if constexpr (FB_BFREE && FB_BF16) {
                      const ta x = lamat(t, s) * sA[t * FB_LC + s];
                      return t >= s ? x : (ta)0;
                  } else {
                      return t >= s ? lamat(t, s) * sA[t * FB_LC + s] : (ta)0;
                  } },
              [&](int t, int c) { return xr(S1[t * FB_LV + c]); });
        fb_ij<R, FB_CV>([&](int i, int jj, int s, int c) { dvv[i][jj] *= vb[s]; });  // attn = W diag(beta)
        __syncthreads();
        fb_copy<DKP, FB_VB, XR>(S1, FB_LV, dHc + c0, cj * DK, DV, 0, DK, DV - c0);
        __syncthreads();
        fb_mm<X1>(dphi, 0, FB_VB, FTA{S1, FB_LV}, FTB{S2, FB_LV});
        const auto lc = [&](int f, int c) { return xr(S1[f * FB_LV + c]); };
        if constexpr (FB_LM) fb_mm<X1>(dvv, 0, DKP, FTA{sP, FB_LK}, lc);  // (phi [s][f])
        else fb_mm<X1>(dvv, 0, DKP, [&](int s, int f) { return xr(sP[f * FB_LC + s]); }, lc);
        if constexpr (FB_PAIR) {
            fb_ij2<R, FB_CV>([&](int i, int jj, int s, int c) {
                if (in(s)) fb_st2(dv + row(s) * DV + c0 + c, pv, c0 + c < DV, c0 + c + 1 < DV, dvv[i][jj], dvv[i][jj + 1]);
            });
        } else {
            fb_each(dvv, [&](int s, int c, ta x) {
                if (in(s) && c0 + c < DV) fb_st(dv + row(s) * DV + c0 + c, x);
            });
        }
        __syncthreads();
    }
    fb_each(P, [&](int t, int s, ta x) { sS[t * FB_LC + s] = x; });
    // dqe -> sP (phi no longer read)
    fb_copy<CH, DKP>(sP, FB_LK, dqe, cj * CH, DK, 0, CH, DK);
    __syncthreads();

    // ---- dlam, d attn, d eGK: dQ, dK, dG ----
    const int NLV = min(L, FB_NL);
    // the keys u <= t at level l: [lo, hi) (the last level, l = L - 1: at every level >= l)
    const auto keys = [&](int t, int l, int& lo, int& hi) {
        const bool clip = l == L - 1;
        lo = clip ? 0 : t, hi = t + 1;
        if (l > 0) {
            hi = (t >> (l - 1)) << (l - 1);
            lo = clip ? 0 : ((t >> (l - 1)) & 1 ? hi - (1 << (l - 1)) : hi);
        }
    };
    if constexpr (FB_DLQ) {  // row t by a quad of lanes (every 4th key each, then two shuffles), a level at a time
        const int q = tid % 4;
        for (int t0 = 0; t0 < CH; t0 += NT / 4) {  // (every thread alike: the shuffles)
            const int t = t0 + tid / 4;
            for (int l = 0; l < NLV; ++l) {
                int lo = 0, hi = 0;
                if (t < CH) keys(t, l, lo, hi);
                ta s = (ta)0;
                for (int u = lo + q; u < hi; u += 4) s = fma(sA[t * FB_LC + u] * vb[u], sS[t * FB_LC + u], s);
                s += __shfl_xor_sync(0xffffffffu, s, 1, 32);
                s += __shfl_xor_sync(0xffffffffu, s, 2, 32);
                if (l % 4 == q && t < CH && in(t)) {
                    const i64 at = row(t) * L + l;
                    fb_st(dlam + at, dlw ? s + dlw[at] : s);
                }
            }
            if (t < CH && in(t))
                for (int l = NLV + q; l < L; l += 4) {
                    const i64 at = row(t) * L + l;
                    fb_st(dlam + at, dlw ? (ta)0 + dlw[at] : (ta)0);
                }
        }
    } else
    for (int idx = tid; idx < CH * L; idx += NT) {
        const int t = idx / L, l = idx % L;
        if (!in(t)) continue;
        ta s = (ta)0;
        if (l < NLV) {
            int lo, hi;
            keys(t, l, lo, hi);
            for (int u = lo; u < hi; ++u) s = fma(sA[t * FB_LC + u] * vb[u], sS[t * FB_LC + u], s);
        }
        const i64 at = row(t) * L + l;
        fb_st(dlam + at, dlw ? s + dlw[at] : s);
    }
    // dK's terms are summed in dk's rows of the call (each element by the one thread that owns it in
    // every phase: no registers held across the phases); dQ's in phase H
    {
        ta dat[R][CC];
        zero_acc(dat);
        fb_mm<X1>(dat, 0, up ? 0 : DKP, fb_ta<false>{sP, FB_LK}, FTB{sK, FB_LK});
        ta de[R][CK];
        zero_acc(de);
        const auto lq = [&](int s, int f) { return sP[s * FB_LK + f]; };
        if constexpr (FB_LM) fb_mm<X1>(de, wlo, CH, fb_lt<false>{sA, sA}, lq);
        else fb_mm<X1>(de, wlo, CH, [&](int t, int s) { return s >= t ? sA[s * FB_LC + t] : (ta)0; }, lq);
        ta part[R] = {};
        if constexpr (FB_PAIR) {
            fb_ij2<R, CK>([&](int i, int jj, int t, int f) {
                const bool ok0 = f < DK, ok1 = f + 1 < DK;
                ta e0, e1, q0 = (ta)0, q1 = (ta)0;
                fb_ld2(dek + (cj * CH + t) * DK + f, pk, ok0, ok1, e0, e1);
                if (in(t)) fb_ld2(q + row(t) * DK + f, pk, ok0, ok1, q0, q1);
                const ta dev0 = e0 - vb[t] * de[i][jj], dev1 = e1 - vb[t] * de[i][jj + 1];
                part[i] = fma(q0, sP[t * FB_LK + f], fma(sK[t * FB_LK + f], dev0, part[i]));
                part[i] = fma(q1, sP[t * FB_LK + f + 1], fma(sK[t * FB_LK + f + 1], dev1, part[i]));
                if (in(t)) fb_kput2(dk, dq, row(t) * DK + f, pk, ok0, ok1, veG[t] * dev0, veG[t] * dev1);
            });
        } else {
            fb_ij<R, CK>([&](int i, int jj, int t, int f) {
                const ta dqv = sP[t * FB_LK + f];
                const ta dev = (f < DK ? dek[(cj * CH + t) * DK + f] : (ta)0) - vb[t] * de[i][jj];
                const bool ok = in(t) && f < DK;
                const ta qv = ok ? fb_ld(q + row(t) * DK + f) : (ta)0;
                part[i] = fma(qv, dqv, fma(sK[t * FB_LK + f], dev, part[i]));
                if (ok) fb_kput(dk, dq, row(t) * DK + f, veG[t] * dev);
            });
        }
        fb_rows(part, red, vdG, false);  // (its barriers: every read of P, dqe is done)
        // d attn (lower), stored as dW = d attn diag(beta); dbeta's first column sums, colsum(W * d attn)
        ta cpart[CC] = {};
        fb_ij<R, CC>([&](int i, int jj, int t, int s) {
            const ta x = s <= t ? lamat(t, s) * sS[t * FB_LC + s] - veG[s] * dat[i][jj] : (ta)0;
            cpart[jj] = fma(sA[t * FB_LC + s], x, cpart[jj]);
            sS[t * FB_LC + s] = rnd(x * vb[s]);
        });
        fb_cols(cpart, red, vdb, false);
        fb_each(dphi, [&](int f, int s, ta x) {
            sP[f * FB_LC + s] = rnd(x + (f < DK ? dph[(cj * DK + f) * CH + s] : (ta)0));
        });
        if (tid < CH) vdG[tid] *= veG[tid];
    }
    __syncthreads();

    // ---- dM, dY, dZ, dX: dbeta's second column sums, dS ----
    {
        auto dW = [&](int t, int s) { return xr(sS[t * FB_LC + s]); };  // zero above the diagonal
        {  // dM = dW X^T -> sA (W is no longer read)
            ta dM[R][CC];
            zero_acc(dM);
            if constexpr (FB_LM) fb_mm<X1>(dM, 0, up ? 0 : min(whi, ch), FTA{sS, FB_LC}, fb_xt{sMX});
            else fb_mm<X1>(dM, 0, up ? 0 : min(whi, ch), FTA{sS, FB_LC}, [&](int r, int s) { return X(s, r); });
            fb_each(dM, [&](int t, int s, ta x) { sA[t * FB_LC + s] = s <= t ? x : (ta)0; });
        }
        ta dY[R][CC];  // e^S_r (K dphi)[r][s]
        zero_acc(dY);
        fb_mm<X1>(dY, 0, up ? 0 : DKP, FTA{sK, FB_LK}, [&](int f, int s) { return xr(sP[f * FB_LC + s]); });
        ta cpart[CC] = {};
        fb_ij<R, CC>([&](int i, int jj, int r, int s) {
            dY[i][jj] *= veS[r];
            if (s <= r) cpart[jj] = fma(X(r, s), dY[i][jj], cpart[jj]);
        });
        {
            ta dZ[R][CK];
            zero_acc(dZ);
            if constexpr (FB_LM) fb_mm<X1>(dZ, 0, whi, fb_xs{sMX, vb}, FTB{sP, FB_LC});
            else fb_mm<X1>(dZ, 0, whi, [&](int s, int r) { return X(s, r) * vb[r]; }, FTB{sP, FB_LC});
            ta part[R] = {};
            if constexpr (FB_PAIR) {
                fb_ij2<R, CK>([&](int i, int jj, int s, int f) {
                    part[i] = fma(sK[s * FB_LK + f], dZ[i][jj], part[i]);
                    part[i] = fma(sK[s * FB_LK + f + 1], dZ[i][jj + 1], part[i]);
                    if (in(s)) {
                        const i64 at = row(s) * DK + f;
                        const bool ok0 = f < DK, ok1 = f + 1 < DK;
                        ta k0, k1;
                        fb_kget2(dk, dq, at, pk, ok0, ok1, k0, k1);
                        fb_kput2(dk, dq, at, pk, ok0, ok1, k0 + veS[s] * dZ[i][jj], k1 + veS[s] * dZ[i][jj + 1]);
                    }
                });
            } else {
                fb_ij<R, CK>([&](int i, int jj, int s, int f) {
                    part[i] = fma(sK[s * FB_LK + f], dZ[i][jj], part[i]);
                    if (in(s) && f < DK) {
                        const i64 at = row(s) * DK + f;
                        fb_kput(dk, dq, at, fb_kget(dk, dq, at) + veS[s] * dZ[i][jj]);
                    }
                });
            }
            fb_cols(cpart, red, vdb, true);
            fb_rows(part, red, vdS, false);  // (its barriers: every read of dphi is done)
        }
        ta dX[R][CC];  // M^T dW + dY diag(beta) -> sP
        zero_acc(dX);
        if constexpr (FB_LM) fb_mm<X1>(dX, up ? CH : max(wlo, cl), CH, fb_lt<false>{sMX, sMX}, dW);
        else fb_mm<X1>(dX, up ? CH : max(wlo, cl), CH, [&](int r, int t) { return t >= r ? sMX[t * FB_LC + r] : (ta)0; }, dW);
        fb_ij<R, CC>([&](int i, int jj, int r, int s) {
            sP[r * FB_LC + s] = rnd(s <= r ? fma(dY[i][jj], vb[s], dX[i][jj]) : (ta)0);
        });
        if (tid < CH) vdS[tid] *= veS[tid];
    }
    __syncthreads();

    // ---- dN = strict(-X^T dX X^T): dbeta's row sums; dQ, dK through M and N ----
    {
        ta tm[R][CC];
        zero_acc(tm);
        fb_mm<X1>(tm, up ? CH : max(wlo, cl), CH, fb_ta<false, 2>{sMX, FB_LC}, [&](int r, int s) { return xr(sP[r * FB_LC + s]); });
        fb_each(tm, [&](int i, int s, ta x) { sS[i * FB_LC + s] = rnd(x); });  // d attn no longer read
    }
    __syncthreads();
    {
        ta dN[R][CC];
        zero_acc(dN);
        if constexpr (FB_LM) fb_mm<X1>(dN, 0, up ? 0 : min(whi, ch), FTA{sS, FB_LC}, fb_xt{sMX});
        else fb_mm<X1>(dN, 0, up ? 0 : min(whi, ch), FTA{sS, FB_LC}, [&](int b, int r) { return X(r, b); });
        ta part[R] = {};
        fb_ij<R, CC>([&](int i, int jj, int t, int r) {
            dN[i][jj] = r < t ? -dN[i][jj] : (ta)0;
            part[i] = fma(dN[i][jj], r < t ? sDD[r * FB_LC + t] : (ta)0, part[i]);
        });
        fb_rows(part, red, vdb, true);  // (its barriers: X^T dX and dX no longer read)
        fb_each(dN, [&](int t, int r, ta x) { sP[t * FB_LC + r] = x; });
        qtile(sS);  // Q -> sS
    }
    __syncthreads();
    auto dQK = [&](int t, int s) { return s <= t ? sA[t * FB_LC + s] * sDD[t * FB_LC + s] : (ta)0; };
    auto dKK = [&](int t, int s) { return s < t ? sP[t * FB_LC + s] * vb[t] * sDD[t * FB_LC + s] : (ta)0; };
    auto dKKs = [&](int t, int s) {  // dKK(t, s) + dKK(s, t): one of the two is 0 (FB_LDM: that one's loads not made)
        if constexpr (FB_LM) {
            const int hi = max(t, s), at = hi * FB_LC + min(t, s);
            return t != s ? sP[at] * vb[hi] * sDD[at] : (ta)0;
        } else {
            return dKK(t, s) + dKK(s, t);
        }
    };
    auto eD = [&](int t, int s) {  // E[t][s] = (D * dD)[t][s]
        return s < t ? sP[t * FB_LC + s] * vb[t] * sDD[s * FB_LC + t] + sA[t * FB_LC + s] * sMX[t * FB_LC + s] : (ta)0;
    };
    {
        auto lk = [&](int s, int f) { return xi(sK[s * FB_LK + f]); };
        ta dQ[R][CK], dK[R][CK];
        zero_acc(dQ);
        zero_acc(dK);
        if constexpr (FB_LM) fb_mm2<X1>(dQ, 0, whi, fb_tp{sA, sDD, FB_LC}, dK, 0, CH, dKKs, lk);
        else fb_mm2<X1>(dQ, 0, whi, dQK, dK, 0, CH, dKKs, lk);
        const auto lq = [&](int s, int f) { return xi(sS[s * FB_LK + f]); };
        if constexpr (FB_LM) fb_mm<X1>(dK, wlo, CH, fb_lt<true>{sA, sDD}, lq);
        else fb_mm<X1>(dK, wlo, CH, [&](int t, int s) { return dQK(s, t); }, lq);
        if constexpr (FB_PAIR) {  // (dK's stores before dq's: FB_H keeps dk's partial sums' low halves in dq)
            fb_ij2<R, CK>([&](int i, int jj, int t, int f) {
                if (in(t)) {
                    const i64 at = row(t) * DK + f;
                    const bool ok0 = f < DK, ok1 = f + 1 < DK;
                    ta k0, k1;
                    fb_kget2(dk, dq, at, pk, ok0, ok1, k0, k1);
                    fb_st2(dk + at, pk, ok0, ok1, k0 + dK[i][jj], k1 + dK[i][jj + 1]);
                }
            });
            fb_ij2<R, CK>([&](int i, int jj, int t, int f) {  // + e^G dqe
                if (in(t)) {
                    const bool ok0 = f < DK, ok1 = f + 1 < DK;
                    ta e0, e1;
                    fb_ld2(dqe + (cj * CH + t) * DK + f, pk, ok0, ok1, e0, e1);
                    fb_st2(dq + row(t) * DK + f, pk, ok0, ok1, fma(veG[t], e0, dQ[i][jj]), fma(veG[t], e1, dQ[i][jj + 1]));
                }
            });
        } else {
            fb_each(dK, [&](int t, int f, ta x) {  // (before dq's store: FB_H keeps dk's partial sums' low halves in dq)
                if (in(t) && f < DK) {
                    const i64 at = row(t) * DK + f;
                    fb_st(dk + at, fb_kget(dk, dq, at) + x);
                }
            });
            fb_each(dQ, [&](int t, int f, ta x) {  // + e^G dqe
                if (in(t) && f < DK) fb_st(dq + row(t) * DK + f, fma(veG[t], dqe[(cj * CH + t) * DK + f], x));
            });
        }
    }
    __syncthreads();

    // ---- the log decays: E = D * dD (strict), its sums over s < r <= t ----
    ta* sE = sS;
    for (int idx = tid; idx < CH * CH; idx += NT) sS[idx / CH * FB_LC + idx % CH] = eD(idx / CH, idx % CH);
    __syncthreads();
    if (tid < CH) {  // column s: E[r][s] <- sum_{t >= r} E[t][s]
        const int s = tid;
        ta c = (ta)0;
        for (int t = CH - 1; t > s; --t) sE[t * FB_LC + s] = (c += sE[t * FB_LC + s]);
    }
    __syncthreads();
    if (tid < CH) {
        const int r = tid;
        ta x = dgc[cj];
        for (int s = 0; s < r; ++s) x += sE[r * FB_LC + s] + vdS[s];
        for (int t = r; t < CH; ++t) x += vdG[t];
        if (in(r)) {
            fb_st(da + row(r), x);
            fb_st(dbeta + row(r), vdb[r]);
        }
    }
}

// FB_MINB: the tensor-core builds' blocks an SM in the launch bounds (2: 128 registers; 1: a timing build, NOTES s27p)
#ifndef FB_MINB
#define FB_MINB 2
#endif
extern "C" __global__ void __launch_bounds__(NT, FB_TC ? FB_MINB : 1) gd_forms_bwd(FB_PARAMS) { fb_kernel<false>(FB_ARGS); }
extern "C" __global__ void __launch_bounds__(NT, FB_TC ? FB_MINB : 1) gd_forms_bwd_x1(FB_PARAMS) { fb_kernel<true>(FB_ARGS); }
