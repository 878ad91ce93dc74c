// Log-linear Gated DeltaNet: the per-chunk WY / UT forms in one kernel (host: gated_delta.py).
// Compiled after common.cu and gated_delta.cu (TA, CH, DKP; inputs read through ld(); 16-bit
// inputs are widened by the registry). The quantities of lsattn.gated_delta._chunk_forms and
// _masked_intra (see that module's docstring), per chunk c = F + j of CH tokens aligned to
// absolute multiples of CH, read straight from the (BH, T, d) inputs (tokens outside the call are
// the identity padding: q = k = v = 0, a = 0, beta = 0), with chunk-local G_t = a_0 + ... + a_t:
//   N[i, r]  = beta_i e^{a_{r+1} + ... + a_i} (k_i . k_r), r < i;   X = (I + N)^{-1}
//   attn     = ((D * Q K^T) X) diag(beta),  D[t, s] = e^{a_{s+1} + ... + a_t} (s <= t)
//   qeff     = e^G * Q - attn (e^G K);   eGK = e^G * K
//   phi      = Z^T (X diag(beta)),  Z[s] = e^{a_{s+1} + ... + a_{CH-1}} k_s;   H = phi V
//   g        = G_{CH-1};   out = (Lambda * attn) V,  Lambda[t, s] = lam[t, level(t, s)]
// which are what gd_scan consumes (always in the compute type TA). Exponentials are taken of sums
// over the stretch they stand for, never of differences of cumulative sums: a -inf log decay (hard
// reset) stays exact. D is never stored: the thread that owns a 4 x 4 piece of the CH x CH
// products sums its stretches (the tokens between its column and row groups once, then the few
// inside each) and takes the exponentials in the products' stores.
//
// X = (I + N)^{-1} by blocks (no serial chain over the chunk): the 16 x 16 diagonal blocks by
// forward substitution in registers (thread = column), the 32 x 32 blocks by X_10 = -X_11 N_10 X_00
// inside one warp, the 64 x 64 block by the same two products over the block's threads.
//
// One block of NT = 256 threads per (chunk j, sequence bh); 3 blocks per SM at CH = DKP = 64 in
// float32 (four tiles, 73 KB: the layout below; Config.smem in _compile.py; bfloat16 inputs: 4 blocks per SM, 55 KB,
// Q, K, V as 16-bit tiles, GF_H below). Q and K are kept once,
// as [t][f] with the 4-element groups of a row XOR-swizzled by row (gf_el): conflict-free both
// when a product reduces over f (N, Q K^T: rows of the tile) and over t (qeff, phi: columns), so
// neither needs a transposed copy; e^G K and Z = e^{suffix} K are K with a per-token scale in the
// products (gf_mm's loaders). Products: FFMA register micro-tiles on a 16 x 16 thread grid; those
// reducing over a triangular factor (M X, attn e^G K, X^T Z, (Lambda * attn) V) run each warp's
// reduction only over the indices its rows can reach (GF_TRI: ~56% of the terms; the rest are zeros).
// bfloat16 inputs (TI_BF16, CH = 64): K K^T and Q K^T on tensor cores (GF_TC), the decay scales after.
// float32 compute at CH = DKP = 64 (GF_TF): every product on tensor cores instead (3xTF32, gf_tc; K K^T and
// Q K^T of 16-bit inputs stay bf16 mma), the tiles padded by 8 and Q / K swizzled by row (conflict-free
// fragments); measured at 8K (H200, session 11): 0.566 / 0.513 ms float32 / bf16 against FFMA's 0.582 / 0.537.
// Global rows are read 4 elements at a time where D % 4 == 0 and the pointer allows (gf_ld4).
// The block also checks what it reads (`bad`, when given: every q, k, v, beta, level weight finite,
// log decays below +inf; each entry of the call is read by exactly one block), replacing the
// prologue's pass over the inputs, and writes the float32 level weights gd_scan reads (`lamw`, when
// given: 16-bit inputs).
// float32 at CH = DKP = 64: the five products after the solve (M X, attn e^G K, X^T Z, phi V,
// (Lambda * attn) V) on tensor cores, every operand split into tf32 halves (3xTF32: ~2^-21 relative,
// fp32 sums, as gd_scan), each warp a 16 x 32 tile, and for float32 inputs K K^T and Q K^T as well;
// else FFMA (GF_TF32 0: a timing build)
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
constexpr int gf_max(int a, int b) { return a > b ? a : b; }
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

// acc[i][j] += sum_{lo <= kk < hi} a_kk[i] b_kk[j], the operands' rows from la(kk, a), lb(kk, b).
template <int RM, int RN, typename LA, typename LB>
__device__ __forceinline__ void gf_mm(ta (&acc)[RM][RN], int lo, int hi, LA la, LB lb) {
#pragma unroll 4
    for (int kk = lo; kk < hi; ++kk) {
        ta a[RM], b[RN];
        la(kk, a);
        lb(kk, b);
#pragma unroll
        for (int i = 0; i < RM; ++i)
#pragma unroll
            for (int j = 0; j < RN; ++j) acc[i][j] = fma(a[i], b[j], acc[i][j]);
    }
}

// X_10 = -X_11 (N_10 X_00) in the 2 HB x 2 HB diagonal block at B0 (row stride GF_LD) of X, whose
// diagonal HB x HB blocks are X's and lower left block N's: this thread's row i and columns j0 ..
// j0 + NC - 1 of the HB x HB result, the intermediate through S (row stride HB + 4), sync() between.
template <int HB, int NC, typename Sync>
__device__ __forceinline__ void gf_offdiag(ta* B0, ta* S, int i, int j0, Sync sync) {
    ta r[NC];
#pragma unroll
    for (int jj = 0; jj < NC; ++jj) r[jj] = (ta)0;
#pragma unroll 4
    for (int m = 0; m < HB; ++m) {  // N_10 X_00
        const ta nv = B0[(HB + i) * GF_LD + m];
        ta xv[NC];
        ldv<NC>(B0 + m * GF_LD + j0, xv);
#pragma unroll
        for (int jj = 0; jj < NC; ++jj) r[jj] = fma(nv, xv[jj], r[jj]);
    }
#pragma unroll
    for (int jj = 0; jj < NC; ++jj) S[i * (HB + 4) + j0 + jj] = r[jj];
    sync();  // S written, N_10 read
#pragma unroll
    for (int jj = 0; jj < NC; ++jj) r[jj] = (ta)0;
#pragma unroll 4
    for (int m = 0; m < HB; ++m) {  // X_11 S
        const ta xv = B0[(HB + i) * GF_LD + HB + m];
        ta sv[NC];
        ldv<NC>(S + m * (HB + 4) + j0, sv);
#pragma unroll
        for (int jj = 0; jj < NC; ++jj) r[jj] = fma(xv, sv[jj], r[jj]);
    }
#pragma unroll
    for (int jj = 0; jj < NC; ++jj) B0[(HB + i) * GF_LD + j0 + jj] = -r[jj];
}

// The register tile of a product: element (ty RM + i, tx RN + j) handed to store(row, column, value).
template <int RM, int RN, typename S>
__device__ __forceinline__ void gf_store(const ta (&acc)[RM][RN], int ty, int tx, S store) {
#pragma unroll
    for (int i = 0; i < RM; ++i)
#pragma unroll
        for (int j = 0; j < RN; ++j) store(ty * RM + i, tx * RN + j, acc[i][j]);
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

// GF_HL: the B fragments of tiles i = 0 .. NN - 1 (columns n0 + 8 i ..; NN = 4 or 2) of k-step k0 from the 16-bit
// tile B [k][n] (gf_h): r[i] = B(k0 + t4, n0 + 8 i + g) | B(k0 + t4 + 4, n0 + 8 i + g) << 16. ldmatrix .trans hands
// lane 4 g + t4 rows 2 t4 and 2 t4 + 1 of column g of each 8 x 8 matrix; the rows' addresses (lane j of matrix i:
// row j; .x2: lanes 16 .. 31 unread) are tokens k0 + {0, 4, 1, 5, 2, 6, 3, 7}, so that pair is (k0 + t4, k0 + t4 + 4),
// the tf32 fragment's b0, b1.
template <int NN>
__device__ __forceinline__ void gf_ldb(const ti* B, int k0, int n0, unsigned (&r)[NN]) {
    const int lane = threadIdx.x % 32;
#ifdef __CUDA_ARCH__
    const int j = lane & 7;
    const unsigned addr = smem_u32(B + gf_h(k0 + (j >> 1) + 4 * (j & 1), n0 + 8 * (lane >> 3)));
    if constexpr (NN == 4)
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
                     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(addr));
    else
        asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0,%1}, [%2];" : "=r"(r[0]), "=r"(r[1]) : "r"(addr));
#else
    const int g = lane / 4, t4 = lane % 4;
#pragma unroll
    for (int i = 0; i < NN; ++i)
        r[i] = (unsigned)B[gf_h(k0 + t4, n0 + 8 * i + g)] | ((unsigned)B[gf_h(k0 + t4 + 4, n0 + 8 * i + g)] << 16);
#endif
}
// An A operand held transposed, A(m, k) = p[k ld + m] (times s[k] when s is given): gf_tc / gf_tcb read the two rows
// of a lane (the fragment's g and g + 8) as the adjacent m0 + 2 g, m0 + 2 g + 1 (one 8-byte load per k, the scale
// once; conflict-free at ld = 72), the results' rows permuted alike (gf_row). A timing build (GF_PAIR 1; CPU emulation
// tested, not yet timed or tested on a GPU, session 14); default GF_PAIR 0: rows g, g + 8, single loads.
#ifndef GF_PAIR
#define GF_PAIR 0
#endif
template <bool S>
struct GfAT {  // (float32 compute only: GF_TF; S: scaled by s)
    static constexpr bool scaled = S;
    const ta* p;
    int ld;
    const ta* s;
    __device__ __forceinline__ ta operator()(int m, int k) const {
        if constexpr (S) return p[k * ld + m] * s[k];
        return p[k * ld + m];
    }
};
template <typename LA> struct gf_paired { static constexpr bool v = false; };
template <bool S> struct gf_paired<GfAT<S>> { static constexpr bool v = GF_PAIR; };
// the result row of the fragment's row g + 8 h (h = 0, 1) of tile m0
template <bool PR>
__device__ __forceinline__ int gf_row(int m0, int g, int h) { return PR ? m0 + 2 * g + h : m0 + g + 8 * h; }

// One k-step (k0 .. k0 + 7) of gf_tc's products into c: rows m0 .., the NN tiles of 8 columns n0 + 8 i ..
template <int NN, bool BX, bool LDM, typename LA, typename LB>
__device__ __forceinline__ void gf_kstep(float (&c)[NN][4], int m0, int n0, int k0, LA la, LB lb, const ti* Bt) {
    static_assert(!LDM || BX, "the 16-bit tile holds exact tf32 values");
    const int g = threadIdx.x % 32 / 4, t4 = threadIdx.x % 4;
    unsigned ah[4], al[4];
    if constexpr (gf_paired<LA>::v) {
#pragma unroll
        for (int hx = 0; hx < 2; ++hx) {  // k0 + t4, k0 + t4 + 4: fragment elements 2 hx (row g), 2 hx + 1 (row g + 8)
            const int k = k0 + t4 + 4 * hx;
            const ta* q = la.p + k * la.ld + m0 + 2 * g;
#ifdef __CUDA_ARCH__
            const float2 v = *reinterpret_cast<const float2*>(q);
            const float v0 = v.x, v1 = v.y;
#else
            if (reinterpret_cast<unsigned long long>(q) % 8) std::abort();
            const float v0 = (float)q[0], v1 = (float)q[1];
#endif
            const float sc = LA::scaled ? (float)la.s[k] : 1.f;
            tf32_split(v0 * sc, ah[2 * hx], al[2 * hx]);
            tf32_split(v1 * sc, ah[2 * hx + 1], al[2 * hx + 1]);
        }
    } else {
#pragma unroll
        for (int x = 0; x < 4; ++x) tf32_split((float)la(m0 + g + 8 * (x & 1), k0 + t4 + 4 * (x >> 1)), ah[x], al[x]);
    }
    unsigned rb[NN];
    if constexpr (LDM) gf_ldb<NN>(Bt, k0, n0, rb);
#pragma unroll
    for (int i = 0; i < NN; ++i) {
        unsigned bh[2], bl[2];
        if constexpr (LDM) {  // bf16 bits -> their float32 (exact tf32) bits
            bh[0] = rb[i] << 16;
            bh[1] = rb[i] & 0xffff0000u;
        } else if constexpr (BX) {  // exact tf32 values: the bits as they are
            bh[0] = __float_as_uint((float)lb(k0 + t4, n0 + 8 * i + g));
            bh[1] = __float_as_uint((float)lb(k0 + t4 + 4, n0 + 8 * i + g));
        } else {
            tf32_split((float)lb(k0 + t4, n0 + 8 * i + g), bh[0], bl[0]);
            tf32_split((float)lb(k0 + t4 + 4, n0 + 8 * i + g), bh[1], bl[1]);
        }
        mma_tf32(c[i], al, bh[0], bh[1]);  // A_lo B_hi + A_hi B_lo + A_hi B_hi (A_lo B_lo dropped: ~2^-22)
        if constexpr (!BX) mma_tf32(c[i], ah, bl[0], bl[1]);
        mma_tf32(c[i], ah, bh[0], bh[1]);
    }
}

// SYNC: a barrier of the block between the products and the stores (every thread calls it): the stores may
// overwrite the operands (GF_H's in-place results). LDM (BX): B read from the 16-bit tile Bt by gf_ldb, not lb.
template <bool BX = false, bool SYNC = false, bool LDM = false, typename LA, typename LB, typename S>
__device__ __forceinline__ void gf_tc(int m0, int n0, int lo, int hi, LA la, LB lb, S store, const ti* Bt = nullptr) {
    const int g = threadIdx.x % 32 / 4, t4 = threadIdx.x % 4;
    float c[4][4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int x = 0; x < 4; ++x) c[i][x] = 0.f;
#pragma unroll 1
    for (int k0 = lo; k0 < hi; k0 += 8) gf_kstep<4, BX, LDM>(c, m0, n0, k0, la, lb, Bt);
    if constexpr (SYNC) __syncthreads();
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int x = 0; x < 4; ++x) store(gf_row<gf_paired<LA>::v>(m0, g, x >> 1), n0 + 8 * i + 2 * t4 + (x & 1), (ta)c[i][x]);
}

// GF_BAL: gf_tc's 64 x 64 product with the warps' work balanced for triangular reduction ranges: warp w holds the
// 16-row tiles (0, 48) (w < 4) or (16, 32) of columns n0 = 16 (w % 4) .. + 15, reducing row tile m over
// [lo(m, n0), hi(m)). For [0, m + 16) and [m, 64) every warp runs 10 k-steps of 2 column tiles (gf_tc's 16 x 32
// tiles: 2 .. 8 k-steps of 4 by row, the block waiting on 8 x 4 at its next barrier); the A fragments are split
// twice as often. A timing build (GF_BAL 1): slower (H200, 8K, bf16: 0.462 ms against 0.430 without; float32 0.606
// against 0.570): the kernel is limited by what its warps issue, not by the waits at the barriers (session 14).
#ifndef GF_BAL
#define GF_BAL 0
#endif
constexpr bool GF_HBAL = GF_H && GF_BAL;
template <bool BX = false, bool SYNC = false, bool LDM = false, typename LO, typename HI, typename LA, typename LB, typename S>
__device__ __forceinline__ void gf_tcb(LO lo, HI hi, LA la, LB lb, S store, const ti* Bt = nullptr) {
    const int w = threadIdx.x / 32, g = threadIdx.x % 32 / 4, t4 = threadIdx.x % 4, n0 = 16 * (w % 4);
    float c[2][2][4];
#pragma unroll
    for (int h = 0; h < 2; ++h)
#pragma unroll
        for (int i = 0; i < 2; ++i)
#pragma unroll
            for (int x = 0; x < 4; ++x) c[h][i][x] = 0.f;
#pragma unroll
    for (int h = 0; h < 2; ++h) {
        const int m0 = w < 4 ? 48 * h : 16 + 16 * h;
#pragma unroll 1
        for (int k0 = lo(m0, n0); k0 < hi(m0); k0 += 8) gf_kstep<2, BX, LDM>(c[h], m0, n0, k0, la, lb, Bt);
    }
    if constexpr (SYNC) __syncthreads();
#pragma unroll
    for (int h = 0; h < 2; ++h)
#pragma unroll
        for (int i = 0; i < 2; ++i)
#pragma unroll
            for (int x = 0; x < 4; ++x)
                store(gf_row<gf_paired<LA>::v>(w < 4 ? 48 * h : 16 + 16 * h, g, x >> 1), n0 + 8 * i + 2 * t4 + (x & 1),
                      (ta)c[h][i][x]);
}

// One product of the block over reduction indices [lo, hi) (gf_mm), stored through gf_store.
template <int RM, int RN, typename LA, typename LB, typename S>
__device__ __forceinline__ void gf_product(int lo, int hi, int ty, int tx, LA la, LB lb, S store) {
    ta acc[RM][RN];
    zero_acc(acc);
    gf_mm(acc, lo, hi, la, lb);
    gf_store(acc, ty, tx, store);
}

// acc[i][j] = sum_f A[ty RC + i][f] B[tx RC + j][f] over two swizzled [t][f] tiles, 4 f at a time.
__device__ __forceinline__ void gf_mm_rows(ta (&acc)[GF_RC][GF_RC], const ta* A, const ta* B, int ty, int tx) {
    zero_acc(acc);
#pragma unroll 1
    for (int g = 0; g < GF_G; ++g) {
        ta a[GF_RC][4], b[GF_RC][4];
#pragma unroll
        for (int i = 0; i < GF_RC; ++i) ldv<4>(A + gf_grp(ty * GF_RC + i, g), a[i]);
#pragma unroll
        for (int j = 0; j < GF_RC; ++j) ldv<4>(B + gf_grp(tx * GF_RC + j, g), b[j]);
#pragma unroll
        for (int u = 0; u < 4; ++u)
#pragma unroll
            for (int i = 0; i < GF_RC; ++i)
#pragma unroll
                for (int j = 0; j < GF_RC; ++j) acc[i][j] = fma(a[i][u], b[j][u], acc[i][j]);
    }
}

extern "C" __global__ void __launch_bounds__(NT, GF_H ? 4 : ((CH == 64 && DKP <= 64 && sizeof(ta) == 4) ? 3 : 1)) gd_forms(
    const ti* __restrict__ q,    // (BH, T, DK)
    const ti* __restrict__ k,    // (BH, T, DK)
    const ti* __restrict__ v,    // (BH, T, DV)
    const ti* __restrict__ a,    // (BH, T) log decays
    const ti* __restrict__ bt,   // (BH, T) beta
    const ti* __restrict__ lam,  // (BH, T, L)
    ta* __restrict__ qe,         // (BH, n, CH, DK)  qeff
    ta* __restrict__ ek,         // (BH, n, CH, DK)  e^G K
    ta* __restrict__ ph,         // (BH, n, DK, CH)  phi
    ta* __restrict__ Hc,         // (BH, n, DK, DV)  H = phi V
    ta* __restrict__ gc,         // (BH, n)          chunk total log decay
    ta* __restrict__ out,        // (BH, n, CH, DV)  the intra-chunk output
    ta* __restrict__ lamw,       // (BH, T, L) lam in the compute type, or null
    int* __restrict__ bad,       // set to 1 when some input read is not finite (log decays: +inf, NaN), or null
    int T, int DK, int DV, int L, i64 p, i64 F, int n) {
    extern __shared__ __align__(16) unsigned char smem_raw[];
    ta* R0 = reinterpret_cast<ta*>(smem_raw);  // Q [t][f] swizzled; the solve's scratch; attn^T [s][t]
    ta* R1 = R0 + GF_S0;                       // K [t][f] swizzled; V [s][col]
    ta* R2 = GF_H ? reinterpret_cast<ta*>(smem_raw + 2 * GF_HB) : R1 + GF_S1;  // N [i][r], then X [r][s]
    ta* R3 = R2 + GF_S2;                       // M^T [s][t] (M = D * Q K^T), then phi^T [s][kk]
    ti* Qh = reinterpret_cast<ti*>(smem_raw);  // GF_H: Q [t][f] 16-bit (gf_h), then the solve's scratch (R0)
    ti* Kh = Qh + CH * 64;                     // GF_H: K [t][f] 16-bit, then V [s][col]
    ta* AT = GF_H ? R3 : R0;                   // attn^T [s][t] (GF_H: over M^T)
    ta* PT = GF_H ? R2 : R3;                   // phi^T [s][kk] (GF_H: over X)
    const auto kel = [&](int t, int f) -> ta { return GF_H ? gf_wid(Kh[gf_h(t, f)]) : R1[gf_el(t, f)]; };  // K[t][f]
    ta* aa = R3 + GF_S3;                       // a_t, beta_t, e^{G_t}, e^{a_{t+1} + ... + a_{CH-1}}
    ta* bb = aa + CH;
    ta* eG = bb + CH;
    ta* eZ = eG + CH;
    ta* lamS = eZ + CH;                        // [t][l]: lam[t, min(l, L - 1)], l <= log2 CH (row stride 8)
    check_smem(GF_SMEM_BYTES);
    const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
    // the warp's tile of the tensor-core products (GF_TC, GF_TF): rows m0 .. m0 + 15, columns n0 .. n0 + 31
    const int m0 = 16 * (tid / 64), n0 = 32 * (tid / 32 % 2);
    // the warp's rows of a CH x CH product: ty = 2w, 2w + 1, i.e. tokens [w0, w1) (GF_TRI: the
    // reductions over s <= t stop at w1, those over r >= s start at w0)
    const int w0 = GF_TRI ? (ty & ~1) * GF_RC : 0, w1 = GF_TRI ? ((ty | 1) + 1) * GF_RC : CH;
    const int j = blockIdx.x;
    const i64 bh = blockIdx.y, cj = bh * n + j;
    const i64 g0 = (F + j) * CH - p;  // the call's token index of the chunk's first row
#if defined(__CUDA_ARCH__)
    if constexpr (GF_PREV) {  // the chunk's rows of V (read after the solve) and lam (during it) towards L2 now
        const i64 r0 = max(g0, (i64)0), r1 = min(g0 + CH, (i64)T);
        const char* vb = reinterpret_cast<const char*>(v + (bh * T + r0) * DV);
        const char* lb = reinterpret_cast<const char*>(lam + (bh * T + r0) * L);
        const i64 vbytes = (r1 - r0) * DV * (i64)sizeof(ti), lbytes = (r1 - r0) * L * (i64)sizeof(ti);
        for (i64 o = (i64)tid * 128; o < vbytes; o += NT * 128) asm volatile("prefetch.global.L2 [%0];" ::"l"(vb + o));
        for (i64 o = (i64)tid * 128; o < lbytes; o += NT * 128) asm volatile("prefetch.global.L2 [%0];" ::"l"(lb + o));
    }
#endif
    // the chunk's rows of Q and K (zero outside the call and beyond DK) by groups of 4, a, beta
    const bool qvec = gf_vec(q, DK), kvec = gf_vec(k, DK);
    ta nf = (ta)0;  // x * 0 summed over the inputs read: NaN when one is not finite
    if constexpr (GF_H) {
#pragma unroll 2
        for (int i4 = tid; i4 < CH * GF_G; i4 += NT) {
            const int t = i4 / GF_G, gq = i4 % GF_G;
            gf_st4h(q + bh * T * DK, g0 + t, 4 * gq, T, DK, DK, qvec, Qh + gf_h(t, 4 * gq), nf);
            gf_st4h(k + bh * T * DK, g0 + t, 4 * gq, T, DK, DK, kvec, Kh + gf_h(t, 4 * gq), nf);
        }
    } else
#pragma unroll 2
    for (int i4 = tid; i4 < CH * GF_G; i4 += NT) {
        const int t = i4 / GF_G, gq = i4 % GF_G;
        ta x[4], y[4];
        gf_ld4(q + bh * T * DK, g0 + t, 4 * gq, T, DK, DK, qvec, x);
        gf_ld4(k + bh * T * DK, g0 + t, 4 * gq, T, DK, DK, kvec, y);
#pragma unroll
        for (int e = 0; e < 4; ++e) nf = fma(x[e], (ta)0, fma(y[e], (ta)0, nf));
        gf_st4(R0 + gf_grp(t, gq), x);
        gf_st4(R1 + gf_grp(t, gq), y);
    }
    if (tid < CH) {
        const i64 g = g0 + tid;
        const bool ok = g >= 0 && g < T;
        aa[tid] = ok ? ld(a + bh * T + g) : (ta)0;
        bb[tid] = ok ? ld(bt + bh * T + g) : (ta)0;
        nf = fma(bb[tid], (ta)0, nf);
        if (!(aa[tid] <= (ta)(sizeof(ta) == 4 ? 3.4028234663852886e38 : 1.7976931348623157e308))) nf = aa[tid] - aa[tid];  // -inf passes
    }
    __syncthreads();
    // e^{G_t} (G in token order) and e^{suffix after t} (from the chunk's end), a thread per token
    if (tid < CH) {
        ta G = (ta)0;
        for (int r = 0; r <= tid; ++r) G += aa[r];
        eG[tid] = ex(G);
        if (tid == CH - 1) gc[cj] = G;
    } else if (tid < 2 * CH) {
        const int t = tid - CH;
        ta S = (ta)0;
        for (int r = CH - 1; r > t; --r) S += aa[r];
        eZ[t] = ex(S);
    }
    // This thread's RC x RC piece (dr, dc) of the CH x CH products N and M: with tensor cores (ty, tx),
    // else (FFMA) the 136 pieces on or below the diagonal on threads 0 .. 135 (5 of the 8 warps: the
    // upper 120, zero, written by threads 136 ..). Its piece of the decay table, D[t][s] (t = dr RC + i,
    // s = dc RC + jj): the sum over a_{s+1} .. a_t as (the rest of s's group) + (the groups between) +
    // (t's group up to t).
#if GF_TC
    const int dr = ty, dc = tx;
#else
    constexpr int GF_NLOW = 136;
    int dr = 0, dc;
    if (GF_TF) {  // tensor cores (3xTF32): the thread's own piece, as GF_TC
        dr = ty, dc = tx;
    } else if (tid < GF_NLOW) {  // lower piece tid = dr (dr + 1) / 2 + dc
        while ((dr + 1) * (dr + 2) / 2 <= tid) ++dr;
        dc = tid - dr * (dr + 1) / 2;
    } else {  // upper piece tid - 136 = dc (dc - 1) / 2 + dr, dr < dc
        dc = 1;
        while (dc * (dc + 1) / 2 <= tid - GF_NLOW) ++dc;
        dr = tid - GF_NLOW - dc * (dc - 1) / 2;
    }
#endif
    ta pre[GF_RC], suf[GF_RC], mid = (ta)0;
    for (int r = (dc + 1) * GF_RC; r < dr * GF_RC; ++r) mid += aa[r];
#pragma unroll
    for (int i = 0; i < GF_RC; ++i) pre[i] = (i ? pre[i - 1] : (ta)0) + aa[dr * GF_RC + i];
    suf[GF_RC - 1] = (ta)0;
#pragma unroll
    for (int jj = GF_RC - 2; jj >= 0; --jj) suf[jj] = suf[jj + 1] + aa[dc * GF_RC + jj + 1];
    const auto dec = [&](int i, int jj) -> ta {  // D[dr RC + i][dc RC + jj]
        if (dr < dc || (dr == dc && jj > i)) return (ta)0;
        if (dr == dc) {
            if (jj == i) return (ta)1;
            ta x = (ta)0;
#pragma unroll
            for (int r = jj + 1; r <= i; ++r) x += aa[dc * GF_RC + r];
            return ex(x);
        }
        return ex(suf[jj] + mid + pre[i]);
    };
    // N = beta_i D (K K^T) strictly below the diagonal; M^T = (D * Q K^T)^T
#if GF_TC
    {  // K K^T and Q K^T unscaled on tensor cores (exact products of the bf16 inputs, fp32 sums): warp w
       // owns the 16-row tile w / 2 and the 8-column tiles 4 (w % 2) .. + 3, those on or below the diagonal
        const int lane = tid & 31, w = tid >> 5, g = lane >> 2, tq = lane & 3;
        const int m0 = 16 * (w >> 1), n0 = 32 * (w & 1);
        float cK[4][4], cQ[4][4];
#pragma unroll
        for (int nt = 0; nt < 4; ++nt)
#pragma unroll
            for (int e = 0; e < 4; ++e) cK[nt][e] = cQ[nt][e] = 0.f;
        if (n0 <= m0 + 15) {
            const auto pair = [&](int tile, int r, int f) -> unsigned {  // bf16 pair (f, f + 1) of row r of Q (0) / K (1)
                if constexpr (GF_H) return *reinterpret_cast<const unsigned*>((tile ? Kh : Qh) + gf_h(r, f));
                ta x[2];
                ldv<2>((tile ? R1 : R0) + gf_grp(r, f >> 2) + (f & 3), x);
                return pack2(x[0], x[1]);
            };
#pragma unroll
            for (int k0 = 0; k0 < DKP; k0 += 16) {
                const int f = k0 + 2 * tq;
                const unsigned aK[4] = {pair(1, m0 + g, f), pair(1, m0 + g + 8, f), pair(1, m0 + g, f + 8),
                                        pair(1, m0 + g + 8, f + 8)};
                const unsigned aQ[4] = {pair(0, m0 + g, f), pair(0, m0 + g + 8, f), pair(0, m0 + g, f + 8),
                                        pair(0, m0 + g + 8, f + 8)};
#pragma unroll
                for (int nt = 0; nt < 4; ++nt) {
                    if (n0 + 8 * nt <= m0 + 15) {
                        const unsigned b0 = pair(1, n0 + 8 * nt + g, f), b1 = pair(1, n0 + 8 * nt + g, f + 8);
                        mma_bf16(cK[nt], aK, b0, b1);
                        mma_bf16(cQ[nt], aQ, b0, b1);
                    }
                }
            }
#pragma unroll
            for (int nt = 0; nt < 4; ++nt)
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                    const int r = m0 + g + 8 * (e >> 1), c = n0 + 8 * nt + 2 * tq + (e & 1);
                    R2[r * GF_LD + c] = cK[nt][e];
                    R3[c * GF_LD + r] = cQ[nt][e];
                }
        }
    }
#else
    if constexpr (GF_TF) {  // float32: K K^T and Q K^T unscaled, 3xTF32, the warps' tiles on or below the diagonal
        if (n0 <= m0) {
            const auto kT = [&](int f, int c) { return R1[gf_el(c, f)]; };  // (K^T)[f][c]
            gf_tc<GF_BX>(m0, n0, 0, DKP, [&](int r, int f) { return R1[gf_el(r, f)]; }, kT, [&](int r, int c, ta x) { R2[r * GF_LD + c] = x; });
            gf_tc<GF_BX>(m0, n0, 0, DKP, [&](int r, int f) { return R0[gf_el(r, f)]; }, kT, [&](int r, int c, ta x) { R3[c * GF_LD + r] = x; });
        }
    }
#endif
#if !GF_TC
    if constexpr (GF_TF) {
#endif
    __syncthreads();
    // the decay table's scales in place (each thread its own piece; what lies above the diagonal,
    // not computed, is set to zero)
#pragma unroll
    for (int i = 0; i < GF_RC; ++i)
#pragma unroll
        for (int jj = 0; jj < GF_RC; ++jj) {
            const int t = dr * GF_RC + i, s = dc * GF_RC + jj;
            const ta e = dec(i, jj);  // once: the stores below could alias a_t for the compiler
            R2[t * GF_LD + s] = s < t ? (bb[t] * e) * R2[t * GF_LD + s] : (ta)0;
            R3[s * GF_LD + t] = s <= t ? e * R3[s * GF_LD + t] : (ta)0;
        }
#if !GF_TC
    } else {
    if (tid < GF_NLOW) {
        ta acc[GF_RC][GF_RC];
        gf_mm_rows(acc, R1, R1, dr, dc);
        gf_store(acc, dr, dc, [&](int t, int s, ta x) {
            R2[t * GF_LD + s] = s < t ? (bb[t] * dec(t - dr * GF_RC, s - dc * GF_RC)) * x : (ta)0;
        });
        gf_mm_rows(acc, R0, R1, dr, dc);
        gf_store(acc, dr, dc, [&](int t, int s, ta x) {
            R3[s * GF_LD + t] = s <= t ? dec(t - dr * GF_RC, s - dc * GF_RC) * x : (ta)0;
        });
    } else {
#pragma unroll
        for (int i = 0; i < GF_RC; ++i)
#pragma unroll
            for (int jj = 0; jj < GF_RC; ++jj) {
                const int t = dr * GF_RC + i, s = dc * GF_RC + jj;
                R2[t * GF_LD + s] = (ta)0;
                R3[s * GF_LD + t] = (ta)0;
            }
    }
    }
#endif
    __syncthreads();
    // X = (I + N)^{-1} in place of N. Warp stage (the first GF_SW threads): the 16 x 16 diagonal
    // blocks (thread 16 b + c: column c of block b, forward substitution in registers, a column's
    // updates from rows r < c skipped: N is not read left of the column), then each warp's 32 x 32
    // block X_10 = -X_11 (N_10 X_00). Meanwhile the other threads write e^G K and stage Lambda's levels.
    if (tid < GF_SW) {
        const int b = tid >> 4, c = tid & 15;
        ta* Nb = R2 + 16 * b * (GF_LD + 1);  // diagonal block b
        ta x[16];
        if (tid < CH) {
#pragma unroll
            for (int i = 0; i < 16; ++i) x[i] = (ta)(i == c);
#pragma unroll
            for (int r = 0; r < 15; ++r) {
                if (r >= c) {
                    const ta xr = x[r];
#pragma unroll
                    for (int i = r + 1; i < 16; ++i) x[i] = fma(-Nb[i * GF_LD + r], xr, x[i]);
                }
            }
        }
        __syncwarp();  // the warp's reads of its diagonal blocks are done
        if (tid < CH) {
#pragma unroll
            for (int i = 0; i < 16; ++i) Nb[i * GF_LD + c] = x[i];
        }
        if constexpr (CH >= 32) {
            __syncwarp();
            const int w = tid >> 5, lane = tid & 31, i = lane >> 1, j0 = (lane & 1) * 8;
            ta* B0 = R2 + 32 * w * (GF_LD + 1);  // the warp's 32 x 32 diagonal block
            ta* S = R0 + w * 16 * 20;            // its 16 x 16 scratch
            gf_offdiag<16, 8>(B0, S, i, j0, [] { __syncwarp(); });
        }
    } else {
        for (int i4 = tid - GF_SW; i4 < CH * GF_G; i4 += NT - GF_SW) {  // by groups of 4
            const int t = i4 / GF_G, gq = i4 % GF_G;
            ta x[4];
            if constexpr (GF_H) {
#pragma unroll
                for (int e = 0; e < 4; ++e) x[e] = gf_wid(Kh[gf_h(t, 4 * gq + e)]);
            } else {
                ldv<4>(R1 + gf_grp(t, gq), x);
            }
#pragma unroll
            for (int e = 0; e < 4; ++e)
                if (4 * gq + e < DK) ek[(cj * CH + t) * DK + 4 * gq + e] = eG[t] * x[e];
        }
        for (int idx = tid - GF_SW; idx < CH * GF_NL; idx += NT - GF_SW) {
            const int t = idx / GF_NL, l = idx % GF_NL;
            const i64 g = g0 + t;
            lamS[t * 8 + l] = (g >= 0 && g < T) ? ld(lam + (bh * T + g) * L + min(l, L - 1)) : (ta)0;
        }
        if (bad || lamw) {  // the chunk's rows of lam in the call, whole: checked, copied in the compute type
            const i64 r0 = max(g0, (i64)0), r1 = min(g0 + CH, (i64)T);
            for (i64 idx = (r0 + bh * T) * L + tid - GF_SW; idx < (r1 + bh * T) * L; idx += NT - GF_SW) {
                const ta x = ld(lam + idx);
                nf = fma(x, (ta)0, nf);
                if (lamw) lamw[idx] = x;
            }
        }
    }
    __syncthreads();
    if constexpr (CH == 64) {  // the 64 x 64 block: X_10 = -X_11 (N_10 X_00) over 32 x 32 blocks
        const int i = tid >> 3, j0 = (tid & 7) * 4;
        gf_offdiag<32, 4>(R2, R0, i, j0, [] { __syncthreads(); });
        __syncthreads();
    }
    constexpr int RD = DKP / 16;  // FFMA: columns per thread of a CH x DKP product
    if constexpr (GF_TF) {
        // attn^T [s][t] = beta_s (M X)[t][s] (M[t][r] = 0 for r > t, X[r][s] = 0 for r < s)
        {
            const GfAT<false> la{R3, GF_LD, nullptr};  // M[t][r] = M^T[r][t]
            const auto lb = [&](int r, int s) { return R2[r * GF_LD + s]; };
            const auto st = [&](int t, int s, ta x) { AT[s * GF_LD + t] = bb[s] * x; };
            if constexpr (GF_HBAL)
                gf_tcb<false, GF_H>([](int, int n) { return n; }, [](int m) { return m + 16; }, la, lb, st);
            else
                gf_tc<false, GF_H>(m0, n0, n0, m0 + 16, la, lb, st);
        }
        __syncthreads();
        // qeff = e^G * Q - attn (e^G K) (attn[t][r] = 0 for r > t)
        ta* qej = qe + cj * CH * DK;
        {
            const GfAT<true> la{AT, GF_LD, eG};  // attn[t][r] e^{G_r}
            const auto st = [&](int t, int f, ta x) {
                const i64 g = g0 + t;
                if (f < DK) qej[t * DK + f] = eG[t] * ((g >= 0 && g < T) ? ld(q + (bh * T + g) * DK + f) : (ta)0) - x;
            };
            if constexpr (GF_HBAL)
                gf_tcb<GF_BX, false, GF_HL>([](int, int) { return 0; }, [](int m) { return m + 16; }, la, kel, st, Kh);
            else
                gf_tc<GF_BX, false, GF_HL>(m0, n0, 0, m0 + 16, la, kel, st, Kh);
        }
        // phi^T [s][f] = beta_s (X^T Z)[s][f] into R3 (X[r][s] = 0 for r < s; M^T is read no more) and phi out
        // (a warp's store: 4 rows of phi, 8 consecutive tokens each)
        // (16-bit inputs: the suffix decay e^Z on X's side, K exact on B's; else on K's side, as before)
        // (GF_H: phi^T over X, after the barrier)
        {
            const GfAT<GF_BX> la{R2, GF_LD, eZ};  // X[r][s] (e^{Z_r})
            const auto lb = [&](int r, int f) { return GF_BX ? kel(r, f) : eZ[r] * kel(r, f); };
            const auto st = [&](int s, int f, ta x) {
                x *= bb[s];
                PT[s * GF_LK + f] = x;
                if (f < DK) ph[(cj * DK + f) * CH + s] = x;
            };
            if constexpr (GF_HBAL)
                gf_tcb<GF_BX, GF_H, GF_HL>([](int m, int) { return m; }, [](int) { return CH; }, la, lb, st, Kh);
            else
                gf_tc<GF_BX, GF_H, GF_HL>(m0, n0, m0, CH, la, lb, st, Kh);
        }
    } else {
    // attn^T [s][t] = beta_s (M X)[t][s] into R0 (the scratch is read no more)
    gf_product<GF_RC, GF_RC>(
        0, w1, ty, tx, [&](int kk, ta (&x)[GF_RC]) { ldv<GF_RC>(R3 + kk * GF_LD + ty * GF_RC, x); },
        [&](int kk, ta (&x)[GF_RC]) { ldv<GF_RC>(R2 + kk * GF_LD + tx * GF_RC, x); },
        [&](int t, int s, ta x) { R0[s * GF_LD + t] = bb[s] * x; });
    __syncthreads();
    {  // qeff = e^G * Q - attn (e^G K) (Q read again from the input, by groups of 4 where RD allows)
        ta* qej = qe + cj * CH * DK;
        ta acc[GF_RC][RD];
        zero_acc(acc);
        gf_mm(acc, 0, w1, [&](int kk, ta (&x)[GF_RC]) {
            ldv<GF_RC>(R0 + kk * GF_LD + ty * GF_RC, x);
            const ta e = eG[kk];
#pragma unroll
            for (int i = 0; i < GF_RC; ++i) x[i] *= e;
        }, [&](int kk, ta (&x)[RD]) { gf_ldk<RD>(R1, kk, tx * RD, x); });
        if constexpr (RD % 4 == 0) {
#pragma unroll
            for (int i = 0; i < GF_RC; ++i) {
                const int t = ty * GF_RC + i;
#pragma unroll
                for (int u = 0; u < RD; u += 4) {
                    const int c = tx * RD + u;
                    ta x[4];
                    gf_ld4(q + bh * T * DK, g0 + t, c, T, DK, DK, gf_vec(q, DK), x);
#pragma unroll
                    for (int e = 0; e < 4; ++e)
                        if (c + e < DK) qej[t * DK + c + e] = eG[t] * x[e] - acc[i][u + e];
                }
            }
        } else {
            gf_store(acc, ty, tx, [&](int t, int kk, ta x) {
                const i64 g = g0 + t;
                if (kk < DK) qej[t * DK + kk] = eG[t] * ((g >= 0 && g < T) ? ld(q + (bh * T + g) * DK + kk) : (ta)0) - x;
            });
        }
    }
    // phi^T [s][kk] = beta_s (X^T Z)[s][kk] into R3 (M^T is read no more; phi goes out below)
    gf_product<GF_RC, RD>(
        w0, CH, ty, tx, [&](int kk, ta (&x)[GF_RC]) { ldv<GF_RC>(R2 + kk * GF_LD + ty * GF_RC, x); },
        [&](int kk, ta (&x)[RD]) {
            gf_ldk<RD>(R1, kk, tx * RD, x);
            const ta e = eZ[kk];
#pragma unroll
            for (int jj = 0; jj < RD; ++jj) x[jj] *= e;
        },
        [&](int s, int kk, ta x) { R3[s * GF_LK + kk] = bb[s] * x; });
    }
    __syncthreads();  // attn^T unmasked, K are read no more; phi^T written
    if constexpr (!GF_TF)
        for (int idx = tid; idx < DK * CH; idx += NT) ph[cj * DK * CH + idx] = R3[(idx % CH) * GF_LK + idx / CH];
    for (int idx = tid; idx < CH * CH; idx += NT) {  // Lambda * attn, in place (zero above the diagonal)
        const int s = idx / CH, t = idx % CH;
        AT[s * GF_LD + t] *= s <= t ? lamS[t * 8 + fen_level(t, s)] : (ta)0;
    }
    // the value columns, GF_VB at a time: H = phi V, out = (Lambda * attn) V
    for (int vb = 0; vb < DV; vb += GF_VB) {
        if (vb) __syncthreads();  // the previous block's V read
        const bool vvec = gf_vec(v + vb, DV);  // V's rows by groups of 4
        if constexpr (GF_H) {
#pragma unroll
            for (int i4 = tid; i4 < CH * GF_VB / 4; i4 += NT) {
                const int t = i4 / (GF_VB / 4), c = 4 * (i4 % (GF_VB / 4));
                gf_st4h(v + bh * T * DV + vb, g0 + t, c, T, DV - vb, DV, vvec, Kh + gf_h(t, c), nf);
            }
        } else
#pragma unroll
        for (int i4 = tid; i4 < CH * GF_VB / 4; i4 += NT) {
            const int t = i4 / (GF_VB / 4), c = 4 * (i4 % (GF_VB / 4));
            ta x[4];
            gf_ld4(v + bh * T * DV + vb, g0 + t, c, T, DV - vb, DV, vvec, x);
#pragma unroll
            for (int e = 0; e < 4; ++e) nf = fma(x[e], (ta)0, nf);
            gf_st4(R1 + t * GF_LV + c, x);
        }
        __syncthreads();
        constexpr int RV = GF_VB / 16;  // value columns per thread
        const auto vcols = [&](int kk, ta (&x)[RV]) { ldv<RV>(R1 + kk * GF_LV + tx * RV, x); };
        const auto hstore = [&](int kk, int c, ta x) {
            if (kk < DK && vb + c < DV) Hc[(cj * DK + kk) * DV + vb + c] = x;
        };
        const auto ostore = [&](int t, int c, ta x) {
            if (vb + c < DV) out[(cj * CH + t) * DV + vb + c] = x;
        };
        if constexpr (GF_TF) {  // H = phi V; out = (Lambda * attn) V ((Lambda * attn)[t][s] = 0 for s > t)
            const auto vel = [&](int s, int c) -> ta { return GF_H ? gf_wid(Kh[gf_h(s, c)]) : R1[s * GF_LV + c]; };
            gf_tc<GF_BX, false, GF_HL>(m0, n0, 0, CH, GfAT<false>{PT, GF_LK, nullptr}, vel, hstore, Kh);  // A = phi[f][s], B = V
            const GfAT<false> la{AT, GF_LD, nullptr};  // (Lambda * attn)[t][s]
            if constexpr (GF_HBAL)
                gf_tcb<GF_BX, false, GF_HL>([](int, int) { return 0; }, [](int m) { return m + 16; }, la, vel, ostore, Kh);
            else
                gf_tc<GF_BX, false, GF_HL>(m0, n0, 0, m0 + 16, la, vel, ostore, Kh);
        } else {
            gf_product<RD, RV>(0, CH, ty, tx, [&](int kk, ta (&x)[RD]) { ldv<RD>(R3 + kk * GF_LK + ty * RD, x); }, vcols,
                               hstore);
            gf_product<GF_RC, RV>(0, w1, ty, tx, [&](int kk, ta (&x)[GF_RC]) { ldv<GF_RC>(R0 + kk * GF_LD + ty * GF_RC, x); },
                                  vcols, ostore);
        }
    }
    if (bad && nf != nf) *bad = 1;  // a plain store: every writer stores the same value
}
