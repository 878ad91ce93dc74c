// benchmarks/device/ab_s15b16.py's build "main": lsattn/backends/cupy/gated_delta_tier.cu at 26378e6 (session 14's merged main), kept as
// data (the device has no .git); remove after session 15.
// Log-linear Gated DeltaNet: gd_scan's two-tier form (gd_tier1, gd_coarse, gd_tier3; host: gated_delta.py's
// tier_plan, _compile.CupyOps.gd_tiers). Compiled after gated_delta.cu, whose helpers (gd_copy, gd_mm, GdWarpTiles,
// gd_put, GD_MINB, GD_WS_SET) it uses.

// ---- The two-tier scan: calls from chunk 0 without incoming or returned state (gated_delta.tier_plan) ----
// gd_scan's chains repeat work: a level's first half accumulates the keys its lower levels' chains carry
// anyway (2 of every 5 products), and its top chain walks all n chunks (the critical path). Here every
// product is a read, bar one transfer per 4 chunks (benchmarks/NOTES.md "Session 13 — s13b16"):
// - gd_tier1: (a) per low period pp of GD_TP = 4 chunks (levels 1 .. GD_TM = 2): the Fenwick walk with
//   merges (session 9's sequential scan within the period: at chunk i only the levels of i's set bits
//   exist, each read and carried; at i + 1 the levels below tz(i + 1) merge with H_i into level
//   tz(i + 1) + 1), whose last merge is the period's keys carried to its end, Tot_pp (DK x DV); and
//   (b) per period (of several), its transfer Z_pp = P_{4pp+3} .. P_{4pp} (DK x DK, the identity's columns
//   carried: 2 products per chunk, no H), whose read at each chunk c of a period with coarse slots (pp > 0) is
//   stored: Qp_c = Qe_c P_{c-1} .. P_{4pp} (CH x DK, each token's query carried back to its period's start).
// - gd_coarse: the slots of the levels GD_TM + cl (coarse level cl: bit cl - 1 of pp set) at every period
//   pp's start into Sb (compact: entry popsum(pp) + rank), as gd_scan's chains over the periods
//   (transition Z_pp, keys Tot_pp): one DK x DK x GD_BW product a period and chain, the chains in parallel.
// - gd_tier3: per (chunk c, sequence, column block) the reads of the coarse slots its period holds, with no walk:
//   out_t += sum_l lam[t, level l] Qp_t S_l(pp) (session 13: each pair of slots read and carried over the period's
//   chunks, a walk of 4 chunk steps: GD_T3WALK_SET=1, a timing build).
// Work per chunk: 3 popcount(c & 3) + 3 (transfer and its read) + popcount(c >> 2) products (gd_scan: 3 popcount(c)
// + 2 (NLC - popcount(c))); longest chain: 4 chunk steps + nP - 1 coarse steps of one product + one read.
#ifdef GD_TM_SET  // a timing build may set it (3: periods of 8 chunks, 2 blocks per SM by shared memory)
constexpr int GD_TM = GD_TM_SET;
#else
constexpr int GD_TM = 2;  // the low levels (gd_tier1's slots; gd_tier3's per block): gated_delta.TIER_M
#endif
constexpr int GD_TP = 1 << GD_TM;  // the low period in chunks
static_assert(GD_TM * CH <= NT, "a thread per slot and token for the read weights");
enum { GT_LOW, GT_XFER, GT_TOP };
// sum of popcount(x) over 0 <= x < p: gd_coarse's entries of Sb before period p
__device__ __forceinline__ i64 gd_popsum(i64 p) {
    i64 s = 0;
    for (int b = 0; (1ll << b) < p; ++b) s += ((p >> (b + 1)) << b) + max((i64)0, (p & ((2ll << b) - 1)) - (1ll << b));
    return s;
}
// gd_tier1 / gd_tier3's columns per block (value columns; gd_tier1's transfers: d_k columns): float32 64 (the
// chunk's 48 KB of tiles copied once for 64 columns, not 32: the block steps' bytes, their bound, halved; benchmarks/
// NOTES.md "Session 14 — s14a16"), float64 32 (_compile.Config.tier_bw); a timing build may set it. At 64 columns W is
// stored as computed (float32: split by the fragment loads) for 2 blocks per SM by shared memory.
#ifdef GD_TBW_SET
constexpr int GD_TBW = GD_TBW_SET;
#else
constexpr int GD_TBW = GD_TC ? 64 : 32;
#endif
constexpr int GD_TLDS = GD_TBW + 8;  // S and W row stride (as GD_LDS)
template <bool SPLIT> struct GdTW { using T = ta; static constexpr int LD = GD_TLDS; };
template <> struct GdTW<true> { using T = uint2; static constexpr int LD = GD_TBW + 4; };
constexpr bool GD_TWSPLIT = GD_TC && GD_WS_SET && GD_TBW <= 32;
using gd_tw = GdTW<GD_TWSPLIT>::T;
constexpr int GD_TLDW = GdTW<GD_TWSPLIT>::LD;
constexpr int GD_TQW = 2 * CH * GD_LDQ > GD_TM * CH * GD_TLDW * (int)(sizeof(gd_tw) / sizeof(ta))
                           ? 2 * CH * GD_LDQ : GD_TM * CH * GD_TLDW * (int)(sizeof(gd_tw) / sizeof(ta));
constexpr int GD_TSMEM = (GD_TQW + DKP * GD_LDP + GD_TM * (DKP * GD_TLDS + CH)) * (int)sizeof(ta);  // Config.gd_smem(GD_TM, tier_bw)
// blocks per SM the registers of gd_tier1 / gd_tier3 must allow: gd_scan's at 32 columns; at 64, 2 (shared memory's)
#ifdef GD_T1MINB_SET  // a timing build may set it (gd_tier1's)
constexpr int GD_T1MINB = GD_T1MINB_SET;
#else
constexpr int GD_T1MINB = GD_TBW <= 32 ? GD_MINB : (GD_TC && DKP <= 64 ? 2 : 1);
#endif
constexpr int GD_T3MINB = GD_TBW <= 32 ? GD_MINB : (GD_TC && DKP <= 64 ? 2 : 1);
// timing builds: the next chunk's tiles prefetched into L2 during a chunk of gd_tier1 / gd_tier3 (GD_TPF_SET=1);
// gd_coarse's Tot loaded after its product, as in session 13 (GD_CPRE_SET=0); gd_tier3 as session 13's walks
// (GD_T3WALK_SET=1: gd_tier1 then stores no Qp)
#ifndef GD_T3WALK_SET
#define GD_T3WALK_SET 0
#endif
#ifndef GD_TPF_SET
#define GD_TPF_SET 0
#endif
#ifndef GD_CPRE_SET
#define GD_CPRE_SET 1
#endif
// a timing build: gd_coarse's Z copied two steps ahead (three buffers) and Tot loaded a step ahead (GD_CRING_SET=1)
#ifndef GD_CRING_SET
#define GD_CRING_SET 0
#endif
constexpr int GD_CZB = GD_CRING_SET ? 3 : 2;  // gd_coarse's Z buffers (Config.gd_coarse_smem)

// One block of gd_tier1 / gd_tier3 over chunks [lo, hi) (absolute = local: the call starts at chunk 0) and
// NC columns from c0 (DV; GT_XFER: DK): GT_LOW (slots: levels 1, 2; Tot into fin unless null), GT_XFER (one
// slot from the identity, no H; Z into fin; its reads Qe S, unweighted, stored into out = Qp unless null), GT_TOP
// (gs slots of levels lev[j] from sin + j sst, read throughout). Shared memory as gd_walk<GD_TM>'s: Qe, Ek (W over them), phi, S, the read weights.
template <int kind, int NG = GD_TM>  // NG: slots (the transfer: 1)
__device__ __forceinline__ void gd_tier_walk(const ta* __restrict__ qe, const ta* __restrict__ ek,
                                             const ta* __restrict__ ph, const ta* __restrict__ Hc,
                                             const ta* __restrict__ gc, const ta* __restrict__ lam, ta* __restrict__ out,
                                             ta* __restrict__ fin, const ta* __restrict__ sin, i64 sst, int T, int DK,
                                             int DV, int L, int n, int NC, i64 bh, int c0, int lo, int hi,
                                             const int (&lev)[GD_TM], int gs) {
    extern __shared__ __align__(16) unsigned char smem_raw[];
    ta* Qe = reinterpret_cast<ta*>(smem_raw);
    ta* Ek = Qe + CH * GD_LDQ;
    ta* Ph = Qe + GD_TQW;
    ta* S = Ph + DKP * GD_LDP;           // [slot][kk][col], row stride GD_TLDS
    ta* lw = S + NG * DKP * GD_TLDS;     // [slot][t]
    gd_tw* W = reinterpret_cast<gd_tw*>(Qe);  // [slot][t][col] over Qe / Ek once (a) has read them
    constexpr int RA = CH / 16, RB = DKP / 16, SS = DKP * GD_TLDS, WS = CH * GD_TLDW;
    constexpr int TWA = GdWarpTiles<RA, GD_TBW>::NTL, TWB = GdWarpTiles<RB, GD_TBW>::NTL;
    const int tid = threadIdx.x, K8 = (DK + 7) / 8 * 8;
    const i64 slot_sz = (i64)DK * DV;
    const GdWarpTiles<RA, GD_TBW> wa;
    const GdWarpTiles<RB, GD_TBW> wb;
    for (int idx = tid; idx < NG * DKP * GD_TBW; idx += NT) {
        const int j = idx / (DKP * GD_TBW), kk = idx / GD_TBW % DKP, cc = idx % GD_TBW;
        ta x = 0;
        if (kind == GT_XFER) x = j == 0 && kk < DK && kk == c0 + cc ? (ta)1 : (ta)0;
        else if (kind == GT_TOP && j < gs && kk < DK && c0 + cc < DV) x = sin[j * sst + (i64)kk * DV + c0 + cc];
        S[j * SS + kk * GD_TLDS + cc] = x;
    }
    __syncthreads();
    const bool vec = DK % (16 / (int)sizeof(ta)) == 0;
    for (int c = lo; c < hi; ++c) {
        const int i = c - lo;
        // slots with products (each read but in GT_XFER), and whether anything needs this chunk's (b)
        const unsigned u = kind == GT_LOW ? (unsigned)i : (kind == GT_XFER ? 1u : (1u << gs) - 1u);
        const unsigned r = kind == GT_XFER ? (out ? 1u : 0u) : u;
        const bool nb = kind == GT_XFER || c + 1 < (kind == GT_TOP ? hi : n);
        const i64 cj = bh * n + c;
        if (u) {
            if (r) gd_copy<CH, DKP>(Qe, GD_LDQ, qe + cj * CH * DK, DK, CH, DK, vec);
            gd_copy<CH, DKP>(Ek, GD_LDQ, ek + cj * CH * DK, DK, CH, DK, vec);
            gd_copy<DKP, CH>(Ph, GD_LDP, ph + cj * DK * CH, CH, DK, CH, vec);
            cp_async_commit();
            if (GD_TPF_SET && c + 1 < hi) {  // a timing build: the next chunk's tiles into L2 during this one
                if (kind != GT_XFER) gd_prefetch(qe + (cj + 1) * CH * DK, DK);
                gd_prefetch(ek + (cj + 1) * CH * DK, DK);
                gd_prefetch(ph + (cj + 1) * DK * CH, DK);
            }
            if (kind != GT_XFER && tid < NG * CH) {  // token t's read weight for slot j
                const int j = tid / CH, t = tid % CH;
                const i64 gi = (i64)c * CH + t;
                int lv = 0;  // lev[j] without a local-memory array
#pragma unroll
                for (int jj = 0; jj < NG; ++jj) lv = jj == j ? (kind == GT_LOW ? jj + 1 : lev[jj]) : lv;
                lw[tid] = (r >> j) & 1 && gi < T ? lam[(bh * T + gi) * L + GD_LOG2C + lv] : (ta)0;
            }
            cp_async_wait<0>();
            __syncthreads();
            // (a) W_j = Ek S_j, R_j = Qe S_j; the weighted reads onto the output, W over Qe / Ek
            ta acc[NG][2][TWA][4] = {};
            const unsigned use[2] = {u, r};
            if (wa.on) gd_mm<NG, 2, TWA>(acc, Ek, Qe, GD_LDQ, (const ta*)S, SS, GD_TLDS, wa.r0, wa.n0, K8, use);
            __syncthreads();
            if (wa.on) {
#pragma unroll
                for (int it = 0; it < TWA; ++it)
#pragma unroll
                    for (int x = 0; x < 4; ++x) {
                        const int t = wa.row(x), cc = wa.col(it, x);
                        ta rs = 0;
#pragma unroll
                        for (int j = 0; j < NG; ++j) {
                            if (nb && (u >> j) & 1) gd_put(W + j * WS + t * GD_TLDW + cc, acc[j][0][it][x]);
                            if (kind != GT_XFER && (r >> j) & 1) rs += lw[j * CH + t] * acc[j][1][it][x];
                        }
                        if (kind == GT_XFER) {  // Qp_c's columns (padding rows included: zero queries)
                            if (r && c0 + cc < NC) out[(cj * CH + t) * NC + c0 + cc] = acc[0][1][it][x];
                        } else if (r && c0 + cc < DV && (i64)c * CH + t < T) {
                            atomicAdd(out + (cj * CH + t) * DV + c0 + cc, rs);
                        }
                    }
            }
            __syncthreads();
        }
        // (b) S_j <- e^g S_j - phi W_j; GT_LOW: the slots below z = tz(i + 1) with H_c into slot z (z = GD_TM:
        // the period's keys, Tot)
        if (nb && wb.on) {
            const ta eg = ex(gc[cj]);
            ta accb[NG][1][TWB][4] = {};
            const unsigned ub[1] = {u};
            if (u) gd_mm<NG, 1, TWB>(accb, Ph, nullptr, GD_LDP, (const gd_tw*)W, WS, GD_TLDW, wb.r0, wb.n0, CH, ub);
            const int z = __ffsll(i + 1) - 1;
#pragma unroll
            for (int it = 0; it < TWB; ++it)
#pragma unroll
                for (int x = 0; x < 4; ++x) {
                    const int kk = wb.row(x), cc = wb.col(it, x);
                    ta m = 0;
                    if (kind == GT_LOW && kk < DK && c0 + cc < DV) m = Hc[cj * slot_sz + (i64)kk * DV + c0 + cc];
#pragma unroll
                    for (int j = 0; j < NG; ++j) {
                        if (!((u >> j) & 1)) continue;
                        ta* e = S + j * SS + kk * GD_TLDS + cc;
                        const ta v = eg * *e - accb[j][0][it][x];
                        if (kind == GT_LOW && j < z) m += v;
                        else *e = v;
                    }
                    if (kind == GT_LOW) {
                        if (z < NG) S[z * SS + kk * GD_TLDS + cc] = m;
                        else if (fin && kk < DK && c0 + cc < DV) fin[(i64)kk * DV + c0 + cc] = m;
                    }
                }
        }
        __syncthreads();  // S read by the next chunk's (a); the tiles (and W) rewritten by its copies
    }
    if (kind == GT_XFER)
        for (int idx = tid; idx < DKP * GD_TBW; idx += NT) {
            const int kk = idx / GD_TBW, cc = idx % GD_TBW;
            if (kk < DK && c0 + cc < NC) fin[(i64)kk * NC + c0 + cc] = S[kk * GD_TLDS + cc];
        }
}

extern "C" __global__ void __launch_bounds__(NT, GD_T1MINB) gd_tier1(
    const ta* __restrict__ qe, const ta* __restrict__ ek, const ta* __restrict__ ph, const ta* __restrict__ Hc,
    const ta* __restrict__ gc, const ta* __restrict__ lam,  // as gd_scan's
    ta* __restrict__ out,                                   // (BH, n, CH, DV)  in: intra-chunk output; out: + levels 1, 2
    ta* __restrict__ Z,                                     // (BH, nP, DK, DK) out: the periods' transfers (but the last)
    ta* __restrict__ Tot,                                   // (BH, nP, DK, DV) out: the periods' keys (but the last)
    ta* __restrict__ Qp,                                    // (BH, n, CH, DK) out: the queries carried to their period's
                                                            // start (periods pp > 0), or null (GD_T3WALK_SET: none)
    int T, int DK, int DV, int L, int n, int nP, int BH) {
    check_smem(GD_TSMEM);
    // the block: period pp (slowest), sequence bh, then its NCB low walks and NCK transfers side by side (the same
    // chunks' tiles: read from L2 by all but the first)
    const int NCB = (DV + GD_TBW - 1) / GD_TBW, NCK = (DK + GD_TBW - 1) / GD_TBW;
    const int pp = (int)(blockIdx.x / ((i64)BH * (NCB + NCK))), role = (int)(blockIdx.x % (NCB + NCK));
    const i64 bh = blockIdx.x / (NCB + NCK) % BH;
    int lev[GD_TM];
    for (int j = 0; j < GD_TM; ++j) lev[j] = j + 1;
    if (role < NCB) {  // the low walk of period pp
        ta* fin = pp + 1 < nP ? Tot + (bh * nP + pp) * DK * DV : nullptr;
        gd_tier_walk<GT_LOW>(qe, ek, ph, Hc, gc, lam, out, fin, nullptr, 0, T, DK, DV, L, n, DV, bh, role * GD_TBW,
                     pp * GD_TP, min(n, (pp + 1) * GD_TP), lev, GD_TM);
    } else if (nP > 1) {  // the transfer of period pp, DK columns (the last period's: for its reads Qp alone)
        gd_tier_walk<GT_XFER, 1>(qe, ek, ph, Hc, gc, lam, pp ? Qp : nullptr, Z + (bh * nP + pp) * DK * DK, nullptr, 0, T, DK,
                              DV, L, n, DK, bh, (role - NCB) * GD_TBW, pp * GD_TP, min(n, (pp + 1) * GD_TP), lev, 1);
    }
}

// gd_coarse: the coarse slots at the periods' starts, gd_scan's chains at the periods' granularity: one block per
// (coarse level cl, its period of 2^cl periods from base with reads, sequence, column block), the longest first:
// S(base + 1) = Tot_base, S(pp + 1) = Z_pp S(pp) (+ Tot_pp in the first half, pp < mid = base + 2^(cl-1)), written
// into Sb at each pp >= mid. One product per step (a sequential walk over the periods: popcount(pp)); two buffers
// of Z (the next copied during this product) and of S (the product reads one, writes the other): one barrier a step.
// Shared memory: Config.gd_coarse_smem().
extern "C" __global__ void __launch_bounds__(NT) gd_coarse(
    const ta* __restrict__ Z, const ta* __restrict__ Tot,  // gd_tier1's
    ta* __restrict__ Sb,                                   // (BH, popsum(nP), DK, DV) out: the coarse slots at each period's start
    int DK, int DV, int nP, int NCL, int BH) {
    extern __shared__ __align__(16) unsigned char smem_raw[];
    constexpr int ZS = DKP * GD_LDQ, SS = DKP * GD_LDS, RB = DKP / 16, TWB = GdWarpTiles<RB>::NTL;
    ta* Zs = reinterpret_cast<ta*>(smem_raw);  // [buffer][row][k]
    ta* Ss = Zs + GD_CZB * ZS;                  // [buffer][kk][col]
    check_smem((GD_CZB * ZS + 2 * SS) * sizeof(ta));
    const int NCB = (DV + GD_BW - 1) / GD_BW, tid = threadIdx.x, K8 = (DK + 7) / 8 * 8;
    const i64 per = (i64)BH * NCB;
    i64 r = blockIdx.x / per;
    int cl = NCL;
    for (; cl > 1; --cl) {  // level cl's periods with reads: base + 2^(cl-1) < nP
        const i64 cnt = ((nP - 1 - (1ll << (cl - 1))) >> cl) + 1;
        if (r < cnt) break;
        r -= cnt;
    }
    const i64 bh = blockIdx.x / NCB % BH;
    const int c0 = (int)(blockIdx.x % NCB) * GD_BW, base = (int)(r << cl), mid = base + (1 << (cl - 1));
    const int end = min(nP, base + (1 << cl));
    const i64 slot_sz = (i64)DK * DV, e0 = bh * gd_popsum(nP);
    const GdWarpTiles<RB> wb;
    const bool vec = DK % (16 / (int)sizeof(ta)) == 0;
    // Z_q into its buffer (steps up to the last but one: the last has no product), a commit group each
    auto copy_z = [&](int q) {
        if (q + 1 < end) gd_copy<DKP, DKP>(Zs + q % GD_CZB * ZS, GD_LDQ, Z + (bh * nP + q) * DK * DK, DK, DK, DK, vec);
        cp_async_commit();
    };
    for (int d = 1; d < GD_CZB; ++d) copy_z(base + d);
    for (int idx = tid; idx < DKP * GD_BW; idx += NT) {  // S(base + 1) = Tot_base
        const int kk = idx / GD_BW, cc = idx % GD_BW;
        Ss[((base + 1) & 1) * SS + kk * GD_LDS + cc] =
            kk < DK && c0 + cc < DV ? Tot[(bh * nP + base) * slot_sz + (i64)kk * DV + c0 + cc] : (ta)0;
    }
    // Tot_q's entries of the thread's tiles (zero from mid on)
    auto load_tot = [&](int q, ta (&tv)[TWB][4]) {
#pragma unroll
        for (int it = 0; it < TWB; ++it)
#pragma unroll
            for (int x = 0; x < 4; ++x) {
                const int kk = wb.row(x), cc = wb.col(it, x);
                const bool tot = q < mid && kk < DK && c0 + cc < DV;
                tv[it][x] = tot ? Tot[(bh * nP + q) * slot_sz + (i64)kk * DV + c0 + cc] : (ta)0;
            }
    };
    ta tv[TWB][4];  // GD_CRING_SET: Tot_pp, loaded a step ahead
    if (GD_CRING_SET) load_tot(base + 1, tv);
    for (int pp = base + 1; pp < end; ++pp) {
        const ta* Si = Ss + (pp & 1) * SS;
        ta* So = Ss + (~pp & 1) * SS;
        cp_async_wait<GD_CZB - 2>();  // Z_pp's group
        __syncthreads();  // Z_pp and S(pp) complete; the other buffers' last readers done
        copy_z(pp + GD_CZB - 1);  // into the buffer step pp - 1 read
        if (pp >= mid) {  // the slot's entry: after those of pp's lower set bits
            ta* dst = Sb + (e0 + gd_popsum(pp) + __popcll(pp & ((1 << (cl - 1)) - 1))) * slot_sz;
            for (int idx = tid; idx < DKP * GD_BW; idx += NT) {
                const int kk = idx / GD_BW, cc = idx % GD_BW;
                if (kk < DK && c0 + cc < DV) dst[(i64)kk * DV + c0 + cc] = Si[kk * GD_LDS + cc];
            }
        }
        if (pp + 1 == end || !wb.on) continue;
        // Tot_pp loaded before the product (its latency under the product's, off the chain; GD_CRING_SET: a step
        // ahead, Tot_{pp+1} during this product)
        ta acc[1][1][TWB][4] = {}, tn[TWB][4];
        if (!GD_CRING_SET && GD_CPRE_SET) load_tot(pp, tv);
        if (GD_CRING_SET) load_tot(pp + 1, tn);
        const unsigned use[1] = {1u};
        gd_mm<1, 1, TWB>(acc, Zs + pp % GD_CZB * ZS, nullptr, GD_LDQ, Si, 0, GD_LDS, wb.r0, wb.n0, K8, use);
        if (!GD_CRING_SET && !GD_CPRE_SET) load_tot(pp, tv);
#pragma unroll
        for (int it = 0; it < TWB; ++it)
#pragma unroll
            for (int x = 0; x < 4; ++x) {
                So[wb.row(x) * GD_LDS + wb.col(it, x)] = acc[0][0][it][x] + tv[it][x];
                if (GD_CRING_SET) tv[it][x] = tn[it][x];
            }
    }
    cp_async_wait<0>();
}

#if GD_T3WALK_SET  // session 13's gd_tier3 (a timing build): per (period, pair of held coarse slots) a walk of its chunks
extern "C" __global__ void __launch_bounds__(NT, GD_T3MINB) gd_tier3(
    const ta* __restrict__ qe, const ta* __restrict__ ek, const ta* __restrict__ ph, const ta* __restrict__ Hc,
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
// blocks per SM gd_tier3's registers must allow (shared memory allows 4 at d_k <= 64)
constexpr int GD_T3RMINB = DKP <= 64 ? 3 : 1;
// gd_tier3: per (chunk c, sequence, column block), out_t += sum_l lam[t, GD_LOG2C + GD_TM + cl + 1] Qp_t S_l(pp) over
// the coarse slots of c's period pp (cl: the set bits of pp; S_l(pp): gd_coarse's entries, in the bits' order), one
// product of CH x DK x GD_TBW a slot, the next slot copied during it; no atomics (one block per output tile).
// Shared memory (Config.smem("gd_tier3")): Qp_c, two buffers of a slot and of its read weights.
extern "C" __global__ void __launch_bounds__(NT, GD_T3RMINB) gd_tier3(
    const ta* __restrict__ Qp,   // gd_tier1's
    const ta* __restrict__ lam,  // (BH, T, L)
    ta* __restrict__ out,        // (BH, n, CH, DV)  + the reads of levels > GD_TM
    const ta* __restrict__ Sb,   // gd_coarse's
    int T, int DK, int DV, int L, int n, int nP, int BH) {
    extern __shared__ __align__(16) unsigned char smem_raw[];
    constexpr int SS = DKP * GD_TLDS, RA = CH / 16, TWA = GdWarpTiles<RA, GD_TBW>::NTL;
    ta* Qs = reinterpret_cast<ta*>(smem_raw);  // [t][kk]
    ta* Ss = Qs + CH * GD_LDQ;                 // [buffer][kk][col]
    ta* lw = Ss + 2 * SS;                      // [buffer][t]
    check_smem((CH * GD_LDQ + 2 * SS + 2 * CH) * sizeof(ta));
    const int NCB = (DV + GD_TBW - 1) / GD_TBW, tid = threadIdx.x, K8 = (DK + 7) / 8 * 8;
    const int c = (int)(blockIdx.x / ((i64)BH * NCB)), c0 = (int)(blockIdx.x % NCB) * GD_TBW;
    const i64 bh = blockIdx.x / NCB % BH, cj = bh * n + c, slot_sz = (i64)DK * DV;
    const int pp = c >> GD_TM, ns = __popcll(pp);
    if (!ns) return;
    const ta* sb = Sb + (bh * gd_popsum(nP) + gd_popsum(pp)) * slot_sz;  // the period's slots, in its bits' order
    const bool vec = DK % (16 / (int)sizeof(ta)) == 0, vs = DV % (16 / (int)sizeof(ta)) == 0;
    gd_copy<CH, DKP>(Qs, GD_LDQ, Qp + cj * CH * DK, DK, CH, DK, vec);
    // slot r (bit cl of pp, its rank r) into buffer r & 1: its columns, and its read weights
    auto load = [&](int r, int cl) {
        gd_copy<DKP, GD_TBW>(Ss + (r & 1) * SS, GD_TLDS, sb + r * slot_sz + c0, DV, DK, min(GD_TBW, DV - c0), vs);
        if (tid < CH) {
            const i64 gi = (i64)c * CH + tid;
            lw[(r & 1) * CH + tid] = gi < T ? lam[(bh * T + gi) * L + GD_LOG2C + GD_TM + cl + 1] : (ta)0;
        }
    };
    int bits = pp, cl = __ffsll(bits) - 1;
    load(0, cl);
    cp_async_commit();
    const GdWarpTiles<RA, GD_TBW> wa;
    ta tot[TWA][4] = {};
    for (int r = 0; r < ns; ++r) {
        bits &= bits - 1;  // the next slot's bit
        const int cn = __ffsll(bits) - 1;
        if (r + 1 < ns) load(r + 1, cn);  // buffer (r + 1) & 1: its last readers passed the previous barrier
        cp_async_commit();
        cp_async_wait<1>();
        __syncthreads();  // Qp_c and slot r in place
        if (wa.on) {
            ta acc[1][1][TWA][4] = {};
            const unsigned use[1] = {1u};
            gd_mm<1, 1, TWA>(acc, Qs, nullptr, GD_LDQ, Ss + (r & 1) * SS, 0, GD_TLDS, wa.r0, wa.n0, K8, use);
#pragma unroll
            for (int it = 0; it < TWA; ++it)
#pragma unroll
                for (int x = 0; x < 4; ++x) tot[it][x] += lw[(r & 1) * CH + wa.row(x)] * acc[0][0][it][x];
        }
        __syncthreads();  // slot r's buffer read: the copy of slot r + 2 may overwrite it
    }
    cp_async_wait<0>();
    if (wa.on)
#pragma unroll
        for (int it = 0; it < TWA; ++it)
#pragma unroll
            for (int x = 0; x < 4; ++x) {
                const int t = wa.row(x), cc = wa.col(it, x);
                if (c0 + cc < DV && (i64)c * CH + t < T) out[(cj * CH + t) * DV + c0 + cc] += tot[it][x];
            }
}
#endif
