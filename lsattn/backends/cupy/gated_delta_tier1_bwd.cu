// K4 of the two-tier scan's backward (benchmarks/NOTES.md "Session 24 — s24c", written in session 25: s25c):
// gd_tier1_bwd (3xTF32, float32 callers) and gd_tier1_bwd_x1 (1xTF32, bfloat16 callers), gd_tier1's backward (the low
// walks, gated_delta_tier.cu). Compiled after common.cu, gated_delta.cu (gd_copy, gd_e / gd_wid, GdWarpTiles),
// gated_delta_tier.cu (GD_TM, GD_TP, GD_LDQE, GD_LDPE) and gated_delta_bwd.cu (gdb_fa, gdb_fb, gdb_mma); host:
// _compile.CupyOps.gd_tier1_bwd; oracle: tests/gd_tier_twin.py's tier1_bwd.
//
// The forward per period pp (chunks c = 4 pp + i, i < nc = min(4, n - 4 pp); P_c S = e^{g_c} S - ph_c (ek_c S)):
// low slots m = 1, 2 held before chunk i where bit m - 1 of i is set, read at lam column log2 CH + m; after chunk i
// (but the call's last) the merge z = tz(i + 1): the slots m <= z (carried by P_c) and H_c into slot z + 1, at i = 3
// into the period's keys Tot_pp. So the slots before each chunk: i = 1 {1: H_0}, i = 2 {2: A = P_1 H_0 + H_1},
// i = 3 {1: H_2, 2: B = P_2 A} (H_i = H_{4pp+i}).
// The backward, one block per (period pp, sequence, GT4_BW value columns: every column evolves on its own):
//   A and B recomputed (4 products; as gd_tier1's walk), D = dTot_pp (zero in the call's last period, whose Tot is no
//   output; and where the period is incomplete: its last chunk's merge is then unread), dH_{nc-1} = D; then for
//   i = nc - 1 .. 1, per held slot m with S its state before chunk c and dS' = D its adjoint after the chunk (both
//   slots' at i = 3: both merge into Tot):
//     U_m = dout S_m^T (CH x d_k), dlam[t, log2 CH + m] += rowdot(qe_t, U_m,t), dqe += lam_m U_m;
//     W = ek S, dW = -ph^T dS', dek += dW S^T, dph -= dS' W^T, dg += e^g <dS', S>    (S = S1 + S2 at i = 3: once)
//     dS_m = e^g dS' + ek^T dW + qe^T (lam_m dout);
//   the merges' reverse: i = 3: dH_2 = dS_1, D = dS_2; i = 2: dH_1 = D = dS_2; i = 1: dH_0 = dS_1.
//   27 products a complete period (4 + 9 + 7 + 7), all 16 x 8 tiles of mma.sync m16n8k8 tf32 dealt over the 8 warps
//   (GdWarpTiles), operands from shared memory by gated_delta_bwd.cu's fragment helpers (3xTF32 split or 1xTF32
//   rounded at the loads; GD_S16's bfloat16 tiles widened there).
// Writes dH (BH, n, DK, DV) whole (every chunk's columns of the block: plain stores); adds (atomicAdd, into zeroed
// outputs that K3, gd_tier1x_bwd, adds to as well, or dqe, dek, dph as K3 stored them: its st, launched before) dqe, dek
// (BH, n, CH, DK), dph (BH, n, DK, CH), dg (BH, n) and dlam's columns log2 CH + 1, + 2 (BH, T, L); rows t >= T read
// nothing (their weights and dout zero).
// Shared (Config.smem("gd_tier1_bwd")): the chunk's tiles qe, ek [t][kk], ph [kk][t] (gd_e, gd_tier1's padded
// layout), the slots A, B, an H tile and D [kk][col] (row stride GT4_BW + 8), W, dW, dout [t][col] (GT4_BW + 4), the two
// slots' read weights [2][CH] (Config.smem): at CH = d_k = 64 GD_S16's 94.5 KB at 32 columns (two blocks per SM),
// float32's 174.5 KB at 64 (one).
static_assert(GD_TM == 2, "gd_tier1_bwd: the production low period (2 slots, 4 chunks)");
constexpr int GT4_TB = (2 * CH * GD_LDQE + DKP * GD_LDPE) * (int)sizeof(gd_e);  // the chunk tiles' bytes
constexpr int gt4_smem(int bw) { return GT4_TB + (4 * DKP * (bw + 8) + 3 * CH * (bw + 4) + 2 * CH) * 4; }
// value columns per block (Config.tier1_bwd_bw): 64, or 32 where only 32 let 2 blocks share an SM (GD_S16 at DKP = 64:
// 94.5 KB, 64's 150.5 KB; H200, B H = 32, d = C = 64: 0.81-0.84x the time of 64 at 8K-32K, s25c) or 64 do not fit
// (DKP = 128); a timing build may set it (the host's grid then from CupyOps.gd_tier1_bwd's bw)
constexpr int GT4_SMAX = 227 * 1024;
#ifdef GT4_BW_SET
constexpr int GT4_BW = GT4_BW_SET;
#else
constexpr int GT4_BW = gt4_smem(64) > GT4_SMAX || (2 * gt4_smem(64) > GT4_SMAX && 2 * gt4_smem(32) <= GT4_SMAX) ? 32 : 64;
#endif
constexpr int GT4_LS = GT4_BW + 8, GT4_LW = GT4_BW + 4;  // row strides: [kk][col], [t][col]
constexpr int GT4_SMEM = gt4_smem(GT4_BW);
constexpr int GT4_MINB = 2 * GT4_SMEM <= GT4_SMAX ? 2 : 1;  // blocks per SM the registers must allow
// GT4_PR_SET (1xTF32): operands that are tf32 values already loaded without a cvt (the same bits): GD_H16's chunk tiles
// (bfloat16 values) and W, dW (operands only: stored as their tf32 roundings); 0: every operand rounded at its
// fragment loads (the tests' bit-equal reference build)
#ifndef GT4_PR_SET
#define GT4_PR_SET 1
#endif
constexpr bool GT4_RN = !(GD_H16 && GT4_PR_SET);
// GT4_F2_SET: dqe, dek added as float2 pairs of adjacent d_k columns, dph's product taken as DKP x CH ([kk][t], its
// pairs adjacent tokens) and added as float2 (half the atomic instructions and L2 sector operations: at 32 columns,
// 3 x 12288 scalar adds a block and step otherwise); 0: every add scalar, dph's product [t][kk] (session 25's form, an A/B)
#ifndef GT4_F2_SET
#define GT4_F2_SET 1
#endif

// GT4_KU_SET (GD_S16 builds): every product's reduction over its whole padded extent KC (DKP, the block's columns or CH: the rows and
// columns past d_k, d_v are zero in every operand), a constant: the k loop unrolled whole (no remainder branches; the
// next k-steps' fragment loads scheduled under the current mma); 0: over K (d_k or the block's valid columns rounded up
// to 8) at run time (session 25's form, an A/B)
#ifndef GT4_KU_SET
#define GT4_KU_SET 1
#endif
constexpr bool GT4_KU = GT4_KU_SET && GD_H16;  // (GD_S16; its 1xTF32 build alone, below: 128 registers, 4 B spilled; the 3xTF32 one would spill ~0.4 KB)
// c[i] += A[r0 .. r0 + 15][0 .. K) B[0 .. K)[n0 + 8 i .. + 7] (i < NTL) for element functions a(row, k), b(k, col)
// (K: KC where GT4_KU_SET; RA, RB: 1xTF32's A / B operand needs the rounding; false: it is a tf32 value already)
template <bool X1, int NTL, int KC, bool RA = true, bool RB = true, typename FA, typename FB>
__device__ __forceinline__ void gt4_mm(float (&c)[NTL][4], FA a, FB b, int r0, int n0, int K) {
    auto kstep = [&](int k0) {
        unsigned ah[4], al[4];
        gdb_fa<X1, RA>([&](int r, int k) { return a(r0 + r, k0 + k); }, ah, al);
#pragma unroll
        for (int i = 0; i < NTL; ++i) {
            unsigned bh[2], bl[2];
            gdb_fb<X1, RB>([&](int k, int m) { return b(k0 + k, n0 + 8 * i + m); }, bh, bl);
            gdb_mma<X1>(c[i], ah, al, bh, bl);
        }
    };
    if constexpr (GT4_KU && X1) {
#pragma unroll
        for (int k0 = 0; k0 < KC; k0 += 8) kstep(k0);
    } else
        for (int k0 = 0; k0 < K; k0 += 8) kstep(k0);
}

// p[0] += a (column j < n), p[1] += b (j + 1 < n): one float2 add where both are in and f2 (p 8-byte aligned: j, the
// row length even), else scalar adds (GT4_F2_SET=0: always)
__device__ __forceinline__ void gt4_add2(float* p, float a, float b, int j, int n, bool f2) {
    if (GT4_F2_SET && f2 && j + 1 < n) atomicAdd(reinterpret_cast<float2*>(p), float2{a, b});
    else {
        if (j < n) atomicAdd(p, a);
        if (j + 1 < n) atomicAdd(p + 1, b);
    }
}

template <bool X1, bool TC = GD_TC>
__device__ __forceinline__ void gt4_body(const gd_e* __restrict__ qe, const gd_e* __restrict__ ek,
                                         const gd_e* __restrict__ ph, const gd_e* __restrict__ Hc,
                                         const ta* __restrict__ gc, const ta* __restrict__ lam,
                                         const gd_do* __restrict__ dout, const ta* __restrict__ dTot, ta* __restrict__ dqe,
                                         ta* __restrict__ dek, ta* __restrict__ dph, ta* __restrict__ dH,
                                         ta* __restrict__ dg, ta* __restrict__ dlam, int T, int DK, int DV, int L, int n,
                                         int nP, int BH) {
    if constexpr (TC) {
        extern __shared__ __align__(16) unsigned char smem_raw[];
        gd_e* Qe = reinterpret_cast<gd_e*>(smem_raw);
        gd_e* Ek = Qe + CH * GD_LDQE;
        gd_e* Ph = Ek + CH * GD_LDQE;
        float* SA = reinterpret_cast<float*>(smem_raw + GT4_TB);  // A (the slot 2 before chunk 2)
        float* SB = SA + DKP * GT4_LS;                            // B (the slot 2 before chunk 3)
        float* SH = SB + DKP * GT4_LS;                            // an H tile (H_0 or H_2: the slot 1)
        float* D = SH + DKP * GT4_LS;                             // the adjoint dS' after the current chunk
        float* W = D + DKP * GT4_LS;
        float* dW = W + CH * GT4_LW;
        float* Do = dW + CH * GT4_LW;  // dout's rows of the chunk (zero past T), the block's columns
        float* lw = Do + CH * GT4_LW;  // [slot m - 1][t] read weights (zero past T or unheld)
        check_smem(GT4_SMEM);
        const int tid = threadIdx.x, g8 = tid % 32 / 4, t4 = tid % 4;
        const int NCB = (DV + GT4_BW - 1) / GT4_BW;
        const int pp = (int)(blockIdx.x / ((i64)BH * NCB)), c0 = (int)(blockIdx.x % NCB) * GT4_BW;
        const i64 bh = blockIdx.x / NCB % BH;
        const int cA = pp * GD_TP, nc = min(GD_TP, n - cA);
        const i64 slot_sz = (i64)DK * DV;
        const int K8 = (DK + 7) / 8 * 8, KV = min(GT4_BW, (DV - c0 + 7) / 8 * 8);  // reductions over d_k, the columns
        const bool vec = DK % (16 / (int)sizeof(gd_e)) == 0, vs = DV % 4 == 0;
        using TW = GdWarpTiles<CH / 16, GT4_BW>;  // CH x GT4_BW: W, dW
        using TO = GdWarpTiles<CH / 16, DKP>;     // CH x DKP ([t][kk]): U, dqe, dek, dph^T
        using TS = GdWarpTiles<DKP / 16, GT4_BW>; // DKP x GT4_BW: the slots' steps, dS
        using TP = GdWarpTiles<DKP / 16, CH>;     // DKP x CH ([kk][t]): dph (GT4_F2_SET)
        static_assert(TP::NTL == TO::NTL, "dph's tiles as many as dek's");
        const TW ww;
        const TO wo;
        const TS ws;
        const TP wp;
        auto E = [](const gd_e* p) { return (float)gd_wid(*p); };
        constexpr bool WR = X1 && GT4_PR_SET;  // W, dW stored as their tf32 roundings (GT4_PR_SET)
        auto wr = [](float x) { return WR ? gdb_round(x) : x; };
        auto tiles = [&](int c, bool with_qe) {  // chunk c's tiles (ek, ph; qe where asked), issued, not committed
            const i64 cj = bh * n + c;
            if (with_qe) gd_copy<CH, DKP>(Qe, GD_LDQE, qe + cj * CH * DK, DK, CH, DK, vec);
            gd_copy<CH, DKP>(Ek, GD_LDQE, ek + cj * CH * DK, DK, CH, DK, vec);
            gd_copy<DKP, CH>(Ph, GD_LDPE, ph + cj * DK * CH, CH, DK, CH, vec);
        };
        auto load_h = [&](float* dst, int c) {  // H_c's block columns into [kk][col] (zero past DK, DV)
            const gd_e* src = Hc + (bh * n + c) * slot_sz + c0;
            for (int idx = tid; idx < DKP * GT4_BW; idx += NT) {
                const int kk = idx / GT4_BW, cc = idx % GT4_BW;
                dst[kk * GT4_LS + cc] = kk < DK && c0 + cc < DV ? (float)gd_wid(src[(i64)kk * DV + cc]) : 0.f;
            }
        };
        auto put_h = [&](int c, int kk, int cc, float v) {  // dH_c's element (kk, c0 + cc)
            if (kk < DK && c0 + cc < DV) dH[(bh * n + c) * slot_sz + (i64)kk * DV + c0 + cc] = v;
        };
        // ---- D, the adjoint after the period's last merge; dH of the period's last chunk ----
        // (session 25: the first reverse step's qe and dout copied here, under the recompute, measured no faster: H200,
        // S16, 32 columns, 0.494 ms at 8K against 0.472 without; removed)
        if (nc == GD_TP && pp + 1 < nP)
            gd_copy<DKP, GT4_BW>(D, GT4_LS, dTot + (bh * nP + pp) * slot_sz + c0, DV, DK, DV - c0, vs);
        else
            for (int idx = tid; idx < DKP * GT4_BW; idx += NT) D[idx / GT4_BW * GT4_LS + idx % GT4_BW] = 0.f;
        cp_async_commit();
        // ---- the slots recomputed: A = P_1 H_0 + H_1 (nc >= 3), B = P_2 A (nc = 4) ----
        if (nc >= 3) {
            tiles(cA + 1, false);
            cp_async_commit();
            load_h(SH, cA);
            load_h(SA, cA + 1);
        }
        cp_async_wait<0>();
        __syncthreads();
        for (int idx = tid; idx < DKP * GT4_BW; idx += NT) {
            const int kk = idx / GT4_BW, cc = idx % GT4_BW;
            put_h(cA + nc - 1, kk, cc, D[kk * GT4_LS + cc]);
        }
        // S_out = e^{g_c} S_in - ph_c (ek_c S_in) (+ S_out as it is: H, when addh), chunk c's tiles in shared memory
        auto step = [&](int c, const float* Sin, float* Sout, bool addh) {
            if (ww.on) {
                float acc[TW::NTL][4] = {};
                gt4_mm<X1, TW::NTL, DKP, GT4_RN>(acc, [&](int t, int k) { return E(Ek + t * GD_LDQE + k); },
                           [&](int k, int cc) { return Sin[k * GT4_LS + cc]; }, ww.r0, ww.n0, K8);
#pragma unroll
                for (int i = 0; i < TW::NTL; ++i)
#pragma unroll
                    for (int x = 0; x < 4; ++x) W[ww.row(x) * GT4_LW + ww.col(i, x)] = wr(acc[i][x]);
            }
            __syncthreads();
            if (ws.on) {
                const float eg = ex(gc[bh * n + c]);
                float acc[TS::NTL][4] = {};
                gt4_mm<X1, TS::NTL, CH, GT4_RN, !WR>(acc, [&](int kk, int t) { return E(Ph + kk * GD_LDPE + t); },
                           [&](int t, int cc) { return W[t * GT4_LW + cc]; }, ws.r0, ws.n0, CH);
#pragma unroll
                for (int i = 0; i < TS::NTL; ++i)
#pragma unroll
                    for (int x = 0; x < 4; ++x) {
                        const int o = ws.row(x) * GT4_LS + ws.col(i, x);
                        Sout[o] = eg * Sin[o] - acc[i][x] + (addh ? Sout[o] : 0.f);
                    }
            }
            __syncthreads();  // (the tiles and W free for the next copies)
        };
        if (nc >= 3) step(cA + 1, SH, SA, true);
        if (nc == GD_TP) {
            tiles(cA + 2, false);
            cp_async_commit();
            cp_async_wait<0>();
            __syncthreads();
            step(cA + 2, SA, SB, false);
        }
        // ---- the reverse walk: i = nc - 1 .. 1 ----
        for (int i = nc - 1; i >= 1; --i) {
            const int c = cA + i;
            const i64 cj = bh * n + c;
            const bool two = i == 3;  // slots 1 (H_2) and 2 (B); else one: i = 2 slot 2 (A), i = 1 slot 1 (H_0)
            const float* S1 = two ? SH : (i == 2 ? SA : SH);
            const float* S2 = SB;
            const int m1 = i == 2 ? 2 : 1;  // the (first) slot's level
            tiles(c, true);
            gd_copy<CH, GT4_BW>(Do, GT4_LW, dout + cj * CH * DV + c0, DV, min(CH, T - c * CH), DV - c0, vs);
            cp_async_commit();
            if (i != 2) load_h(SH, cA + i - 1);
            if (tid < 2 * CH) {
                const int m = tid / CH + 1, t = tid % CH;
                const i64 gi = (i64)c * CH + t;
                lw[tid] = (m == m1 || (two && m == 2)) && gi < T ? lam[(bh * T + gi) * L + GD_LOG2C + m] : 0.f;
            }
            const float eg = ex(gc[cj]);
            cp_async_wait<0>();
            __syncthreads();
            auto Ssum = [&](int o) { return two ? S1[o] + S2[o] : S1[o]; };
            // phase 1: W = ek S, dW = -ph^T dS' (CH x cols); U_m = dout S_m^T (CH x d_k): dlam, dqe
            if (ww.on) {
                float aw[TW::NTL][4] = {}, ad[TW::NTL][4] = {};
                gt4_mm<X1, TW::NTL, DKP, GT4_RN>(aw, [&](int t, int k) { return E(Ek + t * GD_LDQE + k); },
                           [&](int k, int cc) { return Ssum(k * GT4_LS + cc); }, ww.r0, ww.n0, K8);
                gt4_mm<X1, TW::NTL, DKP, GT4_RN>(ad, [&](int t, int k) { return E(Ph + k * GD_LDPE + t); },
                           [&](int k, int cc) { return D[k * GT4_LS + cc]; }, ww.r0, ww.n0, K8);
#pragma unroll
                for (int it = 0; it < TW::NTL; ++it)
#pragma unroll
                    for (int x = 0; x < 4; ++x) {
                        const int o = ww.row(x) * GT4_LW + ww.col(it, x);
                        W[o] = wr(aw[it][x]);
                        dW[o] = wr(-ad[it][x]);
                    }
            }
            float aq[TO::NTL][4] = {};  // dqe's C fragments: sum_m lam_m U_m
            for (int u = 0; u < (two ? 2 : 1); ++u) {
                const int m = u ? 2 : m1;
                const float* Sm = u ? S2 : S1;
                float au[TO::NTL][4] = {};
                if (wo.on)
                    gt4_mm<X1, TO::NTL, GT4_BW>(au, [&](int t, int v) { return Do[t * GT4_LW + v]; },
                               [&](int v, int kk) { return Sm[kk * GT4_LS + v]; }, wo.r0, wo.n0, KV);
                float rd[2] = {0.f, 0.f};  // rows wo.row(0), wo.row(2): sum_kk qe U
#pragma unroll
                for (int it = 0; it < TO::NTL; ++it)
#pragma unroll
                    for (int x = 0; x < 4; ++x) {
                        const int t = wo.row(x), kk = wo.col(it, x);
                        rd[x >> 1] += E(Qe + t * GD_LDQE + kk) * au[it][x];
                        aq[it][x] += lw[(m - 1) * CH + t] * au[it][x];
                    }
#pragma unroll
                for (int h = 0; h < 2; ++h) {  // (every thread: the shuffles are block-wide on the CPU emulation)
                    rd[h] += __shfl_xor_sync(0xffffffffu, rd[h], 1, 4);
                    rd[h] += __shfl_xor_sync(0xffffffffu, rd[h], 2, 4);
                    const i64 gi = (i64)c * CH + wo.row(2 * h);
                    if (wo.on && t4 == 0 && gi < T) atomicAdd(dlam + (bh * T + gi) * L + GD_LOG2C + m, rd[h]);
                }
            }
            if (wo.on)
#pragma unroll
                for (int it = 0; it < TO::NTL; ++it)
#pragma unroll
                    for (int x = 0; x < 4; x += 2) {  // (columns kk, kk + 1)
                        const int t = wo.row(x), kk = wo.col(it, x);
                        gt4_add2(dqe + (cj * CH + t) * DK + kk, aq[it][x], aq[it][x + 1], kk, DK, DK % 2 == 0);
                    }
            __syncthreads();
            // phase 2: dek += dW S^T, dph -= dS' W^T ([t][kk]); dS_m = e^g dS' + ek^T dW + qe^T (lam_m dout); dg
            if (wo.on) {
                float ae[TO::NTL][4] = {}, ap[TO::NTL][4] = {};
                gt4_mm<X1, TO::NTL, GT4_BW, !WR>(ae, [&](int t, int v) { return dW[t * GT4_LW + v]; },
                           [&](int v, int kk) { return Ssum(kk * GT4_LS + v); }, wo.r0, wo.n0, KV);
                if (GT4_F2_SET)  // dph^T = D W^T ([kk][t]: TP's tiles)
                    gt4_mm<X1, TP::NTL, GT4_BW, true, !WR>(ap, [&](int kk, int v) { return D[kk * GT4_LS + v]; },
                               [&](int v, int t) { return W[t * GT4_LW + v]; }, wp.r0, wp.n0, KV);
                else
                    gt4_mm<X1, TO::NTL, GT4_BW, !WR>(ap, [&](int t, int v) { return W[t * GT4_LW + v]; },
                               [&](int v, int kk) { return D[kk * GT4_LS + v]; }, wo.r0, wo.n0, KV);
#pragma unroll
                for (int it = 0; it < TO::NTL; ++it)
#pragma unroll
                    for (int x = 0; x < 4; x += 2) {
                        const int t = wo.row(x), kk = wo.col(it, x);
                        gt4_add2(dek + (cj * CH + t) * DK + kk, ae[it][x], ae[it][x + 1], kk, DK, DK % 2 == 0);
                        if (GT4_F2_SET) {  // (rows kk of dph, tokens t, t + 1: CH is even)
                            const int pk = wp.row(x), pt = wp.col(it, x);
                            if (pk < DK) gt4_add2(dph + (cj * DK + pk) * CH + pt, -ap[it][x], -ap[it][x + 1], pt, CH, true);
                        } else
                            for (int h = 0; h < 2; ++h)
                                if (kk + h < DK) atomicAdd(dph + (cj * DK + kk + h) * CH + t, -ap[it][x + h]);
                    }
            }
            float as[2][TS::NTL][4] = {}, dga = 0.f;
            if (ws.on) {
                float base[TS::NTL][4] = {};
                gt4_mm<X1, TS::NTL, CH, GT4_RN, !WR>(base, [&](int kk, int t) { return E(Ek + t * GD_LDQE + kk); },
                           [&](int t, int cc) { return dW[t * GT4_LW + cc]; }, ws.r0, ws.n0, CH);
#pragma unroll
                for (int it = 0; it < TS::NTL; ++it)
#pragma unroll
                    for (int x = 0; x < 4; ++x) {
                        const int o = ws.row(x) * GT4_LS + ws.col(it, x);
                        const float d = D[o];
                        dga += d * Ssum(o);
                        base[it][x] += eg * d;
                    }
#pragma unroll
                for (int u = 0; u < 2; ++u) {
                    if (u && !two) break;
                    const float* lm = lw + (u ? 1 : m1 - 1) * CH;
#pragma unroll
                    for (int it = 0; it < TS::NTL; ++it)
#pragma unroll
                        for (int x = 0; x < 4; ++x) as[u][it][x] = base[it][x];
                    gt4_mm<X1, TS::NTL, CH, GT4_RN>(as[u], [&](int kk, int t) { return E(Qe + t * GD_LDQE + kk); },
                               [&](int t, int cc) { return lm[t] * Do[t * GT4_LW + cc]; }, ws.r0, ws.n0, CH);
                }
            }
            __syncthreads();  // every read of D, W, dW and the tiles done: D rewritten, the next chunk's copies
            if (ws.on)
#pragma unroll
                for (int it = 0; it < TS::NTL; ++it)
#pragma unroll
                    for (int x = 0; x < 4; ++x) {
                        const int kk = ws.row(x), cc = ws.col(it, x);
                        put_h(c - 1, kk, cc, as[0][it][x]);  // the merge before chunk c: dH_{c-1} = dS of slot m1
                        if (i == 2) D[kk * GT4_LS + cc] = as[0][it][x];  // (A = P_1 H_0 + H_1: slot 1's dS' at i = 1)
                        if (two) D[kk * GT4_LS + cc] = as[1][it][x];     // (B = P_2 A: slot 2's dS' at i = 2)
                    }
#pragma unroll
            for (int off = 16; off > 0; off /= 2) dga += __shfl_xor_sync(0xffffffffu, dga, off, 32);
            if (tid % 32 == 0 && dga != 0.f) atomicAdd(dg + cj, eg * dga);
        }
    }
}

#define GT4_PARAMS                                                                                                     \
    const gd_e* __restrict__ qe,   /* (BH, n, CH, DK)  qeff (gd_e: bfloat16 in a GD_S16 build) */                      \
    const gd_e* __restrict__ ek,   /* (BH, n, CH, DK)  e^G K */                                                        \
    const gd_e* __restrict__ ph,   /* (BH, n, DK, CH)  phi */                                                          \
    const gd_e* __restrict__ Hc,   /* (BH, n, DK, DV)  H */                                                            \
    const ta* __restrict__ gc,     /* (BH, n)          chunk total log decay */                                        \
    const ta* __restrict__ lam,    /* (BH, T, L)       level weights (the compute type) */                             \
    const gd_do* __restrict__ dout, /* (BH, n, CH, DV) the scan output's gradient (GD_DO16: bfloat16) */             \
    const ta* __restrict__ dTot,   /* (BH, nP, DK, DV) the periods' keys' adjoints (K2's) */                           \
    ta* __restrict__ dqe,          /* (BH, n, CH, DK)  += */                                                           \
    ta* __restrict__ dek,          /* (BH, n, CH, DK)  += */                                                           \
    ta* __restrict__ dph,          /* (BH, n, DK, CH)  += */                                                           \
    ta* __restrict__ dH,           /* (BH, n, DK, DV)  out (every element) */                                          \
    ta* __restrict__ dg,           /* (BH, n)          += */                                                           \
    ta* __restrict__ dlam,         /* (BH, T, L)       += (columns log2 CH + 1, + 2) */                                \
    int T, int DK, int DV, int L, int n, int nP, int BH
#define GT4_ARGS qe, ek, ph, Hc, gc, lam, dout, dTot, dqe, dek, dph, dH, dg, dlam, T, DK, DV, L, n, nP, BH
// grid: nP * BH * ceil(DV / GT4_BW) blocks (period slowest, then sequence, then column block), NT threads
extern "C" __global__ void __launch_bounds__(NT, GT4_MINB) gd_tier1_bwd(GT4_PARAMS) { gt4_body<false>(GT4_ARGS); }
extern "C" __global__ void __launch_bounds__(NT, GT4_MINB) gd_tier1_bwd_x1(GT4_PARAMS) { gt4_body<true>(GT4_ARGS); }
