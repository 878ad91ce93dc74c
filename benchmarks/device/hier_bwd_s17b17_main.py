"""Session 17, s17b17: the hierarchical backward's sources of main (5793862: session 16's, before this branch),
hier_bwd_s17b17.py's variant main (the tree's kernels timed against them on the GPU). Remove once measured."""
SRC = {
    'hierarchical_bwd.cu': '''// Backward of hierarchical exp-kernel attention (loglinear_log_attention), in four files compiled after common.cu
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
//             lam[t, lev] + (decay from R's first token to t), W_j = max_{t in R} -o_tj:
//             U_ij = sum_t exp(x_ti - M_i) g_tj exp(-o_tj - W_j),  Z_i = sum_t exp(x_ti - M_i) delta_t
//             and R's total decay (the sum of the chunks' totals, each summed inside its chunk). A block of
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
// c += the 16 x 8 tile (rows m0 .., columns n0 ..) of A^T B over K (operands as hib_prod's)
template <int K, bool BT = false>
__device__ __forceinline__ void hib_mma_tile(float (&c)[4], const float* A, int lda, const float* B, int ldb, int m0, int n0) {
    const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
#pragma unroll 4
    for (int k0 = 2 * t; k0 < K; k0 += 16) {
        const float *a0 = A + k0 * lda + m0 + g, *a1 = a0 + lda, *a8 = a0 + 8 * lda, *a9 = a8 + lda;
        const unsigned a[4] = {pack2(a0[0], a1[0]), pack2(a0[8], a1[8]), pack2(a8[0], a9[0]), pack2(a8[8], a9[8])};
        if constexpr (BT) {
            const float2* bp = reinterpret_cast<const float2*>(B + (n0 + g) * ldb + k0);
            const float2 b0 = bp[0], b8 = bp[4];  // k0, k0 + 1 and k0 + 8, k0 + 9
            mma_bf16(c, a, pack2(b0.x, b0.y), pack2(b8.x, b8.y));
        } else {
            const float *b0 = B + k0 * ldb + n0 + g, *b8 = b0 + 8 * ldb;
            mma_bf16(c, a, pack2(b0[0], b0[ldb]), pack2(b8[0], b8[ldb]));
        }
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

// hib_blocks' running U (DKP x DVP) in registers: add(E, G) += E^T G over CH rows (E [t][i], G [t][j] in shared,
// strides HIB_TKL, HIB_TVL), each(f) calls f(i, j, element&) for this thread's elements (rescaling, storing);
// FFMA register tiles or (HIB_TC) this warp's 16 x 8 mma tiles.
struct HibRun {
#if HIB_TC
    static constexpr int NTL = (DKP / 16) * (DVP / 8), PW = (NTL + NT / 32 - 1) / (NT / 32);
    float c[PW][4];
    template <typename F>
    __device__ __forceinline__ void tiles(F f) {
#pragma unroll
        for (int p = 0; p < PW; ++p) {
            const int x = (threadIdx.x >> 5) + p * (NT / 32);
            if (x < NTL) f(c[p], (x / (DVP / 8)) * 16, (x % (DVP / 8)) * 8);
        }
    }
    template <typename F>
    __device__ __forceinline__ void each(F f) {
        tiles([&](float (&cc)[4], int m0, int n0) { hib_tile_each(cc, m0, n0, f); });
    }
    __device__ __forceinline__ void add(const ta* E, const ta* G) {
        tiles([&](float (&cc)[4], int m0, int n0) { hib_mma_tile<CH>(cc, E, HIB_TKL, G, HIB_TVL, m0, n0); });
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
    __device__ __forceinline__ void add(const ta* E, const ta* G) {
        mm_acc<HIB_RI, HIB_RN, CH>(c, E, HIB_TKL, G, HIB_TVL, threadIdx.x >> 4, threadIdx.x & 15);
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
    ta* Dr = b; b += CH;
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
       // totals loaded by the block NT at a time into E (one load latency per NT chunks, not one per chunk)
        static_assert(CH * HIB_TKL >= NT, "hib_blocks' scratch for the chunks' totals");
        ta g = (ta)0;
        for (i64 c0 = r0; c0 < first; c0 += NT) {  // (uniform over the block)
            const int m = (int)min((i64)NT, first - c0);
            if (tid < m) E[tid] = gch[bh * n + (c0 + tid - F)];
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
            Ms[tid] = m;
        } else if (tid < DKP + DVP) {
            const int jj = tid - DKP;
            ta w = Ws[jj];
            for (int t = 0; t < t1; ++t) w = fmx(w, Gp[t * HIB_TVL + jj]);
            Sv[jj] = ex(Ws[jj] - w);
            Ws[jj] = w;
        }
        __syncthreads();
        for (int idx = tid; idx < CH * DKP; idx += NT) {
            const int t = idx / DKP, i = idx % DKP;
            E[t * HIB_TKL + i] = (t < t1 && i < DK) ? hib_fex(E[t * HIB_TKL + i] + Xf[t] - Ms[i]) : (ta)0;
        }
        for (int idx = tid; idx < CH * DVP; idx += NT) {
            const int t = idx / DVP, jj = idx % DVP;
            const ta o = Gp[t * HIB_TVL + jj];  // (lo_v(): a masked output, whose g counts as 0)
            Gp[t * HIB_TVL + jj] = (t < t1 && jj < DV && o != lo_v()) ? Gr[t * HIB_TVL + jj] * hib_fex(o - Ws[jj]) : (ta)0;
        }
        acc.each([&](int i, int jj, ta& x) { x *= Sk[i] * Sv[jj]; });
        __syncthreads();
        acc.add(E, Gp);
        if (tid < DKP) {
            ta x = Zs[tid] * Sk[tid];
            for (int t = 0; t < t1; ++t) x = fma(E[t * HIB_TKL + tid], Dr[t], x);
            Zs[tid] = x;
        }
        const ta gc = gch[bh * n + (cc - F)];
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
// (each in R's frame) into R's, M_i = max_k M_ki, W_j = max_k W_kj, U_ij = sum_k U_kij exp(M_ki - M_i)
// exp(W_kj - W_j) (factors <= 1), Z_i likewise, R's total decay the sum of the pieces' (in order).
extern "C" __global__ void __launch_bounds__(NT) hib_bmerge(
    const ta* __restrict__ Up, const ta* __restrict__ Zp, const ta* __restrict__ Mp, const ta* __restrict__ Wp,
    const ta* __restrict__ gp, ta* __restrict__ U, ta* __restrict__ Z, ta* __restrict__ Mb, ta* __restrict__ Wb,
    ta* __restrict__ gt, int DK, int DV, i64 F, int n, int npieces) {
    extern __shared__ __align__(16) unsigned char smem_raw[];
    ta* Sk = reinterpret_cast<ta*>(smem_raw);  // HIB_NPC x DKP: exp(M_ki - M_i)
    ta* Sv = Sk + HIB_NPC * DKP;               // HIB_NPC x DVP: exp(W_kj - W_j)
    check_smem((unsigned)(HIB_NPC * (DKP + DVP) * sizeof(ta)));
    const int tid = threadIdx.x;
    const i64 bh = blockIdx.y;
    HibPiece P;
    if (!hib_piece(blockIdx.x, F, n, true, P)) return;
    const i64 o = bh * n + (P.r0 - F), b0 = bh * npieces + P.slot;
    for (int i = tid; i < DKP; i += NT) {
        ta m = neg_big();
        for (int k = 0; k < P.np; ++k) m = fmx(m, i < DK ? Mp[(b0 + k) * DK + i] : neg_big());
        ta z = (ta)0;
        for (int k = 0; k < P.np; ++k) {
            const ta f = i < DK ? ex(Mp[(b0 + k) * DK + i] - m) : (ta)0;
            Sk[k * DKP + i] = f;
            if (i < DK) z = fma(Zp[(b0 + k) * DK + i], f, z);
        }
        if (i < DK) {
            Mb[o * DK + i] = m;
            Z[o * DK + i] = z;
        }
    }
    for (int jj = tid; jj < DVP; jj += NT) {
        ta w = lo_v();
        for (int k = 0; k < P.np; ++k) w = fmx(w, jj < DV ? Wp[(b0 + k) * DV + jj] : lo_v());
        for (int k = 0; k < P.np; ++k) Sv[k * DVP + jj] = jj < DV ? ex(Wp[(b0 + k) * DV + jj] - w) : (ta)0;
        if (jj < DV) Wb[o * DV + jj] = w;
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
''',
    'hierarchical_bwd_chunk.cu': '''// What the backward's per-chunk kernels hib_dq (hierarchical_bwd_dq.cu) and hib_dkdv (hierarchical_bwd_dkdv.cu)
// share (notation and formulas at the top of hierarchical_bwd.cu, compiled before this file with its products
// hib_prod and loads hib_ld / hib_go): their tiles (HibTiles), the chunk's own pairs (factorised products with
// per-chunk shifts, the exact rows per pair), the chunk's tiles (hib_chunk). The three files compile as one source,
// in this order.
// row strides of the chunk's tiles (odd: conflict-free column walks)
#define HIB_KLD (DKP + 1)
#define HIB_VLD (DVP + 1)
#define HIB_XLD (CH + 1)
// hib_fpairs' operands, one at a time: A^T, B^T (DKP x HIB_TCL each), G'^T, E^T (DVP x HIB_TCL), then W^T (CH x
// HIB_TCL) and B (CH x HIB_TKL) (HIB_TC: as bf16 pairs, the four first ones at once where they fit)
constexpr int hib_cmax(int x, int y) { return x > y ? x : y; }
constexpr int HIB_FREG = hib_cmax(hib_cmax(DVP * (HIB_TKL + HIB_TCL), 2 * DKP * HIB_TCL),
                                  hib_cmax(2 * DVP * HIB_TCL, CH * (HIB_TCL + HIB_TKL)));
// the factorised pairs' bound: a row whose factor exp(R_t + lam + decay - lden_t) or, where g_tj != 0,
// exp(nn_j - o_tj) exceeds e^HIB_LIM (a later key or value of the chunk dominates it) takes the exact
// per-pair path; below it the factors' underflow drops terms < e^(HIB_LIM - 87) (fp32) of the row's scale
#define HIB_LIM (sizeof(ta) == 4 ? (ta)40 : (ta)300)
// hib_dkdv's pair products' operands: W or P (CH x HIB_TCL), then A or G' (CH x HIB_TKL or HIB_TVL)
constexpr int HIB_F2 = CH * (HIB_TCL + hib_cmax(HIB_TKL, HIB_TVL));
// hib_dq's held slots: a buffer holds S [i][j] (rows of HIB_SLD: 8 mod 32 for the mma's 8-byte B loads, 4 mod 32 for
// the FFMA tiles' 16-byte ones; cp.async's 16-byte rows), m, z and n; HIB_SNB buffers (two where they fit) and
// G'^T (DVP x HIB_TCL) over the tiles free during the slot loop: XP, PP, DD, the products' operands, LVs (contiguous)
#define HIB_SLD (DVP + (HIB_TC ? 8 : 4))
constexpr int HIB_SBUF = DKP * HIB_SLD + 2 * DKP + DVP;
constexpr int HIB_SFREE = 3 * CH * HIB_XLD + HIB_FREG + CH * HIB_VLD;
constexpr int HIB_SNB = 2 * HIB_SBUF + DVP * HIB_TCL <= HIB_SFREE ? 2 : 1;
static_assert(HIB_SBUF + DVP * HIB_TCL <= HIB_SFREE, "hib_dq's slot buffer");
// hib_dkdv's dk and dlv in registers from the chunk's pair products through the right blocks (the bf16 mma tiles'
// accumulator layout: rows g, g + 8, columns 2t, 2t + 1 of a 16 x 8 tile), stored to their shared rows once at the end
// (and around the exact rows' per-pair path, when a chunk has some): those rows' stride (DKP + 1) puts lanes (g, t) on
// banks g + 2t, a 4-way conflict that the pair products' stores and the per-block read-modify-write paid (s16d17, H200,
// 16K bf16: 2.70 -> 2.45 ms, outputs bit-equal). The same values and fma order. Where a warp's tiles fit in 8 + 8
// registers.
#ifndef HIB_DKR
#if HIB_TC && CH * DKP <= 2048 && CH * DVP <= 2048
#define HIB_DKR 1
#else
#define HIB_DKR 0
#endif
#endif
#ifndef HIB_UNB  // hib_dkdv's U buffers: two where shared memory allows (the host's Config.hib_unb), else one
#define HIB_UNB 2
#endif
// A (DK, DV) row-major tile of global memory into DKP rows of HIB_SLD in shared memory by cp.async (zeros outside
// DK x DV; 16-byte pieces where the rows allow), not waited for. Offsets in 32 bits from src, the pieces' loop unrolled
// (s15e17: the 64-bit address products and the loop's tests were ~9% of hib_dq's instructions, ncu)
__device__ __forceinline__ void hib_copy_tile(ta* dst, const ta* src, int DK, int DV) {
    constexpr int V = 16 / (int)sizeof(ta), W = DVP / V, P = DKP * W;  // 16-byte pieces of a row, of the tile
    if (DV % V == 0) {
#pragma unroll
        for (int u = 0; u < (P + NT - 1) / NT; ++u) {
            const int x = threadIdx.x + u * NT, i = x / W, j0 = (x % W) * V;
            if (P % NT == 0 || x < P) {
                const bool ok = i < DK && j0 < DV;
                cp_async16(dst + i * HIB_SLD + j0, src + (ok ? i * DV + j0 : 0), ok);
            }
        }
    } else {
        for (int x = threadIdx.x; x < DKP * DVP; x += NT) {
            const int i = x / DVP, jj = x % DVP;
            const bool ok = i < DK && jj < DV;
            cp_async_ta(dst + i * HIB_SLD + jj, src + (ok ? i * DV + jj : 0), ok);
        }
    }
}

// The right blocks' value factors' cap: e^(lv_s - o_t) <= 1 / P(t,s) is exact for weights P >= e^-HIB_CAP. 80 in float32
// (not 64: a spike leaves earlier tokens weights ~e^-77 while their values dominate an output, and every term was
// off by e^(x - 64); issue 17, as s12i17's TC_CAP), within float32's e^88.7 (sums of d <= 6000 terms). The exact
// rows need no cap (hib_pexp).
#define HIB_CAP (sizeof(ta) == 4 ? (ta)80 : (ta)640)
// exp(min(x, HIB_CAP)) (finite, never NaN)
__device__ __forceinline__ ta hib_excap(ta x) { return ex(x < HIB_CAP ? x : HIB_CAP); }
// x e^e with the magnitude capped at e^HIB_CAP (finite whatever x and e), exact below it (a sum of d terms of
// these: <= d e^80 < float32's max for d <= 6000). f = hib_excap(e) and c = e^HIB_CAP given (e is a column's, the same
// for many x): for |e| <= HIB_CAP, x f clamped to +-c (f a normal number: one product, not a log and an exp per x);
// else sign(x) e^min(log|x| + e, HIB_CAP)
__device__ __forceinline__ ta hib_scale(ta x, ta e, ta f, ta c) {
    if (e <= HIB_CAP && e >= -HIB_CAP) return fmx(-c, x * f < c ? x * f : c);
    const ta m = hib_excap(lg(x < (ta)0 ? -x : x) + e);
    return x == (ta)0 ? (ta)0 : (x < (ta)0 ? -m : m);
}

// Rows g0 .. g0 + CH - 1 of a (T, D) sequence (W columns) into registers (hib_rows_ld: rows outside [0, T) and
// columns >= D are `fill`), then into X (row stride ldx), clamped below at lo (hib_rows_st; every fill passed is >= lo).
// Addresses: the chunk's first row in the sequence (g0 >= 0) or its row 0 (g0 < 0, the call's first chunk), 32-bit
// offsets from it (no 64-bit index product per element; out-of-range elements read that row's element 0)
template <int W, typename S>
__device__ __forceinline__ void hib_rows_ld(ta (&r)[CH * W / NT], const S* src, i64 g0, int T, int D, ta fill) {
    static_assert(CH * W % NT == 0, "hib_rows' elements per thread");
    const int lo = g0 < 0 ? (int)-g0 : 0, hi = (int)min((i64)CH, (i64)T - g0);  // the chunk's rows in [0, T)
    const S* base = src + (g0 + lo) * D;
#pragma unroll
    for (int u = 0; u < CH * W / NT; ++u) {
        const int idx = threadIdx.x + u * NT, i = idx % W, t = idx / W;
        r[u] = hib_ld(base, (t - lo) * D + i, (i < D) & (t >= lo) & (t < hi), fill);
    }
}
template <int W>
__device__ __forceinline__ void hib_rows_st(const ta (&r)[CH * W / NT], ta* X, int ldx, ta lo) {
#pragma unroll
    for (int u = 0; u < CH * W / NT; ++u) {
        const int idx = threadIdx.x + u * NT;
        X[(idx / W) * ldx + idx % W] = fmx(r[u], lo);
    }
}

// The count elements from p into L2 (prefetch.global.L2: no registers held), e.g. the next slot's S while this
// one's is in use; nothing on the CPU emulation.
__device__ __forceinline__ void hib_prefetch(const ta* p, int count) {
#ifdef __CUDA_ARCH__
    constexpr int LINE = 128 / (int)sizeof(ta);
    for (int x = threadIdx.x * LINE; x < count; x += NT * LINE) asm volatile("prefetch.global.L2 [%0];" ::"l"(p + x));
#endif
}

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

// sum_{i < D} X[t][i] (row stride ld) of this thread's row t = tid / HIB_TPR over its lanes (every thread calls it),
// returned and stored to out[t] for t0 <= t < t1 (sub: out[t] -= it)
__device__ __forceinline__ ta hib_rowsum(const ta* X, int ld, int D, ta* out, int t0, int t1, bool sub) {
    const int t = threadIdx.x / HIB_TPR;
    ta x = (ta)0;
    for (int i = threadIdx.x % HIB_TPR; i < D; i += HIB_TPR) x += X[t * ld + i];
    x = hib_rred<false>(x);
    if (threadIdx.x % HIB_TPR == 0 && t >= t0 && t < t1) out[t] = sub ? out[t] - x : x;
    return x;
}

// The shared tiles of hib_dq and hib_dkdv (one layout; Av, Tb only in hib_dkdv, where Tk, Ta,
// Tb overlay the pairs' tiles Qs, Gs, Os, XP, PP, DD; DL only in hib_dq).
struct HibTiles {
    ta *Qs, *Ks, *Ak;           // CH x HIB_KLD: q, k, the rows' dq (hib_dq) / dk (hib_dkdv)
    ta *LVs, *Gs, *Os, *Av;     // CH x HIB_VLD: clamped lv, g, o; the rows' dlv (hib_dkdv)
    ta *XP, *PP, *DD;           // CH x HIB_XLD: the pairs' XP, P, D (hib_fpairs, hib_pairs)
    ta *Lam, *DL;               // CH x HI_LMAX: clamped level weights; their gradient (hib_dq)
    ta *Tk, *Ta, *Tb;           // products' operands: hib_fpairs' (HIB_FREG, hib_dq) / the right blocks' U buffers
                                // (hib_dkdv); (g exp(n - o))^T / E^T (DVP x HIB_TCL), B^T (DKP x HIB_TCL, hib_dkdv)
    ta *Zs;                     // a right block's Z (DKP)
    ta *ac, *pre, *Ls, *Ds, *X; // CH: decays, their prefix sums, lden, delta, and a per-row scratch
    ta *mm, *nn, *R, *Fl;       // hib_fpairs': key shifts (DKP), value shifts (DVP), row shifts, exact-row flags (CH)
    unsigned bytes;
};

__device__ __forceinline__ HibTiles hib_tiles(unsigned char* raw, bool dq) {
    HibTiles m;
    ta* b = reinterpret_cast<ta*>(raw);
    auto take = [&](int count) { ta* x = b; b += count; return x; };
    ta* const pairs = b;  // the pairs' tiles: hib_dkdv's mm_acc operands reuse them after its own sums
    m.Qs = take(CH * HIB_KLD); m.Gs = take(CH * HIB_VLD); m.Os = take(CH * HIB_VLD);
    m.XP = take(CH * HIB_XLD); m.PP = take(CH * HIB_XLD); m.DD = take(CH * HIB_XLD);
    ta* const after = b;
    if (!dq) b = pairs;
    m.Tk = take(dq ? DVP * HIB_TKL : HIB_UNB * DKP * HIB_SLD);
    m.Ta = take(DVP * HIB_TCL);
    m.Tb = take(dq ? 0 : DKP * HIB_TCL);
    if (dq && b < m.Tk + HIB_FREG) b = m.Tk + HIB_FREG;  // hib_fpairs' operands over the slot products'
    if (!dq && b < after + HIB_F2) b = after + HIB_F2;  // hib_dkdv's pair products after the pairs' tiles
    m.LVs = take(CH * HIB_VLD); m.Ks = take(CH * HIB_KLD); m.Ak = take(CH * HIB_KLD); m.Av = take(dq ? 0 : CH * HIB_VLD);
    m.Lam = take(CH * HI_LMAX); m.DL = take(dq ? CH * HI_LMAX : 0);
    m.Zs = take(DKP);
    m.ac = take(CH); m.pre = take(CH); m.Ls = take(CH); m.Ds = take(CH); m.X = take(CH);
    m.mm = take(DKP); m.nn = take(DVP); m.R = take(CH); m.Fl = take(CH);
    m.bytes = (unsigned)((b - reinterpret_cast<ta*>(raw)) * sizeof(ta));
    return m;
}

// XP_ts = lam[t, level] + (a_{s+1} + ... + a_t) - lden_t of a pair t0 <= s <= t < t1 (lo_v elsewhere)
__device__ __forceinline__ ta hib_xp(const HibTiles& sm, int t, int s, int t0, int t1) {
    if (!(s <= t && s >= t0 && t < t1)) return lo_v();
    ta dec = (ta)0;  // summed over the stretch (rounding relative to it)
    for (int u = s + 1; u <= t; ++u) dec += sm.ac[u];
    return sm.Lam[t * HI_LMAX + (s == t ? 0 : bitlen64((i64)(t ^ s)))] + dec - sm.Ls[t];
}

// An exact pair's scale E_ts = max(0, max_j (lv_sj - o_tj)): its P_ts e^E <= 1 (P e^(lv - o) <= 1) and D_ts e^-E
// (terms g e^(lv - o - E) <= |g|) are both in range whatever the exponents (e^93 behind a spike: past float32's e^88.7)
__device__ __forceinline__ ta hib_pexp(const HibTiles& sm, int t, int s, int DV) {
    ta e = (ta)0;
    for (int j = 0; j < DV; ++j) e = fmx(e, sm.LVs[s * HIB_VLD + j] - sm.Os[t * HIB_VLD + j]);
    return e;
}

// P_ts e^E and D_ts e^-E of one pair per pair (per-pair log-sum-exp; the exact rows'), from its XP (then + E, so that
// exp(q_ti + k_si + XP_ts) D_ts stays P_i(t,s) D_ts)
__device__ __forceinline__ void hib_pair_exact(const HibTiles& sm, int t, int s, ta& xp, int DK, int DV, ta& pp, ta& dd) {
    const ta *Qt = sm.Qs + t * HIB_KLD, *Ks = sm.Ks + s * HIB_KLD;
    ta mx = neg_big();
    for (int i = 0; i < DK; ++i) mx = fmx(mx, Qt[i] + Ks[i]);
    ta sm_ = (ta)0;
    for (int i = 0; i < DK; ++i) sm_ += ex(Qt[i] + Ks[i] - mx);
    const ta e = hib_pexp(sm, t, s, DV);
    xp += e;
    pp = ex(mx + lg(sm_) + xp);
    dd = -sm.Ds[t] * ex(-e);
    for (int j = 0; j < DV; ++j) dd = fma(sm.Gs[t * HIB_VLD + j], ex(sm.LVs[s * HIB_VLD + j] - sm.Os[t * HIB_VLD + j] - e), dd);
}

// hib_dkdv's pairs: XP, and PP = P_ts, DD = D_ts from hib_dq's (BH, T, CH) pair arrays (Pg, Dg: the sequence's,
// the chunk's row t at (g0 + t) CH; PP = DD = 0 off the pairs). Ends with a barrier.
__device__ __forceinline__ void hib_pairs(const HibTiles& sm, int t0, int t1, const ta* Pg, const ta* Dg, i64 g0) {
    constexpr int N = CH * CH / NT;
    ta p[N], d[N];  // the loads first (in flight together), then XP beside them
#pragma unroll
    for (int u = 0; u < N; ++u) {
        const int idx = threadIdx.x + u * NT, t = idx / CH, s = idx % CH;
        const bool on = (s <= t) & (s >= t0) & (t < t1);
        p[u] = hib_ld(Pg, (g0 + t) * CH + s, on, (ta)0);
        d[u] = hib_ld(Dg, (g0 + t) * CH + s, on, (ta)0);
    }
#pragma unroll
    for (int u = 0; u < N; ++u) {
        const int idx = threadIdx.x + u * NT, t = idx / CH, s = idx % CH;
        sm.XP[t * HIB_XLD + s] = hib_xp(sm, t, s, t0, t1);
        sm.PP[t * HIB_XLD + s] = p[u];
        sm.DD[t * HIB_XLD + s] = d[u];
    }
    __syncthreads();
}

// hib_fpairs' shifts of the chunk (rows t0 .. t1 - 1): mm_i = max_s k_si (0 for i >= DK), nn_j = max_s lv_sj
// (clamped), R_t = max_i (q_ti + mm_i); hib_dkdv takes the same ones. Ends with a barrier.
__device__ __forceinline__ void hib_shifts(const HibTiles& sm, int t0, int t1, int DK, int DV) {
    const int tid = threadIdx.x;
    if (tid < DKP) {  // threads DKP .. DKP + DVP - 1: the value shifts (DKP + DVP <= NT)
        ta m = neg_big();
        for (int s = t0; s < t1; ++s) m = fmx(m, sm.Ks[s * HIB_KLD + tid]);
        sm.mm[tid] = tid < DK ? m : (ta)0;
    } else if (tid < DKP + DVP) {
        const int jj = tid - DKP;
        ta m = lo_v();
        for (int s = t0; s < t1; ++s) m = fmx(m, sm.LVs[s * HIB_VLD + jj]);
        sm.nn[jj] = m;
    }
    __syncthreads();
    const int t = tid / HIB_TPR, r0 = tid % HIB_TPR;
    ta r = neg_big();
    for (int i = r0; i < DK; i += HIB_TPR) r = fmx(r, sm.Qs[t * HIB_KLD + i] + sm.mm[i]);
    r = hib_rred<true>(r);
    if (r0 == 0) sm.R[t] = r;
    __syncthreads();
}

#if HIB_TC
// The bf16 variant's operands stored as bf16 pairs along the reduction index k (uint32): X2[(k / 2) ld + m] =
// (X[k][m], X[k + 1][m]), the values hib_mma_tile's fragments packed at every read (pack2 once, at the store: the same
// bits); rows of CH + 8 (or DKP + 8) pairs, 8 mod 16: the A and B fragments' 32-bit loads conflict-free.
#define HIB_GLD (CH + 8)
#define HIB_BLD (DKP + 8)
// c += one k-step (k0 = 16 kk + 2t) of the 16 x 8 tile (m0, n0) of A^T B, A as pairs, B n-major (float pairs)
__device__ __forceinline__ void hib_mma_step2(float (&c)[4], const unsigned* A2, int lda2, const float* B, int ldb, int m0,
                                              int n0, int k0) {
    const int g = (threadIdx.x & 31) >> 2;
    const unsigned *a0 = A2 + (k0 >> 1) * lda2 + m0 + g, *a4 = a0 + 4 * lda2;
    const unsigned a[4] = {a0[0], a0[8], a4[0], a4[8]};
    const float2* bp = reinterpret_cast<const float2*>(B + (n0 + g) * ldb + k0);
    const float2 b0 = bp[0], b8 = bp[4];  // k0, k0 + 1 and k0 + 8, k0 + 9
    mma_bf16(c, a, pack2(b0.x, b0.y), pack2(b8.x, b8.y));
}
// hib_prod (HIB_TC) with A and B both as pairs: epi(m, n, (A^T B)_mn) once per element, no barrier
template <int M, int N, int K, typename E>
__device__ __forceinline__ void hib_prod2(const unsigned* A2, int lda2, const unsigned* B2, int ldb2, E epi) {
    const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    for (int x = threadIdx.x >> 5; x < (M / 16) * (N / 8); x += NT / 32) {
        const int m0 = (x / (N / 8)) * 16, n0 = (x % (N / 8)) * 8;
        float c[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll 4
        for (int k0 = 2 * t; k0 < K; k0 += 16) {
            const unsigned *a0 = A2 + (k0 >> 1) * lda2 + m0 + g, *a4 = a0 + 4 * lda2, *b0 = B2 + (k0 >> 1) * ldb2 + n0 + g;
            const unsigned a[4] = {a0[0], a0[8], a4[0], a4[8]};
            mma_bf16(c, a, b0[0], b0[4 * ldb2]);
        }
        hib_tile_each(c, m0, n0, [&](int m, int n, float& v) { epi(m, n, v); });
    }
}
#endif

// The chunk's pairs of hib_dq factorised as products (exp_kernel_bwd_tc.cu's shifts, FFMA register tiles):
// mm_i = max over the chunk's keys, R_t = max_i (q_ti + mm_i), nn_j = max over its log values;
// A_ti = exp(q_ti + mm_i - R_t), B_si = exp(k_si - mm_i), E_sj = exp(lv_sj - nn_j), G'_tj = g_tj exp(nn_j - o_tj),
// so that sum_i exp(q_ti + k_si) = e^R_t (A B^T)_ts, P_ts = (A B^T)_ts exp(c_ts) with c_ts = R_t + XP_ts,
// D_ts = (G' E^T)_ts - delta_t and dq's pair part = A o (W B) with W_ts = exp(c_ts) D_ts: O(C (d_k + d_v))
// exponentials per chunk instead of O(C^2 (d_k + d_v)). Rows past HIB_LIM (Fl = 1) take the per-pair
// formulas. Writes XP, PP, DD (and the pair arrays Pg, Dg that hib_pairs reads), mm, R, Fl (and the row flags Fg),
// W^T over sm.Tk (the slot products' operands) with B [s][i] after it; ends with a barrier.
__device__ __forceinline__ void hib_fpairs(const HibTiles& sm, int t0, int t1, int DK, int DV, ta* Pg, ta* Dg, ta* Fg) {
    const int tid = threadIdx.x;
    const ta *Qs = sm.Qs, *Ks = sm.Ks, *LVs = sm.LVs, *Gs = sm.Gs, *Os = sm.Os, *Ds = sm.Ds;
    ta *XP = sm.XP, *PP = sm.PP, *DD = sm.DD, *mm = sm.mm, *nn = sm.nn, *R = sm.R, *Fl = sm.Fl;
    ta* const F = sm.Tk;
    {  // XP as hib_xp, the stretch sums running down each column s (lane s): dec(s, t) = dec(s, t - 1) + a_t, the same
       // sum in the same order; every warp runs them down to its own rows CH / 8 w .. (one dependent add per row
       // instead of hib_xp's loop of t - s loads and adds per pair: up to ~76 serial steps on the last warp)
        static_assert(NT == 256, "hib_fpairs' XP rows per warp");
        constexpr int RW = CH / 8, SC = (CH + 31) / 32;
        const int w = tid >> 5, lane = tid & 31;
        ta dec[SC];
#pragma unroll
        for (int c2 = 0; c2 < SC; ++c2) dec[c2] = (ta)0;
#pragma unroll
        for (int t = 0; t < CH; ++t) {
            if (t >= RW * (w + 1)) break;  // (uniform over the warp)
            const ta at = sm.ac[t], xr = sm.Ls[t];
#pragma unroll
            for (int c2 = 0; c2 < SC; ++c2) {
                const int s2 = lane + 32 * c2;
                if (t > s2) dec[c2] += at;
                if (t >= RW * w && s2 < CH)
                    XP[t * HIB_XLD + s2] = (s2 <= t && s2 >= t0 && t < t1)
                                               ? sm.Lam[t * HI_LMAX + (s2 == t ? 0 : bitlen64((i64)(t ^ s2)))] + dec[c2] - xr : lo_v();
            }
        }
    }
    hib_shifts(sm, t0, t1, DK, DV);
    {  // the exact-row flags (row t over its lanes)
        const int t = tid / HIB_TPR, r0 = tid % HIB_TPR;
        const bool in = t >= t0 && t < t1;
        const ta r = R[t];
        bool f = false;
        for (int s = t0 + r0; s <= t && in; s += HIB_TPR) f |= r + XP[t * HIB_XLD + s] > HIB_LIM;
        for (int jj = r0; jj < DV && in; jj += HIB_TPR) f |= Gs[t * HIB_VLD + jj] != (ta)0 && nn[jj] - Os[t * HIB_VLD + jj] > HIB_LIM;
        f = hib_rred<true>(f ? (ta)1 : (ta)0) > (ta)0;  // every lane calls it (not behind the && below)
        f = in && (f || !(r > neg_big() / 2));
        if (r0 == 0) {
            Fl[t] = f ? (ta)1 : (ta)0;
            if (in) Fg[t] = Fl[t];
        }
    }
    __syncthreads();
    auto on = [&](int t, int s) { return s <= t && s >= t0 && t < t1 && Fl[t] == (ta)0; };  // a product pair
#if HIB_TC  // the four operands as bf16 pairs at once (one pass, one barrier; where they fit), both products back to back
    constexpr bool F4 = (DKP + DVP) * HIB_GLD <= HIB_FREG;  // (not at CH 16, d 16: G', E after A, B's product)
    static_assert((DKP / 2) * 2 * HIB_GLD <= HIB_FREG && (DVP / 2) * 2 * HIB_GLD <= HIB_FREG &&
                  (CH / 2) * (HIB_GLD + HIB_BLD) <= HIB_FREG, "hib_fpairs' pairs");
    unsigned* const F2 = reinterpret_cast<unsigned*>(F);
    unsigned *At2 = F2, *Bt2 = At2 + (DKP / 2) * HIB_GLD, *Gt2 = F4 ? Bt2 + (DKP / 2) * HIB_GLD : F2, *Et2 = Gt2 + (DVP / 2) * HIB_GLD;
    for (int idx = tid; idx < (DKP / 2) * CH; idx += NT) {
        const int t = idx % CH, i = 2 * (idx / CH);
        const bool in = t >= t0 && t < t1, pr = in && Fl[t] == (ta)0;
        auto fa = [&](int i2) { return pr && i2 < DK ? hib_fex(Qs[t * HIB_KLD + i2] + mm[i2] - R[t]) : (ta)0; };
        auto fb = [&](int i2) { return in && i2 < DK ? hib_fex(Ks[t * HIB_KLD + i2] - mm[i2]) : (ta)0; };
        At2[(i / 2) * HIB_GLD + t] = pack2(fa(i), fa(i + 1));
        Bt2[(i / 2) * HIB_GLD + t] = pack2(fb(i), fb(i + 1));
    }
    auto ab = [&]() {
        hib_prod2<CH, CH, DKP>(At2, HIB_GLD, Bt2, HIB_GLD, [&](int t, int s, ta v) {
            PP[t * HIB_XLD + s] = on(t, s) ? v * hib_fex(R[t] + XP[t * HIB_XLD + s]) : (ta)0;
        });
    };
    if (!F4) {
        __syncthreads();
        ab();
        __syncthreads();
    }
    for (int idx = tid; idx < (DVP / 2) * CH; idx += NT) {
        const int t = idx % CH, jj = 2 * (idx / CH);
        const bool in = t >= t0 && t < t1, pr = in && Fl[t] == (ta)0;
        auto fg = [&](int j2) {
            return pr && j2 < DV ? Gs[t * HIB_VLD + j2] * hib_fex(min(nn[j2] - Os[t * HIB_VLD + j2], HIB_LIM)) : (ta)0;
        };
        auto fe = [&](int j2) { return in && j2 < DV ? hib_fex(LVs[t * HIB_VLD + j2] - nn[j2]) : (ta)0; };
        Gt2[(jj / 2) * HIB_GLD + t] = pack2(fg(jj), fg(jj + 1));
        Et2[(jj / 2) * HIB_GLD + t] = pack2(fe(jj), fe(jj + 1));
    }
    __syncthreads();
    if (F4) ab();
    hib_prod2<CH, CH, DVP>(Gt2, HIB_GLD, Et2, HIB_GLD, [&](int t, int s, ta v) {
        DD[t * HIB_XLD + s] = on(t, s) ? v - Ds[t] : (ta)0;
    });
    __syncthreads();
    unsigned *Wt2 = F2, *Bk2 = F2 + (CH / 2) * HIB_GLD;  // W^T [s / 2][t], B [s / 2][i] as pairs along s
    for (int idx = tid; idx < (CH / 2) * CH; idx += NT) {
        const int t = idx % CH, s2 = 2 * (idx / CH);
        auto fw = [&](int s3) { return on(t, s3) ? hib_fex(R[t] + XP[t * HIB_XLD + s3]) * DD[t * HIB_XLD + s3] : (ta)0; };
        Wt2[(s2 / 2) * HIB_GLD + t] = pack2(fw(s2), fw(s2 + 1));
    }
    for (int idx = tid; idx < (CH / 2) * DKP; idx += NT) {
        const int i = idx % DKP, s2 = 2 * (idx / DKP);
        auto fk = [&](int s3) { return (i < DK && s3 >= t0 && s3 < t1) ? hib_fex(Ks[s3 * HIB_KLD + i] - mm[i]) : (ta)0; };
        Bk2[(s2 / 2) * HIB_BLD + i] = pack2(fk(s2), fk(s2 + 1));
    }
#else
    ta* At = F;                  // A^T [i][t] (0 on exact rows)
    ta* Bt = F + DKP * HIB_TCL;  // B^T [i][s]
    for (int idx = tid; idx < DKP * CH; idx += NT) {
        const int i = idx / CH, t = idx % CH;
        const bool in = i < DK && t >= t0 && t < t1;
        At[i * HIB_TCL + t] = in && Fl[t] == (ta)0 ? hib_fex(Qs[t * HIB_KLD + i] + mm[i] - R[t]) : (ta)0;
        Bt[i * HIB_TCL + t] = in ? hib_fex(Ks[t * HIB_KLD + i] - mm[i]) : (ta)0;
    }
    __syncthreads();
    hib_prod<CH, CH, DKP>(At, HIB_TCL, Bt, HIB_TCL, [&](int t, int s, ta v) {
        PP[t * HIB_XLD + s] = on(t, s) ? v * hib_fex(R[t] + XP[t * HIB_XLD + s]) : (ta)0;
    });
    __syncthreads();
    ta* Gt = F;                  // G'^T [j][t] (0 on exact rows)
    ta* Et = F + DVP * HIB_TCL;  // E^T [j][s]
    for (int idx = tid; idx < DVP * CH; idx += NT) {
        const int jj = idx / CH, t = idx % CH;
        const bool in = jj < DV && t >= t0 && t < t1;
        Gt[jj * HIB_TCL + t] = in && Fl[t] == (ta)0
                                   ? Gs[t * HIB_VLD + jj] * hib_fex(min(nn[jj] - Os[t * HIB_VLD + jj], HIB_LIM)) : (ta)0;
        Et[jj * HIB_TCL + t] = in ? hib_fex(LVs[t * HIB_VLD + jj] - nn[jj]) : (ta)0;
    }
    __syncthreads();
    hib_prod<CH, CH, DVP>(Gt, HIB_TCL, Et, HIB_TCL, [&](int t, int s, ta v) {
        DD[t * HIB_XLD + s] = on(t, s) ? v - Ds[t] : (ta)0;
    });
    __syncthreads();
    ta* Wt = F;                  // W^T [s][t], W_ts = exp(c_ts) D_ts
    ta* Bk = F + CH * HIB_TCL;   // B [s][i]
    for (int idx = tid; idx < CH * CH; idx += NT) {
        const int t = idx % CH, s = idx / CH;
        Wt[s * HIB_TCL + t] = on(t, s) ? hib_fex(R[t] + XP[t * HIB_XLD + s]) * DD[t * HIB_XLD + s] : (ta)0;
    }
    for (int idx = tid; idx < CH * DKP; idx += NT) {
        const int s = idx / DKP, i = idx % DKP;
        Bk[s * HIB_TKL + i] = (i < DK && s >= t0 && s < t1) ? hib_fex(Ks[s * HIB_KLD + i] - mm[i]) : (ta)0;
    }
#endif
    for (int idx = tid; idx < CH * CH; idx += NT) {  // the exact rows: per pair (hib_pair_exact)
        const int t = idx / CH, s = idx % CH;
        if (!(s <= t && s >= t0 && t < t1) || Fl[t] == (ta)0) continue;
        hib_pair_exact(sm, t, s, XP[t * HIB_XLD + s], DK, DV, PP[t * HIB_XLD + s], DD[t * HIB_XLD + s]);
    }
    __syncthreads();
    for (int idx = tid; idx < CH * CH; idx += NT) {
        const int t = idx / CH, s = idx % CH;
        if (t >= t0 && t < t1) {
            Pg[(i64)t * CH + s] = PP[t * HIB_XLD + s];
            Dg[(i64)t * CH + s] = DD[t * HIB_XLD + s];
        }
    }
}

// The tiles of one chunk common to hib_dq and hib_dkdv: q, k, clamped lv, g, o (hib_go), clamped lam, the
// decays (ac, pre: prefix sums from the chunk's first token of the call), delta (unless null: hib_dq forms it).
// Ends with a barrier.
__device__ __forceinline__ void hib_chunk(const ti* q, const ti* k, const ti* lv, const ti* lam, const ti* a,
                                          const ti* gm, const ta* om, const ta* delta, ta* Qs, ta* Ks, ta* LVs, ta* Gs,
                                          ta* Os, ta* Lam, ta* ac, ta* pre, ta* Ds, i64 bh, i64 g0, int T, int DK,
                                          int DV, int L, ta alo) {
    {  // two batches of three tiles' loads (in flight together), then their stores
        ta r1[CH * DKP / NT], r2[CH * DKP / NT], r3[CH * DVP / NT];
        hib_rows_ld<DKP>(r1, q + bh * T * DK, g0, T, DK, (ta)0);
        hib_rows_ld<DKP>(r2, k + bh * T * DK, g0, T, DK, (ta)0);
        hib_rows_ld<DVP>(r3, lv + bh * T * DV, g0, T, DV, lo_v());
        hib_rows_st<DKP>(r1, Qs, HIB_KLD, neg_big());
        hib_rows_st<DKP>(r2, Ks, HIB_KLD, neg_big());
        hib_rows_st<DVP>(r3, LVs, HIB_VLD, lo_v());
    }
    {
        ta r1[CH * DVP / NT], r2[CH * DVP / NT], r3[CH * HI_LMAX / NT];
        hib_rows_ld<DVP>(r1, gm + bh * T * DV, g0, T, DV, (ta)0);
        hib_rows_ld<DVP>(r2, om + bh * T * DV, g0, T, DV, -lo_v());
        hib_rows_ld<HI_LMAX>(r3, lam + bh * T * L, g0, T, L, lo_v());
#pragma unroll
        for (int u = 0; u < CH * DVP / NT; ++u) hib_go(r1[u], r2[u]);
        hib_rows_st<DVP>(r1, Gs, HIB_VLD, neg_big());
        hib_rows_st<DVP>(r2, Os, HIB_VLD, neg_big());
        hib_rows_st<HI_LMAX>(r3, Lam, HI_LMAX, lo_v());
    }
    // the decays (hi_decays' values and prefix sums, bit for bit) and delta: row tid's loaded beside the tiles' second
    // batch above would need registers the tiles hold; here every thread loads (valid addresses) and threads tid < CH
    // keep theirs (hib_keep: not sunk into that branch), then each of them sums its own prefix in hi_decays' order
    // (thread 0's serial loop of CH dependent shared round trips before)
    {
        const int tid = threadIdx.x;
        const i64 g = g0 + (tid < CH ? tid : 0);
        const bool in = g >= 0 && g < T;
        const ta ra = a ? hib_ld(a + bh * T, g, in, (ta)0) : (ta)0, rd = delta ? hib_ld(delta + bh * T, g, in, (ta)0) : (ta)0;
        hib_keep(ra), hib_keep(rd);
        if (tid < CH) {
            ac[tid] = a && in ? fmx(ra, alo) : (ta)0;
            if (delta) Ds[tid] = rd;
        }
        __syncthreads();
        if (tid < CH) {
            ta run = (ta)0;
            for (int u = 0; u <= tid; ++u) run += ac[u];
            pre[tid] = run;
        }
        __syncthreads();
    }
}
''',
    'hierarchical_bwd_dq.cu': '''// The backward's per-chunk kernel hib_dq: dq, dlam (and the decay's row sums) of one chunk, from the chunk's own
// pairs and its held slots' reads (compiled after hierarchical_bwd_chunk.cu, whose tiles and pairs it uses).

// hib_dq's held slots' products (G' S^T)[t][i] (S_ n-major, as hib_prod<CH, DKP, DVP, true>), epi(k, t, i, v) for this
// thread's elements k = 0 .. HIB_SPT - 1, at the same (t, i) for every slot (hib_slot_pos): dq and q held there in
// registers across the slots, the terms' row sums (dlam) by shuffles into per-group partials, instead of DQ, Qs read
// and DQ, TT written in shared per element and slot (s15e17's ncu: 56.6 M conflicted wavefronts, 4-way, at the mma
// accumulators' rows g, columns 2t) and TT's row sums read back. HIB_TC: G' as bf16 pairs along j (hib_slot_g2), the
// mma's A fragments one 32-bit load each (the same bf16 values: pack2 at its store instead of at every read).
#if HIB_TC
constexpr int HIB_STL = (CH / 16) * (DKP / 8), HIB_SPW = (HIB_STL + NT / 32 - 1) / (NT / 32), HIB_SPT = 4 * HIB_SPW;
static_assert((DVP / 2) * HIB_GLD <= DVP * HIB_TCL, "G' pairs over GRt");
#else
constexpr int HIB_SPT = (CH / 16) * (DKP / 16);
#endif
// f(k, t, i) for this thread's elements of the slot products
template <typename F>
__device__ __forceinline__ void hib_slot_pos(F f) {
#if HIB_TC
    const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
#pragma unroll
    for (int p = 0; p < HIB_SPW; ++p) {
        const int x = (threadIdx.x >> 5) + p * (NT / 32);
        if (x < HIB_STL) {
            const int m0 = (x / (DKP / 8)) * 16, n0 = (x % (DKP / 8)) * 8;
#pragma unroll
            for (int e = 0; e < 4; ++e) f(4 * p + e, m0 + g + 8 * (e >> 1), n0 + 2 * t + (e & 1));
        }
    }
#else
    constexpr int RM_ = CH / 16, RN_ = DKP / 16;
    const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
#pragma unroll
    for (int ii = 0; ii < RM_; ++ii)
#pragma unroll
        for (int jj = 0; jj < RN_; ++jj) f(ii * RN_ + jj, ty * RM_ + ii, tx + 16 * jj);
#endif
}
template <typename E>
__device__ __forceinline__ void hib_slot_prod(const ta* G, const ta* S, E epi) {
#if HIB_TC
    const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    float c[HIB_SPW][4];
#pragma unroll
    for (int p = 0; p < HIB_SPW; ++p) c[p][0] = c[p][1] = c[p][2] = c[p][3] = 0.f;
    // k-steps outside, the warp's tiles inside: their mma chains interleaved (each tile's sum in k order as before)
#pragma unroll 4
    for (int k0 = 2 * t; k0 < DVP; k0 += 16)
#pragma unroll
        for (int p = 0; p < HIB_SPW; ++p) {
            const int x = (threadIdx.x >> 5) + p * (NT / 32);
            if (x < HIB_STL)  // (uniform over the warp)
                hib_mma_step2(c[p], reinterpret_cast<const unsigned*>(G), HIB_GLD, S, HIB_SLD, (x / (DKP / 8)) * 16,
                              (x % (DKP / 8)) * 8, k0);
        }
    hib_slot_pos([&](int kk, int r, int col) { epi(kk, r, col, c[kk >> 2][kk & 3]); });
#else
    constexpr int RM_ = CH / 16, RN_ = DKP / 16;
    const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
    ta acc[RM_][RN_];
    zero_acc(acc);
    hib_acc_bt<RM_, RN_, DVP>(acc, G, HIB_TCL, S, HIB_SLD, ty, tx);
#pragma unroll
    for (int ii = 0; ii < RM_; ++ii)
#pragma unroll
        for (int jj = 0; jj < RN_; ++jj) epi(ii * RN_ + jj, ty * RM_ + ii, tx + 16 * jj, acc[ii][jj]);
#endif
}
// The row sums of this thread's slot terms v into Part [group][t] (HIB_PG groups of a row's columns, row stride HIB_PLD),
// partial sums over disjoint column sets, each (group, row) written by one lane: mma tiles summed over the quad's 4 lanes
// (columns n0 .. n0 + 7), the group the tile's column block mod 8 (DKP >= 64: the thread's tiles of one row block summed
// first); FFMA tiles over jj and lane pairs (tx, tx ^ 1): group tx / 2. Groups no thread writes stay as zeroed (DKP < 64,
// HIB_TC). Every thread calls it (shuffles).
#define HIB_PG 8
#define HIB_PLD (CH + 4)  // (conflict-free: the stores along rows, hib_dq's reads of 8 groups x 4 rows per warp)
__device__ __forceinline__ void hib_slot_rows(const ta (&v)[HIB_SPT], ta* Part) {
#if HIB_TC
    const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3, w = threadIdx.x >> 5;
#if DKP >= 64  // tile p: row block p / (DKP / 64), column block w + 8 (p % (DKP / 64)) (x = w + 8 p)
    {
        constexpr int RB = CH / 16, PB = DKP / 64;
        static_assert(NT == 256 && HIB_SPW == RB * PB, "hib_slot_rows' tiles");
        ta r[RB][2];
#pragma unroll
        for (int rb = 0; rb < RB; ++rb)
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                ta x = (ta)0;
#pragma unroll
                for (int q = 0; q < PB; ++q) x += v[4 * (rb * PB + q) + 2 * h] + v[4 * (rb * PB + q) + 2 * h + 1];
                x += __shfl_xor_sync(0xffffffffu, x, 1);
                r[rb][h] = x + __shfl_xor_sync(0xffffffffu, x, 2);
            }
#pragma unroll
        for (int rb = 0; rb < RB; ++rb)
#pragma unroll
            for (int h = 0; h < 2; ++h)
                if (t == (2 * rb + h) % 4) Part[w * HIB_PLD + 16 * rb + 8 * h + g] = r[rb][h];
    }
#else  // tile p: rows m0 .., column block x % (DKP / 8) (< 8), one tile per row block and thread
#pragma unroll
        for (int p = 0; p < HIB_SPW; ++p) {
            const int x = w + p * (NT / 32);
            ta r[2];
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                ta y = v[4 * p + 2 * h] + v[4 * p + 2 * h + 1];  // (garbage past HIB_STL: not stored)
                y += __shfl_xor_sync(0xffffffffu, y, 1);
                r[h] = y + __shfl_xor_sync(0xffffffffu, y, 2);
            }
            if (x < HIB_STL && t < 2) Part[(x % (DKP / 8)) * HIB_PLD + (x / (DKP / 8)) * 16 + 8 * t + g] = t ? r[1] : r[0];
        }
#endif
#else
    constexpr int RM_ = CH / 16, RN_ = DKP / 16;
    const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
#pragma unroll
    for (int ii = 0; ii < RM_; ++ii) {
        ta x = (ta)0;
#pragma unroll
        for (int jj = 0; jj < RN_; ++jj) x += v[ii * RN_ + jj];
        x += __shfl_xor_sync(0xffffffffu, x, 1);
        if ((tx & 1) == (ii & 1)) Part[(tx >> 1) * HIB_PLD + ty * RM_ + ii] = x;
    }
#endif
}

extern "C" __global__ void __launch_bounds__(NT, HIB_MINB) hib_dq(
    const ti* __restrict__ q, const ti* __restrict__ k, const ti* __restrict__ lv, const ti* __restrict__ lam,
    const ti* __restrict__ a,      // (BH, T) or null
    const ti* __restrict__ gm, const ta* __restrict__ om,  // (BH, T, DV): dL/do, the forward's log output
    ta* __restrict__ delta,        // (BH, T) out: sum_j g_tj (g masked as hib_go)
    const ta* __restrict__ lden0,  // (BH, T) hi_intra's (the chunk's own pairs)
    const ta* __restrict__ msnap, const ta* __restrict__ wz, const ta* __restrict__ wn, const ta* __restrict__ wS,  // hi_snap/hi_merge's
    ta* __restrict__ lden,         // (BH, T) out
    ti* __restrict__ dq,           // (BH, T, DK) out
    ta* __restrict__ dlam,         // (BH, T, L) out (levels >= HI_LMAX untouched: zeroed by the host)
    ta* __restrict__ Pg, ta* __restrict__ Dg,  // (BH, T, CH) out: the pairs' P_ts, D_ts (hib_fpairs)
    ta* __restrict__ Fg,           // (BH, T) out: 1 on the rows whose pairs took the exact path
    ta* __restrict__ dsum,         // (BH, T) out or null: sum_i dq_ti (the decay's gradient)
    int T, int DK, int DV, int L, i64 p, i64 F, int n, int n_old, int NLC, ta alo, int ncb) {
    extern __shared__ __align__(16) unsigned char smem_raw[];
    const HibTiles sm = hib_tiles(smem_raw, true);
    check_smem(sm.bytes);
    ta *Qs = sm.Qs, *Ks = sm.Ks, *DQ = sm.Ak, *LVs = sm.LVs, *Gs = sm.Gs, *Os = sm.Os, *XP = sm.XP, *PP = sm.PP, *DD = sm.DD;
    ta *Lam = sm.Lam, *DL = sm.DL, *GRt = sm.Ta;
    ta *ac = sm.ac, *pre = sm.pre, *Ls = sm.Ls, *Ds = sm.Ds, *Xw = sm.X;  // Ks: then the slot terms, LVs: g exp(n - o)
    const int tid = threadIdx.x;
    const int j = blockIdx.x;
    const i64 bh = blockIdx.y;
    const int NS = n_old + n, NSL = n_old + NLC;
    const i64 c = F + j, g0 = c * CH - p;
    const int t0 = (int)max((i64)0, -g0), t1 = (int)min((i64)CH, (i64)T - g0);
    const ta* mj = msnap + (bh * n + j) * NSL * DK;
    const ta* zb = wz + (bh * ncb) * NS * DK;  // column block 0's copy
    const ta* nb = wn + bh * NS * DV;
    const ta* Sb = wS + bh * NS * (i64)DK * DV;
    hib_chunk(q, k, lv, lam, a, gm, om, nullptr, Qs, Ks, LVs, Gs, Os, Lam, ac, pre, Ds, bh, g0, T, DK, DV, L, alo);
    for (int idx = tid; idx < CH * HI_LMAX; idx += NT) DL[idx] = (ta)0;
    {  // delta_t (0 outside the call: g's fill), stored for hib_blocks and hib_dkdv; Ds read after the barrier below
        const ta x = hib_rowsum(Gs, HIB_VLD, DV, delta + bh * T + g0, t0, t1, false);
        if (tid % HIB_TPR == 0) Ds[tid / HIB_TPR] = x;
    }
    // the held slots' ids (level code s as in hi_read)
    auto slot_id = [&](int s) { return s < n_old ? (((p >> s) & 1) ? s : -1) : hi_slot(c, s - n_old + 1, F, n_old); };
    auto slot_level = [&](int s, int t) {
        return s < n_old ? max(s + 1, bitlen64(p ^ (c * CH + t))) : HI_LOG2C + (s - n_old + 1);
    };
    for (int s = 0; s < NSL; ++s)  // every held slot's S into L2 now (read after the pairs)
        if (slot_id(s) >= 0) hib_prefetch(Sb + (i64)slot_id(s) * DK * DV, DK * DV);
    const int tr = tid / HIB_TPR, rl = tid % HIB_TPR;  // this thread's row and lane (hib_rred)
    const bool rin = tr >= t0 && tr < t1;
    auto next_slot = [&](int s) {  // the first held slot from level code s on (NSL: none)
        while (s < NSL && slot_id(s) < 0) ++s;
        return s;
    };
    // lden: hi_intra's, plus the held slots read as hi_read, row tr over its lanes' features; each slot's m, z
    // read from global by the lanes that use them (no barrier), the next held slot's loads in flight meanwhile
    constexpr int KPT = DKP / HIB_TPR;  // features per lane
    ta qr[KPT], mc[KPT], zc[KPT], mn[KPT], zn[KPT];
    auto slot_mz = [&](int s, ta (&m)[KPT], ta (&z)[KPT]) {
        const int id = slot_id(s);
        if (DK == DKP) {  // (uniform) every feature a column: one base per row, constant offsets, no select (s16c17:
                          // the masked form's address and select per element were ~3/4 of this pass's instructions)
            const ta *mr = mj + s * DKP + rl, *zr = zb + id * DKP + rl;
#pragma unroll
            for (int u = 0; u < KPT; ++u) {
                m[u] = ld(mr + u * HIB_TPR);
                z[u] = ld(zr + u * HIB_TPR);
            }
            return;
        }
#pragma unroll
        for (int u = 0; u < KPT; ++u) {
            const int i = rl + u * HIB_TPR;
            m[u] = hib_ld(mj, s * DK + i, i < DK, neg_big());
            z[u] = hib_ld(zb, id * DK + i, i < DK, (ta)0);
        }
    };
#pragma unroll
    for (int u = 0; u < KPT; ++u) qr[u] = Qs[tr * HIB_KLD + rl + u * HIB_TPR];
    ta Ud = rin ? lden0[bh * T + g0 + tr] : neg_big(), Dd = (ta)1;
    int sc = next_slot(0);
    if (sc < NSL) slot_mz(sc, mc, zc);
    while (sc < NSL) {
        const int sn = next_slot(sc + 1);
        if (sn < NSL) slot_mz(sn, mn, zn);
        ta r = neg_big();
#pragma unroll
        for (int u = 0; u < KPT; ++u) r = fmx(r, qr[u] + mc[u]);
        r = hib_rred<true>(r);
        ta den = (ta)0;
#pragma unroll
        for (int u = 0; u < KPT; ++u) den = fma(hib_fex(qr[u] + mc[u] - r), zc[u], den);
        den = hib_rred<false>(den);
        if (rin && den > (ta)0) hi_lse_add(Ud, Dd, r + Lam[tr * HI_LMAX + slot_level(sc, tr)] + pre[tr], den);
#pragma unroll
        for (int u = 0; u < KPT; ++u) {
            mc[u] = mn[u];
            zc[u] = zn[u];
        }
        sc = sn;
    }
    {
        bool live = false;
        for (int jj = rl; jj < DV && rin; jj += HIB_TPR) live |= Gs[tr * HIB_VLD + jj] != (ta)0;
        live = hib_rred<true>(live ? (ta)1 : (ta)0) > (ta)0;
        if (rl == 0) {
            Ls[tr] = rin ? Ud + lg(Dd) : (ta)0;
            if (rin) lden[bh * T + g0 + tr] = live ? Ls[tr] : -lo_v();  // rows with g = 0 add nothing: +big
        }
    }
    __syncthreads();
    hib_fpairs(sm, t0, t1, DK, DV, Pg + (bh * T + g0) * CH, Dg + (bh * T + g0) * CH, Fg + bh * T + g0);
    // the chunk's pairs: dq_ti = sum_s P_i(t,s) D_ts = A_ti (W B)_ti
    auto pair_dq = [&](int t, int i, ta v) {
        const bool on = i < DK && t >= t0 && t < t1 && sm.Fl[t] == (ta)0;
        DQ[t * HIB_KLD + i] = on ? hib_fex(Qs[t * HIB_KLD + i] + sm.mm[i] - sm.R[t]) * v : (ta)0;
    };
#if HIB_TC  // (W^T and B as pairs, hib_fpairs)
    hib_prod2<CH, DKP, CH>(reinterpret_cast<const unsigned*>(sm.Tk), HIB_GLD,
                           reinterpret_cast<const unsigned*>(sm.Tk) + (CH / 2) * HIB_GLD, HIB_BLD, pair_dq);
#else
    hib_prod<CH, DKP, CH>(sm.Tk, HIB_TCL, sm.Tk + CH * HIB_TCL, HIB_TKL, pair_dq);
#endif
    __syncthreads();
    for (int idx = tid; idx < CH * DKP; idx += NT) {  // the exact rows: sum_s P_i(t,s) D_ts per pair
        const int t = idx / DKP, i = idx % DKP;
        if (i >= DK || sm.Fl[t] == (ta)0) continue;
        ta x = (ta)0;
        for (int s = t0; s <= t; ++s)
            x = fma(ex(Qs[t * HIB_KLD + i] + Ks[s * HIB_KLD + i] + XP[t * HIB_XLD + s]), DD[t * HIB_XLD + s], x);
        DQ[t * HIB_KLD + i] = x;
    }
    {  // dlam of the chunk's pairs (levels 0 .. HI_LOG2C), row tr over its lanes
        ta acc[HI_LOG2C + 1];
#pragma unroll
        for (int l = 0; l <= HI_LOG2C; ++l) acc[l] = (ta)0;
        for (int s = t0 + rl; s <= tr; s += HIB_TPR) {
            const int lv_ = s == tr ? 0 : bitlen64((i64)(tr ^ s));
            const ta v = PP[tr * HIB_XLD + s] * DD[tr * HIB_XLD + s];
#pragma unroll
            for (int l = 0; l <= HI_LOG2C; ++l) acc[l] += l == lv_ ? v : (ta)0;
        }
#pragma unroll
        for (int l = 0; l <= HI_LOG2C; ++l) {
            const ta x = hib_rred<false>(acc[l]);
            if (rl == 0 && rin) DL[tr * HI_LMAX + l] += x;
        }
    }
    ta* const Part = Ks;  // the slot terms' row sums per column group (hib_slot_rows; the keys are read above)
    // The held slots' S [i][j] and m, z, n copied asynchronously (cp.async, no registers) into HIB_SNB buffers over the
    // pairs' tiles, the products' operands and LVs (free from here on), read in place as hib_prod's n-major B: with
    // two buffers the next slot's copy is in flight during this slot's work (n too: no global load waited for per slot,
    // s15e17); n read by the thread whose column it is.
    // Two barriers per slot (S in and the previous product done; G' stored); a slot's dlam sums after the next one's
    // first barrier. dq and q at this thread's product elements in registers (hib_slot_prod).
    ta* const SB = XP;
    GRt = SB + HIB_SNB * HIB_SBUF;
    auto issue = [&](int s, int id, int u) {  // (id = slot_id(s))
        ta* const S_ = SB + u * HIB_SBUF;
        constexpr int V = 16 / (int)sizeof(ta), W = DVP / V;
        if ((DKP * W) % NT == 0 && DK == DKP && DV == DVP) {  // (uniform) the tile contiguous in global memory: piece x
            // at x V, the shared addresses in 32 bits from the buffer's, the global ones constant offsets from the
            // thread's first (hib_copy_tile's bounds and 64-bit forms per piece: ~3/4 of this issue, SASS)
            const ta* src = Sb + (i64)id * (DKP * DVP) + tid * V;
#ifdef __CUDA_ARCH__
            const unsigned d32 = smem_u32(S_);
#endif
#pragma unroll
            for (int u2 = 0; u2 < DKP * W / NT; ++u2) {
                const int x = tid + u2 * NT, off = (x / W) * HIB_SLD + (x % W) * V;
#ifdef __CUDA_ARCH__
                asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(d32 + off * (int)sizeof(ta)), "l"(src + u2 * NT * V));
#else
                cp_async16(S_ + off, src + u2 * NT * V, true);
#endif
            }
        } else {
            hib_copy_tile(S_, Sb + (i64)id * DK * DV, DK, DV);
        }
        for (int i = tid; i < DKP; i += NT) {
            cp_async_ta(S_ + DKP * HIB_SLD + i, mj + (i < DK ? s * DK + i : 0), i < DK);
            cp_async_ta(S_ + DKP * HIB_SLD + DKP + i, zb + (i < DK ? id * DK + i : 0), i < DK);
        }
        for (int jj = tid; jj < DVP; jj += NT) cp_async_ta(S_ + DKP * HIB_SLD + 2 * DKP + jj, nb + (jj < DV ? id * DV + jj : 0), jj < DV);
        cp_async_commit();
    };
    int sp = -1;  // the previous slot (its dlam sums pending)
    auto slot_dlam = [&]() {
        ta x = (ta)0;  // the row's column groups over its lanes
        for (int gi = rl; gi < HIB_PG; gi += HIB_TPR) x += Part[gi * HIB_PLD + tr];
        x = hib_rred<false>(x);
        if (rl == 0 && rin) DL[tr * HI_LMAX + slot_level(sp, tr)] += x;
    };
    __syncthreads();  // (the pairs' reads of the tiles the buffers overlay; DQ and the pairs' dlam written)
    ta dv[HIB_SPT], qv[HIB_SPT], tv[HIB_SPT];
#pragma unroll
    for (int x = 0; x < HIB_SPT; ++x) dv[x] = qv[x] = tv[x] = (ta)0;
    unsigned vm = 0;  // bit x: element x is a term (i < DK, t in the call): the epilogue's select, no branch per element
    static_assert(HIB_SPT <= 32, "hib_dq's element mask");
    hib_slot_pos([&](int x, int t, int i) {
        dv[x] = DQ[t * HIB_KLD + i];
        qv[x] = Qs[t * HIB_KLD + i];
        vm |= (i < DK && t >= t0 && t < t1) ? 1u << x : 0u;
    });
    for (int idx = tid; idx < HIB_PG * HIB_PLD; idx += NT) Part[idx] = (ta)0;  // (groups no thread writes)
    // (each held slot and its id found once: next_slot's scan and hi_slot's 64-bit arithmetic were ~5% of the
    // kernel's instructions when evaluated three times per slot, ncu)
    int h = 0, s = next_slot(0), id = s < NSL ? slot_id(s) : -1;
    if (HIB_SNB == 2 && s < NSL) issue(s, id, 0);
    for (; s < NSL; ++h) {
        const int sn = next_slot(s + 1), idn = sn < NSL ? slot_id(sn) : -1;  // the next held slot
        const int u = HIB_SNB == 2 ? h & 1 : 0;
        if (HIB_SNB == 2) {
            cp_async_wait_all();
            __syncthreads();  // slot s is in; the previous product is done with the other buffer, GRt, Xw and TT
            if (sn < NSL) issue(sn, idn, u ^ 1);
        } else {
            __syncthreads();  // the previous product is done with the buffer
            issue(s, id, 0);
        }
        // n: with two buffers this slot's (in since the barrier above), each column's read where used, the G' pass's
        // element idx at t = idx % CH (a warp on consecutive rows of one column: its transposed stores conflict-free,
        // n_j a broadcast; s15e17, ncu: 4-way conflicts with jj = idx % DVP); with one, n_j of this thread's column
        // (jj = tid % DVP) from global
        const ta* const N_ = SB + u * HIB_SBUF + DKP * HIB_SLD + 2 * DKP;
        if (sp >= 0) slot_dlam();
        for (int t = tid; t < CH; t += NT)
            Xw[t] = (t >= t0 && t < t1) ? Lam[t * HI_LMAX + slot_level(s, t)] + pre[t] - Ls[t] : lo_v();
        // g_tj exp(n_j - o_tj), capped at 64, not HIB_CAP: (G S^T) sums d_v of these times S_ij <= the slot's tokens,
        // past float32 at e^80
        const ta cap = sizeof(ta) == 4 ? (ta)64 : (ta)640;
        auto gp = [&](int t, int jj, ta n_) {
            const ta x = n_ - Os[t * HIB_VLD + jj];
            return jj < DV ? Gs[t * HIB_VLD + jj] * hib_fex(x < cap ? x : cap) : (ta)0;
        };
#if HIB_TC
        for (int idx = tid; idx < CH * (DVP / 2); idx += NT) {  // as bf16 pairs (j, j + 1) along j: G'2 [j / 2][t]
            const int t = idx % CH, jj = 2 * (idx / CH);
            const ta n0_ = HIB_SNB == 2 ? N_[jj] : hib_ld(nb, id * DV + jj, jj < DV, (ta)0);
            const ta n1_ = HIB_SNB == 2 ? N_[jj + 1] : hib_ld(nb, id * DV + jj + 1, jj + 1 < DV, (ta)0);
            reinterpret_cast<unsigned*>(GRt)[(jj / 2) * HIB_GLD + t] = pack2(gp(t, jj, n0_), gp(t, jj + 1, n1_));
        }
#else
        const ta nr = HIB_SNB == 2 ? (ta)0 : hib_ld(nb, id * DV + tid % DVP, tid % DVP < DV, (ta)0);
        for (int idx = tid; idx < CH * DVP; idx += NT) {  // transposed: G'^T [j][t]
            const int t = HIB_SNB == 2 ? idx % CH : idx / DVP, jj = HIB_SNB == 2 ? idx / CH : idx % DVP;
            GRt[jj * HIB_TCL + t] = gp(t, jj, HIB_SNB == 2 ? N_[jj] : nr);
        }
#endif
        if (HIB_SNB == 1) cp_async_wait_all();
        __syncthreads();
        const ta *S_ = SB + u * HIB_SBUF, *M_ = S_ + DKP * HIB_SLD, *Z_ = M_ + DKP;
        hib_slot_prod(GRt, S_, [&](int x, int t, int i, ta v) {  // v = (G S^T)[t][i]
            // (formed everywhere, finite off the terms too: q, m, z, Ds 0 or clamped, Xw lo_v off the rows; selected after,
            // so that the loads of one column or row are shared by the thread's elements, not each behind a branch)
            const ta term = hib_fex(qv[x] + M_[i] + Xw[t]) * (v - Z_[i] * Ds[t]);
            tv[x] = (vm >> x) & 1u ? term : (ta)0;
            dv[x] += tv[x];
        });
        hib_slot_rows(tv, Part);
        sp = s;
        s = sn;
        id = idn;
    }
    hib_slot_pos([&](int x, int t, int i) { DQ[t * HIB_KLD + i] = dv[x]; });
    __syncthreads();
    if (sp >= 0) slot_dlam();
    __syncthreads();
    for (int idx = tid; idx < CH * DKP; idx += NT) {
        const int t = idx / DKP, i = idx % DKP;
        if (i < DK && t >= t0 && t < t1) st(dq + (bh * T + g0 + t) * DK + i, DQ[t * HIB_KLD + i]);
    }
    if (dsum) hib_rowsum(DQ, HIB_KLD, DK, dsum + bh * T + g0, t0, t1, false);
    const int LL = min(L, HI_LMAX);
    for (int idx = tid; idx < CH * LL; idx += NT) {
        const int t = idx / LL, l = idx % LL;
        if (t >= t0 && t < t1) dlam[(bh * T + g0 + t) * L + l] = DL[t * HI_LMAX + l];
    }
}
''',
    'hierarchical_bwd_dkdv.cu': '''// The backward's per-chunk kernel hib_dkdv: dk, dlv (and the decay's row sums) of one chunk, from the chunk's own
// pairs and the right blocks' (compiled after hierarchical_bwd_chunk.cu and hierarchical_bwd_dq.cu).

// hib_dkdv's pair sums over the product rows (Fl_t = 0): X [t][s] = x(t, s) on the pairs t0 <= s <= t < t1 of
// those rows (else 0), Y [t][c] = y(t, c) on those rows (else 0), both over F2; then out(s, c, (X^T Y)_sc) for
// this thread's register tile. Ends with a barrier.
// (hib_pair_ops: X and Y alone, then the barrier; hib_dkdv's HIB_DKR takes the product in registers)
template <int DP, int LDY, typename FX, typename FY>
__device__ __forceinline__ void hib_pair_ops(ta* F2, FX x, FY y, int t0, int t1, const ta* Fl) {
    const int tid = threadIdx.x;
    ta *X = F2, *Y = F2 + CH * HIB_TCL;
    for (int idx = tid; idx < CH * CH; idx += NT) {
        const int t = idx / CH, s = idx % CH;
        X[t * HIB_TCL + s] = (s <= t && s >= t0 && t < t1 && Fl[t] == (ta)0) ? x(t, s) : (ta)0;
    }
    for (int idx = tid; idx < CH * DP; idx += NT) {
        const int t = idx / DP, c = idx % DP;
        Y[t * LDY + c] = (t >= t0 && t < t1 && Fl[t] == (ta)0) ? y(t, c) : (ta)0;
    }
    __syncthreads();
}
template <int DP, int LDY, typename FX, typename FY, typename FO>
__device__ __forceinline__ void hib_pair_product(ta* F2, FX x, FY y, FO out, int t0, int t1, const ta* Fl) {
    hib_pair_ops<DP, LDY>(F2, x, y, t0, t1, Fl);
    hib_prod<CH, DP, CH>(F2, HIB_TCL, F2 + CH * HIB_TCL, LDY, out);
    __syncthreads();
}

extern "C" __global__ void __launch_bounds__(NT, HIB_MINB) hib_dkdv(
    const ti* __restrict__ q, const ti* __restrict__ k, const ti* __restrict__ lv, const ti* __restrict__ lam,
    const ti* __restrict__ a, const ti* __restrict__ gm, const ta* __restrict__ om, const ta* __restrict__ delta,
    const ta* __restrict__ lden,  // hib_dq's (delta too)
    const ta* __restrict__ U, const ta* __restrict__ Z, const ta* __restrict__ Mb, const ta* __restrict__ Wb,
    const ta* __restrict__ gt,    // hib_blocks'
    const ta* __restrict__ Pg, const ta* __restrict__ Dg,  // (BH, T, CH) hib_dq's pairs
    const ta* __restrict__ Fg,    // (BH, T) hib_dq's exact-row flags
    ti* __restrict__ dk, ti* __restrict__ dlv,  // (BH, T, DK), (BH, T, DV) out
    ta* __restrict__ dsum,        // (BH, T) or null: hib_dq's sum_i dq_ti, minus sum_i dk_ti here
    int T, int DK, int DV, int L, i64 p, i64 F, int n, ta alo) {
    extern __shared__ __align__(16) unsigned char smem_raw[];
    const HibTiles sm = hib_tiles(smem_raw, false);
    check_smem(sm.bytes);
    ta *Qs = sm.Qs, *Ks = sm.Ks, *DKs = sm.Ak, *LVs = sm.LVs, *Gs = sm.Gs, *Os = sm.Os, *DVs = sm.Av;
    ta *XP = sm.XP, *PP = sm.PP, *DD = sm.DD, *Lam = sm.Lam, *Zs = sm.Zs;
    ta *UB = sm.Tk, *Vpt = sm.Ta, *Bt = sm.Tb;  // U's buffers, E^T, B^T
    ta *ac = sm.ac, *pre = sm.pre, *suf = sm.X, *Ls = sm.Ls, *Ds = sm.Ds;
    const int tid = threadIdx.x;
    const i64 bh = blockIdx.y;
    const i64 c = F + blockIdx.x, g0 = c * CH - p;
    const int t0 = (int)max((i64)0, -g0), t1 = (int)min((i64)CH, (i64)T - g0);
    auto next_lp = [&](int lp) {  // the first level from lp on whose bit lp - 1 of c is clear (R inside the call; 0: none)
        for (;; ++lp) {
            const i64 r0 = ((c >> (lp - 1)) | 1) << (lp - 1);
            if (r0 > F + n - 1) return 0;
            if (!((c >> (lp - 1)) & 1)) return lp;
        }
    };
    auto block_of = [&](int lp) { return bh * n + ((((c >> (lp - 1)) | 1) << (lp - 1)) - F); };
    int lq = next_lp(1);
    if (lq) hib_prefetch(U + block_of(lq) * DK * DV, DK * DV);  // the first R's U into L2 during the pairs
    hib_chunk(q, k, lv, lam, a, gm, om, delta, Qs, Ks, LVs, Gs, Os, Lam, ac, pre, Ds, bh, g0, T, DK, DV, L, alo);
    for (int t = tid; t < CH; t += NT) {
        Ls[t] = (t >= t0 && t < t1) ? lden[bh * T + g0 + t] : (ta)0;
        ta x = (ta)0;  // a_{s+1} + ... + a_{chunk end}, summed over the stretch
        for (int u = t + 1; u < CH; ++u) x += ac[u];
        suf[t] = x;
    }
    __syncthreads();
    hib_pairs(sm, t0, t1, Pg + bh * T * CH, Dg + bh * T * CH, g0);
    hib_shifts(sm, t0, t1, DK, DV);  // hib_dq's (its exact rows in Fg)
    ta *mm = sm.mm, *nn = sm.nn, *R = sm.R, *Fl = sm.Fl;
    for (int t = tid; t < CH; t += NT) Fl[t] = (t >= t0 && t < t1) ? Fg[bh * T + g0 + t] : (ta)0;
    __syncthreads();
    // the chunk's pairs as products over the product rows t (Fl = 0): dk = B o (W^T A), dlv = E o (P^T G'),
    // with hib_fpairs' factors; the operands after the pairs' tiles (Tk .. Tb overlay them later)
    ta* const F2 = sm.XP + 3 * CH * HIB_XLD;
    auto wx = [&](int t, int s) { return hib_fex(R[t] + XP[t * HIB_XLD + s]) * DD[t * HIB_XLD + s]; };  // W_ts
    auto ay = [&](int t, int i) { return i < DK ? hib_fex(Qs[t * HIB_KLD + i] + mm[i] - R[t]) : (ta)0; };  // A_ti
    auto bk = [&](int s, int i, ta x) {  // B_si x
        return (i < DK && s >= t0 && s < t1) ? hib_fex(Ks[s * HIB_KLD + i] - mm[i]) * x : (ta)0;
    };
    auto px = [&](int t, int s) { return PP[t * HIB_XLD + s]; };  // P_ts
    auto gy = [&](int t, int jj) {  // G'_tj
        return jj < DV ? Gs[t * HIB_VLD + jj] * hib_fex(min(nn[jj] - Os[t * HIB_VLD + jj], HIB_LIM)) : (ta)0;
    };
    auto ev = [&](int s, int c2, ta x) {  // E_sj x
        return (c2 < DV && s >= t0 && s < t1) ? hib_fex(LVs[s * HIB_VLD + c2] - nn[c2]) * x : (ta)0;
    };
#if HIB_DKR
    // dk and dlv in registers from here to the end (see HIB_DKR): the pair products' tiles as hib_prod's (same tiles,
    // warps and epilogue values: bit-equal), kept in this warp's accumulator layout instead of stored to DKs / DVs
    constexpr int W8 = NT / 32, NKT = (CH / 16) * (DKP / 8), NVT = (CH / 16) * (DVP / 8);
    constexpr int PK = (NKT + W8 - 1) / W8, PV = (NVT + W8 - 1) / W8;
    const int warp = tid >> 5, g8 = (tid & 31) >> 2, t4 = tid & 3;
    float ak[PK][4], av[PV][4];  // tile p of this warp: x = warp + p W8 (hib_prod's order), element e at (rr, cc)
    auto rr = [&](int m0, int e) { return m0 + g8 + 8 * (e >> 1); };
    auto cc = [&](int n0, int e) { return n0 + 2 * t4 + (e & 1); };
    hib_pair_ops<DKP, HIB_TKL>(F2, wx, ay, t0, t1, Fl);  // dk_si = B_si sum_t W_ts A_ti
#pragma unroll
    for (int p = 0; p < PK; ++p) {
        const int x = warp + p * W8, m0 = (x / (DKP / 8)) * 16, n0 = (x % (DKP / 8)) * 8;
        float c[4] = {0.f, 0.f, 0.f, 0.f};
        if (x < NKT) hib_mma_tile<CH>(c, F2, HIB_TCL, F2 + CH * HIB_TCL, HIB_TKL, m0, n0);
#pragma unroll
        for (int e = 0; e < 4; ++e) ak[p][e] = x < NKT ? bk(rr(m0, e), cc(n0, e), c[e]) : 0.f;
    }
    __syncthreads();
    hib_pair_ops<DVP, HIB_TVL>(F2, px, gy, t0, t1, Fl);  // dlv_sj = E_sj sum_t P_ts G'_tj
#pragma unroll
    for (int p = 0; p < PV; ++p) {
        const int x = warp + p * W8, m0 = (x / (DVP / 8)) * 16, n0 = (x % (DVP / 8)) * 8;
        float c[4] = {0.f, 0.f, 0.f, 0.f};
        if (x < NVT) hib_mma_tile<CH>(c, F2, HIB_TCL, F2 + CH * HIB_TCL, HIB_TVL, m0, n0);
#pragma unroll
        for (int e = 0; e < 4; ++e) av[p][e] = x < NVT ? ev(rr(m0, e), cc(n0, e), c[e]) : 0.f;
    }
    __syncthreads();
    // (the exact rows below and the end of the kernel read and write them in shared memory)
    auto dk_st = [&]() {
#pragma unroll
        for (int p = 0; p < PK; ++p) {
            const int x = warp + p * W8, m0 = (x / (DKP / 8)) * 16, n0 = (x % (DKP / 8)) * 8;
#pragma unroll
            for (int e = 0; e < 4; ++e)
                if (x < NKT) DKs[rr(m0, e) * HIB_KLD + cc(n0, e)] = ak[p][e];
        }
#pragma unroll
        for (int p = 0; p < PV; ++p) {
            const int x = warp + p * W8, m0 = (x / (DVP / 8)) * 16, n0 = (x % (DVP / 8)) * 8;
#pragma unroll
            for (int e = 0; e < 4; ++e)
                if (x < NVT) DVs[rr(m0, e) * HIB_VLD + cc(n0, e)] = av[p][e];
        }
    };
#else
    hib_pair_product<DKP, HIB_TKL>(F2, wx, ay, [&](int s, int i, ta x) { DKs[s * HIB_KLD + i] = bk(s, i, x); }, t0, t1,
                                   Fl);  // dk_si = B_si sum_t W_ts A_ti
    hib_pair_product<DVP, HIB_TVL>(F2, px, gy, [&](int s, int c2, ta x) { DVs[s * HIB_VLD + c2] = ev(s, c2, x); }, t0, t1,
                                   Fl);  // dlv_sj = E_sj sum_t P_ts G'_tj
#endif
    bool any = false;  // (hib_pair_product ends with a barrier)
    for (int t = 0; t < CH; ++t) any |= Fl[t] != (ta)0;
    if (any) {  // the exact rows' pairs, per pair (PP, DD: P e^E, D e^-E of hib_pair_exact)
#if HIB_DKR
        dk_st();  // (the barrier after Ex orders these before the rows' reads)
#endif
        ta* const Ex = F2;  // E_ts (hib_pexp; XP += E)
        for (int idx = tid; idx < CH * CH; idx += NT) {
            const int t = idx / CH, s = idx % CH;
            if (s < t0 || s > t || t >= t1 || Fl[t] == (ta)0) continue;
            Ex[t * HIB_TCL + s] = hib_pexp(sm, t, s, DV);
            XP[t * HIB_XLD + s] += Ex[t * HIB_TCL + s];
        }
        __syncthreads();
        for (int idx = tid; idx < CH * DKP; idx += NT) {  // dk_si += P_i(t,s) D_ts
            const int s = idx / DKP, i = idx % DKP;
            if (i >= DK || s < t0) continue;
            ta x = DKs[s * HIB_KLD + i];
            for (int t = s; t < t1; ++t)
                if (Fl[t] != (ta)0)
                    x = fma(ex(Qs[t * HIB_KLD + i] + Ks[s * HIB_KLD + i] + XP[t * HIB_XLD + s]), DD[t * HIB_XLD + s], x);
            DKs[s * HIB_KLD + i] = x;
        }
        for (int idx = tid; idx < CH * DVP; idx += NT) {  // dlv_sj += (P_ts e^E) g_tj exp(lv_sj - o_tj - E)
            const int s = idx / DVP, jj = idx % DVP;
            if (jj >= DV || s < t0) continue;
            ta x = DVs[s * HIB_VLD + jj];
            for (int t = s; t < t1; ++t)
                if (Fl[t] != (ta)0)
                    x = fma(PP[t * HIB_XLD + s] * Gs[t * HIB_VLD + jj],
                            ex(LVs[s * HIB_VLD + jj] - Os[t * HIB_VLD + jj] - Ex[t * HIB_TCL + s]), x);
            DVs[s * HIB_VLD + jj] = x;
        }
    }
    ta gap = (ta)0;  // decay of the right blocks between c and the next one
    // each R: its operands stored, a barrier, the products, a barrier (the first R's stores after the pairs' reads of
    // the tiles these overlay); M_i and W_j read from global by the threads that use them (i = tid % DKP, j = tid % DVP)
    static_assert(NT % DKP == 0 && NT % DVP == 0, "hib_dkdv's B^T and V'^T columns per thread");
    __syncthreads();
    const int im = tid % DKP, jw = tid % DVP;
    for (int idx = tid; idx < CH * DVP; idx += NT) {  // E^T, the same for every R (jj = jw)
        const int s = idx / DVP, jj = idx % DVP;
        Vpt[jj * HIB_TCL + s] = (jj < DV && s >= t0 && s < t1) ? hib_fex(LVs[s * HIB_VLD + jj] - nn[jj]) : (ta)0;
    }
    const ta ecap = ex(HIB_CAP);
    // R's U copied by cp.async into one of HIB_UNB buffers (U [i][j], rows of HIB_SLD) over the pairs' tiles (with two,
    // the next R's in flight during this one's work); U'' formed in place (each thread its own elements: column jw),
    // then read as the k-major B of (B U'') and the n-major B of (E U''^T). Two barriers per R (three with one buffer):
    // U in and the previous R's products done; U'', B^T, Z stored.
    if (HIB_UNB == 2 && lq) hib_copy_tile(UB, U + block_of(lq) * DK * DV, DK, DV), cp_async_commit();
#if HIB_DKR
    if (any) {  // (after the barrier above: the exact rows' updates)
#pragma unroll
        for (int p = 0; p < PK; ++p) {
            const int x = warp + p * W8, m0 = (x / (DKP / 8)) * 16, n0 = (x % (DKP / 8)) * 8;
#pragma unroll
            for (int e = 0; e < 4; ++e) ak[p][e] = x < NKT ? DKs[rr(m0, e) * HIB_KLD + cc(n0, e)] : 0.f;
        }
#pragma unroll
        for (int p = 0; p < PV; ++p) {
            const int x = warp + p * W8, m0 = (x / (DVP / 8)) * 16, n0 = (x % (DVP / 8)) * 8;
#pragma unroll
            for (int e = 0; e < 4; ++e) av[p][e] = x < NVT ? DVs[rr(m0, e) * HIB_VLD + cc(n0, e)] : 0.f;
        }
    }
#endif
    for (int lp = lq, h = 0; lp; lp = lq, ++h) {
        const i64 o = block_of(lp);
        lq = next_lp(lp + 1);
        ta* const U_ = UB + (HIB_UNB == 2 ? h & 1 : 0) * DKP * HIB_SLD;
        if (HIB_UNB == 1) {
            __syncthreads();  // the previous R's products are done with the buffer
            hib_copy_tile(U_, U + o * DK * DV, DK, DV), cp_async_commit();
        }
        const ta mi = hib_ld(Mb, o * DK + im, im < DK, (ta)0), wj = hib_ld(Wb, o * DV + jw, jw < DV, (ta)0) + nn[jw];
        const ta fj = hib_excap(wj);  // e^(W_j + nn_j) of this thread's column
        cp_async_wait_all();
        __syncthreads();
        if (HIB_UNB == 2 && lq) hib_copy_tile(UB + ((h + 1) & 1) * DKP * HIB_SLD, U + block_of(lq) * DK * DV, DK, DV), cp_async_commit();
#pragma unroll
        for (int x = 0; x < DKP * DVP / NT; ++x) {  // U''_ij = U_ij e^(W_j + nn_j) (jj = jw)
            const int idx = tid + x * NT, at = (idx / DVP) * HIB_SLD + idx % DVP;
            U_[at] = hib_scale(U_[at], wj, fj, ecap);
        }
        for (int i = tid; i < DKP; i += NT) Zs[i] = i < DK ? Z[o * DK + i] : (ta)0;
        for (int idx = tid; idx < CH * DKP; idx += NT) {  // i = im
            const int s = idx / DKP, i = idx % DKP;
            Bt[i * HIB_TCL + s] = (i < DK && s >= t0 && s < t1) ? hib_fex(Ks[s * HIB_KLD + i] + suf[s] + gap + mi) : (ta)0;
        }
        __syncthreads();
#if HIB_DKR
#pragma unroll
        for (int p = 0; p < PK; ++p) {  // dk_si += B_si ((E U''^T)_si - Z_i)
            const int x = warp + p * W8, m0 = (x / (DKP / 8)) * 16, n0 = (x % (DKP / 8)) * 8;
            if (x >= NKT) continue;
            float c[4] = {0.f, 0.f, 0.f, 0.f};
            hib_mma_tile<DVP, true>(c, Vpt, HIB_TCL, U_, HIB_SLD, m0, n0);
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int s = rr(m0, e), i = cc(n0, e);
                ak[p][e] = fma(Bt[i * HIB_TCL + s], c[e] - Zs[i], ak[p][e]);
            }
        }
#pragma unroll
        for (int p = 0; p < PV; ++p) {  // dlv_sj += E_sj (B U'')_sj
            const int x = warp + p * W8, m0 = (x / (DVP / 8)) * 16, n0 = (x % (DVP / 8)) * 8;
            if (x >= NVT) continue;
            float c[4] = {0.f, 0.f, 0.f, 0.f};
            hib_mma_tile<DKP>(c, Bt, HIB_TCL, U_, HIB_SLD, m0, n0);
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int s = rr(m0, e), c2 = cc(n0, e);
                av[p][e] = fma(Vpt[c2 * HIB_TCL + s], c[e], av[p][e]);
            }
        }
#else
        hib_prod<CH, DKP, DVP, true>(Vpt, HIB_TCL, U_, HIB_SLD, [&](int s, int i, ta v) {  // dk_si += B_si ((E U''^T)_si - Z_i)
            DKs[s * HIB_KLD + i] = fma(Bt[i * HIB_TCL + s], v - Zs[i], DKs[s * HIB_KLD + i]);
        });
        hib_prod<CH, DVP, DKP>(Bt, HIB_TCL, U_, HIB_SLD, [&](int s, int c2, ta v) {  // dlv_sj += E_sj (B U'')_sj
            DVs[s * HIB_VLD + c2] = fma(Vpt[c2 * HIB_TCL + s], v, DVs[s * HIB_VLD + c2]);
        });
#endif
        gap += gt[o];
    }
#if HIB_DKR
    dk_st();  // (each element this thread's alone: before the barrier that the stores below read after)
#endif
    __syncthreads();
    for (int idx = tid; idx < CH * DKP; idx += NT) {
        const int s = idx / DKP, i = idx % DKP;
        if (i < DK && s >= t0 && s < t1) st(dk + (bh * T + g0 + s) * DK + i, DKs[s * HIB_KLD + i]);
    }
    for (int idx = tid; idx < CH * DVP; idx += NT) {
        const int s = idx / DVP, jj = idx % DVP;
        if (jj < DV && s >= t0 && s < t1) st(dlv + (bh * T + g0 + s) * DV + jj, DVs[s * HIB_VLD + jj]);
    }
    if (dsum) hib_rowsum(DKs, HIB_KLD, DK, dsum + bh * T + g0, t0, t1, true);
}
''',
}
