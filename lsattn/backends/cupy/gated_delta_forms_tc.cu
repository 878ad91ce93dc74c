// gd_forms (gated_delta_forms.cu, compiled after this file): its configuration, the layout of its shared tiles,
// the loads of its inputs and its tensor-core products (gf_tc: 3xTF32 m16n8k8, each warp a 16 x 32 tile).
// (Split from gated_delta_forms.cu in session 15; the kernel and its FFMA helpers stay there.)
// float32 at CH = DKP = 64: the five products after the solve (M X, attn e^G K, X^T Z, phi V,
// (Lambda * attn) V) on tensor cores, every operand split into tf32 halves (3xTF32: ~2^-21 relative,
// fp32 sums, as gd_scan), each warp a 16 x 32 tile, and for float32 inputs K K^T and Q K^T as well;
// else FFMA (GF_TF32 0: a timing build). bfloat16 inputs: those five in 1xTF32 (GF_X1, s17d16), as their scan's.
// GF_XO (s27r, R1 of s27p's plan; the training forward's build where gated_delta_bwd.FORMS_X_SAVED is on: Config.xs):
// gd_forms takes one more argument, xo (BH, n, CH, CH) in the compute type or null, and writes there each chunk's X =
// (I + N)^{-1} [r][s] as its solve left it (lower triangle, unit diagonal, zeros above), for gd_forms_bwd's FB_XIN
// build to read instead of solving again. 0: the argument absent, the kernel as before (the inference builds).
#ifndef GF_XO
#define GF_XO 0
#endif
#ifndef GF_TF32
#define GF_TF32 1
#endif
constexpr bool GF_TF = GF_TF32 && sizeof(ta) == 4 && CH == 64 && DKP == 64;
// GF_TF: rows padded by 8 (the fragments' 32 lanes on 32 banks; 75 KB, still 3 blocks per SM) and the Q /
// K tiles swizzled by row (GF_WIDE 0: padded by 4, swizzled by groups of GF_RC rows, a timing build)
#ifndef GF_WIDE
#define GF_WIDE 1
#endif
constexpr bool GF_TFW = GF_TF && GF_WIDE;
constexpr int GF_PAD = GF_TFW ? 8 : 4;
constexpr int GF_LD = CH + GF_PAD;                   // row stride of the CH x CH tiles
constexpr int GF_LK = DKP + GF_PAD;                  // row stride of phi^T [s][kk]
constexpr int GF_VB = DKP < 64 ? DKP : 64;           // value columns per pass
constexpr int GF_LV = GF_VB + GF_PAD;                // row stride of the value tile
constexpr int GF_RC = CH / 16;                       // rows (columns) per thread of a CH x CH product
constexpr int GF_G = DKP / 4;                        // 4-element groups per row of the Q / K tiles
constexpr int GF_NL = CH == 16 ? 5 : (CH == 32 ? 6 : 7);  // the chunk-local levels 0 .. log2 CH
constexpr int GF_SW = CH < 32 ? 32 : CH;             // threads of the warp stage of the solve
constexpr bool GF_TRI = true;                        // triangular reduction ranges (false: full, for timing)
// bf16 inputs at CH = 64: K K^T and Q K^T on tensor cores (mma.sync m16n8k16: the tiles hold bf16
// values, so the products are exact and summed in fp32, as FFMA on the widened values)
#ifndef GF_TC
#define GF_TC (TI_BF16 && CH == 64)
#endif
// the chunk's V and level-weight rows prefetched towards L2 at the block's start (0: off, for timing;
// H200, 8K, session 13: bf16 inputs 0.472 -> 0.462 ms, float32 unchanged)
#ifndef GF_PREV
#define GF_PREV 1
#endif
// bf16 inputs at CH = DKP = 64, float32 compute (GF_TC with GF_TF): Q, K and V held in shared memory as the 16-bit
// values they are (exact: the products read the same numbers), attn^T written over M^T and phi^T over X (each
// product's results held in registers across a barrier, gf_tc<.., true>): 55 KB, 4 blocks per SM instead of 3
// (GF_H16 0: the float32 tiles, a timing build). With the B operands by ldmatrix (GF_LDM), H200, 8K, session 14: 0.430
// ms against the float32 tiles' 0.463 (without ldmatrix 0.486: the 16-bit layout alone is no gain)
#ifndef GF_H16
#define GF_H16 1
#endif
constexpr bool GF_H = GF_H16 && GF_TC && GF_TF;
// GF_LAM1 (s17d16): the level weights' staging and lam's checked copy in the load phase by every thread (GF_LAMP: the
// 16-bit tiles' build) or beside the solve's warp stage by the other 6 warps (the float32 tiles; GF_LAM1 0: every build,
// a timing build); the same values, the same stores. H200, 8K: bf16 inputs 0.343 -> 0.340 ms, float32 0.472 -> 0.479
#ifndef GF_LAM1
#define GF_LAM1 1
#endif
constexpr bool GF_LAMP = GF_LAM1 && GF_H;
// GF_S64 (s19b16): the solve's 64 x 64 stage (X_10 = -X_11 (N_10 X_00) over 32 x 32 blocks, gf_offdiag64) reduces only
// over the terms X_00, X_11 leave nonzero (both lower triangular: 528 of the 1024 per column / row), each warp a pair of
// column groups (4 p .. and 28 - 4 p ..: 36 m-steps of 2 columns) / of row groups, N_10 and X_11 rows read 4 m at a time
// (4 rows of 72 floats per 8 lanes: conflict-free); the same terms in the same order (skipped: exact zeros), so the
// same sums bit for bit (0: every thread 32 m-steps of 4 columns / 1 row, the kernel before)
#ifndef GF_S64
#define GF_S64 1
#endif
// GF_OD4 (s19b16): the warp stage's 32 x 32 blocks alike (gf_offdiag16: a lane's 8 columns / 4 rows spread over the 4
// groups, the m-steps of each 4-block only for the groups it reaches: 10 of 16 per column / row; 0: the kernel before)
#ifndef GF_OD4
#define GF_OD4 1
#endif
// GF_QSH (s19b16; 16-bit tiles with GF_S64 and GF_OD4, which read no zero of X above the diagonal's 16 x 16 blocks): the
// solve's scratch in X's upper right 32 x 32 block (rows 0 .. 31, columns 32 .. 63 of R2: never read after the solve
// either), so Q's 16-bit tile stays whole and qeff reads Q's pairs there (one 4-byte shared load) instead of again from
// global memory; the same values (0: Q again from the input, the solve's scratch over Q's tile)
#ifndef GF_QSH
#define GF_QSH 1
#endif
// GF_VEA (s19b16; 16-bit tiles, d_v % 8 == 0, v 16-byte aligned): the first value block's rows copied into K's tile by
// cp.async before the level weights' pass over attn (K is read no more) instead of loaded after it: their latency under
// that pass, no registers held (0: after it)
#ifndef GF_VEA
#define GF_VEA 1
#endif
// GF_LAM4 (s19b16): Lambda's pass over attn takes one level per group of 4 tokens t0 .. t0 + 3 where s < t0 (bit_length of
// (t0 + e) XOR s is that of t0 XOR s: s lies in an earlier group), in 32-bit integers (fen_level's are 64-bit); the same
// levels (0: fen_level per element)
#ifndef GF_LAM4
#define GF_LAM4 1
#endif
// GF_GZB (s19b16; K K^T / Q K^T on bf16 tensor cores): G_t and the suffix after t of a token on one thread of warps 1 and
// 5 (no mma / 16 mma in that phase) instead of G on warps 0-1 and the suffix on warps 2-3 (warp 2: the longest suffixes,
// 32 mma and the decay map's long middle sums); the same sums in the same order (0: as before)
#ifndef GF_GZB
#define GF_GZB 1
#endif
// GF_DROW (s19b16): the 16 x 16 diagonal blocks' forward substitution by rows (x_i = e_c - sum_{c <= r < i} N[i][r] x_r,
// row i of N by 16-byte loads: 40 instead of 120 loads per thread) instead of by columns; each x_i's updates in the same
// order (r ascending), so the same values (0: by columns)
#ifndef GF_DROW
#define GF_DROW 1
#endif
constexpr bool GF_QS = GF_QSH && GF_H && GF_S64 && GF_OD4 && CH == 64;
constexpr bool GF_VE = GF_VEA && GF_H && GF_VB == 64;
// (s22b16's GF_VQ, the first value block by cp.async into Q's tile right after each warp's qeff, landed by the barrier
// after phi: H200, 8K, neutral (0.2688 / 0.2686 ms), and racecheck reported a hazard in that build only; removed.)
constexpr int gf_max(int a, int b) { return a > b ? a : b; }
// bit_length of x >= 0 (fen_level's in 32 bits)
__device__ __forceinline__ int gf_bitlen32(int x) {
#ifdef __CUDA_ARCH__
    return 32 - __clz(x);
#else
    return x ? 32 - __builtin_clz((unsigned)x) : 0;
#endif
}
// the four tiles (sizes in ta): Q, then attn^T (and the solve's scratch); K, then V; N, then X;
// M^T = (D * Q K^T)^T, then phi^T
constexpr int GF_S0 = gf_max(gf_max(CH * DKP, CH * GF_LD), 32 * 36);
constexpr int GF_S1 = gf_max(CH * DKP, CH * GF_LV);
constexpr int GF_S2 = CH * GF_LD;
constexpr int GF_S3 = gf_max(CH * GF_LD, CH * GF_LK);
constexpr int GF_SMEM = GF_S0 + GF_S1 + GF_S2 + GF_S3 + 4 * CH + 8 * CH;  // + a, beta, e^G, e^Z; Lambda's levels
// GF_H: Q, then the solve's scratch; K, then V (16-bit tiles of CH x 64); N, then X, then phi^T; M^T, then attn^T
constexpr int GF_HB = CH * 64 * 2;  // bytes of a 16-bit tile
static_assert(!GF_H || (32 * 36 * 4 <= GF_HB && GF_LK == GF_LD), "GF_H: the scratch in Q's place, phi^T in X's");
constexpr unsigned GF_SMEM_BYTES = GF_H ? 2 * GF_HB + (2 * CH * GF_LD + 12 * CH) * 4 : GF_SMEM * sizeof(ta);

// Element (t, f) of a swizzled [t][f] tile: group f / 4 of row t at group (f / 4) XOR (t / GF_RC).
__device__ __forceinline__ int gf_grp(int t, int g) {
    return t * DKP + ((g ^ ((GF_TFW ? t : t / GF_RC) & (GF_G - 1))) << 2);
}
__device__ __forceinline__ int gf_el(int t, int f) { return gf_grp(t, f >> 2) + (f & 3); }
// W consecutive columns c0 .. c0 + W - 1 of row t of a swizzled tile (c0 a multiple of min(W, 4))
template <int W>
__device__ __forceinline__ void gf_ldk(const ta* S, int t, int c0, ta (&o)[W]) {
    if constexpr (W >= 4) {
#pragma unroll
        for (int u = 0; u < W; u += 4) {
            ta x[4];
            ldv<4>(S + gf_grp(t, (c0 + u) >> 2), x);
#pragma unroll
            for (int e = 0; e < 4; ++e) o[u + e] = x[e];
        }
    } else {
        ldv<W>(S + gf_grp(t, c0 >> 2) + (c0 & 3), o);
    }
}

// Whether rows of D columns of src can be read 4 elements at a time (gf_ld4's vector loads).
__device__ __forceinline__ bool gf_vec(const ti* src, int D) {
    return D % 4 == 0 && reinterpret_cast<unsigned long long>(src) % (sizeof(ti) == 8 ? 16 : 4 * sizeof(ti)) == 0;
}

// Columns c .. c + 3 of row g of src (row stride ldr, D columns), zero outside tokens [0, T) and
// columns [0, D): one 8- or 16-byte load when vec (gf_vec), else element by element.
__device__ __forceinline__ void gf_ld4(const ti* src, i64 g, int c, int T, int D, int ldr, bool vec, ta (&o)[4]) {
#pragma unroll
    for (int e = 0; e < 4; ++e) o[e] = (ta)0;
    if (g < 0 || g >= T || c >= D) return;
    const ti* p = src + g * ldr + c;
    if (vec) {
#if defined(__CUDA_ARCH__) && TI_BF16
        const uint2 u = __ldg(reinterpret_cast<const uint2*>(p));
        o[0] = __uint_as_float(u.x << 16), o[1] = __uint_as_float(u.x & 0xffff0000u);
        o[2] = __uint_as_float(u.y << 16), o[3] = __uint_as_float(u.y & 0xffff0000u);
#elif defined(__CUDA_ARCH__) && !TI_F16
        if constexpr (sizeof(ta) == 4) {
            const float4 x = __ldg(reinterpret_cast<const float4*>(p));
            o[0] = x.x, o[1] = x.y, o[2] = x.z, o[3] = x.w;
        } else {
            const double2 x = __ldg(reinterpret_cast<const double2*>(p)), y = __ldg(reinterpret_cast<const double2*>(p) + 1);
            o[0] = x.x, o[1] = x.y, o[2] = y.x, o[3] = y.y;
        }
#else  // float16 (and the CPU emulation, which checks the alignment the GPU needs)
#ifndef __CUDA_ARCH__
        if (reinterpret_cast<unsigned long long>(p) % (sizeof(ti) == 8 ? 16 : 4 * sizeof(ti))) std::abort();
#endif
#pragma unroll
        for (int e = 0; e < 4; ++e) o[e] = ld(p + e);
#endif
        return;
    }
#pragma unroll
    for (int e = 0; e < 4; ++e) o[e] = c + e < D ? ld(p + e) : (ta)0;
}

// x[0 .. 3] into shared memory at p (16-byte aligned): one vector store.
__device__ __forceinline__ void gf_st4(ta* p, const ta (&x)[4]) {
#ifdef __CUDA_ARCH__
    if constexpr (sizeof(ta) == 4) {
        *reinterpret_cast<float4*>(p) = make_float4(x[0], x[1], x[2], x[3]);
    } else {
        reinterpret_cast<double2*>(p)[0] = make_double2(x[0], x[1]);
        reinterpret_cast<double2*>(p)[1] = make_double2(x[2], x[3]);
    }
#else
    if (reinterpret_cast<unsigned long long>(p) % 16) std::abort();
#pragma unroll
    for (int e = 0; e < 4; ++e) p[e] = x[e];
#endif
}

// x[0 .. 3] rounded to bfloat16 into p (8-byte aligned; GD_H16's e^G K): one 8-byte store
__device__ __forceinline__ void gf_st4(gd_bf* p, const ta (&x)[4]) {
#ifndef __CUDA_ARCH__
    if (reinterpret_cast<unsigned long long>(p) % 8) std::abort();
#endif
    *reinterpret_cast<unsigned long long*>(p) =
        (unsigned long long)gd_bfr2(x[0], x[1]) | ((unsigned long long)gd_bfr2(x[2], x[3]) << 32);
}

// Element (t, f) of a 16-bit [t][f] tile of 64 columns (GF_H; rows of 128 bytes): the 16-byte pieces of row t
// XOR-swizzled by t % 8, so that the fragment loads (pairs along f: K K^T, Q K^T; single elements at tokens
// k0 + t4 and columns n0 + 8 i + g: K and V as B operands) fall on distinct banks.
__device__ __forceinline__ int gf_h(int t, int f) { return t * 64 + ((((f >> 3) ^ t) & 7) << 3) + (f & 7); }
__device__ __forceinline__ ta gf_wid(unsigned short h) { return (ta)__uint_as_float((unsigned)h << 16); }

// GF_H: columns c .. c + 3 of row g of the 16-bit src (as gf_ld4: zero outside tokens [0, T) and columns [0, D))
// into the 16-bit tile at dst (8-byte aligned) as they are; x * 0 of each folded into nf.
__device__ __forceinline__ void gf_st4h(const ti* src, i64 g, int c, int T, int D, int ldr, bool vec, ti* dst, ta& nf) {
    unsigned short x[4] = {0, 0, 0, 0};
    if (g >= 0 && g < T && c < D) {
        const ti* p = src + g * ldr + c;
        if (vec) {
#ifdef __CUDA_ARCH__
            const uint2 u = __ldg(reinterpret_cast<const uint2*>(p));
            x[0] = u.x & 0xffffu, x[1] = u.x >> 16, x[2] = u.y & 0xffffu, x[3] = u.y >> 16;
#else
            if (reinterpret_cast<unsigned long long>(p) % 8) std::abort();
#pragma unroll
            for (int e = 0; e < 4; ++e) x[e] = p[e];
#endif
        } else {
#pragma unroll
            for (int e = 0; e < 4; ++e) x[e] = c + e < D ? p[e] : 0;
        }
    }
#pragma unroll
    for (int e = 0; e < 4; ++e) nf = fma(gf_wid(x[e]), (ta)0, nf);
#ifdef __CUDA_ARCH__
    *reinterpret_cast<uint2*>(dst) = make_uint2(x[0] | ((unsigned)x[1] << 16), x[2] | ((unsigned)x[3] << 16));
#else
    if (reinterpret_cast<unsigned long long>(dst) % 8) std::abort();
#pragma unroll
    for (int e = 0; e < 4; ++e) dst[e] = x[e];
#endif
}

// GF_TF: the warp's 16 x 32 tile (rows m0 .., columns n0 .., as 4 tiles of 16 x 8) of a 64 x 64
// product over reduction indices [lo, hi) (multiples of 8), operand elements la(row, k), lb(k, column),
// stored through store(row, column, value) (every element of the tile, zeros included).
// BX: every B element is exactly a tf32 value (16-bit inputs: K, V widened from bfloat16 / float16, whose
// mantissas fit tf32's 10 bits): its low half is zero, so B is not split and A_hi B_lo is not issued (the same
// sums: the dropped terms are exact zeros), 2 mma per tile and k-step instead of 3
#ifndef GF_BEXACT
#define GF_BEXACT 1
#endif
#ifndef TI_F16  // (common.cu's default; the CPU emulation defines TI_BF16 only)
#define TI_F16 0
#endif
constexpr bool GF_BX = GF_BEXACT && (TI_BF16 || TI_F16);
// GF_H: the B operands read from the 16-bit tiles (K, V) four fragments at a time by one ldmatrix.x4.trans (gf_ldb)
// instead of 8 single 16-bit loads per k-step (GF_LDM 0: the single loads, a timing build)
#ifndef GF_LDM
#define GF_LDM 1
#endif
constexpr bool GF_HL = GF_H && GF_LDM && GF_BX;
// GF_X1 (bfloat16 inputs, s17d16): gf_tc's products (the five after the solve) in 1xTF32, as gd_scan / the two-tier
// scan's for these callers (GD_X1): one mma per tile and k-step, A (and B where not exact) rounded to tf32 (cvt.rna's
// bits, gf_rna), no low halves: ~2^-11 relative per product term, against the bfloat16 output's 2^-9 (0: 3xTF32, the
// kernel before; float16 inputs, whose output keeps 11 bits, and float32 stay 3xTF32)
#ifndef GF_X1
#define GF_X1 1
#endif
constexpr bool GF_1X = GF_X1 && TI_BF16 && GF_TF;
// GF_B16 (s22b16; GD_S16 builds only: bf16 inputs on the two-tier path, whose intermediates are stored as bfloat16):
// gf_tc's products by bf16 mma.sync m16n8k16 (K16), the float32 operand rounded to bfloat16 (to nearest even), one
// mma per tile and 16 k instead of two: each product's per-warp mma chain halved. A bit per product: 1 qeff (attn e^G
// times K), 2 phi (X e^Z times K), 4 H (phi V), 8 the intra output ((Lambda * attn) V), 16 attn (M X: X rounded
// too). 0: 1xTF32 (the kernel before). The S16 bound (1e-2) measured in the emulation (NOTES, s22b16).
#ifndef GF_B16
#define GF_B16 15
#endif
constexpr int GF_B16M = GD_H16 && GF_HL ? GF_B16 : 0;
// GF_ALDM (s22b16; bits 1, 4, 8 of GF_B16): the A operands of qeff, H and the intra output stored by their producers
// as 16-bit tiles [k][m] (gf_h) of the bfloat16 values K16 would round them to, and read by one ldmatrix.x4.trans per
// 16 k (gf_lda) instead of 8 loads, their scales and 4 cvt: attn's epilogue writes (attn e^G)^T and (Lambda * attn)^T
// (the level weights' pass over attn folded in: the same products in the same order) over M^T, phi's writes phi^T over
// X; the same bf16 operands, so the same sums bit for bit (0: float32 tiles, the pass, K16's loads)
#ifndef GF_ALDM
#define GF_ALDM 1
#endif
constexpr bool GF_AL = GF_ALDM && (GF_B16M & 13) == 13;
// GF_STG (s26d; GF_AL builds with bfloat16 intermediates and output sums, GD_H16 and GD_O16, d_v <= 64): qeff, H and the
// intra output staged as bfloat16 tiles in shared memory (gf_h) by their epilogues (qeff over Q's tile, its pair read
// there first; H over Q's tile after qeff's rows went out; the intra output over (attn e^G)^T, read by qeff only) and
// copied to global memory by 16-byte stores, whole 128-byte rows at d = 64, instead of 4-byte stores of 8 rows x 16
// bytes per warp instruction (bit 1); phi likewise (bit 2: staged as [f][s] over (attn e^G)^T, free after qeff, instead
// of 16 2-byte stores a thread, each warp instruction 4 x 2 rows x 16 B); the same roundings of the same sums
// (bit-equal). 0: the stores from the epilogues. Default 3: gd_forms alone 0.92x of 0 at 16K / 32K (H200, session 27).
#ifndef GF_STG
#define GF_STG 3
#endif
#ifdef DVP  // (the value columns in one pass: d_v <= 64)
constexpr bool GF_SGOK = GF_AL && GD_H16 && GD_O16 && DVP == 64;
#else  // (the CPU emulation, d_v at run time: its test gives DVP)
constexpr bool GF_SGOK = false;
#endif
constexpr bool GF_SG = (GF_STG & 1) && GF_SGOK, GF_SP = (GF_STG & 2) && GF_SGOK;
// GF_FEX (s26d; GD_H16 + GD_O16 builds: the public bf16 call's; the training forward keeps expf): the decay table's and e^G's / e^{suffix}'s exponentials (arguments
// <= 0) by the hardware ex2 (fex: ~2 instructions, ~1e-6 relative) instead of expf (~1 ulp, range reduction and fixups:
// ~10 instructions); the products see them through bfloat16 roundings of 2^-9. 0: expf (a timing build).
#ifndef GF_FEX
#define GF_FEX 0
#endif
__device__ __forceinline__ ta gf_ex(ta x) {
    if constexpr (GF_FEX && GD_H16 && GD_O16) return fex(x);
    else return ex(x);
}
// GF_SG: rows [0, R) and columns [0, C) of the 16-bit tile src (gf_h, 64 x 64) into dst (row stride C, 16-byte aligned
// when C % 8 == 0), 8 columns a thread at a time (one 16-byte store where whole; a warp: 4 rows of 64 columns)
__device__ __forceinline__ void gf_tile_out(const ti* src, gd_bf* dst, int R, int C) {
#pragma unroll
    for (int u = 0; u < 64 * 8 / NT; ++u) {
        const int i8 = threadIdx.x + NT * u, t = i8 / 8, c = 8 * (i8 % 8);
        if (t >= R || c >= C) continue;
        if (C % 8 == 0) {
#ifdef __CUDA_ARCH__
            *reinterpret_cast<uint4*>(dst + t * C + c) = *reinterpret_cast<const uint4*>(src + gf_h(t, c));
#else
            if (reinterpret_cast<unsigned long long>(dst + t * C + c) % 16) std::abort();
            for (int e = 0; e < 8; ++e) dst[t * C + c + e].u = src[gf_h(t, c) + e];
#endif
        } else {
            for (int e = 0; e < 8 && c + e < C; ++e) dst[t * C + c + e].u = src[gf_h(t, c) + e];
        }
    }
}
// (s22b16's GF_HOF, H and the intra output in one k loop sharing V's fragments (52 bytes spilled): H200, 8K, +3.6%
// against two gf_tc calls; removed. GF_B16U, K16's loop unrolled by 2: 20 bytes spilled, never timed; removed.)

// GF_HL: the B fragments of the 4 tiles i (columns n0 + 8 i ..) of k-step k0 from the 16-bit tile B [k][n] (gf_h):
// r[i] = B(k0 + t4, n0 + 8 i + g) | B(k0 + t4 + 4, n0 + 8 i + g) << 16. ldmatrix .trans hands lane 4 g + t4 rows 2 t4
// and 2 t4 + 1 of column g of each 8 x 8 matrix; the rows' addresses (lane j of matrix i: row j) are tokens
// k0 + {0, 4, 1, 5, 2, 6, 3, 7}, so that pair is (k0 + t4, k0 + t4 + 4), the tf32 fragment's b0, b1. The swizzle of row
// k0 + r (k0 a multiple of 8) is r's: the lane's address is gf_ldb_at's (k-step 0) + k0 * 128 bytes.
__device__ __forceinline__ unsigned gf_ldb_at(const ti* B, int n0) {
#ifdef __CUDA_ARCH__
    const int lane = threadIdx.x % 32, j = lane & 7;
    return smem_u32(B + gf_h((j >> 1) + 4 * (j & 1), n0 + 8 * (lane >> 3)));
#else
    return 0;
#endif
}
__device__ __forceinline__ void gf_ldb(const ti* B, unsigned at, int k0, int n0, unsigned (&r)[4]) {
#ifdef __CUDA_ARCH__
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(at + k0 * 128));
#else
    const int g = threadIdx.x % 32 / 4, t4 = threadIdx.x % 4;
#pragma unroll
    for (int i = 0; i < 4; ++i)
        r[i] = (unsigned)B[gf_h(k0 + t4, n0 + 8 * i + g)] | ((unsigned)B[gf_h(k0 + t4 + 4, n0 + 8 * i + g)] << 16);
#endif
}
// GF_AL: an A operand held transposed in a 16-bit tile, A(m, k) = p[gf_h(k, m)] (bfloat16 values)
struct GfAH {
    const ti* p;
};
template <typename LA> struct gf_ah { static constexpr bool v = false; };
template <> struct gf_ah<GfAH> { static constexpr bool v = true; };
// GfAH's fragment of the 16-step k0 (rows m0 .., K16's k order: slots 2 t4, 2 t4 + 1, + 8, + 9 carry k0 + t4, + 4, + 8,
// + 12) by one ldmatrix.x4.trans: matrix i holds tokens k0 + 8 (i / 2) .. (gf_ldb's row order) at columns m0 + 8 (i % 2)
__device__ __forceinline__ unsigned gf_lda_at(const ti* A, int m0) {
#ifdef __CUDA_ARCH__
    const int lane = threadIdx.x % 32, j = lane & 7, i = lane >> 3;
    return smem_u32(A + gf_h(8 * (i >> 1) + (j >> 1) + 4 * (j & 1), m0 + 8 * (i & 1)));
#else
    return 0;
#endif
}
__device__ __forceinline__ void gf_lda(const ti* A, unsigned at, int k0, int m0, unsigned (&r)[4]) {
#ifdef __CUDA_ARCH__
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(at + k0 * 128));
#else
    const int g = threadIdx.x % 32 / 4, t4 = threadIdx.x % 4;
#pragma unroll
    for (int x = 0; x < 4; ++x) {
        const int k = k0 + 8 * (x >> 1) + t4, m = m0 + 8 * (x & 1) + g;
        r[x] = (unsigned)A[gf_h(k, m)] | ((unsigned)A[gf_h(k + 4, m)] << 16);
    }
#endif
}
// common.cu's tf32_split by integer operations: (bits + 0x1000) with the low 13 bits cleared is cvt.rna.tf32.f32 of
// every finite x (the magnitude plus half a tf32 ulp, truncated), the same bits in 5 instructions instead of 7 (cvt's
// test for inf / NaN and its select; ptxas drops the low part's mask, which only the mma reads); a non-finite x gives
// non-finite parts (the products are not finite either way). H200, 8K, session 15: bf16 inputs -2.7% (0.482 -> 0.469 ms).
__device__ __forceinline__ unsigned gf_rna(float x) { return (__float_as_uint(x) + 0x1000u) & 0xffffe000u; }
__device__ __forceinline__ void gf_split(float x, unsigned& hi, unsigned& lo) {
    hi = gf_rna(x);
    lo = gf_rna(x - __uint_as_float(hi));
}
// An A operand held transposed, A(m, k) = p[k ld + m] (times s[k] when s is given): gf_tc's lane reads it from one
// address fixed before the k loop (+ k0 ld). (Session 14's GF_PAIR, the rows g, g + 8 of a lane read as the adjacent
// pair 2 g, 2 g + 1 by one 8-byte load, timed in session 15: bf16 inputs +1.7%, float32 -0.3%; removed.)
template <bool S>
struct GfAT {  // (float32 compute only: GF_TF; S: scaled by s)
    static constexpr bool scaled = S;
    const ta* p;
    int ld;
    const ta* s;
};
template <typename LA> struct gf_at { static constexpr bool v = false; };
template <bool S> struct gf_at<GfAT<S>> { static constexpr bool v = true; };
// A store of gf_tc's results two adjacent columns at a time: f(row, c, x_c, x_{c+1}) (c even; gf_pair(f)): the global
// rows of qeff, H and the intra output by 8-byte stores, Q's pairs by one load (H200, 8K, session 15: bf16 inputs -5.4%,
// 0.496 -> 0.469 ms, against the element stores)
template <typename F>
struct GfPair {
    F f;
};
template <typename F>
__device__ __forceinline__ GfPair<F> gf_pair(F f) { return GfPair<F>{f}; }
template <typename S> struct gf_pst { static constexpr bool v = false; };
template <typename F> struct gf_pst<GfPair<F>> { static constexpr bool v = true; };
// x0, x1 into p[0], p[1] (p aligned to 2 elements) by one store
__device__ __forceinline__ void gf_st2(ta* p, ta x0, ta x1) {
#ifdef __CUDA_ARCH__
    if constexpr (sizeof(ta) == 4)
        *reinterpret_cast<float2*>(p) = make_float2(x0, x1);
    else
        *reinterpret_cast<double2*>(p) = make_double2(x0, x1);
#else
    if (reinterpret_cast<unsigned long long>(p) % (2 * sizeof(ta))) std::abort();
    p[0] = x0, p[1] = x1;
#endif
}
__device__ __forceinline__ void gf_st2(gd_bf* p, ta x0, ta x1) {  // (GD_H16: rounded to bfloat16, one 4-byte store)
#ifndef __CUDA_ARCH__
    if (reinterpret_cast<unsigned long long>(p) % 4) std::abort();
#endif
    gd_put2(p, x0, x1);
}
// x0, x1 into columns c, c + 1 of a row p (at column 0) of D columns (c < D): one store when D is even
template <typename E>
__device__ __forceinline__ void gf_st2c(E* p, int c, int D, ta x0, ta x1) {
    if (D % 2 == 0) {
        gf_st2(p + c, x0, x1);
    } else {
        gd_put(p + c, x0);
        if (c + 1 < D) gd_put(p + c + 1, x1);
    }
}
// Columns c, c + 1 of row g of src (D columns; zero outside tokens [0, T) and columns [0, D)): one 4- or 8-byte load
// when v2 (D even, src aligned to 2 elements) and the inputs are bfloat16 or float32.
__device__ __forceinline__ void gf_ld2(const ti* src, i64 g, int c, int T, int D, bool v2, ta& x0, ta& x1) {
    x0 = x1 = (ta)0;
    if (g < 0 || g >= T || c >= D) return;
    const ti* p = src + g * D + c;
#ifdef __CUDA_ARCH__
    if (v2) {
#if TI_BF16
        const unsigned u = __ldg(reinterpret_cast<const unsigned*>(p));
        x0 = __uint_as_float(u << 16), x1 = __uint_as_float(u & 0xffff0000u);
        return;
#else
        if constexpr (!TI_F16 && sizeof(ti) == 4) {
            const float2 u = __ldg(reinterpret_cast<const float2*>(p));
            x0 = u.x, x1 = u.y;
            return;
        }
#endif
    }
#else
    if (v2 && reinterpret_cast<unsigned long long>(p) % (2 * sizeof(ti))) std::abort();
#endif
    x0 = ld(p);
    if (c + 1 < D) x1 = ld(p + 1);
}

// The stores of a warp's 16 x 32 tile of accumulators (mma's C layout: rows m0 + g, + 8, columns n0 + 8 i + 2 t4, + 1)
template <typename S>
__device__ __forceinline__ void gf_tcst(const float (&acc)[4][4], int m0, int n0, S store) {
    const int g = threadIdx.x % 32 / 4, t4 = threadIdx.x % 4;
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            const int r = m0 + g + 8 * h, c = n0 + 8 * i + 2 * t4;
            if constexpr (gf_pst<S>::v) {
                store.f(r, c, (ta)acc[i][2 * h], (ta)acc[i][2 * h + 1]);
            } else {
                store(r, c, (ta)acc[i][2 * h]);
                store(r, c + 1, (ta)acc[i][2 * h + 1]);
            }
        }
}

// The warp's 16 x 32 tile (rows m0 .., the 4 tiles of 8 columns n0 + 8 i ..) of a 64 x 64 product over [lo, hi) in
// k-steps of 8. SYNC: a barrier of the block between the products and the stores (every thread calls it): the stores
// may overwrite the operands (GF_H's in-place results). LDM (BX): B read from the 16-bit tile Bt by gf_ldb, not lb.
// (Session 16's GF_ASPLIT / GF_OSPLIT, the longest tiles' reductions split in halves with other warps, partial sums
// handed over shared memory: H200, 8K, s17d16: +1.1 / +2.2 / +2.8% (both) bf16, float32 -0.2%; removed.)
// K16 (GF_B16, s22b16): bf16 mma.sync m16n8k16 instead, k-steps of 16 ([lo, hi) multiples of 16): A's values (and B's
// where not from the 16-bit tile) rounded to bfloat16 (cvt.rn, pack2), fp32 sums; half the mma of 1xTF32. The k
// order inside a step is permuted alike on both sides (the sum is over all 16): hardware slots 2 t4, 2 t4 + 1, 2 t4 + 8,
// 2 t4 + 9 carry k0 + t4, + 4, + 8, + 12, so A's loads are 1xTF32's (conflict-free) and B's pairs are gf_ldb's.
template <bool BX = false, bool SYNC = false, bool LDM = false, bool K16 = false, typename LA, typename LB, typename S>
__device__ __forceinline__ void gf_tc(int m0, int n0, int lo, int hi, LA la, LB lb, S store, const ti* Bt = nullptr) {
    static_assert(!LDM || BX, "the 16-bit tile holds exact tf32 values");
    static_assert(!K16 || TI_BF16, "bf16 products: bfloat16 inputs' builds");
    constexpr bool AT = gf_at<LA>::v, AH = gf_ah<LA>::v;
    static_assert(!AH || K16, "16-bit A tiles: bf16 products");
    const int g = threadIdx.x % 32 / 4, t4 = threadIdx.x % 4;
    float acc[4][4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int x = 0; x < 4; ++x) acc[i][x] = 0.f;
    const ta* pa = nullptr;  // AT: the lane's element (g, t4) of k-step 0
    int lda = 0;
    if constexpr (AT) pa = la.p + t4 * la.ld + m0 + g, lda = la.ld;
    const unsigned bat = LDM ? gf_ldb_at(Bt, n0) : 0u;
    unsigned aat = 0u;
    if constexpr (AH) aat = gf_lda_at(la.p, m0);
    // A's values of k-step k0: elements (g, t4), (g + 8, t4), (g, t4 + 4), (g + 8, t4 + 4)
    const auto aval = [&](int k0, float (&v)[4]) {
        if constexpr (AT) {
            const ta* q = pa + k0 * lda;
            v[0] = (float)q[0], v[1] = (float)q[8], v[2] = (float)q[4 * lda], v[3] = (float)q[4 * lda + 8];
            if constexpr (LA::scaled) {
                const float s0 = (float)la.s[k0 + t4], s1 = (float)la.s[k0 + t4 + 4];
                v[0] *= s0, v[1] *= s0, v[2] *= s1, v[3] *= s1;
            }
        } else if constexpr (!AH) {
#pragma unroll
            for (int x = 0; x < 4; ++x) v[x] = (float)la(m0 + g + 8 * (x & 1), k0 + t4 + 4 * (x >> 1));
        }
    };
#if TI_BF16
    if constexpr (K16) {
#pragma unroll 1
        for (int k0 = lo; k0 < hi; k0 += 16) {
            unsigned a16[4];
            if constexpr (AH) {
                gf_lda(la.p, aat, k0, m0, a16);
            } else {
                float v0[4], v1[4];
                aval(k0, v0);
                aval(k0 + 8, v1);
                a16[0] = pack2(v0[0], v0[2]), a16[1] = pack2(v0[1], v0[3]);
                a16[2] = pack2(v1[0], v1[2]), a16[3] = pack2(v1[1], v1[3]);
            }
            unsigned r0[4], r1[4];
            if constexpr (LDM) gf_ldb(Bt, bat, k0, n0, r0), gf_ldb(Bt, bat, k0 + 8, n0, r1);
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                const int c = n0 + 8 * i + g;
                const unsigned b0 = LDM ? r0[i] : pack2((float)lb(k0 + t4, c), (float)lb(k0 + t4 + 4, c));
                const unsigned b1 = LDM ? r1[i] : pack2((float)lb(k0 + 8 + t4, c), (float)lb(k0 + 12 + t4, c));
                mma_bf16(acc[i], a16, b0, b1);
            }
        }
    } else
#endif
#pragma unroll 1
    for (int k0 = lo; k0 < hi; k0 += 8) {
        unsigned ah[4], al[4];  // fragment elements (g, t4), (g + 8, t4), (g, t4 + 4), (g + 8, t4 + 4)
        float v[4];
        aval(k0, v);
#pragma unroll
        for (int x = 0; x < 4; ++x) {
            if constexpr (GF_1X) ah[x] = gf_rna(v[x]);
            else gf_split(v[x], ah[x], al[x]);
        }
        unsigned rb[4];
        if constexpr (LDM) gf_ldb(Bt, bat, k0, n0, rb);
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            unsigned bh[2], bl[2];
            if constexpr (LDM) {  // bf16 bits -> their float32 (exact tf32) bits
                bh[0] = rb[i] << 16;
                bh[1] = rb[i] & 0xffff0000u;
            } else if constexpr (BX) {  // exact tf32 values: the bits as they are
                bh[0] = __float_as_uint((float)lb(k0 + t4, n0 + 8 * i + g));
                bh[1] = __float_as_uint((float)lb(k0 + t4 + 4, n0 + 8 * i + g));
            } else if constexpr (GF_1X) {
                bh[0] = gf_rna((float)lb(k0 + t4, n0 + 8 * i + g));
                bh[1] = gf_rna((float)lb(k0 + t4 + 4, n0 + 8 * i + g));
            } else {
                gf_split((float)lb(k0 + t4, n0 + 8 * i + g), bh[0], bl[0]);
                gf_split((float)lb(k0 + t4 + 4, n0 + 8 * i + g), bh[1], bl[1]);
            }
            if constexpr (!GF_1X) {
                mma_tf32(acc[i], al, bh[0], bh[1]);  // A_lo B_hi + A_hi B_lo + A_hi B_hi (A_lo B_lo dropped: ~2^-22)
                if constexpr (!BX) mma_tf32(acc[i], ah, bl[0], bl[1]);
            }
            mma_tf32(acc[i], ah, bh[0], bh[1]);
        }
    }
    if constexpr (SYNC) __syncthreads();
    gf_tcst(acc, m0, n0, store);
}

