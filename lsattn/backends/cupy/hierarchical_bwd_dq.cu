// The backward's per-chunk kernel hib_dq: dq, dlam (and the decay's row sums) of one chunk, from the chunk's own
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
    ta *Om = sm.Cr, *Dc = sm.Dc;  // the rows' max_j -o_tj; a held slot's delta_t e^-c_t
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
#if HIB_IRD  // (masked: the held slot's own row; hi_snap leaves the rows of slots not held unwritten. z's fallback, slot
            // 0's row, is written wherever a slot is held: the incoming ones by the host, else chunk F's summary)
            m[u] = hib_ld(mj + s * DK, i, i < DK, neg_big());
#else
            m[u] = hib_ld(mj, s * DK + i, i < DK, neg_big());
#endif
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
    {  // each row's max_j -o_tj (the held slots' row shifts c_t: from it and the slot's max_j n_j)
        ta x = neg_big();
        for (int jj = rl; jj < DV; jj += HIB_TPR) x = fmx(x, -Os[tr * HIB_VLD + jj]);
        x = hib_rred<true>(x);
        if (rl == 0) Om[tr] = x;
    }
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
        // g_tj exp(n_j - o_tj - c_t), capped at 64, not HIB_CAP: (G S^T) sums d_v of these times S_ij <= the slot's
        // tokens, past float32 at e^80. The row's shift c_t = min(max(0, max_j n_j + max_j -o_tj - 64), HIB_CSH) (>= the
        // excess of any of its columns) moves into its row factor (Xw + c_t, <= e^HIB_CSH) and delta (Dc = delta e^-c_t):
        // terms of n_j - o_tj up to 64 + HIB_CSH (float32's range; s30: an output -79 behind a -inf value, its terms at
        // e^79 were cut to e^64, dq off 0.41). The slot's max_j n_j by every warp alike (no barrier; from the slot's
        // buffer where it has two, else from global)
        const ta cap = sizeof(ta) == 4 ? (ta)64 : (ta)640;
        ta nms = neg_big();
        for (int jj = tid % 32; jj < DV; jj += 32)
            nms = fmx(nms, HIB_SNB == 2 ? N_[jj] : hib_ld(nb, id * DV + jj, true, (ta)0));
#pragma unroll
        for (int o = 16; o; o >>= 1) nms = fmx(nms, __shfl_xor_sync(0xffffffffu, nms, o));
        auto crow = [&](int t) { return fmn(fmx(nms + Om[t] - cap, (ta)0), HIB_CSH); };
        for (int t = tid; t < CH; t += NT) {
            const bool in = t >= t0 && t < t1;
            const ta c_ = in ? crow(t) : (ta)0;
            Dc[t] = Ds[t] * ex(-c_);
            Xw[t] = in ? Lam[t * HI_LMAX + slot_level(s, t)] + pre[t] - Ls[t] + c_ : lo_v();
        }
        auto gp = [&](int t, int jj, ta n_) {
            const ta x = n_ - Os[t * HIB_VLD + jj] - crow(t);
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
            const ta term = hib_fex(qv[x] + M_[i] + Xw[t]) * (v - Z_[i] * Dc[t]);
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
