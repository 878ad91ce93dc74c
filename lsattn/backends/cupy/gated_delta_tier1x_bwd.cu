// K3 of the two-tier scan's backward (benchmarks/NOTES.md "Session 24 — s24c"; session 25, s25b): gd_tier1x_bwd
// (3xTF32, float32 callers) and gd_tier1x_bwd_x1 (1xTF32, bfloat16 callers), one body gx_body<X1>; the backward of
// gated_delta_tier.cu's gd_tier1x (the transfers). Compiled after gated_delta.cu, gated_delta_tier.cu (GD_TP, GdWarpTiles,
// gd_copy, gd_e / gd_wid) and gated_delta_bwd.cu (gdb_fa, gdb_fb, gdb_mma: the fragments of element functions). The
// float64 twin: tests/gd_tier_twin.py's tier1x_bwd.
//
// Forward (per period pp of GD_TP = 4 chunks c = 4 pp + i, i < nc = min(4, n - 4 pp)): X_0 = I,
// X_{i+1} = P_c X_i = e^{g_c} X_i - ph_c (ek_c X_i), Qp_c = qe_c X_i, Z_pp = X_4 (Z and dZ [kk][col] row-major, as
// gd_tier1x stores Z and the twin's X: no transpose between them).
// Backward, from dX = dZ_pp (zero for an incomplete period: the call's last, whose Z nothing reads), i = nc - 1 .. 0:
//   dqe_c += dQp_c X_i^T            (i = 0: dQp_c itself, the rows gd_tier3 read from qe)
//   W = ek_c X_i,  dW = -ph_c^T dX   (C x columns; i = 0: W = ek_c's columns)
//   dek_c += dW X_i^T,  dph_c -= dX W^T,  dg_c += e^{g_c} <dX, X_i>
//   dX <- e^{g_c} dX + ek_c^T dW + qe_c^T dQp_c   (not at i = 0: X_0 = I is no input)
// Every column of X evolves on its own, so one block per (period pp (slowest), sequence bh, GX_BW of X's d_k
// columns): grid nP BH ceil(DK / GX_BW); the sums over X's columns (dqe, dek, dph, dg) are the block's shares,
// atomically added (float2 where two columns are adjacent) into zeroed outputs that gd_tier1_bwd (K4) adds into too.
// st (s29a, the host's TIER_BWD_STORES where d_k <= GX_BW: one column block): dqe, dek, dph stored, not added: the block
// writes every element of its period's chunks once (every row t < CH, padding rows included: nothing masks T here; every
// column kk < DK), and K4, launched after this kernel on the same stream, adds to them; so the host need not zero them.
// dg stays added (the warps' shares).
// Per period: the recompute (i = 1 .. nc - 1: W = ek X_{i-1}, X_i = e^g X_{i-1} - ph W; 2 products, 1 at i = 1) and per
// chunk 7 products (W, dW; dqe's, dek's, dph's; dX's two), at i = 0 2 (dW, dph's): 28 at nc = 4.
// Threads: NT = 256 (8 warps); every product a M x N one in 16 x 8 tiles dealt over the warps (GdWarpTiles), mma.sync
// m16n8k8 tf32, operands split (3xTF32) or rounded (1xTF32) at the fragment loads (gdb_fa / gdb_fb).
// Shared (Config.smem("gd_tier1x_bwd")): GX_NB sets (below) of the chunk's tiles qe, ek [t][kk] (row stride DKP + 8)
// and ph [kk][t] (CH + 8) as stored (gd_e: GD_S16's bfloat16, widened at the fragment loads; copied by cp.async) and of
// dQp_c [t][col]; X_1 .. X_3 and dX [kk][col], W, dW [t][col] (float32, row stride GX_BW + 8: the fragment loads of
// either orientation on 32 banks).
// X_1 .. X_3 in shared memory, not in L2-resident scratch: the interface has no scratch and a scratch's round trip
// would sit on every step's chain, while shared memory holds them beside the rest: at DKP = CH = 64 the tiles and the
// step's buffers alone (~125 KB with float32 tiles; GD_S16's ~101 KB, ~119 KB with X_i's copy staged from a scratch)
// pass the 113 KB of two blocks, so one block (8 warps) per SM either way (float32 tiles: 180 KB; GD_S16 with two
// sets: 198 KB). Two blocks per SM: 32 columns a block (GX_BW_SET=32 with one set, 99 KB; a timing build).
// DKP = 128: 32 columns a block (214 KB with float32 tiles, 224 KB with GD_S16's two sets).
static_assert(GD_TC, "gd_tier1x_bwd: float32 compute (float64 callers keep gd_scan_bwd)");
#ifdef GX_BW_SET  // a timing build may set it (32 at DKP = 64 with GX_DB_SET=0: 99 KB, two blocks per SM)
constexpr int GX_BW = GX_BW_SET;
#else
constexpr int GX_BW = DKP <= 64 ? DKP : 32;  // X's columns per block (_compile.Config.tier1x_bwd_bw)
#endif
constexpr int GX_LQ = DKP + 8, GX_LP = CH + 8, GX_LX = GX_BW + 8;  // row strides (elements)
constexpr int GX_TILES = (2 * CH * GX_LQ + DKP * GX_LP) * (int)sizeof(gd_e);  // bytes (a multiple of 16)
constexpr int GX_DQ = CH * GX_LX * (int)sizeof(ta);  // dQp_c's tile (bytes)
// GX_DB_SET: two sets of the chunk's tiles and dQp's where they fit (GD_S16 at DKP = CH = 64: 202 KB; float32 tiles
// do not: one set), the next step's copies issued at the top of this one (their latency under its products; one set:
// issued and waited for at each step's top); 0: one set (a timing build)
#ifndef GX_DB_SET
#define GX_DB_SET 1
#endif
constexpr int GX_REST = (4 * DKP + 2 * CH) * GX_LX * (int)sizeof(ta);  // X_1 .. X_3, dX, W, dW
constexpr int GX_NB = GX_DB_SET && 2 * (GX_TILES + GX_DQ) + GX_REST <= 227 * 1024 ? 2 : 1;
constexpr int GX_SMEM = GX_NB * (GX_TILES + GX_DQ) + GX_REST;
// 1xTF32: the operands that are exact tf32 values are loaded without a cvt (the same bits reach the tensor cores):
// GD_S16's tiles (a bfloat16 value widened) and W, dW, stored as their tf32 roundings where they are operands only
// (dW at i = 0 is added as it is: stored unrounded)
constexpr bool GX_TR = GD_H16;

// acc[i] += A(r0 + r, k) B(k, n0 + 8 i + n) over k < K (a multiple of 8), the warp's NTL tiles; a(r, k), b(k, n) floats
// (1xTF32: RA, RB false where A, B are tf32 values already: GX_TR's tiles, W and dW as stored)
template <bool X1, int NTL, int K, bool RA = true, bool RB = true, typename FA, typename FB>
__device__ __forceinline__ void gx_mm(float (&acc)[NTL][4], int r0, int n0, FA a, FB b) {
#pragma unroll
    for (int k0 = 0; k0 < K; k0 += 8) {
        unsigned ah[4], al[4];
        gdb_fa<X1, RA>([&](int r, int k) { return a(r0 + r, k0 + k); }, ah, al);
#pragma unroll
        for (int i = 0; i < NTL; ++i) {
            unsigned bh_[2], bl[2];
            gdb_fb<X1, RB>([&](int k, int n) { return b(k0 + k, n0 + 8 * i + n); }, bh_, bl);
            gdb_mma<X1>(acc[i], ah, al, bh_, bl);
        }
    }
}

#define GX_PARAMS                                                                                                      \
    const gd_e* __restrict__ qe, /* (BH, n, CH, DK) qeff (gd_e: bfloat16 in a GD_S16 build) */                         \
    const gd_e* __restrict__ ek, /* (BH, n, CH, DK) e^G K */                                                           \
    const gd_e* __restrict__ ph, /* (BH, n, DK, CH) phi */                                                             \
    const ta* __restrict__ gc,   /* (BH, n)         chunk total log decay */                                          \
    const ta* __restrict__ dQp,  /* (BH, n, CH, DK) Qp's gradient (K1: every chunk's rows) */                         \
    const ta* __restrict__ dZ,   /* (BH, nP, DK, DK) Z's gradient (K2) */                                             \
    ta* __restrict__ dqe,        /* (BH, n, CH, DK) in: zeros (st: anything); out: + this kernel's (st: its) */       \
    ta* __restrict__ dek,        /* (BH, n, CH, DK) likewise */                                                        \
    ta* __restrict__ dph,        /* (BH, n, DK, CH) likewise */                                                        \
    ta* __restrict__ dg,         /* (BH, n)         in: zeros; out: + this kernel's (st or not) */                    \
    int T, int DK, int n, int nP, int BH,                                                                              \
    int st /* 1: dqe, dek, dph stored (in: anything; one column block), 0: added */
#define GX_ARGS qe, ek, ph, gc, dQp, dZ, dqe, dek, dph, dg, T, DK, n, nP, BH, st

template <bool X1>
__device__ __forceinline__ void gx_body(GX_PARAMS) {
    (void)T;  // (the chunks' padding rows: zero queries and keys, their dQp zero; nothing to mask here)
    extern __shared__ __align__(16) unsigned char smem_raw[];
    // GX_NB sets of the chunk's tiles (Qe, Ek [t][kk]; Ph [kk][t]) and of dQp_c [t][col], then the float32 buffers
    ta* Xs = reinterpret_cast<ta*>(smem_raw + GX_NB * (GX_TILES + GX_DQ));  // X_1 .. X_3 [kk][col]
    ta* dX = Xs + 3 * DKP * GX_LX;                                          // [kk][col]
    ta* Ws = dX + DKP * GX_LX;                                              // W [t][col]
    ta* dWs = Ws + CH * GX_LX;                                              // dW [t][col]
    check_smem(GX_SMEM);
    const int NCK = (DK + GX_BW - 1) / GX_BW;
    const bool sto = st && NCK == 1;  // (block-uniform) the only writer of the period's dqe, dek, dph before K4
    const int pp = (int)(blockIdx.x / ((i64)BH * NCK));
    const i64 bh = blockIdx.x / NCK % BH;
    const int c0 = (int)(blockIdx.x % NCK) * GX_BW, tid = threadIdx.x;
    const int lo = pp * GD_TP, nc = min(n, lo + GD_TP) - lo;
    const bool vec = DK % (16 / (int)sizeof(gd_e)) == 0, vq = DK % 4 == 0;  // (16-byte copies of gd_e / float rows)
    // the block's steps s = 0 .. 2 nc - 2: the recompute's (chunks i = s < nc - 1: ek, ph), then the reverse walk's
    // (i = 2 nc - 2 - s: qe, ek, ph, dQp); step s's copies into set s % GX_NB, issued and committed
    const gd_e *Qe, *Ek, *Ph;
    const ta* dQ;
    auto set = [&](int s) {
        unsigned char* b = smem_raw + s % GX_NB * (GX_TILES + GX_DQ);
        Qe = reinterpret_cast<gd_e*>(b), Ek = Qe + CH * GX_LQ, Ph = Ek + CH * GX_LQ;
        dQ = reinterpret_cast<ta*>(b + GX_TILES);
    };
    auto issue = [&](int s) {
        set(s);
        const bool rev = s >= nc - 1;
        const i64 cj = bh * n + lo + (rev ? 2 * nc - 2 - s : s);
        if (rev) gd_copy<CH, DKP>(const_cast<gd_e*>(Qe), GX_LQ, qe + cj * CH * DK, DK, CH, DK, vec);
        gd_copy<CH, DKP>(const_cast<gd_e*>(Ek), GX_LQ, ek + cj * CH * DK, DK, CH, DK, vec);
        gd_copy<DKP, CH>(const_cast<gd_e*>(Ph), GX_LP, ph + cj * DK * CH, CH, DK, CH, vec);
        if (rev) gd_copy<CH, GX_BW>(const_cast<ta*>(dQ), GX_LX, dQp + cj * CH * DK + c0, DK, CH, DK - c0, vq);
        cp_async_commit();
    };
    // step s's copies waited for and visible (GX_NB = 2: then step s + 1's issued into the other set, whose readers,
    // step s - 1's, all passed a barrier since); its set's pointers
    auto begin = [&](int s) {
        if (GX_NB == 1) issue(s);
        cp_async_wait<0>();
        __syncthreads();
        if (GX_NB == 2 && s + 1 < 2 * nc - 1) issue(s + 1);
        set(s);
    };
    if (nc == GD_TP)  // dX = dZ_pp (dX is not used before the reverse walk; committed with step 0's copies)
        gd_copy<DKP, GX_BW>(dX, GX_LX, dZ + (bh * nP + pp) * DK * DK + c0, DK, DK, DK - c0, vq);
    else
        for (int idx = tid; idx < DKP * GX_BW; idx += NT) dX[idx / GX_BW * GX_LX + idx % GX_BW] = 0.f;
    if (GX_NB == 2) issue(0);
    else cp_async_commit();
    // X_i's element (kk, j) (X_0 = I's columns c0 ..; rows and columns past DK zero)
    auto xat = [&](int i, int kk, int j) -> float {
        return i ? Xs[(i - 1) * DKP * GX_LX + kk * GX_LX + j] : (kk == c0 + j && kk < DK ? 1.f : 0.f);
    };
    auto tq = [](const gd_e* s, int idx) { return (float)gd_wid(s[idx]); };
    auto wr = [](float x) { return X1 ? gdb_round(x) : x; };  // a store of W, dW (1xTF32: rounded once)
    const GdWarpTiles<CH / 16, GX_BW> wc;   // C x GX_BW: W, dW
    const GdWarpTiles<DKP / 16, GX_BW> wk;  // DKP x GX_BW: X's recompute, dX
    const GdWarpTiles<CH / 16, DKP> wo;     // C x DKP: dqe's, dek's
    const GdWarpTiles<DKP / 16, CH> wp;     // DKP x C: dph's
    constexpr int NC_ = GdWarpTiles<CH / 16, GX_BW>::NTL, NK = GdWarpTiles<DKP / 16, GX_BW>::NTL;
    constexpr int NO = GdWarpTiles<CH / 16, DKP>::NTL, NP_ = GdWarpTiles<DKP / 16, CH>::NTL;

    // ---- the recompute: X_1 .. X_{nc-1} ----
    for (int i = 0; i + 1 < nc; ++i) {
        const i64 cj = bh * n + lo + i;
        const float eg = ex(gc[cj]);
        begin(i);
        const ta* Xi = Xs + (i > 0 ? i - 1 : 0) * DKP * GX_LX;
        if (i > 0) {  // W = ek X_i (X_0: ek's columns, read in place)
            float acc[NC_][4] = {};
            if (wc.on)
                gx_mm<X1, NC_, DKP, !GX_TR>(acc, wc.r0, wc.n0, [&](int t, int k) { return tq(Ek, t * GX_LQ + k); },
                                            [&](int k, int j) { return Xi[k * GX_LX + j]; });
#pragma unroll
            for (int it = 0; it < NC_; ++it)
#pragma unroll
                for (int x = 0; x < 4; ++x)
                    if (wc.on) Ws[wc.row(x) * GX_LX + wc.col(it, x)] = wr(acc[it][x]);
            __syncthreads();
        }
        float acc[NK][4] = {};  // X_{i+1} = e^g X_i - ph W
        if (wk.on) {
            if (i > 0)
                gx_mm<X1, NK, CH, !GX_TR, false>(acc, wk.r0, wk.n0, [&](int kk, int t) { return tq(Ph, kk * GX_LP + t); },
                                                 [&](int t, int j) { return Ws[t * GX_LX + j]; });
            else
                gx_mm<X1, NK, CH, !GX_TR, !GX_TR>(acc, wk.r0, wk.n0, [&](int kk, int t) { return tq(Ph, kk * GX_LP + t); },
                                                  [&](int t, int j) { return tq(Ek, t * GX_LQ + c0 + j); });
#pragma unroll
            for (int it = 0; it < NK; ++it)
#pragma unroll
                for (int x = 0; x < 4; ++x) {
                    const int kk = wk.row(x), j = wk.col(it, x);
                    Xs[i * DKP * GX_LX + kk * GX_LX + j] = eg * xat(i, kk, j) - acc[it][x];
                }
        }
        __syncthreads();  // X_{i+1} read by the next step; this step's set rewritten by step i + 2's copies
    }

    // ---- the reverse walk ----
    for (int i = nc - 1; i >= 0; --i) {
        const i64 cj = bh * n + lo + i;
        const float eg = ex(gc[cj]);
        const ta* Xi = Xs + (i > 0 ? i - 1 : 0) * DKP * GX_LX;  // (i > 0)
        begin(2 * nc - 2 - i);
        // W = ek X_i (i > 0), dW = -ph^T dX
        if (wc.on) {
            float aw[NC_][4] = {}, ad[NC_][4] = {};
            if (i > 0)
                gx_mm<X1, NC_, DKP, !GX_TR>(aw, wc.r0, wc.n0, [&](int t, int k) { return tq(Ek, t * GX_LQ + k); },
                                            [&](int k, int j) { return Xi[k * GX_LX + j]; });
            gx_mm<X1, NC_, DKP, !GX_TR>(ad, wc.r0, wc.n0, [&](int t, int k) { return tq(Ph, k * GX_LP + t); },
                                        [&](int k, int j) { return dX[k * GX_LX + j]; });
#pragma unroll
            for (int it = 0; it < NC_; ++it)
#pragma unroll
                for (int x = 0; x < 4; ++x) {
                    const int t = wc.row(x), j = wc.col(it, x);
                    if (i > 0) Ws[t * GX_LX + j] = wr(aw[it][x]), dWs[t * GX_LX + j] = wr(-ad[it][x]);
                    else dWs[t * GX_LX + j] = -ad[it][x];
                }
        }
        __syncthreads();
        // dqe += dQp X_i^T, dek += dW X_i^T (C x DKP, K = the block's columns; i = 0: added as they are, below)
        if (i > 0 && wo.on) {
            float aq[NO][4] = {}, ae[NO][4] = {};
#pragma unroll
            for (int k0 = 0; k0 < GX_BW; k0 += 8) {
                unsigned qh[4], ql[4], eh[4], el[4];
                gdb_fa<X1>([&](int r, int k) { return dQ[(wo.r0 + r) * GX_LX + k0 + k]; }, qh, ql);
                gdb_fa<X1, false>([&](int r, int k) { return dWs[(wo.r0 + r) * GX_LX + k0 + k]; }, eh, el);
#pragma unroll
                for (int it = 0; it < NO; ++it) {
                    unsigned bh_[2], bl[2];
                    gdb_fb<X1>([&](int k, int kk) { return Xi[(wo.n0 + 8 * it + kk) * GX_LX + k0 + k]; }, bh_, bl);
                    gdb_mma<X1>(aq[it], qh, ql, bh_, bl);
                    gdb_mma<X1>(ae[it], eh, el, bh_, bl);
                }
            }
#pragma unroll
            for (int it = 0; it < NO; ++it)
#pragma unroll
                for (int x = 0; x < 4; x += 2) {  // (columns kk, kk + 1: one float2 add where DK is even)
                    const int t = wo.row(x), kk = wo.col(it, x);
                    if (kk >= DK) continue;
                    const i64 o = (cj * CH + t) * DK + kk;
                    if (sto && DK % 2 == 0) {
                        *reinterpret_cast<float2*>(dqe + o) = float2{aq[it][x], aq[it][x + 1]};
                        *reinterpret_cast<float2*>(dek + o) = float2{ae[it][x], ae[it][x + 1]};
                    } else if (sto) {
                        dqe[o] = aq[it][x], dek[o] = ae[it][x];
                        if (kk + 1 < DK) dqe[o + 1] = aq[it][x + 1], dek[o + 1] = ae[it][x + 1];
                    } else if (DK % 2 == 0) {
                        atomicAdd(reinterpret_cast<float2*>(dqe + o), float2{aq[it][x], aq[it][x + 1]});
                        atomicAdd(reinterpret_cast<float2*>(dek + o), float2{ae[it][x], ae[it][x + 1]});
                    } else {
                        atomicAdd(dqe + o, aq[it][x]), atomicAdd(dek + o, ae[it][x]);
                        if (kk + 1 < DK) atomicAdd(dqe + o + 1, aq[it][x + 1]), atomicAdd(dek + o + 1, ae[it][x + 1]);
                    }
                }
        }
        if (i == 0)  // X_0 = I: dqe, dek's columns c0 .. take dQp's, dW's
            for (int idx = tid; idx < CH * GX_BW; idx += NT) {
                const int t = idx / GX_BW, j = idx % GX_BW;
                if (c0 + j >= DK) continue;
                const i64 o = (cj * CH + t) * DK + c0 + j;
                if (sto) dqe[o] = dQ[t * GX_LX + j], dek[o] = dWs[t * GX_LX + j];
                else atomicAdd(dqe + o, dQ[t * GX_LX + j]), atomicAdd(dek + o, dWs[t * GX_LX + j]);
            }
        // dph -= dX W^T (DKP x C, K = the block's columns)
        if (wp.on) {
            float ap[NP_][4] = {};
            if (i > 0)
                gx_mm<X1, NP_, GX_BW, true, false>(ap, wp.r0, wp.n0, [&](int kk, int j) { return dX[kk * GX_LX + j]; },
                                                   [&](int j, int t) { return Ws[t * GX_LX + j]; });
            else
                gx_mm<X1, NP_, GX_BW, true, !GX_TR>(ap, wp.r0, wp.n0, [&](int kk, int j) { return dX[kk * GX_LX + j]; },
                                                    [&](int j, int t) { return tq(Ek, t * GX_LQ + c0 + j); });
#pragma unroll
            for (int it = 0; it < NP_; ++it)
#pragma unroll
                for (int x = 0; x < 4; x += 2) {  // (rows t, t + 1 of dph's row kk: CH is even)
                    const int kk = wp.row(x), t = wp.col(it, x);
                    if (kk >= DK) continue;
                    float* o = dph + (cj * DK + kk) * CH + t;
                    if (sto) *reinterpret_cast<float2*>(o) = float2{-ap[it][x], -ap[it][x + 1]};
                    else atomicAdd(reinterpret_cast<float2*>(o), float2{-ap[it][x], -ap[it][x + 1]});
                }
        }
        // dX' = e^g dX + ek^T dW + qe^T dQp (DKP x GX_BW, K = CH; not at i = 0) and dg's share, e^g <dX, X_i>
        float ax[NK][4] = {};
        float dga = 0.f;
        if (wk.on) {
            if (i > 0) {
#pragma unroll
                for (int k0 = 0; k0 < CH; k0 += 8) {
                    unsigned eh[4], el[4], qh[4], ql[4];
                    gdb_fa<X1, !GX_TR>([&](int r, int k) { return tq(Ek, (k0 + k) * GX_LQ + wk.r0 + r); }, eh, el);
                    gdb_fa<X1, !GX_TR>([&](int r, int k) { return tq(Qe, (k0 + k) * GX_LQ + wk.r0 + r); }, qh, ql);
#pragma unroll
                    for (int it = 0; it < NK; ++it) {
                        unsigned wh[2], wl[2], dh[2], dl[2];
                        const int n0 = wk.n0 + 8 * it;
                        gdb_fb<X1, false>([&](int k, int j) { return dWs[(k0 + k) * GX_LX + n0 + j]; }, wh, wl);
                        gdb_fb<X1>([&](int k, int j) { return dQ[(k0 + k) * GX_LX + n0 + j]; }, dh, dl);
                        gdb_mma<X1>(ax[it], eh, el, wh, wl);
                        gdb_mma<X1>(ax[it], qh, ql, dh, dl);
                    }
                }
            }
#pragma unroll
            for (int it = 0; it < NK; ++it)
#pragma unroll
                for (int x = 0; x < 4; ++x) {
                    const int kk = wk.row(x), j = wk.col(it, x);
                    dga += dX[kk * GX_LX + j] * xat(i, kk, j);
                }
        }
#pragma unroll
        for (int off = 16; off > 0; off /= 2) dga += __shfl_xor_sync(0xffffffffu, dga, off, 32);
        if (tid % 32 == 0 && dga != 0.f) atomicAdd(dg + cj, eg * dga);
        __syncthreads();  // every read of dX, the tiles, dQp, W and dW done (the next step's copies may overwrite them)
        if (i > 0 && wk.on)
#pragma unroll
            for (int it = 0; it < NK; ++it)
#pragma unroll
                for (int x = 0; x < 4; ++x) {
                    float* e = dX + wk.row(x) * GX_LX + wk.col(it, x);
                    *e = eg * *e + ax[it][x];
                }
        // (dX' is read after the next step's barrier)
    }
}

extern "C" __global__ void __launch_bounds__(NT) gd_tier1x_bwd(GX_PARAMS) { gx_body<false>(GX_ARGS); }
extern "C" __global__ void __launch_bounds__(NT) gd_tier1x_bwd_x1(GX_PARAMS) { gx_body<true>(GX_ARGS); }
