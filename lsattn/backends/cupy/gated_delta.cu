// Log-linear Gated DeltaNet (loglinear_gated_delta): the scan over chunks (host: gated_delta.py).
// Compiled after common.cu (TA, CH, DKP; the inputs are in the compute type TA: 16-bit inputs are
// widened by the registry). Its per-chunk inputs come from gd_forms (gated_delta_forms.cu, compiled
// after this file) or, on the autograd path, from the array-API WY forms as torch operations.
//
// gd_scan: one block per (sequence, column block of GD_BV value columns), a sequential loop over
// the call's chunks c = F .. F + n - 1 (absolute indices, aligned to absolute multiples of CH,
// padded with identity tokens). The block keeps the chunk-level Fenwick level states
// S^m (d_k x GD_BV, m = 1 .. NLC) and the incoming state's slots (d_k x GD_BV each) in global
// memory (its own columns of `lev` and `oldc`, which are the kernel's results: the final states),
// staged one at a time through shared memory. For chunk c:
//   (a) out[t] += sum_m lambda[t, log2 CH + m] qeff_t^T S^m
//                 + sum_j lambda[t, max(j + 1, bit_length(p XOR t))] qeff_t^T Old_j
//       (qeff_t = (A_t ... A_{cCH})^T q_t: reads a state carried to the chunk's start);
//   (b) every slot S <- P_c S = e^{g_c} S - phi_c (eGK_c S)  (P_c never formed);
//   (c) Fenwick merge at chunk granularity: z = trailing zeros of (c + 1),
//       S^{z+1} <- H_c + sum_{m <= z} S^m, S^1 .. S^z <- 0 (skipped for the last chunk when the
//       call ends inside it: the returned state is then read at the call's end, before the merge).
//
// Why this equals the chunk tree of gated_delta._across_chunks: a key of chunk c' < c is read
// from chunk c at token level log2 CH + bit_length(c XOR c') (the tokens' high bits are the
// chunk indices). Treat chunks as tokens of a recurrence whose transition is P_c and whose write
// is H_c (chunk c's keys carried to its end): the merge above is exactly the token-level Fenwick
// merge of gated_delta._merge applied to chunk indices, so before chunk c the slot S^m holds
// sum over chunks c' of the chunk-level bucket {c' : bit_length(c XOR c') = m} of
// P_{c-1} ... P_{c'+1} H_{c'} -- the bucket's write P_pre H_B carried to chunk c's start, which
// the tree computes as combine() of the bucket's summaries and its prefix. qeff_t^T (that) with
// weight lambda[t, log2 CH + m] is the tree's read. Buckets that lie before the call (chunks
// < F) are empty here (their keys are in the incoming state's slots), as the tree's identity
// padding. An incoming slot j (bucket B_p^{j+1}) is carried by the same transitions and read with
// the level every key of it has from t: max(j + 1, bit_length(p XOR t)) (state_read_levels).
//
// Threads: NT = 256 as 16 value columns x 16 row groups; consecutive rows t = rg CH/16 + i in (a),
// kk = rg DKP/16 + i in (b), so a thread's operands are one vector load per reduction index.
// The held slots go GD_G at a time (one pass: 3 barriers, GD_G x more independent FMAs per
// operand load). Shared: qeff^T and eGK^T (DKP x CH, [kk][t]), phi^T (CH x DKP, [t][kk]), the
// staged slots (GD_G x DKP x GD_BV) and W = eGK S (GD_G x CH x GD_BV).
// Cost per chunk and held slot (d_v columns in all): 3 products of 2 CH d_k d_v flops; the slots
// held at chunk c are popcount(c) chunk levels (plus the incoming slots of a stream).
#define GD_BV 16
#define GD_G 4  // slots per pass
#define GD_RG (NT / GD_BV)
constexpr int GD_RA = CH / GD_RG, GD_RB = DKP / GD_RG;  // rows per thread in (a) and (b)
constexpr int GD_LOG2C = CH == 16 ? 4 : (CH == 32 ? 5 : 6);

// The shared-memory tiles of gd_scan.
struct GdTiles {
    ta* QeT;  // [kk][t]
    ta* EkT;  // [kk][t]
    ta* PhT;  // [t][kk]
    ta* Sb;   // [g][kk][col]
    ta* W;    // [g][t][col]
};

// One pass over G held slots Sg[0 .. G-1] (level codes lv: > 0 chunk level m, <= -2 incoming slot
// j = -2 - lv): stage them, (a) add their reads to acc and form W = eGK S, (b) S <- e^g S - phi W.
template <int G>
__device__ __forceinline__ void gd_pass(ta* const (&Sg)[GD_G], const int (&lv)[GD_G], ta (&acc)[GD_RA],
                                        const GdTiles& sm, const ta* __restrict__ lam, i64 bh, int T, int L, i64 p,
                                        i64 c, ta eg, int DK, int DV) {
    const int tid = threadIdx.x, col = tid % GD_BV, rg = tid / GD_BV;
    const int vc = blockIdx.y * GD_BV + col;
#pragma unroll
    for (int h = 0; h < G; ++h) {  // slot h, its loads in flight together
        const ta* S = Sg[h];
        staged<DKP * GD_BV, NT>(
            [&](int idx) {
                const int kk = idx / GD_BV, cc = blockIdx.y * GD_BV + idx % GD_BV;
                return kk < DK && cc < DV ? S[(i64)kk * DV + cc] : (ta)0;
            },
            [&](int idx, ta x) { sm.Sb[h * DKP * GD_BV + idx] = x; });
    }
    __syncthreads();
    // (a) the reads of these slots and W = eGK S
    ta r[G][GD_RA], w[G][GD_RA];
#pragma unroll
    for (int g = 0; g < G; ++g)
#pragma unroll
        for (int i = 0; i < GD_RA; ++i) r[g][i] = w[g][i] = (ta)0;
#pragma unroll 2
    for (int kk = 0; kk < DK; ++kk) {
        ta qa[GD_RA], ea[GD_RA], sv[G];
        ldv<GD_RA>(sm.QeT + kk * CH + rg * GD_RA, qa);
        ldv<GD_RA>(sm.EkT + kk * CH + rg * GD_RA, ea);
#pragma unroll
        for (int g = 0; g < G; ++g) sv[g] = sm.Sb[(g * DKP + kk) * GD_BV + col];
#pragma unroll
        for (int g = 0; g < G; ++g)
#pragma unroll
            for (int i = 0; i < GD_RA; ++i) {
                r[g][i] = fma(qa[i], sv[g], r[g][i]);
                w[g][i] = fma(ea[i], sv[g], w[g][i]);
            }
    }
#pragma unroll
    for (int i = 0; i < GD_RA; ++i) {
        const int t = rg * GD_RA + i;
        const i64 tabs = c * CH + t, gt = tabs - p;
        const bool real = gt >= 0 && gt < T;  // padding rows read nothing
        const ta* lt = lam + (bh * T + (real ? gt : 0)) * L;
#pragma unroll
        for (int g = 0; g < G; ++g) {
            sm.W[(g * CH + t) * GD_BV + col] = w[g][i];
            if (real) {
                const int level = lv[g] > 0 ? GD_LOG2C + lv[g] : max(-1 - lv[g], bitlen64(p ^ tabs));
                acc[i] = fma(lt[level], r[g][i], acc[i]);
            }
        }
    }
    __syncthreads();
    // (b) S <- e^g S - phi W
    ta x[G][GD_RB];
#pragma unroll
    for (int g = 0; g < G; ++g)
#pragma unroll
        for (int i = 0; i < GD_RB; ++i) x[g][i] = eg * sm.Sb[(g * DKP + rg * GD_RB + i) * GD_BV + col];
#pragma unroll 2
    for (int t = 0; t < CH; ++t) {
        ta pa[GD_RB], wv[G];
        ldv<GD_RB>(sm.PhT + t * DKP + rg * GD_RB, pa);
#pragma unroll
        for (int g = 0; g < G; ++g) wv[g] = sm.W[(g * CH + t) * GD_BV + col];
#pragma unroll
        for (int g = 0; g < G; ++g)
#pragma unroll
            for (int i = 0; i < GD_RB; ++i) x[g][i] = fma(-pa[i], wv[g], x[g][i]);
    }
    if (vc < DV) {
#pragma unroll
        for (int g = 0; g < G; ++g)
#pragma unroll
            for (int i = 0; i < GD_RB; ++i) {
                const int kk = rg * GD_RB + i;
                if (kk < DK) Sg[g][(i64)kk * DV + vc] = x[g][i];
            }
    }
    __syncthreads();
}

// The chunk's tiles: Qe^T, Ek^T as [kk][t] (Qe^T skipped when null; reads coalesced along kk), Ph as
// [t][kk] (ph_t: the forward scan, the backward's phase 1) or [kk][t] (the backward's phase 2); zero-padded.
__device__ __forceinline__ void gd_tiles(ta* QeT, ta* EkT, ta* Ph, const ta* qej, const ta* ekj, const ta* phj,
                                         int DK, int tid, bool ph_t) {
    (void)tid;  // staged<> spreads the indices over the block's threads
    auto rows = [DK](const ta* src) {  // element idx = (t, kk) of a row-major CH x DK tile
        return [=](int idx) { return idx % DKP < DK ? src[(idx / DKP) * DK + idx % DKP] : (ta)0; };
    };
    auto to_T = [](ta* dst) { return [=](int idx, ta x) { dst[(idx % DKP) * CH + idx / DKP] = x; }; };
    // every load of a tile in flight before its stores (one L2 round trip per batch, not per element)
    if (QeT) staged<DKP * CH, NT>(rows(qej), to_T(QeT));
    staged<DKP * CH, NT>(rows(ekj), to_T(EkT));
    staged<DKP * CH, NT>([=](int idx) { return idx / CH < DK ? phj[idx] : (ta)0; },  // (kr, tc) = (idx / CH, idx % CH)
                         [=](int idx, ta x) { Ph[ph_t ? (idx % CH) * DKP + idx / CH : idx] = x; });
}

extern "C" __global__ void __launch_bounds__(NT) gd_scan(
    const ta* __restrict__ qe,   // (BH, n, CH, DK)  qeff
    const ta* __restrict__ ek,   // (BH, n, CH, DK)  e^G K
    const ta* __restrict__ ph,   // (BH, n, DK, CH)  phi
    const ta* __restrict__ Hc,   // (BH, n, DK, DV)  H = phi V
    const ta* __restrict__ gc,   // (BH, n)          chunk total log decay
    const ta* __restrict__ lam,  // (BH, T, L)
    ta* __restrict__ out,        // (BH, n, CH, DV)  in: intra-chunk output; out: + the reads
    ta* __restrict__ lev,        // (BH, NLC, DK, DV) in: zeros; out: chunk-level slots at the end
    ta* __restrict__ oldc,       // (BH, n_old, DK, DV) in: incoming slots; out: carried to the end
    int T, int DK, int DV, int L, i64 p, i64 F, int n, int n_old, int NLC, int merge_last) {
    extern __shared__ __align__(16) unsigned char smem_raw[];
    GdTiles sm;
    sm.QeT = reinterpret_cast<ta*>(smem_raw);
    sm.EkT = sm.QeT + DKP * CH;
    sm.PhT = sm.EkT + DKP * CH;
    sm.Sb = sm.PhT + DKP * CH;
    sm.W = sm.Sb + GD_G * DKP * GD_BV;
    check_smem((3 * DKP * CH + GD_G * (DKP + CH) * GD_BV) * sizeof(ta));
    constexpr int RA = GD_RA, RB = GD_RB;
    const int tid = threadIdx.x, col = tid % GD_BV, rg = tid / GD_BV;
    const i64 bh = blockIdx.x;
    const int vc = blockIdx.y * GD_BV + col;  // this thread's value column
    const bool cok = vc < DV;
    const i64 slot_sz = (i64)DK * DV;
    ta* levb = lev + bh * NLC * slot_sz;
    ta* oldb = oldc + bh * n_old * slot_sz;
    unsigned long long occ = 0;  // chunk-level slots holding keys (bit m - 1: S^m)
    for (int j = 0; j < n; ++j) {
        const i64 c = F + j, cj = bh * n + j;
        const ta* qej = qe + cj * CH * DK;
        const ta* ekj = ek + cj * CH * DK;
        const ta* phj = ph + cj * DK * CH;
        gd_tiles(sm.QeT, sm.EkT, sm.PhT, qej, ekj, phj, DK, tid, true);
        const ta eg = ex(gc[cj]);
        ta acc[RA];
#pragma unroll
        for (int i = 0; i < RA; ++i) acc[i] = (ta)0;
        __syncthreads();
        // the held slots, GD_G at a time: old slot s < n_old where bit s of p is set, chunk-level
        // slot m = s - n_old + 1 where bit m - 1 of occ is set
        for (int s = 0;;) {
            ta* Sg[GD_G];  // the slots (nullptr: none)
            int lv[GD_G];  // > 0: chunk level m; <= -2: incoming slot j = -2 - lv; -1: none
            int cnt = 0;
#pragma unroll
            for (int g = 0; g < GD_G; ++g) {
                Sg[g] = nullptr;
                lv[g] = -1;
                for (; s < n_old + NLC && Sg[g] == nullptr; ++s) {
                    if (s < n_old ? ((p >> s) & 1) : ((occ >> (s - n_old)) & 1ull)) {
                        Sg[g] = s < n_old ? oldb + s * slot_sz : levb + (s - n_old) * slot_sz;
                        lv[g] = s < n_old ? -2 - s : s - n_old + 1;
                        ++cnt;
                    }
                }
            }
            if (cnt == 0) break;
            switch (cnt) {  // one pass over the cnt slots found (no work for absent ones)
                case 1: gd_pass<1>(Sg, lv, acc, sm, lam, bh, T, L, p, c, eg, DK, DV); break;
                case 2: gd_pass<2>(Sg, lv, acc, sm, lam, bh, T, L, p, c, eg, DK, DV); break;
                case 3: gd_pass<3>(Sg, lv, acc, sm, lam, bh, T, L, p, c, eg, DK, DV); break;
                default: gd_pass<4>(Sg, lv, acc, sm, lam, bh, T, L, p, c, eg, DK, DV); break;
            }
        }
        if (cok) {
#pragma unroll
            for (int i = 0; i < RA; ++i) {
                const i64 o = (cj * CH + rg * RA + i) * DV + vc;
                out[o] += acc[i];
            }
        }
        // (c) the Fenwick merge after chunk c
        if (j < n - 1 || merge_last) {
            const int z = __ffsll((long long)(c + 1)) - 1;  // trailing zeros of c + 1
            const ta* Hj = Hc + cj * slot_sz;
            if (cok) {
                for (int kk = rg * RB; kk < min(DK, rg * RB + RB); ++kk) {  // the rows of (b)
                    ta x = Hj[(i64)kk * DV + vc];
                    for (int mm = 1; mm <= z; ++mm) {
                        if ((occ >> (mm - 1)) & 1ull) {
                            ta* Sm = levb + (mm - 1) * slot_sz + (i64)kk * DV + vc;
                            x += *Sm;
                            *Sm = (ta)0;
                        }
                    }
                    levb[z * slot_sz + (i64)kk * DV + vc] = x;
                }
            }
            occ = (occ & ~((1ull << z) - 1ull)) | (1ull << z);
        }
        __syncthreads();
    }
}
