// What the backward's per-chunk kernels hib_dq (hierarchical_bwd_dq.cu) and hib_dkdv (hierarchical_bwd_dkdv.cu)
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
// (HIB_DKR) hib_dkdv's right blocks' products with their A operands E^T, B^T as bf16 pairs along j / i (rows of CH + 8,
// formed once, not packed at each tile read) beside their float32 tiles (the epilogues'), each buffer's M by cp.async
// beside its U (B^T formed by warps on consecutive s: conflict-free); HIB_DKX elements after B^T
constexpr int HIB_DKX = HIB_DKR ? (DVP / 2 + DKP / 2) * (CH + 8) + HIB_UNB * DKP : 0;
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
    ta *Cr, *Dc;                // hib_dq's rows' max_j -o_tj, a held slot's delta e^-(row shift) (CH)
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
    m.Tb = take(dq ? 0 : DKP * HIB_TCL + HIB_DKX);
    if (dq && b < m.Tk + HIB_FREG) b = m.Tk + HIB_FREG;  // hib_fpairs' operands over the slot products'
    if (!dq && b < after + HIB_F2) b = after + HIB_F2;  // hib_dkdv's pair products after the pairs' tiles
    m.LVs = take(CH * HIB_VLD); m.Ks = take(CH * HIB_KLD); m.Ak = take(CH * HIB_KLD); m.Av = take(dq ? 0 : CH * HIB_VLD);
    m.Lam = take(CH * HI_LMAX); m.DL = take(dq ? CH * HI_LMAX : 0);
    m.Zs = take(DKP);
    m.ac = take(CH); m.pre = take(CH); m.Ls = take(CH); m.Ds = take(CH); m.X = take(CH);
    m.mm = take(DKP); m.nn = take(DVP); m.R = take(CH); m.Fl = take(CH);
    m.Cr = take(dq ? CH : 0); m.Dc = take(dq ? CH : 0);
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
