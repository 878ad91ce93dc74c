// Log-linear Gated DeltaNet: gd_scan's two-tier form (gd_tier1, gd_tier1x, gd_coarse, gd_tier3; host: gated_delta.py's
// tier_plan, _compile.CupyOps.gd_tiers). Compiled after gated_delta.cu, whose helpers (gd_copy, gd_mm, GdWarpTiles,
// gd_put, GD_MINB, GD_WS_SET) it uses.

// ---- The two-tier scan: calls from chunk 0 without incoming or returned state (gated_delta.tier_plan) ----
// gd_scan's chains repeat work: a level's first half accumulates the keys its lower levels' chains carry
// anyway (2 of every 5 products), and its top chain walks all n chunks (the critical path). Here every
// product is a read, bar one transfer per 4 chunks (benchmarks/NOTES.md "Session 13 — s13b16"):
// - gd_tier1: (a) per low period pp of GD_TP = 4 chunks (levels 1 .. GD_TM = 2): the Fenwick walk with
//   merges (session 9's sequential scan within the period: at chunk i only the levels of i's set bits
//   exist, each read and carried; at i + 1 the levels below tz(i + 1) merge with H_i into level
//   tz(i + 1) + 1), whose last merge is the period's keys carried to its end, Tot_pp (DK x DV); and (gd_tier1x since
//   session 15: one slot's registers and shared memory)
//   (b) per period (of several), its transfer Z_pp = P_{4pp+3} .. P_{4pp} (DK x DK, the identity's columns
//   carried: 2 products per chunk, no H), whose read at each chunk c of a period with coarse slots (pp > 0) is
//   stored: Qp_c = Qe_c P_{c-1} .. P_{4pp} (CH x DK, each token's query carried back to its period's start; at the
//   period's first chunk Qp_c = Qe_c, which gd_tier3 reads from qe: GD_T1X0Q_SET).
// - the coarse slots (gd_coarse, or gd_cgroup / gd_coarse_g / gd_cfill): the slots of the levels GD_TM + cl (coarse
//   level cl: bit cl - 1 of pp set) at every period pp's start into Sb (compact: entry popsum(pp) + rank), as gd_scan's
//   chains over the periods (transition Z_pp, keys Tot_pp): one DK x DK x GD_BW product a period and chain, the chains
//   in parallel (the grouped form: levels >= 3 over groups of 4 periods).
// - gd_tier3: per (GD_T3R chunks c of a period, sequence, column block) the reads of the coarse slots its period
//   holds, with no walk: out_t += sum_l lam[t, level l] Qp_t S_l(pp) (session 13: each pair of slots read and carried
//   over the period's chunks, a walk of 4 chunk steps: GD_T3WALK_SET=1, a timing build).
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
// 1xTF32 (bf16 inputs): an operand only ever read as a B fragment stored as its tf32 rounding (gd_tf32: the fragment
// loads' cvt.rna done once, at the store; the same bits reach the tensor cores): W (GD_TWR_SET) and the coarse slots
// Sb (GD_SBR_SET; gd_cfill's and gd_tier3's B operand). 0: session 15's, timing builds (benchmarks/NOTES.md
// "Session 16 — s16b16")
#ifndef GD_TWR_SET
#define GD_TWR_SET 1
#endif
#ifndef GD_SBR_SET
#define GD_SBR_SET 1
#endif
struct gd_tf32 {
    unsigned u;
};
__device__ __forceinline__ void gd_put(gd_tf32* w, float x) { w->u = to_tf32(x); }
__device__ __forceinline__ void gd_frag_b(const gd_tf32* Y, int ld, int k0, int n0, unsigned (&h)[2], unsigned (&l)[2]) {
    const int g8 = threadIdx.x % 32 / 4, t4 = threadIdx.x % 4;
    h[0] = Y[(k0 + t4) * ld + n0 + g8].u, h[1] = Y[(k0 + t4 + 4) * ld + n0 + g8].u;
    l[0] = l[1] = 0u;  // (1xTF32: unread)
}
// (GD_TAR: gated_delta.cu's) an A operand stored as tf32 (gd_tar), its fragments loaded without a cvt
__device__ __forceinline__ void gd_frag_a(const gd_tf32* X, int ld, int r0, int k0, unsigned (&h)[4], unsigned (&l)[4]) {
    const int g8 = threadIdx.x % 32 / 4, t4 = threadIdx.x % 4;
#pragma unroll
    for (int x = 0; x < 4; ++x) h[x] = X[(r0 + g8 + 8 * (x & 1)) * ld + k0 + t4 + 4 * (x >> 1)].u, l[x] = 0u;
}
template <bool R> struct GdA { using T = ta; };  // an A operand's element: gd_tf32 when stored rounded (GD_TAR)
template <> struct GdA<true> { using T = gd_tf32; };
using gd_ta = GdA<GD_TAR>::T;
template <int K> struct GdTW { using T = ta; static constexpr int LD = GD_TLDS; };  // K: 0 ta, 1 tf32 pairs, 2 gd_tf32
template <> struct GdTW<1> { using T = uint2; static constexpr int LD = GD_TBW + 4; };
template <> struct GdTW<2> { using T = gd_tf32; static constexpr int LD = GD_TLDS; };
constexpr bool GD_TWSPLIT = GD_TC && GD_WS_SET && GD_TBW <= 32;
constexpr int GD_TWK = GD_TWSPLIT ? 1 : (GD_TC && GD_X1_SET && GD_TWR_SET ? 2 : 0);
using gd_tw = GdTW<GD_TWK>::T;
constexpr int GD_TLDW = GdTW<GD_TWK>::LD;
// gd_tier1's builds (benchmarks/NOTES.md "Session 15 — s15a16"; each 0: session 14's, a timing build):
// GD_T1SPLIT_SET: the transfers in their own kernel (gd_tier1x: one slot's shared memory and registers, 3 blocks per
// SM at d_k <= 64); GD_T1X0_SET: a transfer's first chunk without products (S = I: W = Ek, Qp = Qe);
// GD_T1HPRE_SET: the low walk's H copied into shared memory with the chunk's tiles (not loaded in (b))
#ifndef GD_T1SPLIT_SET
#define GD_T1SPLIT_SET 1
#endif
#ifndef GD_T1X0_SET
#define GD_T1X0_SET 1
#endif
#ifndef GD_T1HPRE_SET
#define GD_T1HPRE_SET 1
#endif
// GD_T1MW_SET: a low walk's slots that merge after (b) (those below z = tz(i + 1): both at a period's last chunk) take
// one W, their sum (S_z = sum_j (e^g S_j - phi W_j) + H = e^g sum_j S_j - phi sum_j W_j + H): one product of (b) fewer
#ifndef GD_T1MW_SET
#define GD_T1MW_SET 1
#endif
// GD_T1V2_SET (float32): (a)'s outputs by pairs of columns (the C fragment's x, x + 1): Qp's stores as float2, the
// low walk's adds as float2 atomics (sm_90; half the instructions, whole 32-byte sectors), when the row length is even
#ifndef GD_T1V2_SET
#define GD_T1V2_SET 1
#endif
// GD_T1X0Q_SET: a period's first chunk's Qp (= Qe: the transfer there is the identity) not stored; gd_tier3 copies
// those rows from qe (session 15's x0 copied them global -> global on the transfer's first step: +4% in x1;
// benchmarks/NOTES.md "Session 16 — s16b16"; 0: session 15's, a timing build)
#ifndef GD_T1X0Q_SET
#define GD_T1X0Q_SET 1
#endif
// GD_T1PHW_SET: a low walk's phi and H tiles in their own copy group, waited for before (b) (session 15: with Qe and Ek
// before (a): ~60% of a step's bytes on its chain with nothing to compute; 0: session 15's, a timing build)
#ifndef GD_T1PHW_SET
#define GD_T1PHW_SET 1
#endif
// GD_T1LWR_SET: a low walk's (a) epilogue reads its rows' read weights from shared memory once, not per element (ptxas
// kept the loads per element, behind the W stores; x1: 76 LDS fewer in gd_tier1's SASS, its spills 64 -> 24 B; the same
// sums; 0: session 16's, a timing build)
#ifndef GD_T1LWR_SET
#define GD_T1LWR_SET 1
#endif
// Qe and Ek, or NG slots' W (in ta); a low walk's H tile (GD_T1HPRE_SET: DKP x GD_TLDS, after the read weights)
template <int NG>
constexpr int GD_TQW_N = 2 * CH * GD_LDQ > NG * CH * GD_TLDW * (int)(sizeof(gd_tw) / sizeof(ta))
                             ? 2 * CH * GD_LDQ : NG * CH * GD_TLDW * (int)(sizeof(gd_tw) / sizeof(ta));
constexpr int GD_TQW = GD_TQW_N<GD_TM>, GD_THW = GD_T1HPRE_SET ? DKP * GD_TLDS : 0;
// Config.gd_smem(GD_TM, tier_bw, hc=GD_T1HPRE_SET) (gd_tier1: the low walks and, unless split, the transfers)
constexpr int GD_TSMEM = (GD_TQW + DKP * GD_LDP + GD_TM * (DKP * GD_TLDS + CH) + GD_THW) * (int)sizeof(ta);
// Config.smem("gd_tier1x") = gd_smem(1, tier_bw) (gd_tier1x: the transfers)
constexpr int GD_TSMEM1 = (GD_TQW_N<1> + DKP * GD_LDP + DKP * GD_TLDS + CH) * (int)sizeof(ta);
// blocks per SM the registers of gd_tier1 / gd_tier3 must allow: gd_scan's at 32 columns; at 64, 2 (shared memory's)
#ifdef GD_T1MINB_SET  // a timing build may set it (gd_tier1's)
constexpr int GD_T1MINB = GD_T1MINB_SET;
#else
constexpr int GD_T1MINB = GD_TBW <= 32 ? GD_MINB : (GD_TC && DKP <= 64 ? 2 : 1);
#endif
constexpr int GD_T3MINB = GD_TBW <= 32 ? GD_MINB : (GD_TC && DKP <= 64 ? 2 : 1);
constexpr int GD_T1XMINB = GD_TBW <= 32 ? GD_MINB : (GD_TC && DKP <= 64 ? 3 : 1);  // gd_tier1x's (shared memory's)
// timing builds: the next chunk's tiles prefetched into L2 during a chunk of gd_tier1 / gd_tier3 (GD_TPF_SET=1);
// gd_tier3 as session 13's walks (GD_T3WALK_SET=1: gd_tier1 then stores no Qp)
#ifndef GD_T3WALK_SET
#define GD_T3WALK_SET 0
#endif
#ifndef GD_TPF_SET
#define GD_TPF_SET 0
#endif
constexpr bool GD_SBR = GD_TC && GD_X1_SET && GD_SBR_SET && !GD_T3WALK_SET;  // (session 13's walks carry Sb's slots)
__device__ __forceinline__ ta gd_sbr(ta x) {
    if constexpr (GD_SBR) return __uint_as_float(to_tf32(x));
    else return x;
}

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
    ta* Ph = Qe + (GD_T1SPLIT_SET && kind == GT_XFER ? GD_TQW_N<NG> : GD_TQW);  // (gd_tier1x: one slot's W)
    ta* S = Ph + DKP * GD_LDP;           // [slot][kk][col], row stride GD_TLDS
    ta* lw = S + NG * DKP * GD_TLDS;     // [slot][t]
    ta* Hs = lw + NG * CH;               // GT_LOW, GD_T1HPRE_SET: H_c's columns [kk][col], row stride GD_TLDS
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
    const bool vec = DK % (16 / (int)sizeof(ta)) == 0, vs = DV % (16 / (int)sizeof(ta)) == 0;
    for (int c = lo; c < hi; ++c) {
        const int i = c - lo;
        // slots with products (each read but in GT_XFER), and whether anything needs this chunk's (b)
        const unsigned u = kind == GT_LOW ? (unsigned)i : (kind == GT_XFER ? 1u : (1u << gs) - 1u);
        const unsigned r = kind == GT_XFER ? (out && !(GD_T1X0Q_SET && i == 0) ? 1u : 0u) : u;
        const bool nb = kind == GT_XFER || c + 1 < (kind == GT_TOP ? hi : n);
        const i64 cj = bh * n + c;
        // a transfer's first chunk (S = I, columns c0 ..; W = Ek's, Qp = Qe's; not when the block's columns pass the
        // tiles' DKP) and the low walk's H into shared memory (its bucket's chunks, every chunk but the call's last)
        const bool x0 = GD_T1X0_SET && kind == GT_XFER && DKP >= GD_TBW && i == 0;
        const bool hp = GD_T1HPRE_SET && kind == GT_LOW && nb;
        // GT_LOW: the slots below z merge into slot z after (b); mg: those with products (bits 0 .. z - 1 of i), one W
        // (slot 0's) when several (mw)
        const int z = __ffsll(i + 1) - 1;
        const unsigned mg = GD_T1MW_SET && kind == GT_LOW ? u & ((1u << z) - 1u) : 0u;
        const bool mw = (mg & (mg - 1u)) != 0u;
        const bool phw = GD_T1PHW_SET && kind == GT_LOW && u;  // (then (a) runs: u and not x0)
        if (u || hp) {
            if (u) {
                if (r && !x0) gd_copy<CH, DKP>(Qe, GD_LDQ, qe + cj * CH * DK, DK, CH, DK, vec);
                gd_copy<CH, DKP>(Ek, GD_LDQ, ek + cj * CH * DK, DK, CH, DK, vec);
                if (phw) cp_async_commit();  // (a)'s tiles
                gd_copy<DKP, CH>(Ph, GD_LDP, ph + cj * DK * CH, CH, DK, CH, vec);
            }
            if (hp) gd_copy<DKP, GD_TBW>(Hs, GD_TLDS, Hc + cj * slot_sz + c0, DV, DK, min(GD_TBW, DV - c0), vs);
            cp_async_commit();
            if (GD_TPF_SET && c + 1 < hi) {  // a timing build: the next chunk's tiles into L2 during this one
                if (kind != GT_XFER) gd_prefetch(qe + (cj + 1) * CH * DK, DK);
                gd_prefetch(ek + (cj + 1) * CH * DK, DK);
                gd_prefetch(ph + (cj + 1) * DK * CH, DK);
            }
            if (x0 && r)  // Qp_c = Qe_c's columns c0 .. (padding rows included: zero queries)
                for (int idx = tid; idx < CH * GD_TBW; idx += NT) {
                    const int t = idx / GD_TBW, cc = idx % GD_TBW;
                    if (c0 + cc < NC) out[(cj * CH + t) * NC + c0 + cc] = qe[(cj * CH + t) * DK + c0 + cc];
                }
            if (u && kind != GT_XFER && tid < NG * CH) {  // token t's read weight for slot j
                const int j = tid / CH, t = tid % CH;
                const i64 gi = (i64)c * CH + t;
                int lv = 0;  // lev[j] without a local-memory array
#pragma unroll
                for (int jj = 0; jj < NG; ++jj) lv = jj == j ? (kind == GT_LOW ? jj + 1 : lev[jj]) : lv;
                lw[tid] = (r >> j) & 1 && gi < T ? lam[(bh * T + gi) * L + GD_LOG2C + lv] : (ta)0;
            }
            if (phw) cp_async_wait<1>();  // Qe, Ek (phi, H: before (b))
            else cp_async_wait<0>();
            __syncthreads();
        }
        if (u && !x0) {
            // (a) W_j = Ek S_j, R_j = Qe S_j; the weighted reads onto the output, W over Qe / Ek
            ta acc[NG][2][TWA][4] = {};
            const unsigned use[2] = {u, r};
            if (wa.on)
                gd_mm<NG, 2, TWA>(acc, (const gd_ta*)Ek, (const gd_ta*)Qe, GD_LDQ, (const ta*)S, SS, GD_TLDS, wa.r0, wa.n0, K8,
                                  use);
            __syncthreads();  // every warp has read Ek and Qe: W over them
            if (wa.on) {
                ta lwr[NG][2];  // GD_T1LWR_SET: the read weights of the thread's rows wa.row(0), wa.row(2)
#pragma unroll
                for (int j = 0; j < NG; ++j)
#pragma unroll
                    for (int h = 0; h < 2; ++h) lwr[j][h] = GD_T1LWR_SET && kind != GT_XFER ? lw[j * CH + wa.row(2 * h)] : (ta)0;
                auto wl = [&](int j, int x, int t) { return GD_T1LWR_SET ? lwr[j][x >> 1] : lw[j * CH + t]; };  // (t: row(x))
#pragma unroll
                for (int it = 0; it < TWA; ++it)
#pragma unroll
                    for (int x = 0; x < 4; ++x) {
                        const int t = wa.row(x), cc = wa.col(it, x);
                        ta rs = 0, wm = 0;
                        constexpr bool V2 = GD_T1V2_SET && GD_TC;
#pragma unroll
                        for (int j = 0; j < NG; ++j) {
                            if (mw && (mg >> j) & 1) wm += acc[j][0][it][x];
                            else if (nb && (u >> j) & 1) gd_put(W + j * WS + t * GD_TLDW + cc, acc[j][0][it][x]);
                            if (kind != GT_XFER && (r >> j) & 1) rs += wl(j, x, t) * acc[j][1][it][x];
                        }
                        if (mw && nb) gd_put(W + t * GD_TLDW + cc, wm);  // slot 0's W: the merging slots' sum
                        if (V2 && (x & 1)) continue;  // (columns cc, cc + 1 stored at x even)
                        if (V2) {
                            const int nc = kind == GT_XFER ? NC : DV;
                            if (!r || c0 + cc >= nc || (kind != GT_XFER && (i64)c * CH + t >= T)) continue;
                            ta* o = out + (cj * CH + t) * nc + c0 + cc;
                            const ta a0 = kind == GT_XFER ? acc[0][1][it][x] : rs;
                            ta a1 = 0;
                            if (kind == GT_XFER) a1 = acc[0][1][it][x + 1];
                            else
#pragma unroll
                                for (int j = 0; j < NG; ++j)
                                    if ((r >> j) & 1) a1 += wl(j, x, t) * acc[j][1][it][x + 1];
                            if (nc % 2 == 0) {  // (c0, cc even: 8-byte aligned; cc + 1 < nc)
                                if (kind == GT_XFER) *reinterpret_cast<float2*>(o) = float2{(float)a0, (float)a1};
                                else atomicAdd(reinterpret_cast<float2*>(o), float2{(float)a0, (float)a1});
                            } else {
                                if (kind == GT_XFER) o[0] = a0;
                                else atomicAdd(o, a0);
                                if (c0 + cc + 1 < nc) {
                                    if (kind == GT_XFER) o[1] = a1;
                                    else atomicAdd(o + 1, a1);
                                }
                            }
                            continue;
                        }
                        if (kind == GT_XFER) {  // Qp_c's columns (padding rows included: zero queries)
                            if (r && c0 + cc < NC) out[(cj * CH + t) * NC + c0 + cc] = acc[0][1][it][x];
                        } else if (r && c0 + cc < DV && (i64)c * CH + t < T) {
                            atomicAdd(out + (cj * CH + t) * DV + c0 + cc, rs);
                        }
                    }
            }
            if (phw) cp_async_wait<0>();  // phi, H
            __syncthreads();
        }
        // (b) S_j <- e^g S_j - phi W_j; GT_LOW: the slots below z = tz(i + 1) with H_c into slot z (z = GD_TM:
        // the period's keys, Tot)
        if (nb && wb.on) {
            const ta eg = ex(gc[cj]);
            ta accb[NG][1][TWB][4] = {};
            const unsigned ub[1] = {mw ? (u & ~mg) | 1u : u};  // (mw: the merging slots' (b) zero but slot 0's)
            const gd_ta* PhA = reinterpret_cast<const gd_ta*>(Ph);
            if (x0) gd_mm<NG, 1, TWB>(accb, PhA, nullptr, GD_LDP, (const gd_ta*)(Ek + c0), 0, GD_LDQ, wb.r0, wb.n0, CH, ub);
            else if (u) gd_mm<NG, 1, TWB>(accb, PhA, nullptr, GD_LDP, (const gd_tw*)W, WS, GD_TLDW, wb.r0, wb.n0, CH, ub);
#pragma unroll
            for (int it = 0; it < TWB; ++it)
#pragma unroll
                for (int x = 0; x < 4; ++x) {
                    const int kk = wb.row(x), cc = wb.col(it, x);
                    ta m = 0;
                    if (kind == GT_LOW && GD_T1HPRE_SET) m = Hs[kk * GD_TLDS + cc];  // (zero past DK, DV)
                    else if (kind == GT_LOW && kk < DK && c0 + cc < DV) m = Hc[cj * slot_sz + (i64)kk * DV + c0 + cc];
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
    // the block: period pp (slowest), sequence bh, then its NCB low walks and (unless GD_T1SPLIT_SET: gd_tier1x's)
    // NCK transfers side by side (the same chunks' tiles: read from L2 by all but the first)
    const int NCB = (DV + GD_TBW - 1) / GD_TBW, NCK = GD_T1SPLIT_SET ? 0 : (DK + GD_TBW - 1) / GD_TBW;
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

// gd_tier1x (GD_T1SPLIT_SET; launched when nP > 1): gd_tier1's transfers, one block per (period pp, sequence, GD_TBW
// of the DK columns), its arguments gd_tier1's
extern "C" __global__ void __launch_bounds__(NT, GD_T1XMINB) gd_tier1x(
    const ta* __restrict__ qe, const ta* __restrict__ ek, const ta* __restrict__ ph, const ta* __restrict__ Hc,
    const ta* __restrict__ gc, const ta* __restrict__ lam, ta* __restrict__ out, ta* __restrict__ Z,
    ta* __restrict__ Tot, ta* __restrict__ Qp, int T, int DK, int DV, int L, int n, int nP, int BH) {
    (void)out, (void)Tot;
    check_smem(GD_TSMEM1);
    const int NCK = (DK + GD_TBW - 1) / GD_TBW;
    const int pp = (int)(blockIdx.x / ((i64)BH * NCK)), role = (int)(blockIdx.x % NCK);
    const i64 bh = blockIdx.x / NCK % BH;
    int lev[GD_TM];
    for (int j = 0; j < GD_TM; ++j) lev[j] = j + 1;
    if (GD_T1SPLIT_SET)
        gd_tier_walk<GT_XFER, 1>(qe, ek, ph, Hc, gc, lam, pp ? Qp : nullptr, Z + (bh * nP + pp) * DK * DK, nullptr, 0, T,
                                 DK, DV, L, n, DK, bh, role * GD_TBW, pp * GD_TP, min(n, (pp + 1) * GD_TP), lev, 1);
}

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
// GD_CTP_SET: T(q + 1)'s entries loaded into registers during step q (session 15's: loaded at step q before its
// product, a global round trip on every step of the chain), and put(q) after the step's product (its stores' address
// arithmetic off the chain); the same sums (bit-equal). 0: session 15's, a timing build (s19c16)
#ifndef GD_CTP_SET
#define GD_CTP_SET 1
#endif
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
    if constexpr (!GD_CTP_SET) {  // session 15's
        copy_a(q0 + 1);
        for (int q = q0 + 1; q < q1; ++q) {
            const ta* Si = Ss + (q & 1) * SS;
            ta* So = Ss + (~q & 1) * SS;
            cp_async_wait<0>();
            __syncthreads();  // A(q) and S(q) complete; the other buffers' last readers done
            copy_a(q + 1);    // into the buffer step q - 1 read
            put(q, Si);
            if (q + 1 == q1 || !wb.on) continue;
            const ta* t = tadd(q);  // T(q)'s entries of the thread's tiles, loaded before the product (off the chain)
            ta tv[TWB][4], acc[1][1][TWB][4] = {};
#pragma unroll
            for (int it = 0; it < TWB; ++it)
#pragma unroll
                for (int x = 0; x < 4; ++x) {
                    const int kk = wb.row(x), cc = wb.col(it, x);
                    tv[it][x] = t && kk < DK && cc < ncol ? t[kk * tld + cc] : (ta)0;
                }
            const unsigned use[1] = {1u};
            gd_mm<1, 1, TWB>(acc, Zs + (q & 1) * ZS, nullptr, GD_LDQ, Si, 0, LDS, wb.r0, wb.n0, K8, use);
#pragma unroll
            for (int it = 0; it < TWB; ++it)
#pragma unroll
                for (int x = 0; x < 4; ++x) So[wb.row(x) * LDS + wb.col(it, x)] = acc[0][0][it][x] + tv[it][x];
        }
        cp_async_wait<0>();
        return;
    }
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
// gd_tier3's chunks per block (GD_T3R, 1, 2 or 4 of one period: rows GD_T3R CH): each slot's copy serves the reads of
// GD_T3R chunks (session 14: one chunk a block, its ~2.5 slots' copies dependent L2 round trips for one small product
// each; benchmarks/NOTES.md "Session 15 — s15b16"): the most that fit 2 blocks per SM by shared memory
// (Config.tier3_chunks; a timing build may set it)
constexpr int GD_T3SMAX = 113 * 1024;  // shared memory for 2 blocks per SM (_compile.Config.tier3_chunks)
constexpr int gd_t3_smem(int R) { return (R * CH * GD_LDQ + 2 * (DKP * GD_TLDS + R * CH)) * (int)sizeof(ta); }
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
__device__ __forceinline__ void gd_t3_mm(Acc (&acc)[GdT3Tiles::RW][GdT3Tiles::NTL][4], const ta* Qs, const ta* S,
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
                    tf32_split((float)(wr[a][x & 1] * Qs[(wt.r0 + 128 * a + g8 + 8 * (x & 1)) * GD_LDQ + k0 + t4 + 4 * (x >> 1)]),
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
                for (int h = 0; h < 2; ++h) xa[a][h] = wr[a][h] * Qs[(wt.r0 + 128 * a + g8 + 8 * h) * GD_LDQ + k];
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
__device__ __forceinline__ void gd_t3_fold(ta* Qs, const ta* P, int K8) {
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
                        tf32_split((float)Qs[(r + 8 * (e & 1)) * GD_LDQ + k0 + t4 + 4 * (e >> 1)], ah[e], al[e]);
#pragma unroll
                    for (int i = 0; i < NTF; ++i) {
                        unsigned bh[2], bl[2];
                        gd_frag_b(P, GD_TLDS, k0, n0 + 8 * i, bh, bl);
                        gd_mma3(x[i], ah, al, bh, bl);
                    }
                }
            } else {
                for (int k = 0; k < K8; ++k) {
                    const ta xa[2] = {Qs[r * GD_LDQ + k], Qs[(r + 8) * GD_LDQ + k]};
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
                for (int e = 0; e < 4; ++e) Qs[(r + 8 * (e >> 1)) * GD_LDQ + n0 + 8 * i + 2 * t4 + (e & 1)] = x[i][e];
        __syncthreads();  // (the last: P's buffer read, Qs complete)
    }
}
struct alignas(2 * sizeof(ta)) gd_pair {
    ta x, y;
};
extern "C" __global__ void __launch_bounds__(NT, GD_T3RMINB) gd_tier3(
    const ta* __restrict__ qe,   // (BH, n, CH, DK) gd_forms': a period's first chunk's Qp (GD_T1X0Q_SET)
    const ta* __restrict__ Qp,   // gd_tier1's
    const ta* __restrict__ lam,  // (BH, T, L)
    ta* __restrict__ out,        // (BH, n, CH, DV)  + the reads of levels > GD_TM (o16: read only)
    const ta* __restrict__ Sb,   // gd_coarse's
    ti* __restrict__ o16,        // (BH, T, DV) out + the reads, rounded to the 16-bit inputs' dtype; or null
    const ta* __restrict__ Z, const ta* __restrict__ Pc,  // fill: gd_tier1x's transfers, gd_cgroup's prefixes (else unread)
    int T, int DK, int DV, int L, int n, int nP, int BH, int fill) {  // fill: GD_T3FILL (0 / 1)
    extern __shared__ __align__(16) unsigned char smem_raw[];
    constexpr int SS = DKP * GD_TLDS, RR = GD_T3R * CH, RW = GdT3Tiles::RW, NTL = GdT3Tiles::NTL;
    ta* Qs = reinterpret_cast<ta*>(smem_raw);  // [t][kk], the block's chunks' rows
    ta* Ss = Qs + RR * GD_LDQ;                 // [buffer][kk][col]
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
        const ta* o = out + (cj * CH + t) * DV + col;
        const bool two = col + 1 < DV;
        gd_st16(o16 + (bh * T + g) * DV + col, two, DV % 2 == 0, o[0] + y0, two ? o[1] + y1 : (ta)0);
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
    const bool vec = DK % (16 / (int)sizeof(ta)) == 0, vs = DV % (16 / (int)sizeof(ta)) == 0;
    if (GD_T1X0Q_SET && !(c & (GD_TP - 1))) {  // chunk c a period's first: Qp_c = Qe_c (not stored by gd_tier1x)
        gd_copy<CH, DKP>(Qs, GD_LDQ, qe + cj * CH * DK, DK, CH, DK, vec);
        gd_copy<RR - CH, DKP>(Qs + CH * GD_LDQ, GD_LDQ, Qp + (cj + 1) * CH * DK, DK, (min(GD_T3R, n - c) - 1) * CH, DK, vec);
    } else {
        gd_copy<RR, DKP>(Qs, GD_LDQ, Qp + cj * CH * DK, DK, min(GD_T3R, n - c) * CH, DK, vec);  // chunks past n: zero
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
    load(0);
    cp_async_commit();
#ifdef __CUDA_ARCH__
    if (GD_T3PRE_SET) {  // (all DV columns of the rows: the other column blocks' too)
        constexpr int LINE = 128 / (int)sizeof(ta);
        const ta* o = out + cj * CH * DV;
        const i64 m = (i64)min(GD_T3R, n - c) * CH * DV;
        for (i64 x = (i64)tid * LINE; x < m; x += NT * LINE) asm volatile("prefetch.global.L2 [%0];" ::"l"(o + x));
    }
#endif
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
        const ta* o = out + cj * CH * DV + c0;
#pragma unroll
        for (int a = 0; a < RW; ++a) {  // (a row block's reads at a time: float32's 3xTF32 build spilled with all)
            gd_pair ov[NTL][2];         // (x, x + 1: columns cc, cc + 1 of row t; c0, cc even: 2 sizeof(ta)-aligned)
#pragma unroll
            for (int i = 0; i < NTL; ++i)
#pragma unroll
                for (int h = 0; h < 2; ++h)
                    ov[i][h] = *reinterpret_cast<const gd_pair*>(o + (i64)wt.row(a, 2 * h) * DV + wt.col(i, 0));
#pragma unroll
            for (int i = 0; i < NTL; ++i)
#pragma unroll
                for (int h = 0; h < 2; ++h) {
                    const int t = wt.row(a, 2 * h), cc = wt.col(i, 0);
                    const ta y0 = ov[i][h].x + acc[a][i][2 * h], y1 = ov[i][h].y + acc[a][i][2 * h + 1];
                    if (o16) gd_st16(o16 + (bh * T + (i64)c * CH + t) * DV + c0 + cc, true, true, y0, y1);
                    else *reinterpret_cast<gd_pair*>(out + (cj * CH + t) * DV + c0 + cc) = gd_pair{y0, y1};
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
                if (c0 + cc < DV && (i64)c * CH + t < T) out[(cj * CH + t) * DV + c0 + cc] += acc[a][i][x];
            }
}
#endif
