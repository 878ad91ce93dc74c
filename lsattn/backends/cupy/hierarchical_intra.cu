// Hierarchical exp-kernel attention's chunk-local pairs (hi_intra), compiled after common.cu and hierarchical.cu
// (whose top comment describes all four kernels; hi_intra uses its hi_mma3, hi_rows, hi_decay and tile constants).
// Host: hierarchical.py.

#if HI_TC
// hi_intra on tensor cores (bf16 inputs): the chunk's pair weights and W V as split products (hi_mma3), each
// output row checked against DEN_FLOOR and recomputed exactly (hi_intra_exact_row) when below it.
// Warp w: m-tile w % HI_MT (rows 16 (w % HI_MT) ..), part w / HI_MT of its key n-tiles (HI_PNW each) or of
// the value pass's n-tiles (HI_VNW each).
constexpr int HI_MT = CH / 16, HI_PNW = CH / 8 >= HI_WPM ? CH / 8 / HI_WPM : 1, HI_VNW = (HI_AV / 8) / HI_WPM;
static_assert(HI_VNW >= 1 && HI_MT * HI_WPM == NT / 32, "hi_intra's warp tiles");
static_assert(HI_XLD - CH > HI_LOG2C, "hi_intra's level weights in the pairs' padding");
constexpr int HI_KP = NT / DKP, HI_VP = NT / HI_AV;  // threads per feature, per value column (consecutive lanes)

// max / sum over groups of P consecutive lanes (P a power of two <= 32; every lane of the warp calls it)
template <int P>
__device__ __forceinline__ float hi_group_max(float x) {
#pragma unroll
    for (int o = 1; o < P; o <<= 1) x = fmx(x, __shfl_xor_sync(0xffffffffu, x, o));
    return x;
}
template <int P>
__device__ __forceinline__ float hi_group_sum(float x) {
#pragma unroll
    for (int o = 1; o < P; o <<= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}

// Row t of the chunk exactly in log space (hi_intra's FFMA formulation; the rows whose tensor-core sums fell
// below DEN_FLOOR): X_s = log sum_i exp(q_ti + k_si) + lam[t, level] + (a_{s+1} + ... + a_t) into Xr, then lden_t
// and every column's lnum_tc. Called by the whole block (barriers inside); q and lv re-read from global.
__device__ __forceinline__ void hi_intra_exact_row(int t, int t0, const ti* qt, const ta* Ks, const ti* lt, const ti* lvb,
                                                   const ta* ac, ta* Xr, ta* lden_t, ta* lnum_t, int DK, int DV) {
    const int tid = threadIdx.x;
    for (int s = t0 + tid; s <= t; s += NT) {
        const ta* ks = Ks + s * HI_KKLD;
        ta mx = neg_big();
        for (int i = 0; i < DK; ++i) mx = fmx(mx, ld(qt + i) + ks[i]);
        ta sum = (ta)0;
        for (int i = 0; i < DK; ++i) sum += fex(ld(qt + i) + ks[i] - mx);
        Xr[s] = mx + lg(sum);
    }
    __syncthreads();
    if (tid == 0) {
        ta seg = (ta)0, mx = neg_big();
        for (int s = t; s >= t0; --s) {
            const ta x = Xr[s] + fmx(ld(lt + bitlen64(t ^ s)), lo_v()) + seg;
            Xr[s] = x;
            mx = fmx(mx, x);
            seg += ac[s];
        }
        ta den = (ta)0;
        for (int s = t0; s <= t; ++s) den += fex(Xr[s] - mx);
        *lden_t = mx + lg(den);
    }
    __syncthreads();
    for (int cc = tid; cc < DV; cc += NT) {
        ta U = neg_big();
        for (int s = t0; s <= t; ++s) U = fmx(U, Xr[s] + fmx(ld(lvb + (i64)s * DV + cc), lo_v()));
        ta sum = (ta)0;
        for (int s = t0; s <= t; ++s) sum += fex(Xr[s] + fmx(ld(lvb + (i64)s * DV + cc), lo_v()) - U);
        lnum_t[cc] = U + lg(sum);
    }
    __syncthreads();
}
#endif

#ifndef HI_GCHW  // (session 19, issue 17) the call's last chunk writes its total decay too (read by no kernel; gnode's copy
#define HI_GCHW 1  // of gch reads every entry); 0: main's (that entry never written: initcheck's reports)
#endif

#if HI_TC
#ifndef HI_IMINB
// blocks per SM: CH 64's 75 KB of tiles allow 3 (<= 85 registers, no spills at d_k = 64); CH <= 32's (33 KB at 32) 4
// (<= 64 registers: 63, no spills; measured -12-15% at chunk 32 against 3, benchmarks/NOTES.md, session 14)
#define HI_IMINB (CH >= 64 ? 3 : 4)
#endif
#define HI_INTRA_BOUNDS __launch_bounds__(NT, HI_IMINB)
#else
#define HI_INTRA_BOUNDS __launch_bounds__(NT)
#endif
extern "C" __global__ void HI_INTRA_BOUNDS hi_intra(
    const ti* __restrict__ q,    // (BH, T, DK)
    const ti* __restrict__ k,    // (BH, T, DK)
    const ti* __restrict__ lv,   // (BH, T, DV)
    const ti* __restrict__ lam,  // (BH, T, L)
    const ti* __restrict__ a,    // (BH, T) or null (no decay)
    ta* __restrict__ lden,       // (BH, T)      out
    ta* __restrict__ lnum,       // (BH, T, DV)  out
    ta* __restrict__ wm, ta* __restrict__ wz, ta* __restrict__ wn, ta* __restrict__ wS,  // hi_merge's slots (out: slot n_old + j)
    ta* __restrict__ gch,        // (BH, n) out: the chunks' total decays
    int T, int DK, int DV, int L, i64 p, i64 F, ta alo, int n_old, int ncb) {
    extern __shared__ __align__(16) unsigned char smem_raw[];
    ta* Qs = reinterpret_cast<ta*>(smem_raw);  // CH x HI_KLD (tensor cores: then exp(q + mk - R); then exp(k + suf - mc))
    ta* Ks = Qs + CH * HI_KLD;                 // CH x HI_KKLD
    ta* X = Ks + CH * HI_KKLD;                 // CH x HI_XLD: log weights of the pairs (tensor cores: then the weights)
    ta* LVs = X + CH * HI_XLD;                 // CH x HI_VLD
    ta* ac = LVs + CH * HI_BVL;                // CH
    ta* suf = ac + CH;                         // CH
    ta* mcs = suf + CH;                        // DKP
    ta* ncs = mcs + DKP;                       // HI_AV
#if HI_TC  // 3 blocks per SM: tiles used at different times share space (< 75 KB at CH = d_k = 64)
    ta* Bs = LVs;                              // CH x HI_KLD: exp(k - mk) before the value passes, then the exact rows' scratch
    ta* mk = mcs;                              // DKP: the chunk's key maxima per feature (before the summary's)
    ta* Rs = ncs + HI_AV;                      // CH: row shifts max_i (q_ti + mk_i)
    ta* Gs = Rs + CH;                          // CH: row shifts of the log weight factors
    int* flg = reinterpret_cast<int*>(Gs + CH);  // CH: rows for the exact path
    ta* LamI = X + CH;  // row t's level weights 0 .. log2 CH (clamped) at LamI[t HI_XLD + l]: X's padding columns
    check_smem((CH * (HI_KLD + HI_KKLD + HI_XLD + HI_BVL) + 5 * CH + DKP + HI_AV) * sizeof(ta));
#else
    check_smem((CH * (HI_KLD + HI_KKLD + HI_XLD + HI_VLD) + 2 * CH + DKP + HI_AV) * sizeof(ta));
#endif
    const int tid = threadIdx.x;
    const i64 bh = blockIdx.y, c = F + blockIdx.x, g0 = c * CH - p;
    const int t0 = (int)max((i64)0, -g0), t1 = (int)min((i64)CH, (i64)T - g0);  // rows of the call
    hi_rows(Qs, q + bh * T * DK, g0, T, DK, HI_KLD, true);
    hi_rows(Ks, k + bh * T * DK, g0, T, DK, HI_KKLD, true);
    for (int s = tid; s < CH; s += NT) ac[s] = hi_decay(a ? a + bh * T : nullptr, g0 + s, T, alo);
#if HI_TC
    for (int idx = tid; idx < CH * 8; idx += NT) {
        const int t = idx / 8, l = idx % 8;
        LamI[t * HI_XLD + l] = (t >= t0 && t < t1 && l < L && l <= HI_LOG2C) ? fmx(ld(lam + (bh * T + g0 + t) * L + l), lo_v()) : lo_v();
    }
#endif
    __syncthreads();
#if HI_TC
    // exp(X_ts) = exp(R_t + G_t) P_ts f_ts: P = A B^T with A = exp(q + mk - R) <= 1, B = exp(k - mk) <= 1, and
    // f_ts = exp(lam[t, level] + (a_{s+1} + ... + a_t) - G_t) <= 1 (the stretch summed as the FFMA path does;
    // G_t the row's maximum of that log factor). Terms lost to underflow are < 2^-126 each against a row sum
    // >= DEN_FLOOR (the exp-kernel chunks' rule); rows below it take the exact path.
    const int w = tid >> 5, mt = w % HI_MT, wp = w / HI_MT;
    const int rt = tid / HI_P, rp = tid % HI_P;  // HI_P threads per row
    {  // the key maxima per feature, HI_KP threads each
        const int i = tid / HI_KP;
        ta M = neg_big();
        if (i < DK)
            for (int s = t0 + tid % HI_KP; s < t1; s += HI_KP) M = fmx(M, Ks[s * HI_KKLD + i]);
        M = hi_group_max<HI_KP>(M);
        if (tid % HI_KP == 0) mk[i] = i < DK ? M : (ta)0;
    }
    if (tid >= NT - CH) {  // one thread per row: the log factors (into X) and their maximum
        const int t = tid - (NT - CH);
        flg[t] = 0;
        if (t >= t0 && t < t1) {
            ta seg = (ta)0, G = neg_big();
            for (int s = t; s >= t0; --s) {
                const ta x = LamI[t * HI_XLD + bitlen64(t ^ s)] + seg;
                X[t * HI_XLD + s] = x;
                G = fmx(G, x);
                seg += ac[s];
            }
            Gs[t] = G;
        }
    }
    __syncthreads();
    {
        ta R = neg_big();
        for (int i = rp; i < DK; i += HI_P) R = fmx(R, Qs[rt * HI_KLD + i] + mk[i]);
        R = hi_group_max<HI_P>(R);
        if (rp == 0) Rs[rt] = R;
    }
    __syncthreads();
    for (int idx = tid; idx < CH * DKP; idx += NT) {
        const int r = idx / DKP, i = idx % DKP;
        const bool ok = i < DK && r >= t0 && r < t1;
        Qs[r * HI_KLD + i] = ok ? fex(Qs[r * HI_KLD + i] + mk[i] - Rs[r]) : (ta)0;
        Bs[r * HI_KLD + i] = ok ? fex(Ks[r * HI_KKLD + i] - mk[i]) : (ta)0;
    }
    __syncthreads();
    if (8 * HI_PNW * wp < CH && 8 * HI_PNW * wp <= 16 * mt + 15) {  // key tiles at or left of the diagonal
        const int lane = tid & 31, n0 = 8 * HI_PNW * wp;
        float P[HI_PNW][4];
#pragma unroll
        for (int u = 0; u < HI_PNW; ++u) P[u][0] = P[u][1] = P[u][2] = P[u][3] = 0.f;
        hi_mma3<HI_PNW>(P, 16 * mt, n0, 0, DKP, [&](int r, int kk) { return hi_row2(Qs, r * HI_KLD + kk); },
                        [&](int kk, int s) { return hi_row2(Bs, s * HI_KLD + kk); });
#pragma unroll
        for (int u = 0; u < HI_PNW; ++u)
#pragma unroll
            for (int x = 0; x < 4; ++x) {  // the weights W_ts = P_ts f_ts in place of the log factors
                const int t = 16 * mt + (lane >> 2) + 8 * (x >> 1), s = n0 + 8 * u + 2 * (lane & 3) + (x & 1);
                const bool ok = t >= t0 && t < t1 && s >= t0 && s <= t;
                X[t * HI_XLD + s] = ok ? P[u][x] * fex(X[t * HI_XLD + s] - Gs[t]) : (ta)0;
            }
    }
    __syncthreads();
    {
        ta den = (ta)0;
        for (int s = t0 + rp; s <= rt; s += HI_P) den += X[rt * HI_XLD + s];
        den = hi_group_sum<HI_P>(den);
        if (rp == 0 && rt >= t0 && rt < t1) {
            if (den >= DEN_FLOOR) lden[bh * T + g0 + rt] = Rs[rt] + Gs[rt] + lg(den);
            else flg[rt] = 1;
        }
    }
#else
    for (int idx = tid; idx < CH * (CH + 1) / 2; idx += NT) {  // X_ts = log sum_i exp(q_ti + k_si), pairs s <= t
        int t = (int)((sqrtf(8.0f * idx + 1.0f) - 1.0f) * 0.5f);  // idx = t (t + 1) / 2 + s, 0 <= s <= t
        t -= t * (t + 1) / 2 > idx;
        t += (t + 1) * (t + 2) / 2 <= idx;
        const int s = idx - t * (t + 1) / 2;
        if (s < t0 || t >= t1) continue;
        const ta* qt = Qs + t * HI_KLD;
        const ta* ks = Ks + s * HI_KKLD;
        ta mx = neg_big();
        for (int i = 0; i < DK; ++i) mx = fmx(mx, qt[i] + ks[i]);
        ta sum = (ta)0;
        for (int i = 0; i < DK; ++i) sum += fex(qt[i] + ks[i] - mx);
        X[t * HI_XLD + s] = mx + lg(sum);
    }
    __syncthreads();
    for (int t = t0 + tid; t < t1; t += NT) {  // + level weight + decay over the stretch; lden
        const ti* lt = lam + (bh * T + g0 + t) * L;
        ta seg = (ta)0, mx = neg_big();
        for (int s = t; s >= t0; --s) {
            const ta x = X[t * HI_XLD + s] + fmx(ld(lt + bitlen64(t ^ s)), lo_v()) + seg;
            X[t * HI_XLD + s] = x;
            mx = fmx(mx, x);
            seg += ac[s];
        }
        ta den = (ta)0;
        for (int s = t0; s <= t; ++s) den += fex(X[t * HI_XLD + s] - mx);
        lden[bh * T + g0 + t] = mx + lg(den);
    }
#endif
    // the chunk's summary (all chunks but the call's last): slot n_old + j of hi_merge, keys decayed
    // to the chunk's end, m = mc (per feature), z, then per column pass n = nc and S
    const int j = blockIdx.x, n = gridDim.x;
    const bool summ = j + 1 < n;
    const int NS = n_old + n;
    const i64 id = n_old + j;
    if (summ) {
        __syncthreads();  // Qs is free
        if (tid == 0) {
            ta sf = (ta)0;
            for (int s = CH - 1; s >= 0; --s) {
                suf[s] = sf;
                sf += ac[s];
            }
            gch[bh * n + j] = sf;
        }
        __syncthreads();
        if (tid < DKP) {
            ta M = neg_big();
            if (tid < DK)
                for (int s = t0; s < t1; ++s) M = fmx(M, Ks[s * HI_KKLD + tid] + suf[s]);
            mcs[tid] = M;
        }
        __syncthreads();
        for (int idx = tid; idx < CH * DKP; idx += NT) {
            const int s = idx / DKP, i = idx % DKP;
            Qs[s * HI_KLD + i] = (i < DK && s >= t0 && s < t1) ? fex(Ks[s * HI_KKLD + i] + suf[s] - mcs[i]) : (ta)0;
        }
        __syncthreads();
        if (tid < DK) {
            ta zz = (ta)0;
            for (int s = 0; s < CH; ++s) zz += Qs[s * HI_KLD + tid];
            for (int cb = 0; cb < ncb; ++cb) {
                wm[((bh * ncb + cb) * NS + id) * DK + tid] = mcs[tid];
                wz[((bh * ncb + cb) * NS + id) * DK + tid] = zz;
            }
        }
    } else if (HI_GCHW && tid == 0) {  // (ac written before the pairs' barriers; the summary's order of the sum)
        ta sf = (ta)0;
        for (int s = CH - 1; s >= 0; --s) sf += ac[s];
        gch[bh * n + j] = sf;
    }
    for (int c0 = 0; c0 < DV; c0 += HI_AV) {  // lnum, HI_AV columns at a time
        __syncthreads();
        for (int idx = tid; idx < CH * HI_AV; idx += NT) {
            const int s = idx / HI_AV, cc = idx % HI_AV;
            const bool ok = s >= t0 && s < t1 && c0 + cc < DV;
            LVs[s * HI_VLD + cc] = ok ? fmx(ld(lv + (bh * T + g0 + s) * DV + c0 + cc), lo_v()) : lo_v();
        }
        __syncthreads();
#if HI_TC
        // lnum_tc = R_t + G_t + nc_c + log (W V)_tc, V = exp(lv - nc) <= 1 (nc: the column's maximum over the
        // chunk, the summary's shift too)
        {  // HI_VP threads per column
            const int cc = tid / HI_VP;
            ta N = lo_v();
            for (int s = t0 + tid % HI_VP; s < t1; s += HI_VP) N = fmx(N, LVs[s * HI_VLD + cc]);
            N = hi_group_max<HI_VP>(N);
            if (tid % HI_VP == 0) {
                ncs[cc] = N;
                if (summ && c0 + cc < DV) wn[(bh * NS + id) * DV + c0 + cc] = N;
            }
        }
        __syncthreads();
        for (int idx = tid; idx < CH * HI_AV; idx += NT) {
            const int s = idx / HI_AV, cc = idx % HI_AV;
            LVs[s * HI_VLD + cc] = (s >= t0 && s < t1) ? fex(LVs[s * HI_VLD + cc] - ncs[cc]) : (ta)0;
        }
        __syncthreads();
        {
            const int lane = tid & 31, n0 = 8 * HI_VNW * wp;
            float O[HI_VNW][4];
#pragma unroll
            for (int u = 0; u < HI_VNW; ++u) O[u][0] = O[u][1] = O[u][2] = O[u][3] = 0.f;
            hi_mma3<HI_VNW>(O, 16 * mt, n0, 0, 16 * (mt + 1), [&](int r, int s) { return hi_row2(X, r * HI_XLD + s); },
                            [&](int s, int cc) { return hi_col2(LVs, s * HI_VLD + cc, HI_VLD); });
#pragma unroll
            for (int u = 0; u < HI_VNW; ++u)
#pragma unroll
                for (int x = 0; x < 4; ++x) {
                    const int t = 16 * mt + (lane >> 2) + 8 * (x >> 1), cc = n0 + 8 * u + 2 * (lane & 3) + (x & 1);
                    if (t < t0 || t >= t1 || c0 + cc >= DV) continue;
                    if (O[u][x] >= DEN_FLOOR) lnum[(bh * T + g0 + t) * DV + c0 + cc] = Rs[t] + Gs[t] + ncs[cc] + lg(O[u][x]);
                    else flg[t] = 1;  // (the same value from every thread that flags the row)
                }
        }
        if (!summ) continue;
#else
        for (int idx = tid; idx < CH * HI_AV; idx += NT) {
            const int t = idx / HI_AV, cc = idx % HI_AV;
            if (t < t0 || t >= t1 || c0 + cc >= DV) continue;
            const ta* xt = X + t * HI_XLD;
            ta U = neg_big();
            for (int s = t0; s <= t; ++s) U = fmx(U, xt[s] + LVs[s * HI_VLD + cc]);
            ta sum = (ta)0;
            for (int s = t0; s <= t; ++s) sum += fex(xt[s] + LVs[s * HI_VLD + cc] - U);
            lnum[(bh * T + g0 + t) * DV + c0 + cc] = U + lg(sum);
        }
        if (!summ) continue;
        __syncthreads();
        if (tid < HI_AV) {  // the summary's column shifts
            ta N = lo_v();
            for (int s = t0; s < t1; ++s) N = fmx(N, LVs[s * HI_VLD + tid]);
            ncs[tid] = N;
            if (c0 + tid < DV) wn[(bh * NS + id) * DV + c0 + tid] = N;
        }
        __syncthreads();
        for (int idx = tid; idx < CH * HI_AV; idx += NT) {
            const int s = idx / HI_AV, cc = idx % HI_AV;
            LVs[s * HI_VLD + cc] = (s >= t0 && s < t1) ? fex(LVs[s * HI_VLD + cc] - ncs[cc]) : (ta)0;
        }
        __syncthreads();
#endif
#if HI_TC
        {  // S = exp(k + suf - mc)^T exp(lv - nc) as a split product: warp w features 16 (w % SMT) .., SNW n-tiles
            constexpr int SMT = DKP / 16, SNW = (HI_AV / 8) / ((NT / 32) / SMT);
            const int lane = tid & 31, i0 = 16 * (w % SMT), n0 = 8 * SNW * (w / SMT);
            float Sa[SNW][4];
#pragma unroll
            for (int u = 0; u < SNW; ++u) Sa[u][0] = Sa[u][1] = Sa[u][2] = Sa[u][3] = 0.f;
            hi_mma3<SNW>(Sa, i0, n0, 0, CH, [&](int i, int s) { return hi_col2(Qs, s * HI_KLD + i, HI_KLD); },
                         [&](int s, int cc) { return hi_col2(LVs, s * HI_VLD + cc, HI_VLD); });
#pragma unroll
            for (int u = 0; u < SNW; ++u)
#pragma unroll
                for (int x = 0; x < 4; ++x) {
                    const int i = i0 + (lane >> 2) + 8 * (x >> 1), cc = n0 + 8 * u + 2 * (lane & 3) + (x & 1);
                    if (i < DK && c0 + cc < DV) wS[((bh * NS + id) * DK + i) * DV + c0 + cc] = Sa[u][x];
                }
        }
#else
        {  // S = exp(k + suf - mc)^T exp(lv - nc): thread (tid / 16, tid % 16) a DKP / 16 x HI_AV / 16 register tile
            constexpr int RI = DKP / 16, RJ = HI_AV / 16;
            const int ty = tid / 16, tx = tid % 16;
            ta acc[RI][RJ];
#pragma unroll
            for (int r = 0; r < RI; ++r)
#pragma unroll
                for (int jj = 0; jj < RJ; ++jj) acc[r][jj] = (ta)0;
            for (int s = 0; s < CH; ++s) {
                ta qv[RI], vv[RJ];
#pragma unroll
                for (int r = 0; r < RI; ++r) qv[r] = Qs[s * HI_KLD + ty * RI + r];
#pragma unroll
                for (int jj = 0; jj < RJ; ++jj) vv[jj] = LVs[s * HI_VLD + tx * RJ + jj];
#pragma unroll
                for (int r = 0; r < RI; ++r)
#pragma unroll
                    for (int jj = 0; jj < RJ; ++jj) acc[r][jj] = fma(qv[r], vv[jj], acc[r][jj]);
            }
#pragma unroll
            for (int r = 0; r < RI; ++r)
#pragma unroll
                for (int jj = 0; jj < RJ; ++jj) {
                    const int i = ty * RI + r, cc = tx * RJ + jj;
                    if (i < DK && c0 + cc < DV) wS[((bh * NS + id) * DK + i) * DV + c0 + cc] = acc[r][jj];
                }
        }
#endif
    }
#if HI_TC
    __syncthreads();  // every flag is set; Bs is free (the exact rows' scratch)
    if (!__syncthreads_or(tid < CH && flg[tid])) return;  // (the common case: no row for the exact path)
    for (int t = t0; t < t1; ++t)  // uniform over the block
        if (flg[t])
            hi_intra_exact_row(t, t0, q + (bh * T + g0 + t) * DK, Ks, lam + (bh * T + g0 + t) * L, lv + (bh * T + g0) * DV, ac,
                               Bs, lden + bh * T + g0 + t, lnum + (bh * T + g0 + t) * DV, DK, DV);
#endif
}
