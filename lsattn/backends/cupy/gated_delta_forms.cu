// Log-linear Gated DeltaNet: the per-chunk WY / UT forms in one kernel (host: gated_delta.py).
// Compiled after common.cu and gated_delta.cu (TA, CH, DKP; inputs in the compute type TA, read
// through ld(); 16-bit inputs are widened by the registry). The quantities of lsattn.gated_delta._chunk_forms and
// _masked_intra (see that module's docstring), per chunk c = F + j of CH tokens aligned to
// absolute multiples of CH, read straight from the (BH, T, d) inputs (tokens outside the call are
// the identity padding: q = k = v = 0, a = 0, beta = 0), with chunk-local G_t = a_0 + ... + a_t:
//   N[i, r]  = beta_i e^{a_{r+1} + ... + a_i} (k_i . k_r), r < i;   X = (I + N)^{-1}
//   attn     = ((D * Q K^T) X) diag(beta),  D[t, s] = e^{a_{s+1} + ... + a_t} (s <= t)
//   qeff     = e^G * Q - attn (e^G K);   eGK = e^G * K
//   phi      = Z^T (X diag(beta)),  Z[s] = e^{a_{s+1} + ... + a_{CH-1}} k_s;   H = phi V
//   g        = G_{CH-1};   out = (Lambda * attn) V,  Lambda[t, s] = lam[t, level(t, s)]
// which are what gd_scan consumes (always in the compute type TA). Exponentials are taken of sums
// over the stretch they stand for (the decay table as a running sum down each column, in segsum's
// order; Z's from the chunk's end, suffix_after's order), never of differences of cumulative sums:
// a -inf log decay (hard reset) stays exact. X by forward substitution, one column per thread
// (column j: x_j = 1, x_i = -sum_{r = j}^{i-1} N[i, r] x_r in GF_SU partial sums), in TA.
//
// One block of NT = 256 threads per (chunk j, sequence bh). Shared memory (TA): three "d tiles"
// (Qt / Kt as [kk][t], e^G K and Z as [t][kk], phi^T as [s][kk], V as [s][col]) and three CH x CH
// tiles (the decay table then X, N then attn^T, (D * Q K^T)^T). Value columns in blocks of GF_VB.
// The seven products go through gf_product: FFMA register micro-tiles of mm_acc (a 16 x 16 thread
// grid); they are ~10% of the kernel's time (a tensor-core bf16 variant with split operands measured
// 1.9x slower and was removed: benchmarks/NOTES.md, issue 16).
constexpr int GF_LD = CH + 4;                        // row stride of the CH x CH tiles and of Qt / Kt
constexpr int GF_LK = DKP + 4;                       // row stride of the [t][kk] tiles
constexpr int GF_VB = DKP < 64 ? DKP : 64;           // value columns per pass
constexpr int GF_LV = GF_VB + 4;                     // row stride of the value tile
constexpr int GF_SU = 8;                             // partial sums of the forward substitution
constexpr int GF_DT = (DKP * GF_LD > CH * GF_LK ? DKP * GF_LD : CH * GF_LK);  // one d tile
constexpr int GF_CC = CH * GF_LD;                    // one CH x CH tile

// staged<> loader of the CH x W tile of rows g0.. of src (row stride ld, default D): element idx is
// token g0 + idx / W, column idx % W; zero outside tokens [0, T) and columns [0, D).
template <int W = DKP>
__device__ __forceinline__ auto gf_rows(const ti* src, i64 g0, int T, int D, int ld_ = -1) {
    const int ldr = ld_ < 0 ? D : ld_;
    return [=](int idx) {
        const int c = idx % W;
        const i64 g = g0 + idx / W;
        return (g >= 0 && g < T && c < D) ? ld(src + g * ldr + c) : (ta)0;
    };
}

// One product of the block: the M x N result of A (as [kk][row], stride lda) times B (as [kk][col],
// stride ldb) over KD reduction indices, each element handed to store(row, col, value): FFMA on a
// 16 x 16 thread grid (ty, tx), register micro-tiles of (M / 16) x (N / 16) (mm_acc).
template <int M, int N, int KD, typename S>
__device__ __forceinline__ void gf_product(const ta* A, int lda, const ta* B, int ldb, int ty, int tx, S store) {
    constexpr int RM = M / 16, RN = N / 16;
    ta acc[RM][RN];
    zero_acc(acc);
    mm_acc<RM, RN, KD>(acc, A, lda, B, ldb, ty, tx);
#pragma unroll
    for (int ii = 0; ii < RM; ++ii)
#pragma unroll
        for (int jj = 0; jj < RN; ++jj) store(ty * RM + ii, tx * RN + jj, acc[ii][jj]);
}

extern "C" __global__ void __launch_bounds__(NT) gd_forms(
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
    int T, int DK, int DV, int L, i64 p, i64 F, int n) {
    extern __shared__ __align__(16) unsigned char smem_raw[];
    ta* T0 = reinterpret_cast<ta*>(smem_raw);  // Qt [kk][t], then phi^T [s][kk]
    ta* T1 = T0 + GF_DT;                       // Kt [kk][t], then Z [s][kk], then V [s][col]
    ta* T2 = T1 + GF_DT;                       // e^G K [t][kk]
    ta* C0 = T2 + GF_DT;                       // the decay table E [t][s], then X [r][s]
    ta* C1 = C0 + GF_CC;                       // N [i][r], then attn^T [s][t]
    ta* C2 = C1 + GF_CC;                       // M^T [r][t], M = D * Q K^T
    ta* aa = C2 + GF_CC;                       // a_t, beta_t, e^{G_t}, e^{suffix after t}
    ta* bb = aa + CH;
    ta* eG = bb + CH;
    ta* eZ = eG + CH;
    check_smem((3 * GF_DT + 3 * GF_CC + 4 * CH) * sizeof(ta));
    const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
    const int j = blockIdx.x;
    const i64 bh = blockIdx.y, cj = bh * n + j;
    const i64 g0 = (F + j) * CH - p;  // the call's token index of the chunk's first row
    // the chunk's rows: Qt, Kt transposed (zero outside the call and beyond DK), a, beta; the loads
    // batched (staged<>: several in flight per thread before their stores)
    staged<CH * DKP, NT>(gf_rows(q + bh * T * DK, g0, T, DK), [&](int idx, ta x) { T0[(idx % DKP) * GF_LD + idx / DKP] = x; });
    staged<CH * DKP, NT>(gf_rows(k + bh * T * DK, g0, T, DK), [&](int idx, ta x) { T1[(idx % DKP) * GF_LD + idx / DKP] = x; });
    if (tid < CH) {
        const i64 g = g0 + tid;
        const bool ok = g >= 0 && g < T;
        aa[tid] = ok ? ld(a + bh * T + g) : (ta)0;
        bb[tid] = ok ? ld(bt + bh * T + g) : (ta)0;
    }
    __syncthreads();
    // the decay table E[t][s] = e^{a_{s+1} + ... + a_t} (s <= t, 0 above), one column per thread;
    // G (inclusive, from the start) and the suffix sums (from the end) by one thread each
    if (tid < CH) {
        const int s = tid;
        for (int t = 0; t < s; ++t) C0[t * GF_LD + s] = (ta)0;
        C0[s * GF_LD + s] = (ta)1;
        ta seg = (ta)0;
        for (int t = s + 1; t < CH; ++t) {
            seg += aa[t];
            C0[t * GF_LD + s] = ex(seg);
        }
    } else if (tid == CH) {
        ta G = (ta)0;
        for (int t = 0; t < CH; ++t) {
            G += aa[t];
            eG[t] = ex(G);
        }
        gc[cj] = G;
    } else if (tid == CH + 1) {
        ta S = (ta)0;
        for (int t = CH - 1; t >= 0; --t) {
            eZ[t] = ex(S);  // e^{a_{t+1} + ... + a_{CH-1}}
            S += aa[t];
        }
    }
    __syncthreads();
    // N = beta_i E (K K^T) strictly below the diagonal; M^T = (E * Q K^T)^T
    gf_product<CH, CH, DKP>(T1, GF_LD, T1, GF_LD, ty, tx, [&](int i, int r, ta x) {
        C1[i * GF_LD + r] = r < i ? (bb[i] * C0[i * GF_LD + r]) * x : (ta)0;
    });
    gf_product<CH, CH, DKP>(T0, GF_LD, T1, GF_LD, ty, tx, [&](int t, int s, ta x) {
        C2[s * GF_LD + t] = s <= t ? C0[t * GF_LD + s] * x : (ta)0;
    });
    __syncthreads();
    // X = (I + N)^{-1} into C0 (the decay table is read no more), column s by thread s; meanwhile
    // the other threads write e^G K and Z = e^{suffix} K as [t][kk] (Kt in T1 is read no more)
    if (tid < CH) {
        const int s = tid;
        for (int i = 0; i < CH; ++i) C0[i * GF_LD + s] = (ta)(i == s);
        for (int i = s + 1; i < CH; ++i) {
            // x_i = -sum_{r = s}^{i-1} N[i, r] x_r in GF_SU partial sums: GF_SU loads in flight per
            // step instead of one dependent shared-memory round trip per term (past i: a zero term)
            ta x[GF_SU];
#pragma unroll
            for (int u = 0; u < GF_SU; ++u) x[u] = (ta)0;
            for (int r = s; r < i; r += GF_SU) {
#pragma unroll
                for (int u = 0; u < GF_SU; ++u) {
                    const bool in = r + u < i;
                    const int rc = in ? r + u : s;
                    const ta n = C1[i * GF_LD + rc];
                    x[u] = fma(in ? n : (ta)0, C0[rc * GF_LD + s], x[u]);
                }
            }
            ta sum = (ta)0;
#pragma unroll
            for (int u = 0; u < GF_SU; ++u) sum += x[u];
            C0[i * GF_LD + s] = -sum;
        }
    } else {  // GF_SU loads in flight per thread before their stores
        const auto krow = gf_rows(k + bh * T * DK, g0, T, DK);
        for (int i0 = tid - CH; i0 < CH * DKP; i0 += GF_SU * (NT - CH)) {
            ta kv[GF_SU];
#pragma unroll
            for (int u = 0; u < GF_SU; ++u) {
                const int idx = i0 + u * (NT - CH);
                kv[u] = idx < CH * DKP ? krow(idx) : (ta)0;
            }
#pragma unroll
            for (int u = 0; u < GF_SU; ++u) {
                const int idx = i0 + u * (NT - CH), t = idx / DKP, kk = idx % DKP;
                if (idx < CH * DKP) {
                    T2[t * GF_LK + kk] = eG[t] * kv[u];
                    T1[t * GF_LK + kk] = eZ[t] * kv[u];
                }
            }
        }
    }
    __syncthreads();
    // attn^T [s][t] = beta_s (M X)[t][s] into C1 (N is read no more)
    gf_product<CH, CH, CH>(C2, GF_LD, C0, GF_LD, ty, tx, [&](int t, int s, ta x) { C1[s * GF_LD + t] = bb[s] * x; });
    __syncthreads();
    ta* qej = qe + cj * CH * DK;
    ta* phj = ph + cj * DK * CH;
    // qeff = e^G * Q - attn (e^G K) (Q read again from the input: Qt's tile is phi's now)
    gf_product<CH, DKP, CH>(C1, GF_LD, T2, GF_LK, ty, tx, [&](int t, int kk, ta x) {
        const i64 g = g0 + t;
        if (kk < DK) qej[t * DK + kk] = eG[t] * ((g >= 0 && g < T) ? ld(q + (bh * T + g) * DK + kk) : (ta)0) - x;
    });
    // phi [kk][s] = beta_s (Z^T X)[kk][s], also as phi^T [s][kk] over Qt (read last by Q K^T)
    gf_product<DKP, CH, CH>(T1, GF_LK, C0, GF_LD, ty, tx, [&](int kk, int s, ta x) {
        x *= bb[s];
        T0[s * GF_LK + kk] = x;
        if (kk < DK) phj[kk * CH + s] = x;
    });
    for (int idx = tid; idx < CH * DK; idx += NT) ek[cj * CH * DK + idx] = T2[(idx / DK) * GF_LK + idx % DK];
    __syncthreads();  // the unmasked attn^T (C1) is read no more
    staged<CH * CH, NT>(  // Lambda * attn, in place (zero above the diagonal)
        [&](int idx) {
            const int s = idx / CH, t = idx % CH;
            const i64 g = g0 + t;
            return (s <= t && g >= 0 && g < T) ? ld(lam + (bh * T + g) * L + min(fen_level(t, s), L - 1)) : (ta)0;
        },
        [&](int idx, ta w) { C1[(idx / CH) * GF_LD + idx % CH] *= w; });
    // the value columns, GF_VB at a time: H = phi V, out = (Lambda * attn) V
    for (int vb = 0; vb < DV; vb += GF_VB) {
        __syncthreads();  // phi^T, Lambda * attn written; the previous block's V read
        staged<CH * GF_VB, NT>(gf_rows<GF_VB>(v + bh * T * DV + vb, g0, T, DV - vb, DV),
                               [&](int idx, ta x) { T1[(idx / GF_VB) * GF_LV + idx % GF_VB] = x; });
        __syncthreads();
        gf_product<DKP, GF_VB, CH>(T0, GF_LK, T1, GF_LV, ty, tx, [&](int kk, int c, ta x) {
            if (kk < DK && vb + c < DV) Hc[(cj * DK + kk) * DV + vb + c] = x;
        });
        gf_product<CH, GF_VB, CH>(C1, GF_LD, T1, GF_LV, ty, tx, [&](int t, int c, ta x) {
            if (vb + c < DV) out[(cj * CH + t) * DV + vb + c] = x;
        });
    }
}
