// Log-linear Gated DeltaNet: gd_scan's two-tier form, its fine tier (gd_tier1, gd_tier1x; the coarse slots and gd_tier3
// in gated_delta_coarse.cu, compiled after this file; host: gated_delta.py's tier_plan, _compile.CupyOps.gd_tiers).
// Compiled after gated_delta.cu, whose helpers (gd_copy, gd_mm, GdWarpTiles, gd_put, GD_MINB, GD_WS_SET) it uses.

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
template <int R> struct GdA { using T = ta; };  // a tile's element as an operand: gd_tf32 when stored rounded (GD_TAR),
template <> struct GdA<1> { using T = gd_tf32; };  // gd_bf when stored as bfloat16 (GD_H16)
template <> struct GdA<2> { using T = gd_bf; };
using gd_ta = GdA<GD_H16 ? 2 : (GD_TAR ? 1 : 0)>::T;
// the two-tier walks' tiles of gd_forms' outputs (Qe, Ek [t][kk]; phi [kk][t]; H [kk][col]) in gd_e, rows padded by 16
// bytes (GD_H16: 16-bit tiles, half the bytes; the same banks for the fragment loads: a 32-bit word holds two columns)
constexpr int GD_LDQE = DKP + 16 / (int)sizeof(gd_e), GD_LDPE = CH + 16 / (int)sizeof(gd_e);
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
// GD_ZR_SET (1xTF32): gd_tier1x's transfers Z stored as their tf32 roundings (gd_rtf): every reader takes Z as a tf32
// operand (the coarse chains' A, gd_cgroup's first S, gd_cfill's A, gd_tier3's fold's B: cvt.rna of the exact value is
// that value), so the same products (bit-equal), and the chains whose A is always Z load it without a cvt
// (gated_delta_coarse.cu's GD_CAX_SET). (s23d16's first form, every slot S of the walks stored rounded so that (a)'s B
// fragments need no cvt, measured +3% on gd_tier1, +-1% on gd_tier1x at 8K / 32K: removed.) 0: session 22's.
#ifndef GD_ZR_SET
#define GD_ZR_SET 1
#endif
constexpr bool GD_ZR = GD_TC && GD_X1_SET && GD_ZR_SET;
// The walks' shared accesses of W ((a)'s epilogue) and S, H ((b)'s) by pairs of columns (the C fragment's x, x + 1: one
// 8-byte access; s23d16: their 4-byte stores at a row stride of 72 words were 1.8-2-way bank-conflicted, 45-50% of
// gd_tier1's / gd_tier1x's shared store wavefronts in ncu at 8K).
// W's columns cc, cc + 1 (cc even: w 2 elements aligned) as one store
__device__ __forceinline__ void gd_putw2(gd_tf32* w, float a, float b) { *reinterpret_cast<uint2*>(w) = uint2{to_tf32(a), to_tf32(b)}; }
__device__ __forceinline__ void gd_putw2(ta* w, ta a, ta b) { *reinterpret_cast<gd_pair*>(w) = gd_pair{a, b}; }
__device__ __forceinline__ void gd_putw2(uint2* w, float a, float b) { gd_put(w, a), gd_put(w + 1, b); }
// Qe and Ek, or NG slots' W (in ta); a low walk's H tile (GD_T1HPRE_SET: DKP x GD_TLDS, after the read weights)
// (in ta; GD_H16: the 16-bit tiles' bytes over sizeof(ta))
constexpr int GD_E2 = (int)sizeof(gd_e), GD_ES = (int)sizeof(ta);
template <int NG>
constexpr int GD_TQW_N = 2 * CH * GD_LDQE * GD_E2 > NG * CH * GD_TLDW * (int)sizeof(gd_tw)
                             ? 2 * CH * GD_LDQE * GD_E2 / GD_ES : NG * CH * GD_TLDW * (int)(sizeof(gd_tw) / sizeof(ta));
constexpr int GD_TPW = DKP * GD_LDPE * GD_E2 / GD_ES;  // phi's tile (in ta)
constexpr int GD_TQW = GD_TQW_N<GD_TM>, GD_THW = GD_T1HPRE_SET ? DKP * GD_TLDS * GD_E2 / GD_ES : 0;
// Config.gd_smem(GD_TM, tier_bw, hc=GD_T1HPRE_SET) (gd_tier1: the low walks and, unless split, the transfers)
constexpr int GD_TSMEM = (GD_TQW + GD_TPW + GD_TM * (DKP * GD_TLDS + CH) + GD_THW) * (int)sizeof(ta);
// Config.smem("gd_tier1x") = gd_smem(1, tier_bw) (gd_tier1x: the transfers)
constexpr int GD_TSMEM1 = (GD_TQW_N<1> + GD_TPW + DKP * GD_TLDS + CH) * (int)sizeof(ta);
// blocks per SM the registers of gd_tier1 / gd_tier3 must allow: gd_scan's at 32 columns; at 64, 2 (shared memory's)
#ifdef GD_T1MINB_SET  // a timing build may set it (gd_tier1's)
constexpr int GD_T1MINB = GD_T1MINB_SET;
#else
constexpr int GD_T1MINB = GD_TBW <= 32 ? GD_MINB : (GD_TC && DKP <= 64 ? 2 : 1);
#endif
constexpr int GD_T3MINB = GD_TBW <= 32 ? GD_MINB : (GD_TC && DKP <= 64 ? 2 : 1);
// gd_tier1x's (shared memory's: 71 KB, 3 a SM; GD_H16's 16-bit tiles 46 KB, 4 a SM where its registers allow: GD_T1X4_SET)
#ifndef GD_T1X4_SET
#define GD_T1X4_SET 1
#endif
constexpr int GD_T1XMINB = GD_TBW <= 32 ? GD_MINB : (GD_TC && DKP <= 64 ? (GD_H16 && GD_T1X4_SET ? 4 : 3) : 1);
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

// GD_T1B16_SET (s26d; GD_H16 + GD_O16 builds: the public bf16 call's): the walks' (a) products W_j = Ek S_j, R_j = Qe S_j
// (gd_tier1's low walks, gd_tier1x's transfers) by bf16 mma.sync m16n8k16 (gd_mm16): Ek and Qe are bfloat16 already, the
// slots S (float32) rounded to bfloat16 as B operands (2^-9 relative, as the stored intermediates), one mma per tile and
// 16 k instead of two, no cvt.rna per element. Not bit-equal (the S16 bound). 0: 1xTF32 (gd_mm), session 26's. Default
// 1: the public bf16 forward 0.98x / 0.95x of 0 at 16K / 32K (H200, session 27).
#ifndef GD_T1B16_SET
#define GD_T1B16_SET 1
#endif
constexpr bool GD_T1B16 = GD_T1B16_SET && GD_H16 && GD_O16;  // (the public call's build: the training forward keeps 1xTF32)
// gd_mm's c[j][a][i] += A_a Y_j (GD_TC) for bfloat16 A tiles (X0, X1: [row][k], row stride ldx) and float32 Y_j = Y + j ys
// ([k][col], row stride ldy), K a multiple of 16, on bf16 mma.sync m16n8k16: the k order inside a 16-step permuted alike
// on A and B (hardware slots 2 t4, 2 t4 + 1, 2 t4 + 8, 2 t4 + 9 carry k0 + t4, + 4, + 8, + 12; the sum is over all 16),
// so B's rows are gd_frag_b's (k0 + t4: conflict-free at a row stride of 72 words), B's pairs rounded by one cvt.rn.bf16x2
template <int NG, int NA, int NTL>
__device__ __forceinline__ void gd_mm16(float (*c)[NA][NTL][4], const gd_bf* X0, const gd_bf* X1, int ldx, const float* Y,
                                        int ys, int ldy, int r0, int n0, int K, const unsigned (&use)[NA]) {
    const int g8 = threadIdx.x % 32 / 4, t4 = threadIdx.x % 4;
    const auto frag = [&](const gd_bf* X, int k0, unsigned (&r)[4]) {  // rows g8, g8 + 8
        const gd_bf* p = X + (r0 + g8) * ldx + k0 + t4;
        const gd_bf* q = p + 8 * ldx;
        r[0] = p[0].u | ((unsigned)p[4].u << 16), r[1] = q[0].u | ((unsigned)q[4].u << 16);
        r[2] = p[8].u | ((unsigned)p[12].u << 16), r[3] = q[8].u | ((unsigned)q[12].u << 16);
    };
    for (int k0 = 0; k0 < K; k0 += 16) {
        unsigned a[NA][4];
        frag(X0, k0, a[0]);
        if constexpr (NA > 1)
            if (use[NA - 1]) frag(X1, k0, a[NA - 1]);
#pragma unroll
        for (int j = 0; j < NG; ++j) {
            if (!((use[0] >> j) & 1)) continue;
#pragma unroll
            for (int i = 0; i < NTL; ++i) {
                const float* y = Y + j * ys + (k0 + t4) * ldy + n0 + 8 * i + g8;
                const unsigned b0 = pack2(y[0], y[4 * ldy]), b1 = pack2(y[8 * ldy], y[12 * ldy]);
#pragma unroll
                for (int x = 0; x < NA; ++x)
                    if ((use[x] >> j) & 1) mma_bf16(c[j][x][i], a[x], b0, b1);
            }
        }
    }
}

// One block of gd_tier1 / gd_tier3 over chunks [lo, hi) (absolute = local: the call starts at chunk 0) and
// NC columns from c0 (DV; GT_XFER: DK): GT_LOW (slots: levels 1, 2; Tot into fin unless null), GT_XFER (one
// slot from the identity, no H; Z into fin; its reads Qe S, unweighted, stored into out = Qp unless null), GT_TOP
// (gs slots of levels lev[j] from sin + j sst, read throughout). Shared memory as gd_walk<GD_TM>'s: Qe, Ek (W over them), phi, S, the read weights.
// gd_forms' outputs and Qp in gd_e (GD_H16: bfloat16); out: GT_XFER's Qp (gd_e), GT_LOW's the output's partial sums
// (gd_o), GT_TOP's the float output (ta).
template <int kind> struct GdTO { using T = ta; };
template <> struct GdTO<GT_LOW> { using T = gd_o; };  // (GD_O16: bfloat16 partial sums)
template <> struct GdTO<GT_XFER> { using T = gd_e; };
template <int kind, int NG = GD_TM>  // NG: slots (the transfer: 1)
__device__ __forceinline__ void gd_tier_walk(const gd_e* __restrict__ qe, const gd_e* __restrict__ ek,
                                             const gd_e* __restrict__ ph, const gd_e* __restrict__ Hc,
                                             const ta* __restrict__ gc, const ta* __restrict__ lam,
                                             typename GdTO<kind>::T* __restrict__ out, ta* __restrict__ fin,
                                             const ta* __restrict__ sin, i64 sst, int T, int DK, int DV, int L, int n,
                                             int NC, i64 bh, int c0, int lo, int hi, const int (&lev)[GD_TM], int gs) {
    extern __shared__ __align__(16) unsigned char smem_raw[];
    gd_e* Qe = reinterpret_cast<gd_e*>(smem_raw);
    gd_e* Ek = Qe + CH * GD_LDQE;
    gd_e* Ph = reinterpret_cast<gd_e*>(reinterpret_cast<ta*>(smem_raw) +
                                       (GD_T1SPLIT_SET && kind == GT_XFER ? GD_TQW_N<NG> : GD_TQW));  // (gd_tier1x: one slot's W)
    ta* S = reinterpret_cast<ta*>(Ph + DKP * GD_LDPE);  // [slot][kk][col], row stride GD_TLDS
    ta* lw = S + NG * DKP * GD_TLDS;     // [slot][t]
    gd_e* Hs = reinterpret_cast<gd_e*>(lw + NG * CH);  // GT_LOW, GD_T1HPRE_SET: H_c's columns [kk][col], row stride GD_TLDS
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
    const bool vec = DK % (16 / GD_E2) == 0, vs = DV % (16 / GD_E2) == 0;
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
                if (r && !x0) gd_copy<CH, DKP>(Qe, GD_LDQE, qe + cj * CH * DK, DK, CH, DK, vec);
                gd_copy<CH, DKP>(Ek, GD_LDQE, ek + cj * CH * DK, DK, CH, DK, vec);
                if (phw) cp_async_commit();  // (a)'s tiles
                gd_copy<DKP, CH>(Ph, GD_LDPE, ph + cj * DK * CH, CH, DK, CH, vec);
            }
            if (hp) gd_copy<DKP, GD_TBW>(Hs, GD_TLDS, Hc + cj * slot_sz + c0, DV, DK, min(GD_TBW, DV - c0), vs);
            cp_async_commit();
            if (GD_TPF_SET && c + 1 < hi) {  // a timing build: the next chunk's tiles into L2 during this one
                if (kind != GT_XFER) gd_prefetch(qe + (cj + 1) * CH * DK, DK);
                gd_prefetch(ek + (cj + 1) * CH * DK, DK);
                gd_prefetch(ph + (cj + 1) * DK * CH, DK);
            }
            if constexpr (kind == GT_XFER)
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
            if constexpr (GD_T1B16) {
                if (wa.on) gd_mm16<NG, 2, TWA>(acc, Ek, Qe, GD_LDQE, S, SS, GD_TLDS, wa.r0, wa.n0, (DK + 15) / 16 * 16, use);
            } else if (wa.on) {
                gd_mm<NG, 2, TWA>(acc, (const gd_ta*)Ek, (const gd_ta*)Qe, GD_LDQE, (const ta*)S, SS, GD_TLDS, wa.r0, wa.n0, K8,
                                  use);
            }
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
                        ta rs = 0, wm = 0, wm1 = 0;
                        constexpr bool V2 = GD_T1V2_SET && GD_TC;
#pragma unroll
                        for (int j = 0; j < NG; ++j) {
                            if (mw && (mg >> j) & 1) {
                                wm += acc[j][0][it][x];
                                wm1 += acc[j][0][it][x | 1];
                            } else if (nb && (u >> j) & 1 && !(x & 1)) {  // (W's columns cc, cc + 1 at x even)
                                gd_putw2(W + j * WS + t * GD_TLDW + cc, acc[j][0][it][x], acc[j][0][it][x + 1]);
                            }
                            if (kind != GT_XFER && (r >> j) & 1) rs += wl(j, x, t) * acc[j][1][it][x];
                        }
                        if (mw && nb && !(x & 1)) gd_putw2(W + t * GD_TLDW + cc, wm, wm1);  // slot 0's W: the merging slots' sum
                        if (V2 && (x & 1)) continue;  // (columns cc, cc + 1 stored at x even)
                        if (V2) {
                            const int nc = kind == GT_XFER ? NC : DV;
                            if (!r || c0 + cc >= nc || (kind != GT_XFER && (i64)c * CH + t >= T)) continue;
                            auto* o = out + (cj * CH + t) * nc + c0 + cc;
                            const ta a0 = kind == GT_XFER ? acc[0][1][it][x] : rs;
                            ta a1 = 0;
                            if (kind == GT_XFER) a1 = acc[0][1][it][x + 1];
                            else
#pragma unroll
                                for (int j = 0; j < NG; ++j)
                                    if ((r >> j) & 1) a1 += wl(j, x, t) * acc[j][1][it][x + 1];
                            if constexpr (kind == GT_XFER && GD_H16) {  // (c0, cc even: 4-byte aligned)
                                if (nc % 2 == 0) {
                                    gd_put2(o, a0, a1);
                                } else {
                                    gd_put(o, a0);
                                    if (c0 + cc + 1 < nc) gd_put(o + 1, a1);
                                }
                            } else if constexpr (kind == GT_LOW && GD_H16 && GD_O16) {  // (4-byte aligned)
                                if (nc % 2 == 0) {
                                    gd_red2(o, a0, a1);
                                } else {
                                    gd_red(o, a0);
                                    if (c0 + cc + 1 < nc) gd_red(o + 1, a1);
                                }
                            } else if (nc % 2 == 0) {  // (c0, cc even: 8-byte aligned; cc + 1 < nc)
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
                        if constexpr (kind == GT_XFER) {  // Qp_c's columns (padding rows included: zero queries)
                            if (r && c0 + cc < NC) gd_put(out + (cj * CH + t) * NC + c0 + cc, acc[0][1][it][x]);
                        } else if (r && c0 + cc < DV && (i64)c * CH + t < T) {
                            gd_red(out + (cj * CH + t) * DV + c0 + cc, rs);
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
            if (x0) gd_mm<NG, 1, TWB>(accb, PhA, nullptr, GD_LDPE, (const gd_ta*)(Ek + c0), 0, GD_LDQE, wb.r0, wb.n0, CH, ub);
            else if (u) gd_mm<NG, 1, TWB>(accb, PhA, nullptr, GD_LDPE, (const gd_tw*)W, WS, GD_TLDW, wb.r0, wb.n0, CH, ub);
#pragma unroll
            for (int it = 0; it < TWB; ++it)
#pragma unroll
                for (int x = 0; x < 4; x += 2) {  // (the columns cc, cc + 1 of row kk together: 8-byte accesses)
                    const int kk = wb.row(x), cc = wb.col(it, x);
                    ta m0 = 0, m1 = 0;
                    if (kind == GT_LOW && GD_T1HPRE_SET) {
                        gd_ld2(Hs + kk * GD_TLDS + cc, m0, m1);  // (zero past DK, DV)
                    } else if (kind == GT_LOW && kk < DK) {
                        const gd_e* h = Hc + cj * slot_sz + (i64)kk * DV + c0 + cc;
                        if (c0 + cc < DV) m0 = gd_wid(h[0]);
                        if (c0 + cc + 1 < DV) m1 = gd_wid(h[1]);
                    }
#pragma unroll
                    for (int j = 0; j < NG; ++j) {
                        if (!((u >> j) & 1)) continue;
                        gd_pair* e = reinterpret_cast<gd_pair*>(S + j * SS + kk * GD_TLDS + cc);
                        const gd_pair sv = *e;
                        const ta v0 = eg * sv.x - accb[j][0][it][x], v1 = eg * sv.y - accb[j][0][it][x + 1];
                        if (kind == GT_LOW && j < z) m0 += v0, m1 += v1;
                        else *e = gd_pair{v0, v1};
                    }
                    if (kind == GT_LOW) {
                        if (z < NG) {
                            *reinterpret_cast<gd_pair*>(S + z * SS + kk * GD_TLDS + cc) = gd_pair{m0, m1};
                        } else if (fin && kk < DK) {
                            if (c0 + cc < DV) fin[(i64)kk * DV + c0 + cc] = m0;
                            if (c0 + cc + 1 < DV) fin[(i64)kk * DV + c0 + cc + 1] = m1;
                        }
                    }
                }
        }
        __syncthreads();  // S read by the next chunk's (a); the tiles (and W) rewritten by its copies
    }
    if (kind == GT_XFER)
        for (int idx = tid; idx < DKP * GD_TBW; idx += NT) {
            const int kk = idx / GD_TBW, cc = idx % GD_TBW;
            if (kk < DK && c0 + cc < NC) fin[(i64)kk * NC + c0 + cc] = GD_ZR ? gd_rtf(S[kk * GD_TLDS + cc]) : S[kk * GD_TLDS + cc];
        }
}

extern "C" __global__ void __launch_bounds__(NT, GD_T1MINB) gd_tier1(
    const gd_e* __restrict__ qe, const gd_e* __restrict__ ek, const gd_e* __restrict__ ph, const gd_e* __restrict__ Hc,
    const ta* __restrict__ gc, const ta* __restrict__ lam,  // as gd_scan's (GD_H16: the four in bfloat16)
    gd_o* __restrict__ out,                                 // (BH, n, CH, DV)  in: intra-chunk output; out: + levels 1, 2
    ta* __restrict__ Z,                                     // (BH, nP, DK, DK) out: the periods' transfers (but the last)
    ta* __restrict__ Tot,                                   // (BH, nP, DK, DV) out: the periods' keys (but the last)
    gd_e* __restrict__ Qp,                                  // (BH, n, CH, DK) out: the queries carried to their period's
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
    const gd_e* __restrict__ qe, const gd_e* __restrict__ ek, const gd_e* __restrict__ ph, const gd_e* __restrict__ Hc,
    const ta* __restrict__ gc, const ta* __restrict__ lam, gd_o* __restrict__ out, ta* __restrict__ Z,
    ta* __restrict__ Tot, gd_e* __restrict__ Qp, int T, int DK, int DV, int L, int n, int nP, int BH) {
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
