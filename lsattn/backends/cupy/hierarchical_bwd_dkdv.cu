// The backward's per-chunk kernel hib_dkdv: dk, dlv (and the decay's row sums) of one chunk, from the chunk's own
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
#if HIB_TC
// hib_pair_ops' X and Y as bf16 pairs along t (hib_dkdv's HIB_DKR: X2 [t / 2][s], rows of HIB_GLD; Y2 [t / 2][c] after
// it, rows of DP + 8; the bits hib_mma_tile packs from X and Y). Ends with a barrier.
template <int DP, typename FX, typename FY>
__device__ __forceinline__ void hib_pair_ops2(unsigned* X2, FX x, FY y, int t0, int t1, const ta* Fl) {
    const int tid = threadIdx.x;
    unsigned* const Y2 = X2 + (CH / 2) * HIB_GLD;
    auto on = [&](int t) { return t >= t0 && t < t1 && Fl[t] == (ta)0; };
    for (int idx = tid; idx < (CH / 2) * CH; idx += NT) {
        const int t = 2 * (idx / CH), s = idx % CH;
        auto xv = [&](int t2) { return (s <= t2 && s >= t0 && on(t2)) ? x(t2, s) : (ta)0; };
        X2[(t / 2) * HIB_GLD + s] = pack2(xv(t), xv(t + 1));
    }
    for (int idx = tid; idx < (CH / 2) * DP; idx += NT) {
        const int t = 2 * (idx / DP), c = idx % DP;
        auto yv = [&](int t2) { return on(t2) ? y(t2, c) : (ta)0; };
        Y2[(t / 2) * (DP + 8) + c] = pack2(yv(t), yv(t + 1));
    }
    __syncthreads();
}
#endif
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
#if HIB_DKR
    unsigned *Vp2 = reinterpret_cast<unsigned*>(Bt + DKP * HIB_TCL), *Bt2 = Vp2 + (DVP / 2) * HIB_GLD;  // E^T, B^T as pairs
    ta* const MB = reinterpret_cast<ta*>(Bt2 + (DKP / 2) * HIB_GLD);  // M of each U buffer's right block
#endif
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
    ta *mm = sm.mm, *nn = sm.nn, *R = sm.R, *Fl = sm.Fl;
    // row tid's lden and exact-row flag loaded beside hib_chunk's tiles (one memory latency, not two more after it)
    static_assert(CH <= NT, "hib_dkdv's rows per thread");
    const bool tin = tid >= t0 && tid < t1;
#if HIB_IRD  // (masked: the chunk's first row of the call, which hib_dq wrote; g0 < 0 in the first chunk after a state)
    const ta rl = hib_ld(lden + bh * T + g0 + t0, tid - t0, tin, (ta)0), rf = hib_ld(Fg + bh * T + g0 + t0, tid - t0, tin, (ta)0);
#else
    const ta rl = hib_ld(lden + bh * T + g0, tid, tin, (ta)0), rf = hib_ld(Fg + bh * T + g0, tid, tin, (ta)0);
#endif
    hib_keep(rl), hib_keep(rf);
    hib_chunk(q, k, lv, lam, a, gm, om, delta, Qs, Ks, LVs, Gs, Os, Lam, ac, pre, Ds, bh, g0, T, DK, DV, L, alo);
    if (tid < CH) {
        Ls[tid] = tin ? rl : (ta)0;
        Fl[tid] = tin ? rf : (ta)0;
        ta x = (ta)0;  // a_{s+1} + ... + a_{chunk end}, summed over the stretch (its loads not behind the adds)
#pragma unroll
        for (int u = 1; u < CH; ++u)
            if (u > tid) x += ac[u];
        suf[tid] = x;
    }
    __syncthreads();
    hib_pairs(sm, t0, t1, Pg + bh * T * CH, Dg + bh * T * CH, g0);
    hib_shifts(sm, t0, t1, DK, DV);  // hib_dq's (its exact rows in Fg, stored above)
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
    constexpr int W8 = NT / 32, PK = ((CH / 16) * (DKP / 8) + W8 - 1) / W8, PV = ((CH / 16) * (DVP / 8) + W8 - 1) / W8;
    const int g8 = (tid & 31) >> 2, t4 = tid & 3;
    float ak[PK][4] = {}, av[PV][4] = {};  // tile p of this warp (hib_warp_tiles), element e at (rr, cc)
    auto rr = [&](int m0, int e) { return m0 + g8 + 8 * (e >> 1); };
    auto cc = [&](int n0, int e) { return n0 + 2 * t4 + (e & 1); };
    // f(p, acc, m0, n0) for this warp's tiles p of dk (CH x DKP) / of dlv (CH x DVP) and their accumulators
    auto dk_tiles = [&](auto f) { hib_warp_tiles<CH, DKP, PK>([&](int p, int m0, int n0) { f(p, ak[p], m0, n0); }); };
    auto dv_tiles = [&](auto f) { hib_warp_tiles<CH, DVP, PV>([&](int p, int m0, int n0) { f(p, av[p], m0, n0); }); };
    auto pair_prod = [&](auto tiles, int ldy, auto epi) {  // acc = epi(X^T Y) of hib_pair_ops' operands, then a barrier
        tiles([&](int, float (&acc)[4], int m0, int n0) {
            float c[4] = {0.f, 0.f, 0.f, 0.f};
            const unsigned* X2 = reinterpret_cast<const unsigned*>(F2);
            hib_mma_tile<CH>(c, X2, HIB_GLD, X2 + (CH / 2) * HIB_GLD, ldy, m0, n0);
#pragma unroll
            for (int e = 0; e < 4; ++e) acc[e] = epi(rr(m0, e), cc(n0, e), c[e]);
        });
        __syncthreads();
    };
    hib_pair_ops2<DKP>(reinterpret_cast<unsigned*>(F2), wx, ay, t0, t1, Fl);  // dk_si = B_si sum_t W_ts A_ti
    pair_prod(dk_tiles, DKP + 8, bk);
    hib_pair_ops2<DVP>(reinterpret_cast<unsigned*>(F2), px, gy, t0, t1, Fl);  // dlv_sj = E_sj sum_t P_ts G'_tj
    pair_prod(dv_tiles, DVP + 8, ev);
    // (the exact rows below and the end of the kernel read and write them in shared memory)
    auto dk_mem = [&](bool load) {  // dk and dlv between the registers and DKs / DVs
        auto rows = [&](auto tiles, ta* X, int ld) {
            tiles([&](int, float (&acc)[4], int m0, int n0) {
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                    ta& y = X[rr(m0, e) * ld + cc(n0, e)];
                    if (load) acc[e] = y;
                    else y = acc[e];
                }
            });
        };
        rows(dk_tiles, DKs, HIB_KLD);
        rows(dv_tiles, DVs, HIB_VLD);
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
        dk_mem(false);  // (the barrier after Ex orders these before the rows' reads)
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
    const int jw = tid % DVP;
    auto ev0 = [&](int s, int jj) {  // E_sj
        return (jj < DV && s >= t0 && s < t1) ? hib_fex(LVs[s * HIB_VLD + jj] - nn[jj]) : (ta)0;
    };
#if HIB_DKR
    constexpr int NJ = (DVP / 2) * CH, NI = (DKP / 2) * CH;  // (HIB_DKR) E^T's and B^T's pairs: row s = tid % CH
    static_assert(NT % CH == 0 && DKP <= NT, "hib_dkdv's E^T and B^T rows per thread, M's copy");
#pragma unroll
    for (int u = 0; u < (NJ + NT - 1) / NT; ++u) {  // E^T, the same for every R: columns jj, jj + 1 of row s
        const int s = tid % CH, jj = 2 * ((tid + u * NT) / CH);
        if (NJ % NT && jj >= DVP) break;
        const ta e0 = ev0(s, jj), e1 = ev0(s, jj + 1);
        Vpt[jj * HIB_TCL + s] = e0, Vpt[(jj + 1) * HIB_TCL + s] = e1;
        Vp2[(jj / 2) * HIB_GLD + s] = pack2(e0, e1);
    }
#else
    for (int idx = tid; idx < CH * DVP; idx += NT) {  // E^T, the same for every R (jj = jw)
        const int s = idx / DVP, jj = idx % DVP;
        Vpt[jj * HIB_TCL + s] = ev0(s, jj);
    }
#endif
    const ta ecap = ex(HIB_CAP);
    // R's U copied by cp.async into one of HIB_UNB buffers (U [i][j], rows of HIB_SLD) over the pairs' tiles (with two,
    // the next R's in flight during this one's work); U'' formed in place (each thread its own elements: column jw),
    // then read as the k-major B of (B U'') and the n-major B of (E U''^T). Two barriers per R (three with one buffer):
    // U in and the previous R's products done; U'', B^T, Z stored.
    auto copy_r = [&](int buf, i64 o) {  // R's U (HIB_DKR: and M) into buffer buf by cp.async, committed
        hib_copy_tile(UB + buf * DKP * HIB_SLD, U + o * DK * DV, DK, DV);
#if HIB_DKR
        if (tid < DKP) cp_async_ta(MB + buf * DKP + tid, Mb + o * DK + (tid < DK ? tid : 0), tid < DK);
#endif
        cp_async_commit();
    };
    if (HIB_UNB == 2 && lq) copy_r(0, block_of(lq));
#if HIB_DKR
    if (any) dk_mem(true);  // (after the barrier above: the exact rows' updates)
#endif
    for (int lp = lq, h = 0; lp; lp = lq, ++h) {
        const i64 o = block_of(lp);
        lq = next_lp(lp + 1);
        ta* const U_ = UB + (HIB_UNB == 2 ? h & 1 : 0) * DKP * HIB_SLD;
        if (HIB_UNB == 1) {
            __syncthreads();  // the previous R's products are done with the buffer
            copy_r(0, o);
        }
#if !HIB_DKR
        const int im = tid % DKP;
#if HIB_IRD  // (masked: R's own row, not right block 0's, which no kernel writes)
        const ta mi = hib_ld(Mb + o * DK, im, im < DK, (ta)0);
#else
        const ta mi = hib_ld(Mb, o * DK + im, im < DK, (ta)0);
#endif
#endif
#if HIB_IRD
        const ta wj = hib_ld(Wb + o * DV, jw, jw < DV, (ta)0) + nn[jw];
#else
        const ta wj = hib_ld(Wb, o * DV + jw, jw < DV, (ta)0) + nn[jw];
#endif
        const ta fj = hib_excap(wj);  // e^(W_j + nn_j) of this thread's column
        cp_async_wait_all();
        __syncthreads();
        if (HIB_UNB == 2 && lq) copy_r((h + 1) & 1, block_of(lq));
#pragma unroll
        for (int x = 0; x < DKP * DVP / NT; ++x) {  // U''_ij = U_ij e^(W_j + nn_j) (jj = jw)
            const int idx = tid + x * NT, at = (idx / DVP) * HIB_SLD + idx % DVP;
            U_[at] = hib_scale(U_[at], wj, fj, ecap);
        }
        for (int i = tid; i < DKP; i += NT) Zs[i] = i < DK ? Z[o * DK + i] : (ta)0;
#if HIB_DKR
        const ta* const mb = MB + (HIB_UNB == 2 ? h & 1 : 0) * DKP;
#pragma unroll
        for (int u = 0; u < (NI + NT - 1) / NT; ++u) {  // columns i, i + 1 of row s
            const int s = tid % CH, i = 2 * ((tid + u * NT) / CH);
            if (NI % NT && i >= DKP) break;
            auto b = [&](int i2) {  // B_si
                return (i2 < DK && s >= t0 && s < t1) ? hib_fex(Ks[s * HIB_KLD + i2] + suf[s] + gap + mb[i2]) : (ta)0;
            };
            const ta b0 = b(i), b1 = b(i + 1);
            Bt[i * HIB_TCL + s] = b0, Bt[(i + 1) * HIB_TCL + s] = b1;
            Bt2[(i / 2) * HIB_GLD + s] = pack2(b0, b1);
        }
#else
        for (int idx = tid; idx < CH * DKP; idx += NT) {  // i = im
            const int s = idx / DKP, i = idx % DKP;
            Bt[i * HIB_TCL + s] = (i < DK && s >= t0 && s < t1) ? hib_fex(Ks[s * HIB_KLD + i] + suf[s] + gap + mi) : (ta)0;
        }
#endif
        __syncthreads();
#if HIB_DKR
        {
            float c[PK][4] = {};  // (E U''^T)_si
            hib_warp_mma<CH, DKP, PK, DVP, true>(c, Vp2, HIB_GLD, U_, HIB_SLD);
            dk_tiles([&](int p, float (&acc)[4], int m0, int n0) {  // dk_si += B_si ((E U''^T)_si - Z_i)
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                    const int s = rr(m0, e), i = cc(n0, e);
                    acc[e] = fma(Bt[i * HIB_TCL + s], c[p][e] - Zs[i], acc[e]);
                }
            });
        }
        {
            float c[PV][4] = {};  // (B U'')_sj
            hib_warp_mma<CH, DVP, PV, DKP>(c, Bt2, HIB_GLD, U_, HIB_SLD);
            dv_tiles([&](int p, float (&acc)[4], int m0, int n0) {  // dlv_sj += E_sj (B U'')_sj
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                    const int s = rr(m0, e), c2 = cc(n0, e);
                    acc[e] = fma(Vpt[c2 * HIB_TCL + s], c[p][e], acc[e]);
                }
            });
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
    dk_mem(false);  // (each element this thread's alone: before the barrier that the stores below read after)
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
