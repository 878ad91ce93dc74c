// Log-linear Gated DeltaNet: the per-chunk WY / UT forms in one kernel (host: gated_delta.py).
// Compiled after common.cu, gated_delta.cu, gated_delta_tier.cu, gated_delta_coarse.cu and gated_delta_forms_tc.cu
// (TA, CH, DKP; the tiles' layout, the loads, the tensor-core products; inputs read through ld(); 16-bit inputs are
// widened by the registry). The quantities of lsattn.gated_delta._chunk_forms and
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
// float32 (four tiles, 73 KB: GF_S0 .. GF_S3 in gated_delta_forms_tc.cu; Config.smem in _compile.py; bfloat16 inputs: 4 blocks per SM, 55 KB,
// Q, K, V as 16-bit tiles, GF_H in gated_delta_forms_tc.cu). Q and K are kept once,
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

// GF_S64: gf_offdiag<32, 4>'s products over their nonzero terms (X_00[m][c] = 0 for m < c, X_11[i][m] = 0 for m > i),
// the m order kept. Warp w, p = w % 4. S = N_10 X_00: row 16 (w / 4) + lane / 2, columns ca, ca + 1 in group p (m >= 4 p)
// and cb, cb + 1 in group 7 - p (m >= 28 - 4 p). -X_11 S: rows 4 p + a and 28 - 4 p + a (a = lane % 4; m < 4 p + 4 and
// m < 32 - 4 p), columns c, c + 1 of the half w / 4. Every warp ~36 m-steps of 2 columns (the longest before: 32 of 4).
template <int LS, typename Sync>
__device__ __forceinline__ void gf_offdiag64(ta* B0, ta* S, Sync sync) {  // (S: row stride LS)
    constexpr int HB = 32;
    const int w = threadIdx.x >> 5, lane = threadIdx.x & 31, p = w & 3;
    {
        const int i = 16 * (w >> 2) + (lane >> 1), ca = 4 * p + 2 * (lane & 1), cb = HB - 4 - 4 * p + 2 * (lane & 1);
        const ta* Nr = B0 + (HB + i) * GF_LD;
        ta ra[2] = {(ta)0, (ta)0}, rb[2] = {(ta)0, (ta)0};
#pragma unroll 1
        for (int m4 = 4 * p; m4 < HB - 4 - 4 * p; m4 += 4) {  // group p alone
            ta nv[4];
            ldv<4>(Nr + m4, nv);
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                ta x[2];
                ldv<2>(B0 + (m4 + e) * GF_LD + ca, x);
                ra[0] = fma(nv[e], x[0], ra[0]), ra[1] = fma(nv[e], x[1], ra[1]);
            }
        }
#pragma unroll 1
        for (int m4 = HB - 4 - 4 * p; m4 < HB; m4 += 4) {  // both groups
            ta nv[4];
            ldv<4>(Nr + m4, nv);
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                ta x[2], y[2];
                ldv<2>(B0 + (m4 + e) * GF_LD + ca, x);
                ldv<2>(B0 + (m4 + e) * GF_LD + cb, y);
                ra[0] = fma(nv[e], x[0], ra[0]), ra[1] = fma(nv[e], x[1], ra[1]);
                rb[0] = fma(nv[e], y[0], rb[0]), rb[1] = fma(nv[e], y[1], rb[1]);
            }
        }
        gf_st2(S + i * LS + ca, ra[0], ra[1]);
        gf_st2(S + i * LS + cb, rb[0], rb[1]);
    }
    sync();  // S written, N_10 read
    {
        const int a = lane & 3, c = 16 * (w >> 2) + 2 * (lane >> 2), il = 4 * p + a, ih = HB - 4 - 4 * p + a;
        const ta* Xl = B0 + (HB + il) * GF_LD + HB;
        const ta* Xh = B0 + (HB + ih) * GF_LD + HB;
        ta rl[2] = {(ta)0, (ta)0}, rh[2] = {(ta)0, (ta)0};
#pragma unroll 1
        for (int m4 = 0; m4 < 4 * p + 4; m4 += 4) {  // both rows
            ta xl[4], xh[4];
            ldv<4>(Xl + m4, xl);
            ldv<4>(Xh + m4, xh);
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                ta sv[2];
                ldv<2>(S + (m4 + e) * LS + c, sv);
                rl[0] = fma(xl[e], sv[0], rl[0]), rl[1] = fma(xl[e], sv[1], rl[1]);
                rh[0] = fma(xh[e], sv[0], rh[0]), rh[1] = fma(xh[e], sv[1], rh[1]);
            }
        }
#pragma unroll 1
        for (int m4 = 4 * p + 4; m4 < HB - 4 * p; m4 += 4) {  // the row of group 7 - p alone
            ta xh[4];
            ldv<4>(Xh + m4, xh);
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                ta sv[2];
                ldv<2>(S + (m4 + e) * LS + c, sv);
                rh[0] = fma(xh[e], sv[0], rh[0]), rh[1] = fma(xh[e], sv[1], rh[1]);
            }
        }
        gf_st2(B0 + (HB + il) * GF_LD + c, -rl[0], -rl[1]);
        gf_st2(B0 + (HB + ih) * GF_LD + c, -rh[0], -rh[1]);
    }
}

// GF_OD4: gf_offdiag<16, 8> (one warp, its 32 x 32 block) over the nonzero terms, the m order kept. S = N_10 X_00: row
// lane / 2, columns 4 q + 2 (lane % 2), + 1 of the groups q = 0 .. 3, group q from m = 4 q on. -X_11 S: rows 4 q + a
// (a = lane % 4), columns 2 (lane / 4), + 1, row 4 q + a up to m < 4 q + 4. Fully unrolled: 40 m-steps of 2 columns
// each (before: 16 of 8).
template <int LS>
__device__ __forceinline__ void gf_offdiag16(ta* B0, ta* S) {  // (S: row stride LS)
    constexpr int HB = 16;
    const int lane = threadIdx.x & 31;
    {
        const int i = lane >> 1, c0 = 2 * (lane & 1);
        const ta* Nr = B0 + (HB + i) * GF_LD;
        ta r[4][2];
#pragma unroll
        for (int q = 0; q < 4; ++q) r[q][0] = r[q][1] = (ta)0;
#pragma unroll
        for (int b = 0; b < 4; ++b) {
            ta nv[4];
            ldv<4>(Nr + 4 * b, nv);
#pragma unroll
            for (int e = 0; e < 4; ++e)
#pragma unroll
                for (int q = 0; q <= b; ++q) {
                    ta x[2];
                    ldv<2>(B0 + (4 * b + e) * GF_LD + 4 * q + c0, x);
                    r[q][0] = fma(nv[e], x[0], r[q][0]), r[q][1] = fma(nv[e], x[1], r[q][1]);
                }
        }
#pragma unroll
        for (int q = 0; q < 4; ++q) gf_st2(S + i * LS + 4 * q + c0, r[q][0], r[q][1]);
    }
    __syncwarp();  // S written, N_10 read
    {
        const int a = lane & 3, c = 2 * (lane >> 2);
        ta r[4][2];
#pragma unroll
        for (int q = 0; q < 4; ++q) r[q][0] = r[q][1] = (ta)0;
#pragma unroll
        for (int b = 0; b < 4; ++b) {
            ta xr[4][4];
#pragma unroll
            for (int q = b; q < 4; ++q) ldv<4>(B0 + (HB + 4 * q + a) * GF_LD + HB + 4 * b, xr[q]);
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                ta sv[2];
                ldv<2>(S + (4 * b + e) * LS + c, sv);
#pragma unroll
                for (int q = b; q < 4; ++q) r[q][0] = fma(xr[q][e], sv[0], r[q][0]), r[q][1] = fma(xr[q][e], sv[1], r[q][1]);
            }
        }
#pragma unroll
        for (int q = 0; q < 4; ++q) gf_st2(B0 + (HB + 4 * q + a) * GF_LD + c, -r[q][0], -r[q][1]);
    }
}

// The register tile of a product: element (ty RM + i, tx RN + j) handed to store(row, column, value).
template <int RM, int RN, typename S>
__device__ __forceinline__ void gf_store(const ta (&acc)[RM][RN], int ty, int tx, S store) {
#pragma unroll
    for (int i = 0; i < RM; ++i)
#pragma unroll
        for (int j = 0; j < RN; ++j) store(ty * RM + i, tx * RN + j, acc[i][j]);
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
    gd_e* __restrict__ qe,       // (BH, n, CH, DK)  qeff (GD_H16: the four in bfloat16, gd_put's rounding)
    gd_e* __restrict__ ek,       // (BH, n, CH, DK)  e^G K
    gd_e* __restrict__ ph,       // (BH, n, DK, CH)  phi
    gd_e* __restrict__ Hc,       // (BH, n, DK, DV)  H = phi V
    ta* __restrict__ gc,         // (BH, n)          chunk total log decay
    gd_o* __restrict__ out,      // (BH, n, CH, DV)  the intra-chunk output (GD_O16: bfloat16)
    ta* __restrict__ lamw,       // (BH, T, L) lam in the compute type, or null
    int* __restrict__ bad,       // set to 1 when some input read is not finite (log decays: +inf, NaN), or null
    int T, int DK, int DV, int L, i64 p, i64 F, int n
#if GF_XO
    , ta* __restrict__ xo        // (BH, n, CH, CH) X [r][s] (unit diagonal, zeros above), or null
#endif
    ) {
    extern __shared__ __align__(16) unsigned char smem_raw[];
    ta* R0 = reinterpret_cast<ta*>(smem_raw);  // Q [t][f] swizzled; the solve's scratch; attn^T [s][t]
    ta* R1 = R0 + GF_S0;                       // K [t][f] swizzled; V [s][col]
    ta* R2 = GF_H ? reinterpret_cast<ta*>(smem_raw + 2 * GF_HB) : R1 + GF_S1;  // N [i][r], then X [r][s]
    ta* R3 = R2 + GF_S2;                       // M^T [s][t] (M = D * Q K^T), then phi^T [s][kk]
    ti* Qh = reinterpret_cast<ti*>(smem_raw);  // GF_H: Q [t][f] 16-bit (gf_h), then the solve's scratch (R0)
    ti* Kh = Qh + CH * 64;                     // GF_H: K [t][f] 16-bit, then V [s][col]
    ta* AT = GF_H ? R3 : R0;                   // attn^T [s][t] (GF_H: over M^T)
    ta* PT = GF_H ? R2 : R3;                   // phi^T [s][kk] (GF_H: over X)
    ti* AEh = reinterpret_cast<ti*>(R3);       // GF_AL: (attn e^G)^T [s][t] 16-bit (gf_h) over M^T
    ti* ALh = AEh + CH * 64;                   //        (Lambda * attn)^T [s][t]
    ti* PTh = reinterpret_cast<ti*>(R2);       //        phi^T [s][f] over X
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
    // Lambda's levels staged (lamS, read after the solve) and the chunk's rows of lam in the call, whole, checked and
    // copied in the compute type (lamw), by threads i0, i0 + stride, ..: GF_LAMP (16-bit tiles), every thread beside the
    // loads of Q and K (one wait for all the block's global reads); else the 6 warps beside the solve's warp stage
    const auto lam_pass = [&](int i0, int stride) {
        for (int idx = i0; idx < CH * GF_NL; idx += stride) {
            const int t = idx / GF_NL, l = idx % GF_NL;
            const i64 g = g0 + t;
            lamS[t * 8 + l] = (g >= 0 && g < T) ? ld(lam + (bh * T + g) * L + min(l, L - 1)) : (ta)0;
        }
        if (bad || lamw) {
            const i64 r0 = max(g0, (i64)0), r1 = min(g0 + CH, (i64)T);
            for (i64 idx = (r0 + bh * T) * L + i0; idx < (r1 + bh * T) * L; idx += stride) {
                const ta x = ld(lam + idx);
                nf = fma(x, (ta)0, nf);
                if (lamw) lamw[idx] = x;
            }
        }
    };
    if (GF_LAMP) lam_pass(tid, NT);
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
    if (GF_GZB && GF_TC && CH == 64) {  // token t on warp 1 (t < 32) / 5: G_t, then the suffix after t (64 terms in all)
        const int w = tid >> 5;
        if (w == 1 || w == 5) {
            const int t = (tid & 31) + (w == 5 ? 32 : 0);
            ta G = (ta)0, S = (ta)0;
            for (int r = 0; r <= t; ++r) G += aa[r];
            eG[t] = gf_ex(G);
            if (t == CH - 1) gc[cj] = G;
            for (int r = CH - 1; r > t; --r) S += aa[r];
            eZ[t] = gf_ex(S);
        }
    } else if (tid < CH) {
        ta G = (ta)0;
        for (int r = 0; r <= tid; ++r) G += aa[r];
        eG[tid] = gf_ex(G);
        if (tid == CH - 1) gc[cj] = G;
    } else if (tid < 2 * CH) {
        const int t = tid - CH;
        ta S = (ta)0;
        for (int r = CH - 1; r > t; --r) S += aa[r];
        eZ[t] = gf_ex(S);
    }
    // This thread's RC x RC piece (dr, dc) of the CH x CH products N and M (FFMA) or of their decay scales (tensor
    // cores): the 136 pieces on or below the diagonal on threads 0 .. 135 (5 of the 8 warps: the upper 120, zero,
    // written by threads 136 .., take no exponential; with tensor cores (ty, tx) before session 15: every warp ran
    // the exponentials' path; H200, 8K: float32 -1.0%, bf16 inputs unchanged). Its piece of the decay table, D[t][s]
    // (t = dr RC + i, s = dc RC + jj): the sum over a_{s+1} .. a_t as (the rest of s's group) + (the groups
    // between) + (t's group up to t).
    constexpr int GF_NLOW = 136;
    int dr = 0, dc;
    if (tid < GF_NLOW) {  // lower piece tid = dr (dr + 1) / 2 + dc
        while ((dr + 1) * (dr + 2) / 2 <= tid) ++dr;
        dc = tid - dr * (dr + 1) / 2;
    } else {  // upper piece tid - 136 = dc (dc - 1) / 2 + dr, dr < dc
        dc = 1;
        while (dc * (dc + 1) / 2 <= tid - GF_NLOW) ++dc;
        dr = tid - GF_NLOW - dc * (dc - 1) / 2;
    }
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
            return gf_ex(x);
        }
        return gf_ex(suf[jj] + mid + pre[i]);
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
    // block X_10 = -X_11 (N_10 X_00). Meanwhile the other threads write e^G K (and lam_pass where not GF_LAMP).
    if (tid < GF_SW) {
        const int b = tid >> 4, c = tid & 15;
        ta* Nb = R2 + 16 * b * (GF_LD + 1);  // diagonal block b
        ta x[16];
        if (tid < CH) {
#pragma unroll
            for (int i = 0; i < 16; ++i) x[i] = (ta)(i == c);
            if constexpr (GF_DROW) {  // by rows: row i's N read 4 at a time; x[i]'s updates in the same order (r up)
#pragma unroll
                for (int i = 1; i < 16; ++i)
#pragma unroll
                    for (int g = 0; 4 * g < i; ++g) {
                        ta nv[4];
                        ldv<4>(Nb + i * GF_LD + 4 * g, nv);
#pragma unroll
                        for (int e = 0; e < 4; ++e)
                            if (4 * g + e < i && 4 * g + e >= c) x[i] = fma(-nv[e], x[4 * g + e], x[i]);
                    }
            } else {
#pragma unroll
            for (int r = 0; r < 15; ++r) {
                if (r >= c) {
                    const ta xr = x[r];
#pragma unroll
                    for (int i = r + 1; i < 16; ++i) x[i] = fma(-Nb[i * GF_LD + r], xr, x[i]);
                }
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
            // its 16 x 16 scratch (GF_QS: rows 16 w .., columns 32 .. 47 of X, whose upper right block is read by no one)
            ta* S = GF_QS ? R2 + 16 * w * GF_LD + 32 : R0 + w * 16 * 20;
            if constexpr (GF_OD4) gf_offdiag16<GF_QS ? GF_LD : 20>(B0, S);
            else gf_offdiag<16, 8>(B0, S, i, j0, [] { __syncwarp(); });
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
            gd_e* p = ek + (cj * CH + t) * DK + 4 * gq;
#pragma unroll
            for (int e = 0; e < 4; ++e) x[e] = gd_tar(x[e] * eG[t]);  // (gd_tar: gated_delta.cu's GD_TAR)
            if (DK % 4 == 0) {  // (16-byte aligned)
                if (4 * gq < DK) gf_st4(p, x);
            } else {
#pragma unroll
                for (int e = 0; e < 4; ++e)
                    if (4 * gq + e < DK) gd_put(p + e, x[e]);
            }
        }
        if (!GF_LAMP) lam_pass(tid - GF_SW, NT - GF_SW);
    }
    __syncthreads();
    if constexpr (CH == 64) {  // the 64 x 64 block: X_10 = -X_11 (N_10 X_00) over 32 x 32 blocks
        const int i = tid >> 3, j0 = (tid & 7) * 4;
        if constexpr (GF_S64) gf_offdiag64<GF_QS ? GF_LD : 36>(R2, GF_QS ? R2 + 32 : R0, [] { __syncthreads(); });
        else gf_offdiag<32, 4>(R2, R0, i, j0, [] { __syncthreads(); });
        __syncthreads();
    }
#if GF_XO
    if (xo != nullptr) {  // X as the solve left it in R2 (read only until the next barrier): row r, column s
        ta* xj = xo + cj * CH * CH;
        for (int idx = tid; idx < CH * CH; idx += NT) {
            const int r = idx / CH, s = idx % CH;
            xj[idx] = r > s ? R2[r * GF_LD + s] : (ta)(r == s);
        }
    }
#endif
    constexpr int RD = DKP / 16;  // FFMA: columns per thread of a CH x DKP product
    const bool vcp = GF_VE && DV % 8 == 0 && reinterpret_cast<unsigned long long>(v) % 16 == 0;  // (GF_VE's cp.async)
    if constexpr (GF_TF) {
        // attn^T [s][t] = beta_s (M X)[t][s] (M[t][r] = 0 for r > t, X[r][s] = 0 for r < s)
        {
            const GfAT<false> la{R3, GF_LD, nullptr};  // M[t][r] = M^T[r][t]
            const auto lb = [&](int r, int s) { return R2[r * GF_LD + s]; };
            const auto st = [&](int t, int s, ta x) {
                if constexpr (GF_AL) {  // (attn e^G)^T and (Lambda * attn)^T as bfloat16 (the pass's products below)
                    const ta y = bb[s] * x;
                    AEh[gf_h(s, t)] = (ti)gd_bfr(y * eG[s]);
                    ALh[gf_h(s, t)] = (ti)gd_bfr(y * (s <= t ? lamS[t * 8 + gf_bitlen32(t ^ s)] : (ta)0));
                } else {
                    AT[s * GF_LD + t] = bb[s] * x;
                }
            };
            gf_tc<false, GF_H, false, (GF_B16M & 16) != 0>(m0, n0, n0, m0 + 16, la, lb, st);
        }
        __syncthreads();
        // qeff = e^G * Q - attn (e^G K) (attn[t][r] = 0 for r > t)
        gd_e* qej = qe + cj * CH * DK;
        {  // (Q read again from the input, two columns at a time)
            const GfAT<true> la{AT, GF_LD, eG};  // attn[t][r] e^{G_r}
            const bool q2 = DK % 2 == 0 && reinterpret_cast<unsigned long long>(q) % (2 * sizeof(ti)) == 0;
            const auto st = gf_pair([&](int t, int f, ta x0, ta x1) {
                if (!GF_SG && f >= DK) return;
                ta y0, y1;
                if constexpr (GF_QS) {  // Q's pair (f, f + 1) from its 16-bit tile (zero outside the call and beyond DK)
                    const unsigned u = *reinterpret_cast<const unsigned*>(Qh + gf_h(t, f));
                    y0 = gf_wid(u & 0xffffu), y1 = gf_wid(u >> 16);
                } else {
                    gf_ld2(q + bh * T * DK, g0 + t, f, T, DK, q2, y0, y1);
                }
                if (GF_SG)  // (over the pair just read: the same thread's)
                    *reinterpret_cast<unsigned*>(Qh + gf_h(t, f)) = gd_bfr2(eG[t] * y0 - x0, eG[t] * y1 - x1);
                else
                    gf_st2c(qej + t * DK, f, DK, gd_tar(eG[t] * y0 - x0), gd_tar(eG[t] * y1 - x1));
            });
#if TI_BF16
            if constexpr (GF_AL) gf_tc<GF_BX, false, GF_HL, true>(m0, n0, 0, m0 + 16, GfAH{AEh}, kel, st, Kh);
            else
#endif
            gf_tc<GF_BX, false, GF_HL, (GF_B16M & 1) != 0>(m0, n0, 0, m0 + 16, la, kel, st, Kh);
        }
        // phi^T [s][f] = beta_s (X^T Z)[s][f] into R3 (X[r][s] = 0 for r < s; M^T is read no more) and phi out
        // (a warp's store: 4 rows of phi, 8 consecutive tokens each)
        // (16-bit inputs: the suffix decay e^Z on X's side, K exact on B's; else on K's side, as before)
        // (GF_H: phi^T over X, after the barrier)
        {
            const GfAT<GF_BX> la{R2, GF_LD, eZ};  // X[r][s] (e^{Z_r})
            const auto lb = [&](int r, int f) { return GF_BX ? kel(r, f) : eZ[r] * kel(r, f); };
            const auto st = gf_pair([&](int s, int f, ta x0, ta x1) {
                x0 *= bb[s], x1 *= bb[s];
                if constexpr (GF_AL) *reinterpret_cast<unsigned*>(PTh + gf_h(s, f)) = gd_bfr2(x0, x1);
                else gf_st2(PT + s * GF_LK + f, x0, x1);
                if constexpr (GF_SP) {  // phi [f][s] (qeff has read (attn e^G)^T: the product's barrier)
                    AEh[gf_h(f, s)] = (ti)gd_bfr(x0);
                    AEh[gf_h(f + 1, s)] = (ti)gd_bfr(x1);
                } else {
                    if (f < DK) gd_put(ph + (cj * DK + f) * CH + s, gd_tar(x0));
                    if (f + 1 < DK) gd_put(ph + (cj * DK + f + 1) * CH + s, gd_tar(x1));
                }
            });
            gf_tc<GF_BX, GF_H, GF_HL, (GF_B16M & 2) != 0>(m0, n0, m0, CH, la, lb, st, Kh);
        }
    } else {
    // attn^T [s][t] = beta_s (M X)[t][s] into R0 (the scratch is read no more)
    gf_product<GF_RC, GF_RC>(
        0, w1, ty, tx, [&](int kk, ta (&x)[GF_RC]) { ldv<GF_RC>(R3 + kk * GF_LD + ty * GF_RC, x); },
        [&](int kk, ta (&x)[GF_RC]) { ldv<GF_RC>(R2 + kk * GF_LD + tx * GF_RC, x); },
        [&](int t, int s, ta x) { R0[s * GF_LD + t] = bb[s] * x; });
    __syncthreads();
    {  // qeff = e^G * Q - attn (e^G K) (Q read again from the input, by groups of 4 where RD allows)
        gd_e* qej = qe + cj * CH * DK;
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
                        if (c + e < DK) gd_put(qej + t * DK + c + e, gd_tar(eG[t] * x[e] - acc[i][u + e]));
                }
            }
        } else {
            gf_store(acc, ty, tx, [&](int t, int kk, ta x) {
                const i64 g = g0 + t;
                if (kk < DK) gd_put(qej + t * DK + kk, gd_tar(eG[t] * ((g >= 0 && g < T) ? ld(q + (bh * T + g) * DK + kk) : (ta)0) - x));
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
        for (int idx = tid; idx < DK * CH; idx += NT) gd_put(ph + cj * DK * CH + idx, gd_tar(R3[(idx % CH) * GF_LK + idx / CH]));
    if constexpr (GF_SG) gf_tile_out(Qh, reinterpret_cast<gd_bf*>(qe + cj * CH * DK), CH, DK);  // qeff (Q's tile free after)
    if constexpr (GF_SP) gf_tile_out(AEh, reinterpret_cast<gd_bf*>(ph + cj * DK * CH), DK, CH);  // phi
    // GF_VE: the first value block's rows (64 x 8 pieces of 16 bytes, 2 per thread) into K's tile, asynchronously
    if (GF_VE && vcp) {
#pragma unroll
        for (int u = 0; u < CH * 8 / NT; ++u) {
            const int i8 = tid + NT * u, t = i8 / 8, c = 8 * (i8 % 8);
            const i64 g = g0 + t;
            const bool ok = g >= 0 && g < T && c < DV;
            cp_async16(Kh + gf_h(t, c), ok ? (const void*)(v + (bh * T + g) * DV + c) : (const void*)v, ok);
        }
        cp_async_commit();
    }
    if constexpr (!GF_AL)  // (GF_AL: folded into attn's epilogue)
    for (int i4 = tid; i4 < CH * CH / 4; i4 += NT) {  // Lambda * attn, in place (zero above the diagonal), by 4
        const int s = i4 / (CH / 4), t0 = 4 * (i4 % (CH / 4));
        ta x[4];
        ldv<4>(AT + s * GF_LD + t0, x);
        if (GF_LAM4 && s < t0) {  // s in an earlier group of 4: one level (bit_length of t0 XOR s) for the 4 tokens
            const int l = gf_bitlen32(t0 ^ s);
#pragma unroll
            for (int e = 0; e < 4; ++e) x[e] *= lamS[(t0 + e) * 8 + l];
        } else {
#pragma unroll
            for (int e = 0; e < 4; ++e)
                x[e] *= s <= t0 + e ? lamS[(t0 + e) * 8 + (GF_LAM4 ? gf_bitlen32((t0 + e) ^ s) : fen_level(t0 + e, s))] : (ta)0;
        }
        gf_st4(AT + s * GF_LD + t0, x);
    }
    // the value columns, GF_VB at a time: H = phi V, out = (Lambda * attn) V
    for (int vb = 0; vb < DV; vb += GF_VB) {
        if (vb) __syncthreads();  // the previous block's V read
        const bool vvec = gf_vec(v + vb, DV);  // V's rows by groups of 4
        if constexpr (GF_H) {
            if (GF_VE && vcp && vb == 0) {  // landed; x * 0 of the thread's own pieces folded into nf
                cp_async_wait<0>();
#pragma unroll
                for (int u = 0; u < CH * 8 / NT; ++u) {
                    const int i8 = tid + NT * u, t = i8 / 8, c = 8 * (i8 % 8);
                    const unsigned* w = reinterpret_cast<const unsigned*>(Kh + gf_h(t, c));
#pragma unroll
                    for (int e = 0; e < 4; ++e) nf = fma(gf_wid(w[e] & 0xffffu), (ta)0, fma(gf_wid(w[e] >> 16), (ta)0, nf));
                }
            } else {
#pragma unroll
                for (int i4 = tid; i4 < CH * GF_VB / 4; i4 += NT) {
                    const int t = i4 / (GF_VB / 4), c = 4 * (i4 % (GF_VB / 4));
                    gf_st4h(v + bh * T * DV + vb, g0 + t, c, T, DV - vb, DV, vvec, Kh + gf_h(t, c), nf);
                }
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
        const ti* Vh = Kh;  // V [s][col] 16-bit (GF_H)
        constexpr int RV = GF_VB / 16;  // value columns per thread
        const auto vcols = [&](int kk, ta (&x)[RV]) { ldv<RV>(R1 + kk * GF_LV + tx * RV, x); };
        const auto hstore = [&](int kk, int c, ta x) {
            if (kk < DK && vb + c < DV) gd_put(Hc + (cj * DK + kk) * DV + vb + c, x);
        };
        const auto ostore = [&](int t, int c, ta x) {
            if (vb + c < DV) gd_put(out + (cj * CH + t) * DV + vb + c, x);
        };
        if constexpr (GF_TF) {  // H = phi V; out = (Lambda * attn) V ((Lambda * attn)[t][s] = 0 for s > t)
            const auto vel = [&](int s, int c) -> ta { return GF_H ? gf_wid(Vh[gf_h(s, c)]) : R1[s * GF_LV + c]; };
            const auto hst = gf_pair([&](int kk, int c, ta x0, ta x1) {
                if (GF_SG) *reinterpret_cast<unsigned*>(Qh + gf_h(kk, c)) = gd_bfr2(x0, x1);
                else if (kk < DK && vb + c < DV) gf_st2c(Hc + (cj * DK + kk) * DV + vb, c, DV - vb, x0, x1);
            });
            const auto ost = gf_pair([&](int t, int c, ta x0, ta x1) {
                if (GF_SG) *reinterpret_cast<unsigned*>(AEh + gf_h(t, c)) = gd_bfr2(x0, x1);
                else if (vb + c < DV) gf_st2c(out + (cj * CH + t) * DV + vb, c, DV - vb, x0, x1);
            });
            const GfAT<false> la{AT, GF_LD, nullptr};  // (Lambda * attn)[t][s]
#if TI_BF16
            if constexpr (GF_AL) {
                gf_tc<GF_BX, false, GF_HL, true>(m0, n0, 0, CH, GfAH{PTh}, vel, hst, Vh);  // A = phi[f][s], B = V
                gf_tc<GF_BX, false, GF_HL, true>(m0, n0, 0, m0 + 16, GfAH{ALh}, vel, ost, Vh);
            } else
#endif
            {
                gf_tc<GF_BX, false, GF_HL, (GF_B16M & 4) != 0>(m0, n0, 0, CH, GfAT<false>{PT, GF_LK, nullptr}, vel, hst, Vh);  // A = phi[f][s], B = V
                gf_tc<GF_BX, false, GF_HL, (GF_B16M & 8) != 0>(m0, n0, 0, m0 + 16, la, vel, ost, Vh);
            }
        } else {
            gf_product<RD, RV>(0, CH, ty, tx, [&](int kk, ta (&x)[RD]) { ldv<RD>(R3 + kk * GF_LK + ty * RD, x); }, vcols,
                               hstore);
            gf_product<GF_RC, RV>(0, w1, ty, tx, [&](int kk, ta (&x)[GF_RC]) { ldv<GF_RC>(R0 + kk * GF_LD + ty * GF_RC, x); },
                                  vcols, ostore);
        }
    }
    if constexpr (GF_SG) {  // H's and the intra output's rows
        __syncthreads();
        gf_tile_out(Qh, reinterpret_cast<gd_bf*>(Hc + cj * DK * DV), DK, DV);
        gf_tile_out(AEh, reinterpret_cast<gd_bf*>(out + cj * CH * DV), CH, DV);
    }
    if (bad && nf != nf) *bad = 1;  // a plain store: every writer stores the same value
}
