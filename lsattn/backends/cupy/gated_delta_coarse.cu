// Log-linear Gated DeltaNet: gd_scan's two-tier form, its coarse slots (gd_cgroup, gd_coarse, gd_coarse_g, gd_cfill)
// and gd_tier3 (host: gated_delta.py's tier_plan, _compile.CupyOps.gd_tiers). Compiled after gated_delta.cu and
// gated_delta_tier.cu (the two-tier scan's description, the fine tier gd_tier1 / gd_tier1x; gd_tier_walk, GD_TBW,
// the tf32 operands, the switches both tiers read). (Split from gated_delta_tier.cu in session 20, text unchanged.)

// The coarse slots at the periods' starts (Sb, compact: entry popsum(pp) + rank of level cl's bit cl - 1 among pp's
// set bits), gd_scan's chains at the periods' granularity: gd_coarse (session 14's: one chain per (level, period of it)
// over the periods, its top chain nP - 1 steps of ~3-4 us: 0.57 ms at 32K) up to 64 periods, else the grouped form in
// three launches (0.51 ms at 32K, 64 columns; slower at 8K and below; benchmarks/NOTES.md "Session 15 — s15b16"):
// - gd_cgroup: per group q of GD_CG = 4 periods, its transfer's prefixes P_k(q) = Z_{4q+k-1} .. Z_{4q} (k = 2, 3, 4;
//   P_1 = Z_{4q}) and its keys at its end, Tg_q = sum_k P_4 P_k^-1 Tot_{4q+k-1} (as the walk S <- Z S + Tot): short
//   walks, all groups in parallel.
// - gd_coarse_g: the chains of levels 1, 2 over periods (transition Z, keys Tot) and of levels >= 3 over groups
//   (transition P_4, keys Tg: a group's four periods in one step; a level's periods are whole groups), writing the
//   slots at the periods (groups' first periods) of each period's second half: the top chain nP / 4 - 1 steps.
// - gd_cfill: the slots of levels >= 3 at the periods inside a group, S_l(4q + k) = P_k(q) S_l(4q), in parallel; or
//   (gd_tier3's fill, gated_delta.T3FILL, s19c16) none: gd_tier3 reads them as (Qp P_k(q)) S_l(4q). (s19c16's
//   supergroups of 16 periods for levels >= 5 were slower on the H200 and removed: benchmarks/NOTES.md "Session 20 —
//   s20s".)
// The coarse kernels' columns per block: gd_coarse (every level over periods, session 14's chains) GD_BW; the grouped
// form (gd_cgroup, gd_coarse_g, gd_cfill) GD_CGBW, float32 64 (session 15: at 32 columns the grouped form lost to the
// periods' chains at every size, at 64 it won at 32K; _compile.Config.coarse_group_bw)
constexpr int GD_CGBW = GD_TC ? 64 : GD_BW;
constexpr int GD_CG = 4;              // periods per group (_compile.Config / gated_delta.Tier)
constexpr int GD_CMINB = GD_TC && DKP <= 64 ? 3 : 1;  // blocks per SM the coarse kernels' registers must allow

// One block's walk over q = q0 + 1 .. q1 - 1 (CBW columns): S(q0 + 1) in buffer (q0 + 1) & 1 of Ss (stored by the
// caller; the loop's first barrier publishes it); at each q, put(q, S(q)) (S in shared memory, row stride CBW + 8),
// then S(q + 1) = A(q) S(q) + T(q) (A(q): a DK x DK row-major matrix copied one step ahead into Zs; T(q): ncol
// columns of a row-major matrix (row stride tld) or null). One product per step, two buffers of A and of S: one
// barrier a step. Shared memory: Config.gd_coarse_smem().
// T(q + 1)'s entries are loaded into registers during step q and put(q) follows the step's product (s19c16: its
// stores' address arithmetic off the chain). Session 15's order (T(q) loaded at step q before its product) gave the
// same sums and measured the same on the H200 (session 20: 32K scan bf16 1.665 / 1.673 ms); it went with its switch.
template <int CBW, typename AF, typename TF, typename PF>
__device__ __forceinline__ void gd_cchain(ta* Zs, ta* Ss, int q0, int q1, int DK, int ncol, i64 tld, AF amat, TF tadd,
                                          PF put) {
    constexpr int LDS = CBW + 8, ZS = DKP * GD_LDQ, SS = DKP * LDS, RB = DKP / 16, TWB = GdWarpTiles<RB, CBW>::NTL;
    const GdWarpTiles<RB, CBW> wb;
    const int K8 = (DK + 7) / 8 * 8;
    const bool vec = DK % (16 / (int)sizeof(ta)) == 0;
    auto copy_a = [&](int q) {  // A(q) into buffer q & 1 (steps up to the last but one: the last has no product)
        if (q + 1 < q1) gd_copy<DKP, DKP>(Zs + (q & 1) * ZS, GD_LDQ, amat(q), DK, DK, DK, vec);
        cp_async_commit();
    };
    auto load_t = [&](int q, ta (&tv)[TWB][4]) {  // T(q)'s entries of the thread's tiles (zero: none, or no T)
        const ta* t = q + 1 < q1 && wb.on ? tadd(q) : nullptr;
#pragma unroll
        for (int it = 0; it < TWB; ++it)
#pragma unroll
            for (int x = 0; x < 4; ++x) {
                const int kk = wb.row(x), cc = wb.col(it, x);
                tv[it][x] = t && kk < DK && cc < ncol ? t[kk * tld + cc] : (ta)0;
            }
    };
    ta tv[TWB][4];
    load_t(q0 + 1, tv);
    copy_a(q0 + 1);
    for (int q = q0 + 1; q < q1; ++q) {
        const ta* Si = Ss + (q & 1) * SS;
        ta* So = Ss + (~q & 1) * SS;
        cp_async_wait<0>();
        __syncthreads();  // A(q) and S(q) complete; the other buffers' last readers done
        copy_a(q + 1);    // into the buffer step q - 1 read
        if (q + 1 == q1 || !wb.on) {
            put(q, Si);
            continue;
        }
        ta tn[TWB][4];
        load_t(q + 1, tn);  // (the next step's, in flight during this one)
        ta acc[1][1][TWB][4] = {};
        const unsigned use[1] = {1u};
        gd_mm<1, 1, TWB>(acc, Zs + (q & 1) * ZS, nullptr, GD_LDQ, Si, 0, LDS, wb.r0, wb.n0, K8, use);
#pragma unroll
        for (int it = 0; it < TWB; ++it)
#pragma unroll
            for (int x = 0; x < 4; ++x) So[wb.row(x) * LDS + wb.col(it, x)] = acc[0][0][it][x] + tv[it][x];
        put(q, Si);
#pragma unroll
        for (int it = 0; it < TWB; ++it)
#pragma unroll
            for (int x = 0; x < 4; ++x) tv[it][x] = tn[it][x];
    }
    cp_async_wait<0>();
}
// S's ncol columns (shared, row stride CBW + 8) into dst (row stride dld)
// (RND: as its tf32 rounding, GD_SBR)
template <int CBW, bool RND = false>
__device__ __forceinline__ void gd_cput(ta* __restrict__ dst, i64 dld, const ta* Si, int DK, int ncol) {
    for (int idx = threadIdx.x; idx < DKP * CBW; idx += NT) {
        const int kk = idx / CBW, cc = idx % CBW;
        if (kk < DK && cc < ncol) {
            if constexpr (RND) dst[kk * dld + cc] = __uint_as_float(to_tf32(Si[kk * (CBW + 8) + cc]));
            else dst[kk * dld + cc] = Si[kk * (CBW + 8) + cc];
        }
    }
}
// S(q0 + 1) = ncol columns of src (row stride sld), zero-padded, into buffer (q0 + 1) & 1
template <int CBW>
__device__ __forceinline__ void gd_cinit(ta* Ss, int q0, const ta* __restrict__ src, i64 sld, int DK, int ncol) {
    ta* S = Ss + ((q0 + 1) & 1) * DKP * (CBW + 8);
    for (int idx = threadIdx.x; idx < DKP * CBW; idx += NT) {
        const int kk = idx / CBW, cc = idx % CBW;
        S[kk * (CBW + 8) + cc] = kk < DK && cc < ncol ? src[kk * sld + cc] : (ta)0;
    }
}

// gd_cgroup: per (group q, sequence) its NCK column blocks of P_k(q) (k = 2 .. 4, where period 4q + k - 1 < nP - 1 ..
// as far as some period reads them: 4q + k < nP), then its NCB blocks of Tg_q (where 4q + 4 < nP: read in a level's
// first half). Pc (BH, nG, 3, DK, DK): P_2, P_3, P_4; Tg (BH, nG, DK, DV).
extern "C" __global__ void __launch_bounds__(NT, GD_CMINB) gd_cgroup(
    const ta* __restrict__ Z, const ta* __restrict__ Tot,  // gd_tier1's
    ta* __restrict__ Pc, ta* __restrict__ Tg,              // out
    int DK, int DV, int nP, int BH) {
    extern __shared__ __align__(16) unsigned char smem_raw[];
    ta* Zs = reinterpret_cast<ta*>(smem_raw);  // [buffer][row][k]
    ta* Ss = Zs + 2 * DKP * GD_LDQ;            // [buffer][kk][col]
    check_smem((2 * DKP * GD_LDQ + 2 * DKP * (GD_CGBW + 8)) * sizeof(ta));
    pdl_wait();  // (gated_delta.PDL: gd_tier1x's, gd_tier1's outputs read from here on)
    const int NCK = (DK + GD_CGBW - 1) / GD_CGBW, NCB = (DV + GD_CGBW - 1) / GD_CGBW, nG = (nP + GD_CG - 1) / GD_CG;
    const int q = (int)(blockIdx.x / ((i64)BH * (NCK + NCB))), role = (int)(blockIdx.x % (NCK + NCB)), p0 = GD_CG * q;
    const i64 bh = blockIdx.x / (NCK + NCB) % BH;
    auto zq = [&](int pp) { return Z + (bh * nP + pp) * DK * DK; };
    if (role < NCK) {  // P_k(q)'s columns c0 ..: the walk S <- Z_pp S from S = Z_{p0}'s columns
        const int c0 = role * GD_CGBW, q1 = min(p0 + GD_CG + 1, nP);
        if (q1 <= p0 + 2) return;
        ta* pc = Pc + (bh * nG + q) * 3 * DK * DK + c0;
        gd_cinit<GD_CGBW>(Ss, p0, zq(p0) + c0, DK, DK, min(GD_CGBW, DK - c0));
        gd_cchain<GD_CGBW>(Zs, Ss, p0, q1, DK, 0, 0, zq, [](int) { return (const ta*)nullptr; }, [&](int pp, const ta* Si) {
            if (pp >= p0 + 2) gd_cput<GD_CGBW>(pc + (i64)(pp - p0 - 2) * DK * DK, DK, Si, DK, min(GD_CGBW, DK - c0));
        });
    } else {  // Tg_q's columns c0 ..: the walk S <- Z_pp S + Tot_pp from S = Tot_{p0}
        const int c0 = (role - NCK) * GD_CGBW;
        if (p0 + GD_CG >= nP) return;
        const i64 slot_sz = (i64)DK * DV;
        auto tq = [&](int pp) { return Tot + (bh * nP + pp) * slot_sz + c0; };
        gd_cinit<GD_CGBW>(Ss, p0, tq(p0), DV, DK, min(GD_CGBW, DV - c0));
        gd_cchain<GD_CGBW>(Zs, Ss, p0, p0 + GD_CG + 1, DK, min(GD_CGBW, DV - c0), DV, zq, tq, [&](int pp, const ta* Si) {
            if (pp == p0 + GD_CG) gd_cput<GD_CGBW>(Tg + (bh * nG + q) * slot_sz + c0, DV, Si, DK, min(GD_CGBW, DV - c0));
        });
    }
}

// gd_coarse: one block per (coarse level cl, its period of 2^cl periods from base with reads, sequence, column block),
// the longest first: S(base + 1) = Tot_base, S(pp + 1) = Z_pp S(pp) (+ Tot_pp in the first half, pp < mid = base +
// 2^(cl-1)), written into Sb at each pp >= mid; levels cl >= 3 over the groups (S(4(q + 1)) = P_4(q) S(4q) (+ Tg_q)),
// written at the groups' first periods only (gd_cfill: the others): the grouped form (GRP: gd_coarse_g; from 65 periods,
// gated_delta.COARSE_GROUP_PERIODS), else every level over periods (gd_coarse, session 14's chains).
template <int CBW, bool GRP>
__device__ __forceinline__ void gd_coarse_body(const ta* __restrict__ Z, const ta* __restrict__ Tot, const ta* __restrict__ Pc,
                                               const ta* __restrict__ Tg, ta* __restrict__ Sb, int DK, int DV, int nP, int NCL,
                                               int BH) {
    extern __shared__ __align__(16) unsigned char smem_raw[];
    ta* Zs = reinterpret_cast<ta*>(smem_raw);  // [buffer][row][k]
    ta* Ss = Zs + 2 * DKP * GD_LDQ;            // [buffer][kk][col]
    check_smem((2 * DKP * GD_LDQ + 2 * DKP * (CBW + 8)) * sizeof(ta));
    pdl_wait();  // (gated_delta.PDL: the previous kernels' outputs read from here on)
    const int NCB = (DV + CBW - 1) / CBW, nG = (nP + GD_CG - 1) / GD_CG;
    const i64 per = (i64)BH * NCB;
    i64 r = blockIdx.x / per;
    int cl = NCL;
    for (; cl > 1; --cl) {  // level cl's periods with reads: base + 2^(cl-1) < nP
        const i64 cnt = ((nP - 1 - (1ll << (cl - 1))) >> cl) + 1;
        if (r < cnt) break;
        r -= cnt;
    }
    const i64 bh = blockIdx.x / NCB % BH, slot_sz = (i64)DK * DV, e0 = bh * gd_popsum(nP);
    const int c0 = (int)(blockIdx.x % NCB) * CBW, base = (int)(r << cl), mid = base + (1 << (cl - 1));
    const int end = min(nP, base + (1 << cl)), nc = min(CBW, DV - c0);
    const int sh = GRP && cl >= 3 ? 2 : 0;  // log2 of the chain's step in periods (GD_CG = 4)
    const int q0 = base >> sh, qm = mid >> sh, q1 = (end + (1 << sh) - 1) >> sh;
    const ta* A0 = sh ? Pc : Z;  // the step's transfer and keys: a period's Z, Tot; a group's P_4, Tg
    const ta* T0 = sh ? Tg : Tot;
    const int nq = sh ? nG : nP, as = sh ? 3 : 1, ao = sh ? 2 : 0;
    auto amat = [&](int q) { return A0 + ((bh * nq + q) * as + ao) * DK * DK; };
    auto tadd = [&](int q) { return q >= qm ? (const ta*)nullptr : T0 + (bh * nq + q) * slot_sz + c0; };
    gd_cinit<CBW>(Ss, q0, T0 + (bh * nq + q0) * slot_sz + c0, DV, DK, nc);
    gd_cchain<CBW>(Zs, Ss, q0, q1, DK, nc, DV, amat, tadd, [&](int q, const ta* Si) {
        const int pp = q << sh;  // the slot's entry: after those of pp's lower set bits
        if (q >= qm)
            gd_cput<CBW, GD_SBR>(Sb + (e0 + gd_popsum(pp) + __popcll(pp & ((1 << (cl - 1)) - 1))) * slot_sz + c0, DV, Si, DK, nc);
    });
}
extern "C" __global__ void __launch_bounds__(NT, GD_CMINB) gd_coarse(
    const ta* __restrict__ Z, const ta* __restrict__ Tot,  // gd_tier1's
    const ta* __restrict__ Pc, const ta* __restrict__ Tg,  // unused (gd_coarse_g's)
    ta* __restrict__ Sb,                                   // (BH, popsum(nP), DK, DV) out: the coarse slots at each period's start
    int DK, int DV, int nP, int NCL, int BH) {
    gd_coarse_body<GD_BW, false>(Z, Tot, Pc, Tg, Sb, DK, DV, nP, NCL, BH);
}
extern "C" __global__ void __launch_bounds__(NT, GD_CMINB) gd_coarse_g(
    const ta* __restrict__ Z, const ta* __restrict__ Tot,  // gd_tier1's
    const ta* __restrict__ Pc, const ta* __restrict__ Tg,  // gd_cgroup's
    ta* __restrict__ Sb,                                   // as gd_coarse's (levels >= 3 at the groups' first periods)
    int DK, int DV, int nP, int NCL, int BH) {
    gd_coarse_body<GD_CGBW, true>(Z, Tot, Pc, Tg, Sb, DK, DV, nP, NCL, BH);
}

// gd_cfill: per (period pp = 4q + k, 0 < k < 4, q > 0; sequence; column block) its slots of levels >= 3 (the set bits of
// q), S_l(pp) = P_k(q) S_l(4q) (gd_coarse's entries of period 4q, in the same order after pp's entries of levels 1, 2),
// one DK x DK x GD_CGBW product a slot, the next slot copied during it. Shared memory (Config.smem("gd_cfill")): P_k(q),
// two buffers of a slot.
extern "C" __global__ void __launch_bounds__(NT, GD_CMINB) gd_cfill(
    const ta* __restrict__ Z, const ta* __restrict__ Pc,  // gd_tier1's, gd_cgroup's
    ta* __restrict__ Sb,                                  // in: gd_coarse's entries; out: those of levels >= 3 inside groups
    int DK, int DV, int nP, int BH) {
    extern __shared__ __align__(16) unsigned char smem_raw[];
    constexpr int SS = DKP * (GD_CGBW + 8), RB = DKP / 16, TWB = GdWarpTiles<RB, GD_CGBW>::NTL;
    ta* As = reinterpret_cast<ta*>(smem_raw);  // [row][k]
    ta* Ss = As + DKP * GD_LDQ;                // [buffer][kk][col]
    check_smem((DKP * GD_LDQ + 2 * SS) * sizeof(ta));
    pdl_wait();  // (gated_delta.PDL: gd_coarse_g's slots read from here on)
    const int NCB = (DV + GD_CGBW - 1) / GD_CGBW, nG = (nP + GD_CG - 1) / GD_CG, K8 = (DK + 7) / 8 * 8;
    const int pp = (int)(blockIdx.x / ((i64)BH * NCB)), c0 = (int)(blockIdx.x % NCB) * GD_CGBW, q = pp >> 2, k = pp & 3;
    const i64 bh = blockIdx.x / NCB % BH, slot_sz = (i64)DK * DV, e0 = bh * gd_popsum(nP);
    const int ns = __popcll(q);
    if (!k || !ns) return;
    const bool vec = DK % (16 / (int)sizeof(ta)) == 0, vs = DV % (16 / (int)sizeof(ta)) == 0;
    const ta* src = Sb + (e0 + gd_popsum(GD_CG * q)) * slot_sz + c0;  // period 4q's slots (all of levels >= 3)
    ta* dst = Sb + (e0 + gd_popsum(pp) + __popcll(k)) * slot_sz + c0;   // pp's, after its levels 1, 2
    gd_copy<DKP, DKP>(As, GD_LDQ, k == 1 ? Z + (bh * nP + GD_CG * q) * DK * DK : Pc + ((bh * nG + q) * 3 + k - 2) * DK * DK,
                      DK, DK, DK, vec);
    auto load = [&](int j) {
        gd_copy<DKP, GD_CGBW>(Ss + (j & 1) * SS, (GD_CGBW + 8), src + j * slot_sz, DV, DK, min(GD_CGBW, DV - c0), vs);
        cp_async_commit();
    };
    load(0);
    const GdWarpTiles<RB, GD_CGBW> wb;
    for (int j = 0; j < ns; ++j) {
        if (j + 1 < ns) load(j + 1);  // buffer (j + 1) & 1: its last readers passed the previous barrier
        else cp_async_commit();
        cp_async_wait<1>();
        __syncthreads();  // P_k and slot j in place
        if (wb.on) {
            ta acc[1][1][TWB][4] = {};
            const unsigned use[1] = {1u};
            gd_mm<1, 1, TWB>(acc, As, nullptr, GD_LDQ, Ss + (j & 1) * SS, 0, (GD_CGBW + 8), wb.r0, wb.n0, K8, use);
#pragma unroll
            for (int it = 0; it < TWB; ++it)
#pragma unroll
                for (int x = 0; x < 4; ++x) {
                    const int kk = wb.row(x), cc = wb.col(it, x);
                    if (kk < DK && c0 + cc < DV) dst[j * slot_sz + (i64)kk * DV + cc] = gd_sbr(acc[0][0][it][x]);
                }
        }
        __syncthreads();  // slot j's buffer read: the copy of slot j + 2 may overwrite it
    }
    cp_async_wait<0>();
}

#if GD_T3WALK_SET  // session 13's gd_tier3 (a timing build): per (period, pair of held coarse slots) a walk of its chunks
extern "C" __global__ void __launch_bounds__(NT, GD_T3MINB) gd_tier3(
    const gd_e* __restrict__ qe, const gd_e* __restrict__ ek, const gd_e* __restrict__ ph, const gd_e* __restrict__ Hc,
    const ta* __restrict__ gc, const ta* __restrict__ lam,  // as gd_scan's
    ta* __restrict__ out,                                   // (BH, n, CH, DV)  + the reads of levels > GD_TM
    const ta* __restrict__ Sb,                              // gd_coarse's
    int T, int DK, int DV, int L, int n, int nP, int NPR, int BH) {  // NPR: pairs of coarse slots per period
    check_smem(GD_TSMEM);
    const int NCB = (DV + GD_TBW - 1) / GD_TBW;
    const i64 per = (i64)BH * NCB, b = blockIdx.x;
    const int pp = (int)(b / (NPR * per)), g = (int)(b / per % NPR);
    const i64 bh = b / NCB % BH;
    const int gs = min(GD_TM, __popcll(pp) - GD_TM * g);
    if (gs <= 0) return;
    int lev[GD_TM] = {}, rk = 0;
    for (int cl = 0; (pp >> cl) > 0; ++cl)  // the block's slots: ranks GD_TM g .. of pp's set bits
        if ((pp >> cl) & 1) {
            if (rk >= GD_TM * g && rk < GD_TM * g + gs) lev[rk - GD_TM * g] = GD_TM + cl + 1;
            ++rk;
        }
    const i64 slot_sz = (i64)DK * DV;
    gd_tier_walk<GT_TOP>(qe, ek, ph, Hc, gc, lam, out, nullptr, Sb + (bh * gd_popsum(nP) + gd_popsum(pp) + GD_TM * g) * slot_sz,
                 slot_sz, T, DK, DV, L, n, DV, bh, (int)(b % NCB) * GD_TBW, pp * GD_TP, min(n, (pp + 1) * GD_TP), lev, gs);
}
#else
// gd_tier3's chunks per block (GD_T3R, 1, 2 or 4 of one period: rows GD_T3R CH): each slot's copy serves the reads of
// GD_T3R chunks (session 14: one chunk a block, its ~2.5 slots' copies dependent L2 round trips for one small product
// each; benchmarks/NOTES.md "Session 15 — s15b16"): the most that fit 2 blocks per SM by shared memory
// (Config.tier3_chunks; a timing build may set it)
constexpr int GD_T3SMAX = 113 * 1024;  // shared memory for 2 blocks per SM (_compile.Config.tier3_chunks)
// (Qp's rows in gd_e: GD_H16's 16-bit tile)
constexpr int gd_t3_smem(int R) { return R * CH * GD_LDQE * GD_E2 + 2 * (DKP * GD_TLDS + R * CH) * (int)sizeof(ta); }
#ifdef GD_T3R_SET
constexpr int GD_T3R = GD_T3R_SET;
#else
constexpr int GD_T3R = gd_t3_smem(4) <= GD_T3SMAX ? 4 : (gd_t3_smem(2) <= GD_T3SMAX ? 2 : 1);
#endif
constexpr int GD_T3SMEM = gd_t3_smem(GD_T3R);
static_assert(GD_T3R == 1 || GD_T3R == 2 || GD_T3R == 4, "gd_tier3's chunks per block: 1, 2 or 4 of a period");
static_assert(GD_T3R * CH <= NT, "a thread per token for the read weights");
// The warp's tiles of gd_tier3's (GD_T3R CH) x GD_TBW product: RW row blocks of 16 rows from r0 (every RW-th), NTL
// column tiles of 8 from n0; 8 warps over RB3 = GD_T3R CH / 16 row blocks (fewer tiles than warps: the first warps).
struct GdT3Tiles {
    static constexpr int RB3 = GD_T3R * CH / 16, NT8 = GD_TBW / 8, TILES = RB3 * NT8;
    static constexpr int RW = RB3 >= 8 ? RB3 / 8 : 1;                            // row blocks per warp
    static constexpr int NTL = RB3 >= 8 ? NT8 : (TILES >= 8 ? TILES / 8 : 1);  // column tiles per warp
    static constexpr int WPR = NT8 / NTL;                                      // warps per row block
    int r0, n0;
    bool on;
    __device__ __forceinline__ GdT3Tiles() {
        const int w = threadIdx.x / 32;
        on = w < TILES / (RW * NTL);
        r0 = 16 * (w / WPR);
        n0 = 8 * NTL * (w % WPR);
    }
    // row block a's rows (stride 8 row blocks between a warp's own), as mma's C fragment
    __device__ __forceinline__ int row(int a, int x) const { return r0 + 128 * a + threadIdx.x % 32 / 4 + 8 * (x >> 1); }
    __device__ __forceinline__ int col(int i, int x) const { return n0 + 8 * i + 2 * (threadIdx.x % 4) + (x & 1); }
};
// acc += (w Q) S over the warp's tiles: Q [t][kk] (row stride GD_LDQ; rows weighted by w in the A fragments), S
// [kk][col] (row stride GD_TLDS), K a multiple of 8 (a template: a float64 build compiles the tensor-core text unrun)
template <typename Acc>
__device__ __forceinline__ void gd_t3_mm(Acc (&acc)[GdT3Tiles::RW][GdT3Tiles::NTL][4], const gd_e* Qs, const ta* S,
                                         const ta* w, const GdT3Tiles& wt, int K8) {
    constexpr int RW = GdT3Tiles::RW, NTL = GdT3Tiles::NTL;
    const int g8 = threadIdx.x % 32 / 4, t4 = threadIdx.x % 4;
    ta wr[RW][2];  // the weights of the thread's A rows g8, g8 + 8 of each row block
#pragma unroll
    for (int a = 0; a < RW; ++a)
#pragma unroll
        for (int h = 0; h < 2; ++h) wr[a][h] = w[wt.r0 + 128 * a + g8 + 8 * h];
    if constexpr (GD_TC) {
        for (int k0 = 0; k0 < K8; k0 += 8) {
            unsigned ah[RW][4], al[RW][4];
#pragma unroll
            for (int a = 0; a < RW; ++a)
#pragma unroll
                for (int x = 0; x < 4; ++x)
                    tf32_split((float)(wr[a][x & 1] * gd_wid(Qs[(wt.r0 + 128 * a + g8 + 8 * (x & 1)) * GD_LDQE + k0 + t4 + 4 * (x >> 1)])),
                               ah[a][x], al[a][x]);
#pragma unroll
            for (int i = 0; i < NTL; ++i) {
                unsigned bh[2], bl[2];
                if constexpr (GD_SBR) gd_frag_b(reinterpret_cast<const gd_tf32*>(S), GD_TLDS, k0, wt.n0 + 8 * i, bh, bl);
                else gd_frag_b(S, GD_TLDS, k0, wt.n0 + 8 * i, bh, bl);
#pragma unroll
                for (int a = 0; a < RW; ++a) gd_mma3(acc[a][i], ah[a], al[a], bh, bl);
            }
        }
    } else {
        for (int k = 0; k < K8; ++k) {
            ta xa[RW][2], yv[NTL][2];
#pragma unroll
            for (int a = 0; a < RW; ++a)
#pragma unroll
                for (int h = 0; h < 2; ++h) xa[a][h] = wr[a][h] * gd_wid(Qs[(wt.r0 + 128 * a + g8 + 8 * h) * GD_LDQE + k]);
#pragma unroll
            for (int i = 0; i < NTL; ++i)
#pragma unroll
                for (int h = 0; h < 2; ++h) yv[i][h] = S[k * GD_TLDS + wt.n0 + 8 * i + 2 * t4 + h];
#pragma unroll
            for (int a = 0; a < RW; ++a)
#pragma unroll
                for (int i = 0; i < NTL; ++i)
#pragma unroll
                    for (int x = 0; x < 4; ++x) acc[a][i][x] = fma(xa[a][x >> 1], yv[i][x & 1], acc[a][i][x]);
        }
    }
}
// blocks per SM gd_tier3's registers must allow (shared memory allows 2 at d_k <= 64 in float32; session 16: at 2 chunks a
// block and 3 blocks per SM, +8% at 32K)
constexpr int GD_T3RMINB = DKP <= 64 ? 2 : 1;
// gd_tier3: per (GD_T3R chunks c of one period pp, sequence, column block), out_t += sum_l lam[t, GD_LOG2C + GD_TM +
// cl + 1] Qp_t S_l(pp) over the coarse slots of pp (cl: the set bits of pp; S_l(pp): gd_coarse's entries, in the
// bits' order) as one accumulation: a slot's product of (lam_l Qp) (its rows weighted in the A fragments) and S_l,
// GD_T3R CH x DK x GD_TBW, the next slot copied during it; no atomics (one block per output tile).
// Shared memory (Config.smem("gd_tier3")): Qp's GD_T3R chunks, two buffers of a slot and of its read weights.
// GD_T3PRE_SET: the block's output rows prefetched into L2 with its first copies (read and added after the last slot's
// product: a DRAM round trip on every block's tail; loaded into the accumulators instead, the tensor cores' sums would
// round at the output's magnitude; 0: session 15's, a timing build)
#ifndef GD_T3PRE_SET
#define GD_T3PRE_SET 1
#endif
// GD_T3LWA_SET: a slot's read weights copied asynchronously with it (session 15: loaded into registers and stored to
// shared memory when the next slot's copy was issued: every thread waited for that global load before its product;
// 0: session 15's, a timing build)
#ifndef GD_T3LWA_SET
#define GD_T3LWA_SET 1
#endif
// 16-bit inputs, o16 given (s17d16): the output's sums rounded once into the inputs' dtype at their rows (BH, T, DV) (the
// chunks' padding rows left out) instead of added into out (float32): the same sums, the same rounding as a cast after;
// the first period's blocks (no coarse slot) round out's rows as they are.
// x0 (and x1 when two) rounded into p[0] (p[1]): one 4-byte store of the pair where even (p aligned to 2 elements)
__device__ __forceinline__ void gd_st16(ti* p, bool two, bool even, ta x0, ta x1) {
    if constexpr (sizeof(ti) == 2) {
        if (two && even) {
            ti h[2];
            st(h, x0), st(h + 1, x1);
#ifdef __CUDA_ARCH__
            *reinterpret_cast<unsigned*>(p) = (unsigned)h[0] | ((unsigned)h[1] << 16);
#else
            if (reinterpret_cast<unsigned long long>(p) % 4) std::abort();
            p[0] = h[0], p[1] = h[1];
#endif
            return;
        }
    }
    st(p, x0);
    if (two) st(p + 1, x1);
}
// GD_T3OLD_SET: the output rows' reads of a full tile (every row < T, every column < DV, DV even) all issued before
// the first add, in pairs of columns (ptxas sank each of session 16's conditional reads into its own branch: 64 dependent
// L2 round trips per thread at the block's tail; the same sums; 0: session 16's, a timing build)
#ifndef GD_T3OLD_SET
#define GD_T3OLD_SET 1
#endif
// GD_T3FILL (gd_tier3's fill argument, gated_delta.T3FILL; the grouped coarse form): gd_cfill folded into gd_tier3. A
// period pp = 4q + k inside a group (0 < k < 4, q > 0) reads its levels >= 3 as (lam Qp P_k(q)) S_l(4q) from period 4q's
// slots instead of (lam Qp) S_l(pp) with S_l(pp) = P_k(q) S_l(4q) stored by gd_cfill (session 15's fill, a launch of
// ~0.14 ms at 32K): one RR x DK x DK product a block (Qp's rows times P_k, in place), after the levels 1, 2. Needs
// P_k's columns within a slot buffer (DKP <= GD_TBW; _compile.CupyOps.gd_tiers' condition). The same sums within the
// products' rounding (P_k applied to the queries rather than the slots).
#ifndef GD_T3FILL_SET
#define GD_T3FILL_SET 1  // (0: the fill argument ignored, gd_cfill's slots read; a timing build)
#endif
constexpr bool GD_T3FOLD = GD_T3FILL_SET && DKP <= GD_TBW;
// Qs (the block's GD_T3R CH rows [t][kk]) <- Qs P (P [kk][j] in a slot buffer, row stride GD_TLDS, zero past DK), in
// place, in rounds of RPR row blocks of 16 rows: a warp's NTF column tiles of 8 of one row block (16 registers at d_k 64:
// gd_tier3's 64 accumulators stay live beside them), every product of the round read before any is stored (a barrier:
// warps share a row block); every thread calls it.
template <typename Acc>  // (ta: a float64 build compiles the tensor-core text unrun)
__device__ __forceinline__ void gd_t3_fold(gd_e* Qs, const ta* P, int K8) {
    constexpr int RB3 = GD_T3R * CH / 16, NT8 = DKP / 8, NTF = NT8 < 4 ? NT8 : 4, WPR = NT8 / NTF, RPR = NT / 32 / WPR;
    const int w = threadIdx.x / 32, g8 = threadIdx.x % 32 / 4, t4 = threadIdx.x % 4, n0 = 8 * NTF * (w % WPR);
#pragma unroll 1
    for (int rb0 = 0; rb0 < RB3; rb0 += RPR) {
        const int rb = rb0 + w / WPR, r = 16 * rb + g8;  // the thread's A rows r, r + 8
        const bool on = rb < RB3;
        Acc x[NTF][4] = {};
        if (on) {
            if constexpr (GD_TC) {
#pragma unroll 1
                for (int k0 = 0; k0 < K8; k0 += 8) {
                    unsigned ah[4], al[4];
#pragma unroll
                    for (int e = 0; e < 4; ++e)
                        tf32_split((float)gd_wid(Qs[(r + 8 * (e & 1)) * GD_LDQE + k0 + t4 + 4 * (e >> 1)]), ah[e], al[e]);
#pragma unroll
                    for (int i = 0; i < NTF; ++i) {
                        unsigned bh[2], bl[2];
                        gd_frag_b(P, GD_TLDS, k0, n0 + 8 * i, bh, bl);
                        gd_mma3(x[i], ah, al, bh, bl);
                    }
                }
            } else {
                for (int k = 0; k < K8; ++k) {
                    const ta xa[2] = {gd_wid(Qs[r * GD_LDQE + k]), gd_wid(Qs[(r + 8) * GD_LDQE + k])};
#pragma unroll
                    for (int i = 0; i < NTF; ++i)
#pragma unroll
                        for (int e = 0; e < 4; ++e)
                            x[i][e] = fma(xa[e >> 1], P[k * GD_TLDS + n0 + 8 * i + 2 * t4 + (e & 1)], x[i][e]);
                }
            }
        }
        __syncthreads();  // the round's A rows read by every warp
        if (on)
#pragma unroll
            for (int i = 0; i < NTF; ++i)
#pragma unroll
                for (int e = 0; e < 4; e += 2)  // (columns 2 t4, 2 t4 + 1: a pair)
                    gd_put2(Qs + (r + 8 * (e >> 1)) * GD_LDQE + n0 + 8 * i + 2 * t4, x[i][e], x[i][e + 1]);
        __syncthreads();  // (the last: P's buffer read, Qs complete)
    }
}
struct alignas(2 * sizeof(ta)) gd_pair {
    ta x, y;
};
extern "C" __global__ void __launch_bounds__(NT, GD_T3RMINB) gd_tier3(
    const gd_e* __restrict__ qe,  // (BH, n, CH, DK) gd_forms': a period's first chunk's Qp (GD_T1X0Q_SET)
    const gd_e* __restrict__ Qp,  // gd_tier1's (GD_H16: both bfloat16, a 16-bit tile of Qp's rows)
    const ta* __restrict__ lam,  // (BH, T, L)
    gd_o* __restrict__ out,      // (BH, n, CH, DV)  + the reads of levels > GD_TM (o16: read only; GD_O16: bfloat16)
    const ta* __restrict__ Sb,   // gd_coarse's
    ti* __restrict__ o16,        // (BH, T, DV) out + the reads, rounded to the 16-bit inputs' dtype; or null
    const ta* __restrict__ Z, const ta* __restrict__ Pc,  // fill: gd_tier1x's transfers, gd_cgroup's prefixes (else unread)
    int T, int DK, int DV, int L, int n, int nP, int BH, int fill) {  // fill: GD_T3FILL (0 / 1)
    extern __shared__ __align__(16) unsigned char smem_raw[];
    constexpr int SS = DKP * GD_TLDS, RR = GD_T3R * CH, RW = GdT3Tiles::RW, NTL = GdT3Tiles::NTL;
    gd_e* Qs = reinterpret_cast<gd_e*>(smem_raw);         // [t][kk], the block's chunks' rows
    ta* Ss = reinterpret_cast<ta*>(Qs + RR * GD_LDQE);    // [buffer][kk][col]
    ta* lw = Ss + 2 * SS;                      // [buffer][t]
    check_smem(GD_T3SMEM);
    const int NCB = (DV + GD_TBW - 1) / GD_TBW, tid = threadIdx.x, K8 = (DK + 7) / 8 * 8;
    const int c = (int)(blockIdx.x / ((i64)BH * NCB)) * GD_T3R, c0 = (int)(blockIdx.x % NCB) * GD_TBW;
    const i64 bh = blockIdx.x / NCB % BH, cj = bh * n + c, slot_sz = (i64)DK * DV;
    const int pp = c >> GD_TM, ns = __popcll(pp);
    // o16: out's columns c0 + cc, + 1 (cc even) of the block's row t plus y0, y1 rounded into o16
    const auto put = [&](int t, int cc, ta y0, ta y1) {
        const int col = c0 + cc;
        const i64 g = (i64)c * CH + t;
        if (col >= DV || g >= T) return;
        const gd_o* o = out + (cj * CH + t) * DV + col;
        const bool two = col + 1 < DV;
        gd_st16(o16 + (bh * T + g) * DV + col, two, DV % 2 == 0, gd_wid(o[0]) + y0, two ? gd_wid(o[1]) + y1 : (ta)0);
    };
    if (!ns || c >= n) {
        if (o16 && c < n)  // the first period: its rows as they are (+ -0: x for every x, -0 included)
            for (int e = tid; e < min(GD_T3R, n - c) * CH * (GD_TBW / 2); e += NT)
                put(e / (GD_TBW / 2), 2 * (e % (GD_TBW / 2)), (ta)-0.0, (ta)-0.0);
        return;
    }
    const ta* sb = Sb + (bh * gd_popsum(nP) + gd_popsum(pp)) * slot_sz;  // the period's slots, in its bits' order
    // fill (GD_T3FILL): a period pp = 4q + k reads its levels 1, 2 (bits 0, 1: n0 slots) as above; then (f1: k > 0,
    // q > 0) Qp <- Qp P_k(q) (its queries carried on to the group's start) and its levels >= 3 from period 4q's slots.
    // Items: slots and the fold in that order.
    const int k = pp & (GD_CG - 1);
    const bool f1 = GD_T3FOLD && fill && k && (pp >> 2);
    const int n0 = __popcll(k), NI = ns + f1;
    // slot r: entry r of sb, from n0 of sb4 = sb + d1 (period 4q's slot r - n0; this form, not sb + (r + d1): ptxas
    // kept x1's gd_tier3 at 125 registers without spills, 128 with 28 B spilled, s20s)
    const int d1 = f1 ? (int)(gd_popsum(pp & ~3) - gd_popsum(pp)) - n0 : 0;
    const ta* sb4 = sb + d1 * slot_sz;
    const int i1 = f1 ? n0 : -1;  // the fold's item
    const bool vec = DK % (16 / GD_E2) == 0, vs = DV % (16 / (int)sizeof(ta)) == 0;
    if (GD_T1X0Q_SET && !(c & (GD_TP - 1))) {  // chunk c a period's first: Qp_c = Qe_c (not stored by gd_tier1x)
        gd_copy<CH, DKP>(Qs, GD_LDQE, qe + cj * CH * DK, DK, CH, DK, vec);
        gd_copy<RR - CH, DKP>(Qs + CH * GD_LDQE, GD_LDQE, Qp + (cj + 1) * CH * DK, DK, (min(GD_T3R, n - c) - 1) * CH, DK, vec);
    } else {
        gd_copy<RR, DKP>(Qs, GD_LDQE, Qp + cj * CH * DK, DK, min(GD_T3R, n - c) * CH, DK, vec);  // chunks past n: zero
    }
    // item i into buffer i & 1: slot r (the next bit cl of pp, its rank r) with its read weights, or a fold's transfer
    int bits = pp;
    auto load = [&](int i) {
        if (i == i1) {  // P_k(q): Z_{4q} (k = 1), gd_cgroup's P_2, P_3
            const int nG = (nP + GD_CG - 1) / GD_CG;
            const ta* P = k == 1 ? Z + (bh * nP + (pp & ~3)) * DK * DK : Pc + ((bh * nG + (pp >> 2)) * 3 + k - 2) * DK * DK;
            gd_copy<DKP, GD_TBW>(Ss + (i & 1) * SS, GD_TLDS, P, DK, DK, DK, vec);
            return;
        }
        const int r = i - (i1 >= 0 && i > i1), cl = __ffsll(bits) - 1;
        bits &= bits - 1;
        gd_copy<DKP, GD_TBW>(Ss + (i & 1) * SS, GD_TLDS, (r < n0 ? sb : sb4) + r * slot_sz + c0, DV, DK,
                             min(GD_TBW, DV - c0), vs);
        if (tid < RR) {
            const i64 gi = (i64)c * CH + tid;
            const ta* src = lam + (bh * T + gi) * L + GD_LOG2C + GD_TM + cl + 1;
            if (GD_T3LWA_SET) cp_async_ta(lw + (i & 1) * RR + tid, gi < T ? src : lam, gi < T);  // (zero past T)
            else lw[(i & 1) * RR + tid] = gi < T ? *src : (ta)0;
        }
    };
#ifdef __CUDA_ARCH__
    if (GD_T3PRE_SET) {  // (all DV columns of the rows: the other column blocks' too)
        constexpr int LINE = 128 / (int)sizeof(gd_o);
        const gd_o* o = out + cj * CH * DV;
        const i64 m = (i64)min(GD_T3R, n - c) * CH * DV;
        for (i64 x = (i64)tid * LINE; x < m; x += NT * LINE) asm volatile("prefetch.global.L2 [%0];" ::"l"(o + x));
    }
#endif
    // gated_delta.PDL: launched right after the coarse kernel that writes Sb, which started after the kernels before it
    // had completed: qe, Qp, out (above) are; the slots (and lam, Z, Pc: load) are read after the wait
    pdl_wait();
    load(0);
    cp_async_commit();
    const GdT3Tiles wt;
    ta acc[RW][NTL][4] = {};
    for (int i = 0; i < NI; ++i) {
        if (i + 1 < NI) load(i + 1);  // buffer (i + 1) & 1: its last readers passed the previous barrier
        cp_async_commit();
        cp_async_wait<1>();
        __syncthreads();  // Qp's rows and item i in place
        if constexpr (GD_T3FOLD) {
            if (i == i1) {  // (block-uniform)
                gd_t3_fold<ta>(Qs, Ss + (i & 1) * SS, K8);
                continue;  // (its last barrier: P_k's buffer read)
            }
        }
        if (wt.on) gd_t3_mm(acc, Qs, Ss + (i & 1) * SS, lw + (i & 1) * RR, wt, K8);
        __syncthreads();  // item i's buffer read: the copy of item i + 2 may overwrite it
    }
    cp_async_wait<0>();
    if (!wt.on) return;
    if (GD_T3OLD_SET && DV % 2 == 0 && c0 + GD_TBW <= DV && (i64)(c + GD_T3R) * CH <= T) {  // (block-uniform)
        const gd_o* o = out + cj * CH * DV + c0;
#pragma unroll
        for (int a = 0; a < RW; ++a) {  // (a row block's reads at a time: float32's 3xTF32 build spilled with all)
            gd_pair ov[NTL][2];         // (x, x + 1: columns cc, cc + 1 of row t; c0, cc even: 2 sizeof(gd_o)-aligned)
#pragma unroll
            for (int i = 0; i < NTL; ++i)
#pragma unroll
                for (int h = 0; h < 2; ++h) {
                    const gd_o* e = o + (i64)wt.row(a, 2 * h) * DV + wt.col(i, 0);
                    if (sizeof(gd_o) == sizeof(ta)) ov[i][h] = *reinterpret_cast<const gd_pair*>(e);
                    else gd_ld2(e, ov[i][h].x, ov[i][h].y);
                }
#pragma unroll
            for (int i = 0; i < NTL; ++i)
#pragma unroll
                for (int h = 0; h < 2; ++h) {
                    const int t = wt.row(a, 2 * h), cc = wt.col(i, 0);
                    const ta y0 = ov[i][h].x + acc[a][i][2 * h], y1 = ov[i][h].y + acc[a][i][2 * h + 1];
                    if (o16) gd_st16(o16 + (bh * T + (i64)c * CH + t) * DV + c0 + cc, true, true, y0, y1);
                    else if (sizeof(gd_o) == sizeof(ta))
                        *reinterpret_cast<gd_pair*>(out + (cj * CH + t) * DV + c0 + cc) = gd_pair{y0, y1};
                    else gd_put2(out + (cj * CH + t) * DV + c0 + cc, y0, y1);  // (GD_O16: o16 always given)
                }
        }
        return;
    }
    if (o16) {
#pragma unroll
        for (int a = 0; a < RW; ++a)
#pragma unroll
            for (int i = 0; i < NTL; ++i)
#pragma unroll
                for (int h = 0; h < 2; ++h) put(wt.row(a, 2 * h), wt.col(i, 2 * h), acc[a][i][2 * h], acc[a][i][2 * h + 1]);
        return;
    }
#pragma unroll
    for (int a = 0; a < RW; ++a)
#pragma unroll
        for (int i = 0; i < NTL; ++i)
#pragma unroll
            for (int x = 0; x < 4; ++x) {
                const int t = wt.row(a, x), cc = wt.col(i, x);
                if (c0 + cc < DV && (i64)c * CH + t < T)
                    gd_put(out + (cj * CH + t) * DV + c0 + cc, acc[a][i][x] + gd_wid(out[(cj * CH + t) * DV + c0 + cc]));
            }
}
#endif
