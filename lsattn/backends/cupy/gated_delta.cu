// Log-linear Gated DeltaNet (loglinear_gated_delta): the scan over chunks (host: gated_delta.py).
// Compiled after common.cu (TA, CH, DKP; the inputs are in the compute type TA: 16-bit inputs are
// widened by the registry). Its per-chunk inputs come from gd_forms (gated_delta_forms.cu, compiled
// after this file) or, on the autograd path, from the array-API WY forms as torch operations.
//
// The chunk-level Fenwick states. The call's chunks are c = F .. cL = F + n - 1 (absolute indices,
// aligned to absolute multiples of CH, padded with identity tokens). Before chunk c the chunk-level
// slot S^m (d_k x d_v, m = 1 .. NLC) holds the keys of the bucket
//   B_m(c) = {c' : F <= c' < c, bit_length(c XOR c') = m} = [base, mid) with base = (c >> m) << m,
//   mid = base + 2^(m-1), non-empty only when bit m - 1 of c is set (c >= mid),
// carried to chunk c's start: S^m(c) = sum_{c' in B_m(c)} P_{c-1} .. P_{c'+1} H_{c'}, where P_c is
// chunk c's transition S -> e^{g_c} S - phi_c (eGK_c S) (never formed) and H_c = phi_c V_c the
// chunk's keys carried to its end. Chunk c's tokens t read it as
//   out[t] += lambda[t, log2 CH + m] qeff_t^T S^m(c)   (qeff_t = (A_t ... A_{cCH})^T q_t)
// (a key of chunk c' < c is read at token level log2 CH + bit_length(c XOR c'): the tokens' high
// bits are the chunk indices; buckets before F are the incoming state's). An incoming slot j
// (bit j of p set; bucket B_p^{j+1}) is carried by the same transitions and read at the level
// every key of it has from t: max(j + 1, bit_length(p XOR t)) (state_read_levels).
//
// So level m's slot is periodic with period 2^m chunks aligned to absolute multiples of 2^m: in a
// period's first half [base, mid) it is read by nobody and accumulates its bucket (A <- P_c A + H_c
// from A = 0 at max(base, F)); in the second half [mid, base + 2^m) it is read and carried
// (A <- P_c A); at the period's end it is dropped (its keys are level m + 1's bucket, which that level
// accumulates itself from the same chunks). No merges and no data between levels: each (level m,
// period) and each incoming slot is an independent chain. gd_scan runs G <= GD_G of them per block
// (a slot group; G chosen per call by the host: scan_group): levels mh, mh - 1, .., mh - G + 1
// (groups from the top: mh = NLC, NLC - 1 alone, then NLC - 2, NLC - 2 - G, .., the last cut at
// level 1) over one period of level mh, in which the lower levels' periods lie back to back, or G
// consecutive incoming slots; one block per (group, period, sequence, GD_BW value
// columns), a 1-D grid with the group slowest and the longest (incoming slots, then the top levels)
// first, so they start first. The block walks its chunks once: each chunk's tiles are copied once
// for the group, and every slot is in one of four modes (block-uniform): off (its bucket lies before
// the call: in the incoming slots; or no reads in the call and not returned (`keep`)), start (a
// bucket's first chunk in the call: S = H_c), accumulate, read. The returned state: incoming slots
// carried to the call's end (`oldc`, in place), and S^m after chunk cL's transition (before its
// merge when the call ends inside it, after it when the call ends at its end: E = cL + merge_last,
// S^m(E) = the slot when bit m - 1 of E is set, else 0) into `lev` (zeros in). Several groups read
// into the same output rows: their summed reads are added atomically onto the intra-chunk output
// (the order of those few adds varies between runs: last-bit differences).
// Work per chunk and sequence: NLC (+ held incoming) slot updates of 2 (first half) or 3 (read)
// products of 2 CH d_k d_v flops (the old sequential scan: popcount(c) slots of 3 products); the
// critical path: the top group's ~n chunks. Measured (H200, benchmarks/NOTES.md, session 10, one
// chain per block): the grid is bound by its total work, about half of it the chunk tiles every chain
// step copies, which a group copies once for its GD_G slots (session 11).
//
// Threads: NT = 256 (8 warps). Every product is an M x GD_BW one per slot (M = CH in (a), DKP in
// (b)) in tiles of 16 x 8 dealt evenly over the warps (GdWarpTiles), each warp taking the same
// tiles of every slot (its A fragments split once for the group). float32: mma.sync m16n8k8 tf32
// with every operand split into two tf32 halves (3xTF32, ~2^-21 relative, fp32 accumulation);
// float64: FFMA on the same fragments.
// Per chunk and slot: (a) R = Qe S, W = Ek S (read mode; W only when accumulating), the slots' reads
// lambda R summed and atomically added to the output, W to shared memory; (b) S <- e^g S - phi W (+ H).
// Shared: Qe, Ek ([t][kk], row stride DKP + 16 / sizeof(ta); a group's W ([t][col]) over them once
// (a) has read them: a fourth barrier per chunk), phi ([kk][t], row stride CH + 16 / sizeof(ta)),
// copied asynchronously as stored (cp.async, 16 bytes when d_k allows); the slots' S ([kk][col]) and
// W, row stride GD_BW + 8 (the B fragments' 32 lanes on 32 banks); the slots' CH read weights:
// Config.gd_smem in _compile.py. A block of one slot (the top levels: the critical path) runs its own
// instantiation (gd_walk<1>) with its W, unsplit, in the second slot's S: three barriers per chunk.
#define GD_BV 16  // gd_scan_bwd's value columns per block
#define GD_RG (NT / GD_BV)
#ifdef GD_BW_SET  // a timing build may set it
#define GD_BW GD_BW_SET
#else
#define GD_BW 32  // gd_scan's value columns per block (_compile.GD_BW)
#endif
#ifdef GD_G_SET  // a timing build may set it
constexpr int GD_G = GD_G_SET;
#else
constexpr int GD_G = 2;  // gd_scan's slots per block: levels walked together (_compile.GD_G)
#endif
constexpr int GD_LOG2C = CH == 16 ? 4 : (CH == 32 ? 5 : 6);
constexpr int GD_LDQ = DKP + 16 / (int)sizeof(ta), GD_LDP = CH + 16 / (int)sizeof(ta);  // tile row strides
constexpr int GD_LDS = GD_BW + 8;  // S and W row stride
// float32: the products on tensor cores (3xTF32: the float32 bound holds); float64: FFMA. bfloat16 inputs
// (TI_BF16: gd_forms reads them, gd_scan computes in float32): 1xTF32 (GD_X1, A_hi B_hi alone, ~2^-11
// relative per product, under the output's rounding to 8 mantissa bits: 1.5x faster; benchmarks/NOTES.md
// "Session 12 — s12a16"; float16's 11 bits keep 3xTF32); a timing build may set it (GD_X1_SET)
constexpr bool GD_TC = sizeof(ta) == 4;
#ifndef GD_X1_SET
#if defined(TI_BF16) && TI_BF16
#define GD_X1_SET 1
#else
#define GD_X1_SET 0
#endif
#endif
// GD_TAR_SET (1xTF32): the A operands gd_forms stores (qe, ek, phi: gated_delta_tier.cu's walks' (a) and (b)) as their tf32
// roundings (gd_tar: cvt.rna with the low 13 bits cleared, an exact tf32 value, so a reader's own cvt.rna leaves it
// as it is: gd_scan's products unchanged), read by those walks' fragment loads without a cvt (0: session 16's, a
// timing build; benchmarks/NOTES.md "Session 17 — s17e16")
#ifndef GD_TAR_SET
#define GD_TAR_SET 1
#endif
// GD_S16 (gated_delta.S16, Config.s16: bfloat16 inputs on the two-tier path, gated_delta.tier_plan): the intermediates
// gd_forms hands to the two-tier scan (qeff, e^G K, phi, H) and gd_tier1x's Qp stored as bfloat16 (gd_bf: rounded once,
// to nearest even, at the stores: gd_put), copied as 16-bit shared tiles and widened by the fragment loads (a bf16
// value widened is an exact tf32 operand: the 1xTF32 products as they are); gd_scan (the other calls) never runs on a
// GD_S16 build's gd_forms (the host's assert). float32 storage otherwise (float16 inputs: their range).
#ifndef GD_S16
#define GD_S16 0
#endif
constexpr bool GD_H16 = GD_S16 && GD_TC;
static_assert(!GD_H16 || GD_X1_SET, "16-bit intermediates: bfloat16 inputs' 1xTF32 build only");
struct gd_bf {
    unsigned short u;
};
template <bool H> struct GdE { using T = ta; };
template <> struct GdE<true> { using T = gd_bf; };
using gd_e = GdE<GD_H16>::T;  // the stored intermediates' element (gd_forms -> the two-tier scan)
__device__ __forceinline__ float gd_wid(gd_bf x) { return __uint_as_float((unsigned)x.u << 16); }
__device__ __forceinline__ ta gd_wid(ta x) { return x; }
// GD_DO16 (gated_delta_bwd.TRAIN_OUT16, Config.do16; the backward families): the scan output's gradient dout as the
// bfloat16 training step's output gradient arrives, bfloat16, read by K1 gd_tier3_bwd, K4 gd_tier1_bwd and
// gd_forms_bwd(_x1)'s dI, widened exactly at the load into the float32 tiles they read as before (gd_scan_bwd reads
// float32 dout in every build). 0: float32 (ta).
#ifndef GD_DO16
#define GD_DO16 0
#endif
using gd_do = GdE<GD_DO16 != 0>::T;  // dout's element (K1, K4, gd_forms_bwd's dI)
// GD_CVT16_SET (s21a16, batch 1: gd_tier3's fold 12% slower at 32K with the integer rounding): the roundings by sm_90's
// cvt.rn.bf16(x2).f32 (one instruction a value or pair; the same bits but a NaN's payload); 0: integer arithmetic, as
// the CPU emulation (a timing build)
#ifndef GD_CVT16_SET
#define GD_CVT16_SET 1
#endif
__device__ __forceinline__ unsigned gd_bfr(float x) {  // x rounded to bfloat16 (nearest even; a NaN stays one)
#ifdef __CUDA_ARCH__
    if (GD_CVT16_SET) {
        unsigned short h;
        asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(h) : "f"(x));
        return h;
    }
#endif
    unsigned u = __float_as_uint(x);
    if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x7fffffu)) return (u >> 16) | 0x40u;
    u += 0x7fffu + ((u >> 16) & 1u);
    return u >> 16;
}
__device__ __forceinline__ unsigned gd_bfr2(float x0, float x1) {  // (x0, x1) rounded, x0 in the low half
#ifdef __CUDA_ARCH__
    if (GD_CVT16_SET) {
        unsigned r;
        asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(x1), "f"(x0));
        return r;
    }
#endif
    return gd_bfr(x0) | (gd_bfr(x1) << 16);
}
__device__ __forceinline__ void gd_put(gd_bf* w, float x) { w->u = (unsigned short)gd_bfr(x); }
// x0, x1 into p[0], p[1] (p aligned to 4 bytes) by one store
__device__ __forceinline__ void gd_put2(gd_bf* p, float x0, float x1) { *reinterpret_cast<unsigned*>(p) = gd_bfr2(x0, x1); }
constexpr bool GD_TAR = GD_TC && GD_X1_SET && GD_TAR_SET && !GD_H16;  // (GD_H16: rounded once, to bfloat16)
// GD_O16 (gated_delta.O16, Config.o16; GD_S16's calls whose output gd_tier3 rounds, gated_delta.OUT16): the output's
// partial sums between the kernels (gd_forms' intra-chunk output, gd_tier1's low levels added into it) stored as
// bfloat16 too: gd_tier1 adds with bf16x2 reductions (red.global.add.noftz.bf16x2: each add rounded to nearest even),
// gd_tier3 reads them (widened) and rounds the whole sum into the output as before. float32 otherwise.
#ifndef GD_O16
#define GD_O16 0
#endif
using gd_o = GdE<GD_H16 && GD_O16>::T;  // the output's partial sums' element (gd_forms -> gd_tier1 -> gd_tier3)
__device__ __forceinline__ void gd_ld2(const ta* p, ta& x0, ta& x1) { x0 = p[0], x1 = p[1]; }
__device__ __forceinline__ void gd_put2(ta* p, ta x0, ta x1) { p[0] = x0, p[1] = x1; }
__device__ __forceinline__ void gd_ld2(const gd_bf* p, float& x0, float& x1) {  // (p aligned to 4 bytes)
    const unsigned u = *reinterpret_cast<const unsigned*>(p);
    x0 = __uint_as_float(u << 16), x1 = __uint_as_float(u & 0xffff0000u);
}
// x (x0, x1) added into p[0] (p[0], p[1]; aligned to 4 bytes): float32 atomics, or bfloat16 reductions of the addends
// rounded to bfloat16 (sm_90's red.add.noftz.bf16(x2): the sums rounded to nearest even)
__device__ __forceinline__ void gd_red(ta* p, ta x) { atomicAdd(p, x); }
__device__ __forceinline__ void gd_red(gd_bf* p, float x) {
#ifdef __CUDA_ARCH__
    asm volatile("red.global.add.noftz.bf16 [%0], %1;" ::"l"(p), "h"((unsigned short)gd_bfr(x)) : "memory");
#else
    emu_bf16_add(&p->u, 1, gd_bfr(x));
#endif
}
__device__ __forceinline__ void gd_red2(gd_bf* p, float x0, float x1) {
#ifdef __CUDA_ARCH__
    asm volatile("red.global.add.noftz.bf16x2 [%0], %1;" ::"l"(p), "r"(gd_bfr2(x0, x1)) : "memory");
#else
    emu_bf16_add(&p->u, 2, gd_bfr2(x0, x1));
#endif
}
// x's tf32 rounding as an exact float (cvt.rna, the low 13 bits cleared; a NaN's bits as they are: cleared, a payload
// in the low bits would be inf)
__device__ __forceinline__ float gd_rtf(float x) {
    const unsigned u = to_tf32(x);
    return __uint_as_float((u & 0x7f800000u) == 0x7f800000u ? u : u & 0xffffe000u);
}
__device__ __forceinline__ ta gd_tar(ta x) {
    if constexpr (GD_TAR) return gd_rtf(x);
    else return x;
}
struct alignas(2 * sizeof(ta)) gd_pair {  // (two consecutive elements: one 8- or 16-byte access)
    ta x, y;
};
// W, (b)'s B operand: float32, its tf32 halves (hi, lo) split once when stored (row stride GD_BW + 4
// pairs: a half-warp's 64-bit fragment loads on 32 banks; 1xTF32: as computed, the hi half taken by
// the fragment loads); float64, as computed (row stride GD_LDS) (a timing build may store it unsplit:
// GD_WS_SET=0)
#ifndef GD_WS_SET
#define GD_WS_SET !GD_X1_SET
#endif
template <bool TC> struct GdW { using T = ta; static constexpr int LD = GD_LDS; };
template <> struct GdW<true> { using T = uint2; static constexpr int LD = GD_BW + 4; };
using gd_w = GdW<GD_TC && GD_WS_SET>::T;
constexpr int GD_LDW = GdW<GD_TC && GD_WS_SET>::LD;
// S, (a)'s B operand: in shared memory as computed, or (a timing build, GD_SR_SET=1, float32) in the
// registers of (b)'s threads, shared as its tf32 pairs
#ifndef GD_SR_SET
#define GD_SR_SET 0
#endif
constexpr bool GD_SR = GD_TC && GD_SR_SET;
using gd_s = GdW<GD_SR>::T;
constexpr int GD_LDSS = GdW<GD_SR>::LD, GD_SW = DKP * GD_LDSS * (int)(sizeof(gd_s) / sizeof(ta));  // a slot's S (in ta)
constexpr int GD_QW_ = 2 * CH * GD_LDQ, GD_WW = GD_G * CH * GD_LDW * (int)(sizeof(gd_w) / sizeof(ta));
constexpr int GD_QW = GD_QW_ > GD_WW ? GD_QW_ : GD_WW;  // Qe and Ek, or the slots' W (in ta)
__device__ __forceinline__ void gd_put(ta* w, ta x) { *w = x; }
__device__ __forceinline__ void gd_put(uint2* w, float x) { tf32_split(x, w->x, w->y); }

// The split (tf32 hi + lo) fragments (lane = 4 g8 + t4, mma_tf32's layout): A (rows r0 ..,
// reductions k0 .. k0 + 7) of X [row][k] (row stride ld); B (reductions k0 .., columns n0 ..) of
// Y [k][col] (row stride ld).
// (templates on the element type: a float64 build compiles the tensor-core text without running it)
template <typename E>
__device__ __forceinline__ void gd_frag_a(const E* X, int ld, int r0, int k0, unsigned (&h)[4], unsigned (&l)[4]) {
    const int g8 = threadIdx.x % 32 / 4, t4 = threadIdx.x % 4;
#pragma unroll
    for (int x = 0; x < 4; ++x) tf32_split((float)X[(r0 + g8 + 8 * (x & 1)) * ld + k0 + t4 + 4 * (x >> 1)], h[x], l[x]);
}
template <typename E>
__device__ __forceinline__ void gd_frag_b(const E* Y, int ld, int k0, int n0, unsigned (&h)[2], unsigned (&l)[2]) {
    const int g8 = threadIdx.x % 32 / 4, t4 = threadIdx.x % 4;
    tf32_split((float)Y[(k0 + t4) * ld + n0 + g8], h[0], l[0]);
    tf32_split((float)Y[(k0 + t4 + 4) * ld + n0 + g8], h[1], l[1]);
}
// the same of Y stored split (gd_put)
__device__ __forceinline__ void gd_frag_b(const uint2* Y, int ld, int k0, int n0, unsigned (&h)[2], unsigned (&l)[2]) {
    const int g8 = threadIdx.x % 32 / 4, t4 = threadIdx.x % 4;
    const uint2 y0 = Y[(k0 + t4) * ld + n0 + g8], y1 = Y[(k0 + t4 + 4) * ld + n0 + g8];
    h[0] = y0.x, l[0] = y0.y, h[1] = y1.x, l[1] = y1.y;
}
// the same of X, Y stored as bfloat16 (GD_H16): widened by a shift, exact tf32 operands (the lo halves: unread, 1xTF32)
__device__ __forceinline__ void gd_frag_a(const gd_bf* X, int ld, int r0, int k0, unsigned (&h)[4], unsigned (&l)[4]) {
    const int g8 = threadIdx.x % 32 / 4, t4 = threadIdx.x % 4;
#pragma unroll
    for (int x = 0; x < 4; ++x) h[x] = (unsigned)X[(r0 + g8 + 8 * (x & 1)) * ld + k0 + t4 + 4 * (x >> 1)].u << 16, l[x] = 0u;
}
__device__ __forceinline__ void gd_frag_b(const gd_bf* Y, int ld, int k0, int n0, unsigned (&h)[2], unsigned (&l)[2]) {
    const int g8 = threadIdx.x % 32 / 4, t4 = threadIdx.x % 4;
    h[0] = (unsigned)Y[(k0 + t4) * ld + n0 + g8].u << 16, h[1] = (unsigned)Y[(k0 + t4 + 4) * ld + n0 + g8].u << 16;
    l[0] = l[1] = 0u;
}
// c += A B for split operands: A_lo B_hi + A_hi B_lo + A_hi B_hi (the dropped A_lo B_lo: ~2^-22); GD_X1
// (16-bit inputs): A_hi B_hi alone, the lo halves then dead code
__device__ __forceinline__ void gd_mma3(float (&c)[4], const unsigned (&ah)[4], const unsigned (&al)[4],
                                        const unsigned (&bh)[2], const unsigned (&bl)[2]) {
    if (GD_X1_SET) {
        mma_tf32(c, ah, bh[0], bh[1]);
        return;
    }
    mma_tf32(c, al, bh[0], bh[1]);
    mma_tf32(c, ah, bl[0], bl[1]);
    mma_tf32(c, ah, bh[0], bh[1]);
}

// The warp's tiles of an M x BW product, M = 16 RB, in tiles of 16 x 8: row block r0 (16 rows),
// NTL tiles of 8 columns from n0, the RB x BW / 8 tiles dealt evenly over the 8 warps (fewer
// than 8 tiles: one each to the first warps, the others idle: `on` false).
template <int RB, int BW = GD_BW>
struct GdWarpTiles {
    static constexpr int NT8 = BW / 8, TILES = RB * NT8;
    static constexpr int NTL = TILES >= 8 ? TILES / 8 : 1;  // tiles per warp
    static constexpr int WPR = NT8 / NTL;                    // warps per row block
    int r0, n0;
    bool on;
    __device__ __forceinline__ GdWarpTiles() {
        const int w = threadIdx.x / 32;
        on = w < TILES / NTL;
        r0 = 16 * (w / WPR);
        n0 = 8 * NTL * (w % WPR);
    }
    // the lane's element x of tile i: (row, column) as mma's C fragment
    __device__ __forceinline__ int row(int x) const { return r0 + threadIdx.x % 32 / 4 + 8 * (x >> 1); }
    __device__ __forceinline__ int col(int i, int x) const { return n0 + 8 * i + 2 * (threadIdx.x % 4) + (x & 1); }
};

// c[j][a][i] += A_a[r0 .. r0 + 15][0 .. K) Y_j[0 .. K)[n0 + 8 i .. + 7] for the slots j < NG whose
// bit is set in use[a] (A_0 = X0, A_1 = X1, [row][k] with row stride ldx, of ta or (XT, gated_delta_tier.cu's gd_tf32)
// stored as tf32; Y_j = Y + j ys, [k][col] with row stride ldy, of ta or pre-split (uint2, tensor cores only); use[1]
// a subset of use[0]), i < NTL; K a multiple of 8. Each A fragment is split once per k-step for all the slots.
template <typename T> struct gd_same { using type = T; };  // (X1's type: X0's, not deduced from a null X1)
template <int NG, int NA, int NTL, typename Acc, typename YT, typename XT>
__device__ __forceinline__ void gd_mm(Acc (*c)[NA][NTL][4], const XT* X0, const typename gd_same<XT>::type* X1, int ldx,
                                      const YT* Y, int ys, int ldy, int r0, int n0, int K, const unsigned (&use)[NA]) {
    const int g8 = threadIdx.x % 32 / 4, t4 = threadIdx.x % 4;
    if constexpr (GD_TC) {
        for (int k0 = 0; k0 < K; k0 += 8) {
            unsigned ah[NA][4], al[NA][4];
            gd_frag_a(X0, ldx, r0, k0, ah[0], al[0]);
            if constexpr (NA > 1)
                if (use[NA - 1]) gd_frag_a(X1, ldx, r0, k0, ah[NA - 1], al[NA - 1]);
#pragma unroll
            for (int j = 0; j < NG; ++j) {
                if (!((use[0] >> j) & 1)) continue;
#pragma unroll
                for (int i = 0; i < NTL; ++i) {
                    unsigned bh[2], bl[2];
                    gd_frag_b(Y + j * ys, ldy, k0, n0 + 8 * i, bh, bl);
#pragma unroll
                    for (int a = 0; a < NA; ++a)
                        if ((use[a] >> j) & 1) gd_mma3(c[j][a][i], ah[a], al[a], bh, bl);
                }
            }
        }
    } else {
        for (int k = 0; k < K; ++k) {
            ta xa[NA][2];
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                xa[0][h] = X0[(r0 + g8 + 8 * h) * ldx + k];
                if constexpr (NA > 1) xa[NA - 1][h] = use[NA - 1] ? X1[(r0 + g8 + 8 * h) * ldx + k] : (ta)0;
            }
#pragma unroll
            for (int j = 0; j < NG; ++j) {
                if (!((use[0] >> j) & 1)) continue;
                ta yv[NTL][2];
#pragma unroll
                for (int i = 0; i < NTL; ++i)
#pragma unroll
                    for (int h = 0; h < 2; ++h) yv[i][h] = Y[j * ys + k * ldy + n0 + 8 * i + 2 * t4 + h];
#pragma unroll
                for (int a = 0; a < NA; ++a)
                    if ((use[a] >> j) & 1)
#pragma unroll
                        for (int i = 0; i < NTL; ++i)
#pragma unroll
                            for (int x = 0; x < 4; ++x) c[j][a][i][x] = fma(xa[a][x >> 1], yv[i][x & 1], c[j][a][i][x]);
            }
        }
    }
}
// The chunk's tiles: Qe^T, Ek^T as [kk][t] (Qe^T skipped when null; reads coalesced along kk), Ph as
// [t][kk] (ph_t: the backward's phase 1) or [kk][t] (the backward's phase 2); zero-padded.
__device__ __forceinline__ void gd_tiles(ta* QeT, ta* EkT, ta* Ph, const ta* qej, const ta* ekj, const ta* phj,
                                         int DK, int tid, bool ph_t) {
    (void)tid;  // staged<> spreads the indices over the block's threads
    auto rows = [DK](const ta* src) {  // element idx = (t, kk) of a row-major CH x DK tile
        return [=](int idx) { return idx % DKP < DK ? src[(idx / DKP) * DK + idx % DKP] : (ta)0; };
    };
    auto to_T = [](ta* dst) { return [=](int idx, ta x) { dst[(idx % DKP) * CH + idx / DKP] = x; }; };
    // every load of a tile in flight before its stores (one L2 round trip per batch, not per element)
    if (QeT) staged<DKP * CH, NT>(rows(qej), to_T(QeT));
    staged<DKP * CH, NT>(rows(ekj), to_T(EkT));
    staged<DKP * CH, NT>([=](int idx) { return idx / CH < DK ? phj[idx] : (ta)0; },  // (kr, tc) = (idx / CH, idx % CH)
                         [=](int idx, ta x) { Ph[ph_t ? (idx % CH) * DKP + idx / CH : idx] = x; });
}


// A ROWS x COLS tile into shared memory dst (row stride dld) from the row-major src (row stride sld;
// rows >= vr and columns >= vc zero), asynchronously, consecutive threads copying consecutive pieces
// of a row: 16-byte copies when vec (sld and vc multiples of their width, rows starting on 16 bytes),
// else element copies.
// GD_CPY_SET (16-byte copies of a tile whose pieces a row are a divisor of NT): each thread's column and first row
// fixed, its rows NT / pieces apart in unrolled passes, the pointers advanced by constant strides (session 16's loop
// formed each piece's 64-bit global and shared addresses from its index: ~20 SASS instructions a cp.async, ~15% of
// gd_tier1x's instructions; benchmarks/NOTES.md "Session 17 — s17e16"; 0: session 16's, a timing build)
#ifndef GD_CPY_SET
#define GD_CPY_SET 1
#endif
// (E: ta, or gd_bf (GD_H16): 8 elements a 16-byte copy; their element copies synchronous stores, cp.async having no
// 2-byte form: the tile is read after the copies' wait and barrier as ever)
template <int ROWS, int COLS, typename E>
__device__ __forceinline__ void gd_copy(E* dst, int dld, const E* src, int sld, int vr, int vc, bool vec) {
    constexpr int VW = 16 / (int)sizeof(E);  // elements per 16-byte copy
    constexpr int CV = COLS / VW, RS = NT / (CV > 0 ? CV : 1);  // pieces a row; rows a pass
    if (GD_CPY_SET && vec && CV > 0 && NT % CV == 0) {
        const int r0 = threadIdx.x / CV, k = threadIdx.x % CV * VW;
        E* d = dst + r0 * dld + k;
        const E* g = src + (i64)r0 * sld + k;
        const i64 gs = (i64)RS * sld;
        const bool kv = k < vc;
#pragma unroll
        for (int it = 0; it < (ROWS + RS - 1) / RS; ++it) {
            const int r = r0 + it * RS;
            if (ROWS % RS == 0 || r < ROWS) {
                const bool ok = kv && r < vr;
                cp_async16(d + it * RS * dld, ok ? g + it * gs : src, ok);
            }
        }
        return;
    }
    if (vec) {
        for (int idx = threadIdx.x; idx < ROWS * COLS / VW; idx += NT) {
            const int r = idx / (COLS / VW), k = idx % (COLS / VW) * VW;
            const bool ok = r < vr && k < vc;
            cp_async16(dst + r * dld + k, ok ? src + r * sld + k : src, ok);
        }
    } else {
        for (int idx = threadIdx.x; idx < ROWS * COLS; idx += NT) {
            const int r = idx / COLS, k = idx % COLS;
            const bool ok = r < vr && k < vc;
            if constexpr (sizeof(E) == sizeof(ta)) cp_async_ta(reinterpret_cast<ta*>(dst + r * dld + k),
                                                               reinterpret_cast<const ta*>(ok ? src + r * sld + k : src), ok);
            else dst[r * dld + k] = ok ? src[r * sld + k] : E{};
        }
    }
}
// gd_copy's tile from bfloat16 src into float32 dst (GD_DO16's dout), widened exactly: ordinary loads (cp.async has
// no widening form), all of a thread's issued before its stores (vec: 4 elements, 8 bytes, a load; sld, vc multiples
// of 4, src on 8 bytes); read after the callers' wait and barrier as gd_copy's tiles
template <int ROWS, int COLS>
__device__ __forceinline__ void gd_copy(float* dst, int dld, const gd_bf* src, int sld, int vr, int vc, bool vec) {
    static_assert(COLS % 4 == 0, "whole 4-element pieces a row");
    constexpr int NP = ROWS * COLS / 4, IT = (NP + NT - 1) / NT;  // pieces, a thread's
    if (vec) {
        uint2 u[IT];
#pragma unroll
        for (int it = 0; it < IT; ++it) {
            const int idx = threadIdx.x + it * NT, r = idx / (COLS / 4), k = idx % (COLS / 4) * 4;
            const bool ok = idx < NP && r < vr && k < vc;
            u[it] = ok ? *reinterpret_cast<const uint2*>(src + (i64)r * sld + k) : uint2{0u, 0u};
        }
#pragma unroll
        for (int it = 0; it < IT; ++it) {
            const int idx = threadIdx.x + it * NT, r = idx / (COLS / 4), k = idx % (COLS / 4) * 4;
            if (NP % NT == 0 || idx < NP)
                *reinterpret_cast<float4*>(dst + r * dld + k) = float4{__uint_as_float(u[it].x << 16),
                    __uint_as_float(u[it].x & 0xffff0000u), __uint_as_float(u[it].y << 16), __uint_as_float(u[it].y & 0xffff0000u)};
        }
    } else {
        for (int idx = threadIdx.x; idx < ROWS * COLS; idx += NT) {
            const int r = idx / COLS, k = idx % COLS;
            dst[r * dld + k] = r < vr && k < vc ? gd_wid(src[(i64)r * sld + k]) : 0.f;
        }
    }
}

// blocks per SM the registers must allow: float32 at d_k <= 64, 3 (<= 80 registers; shared memory
// ~73 KB at d_k = 64 with GD_BW = 32, GD_G = 2); else 1
#ifdef GD_MINB_SET  // a timing build may set it
constexpr int GD_MINB = GD_MINB_SET;
#else
constexpr int GD_MINB = GD_TC && DKP <= 64 ? 3 : 1;
#endif
static_assert(GD_G >= 1 && GD_G <= 8 && GD_G * CH <= NT, "a thread per slot and token for the read weights");
enum { GD_OFF, GD_START, GD_ACC, GD_READ };  // a slot at a chunk: unused, S = H, accumulate, read and carry
// The L2 prefetch of the next chunk during (b): its H in the group walks (1, production; a one-slot walk
// loads its H before its tile copies), and its tiles (gd_prefetch) in the one-slot walks (2) or in every
// walk (3) (2, 3: the kernel then spills ~40-60 bytes at its 80 registers), or nothing (0).
// GD_WOWN_SET=0: a one-slot walk's W over Qe / Ek (session 11). Both set by timing builds.
#ifndef GD_WOWN_SET
#define GD_WOWN_SET 1
#endif
#ifndef GD_PF_SET
#define GD_PF_SET 1
#endif
#ifndef GD_PIPE_SET
#define GD_PIPE_SET 0
#endif

// A chunk's tile (CH x DK elements) into L2 (prefetch.global.L2: no registers held, nothing waits): the next
// chunk's while this one's products run; nothing on the CPU emulation.
template <typename E>
__device__ __forceinline__ void gd_prefetch(const E* tile, int DK) {
#ifdef __CUDA_ARCH__
    constexpr int LINE = 128 / (int)sizeof(E);
    for (int x = threadIdx.x * LINE; x < CH * DK; x += NT * LINE) asm volatile("prefetch.global.L2 [%0];" ::"l"(tile + x));
#endif
}

// One block's walk over its chunks [lo, hi) with NG (compile time) slots: incoming slots s0 + j (inc), or
// levels mh - j of level mh's period (the kernel's header). A walk of fewer slots than the launch's GD_G
// (the top levels, alone: the critical path) keeps its W, unsplit, where the unused slots' S would be
// (when it fits): no barrier between (a)'s products and W's stores; a full group's W overlays Qe / Ek.
template <int NG>
__device__ __forceinline__ void gd_walk(const ta* __restrict__ qe, const ta* __restrict__ ek, const ta* __restrict__ ph,
                                        const ta* __restrict__ Hc, const ta* __restrict__ gc, const ta* __restrict__ lam,
                                        ta* __restrict__ out, ta* __restrict__ lev, ta* __restrict__ oldc, int T, int DK,
                                        int DV, int L, i64 p, i64 F, int n, int n_old, int NLC, int merge_last, int keep,
                                        bool inc, int s0, int mh, int gs, i64 lo, i64 hi, i64 bh, int c0) {
    extern __shared__ __align__(16) unsigned char smem_raw[];
    constexpr bool WOWN = GD_WOWN_SET && NG < GD_G && (GD_G - NG) * GD_SW >= NG * CH * GD_LDS;
    using wt = typename GdW<GD_TC && GD_WS_SET && !WOWN>::T;  // W: tf32 pairs or unsplit
    constexpr int LDW = GdW<GD_TC && GD_WS_SET && !WOWN>::LD;
    ta* Qe = reinterpret_cast<ta*>(smem_raw);
    ta* Ek = Qe + CH * GD_LDQ;
    ta* Ph = Qe + GD_QW;
    gd_s* S = reinterpret_cast<gd_s*>(Ph + DKP * GD_LDP);  // [slot][kk][col]
    ta* lw = Ph + DKP * GD_LDP + GD_G * GD_SW;                // [slot][t] the chunk's read weights (0 outside the call)
    wt* W = reinterpret_cast<wt*>(WOWN ? Ph + DKP * GD_LDP + NG * GD_SW : Qe);  // [slot][t][col]
    constexpr int RA = CH / 16, RB = DKP / 16;  // row blocks of (a), (b)
    constexpr int SS = DKP * GD_LDSS, WS = CH * LDW;  // a slot's S, W
    const int tid = threadIdx.x;
    const i64 cL = F + n - 1, E = cL + merge_last;
    // slot j at chunk c: an incoming slot is read throughout (when held); level m's period from
    // base = (c >> m) << m accumulates from its first chunk in the call to mid, then is read; unused
    // when its bucket lies before the call (in the incoming slots) or it has no reads in the call
    // and is not returned
    auto mode = [&](int j, i64 c) -> int {
        if (j >= gs) return GD_OFF;
        if (inc) return s0 + j < n_old && ((p >> (s0 + j)) & 1) ? GD_READ : GD_OFF;
        const int m = mh - j;
        if (m < 1) return GD_OFF;
        const i64 base = (c >> m) << m, mid = base + (1ll << (m - 1));
        const i64 plo = max(F, base), phi_ = min(cL + 1, base + (1ll << m));
        if (plo >= mid || (phi_ <= mid && !(keep && E == mid))) return GD_OFF;
        return c >= mid ? GD_READ : (c == plo ? GD_START : GD_ACC);
    };
    // the slots' modes at chunk c as masks: with products (accumulate, read), read, taking H (start, accumulate)
    auto masks = [&](i64 c, unsigned& u0, unsigned& u1, unsigned& h) {
        u0 = u1 = h = 0u;
#pragma unroll
        for (int j = 0; j < NG; ++j) {
            const int md = mode(j, c);
            u0 |= (unsigned)(md >= GD_ACC) << j;
            u1 |= (unsigned)(md == GD_READ) << j;
            h |= (unsigned)(md == GD_START || md == GD_ACC) << j;
        }
    };
    // the chunks some slot uses
    i64 wlo = hi, whi = lo;
#pragma unroll
    for (int j = 0; j < NG; ++j) {
        const int m = inc ? 0 : mh - j;
        if (inc || m < 1) {
            if (mode(j, lo) != GD_OFF) wlo = lo, whi = hi;
            continue;
        }
        for (i64 base = (lo >> m) << m; base < hi; base += 1ll << m) {  // level m's periods in [lo, hi)
            const i64 plo = max(lo, base);
            if (mode(j, plo) != GD_OFF) wlo = min(wlo, plo), whi = max(whi, min(hi, base + (1ll << m)));
        }
    }
    if (wlo >= whi) return;
    const i64 slot_sz = (i64)DK * DV;
    const int K8 = (DK + 7) / 8 * 8;  // (a)'s reduction (rows past DK are zero)
    const GdWarpTiles<RA> wa;
    const GdWarpTiles<RB> wb;
    constexpr int TWA = GdWarpTiles<RA>::NTL, TWB = GdWarpTiles<RB>::NTL;  // tiles per warp and slot in (a), (b)
    // S in: the incoming slots' columns or zero (columns past DV and rows past DK stay zero)
    auto s_in = [&](int j, int kk, int cc) {
        const bool ld = inc && s0 + j < n_old && kk < DK && c0 + cc < DV;
        return ld ? oldc[(bh * n_old + s0 + j) * slot_sz + (i64)kk * DV + c0 + cc] : (ta)0;
    };
    ta sv[GD_SR ? NG : 1][TWB][4];  // GD_SR: S of (b)'s tiles (the thread's C fragments)
    if constexpr (GD_SR) {
#pragma unroll
        for (int j = 0; j < NG; ++j)
#pragma unroll
            for (int i = 0; i < TWB; ++i)
#pragma unroll
                for (int x = 0; x < 4; ++x)
                    if (wb.on) {
                        sv[j][i][x] = s_in(j, wb.row(x), wb.col(i, x));
                        gd_put(S + j * SS + wb.row(x) * GD_LDSS + wb.col(i, x), sv[j][i][x]);
                    }
    } else {
        for (int idx = tid; idx < NG * DKP * GD_BW; idx += NT) {
            const int j = idx / (DKP * GD_BW), kk = idx / GD_BW % DKP, cc = idx % GD_BW;
            gd_put(S + j * SS + kk * GD_LDSS + cc, s_in(j, kk, cc));
        }
    }
    __syncthreads();
    constexpr int VW = 16 / (int)sizeof(ta);
    const bool vec = DK % VW == 0;
    // H in (b)'s C fragments' layout: a one-slot walk loads it before its tile copies (its latency under
    // theirs); a group after (b)'s product (fewer live registers during the products)
    auto load_h = [&](unsigned hs, i64 cj, ta (&hv)[TWB][4]) {
#pragma unroll
        for (int i = 0; i < TWB; ++i)
#pragma unroll
            for (int x = 0; x < 4; ++x) {
                const int kk = wb.row(x), cc = wb.col(i, x);
                hv[i][x] = hs && wb.on && kk < DK && c0 + cc < DV ? Hc[cj * slot_sz + (i64)kk * DV + c0 + cc] : (ta)0;
            }
    };
    // a timing build (GD_PIPE_SET=1): a one-slot walk with W apart (WOWN) copies the next chunk's Qe / Ek during
    // (b) (the kernel then spills ~40 bytes at its 80 registers)
    constexpr bool PIPE = GD_PIPE_SET && WOWN;
    bool pend = false;  // PIPE: this chunk's Qe / Ek copies in flight
    // PIPE's walk: one period of level mh (read from its mid) or one incoming slot (read throughout)
    const i64 rmid = inc || mh < 1 ? lo : ((lo >> mh) << mh) + (1ll << (mh - 1));
    for (i64 c = wlo; c < whi; ++c) {
        unsigned use[2], hs;
        masks(c, use[0], use[1], hs);
        if (use[0] | hs) {
            const i64 cj = bh * n + (c - F);
            ta hv[TWB][4];
            if constexpr (NG == 1) load_h(hs, cj, hv);
            if (use[0]) {
                // the chunk's tiles, once for the slots: Qe (when read), Ek (unless in flight: PIPE), phi
                if (!PIPE || !pend) {
                    if (use[1]) gd_copy<CH, DKP>(Qe, GD_LDQ, qe + cj * CH * DK, DK, CH, DK, vec);
                    gd_copy<CH, DKP>(Ek, GD_LDQ, ek + cj * CH * DK, DK, CH, DK, vec);
                }
                gd_copy<DKP, CH>(Ph, GD_LDP, ph + cj * DK * CH, CH, DK, CH, vec);
                cp_async_commit();
                if (tid < NG * CH) {  // token t's read weight for slot j
                    const int j = tid / CH, t = tid % CH;
                    const i64 tabs = c * CH + t, gi = tabs - p;
                    const int l = inc ? max(s0 + j + 1, bitlen64(p ^ tabs)) : GD_LOG2C + mh - j;
                    lw[tid] = (use[1] >> j) & 1 && gi >= 0 && gi < T ? lam[(bh * T + gi) * L + l] : (ta)0;  // padding rows: unread
                }
                cp_async_wait<0>();
                __syncthreads();
                // (a) W_j = Ek S_j; R_j = Qe S_j for the slots read, their weighted sum into the output
                ta acc[NG][2][TWA][4] = {};  // W, R
                if (wa.on) gd_mm<NG, 2, TWA>(acc, Ek, Qe, GD_LDQ, (const gd_s*)S, SS, GD_LDSS, wa.r0, wa.n0, K8, use);
                if constexpr (!WOWN) __syncthreads();  // every warp has read Ek and Qe: W over them
                if (wa.on) {
#pragma unroll
                    for (int i = 0; i < TWA; ++i)
#pragma unroll
                        for (int x = 0; x < 4; ++x) {
                            const int t = wa.row(x), cc = wa.col(i, x);
                            ta r = 0;
#pragma unroll
                            for (int j = 0; j < NG; ++j) {
                                if ((use[0] >> j) & 1) gd_put(W + j * WS + t * LDW + cc, acc[j][0][i][x]);
                                if ((use[1] >> j) & 1) r += lw[j * CH + t] * acc[j][1][i][x];
                            }
                            const i64 gi = c * CH + t - p;
                            if (use[1] && c0 + cc < DV && gi >= 0 && gi < T)  // padding rows read nothing
                                atomicAdd(out + (cj * CH + t) * DV + c0 + cc, r);
                        }
                }
                __syncthreads();
                if constexpr (PIPE) {  // Qe and Ek are free: the next chunk's copies run during (b)
                    pend = c + 1 < whi;  // one slot: every chunk after the first has products
                    if (pend) {
                        if (c + 1 >= rmid) gd_copy<CH, DKP>(Qe, GD_LDQ, qe + (cj + 1) * CH * DK, DK, CH, DK, vec);
                        gd_copy<CH, DKP>(Ek, GD_LDQ, ek + (cj + 1) * CH * DK, DK, CH, DK, vec);
                        cp_async_commit();
                        gd_prefetch(ph + (cj + 1) * DK * CH, DK);  // and its phi into L2 (copied after (b))
                    }
                }
            }
            // the next chunk's H (and tiles) into L2 during (b) and the next copies' issue (Qe and H as
            // this chunk needs them: the modes change once per half period)
            if (GD_PF_SET && c + 1 < whi) {
#ifdef __CUDA_ARCH__
                if (NG > 1 && hs && tid < DK)  // a row of the block's columns of H (GD_BW * 4 = 128 bytes) a thread
                    asm volatile("prefetch.global.L2 [%0];" ::"l"(Hc + (cj + 1) * slot_sz + (i64)tid * DV + c0));
#endif
                if (GD_PF_SET > 2 || (GD_PF_SET == 2 && NG < GD_G && !PIPE)) {
                    if (use[1]) gd_prefetch(qe + (cj + 1) * CH * DK, DK);
                    gd_prefetch(ek + (cj + 1) * CH * DK, DK);
                    gd_prefetch(ph + (cj + 1) * DK * CH, DK);
                }
            }
            // (b) S_j <- e^g S_j - phi W_j (+ H); S_j = H at a bucket's first chunk
            if (wb.on) {
                const ta eg = ex(gc[cj]);  // (loaded here: one register fewer during (a))
                ta acc[NG][1][TWB][4] = {};
                const unsigned ub[1] = {use[0]};
                if (use[0]) gd_mm<NG, 1, TWB>(acc, Ph, nullptr, GD_LDP, (const wt*)W, WS, LDW, wb.r0, wb.n0, CH, ub);
                if constexpr (NG > 1) load_h(hs, cj, hv);
#pragma unroll
                for (int j = 0; j < NG; ++j) {
                    const bool pr = (use[0] >> j) & 1, ad = (hs >> j) & 1;  // products, + H (neither: off)
                    if (!pr && !ad) continue;
#pragma unroll
                    for (int i = 0; i < TWB; ++i)
#pragma unroll
                        for (int x = 0; x < 4; ++x) {
                            gd_s* e = S + j * SS + wb.row(x) * GD_LDSS + wb.col(i, x);
                            if constexpr (GD_SR) {
                                ta& v = sv[GD_SR ? j : 0][i][x];
                                v = pr ? eg * v - acc[j][0][i][x] + (ad ? hv[i][x] : (ta)0) : hv[i][x];
                                gd_put(e, v);
                            } else {
                                ta* f = reinterpret_cast<ta*>(e);
                                *f = pr ? eg * *f - acc[j][0][i][x] + (ad ? hv[i][x] : (ta)0) : hv[i][x];
                            }
                        }
                }
            }
            __syncthreads();  // S read by the next chunk's (a); the tiles (and W) rewritten by its copies
        }
    }
    // the returned state: incoming slots carried to the end; level m's S^m(E) when bit m - 1 of E is set
    if (!keep) return;
#pragma unroll
    for (int j = 0; j < NG; ++j) {
        const int m = mh - j;
        if (inc ? mode(j, lo) == GD_OFF : (hi != cL + 1 || m < 1 || !((E >> (m - 1)) & 1) || mode(j, cL) == GD_OFF))
            continue;
        ta* fin = inc ? oldc + (bh * n_old + s0 + j) * slot_sz : lev + (bh * NLC + m - 1) * slot_sz;  // the slot's home
        if constexpr (GD_SR) {
#pragma unroll
            for (int i = 0; i < TWB; ++i)
#pragma unroll
                for (int x = 0; x < 4; ++x) {
                    const int kk = wb.row(x), cc = wb.col(i, x);
                    if (wb.on && kk < DK && c0 + cc < DV) fin[(i64)kk * DV + c0 + cc] = sv[GD_SR ? j : 0][i][x];
                }
        } else {
            for (int idx = tid; idx < DKP * GD_BW; idx += NT) {
                const int kk = idx / GD_BW, cc = idx % GD_BW;
                if (kk < DK && c0 + cc < DV) fin[(i64)kk * DV + c0 + cc] = reinterpret_cast<const ta*>(S)[j * SS + kk * GD_LDSS + cc];
            }
        }
    }
}

extern "C" __global__ void __launch_bounds__(NT, GD_MINB) gd_scan(
    const ta* __restrict__ qe,   // (BH, n, CH, DK)  qeff
    const ta* __restrict__ ek,   // (BH, n, CH, DK)  e^G K
    const ta* __restrict__ ph,   // (BH, n, DK, CH)  phi
    const ta* __restrict__ Hc,   // (BH, n, DK, DV)  H = phi V
    const ta* __restrict__ gc,   // (BH, n)          chunk total log decay
    const ta* __restrict__ lam,  // (BH, T, L)
    ta* __restrict__ out,        // (BH, n, CH, DV)  in: intra-chunk output; out: + the reads
    ta* __restrict__ lev,        // (BH, NLC, DK, DV) in: zeros; out (keep): chunk-level slots at the end
    ta* __restrict__ oldc,       // (BH, n_old, DK, DV) in: incoming slots; out (keep): carried to the end
    int T, int DK, int DV, int L, i64 p, i64 F, int n, int n_old, int NLC, int merge_last, int keep, int BH,
    int G) {  // slots per block (1 .. GD_G; _compile.gd_group)
    check_smem((GD_QW + DKP * GD_LDP + GD_G * (GD_SW + CH)) * sizeof(ta));
    // the block: slot group ci (slowest), sequence bh, column block
    const int NCB = (DV + GD_BW - 1) / GD_BW;
    const i64 per = (i64)BH * NCB, ci = blockIdx.x / per;
    const i64 bh = blockIdx.x % per / NCB;
    const int c0 = (int)(blockIdx.x % NCB) * GD_BW;
    const i64 cL = F + n - 1;
    // the slots: incoming slots s0 + j (inc), or levels mh - j of the period of level mh from its base;
    // the chunks [lo, hi)
    const int NBO = (n_old + G - 1) / G;  // blocks of incoming slots
    const bool inc = ci < NBO;
    int s0 = 0, mh = NLC, gs = G;  // gs: the block's slots
    i64 lo = F, hi = cL + 1;
    if (inc) {
        s0 = (int)ci * G;
    } else {
        // the levels' groups from the top: levels NLC and NLC - 1 alone (the longest chains: the
        // critical path keeps one slot per step), then G at a time from NLC - 2 (the last cut at
        // level 1), each with (cL >> mh) - (F >> mh) + 1 periods of its top level mh
        i64 r = ci - NBO;
        for (;; mh -= gs) {
            gs = mh > NLC - 2 ? 1 : G;
            if (mh <= gs) break;
            const i64 cnt = (cL >> mh) - (F >> mh) + 1;
            if (r < cnt) break;
            r -= cnt;
        }
        const i64 base = ((F >> mh) + r) << mh;
        lo = max(F, base);
        hi = min(cL + 1, base + (1ll << mh));
    }
    // one instantiation per slot count a block can have: 1 and GD_G (a timing build's 3 or 4 walks fewer than
    // GD_G slots on GD_G, their modes off)
    if (GD_G > 1 && gs == 1)
        gd_walk<1>(qe, ek, ph, Hc, gc, lam, out, lev, oldc, T, DK, DV, L, p, F, n, n_old, NLC, merge_last, keep, inc, s0,
                   mh, 1, lo, hi, bh, c0);
    else
        gd_walk<GD_G>(qe, ek, ph, Hc, gc, lam, out, lev, oldc, T, DK, DV, L, p, F, n, n_old, NLC, merge_last, keep, inc,
                      s0, mh, gs, lo, hi, bh, c0);
}
