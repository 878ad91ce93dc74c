// Backward of hierarchical exp-kernel attention (loglinear_log_attention), in four files compiled after common.cu
// and hierarchical.cu (hi_slot, hi_decay, hi_decays, hi_lse_add, HI_LOG2C, HI_LMAX): this one (the notation below,
// the products and loads both halves use, the right blocks' summaries hib_blocks and hib_bmerge), then
// hierarchical_bwd_dq.cu / _dkdv.cu (the per-chunk kernels hib_dq, hib_dkdv; their tiles and pairs in _chunk.cu). Host:
// hierarchical_bwd.py, which takes the forward's slots (or reruns its hi_intra, hi_merge and hi_snap: the intra-chunk
// log-normalisers and the Fenwick slots with their snapshots), then runs these four kernels. q, k, lv, lam, a, the output
// gradient g and dq, dk, dlv in the inputs' type ti (16-bit callers' tensors read and written as they are), the
// forward's log output o and everything else in the compute type ta.
//
// With X_ts = lam[t, level(t,s)] + (a_{s+1} + ... + a_t) + log sum_i exp(q_ti + k_si), lden_t =
// log sum_{s<=t} exp X_ts, o = log y, g = dL/do (g over -inf / NaN outputs -> 0 and those outputs
// -> +big where read: hib_go), delta_t = sum_j g_tj (hib_dq's, stored for the others), the pair's attention weight P_ts =
// exp(X_ts - lden_t), its per-feature parts P_i(t,s) = exp(q_ti + k_si + X_ts - lse_ts - lden_t)
// and D_ts = sum_j g_tj exp(lv_sj - o_tj) - delta_t (as log_attention's backward, exp_kernel_bwd.cu):
//   dq_ti = sum_{s<=t} P_i(t,s) D_ts          dk_si = sum_{t>=s} P_i(t,s) D_ts
//   dlv_sj = sum_{t>=s} P_ts g_tj exp(lv_sj - o_tj)
//   dlam[t, l] = sum_{s: level(t,s) = l} P_ts D_ts
//   da_r = sum_{t>=r} (sum_i dq_ti - sum_i dk_ti)     (the row sums: hib_dq, hib_dkdv; the suffix sum: host)
// Every factor is formed from an exponent that is <= 0 (or <= B for the value factors: the slots' capped at 64, the
// right blocks' capped in magnitude at e^HIB_CAP, the exact pairs' scaled by hib_pexp; <= HIB_LIM for the factorised
// pairs' row factors), never a raw exp(q), exp(k) or exp(lv).
//
// hib_dq      per (chunk, sequence): lden_t (hi_intra's intra part, then the held slots read as in
//             hi_read), the chunk's pairs as products with per-chunk shifts (hib_fpairs; rows past HIB_LIM
//             per pair, flagged in Fg), their P_ts and D_ts stored for hib_dkdv, then every held slot (m from msnap): with
//             A_ti = exp(q_ti + m_i + lam[t, level] + (a_{t0} + ... + a_t) - lden_t) <= 1 (z_i >= 1)
//             dq_ti += A_ti (sum_j S_ij g_tj exp(n_j - o_tj) - z_i delta_t), its sum over i into
//             dlam[t, level]. Writes lden (+big for rows with g = 0: they add nothing anywhere).
// hib_blocks  per right block R = [r0, r0 + 2^(l'-1)) of chunks (r0 > F, l' = 1 + trailing zeros of
//             r0): every key chunk c < r0 of the block to its left meets all of R's queries at level
//             log2 CH + l'. R's query summary, with M_i = max_{t in R} x_ti, x_ti = q_ti - lden_t +
//             lam[t, lev] + (decay from R's first token to t), r_t = max_i (x_ti - M_i) <= 0 and
//             W_j = max_{t in R} (r_t - o_tj):
//             U_ij = sum_t exp(x_ti - M_i - r_t) g_tj exp(r_t - o_tj - W_j),  Z_i = sum_t exp(x_ti - M_i) delta_t
//             (both factors <= 1, and a column's largest product term e^0: W_j = max_t -o_tj alone left U's terms
//             ~e^(r_t) -- e^-109 past float32's range where one row's output was -109 and the other rows carried x's
//             maxima, s30; the running maxima lower W by the least rise of M, an upper bound on every earlier row's
//             r_t falling) and R's total decay (the sum of the chunks' totals, each summed inside its chunk). A block of
//             more than HIB_PMIN chunks runs as up to HIB_NPC pieces in parallel (hib_piece), which
// hib_bmerge  merges into R's summary (the pieces' maxima and sums rescaled to the largest, factors <= 1).
// hib_dkdv    per key chunk c: the chunk's pairs as products over hib_dq's P, D and flags (the exact rows
//             per pair), then R for every level l' whose bit l'-1
//             of c is clear (R inside the call), with B_si = exp(k_si + (a_{s+1} + ... to c's end) +
//             (decay of the right blocks in between) + M_i) <= 1 (the pair of the query of M_i) and
//             V'_sj = exp(lv_sj + W_j):  dk_si += B_si (sum_j V'_sj U_ij - Z_i),  dlv_sj += V'_sj sum_i B_si U_ij,
//             as E_sj = exp(lv_sj - nn_j) <= 1 (nn: the chunk's value shifts) times U''_ij = U_ij e^(W_j + nn_j), whose
//             magnitude is capped at e^HIB_CAP (hib_scale): the sums over j / i of the products stay finite.
// The incoming state's slots are read (dq, dlam, lden) but get no gradient here (the host refuses it).
// Rows whose every level is switched off (NaN outputs) count as g = 0.
// row strides of the k-major operands of common.cu's mm_acc (register tiles of a 16 x 16 thread grid;
// multiples of 4: its vector loads): rows of d_k, d_v and CH entries
#define HIB_TKL (DKP + 4)
#define HIB_TVL (DVP + 4)
#define HIB_TCL (CH + 4)
constexpr int HIB_RM = CH / 16, HIB_RI = DKP / 16, HIB_RN = DVP / 16;  // register tile rows / columns

#ifndef HIB_TC
#define HIB_TC 0
#endif
#ifndef HIB_BMX  // hib_blocks' maxima by two lanes per column (where 2 (DKP + DVP) <= NT)
#define HIB_BMX (2 * (DKP + DVP) <= NT)
#endif
#ifndef HIB_IRD  // (session 19, issue 17) masked loads' fallback addresses inside rows the earlier kernels wrote: hib_dkdv's
#define HIB_IRD 1  // M / W (the right block's row, not block 0's), lden / flags (the chunk's first row of the call, not one
#endif             // before the sequence); hib_dq's msnap / z (the held slot's row). 0: main's (initcheck's reports)
// blocks per SM of hib_dq / hib_dkdv and of hib_blocks: CH 64's tiles allow one / two (220 / 53 KB of shared memory), so
// their registers are not capped for more (CH 32, the bounds of 128 / 80: ~700 B spilled at CH 64)
#define HIB_MINB (CH >= 64 ? 1 : 2)
#define HIB_MINB3 (CH >= 64 ? 2 : 3)
// C = A^T B (A [k][m], B [k][n]: k-major fp32 tiles in shared memory, row strides lda, ldb; BT: B n-major, B [n][k],
// as a slot's S arrives from global by cp.async), then epi(m, n, C_mn) once per element of the M x N result, without a
// barrier: FFMA register tiles (common.cu's mm_acc, M / 16 x N / 16 per thread of a 16 x 16 grid; BT: columns
// tx + 16 jj, B read 4 k at a time, conflict-free for ldb = 4 mod 32) or, HIB_TC (the variant for bfloat16 callers:
// float32 tiles, ta = float), bf16 mma.sync m16n8k16 with fp32 accumulators, the operands rounded to bf16 as they are
// read (16 x 8 tiles, warp w takes tiles w, w + 8, ...; the bank of A[(k0 + 2t) lda + m0 + g] is 2t lda + g mod 32:
// conflict-free for lda = 4 mod 16; BT: B's pairs (k0, k0 + 1) as 8-byte loads, conflict-free for ldb = 8 mod 32).
#if HIB_TC
// The fragments of k-step k0 (= 16 kk + 2t) of a 16 x 8 tile (rows m0 .., columns n0 ..) of A^T B: A's rows k0, k0 + 1
// (and + 8) of columns m0 + g (and + 8), B's of column n0 + g; from float32 tiles, rounded to bf16 pairs as they are
// read, or from tiles stored as bf16 pairs along k (X2[(k / 2) ld2 + m] = (X[k][m], X[k + 1][m]): the same bits, packed
// once where they are formed; rows of ld2 = 8 mod 32 pairs: conflict-free)
__device__ __forceinline__ void hib_fa(unsigned (&a)[4], const float* A, int lda, int m0, int k0) {
    const float *a0 = A + k0 * lda + m0 + ((threadIdx.x & 31) >> 2), *a1 = a0 + lda, *a8 = a0 + 8 * lda, *a9 = a8 + lda;
    a[0] = pack2(a0[0], a1[0]), a[1] = pack2(a0[8], a1[8]), a[2] = pack2(a8[0], a9[0]), a[3] = pack2(a8[8], a9[8]);
}
__device__ __forceinline__ void hib_fa(unsigned (&a)[4], const unsigned* A2, int lda2, int m0, int k0) {
    const unsigned *a0 = A2 + (k0 >> 1) * lda2 + m0 + ((threadIdx.x & 31) >> 2), *a4 = a0 + 4 * lda2;
    a[0] = a0[0], a[1] = a0[8], a[2] = a4[0], a[3] = a4[8];
}
// (BT: B n-major, B [n][k], the pairs (k0, k0 + 1) as 8-byte loads; float32 only)
template <bool BT>
__device__ __forceinline__ void hib_fb(unsigned& b0, unsigned& b1, const float* B, int ldb, int n0, int k0) {
    const int g = (threadIdx.x & 31) >> 2;
    if constexpr (BT) {
        const float2* bp = reinterpret_cast<const float2*>(B + (n0 + g) * ldb + k0);
        const float2 x0 = bp[0], x8 = bp[4];  // k0, k0 + 1 and k0 + 8, k0 + 9
        b0 = pack2(x0.x, x0.y), b1 = pack2(x8.x, x8.y);
    } else {
        const float *p0 = B + k0 * ldb + n0 + g, *p8 = p0 + 8 * ldb;
        b0 = pack2(p0[0], p0[ldb]), b1 = pack2(p8[0], p8[ldb]);
    }
}
template <bool BT>
__device__ __forceinline__ void hib_fb(unsigned& b0, unsigned& b1, const unsigned* B2, int ldb2, int n0, int k0) {
    static_assert(!BT, "hib_fb: pairs k-major only");
    const unsigned* p = B2 + (k0 >> 1) * ldb2 + n0 + ((threadIdx.x & 31) >> 2);
    b0 = p[0], b1 = p[4 * ldb2];
}
// c[p] += the 16 x 8 tiles (rows m0[p] .., columns n0 ..) of A^T B over K, p < NP (operands as hib_prod's, or as bf16
// pairs: hib_fa), B's fragment read once per k-step for the NP tiles; each tile's sum in hib_mma_tile's order
template <int K, int NP, bool BT = false, typename XA, typename XB>
__device__ __forceinline__ void hib_mma_col(float (&c)[NP][4], const XA* A, int lda, const int (&m0)[NP], const XB* B, int ldb,
                                            int n0) {
#pragma unroll 4
    for (int k0 = 2 * (threadIdx.x & 3); k0 < K; k0 += 16) {
        unsigned b0, b1;
        hib_fb<BT>(b0, b1, B, ldb, n0, k0);
#pragma unroll
        for (int p = 0; p < NP; ++p) {
            unsigned a[4];
            hib_fa(a, A, lda, m0[p], k0);
            mma_bf16(c[p], a, b0, b1);
        }
    }
}
// c += the 16 x 8 tile (rows m0 .., columns n0 ..) of A^T B over K
template <int K, bool BT = false, typename XA, typename XB>
__device__ __forceinline__ void hib_mma_tile(float (&c)[4], const XA* A, int lda, const XB* B, int ldb, int m0, int n0) {
    const int m[1] = {m0};
    hib_mma_col<K, 1, BT>(reinterpret_cast<float (&)[1][4]>(c), A, lda, m, B, ldb, n0);
}
// f(p, m0, n0) for this warp's 16 x 8 tiles (rows m0 .., columns n0 ..) of an M x N result: tile x = warp + p NT / 32
// (hib_prod's order), p < NP
template <int M, int N, int NP, typename F>
__device__ __forceinline__ void hib_warp_tiles(F f) {
#pragma unroll
    for (int p = 0; p < NP; ++p) {
        const int x = (threadIdx.x >> 5) + p * (NT / 32);
        if (x < (M / 16) * (N / 8)) f(p, (x / (N / 8)) * 16, (x % (N / 8)) * 8);
    }
}
// c[p] += this warp's tiles p of the M x N result A^T B over K (hib_warp_tiles' tiles; c[p] of a tile past the last
// untouched): where every tile of the warp is in one column n0 (NT / 32 a multiple of N / 8, NP tiles each), hib_mma_col
// (hib_dkdv's right blocks' products, s17b17: 2.25 -> 2.01 ms at 16K bf16)
template <int M, int N, int NP, int K, bool BT = false, typename XA, typename XB>
__device__ __forceinline__ void hib_warp_mma(float (&c)[NP][4], const XA* A, int lda, const XB* B, int ldb) {
    constexpr int W = NT / 32;
    if constexpr ((M / 16) * (N / 8) == NP * W && W % (N / 8) == 0) {
        const int w = threadIdx.x >> 5;
        int m0[NP];
#pragma unroll
        for (int p = 0; p < NP; ++p) m0[p] = ((w + p * W) / (N / 8)) * 16;
        hib_mma_col<K, NP, BT>(c, A, lda, m0, B, ldb, (w % (N / 8)) * 8);
    } else {
        hib_warp_tiles<M, N, NP>([&](int p, int m0, int n0) { hib_mma_tile<K, BT>(c[p], A, lda, B, ldb, m0, n0); });
    }
}
// f(m, n, c[e]) for the accumulators of this lane in the tile at (m0, n0)
template <typename F>
__device__ __forceinline__ void hib_tile_each(float (&c)[4], int m0, int n0, F f) {
    const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
#pragma unroll
    for (int e = 0; e < 4; ++e) f(m0 + g + 8 * (e >> 1), n0 + 2 * t + (e & 1), c[e]);
}
#endif

#if !HIB_TC
// acc += A^T B over K for FFMA register tiles with B n-major (B [n][k]): rows ty RM_ + ii, columns tx + 16 jj; the sums
// in mm_acc's order (k ascending)
template <int RM_, int RN_, int K>
__device__ __forceinline__ void hib_acc_bt(ta (&acc)[RM_][RN_], const ta* A, int lda, const ta* B, int ldb, int ty, int tx) {
    static_assert(K % 4 == 0, "hib_prod's n-major B: 4 k at a time");
#pragma unroll 2
    for (int k0 = 0; k0 < K; k0 += 4) {
        ta a[4][RM_], b[RN_][4];
#pragma unroll
        for (int u = 0; u < 4; ++u) ldv<RM_>(A + (k0 + u) * lda + ty * RM_, a[u]);
#pragma unroll
        for (int jj = 0; jj < RN_; ++jj) ldv<4>(B + (tx + 16 * jj) * ldb + k0, b[jj]);
#pragma unroll
        for (int u = 0; u < 4; ++u)
#pragma unroll
            for (int ii = 0; ii < RM_; ++ii)
#pragma unroll
                for (int jj = 0; jj < RN_; ++jj) acc[ii][jj] = fma(a[u][ii], b[jj][u], acc[ii][jj]);
    }
}
#endif

template <int M, int N, int K, bool BT = false, typename E>
__device__ __forceinline__ void hib_prod(const ta* A, int lda, const ta* B, int ldb, E epi) {
#if HIB_TC
    for (int x = threadIdx.x >> 5; x < (M / 16) * (N / 8); x += NT / 32) {
        const int m0 = (x / (N / 8)) * 16, n0 = (x % (N / 8)) * 8;
        float c[4] = {0.f, 0.f, 0.f, 0.f};
        hib_mma_tile<K, BT>(c, A, lda, B, ldb, m0, n0);
        hib_tile_each(c, m0, n0, [&](int m, int n, float& v) { epi(m, n, v); });
    }
#else
    constexpr int RM_ = M / 16, RN_ = N / 16;
    const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
    ta acc[RM_][RN_];
    zero_acc(acc);
    if constexpr (BT) {
        hib_acc_bt<RM_, RN_, K>(acc, A, lda, B, ldb, ty, tx);
    } else {
        mm_acc<RM_, RN_, K>(acc, A, lda, B, ldb, ty, tx);
    }
#pragma unroll
    for (int ii = 0; ii < RM_; ++ii)
#pragma unroll
        for (int jj = 0; jj < RN_; ++jj) epi(ty * RM_ + ii, BT ? tx + 16 * jj : tx * RN_ + jj, acc[ii][jj]);
#endif
}

// hib_blocks' running U (DKP x DVP) in registers: add(E, lde, G, ldg) += E^T G over CH rows (E [t][i], G [t][j] in
// shared, row strides lde, ldg; HIB_TC: bf16 pairs along t, hib_fa), each(f) calls f(i, j, element&) for this thread's
// elements (rescaling, storing); FFMA register tiles or (HIB_TC) this warp's 16 x 8 mma tiles.
struct HibRun {
#if HIB_TC
    static constexpr int NTL = (DKP / 16) * (DVP / 8), PW = (NTL + NT / 32 - 1) / (NT / 32);
    float c[PW][4];
    template <typename F>
    __device__ __forceinline__ void tiles(F f) {
        hib_warp_tiles<DKP, DVP, PW>([&](int p, int m0, int n0) { f(c[p], m0, n0); });
    }
    template <typename F>
    __device__ __forceinline__ void each(F f) {
        tiles([&](float (&cc)[4], int m0, int n0) { hib_tile_each(cc, m0, n0, f); });
    }
    template <typename X>
    __device__ __forceinline__ void add(const X* E, int lde, const X* G, int ldg) {
        // hib_mma_tile's k-steps per tile, written out: the code measured fastest (s17b17, 16K bf16: 1.278 ms; 1.307 with
        // hib_warp_mma and request 2's unrolled loops); hib_mma_tile goes through hib_mma_col, which changes it
        tiles([&](float (&cc)[4], int m0, int n0) {
#pragma unroll 4
            for (int k0 = 2 * (threadIdx.x & 3); k0 < CH; k0 += 16) {
                unsigned a[4], b0, b1;
                hib_fa(a, E, lde, m0, k0);
                hib_fb<false>(b0, b1, G, ldg, n0, k0);
                mma_bf16(cc, a, b0, b1);
            }
        });
    }
#else
    ta c[HIB_RI][HIB_RN];
    template <typename F>
    __device__ __forceinline__ void each(F f) {
        const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
#pragma unroll
        for (int ii = 0; ii < HIB_RI; ++ii)
#pragma unroll
            for (int jj = 0; jj < HIB_RN; ++jj) f(ty * HIB_RI + ii, tx * HIB_RN + jj, c[ii][jj]);
    }
    __device__ __forceinline__ void add(const ta* E, int lde, const ta* G, int ldg) {
        mm_acc<HIB_RI, HIB_RN, CH>(c, E, lde, G, ldg, threadIdx.x >> 4, threadIdx.x & 15);
    }
#endif
};

#if TI_BF16 || TI_F16  // (the compute-type arrays beside 16-bit inputs)
__device__ __forceinline__ ta ld(const ta* p) { return __ldg(p); }
#endif
// src[off] where ok, else fill: an unconditional load of a valid address (src[0] where !ok; src is never empty) and
// a select after it, so that a batch of these has its loads in flight together (Nsight Compute, request 1: the
// conditional loads of the chunk's tiles compiled to a branch per element, each waiting for its own load; ~27% of
// hib_dq's and hib_dkdv's stall samples)
template <typename T>
__device__ __forceinline__ ta hib_ld(const T* src, i64 off, bool ok, ta fill) {
    const ta x = ld(src + (ok ? off : (i64)0));
    return ok ? x : fill;
}
// the same with a 32-bit offset from a row base formed once (a chunk's tile: no 64-bit index product per element)
template <typename T>
__device__ __forceinline__ ta hib_ld(const T* src, int off, bool ok, ta fill) {
    const ta x = ld(src + (ok ? off : 0));
    return ok ? x : fill;
}
// Keeps x's computation (a load) before this point: not sunk into the branch that uses it, where the warp would wait
// for it after the loads batched with it have arrived (nothing on the CPU emulation)
template <typename X>
__device__ __forceinline__ void hib_keep(X x) {
#ifdef __CUDA_ARCH__
    if constexpr (sizeof(X) == 4)
        asm volatile("" ::"f"(x));
    else
        asm volatile("" ::"d"(x));
#endif
}
// The output gradient and the log output where the output is finite (o > lo_v() / 2: not -inf, not NaN), else 0
// and +big (such outputs depend on no input; the host's masks before session 13, folded into the loads)
__device__ __forceinline__ void hib_go(ta& g, ta& o) {
    if (!(o > lo_v() / 2)) g = (ta)0, o = -lo_v();
}
// The products' factors' exponentials (<= 1, or <= e^HIB_LIM / e^64 for value factors): __expf (ex2.approx, ~2^-21 +
// |x| 2^-24 relative) in the bfloat16 callers' variant (HIB_TC), whose operands are rounded to bf16 (2^-9) anyway;
// expf elsewhere. The exact rows' per-pair terms keep expf.
__device__ __forceinline__ ta hib_fex(ta x) { return HIB_TC ? fex(x) : ex(x); }
// The right blocks' row shifts' floor (r_t >= -HIB_RLO) and their least rise's cap: past it every factor is 0 in
// either type, and no difference of two stand-ins (neg_big - neg_big) enters an exponent
#define HIB_RLO ((ta)1e4)
// hib_dq's held slots' row shifts' cap: their value factors' exponents n_j - o_tj - c_t <= 64 for n_j - o_tj up to
// 64 + HIB_CSH (float32's e^88.7: a slot's S_ij needed past that is below float32 in the forward's slots too)
#define HIB_CSH (sizeof(ta) == 4 ? (ta)24 : (ta)64)

// Rows spread over the block: HIB_TPR = NT / CH consecutive lanes per row (thread tid: row tid / HIB_TPR,
// lane tid % HIB_TPR, which takes columns lane, lane + HIB_TPR, ...) instead of one thread per row (the
// serial 64-step loops on one warp of eight); hib_rred combines a row's lanes by shuffles. Every thread
// of the block calls it (the CPU emulation's shuffle is block-wide).
constexpr int HIB_TPR = NT / CH;
static_assert(HIB_TPR * CH == NT && HIB_TPR <= 32, "rows over the block");
template <bool MAX>
__device__ __forceinline__ ta hib_rred(ta x) {
#pragma unroll
    for (int o = 1; o < HIB_TPR; o <<= 1) {
        const ta y = __shfl_xor_sync(0xffffffffu, x, o);
        x = MAX ? fmx(x, y) : x + y;
    }
    return x;
}

// hib_blocks' work items: right blocks of 2^(l'-1) chunks at level l' (r0 = (2m + 1) 2^(l'-1), F < r0 < F + n),
// in order of l', then r0; a block of more than HIB_PMIN chunks is split into NP = min(2^(l'-1) / HIB_PMIN,
// HIB_NPC) pieces of equal length (run in parallel: the top blocks' chain of chunk passes was the kernel's
// critical path), merged by hib_bmerge. Single-piece blocks (l' <= log2 HIB_PMIN + 1) come first.
#ifndef HIB_PMIN  // (the CPU emulation's tests build smaller ones: hierarchical_bwd.PMIN, NPC)
#define HIB_PMIN 8
#define HIB_NPC 8
#endif
struct HibPiece {
    i64 r0;    // the block's first chunk
    int lp;    // its level l'
    int np;    // its pieces
    int k;     // this piece (hib_blocks) / 0 (hib_bmerge)
    i64 slot;  // the piece's (hib_bmerge: the block's first piece's) index among the pieces of split blocks; -1 unsplit
};
__device__ __forceinline__ int hib_np(int lp) {
    const i64 h = (i64)1 << (lp - 1);
    return (int)min((i64)HIB_NPC, max((i64)1, h / HIB_PMIN));
}
// Item x of hib_blocks (split: x counts the split blocks only, as hib_bmerge's grid); false past the last.
__device__ __forceinline__ bool hib_piece(i64 x, i64 F, int n, bool split, HibPiece& P) {
    i64 slot = 0;
#pragma unroll 1
    for (int lp = 1; lp < 63; ++lp) {
        const i64 h = (i64)1 << (lp - 1), hi = F + n - 1;
        if (h > hi) return false;
        // (numerators >= 0 and 2h = 2^lp: shifts, not 64-bit divisions: 2.7% of hib_blocks' time, ncu)
        const i64 mlo = (F + h) >> lp, mhi = (hi - h) >> lp;
        const i64 cnt = max((i64)0, mhi - mlo + 1);
        const int np = hib_np(lp);
        if (split && np == 1) continue;
        const i64 items = split ? cnt : cnt * np;
        if (x < items) {
            const i64 m = mlo + (split ? x : x / np);
            P.r0 = (2 * m + 1) * h;
            P.lp = lp;
            P.np = np;
            P.k = split ? 0 : (int)(x % np);
            P.slot = np == 1 ? -1 : slot + (split ? x * np : x);
            return true;
        }
        x -= items;
        if (np > 1) slot += cnt * np;
    }
    return false;
}

// hib_blocks: one block per piece (hib_piece) and sequence: the piece's summary, in R's frame (its x_ti
// include the decay from R's first token); unsplit blocks to (U, Z, Mb, Wb, gt) by r0 - F, pieces to
// (Up, Zp, Mp, Wp, gp) by their slot (gp: the piece's own total decay).
extern "C" __global__ void __launch_bounds__(NT, HIB_MINB3) hib_blocks(
    const ti* __restrict__ q, const ti* __restrict__ lam, const ti* __restrict__ a,
    const ti* __restrict__ gm, const ta* __restrict__ om, const ta* __restrict__ delta, const ta* __restrict__ lden,
    const ta* __restrict__ gch,  // (BH, n) the chunks' total decays (hi_intra)
    ta* __restrict__ U, ta* __restrict__ Z, ta* __restrict__ Mb, ta* __restrict__ Wb, ta* __restrict__ gt,  // by r0 - F
    ta* __restrict__ Up, ta* __restrict__ Zp, ta* __restrict__ Mp, ta* __restrict__ Wp, ta* __restrict__ gp,  // by slot
    int T, int DK, int DV, int L, i64 p, i64 F, int n, ta alo, int npieces) {
    extern __shared__ __align__(16) unsigned char smem_raw[];
    ta* b = reinterpret_cast<ta*>(smem_raw);
    ta* E = b; b += CH * HIB_TKL;   // x_ti, then exp(x_ti - M_i) [t][i]
    ta* Gp = b; b += CH * HIB_TVL;  // -o_tj, then g_tj exp(-o_tj - W_j) [t][j]
    ta* Gr = b; b += CH * HIB_TVL;  // g_tj
    ta* Ms = b; b += DKP;            // running maxima M_i, W_j and the factors that rescale to new ones
    ta* Zs = b; b += DKP;
    ta* Ws = b; b += DVP;
    ta* Sk = b; b += DKP;
    ta* Sv = b; b += DVP;
    ta* ac = b; b += CH;
    ta* Xr = b; b += CH;            // -lden_t + lam[t, lev]
    ta* Xf = b; b += CH;            // x_t - q_t: Xr_t + decay from R's first token to t
    ta* Dr = b; b += CH;            // delta_t, then delta_t exp(r_t) (Z's factor: E holds exp(x_ti - M_i - r_t))
    ta* Rr = b; b += CH;            // r_t = max_i (x_ti - M_i), clamped at -HIB_RLO
    ta* Dl = b; b += DKP;           // the rise of M_i in this chunk (HIB_RLO past DK)
    ta* Sq = b; b += DKP;           // U's row factors exp(dm - Dl_i) <= 1 (Z's are Sk)
    ta* Dm = b; b += NT / 32;       // the warps' least rises
    // (HIB_TC) the product's operands exp(x_ti - M_i - r_t) and g_tj exp(r_t - o_tj - W_j) as bf16 pairs along t (rows of DKP + 8,
    // DVP + 8 pairs): formed once, not packed at each of the warp's tile reads; E stays in float32 for Z
    unsigned* E2 = reinterpret_cast<unsigned*>(b); b += HIB_TC ? (CH / 2) * (DKP + 8) : 0;
    unsigned* G2 = reinterpret_cast<unsigned*>(b); b += HIB_TC ? (CH / 2) * (DVP + 8) : 0;
    check_smem((unsigned)((b - reinterpret_cast<ta*>(smem_raw)) * sizeof(ta)));
    const int tid = threadIdx.x;
    const i64 bh = blockIdx.y;
    HibPiece P;
    if (!hib_piece(blockIdx.x, F, n, false, P)) return;  // uniform over the block
    const i64 r0 = P.r0;
    const int lev = HI_LOG2C + P.lp;
    const i64 len = ((i64)1 << (P.lp - 1)) / P.np;
    const i64 first = r0 + P.k * len, last = min(first + len, F + n) - 1;
    for (int i = tid; i < DKP; i += NT) { Ms[i] = neg_big(); Zs[i] = (ta)0; }
    for (int jj = tid; jj < DVP; jj += NT) Ws[jj] = lo_v();
    {  // the decay from R's first token to the piece's, summed by thread 0 in the order of an unsplit pass; the chunks'
       // totals loaded by the block NT at a time into E (one load latency per NT chunks, not one per chunk). Only the
       // call's chunks (< F + n): an empty piece (first past the call's last chunk: a split block at the call's end) reads
       // no total past the sequence's row of gch (session 20, s20i: initcheck's 39 reports at T = 1100; its G0 is unused)
        static_assert(CH * HIB_TKL >= NT, "hib_blocks' scratch for the chunks' totals");
        ta g = (ta)0;
        const i64 cend = min(first, F + n);
        for (i64 c0 = r0; c0 < cend; c0 += NT) {  // (uniform over the block)
            const int m = (int)min((i64)NT, cend - c0);
            if (tid < m) E[tid] = ld(gch + bh * n + (c0 + tid - F));  // (ld: the emulation counts poisoned loads)
            __syncthreads();
            for (int u = 0; u < m && tid == 0; ++u) g += E[u];
            __syncthreads();
        }
        if (tid == 0) Sk[0] = g;
    }
    __syncthreads();
    ta G0 = Sk[0], Gl = (ta)0;  // the frame's decay before chunk cc; the piece's own total
    HibRun acc;  // U [i][j], shifted by the running maxima
    acc.each([](int, int, ta& x) { x = (ta)0; });
    for (i64 cc = first; cc <= last; ++cc) {  // one pass: the maxima grow chunk by chunk, the sums rescaled (factors <= 1)
        const i64 g0 = cc * CH - p;
        const int t1 = (int)min((i64)CH, (i64)T - g0);  // g0 >= 0: R is after the call's first chunk
        // Every input of the chunk loaded into registers at once, before the barrier (one memory latency per pass, under
        // the barrier's wait), then stored: q (x_ti without its row part Xf_t, added where read), -o, g, the decays,
        // -lden + lam, delta. Addresses from the chunk's first row (g0 >= 0: it exists) with 32-bit offsets. q outside
        // the chunk's rows and columns is read from the row's element 0 with no fill (no output reads it: the maxima and
        // the E pass take t < t1, columns i >= DK reach only U, Z, M's padded rows, never stored). -o and g as they
        // are, the masks of hib_go where they are used: -o -> lo_v() in its store, g -> 0 in the G' pass. (s15e17: masks
        // or fills inside the loads let ptxas sink loads into a branch each, waited for one at a time: +0.65 ms at 16K
        // on float32 inputs, s14f17; stores between the tiles' loads serialized them likewise.)
        constexpr int NQ = CH * DKP / NT, NV = CH * DVP / NT;
        static_assert(NQ * NT == CH * DKP && NV * NT == CH * DVP, "hib_blocks' tiles per thread");
        const i64 rb = bh * T + g0;
        const ti *qc = q + rb * DK, *gc_ = gm + rb * DV;
        const ta* oc = om + rb * DV;
        ta rq[NQ], ro[NV], rg[NV];
#pragma unroll
        for (int u = 0; u < NQ; ++u) {
            const int idx = tid + u * NT, t = idx / DKP, i = idx % DKP;
            rq[u] = ld(qc + ((t < t1) & (i < DK) ? t * DK + i : 0));
        }
#pragma unroll
        for (int u = 0; u < NV; ++u) {
            const int idx = tid + u * NT, t = idx / DVP, jj = idx % DVP;
            const bool ok = (t < t1) & (jj < DV);
            ro[u] = hib_ld(oc, t * DV + jj, ok, -lo_v());
            rg[u] = hib_ld(gc_, t * DV + jj, ok, (ta)0);
        }
        const bool tin = tid < t1;  // row tid's decay, -lden, lam, delta (threads tid < CH store them)
        const ta ra = a ? hib_ld(a + rb, tid, tin, (ta)0) : (ta)0, rx = hib_ld(lden + rb, tid, tin, (ta)0);
        const ta rl = hib_ld(lam + rb * L + lev, tid * L, tin, (ta)0), rd = hib_ld(delta + rb, tid, tin, (ta)0);
        hib_keep(ra), hib_keep(rx), hib_keep(rl), hib_keep(rd);  // (read by threads tid < CH only)
        __syncthreads();  // (the previous pass's product has read E and Gp)
#pragma unroll
        for (int u = 0; u < NQ; ++u) {
            const int idx = tid + u * NT;
            E[(idx / DKP) * HIB_TKL + idx % DKP] = rq[u];
        }
#pragma unroll
        for (int u = 0; u < NV; ++u) {
            const int idx = tid + u * NT, at = (idx / DVP) * HIB_TVL + idx % DVP;
            Gp[at] = ro[u] > lo_v() / 2 ? -ro[u] : lo_v();
            Gr[at] = rg[u];
        }
        if (tid < CH) {  // (hi_decay's value)
            ac[tid] = tin && a ? fmx(ra, alo) : (ta)0;
            Xr[tid] = tin ? -rx + fmx(rl, lo_v()) : (ta)0;
            Dr[tid] = tin ? rd : (ta)0;
        }
        __syncthreads();
#if HIB_BMX
        {  // the new maxima (feature M_i: columns c < DKP, W_j: c - DKP) by lanes 2c (rows 0 .. CH / 2 - 1, from the
           // running maxima) and 2c + 1 (rows CH / 2 ..), met by a shuffle (maxima: any order); x_ti = q_ti + Xf_t with the
           // decays' prefix in hi_decays' order, as the unsplit pass formed it (bit for bit), Xf stored by column 0's lanes
            const int c2 = tid >> 1, h2 = tid & 1, tb = h2 * (CH / 2), te = min(tb + CH / 2, t1);
            ta m = (ta)0;
            if (c2 < DKP) {
                ta run = (ta)0;
                if (h2) {
#pragma unroll
                    for (int u = 0; u < CH / 2; ++u) run += ac[u];
                }
                m = h2 ? neg_big() : Ms[c2];
                for (int t = tb; t < te; ++t) {
                    run += ac[t];
                    const ta xf = Xr[t] + G0 + run;
                    m = fmx(m, E[t * HIB_TKL + c2] + xf);
                    if (c2 == 0) Xf[t] = xf;
                }
                if (c2 == 0)
                    for (int t = max(tb, t1); t < tb + CH / 2; ++t) Xf[t] = (ta)0;
            }
            m = fmx(m, __shfl_xor_sync(0xffffffffu, m, 1));
            if (!h2 && c2 < DKP) {
                Sk[c2] = ex(Ms[c2] - m);
                Dl[c2] = c2 < DK ? m - Ms[c2] : HIB_RLO;
                Ms[c2] = m;
            }
        }
#else
        // the decays' prefix sums in hi_decays' order (each thread its own: no barrier), x_ti = q_ti + Xf_t as the
        // unsplit pass formed it (bit for bit)
        if (tid < CH) {
            ta run = (ta)0;
            for (int u = 0; u <= tid; ++u) run += ac[u];
            Xf[tid] = tid < t1 ? Xr[tid] + G0 + run : (ta)0;
        }
        if (tid < DKP) {  // new feature maxima (threads DKP .. DKP + DVP - 1: column maxima; DKP + DVP <= NT)
            ta m = Ms[tid], run = (ta)0;
            for (int t = 0; t < t1; ++t) {
                run += ac[t];
                m = fmx(m, E[t * HIB_TKL + tid] + (Xr[t] + G0 + run));
            }
            Sk[tid] = ex(Ms[tid] - m);
            Dl[tid] = tid < DK ? m - Ms[tid] : HIB_RLO;
            Ms[tid] = m;
        }
#endif
        __syncthreads();
        {  // r_t by hib_rred's lanes per row; the least rise of M (dm: every earlier row's r_t fell by at least that) by
           // warp minima (both by shuffles every thread calls)
            const int t = tid / HIB_TPR;
            ta r = neg_big();
            for (int i = tid % HIB_TPR; i < DK; i += HIB_TPR) r = fmx(r, E[t * HIB_TKL + i] + Xf[t] - Ms[i]);
            r = hib_rred<true>(r);
            if (tid % HIB_TPR == 0) {
                const ta rr = t < t1 ? fmx(r, -HIB_RLO) : (ta)0;
                Rr[t] = rr;
                Dr[t] *= ex(rr);
            }
            ta d = tid < DKP ? Dl[tid] : HIB_RLO;
#pragma unroll
            for (int s2 = 16; s2; s2 >>= 1) d = fmn(d, __shfl_xor_sync(0xffffffffu, d, s2));
            if (tid % 32 == 0) Dm[tid / 32] = d;
        }
        __syncthreads();
        {  // W_j = max(W_j - dm, max_t (r_t - o_tj)) by WL lanes per column; U's factors Sq_i Sv_j = e^(-Dl_i + W_old - W_new)
            ta dm = HIB_RLO;
            for (int w = 0; w < (DKP + 31) / 32; ++w) dm = fmn(dm, Dm[w]);
            constexpr int WL = 2 * DVP + DKP <= NT ? 2 : 1;
            const int jj = tid / WL, h2 = tid % WL, tb = h2 * (CH / WL), te = min(tb + CH / WL, t1);
            ta m = lo_v();
            if (jj < DVP) {
                m = h2 ? lo_v() : Ws[jj] - dm;
                for (int t = tb; t < te; ++t) m = fmx(m, Gp[t * HIB_TVL + jj] + Rr[t]);
            }
            if (WL == 2) m = fmx(m, __shfl_xor_sync(0xffffffffu, m, 1));
            if (jj < DVP && !h2) {
                Sv[jj] = ex(Ws[jj] - dm - m);
                Ws[jj] = m;
            }
            const int i = tid - WL * DVP;
            if (i >= 0 && i < DKP) Sq[i] = i < DK ? ex(dm - Dl[i]) : (ta)0;
        }
        __syncthreads();
        auto ex_ = [&](int t, int i) {
            return (t < t1 && i < DK) ? hib_fex(E[t * HIB_TKL + i] + Xf[t] - Ms[i] - Rr[t]) : (ta)0;
        };
        auto gx_ = [&](int t, int jj) {
            const ta o = Gp[t * HIB_TVL + jj];  // (lo_v(): a masked output, whose g counts as 0)
            return (t < t1 && jj < DV && o != lo_v()) ? Gr[t * HIB_TVL + jj] * hib_fex(o + Rr[t] - Ws[jj]) : (ta)0;
        };
#if HIB_TC
        for (int idx = tid; idx < (CH / 2) * DKP; idx += NT) {  // rows t, t + 1 of column i
            const int t = 2 * (idx / DKP), i = idx % DKP;
            const ta e0 = ex_(t, i), e1 = ex_(t + 1, i);
            E[t * HIB_TKL + i] = e0, E[(t + 1) * HIB_TKL + i] = e1;
            E2[(t / 2) * (DKP + 8) + i] = pack2(e0, e1);
        }
        for (int idx = tid; idx < (CH / 2) * DVP; idx += NT) {
            const int t = 2 * (idx / DVP), jj = idx % DVP;
            G2[(t / 2) * (DVP + 8) + jj] = pack2(gx_(t, jj), gx_(t + 1, jj));
        }
#else
        for (int idx = tid; idx < CH * DKP; idx += NT) {
            const int t = idx / DKP, i = idx % DKP;
            E[t * HIB_TKL + i] = ex_(t, i);
        }
        for (int idx = tid; idx < CH * DVP; idx += NT) {
            const int t = idx / DVP, jj = idx % DVP;
            Gp[t * HIB_TVL + jj] = gx_(t, jj);
        }
#endif
        acc.each([&](int i, int jj, ta& x) { x *= Sq[i] * Sv[jj]; });
        __syncthreads();
#if HIB_TC
        acc.add(E2, DKP + 8, G2, DVP + 8);
#else
        acc.add(E, HIB_TKL, Gp, HIB_TVL);
#endif
        if (tid < DKP) {
            ta x = Zs[tid] * Sk[tid];
            for (int t = 0; t < t1; ++t) x = fma(E[t * HIB_TKL + tid], Dr[t], x);
            Zs[tid] = x;
        }
        const ta gc = cc + 1 < F + n ? ld(gch + bh * n + (cc - F)) : (ta)0;  // (the call's last chunk's: no right block's; 0)
        G0 += gc;
        Gl += gc;
    }
    __syncthreads();
    const bool split = P.slot >= 0;
    const i64 o = split ? bh * npieces + P.slot : bh * n + (r0 - F);
    ta *Uo = split ? Up : U, *Zo = split ? Zp : Z, *Mo = split ? Mp : Mb, *Wo = split ? Wp : Wb;
    if (tid == 0) (split ? gp : gt)[split ? o : bh * n + (r0 - F)] = Gl;
    acc.each([&](int i, int c2, ta& x) {
        if (i < DK && c2 < DV) Uo[(o * DK + i) * DV + c2] = x;
    });
    for (int i = tid; i < DK; i += NT) {
        Zo[o * DK + i] = Zs[i];
        Mo[o * DK + i] = Ms[i];
    }
    for (int jj = tid; jj < DV; jj += NT) Wo[o * DV + jj] = Ws[jj];
}

// hib_bmerge: one block per split right block (hib_piece with split) and sequence: its pieces' summaries
// (each in R's frame) into R's, M_i = max_k M_ki, dm_k = min_i (M_i - M_ki) (piece k's rows' r_t fall by at least
// that), W_j = max_k (W_kj - dm_k), U_ij = sum_k U_kij exp(M_ki - M_i + dm_k) exp(W_kj - dm_k - W_j) (factors <= 1),
// Z_i = sum_k Z_ki exp(M_ki - M_i), R's total decay the sum of the pieces' (in order).
extern "C" __global__ void __launch_bounds__(NT) hib_bmerge(
    const ta* __restrict__ Up, const ta* __restrict__ Zp, const ta* __restrict__ Mp, const ta* __restrict__ Wp,
    const ta* __restrict__ gp, ta* __restrict__ U, ta* __restrict__ Z, ta* __restrict__ Mb, ta* __restrict__ Wb,
    ta* __restrict__ gt, int DK, int DV, i64 F, int n, int npieces) {
    extern __shared__ __align__(16) unsigned char smem_raw[];
    ta* Sk = reinterpret_cast<ta*>(smem_raw);  // HIB_NPC x DKP: exp(M_ki - M_i + dm_k)
    ta* Sv = Sk + HIB_NPC * DKP;               // HIB_NPC x DVP: exp(W_kj - dm_k - W_j)
    ta* Ms = Sv + HIB_NPC * DVP;               // DKP: M_i
    ta* dm = Ms + DKP;                         // HIB_NPC: dm_k
    check_smem((unsigned)((HIB_NPC * (DKP + DVP + 1) + DKP) * sizeof(ta)));
    const int tid = threadIdx.x;
    const i64 bh = blockIdx.y;
    HibPiece P;
    if (!hib_piece(blockIdx.x, F, n, true, P)) return;
    const i64 o = bh * n + (P.r0 - F), b0 = bh * npieces + P.slot;
    for (int i = tid; i < DK; i += NT) {
        ta m = neg_big();
        for (int k = 0; k < P.np; ++k) m = fmx(m, Mp[(b0 + k) * DK + i]);
        ta z = (ta)0;
        for (int k = 0; k < P.np; ++k) z = fma(Zp[(b0 + k) * DK + i], ex(Mp[(b0 + k) * DK + i] - m), z);
        Ms[i] = m;
        Mb[o * DK + i] = m;
        Z[o * DK + i] = z;
    }
    __syncthreads();
    if (tid < P.np) {
        ta d = HIB_RLO;
        for (int i = 0; i < DK; ++i) d = fmn(d, Ms[i] - Mp[(b0 + tid) * DK + i]);
        dm[tid] = d;
    }
    __syncthreads();
    for (int i = tid; i < DK; i += NT)
        for (int k = 0; k < P.np; ++k) Sk[k * DKP + i] = ex(Mp[(b0 + k) * DK + i] - Ms[i] + dm[k]);
    for (int jj = tid; jj < DV; jj += NT) {
        ta w = lo_v();
        for (int k = 0; k < P.np; ++k) w = fmx(w, Wp[(b0 + k) * DV + jj] - dm[k]);
        for (int k = 0; k < P.np; ++k) Sv[k * DVP + jj] = ex(Wp[(b0 + k) * DV + jj] - dm[k] - w);
        Wb[o * DV + jj] = w;
    }
    if (tid == 0) {
        ta g = (ta)0;
        for (int k = 0; k < P.np; ++k) g += gp[b0 + k];
        gt[o] = g;
    }
    __syncthreads();
    for (int idx = tid; idx < DK * DV; idx += NT) {
        const int i = idx / DV, jj = idx % DV;
        ta u = (ta)0;
        for (int k = 0; k < P.np; ++k) u = fma(Up[(b0 + k) * DK * DV + idx], Sk[k * DKP + i] * Sv[k * DVP + jj], u);
        U[o * DK * DV + idx] = u;
    }
}
