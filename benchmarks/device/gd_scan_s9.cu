// TIMING ONLY (benchmarks/device/ab_gd_scan.py): session 9's sequential gd_scan (lsattn/backends/cupy/gated_delta.cu
// at 885e11f), kept to time the level-parallel scan against it in one run. Not used by lsattn.
// Log-linear Gated DeltaNet (loglinear_gated_delta): the scan over chunks (host: gated_delta.py).
// Compiled after common.cu (TA, CH, DKP; the inputs are in the compute type TA: 16-bit inputs are
// widened by the registry). Its per-chunk inputs come from gd_forms (gated_delta_forms.cu, compiled
// after this file) or, on the autograd path, from the array-API WY forms as torch operations.
//
// gd_scan: one block per (sequence, column block of GD_BV value columns), a sequential loop over
// the call's chunks c = F .. F + n - 1 (absolute indices, aligned to absolute multiples of CH,
// padded with identity tokens). The block keeps the chunk-level Fenwick level states
// S^m (d_k x GD_BV, m = 1 .. NLC) and the incoming state's slots (d_k x GD_BV each) in shared
// memory for the whole call (the first nres of the n_old + NLC slots; any beyond the host's
// shared-memory capacity stay in global memory, their own columns of `lev` / `oldc`, reached
// through the same generic pointer); read in at the start, written out at the end (`lev`, `oldc`
// are the kernel's results: the final states). For chunk c:
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
// Threads: GD_NT = GD_NG x 256, GD_NG slot groups of NT = 256 threads. The held slots of a chunk
// are dealt round-robin over the groups (held slot number r to group r % GD_NG); in a pass every
// group does (a) and (b) for up to GD_G of its slots (W = eGK S in its own buffer), so the groups
// run side by side; every group joins every pass's barriers (block-wide), with no slot when it has
// none left. float32 (gd_pass_tc): the group's 8 warps own 16 x 8 tiles of the products on tensor
// cores (mma.sync m16n8k8 tf32, every operand split into two tf32 halves: 3xTF32, ~2^-21 relative,
// fp32 accumulation); float64 (gd_pass_ffma): 16 value columns x 16 row groups, rows t = rg CH/16 + i
// in (a), kk = rg DKP/16 + i in (b), the reductions over kk and t in steps of 4 (one vector load per
// row and step). The groups' reads are summed through shared memory once per chunk; the merge (c) is
// spread over all threads. The chunk's tiles and lambda rows are copied to shared memory
// asynchronously (cp.async element copies as stored: every copy in flight at once, no registers,
// no transposing stores; a second buffer filled during the previous chunk's passes measured no
// faster, benchmarks/NOTES.md); H, the intra-chunk output and g go to registers at the chunk's start.
// Shared: Qe and Ek ([t][kk], row stride DKP + 16 / sizeof(ta): the rows of the two
// row groups of a warp fall on different banks), phi ([kk][t], row stride CH + 16 / sizeof(ta)),
// lambda's first LS = min(L, 64) levels of the chunk's rows ([t][l]; no level read exceeds 63);
// W per group (GD_G x CH x GD_BV, [g][t][col]; then the group's reads); the nres resident slots
// ([kk][col], DKP x GD_BV each): Config.gd_scan_smem in _compile.py.
// Cost per chunk and held slot (d_v columns in all): 3 products of 2 CH d_k d_v flops; the slots
// held at chunk c are popcount(c) chunk levels (plus the incoming slots of a stream).
#define GD_BV 16
#define GD_G 2  // slots per pass of a group
#define GD_RG (NT / GD_BV)
#define GD_LMAX 64  // lambda levels staged per row
constexpr int GD_RA = CH / GD_RG, GD_RB = DKP / GD_RG;  // rows per thread in (a) and (b)
constexpr int GD_LOG2C = CH == 16 ? 4 : (CH == 32 ? 5 : 6);
constexpr int GD_LDQ = DKP + 16 / (int)sizeof(ta), GD_LDP = CH + 16 / (int)sizeof(ta);  // tile row strides
// slot groups per block: a pass's per-thread arrays (RA + RB values of ta) bound the registers
// (GD_NT threads may use 65536 / GD_NT registers each; the counts below keep ptxas from spilling
// on sm_90); _compile.Config.gd_groups mirrors this
constexpr int GD_WORDS = (GD_RA + GD_RB) * (int)sizeof(ta) / 4;
#ifdef GD_NG_SET  // a timing build may set the group count
constexpr int GD_NG = GD_NG_SET;
#else
// float32 (tensor-core passes): always 2, whose 128 registers hold the fragments without spilling
// (4 groups at 64 registers spilled 80 bytes at CH = DKP = 16 / 32)
constexpr int GD_NG = sizeof(ta) == 4 ? 2 : (GD_WORDS <= 4 ? 4 : (GD_WORDS <= 16 ? 2 : 1));
#endif
constexpr int GD_NT = NT * GD_NG;
// float32: the passes' products on tensor cores (gd_pass_tc: mma.sync m16n8k8 tf32 with split
// operands, ~2^-21 relative: the float32 bound holds); float64: FFMA (gd_pass_ffma)
constexpr bool GD_TC = sizeof(ta) == 4;
constexpr int GD_ACC = GD_TC ? 4 : GD_RA;  // a thread's read accumulators (TC: one C fragment)

// The shared-memory tiles of one chunk of gd_scan.
struct GdTiles {
    ta* Qe;  // [t][kk], stride GD_LDQ
    ta* Ek;  // [t][kk], stride GD_LDQ
    ta* Ph;  // [kk][t], stride GD_LDP
    ta* Lm;  // [t][l], LS levels
};

// A slot's columns of this block: element (kk, col) at p[kk * ld + col] (shared or global memory).
struct GdSlot {
    ta* p;
    int ld;
};

// The level of slot code lv (> 0 chunk level m; <= -2 incoming slot j = -2 - lv) read from token tabs.
__device__ __forceinline__ int gd_level(int lv, i64 p, i64 tabs) {
    return lv > 0 ? GD_LOG2C + lv : max(-1 - lv, bitlen64(p ^ tabs));
}

// One pass of a group over G of its held slots Sg[0 .. G-1] (level codes lv: > 0 chunk level m,
// <= -2 incoming slot j = -2 - lv): (a) add their reads to acc and form W = eGK S, (b) S <- e^g S - phi W.
// G = 0: the pass's barriers only. Two block-wide barriers.
template <int G>
__device__ __forceinline__ void gd_pass_ffma(const GdSlot (&Sg)[GD_G], const int (&lv)[GD_G], ta (&acc)[GD_ACC],
                                             const GdTiles& sm, ta* W, int LS, i64 p, i64 c, int T, ta eg, int DK, bool cok) {
    const int gt = threadIdx.x % NT, col = gt % GD_BV, rg = gt / GD_BV;
    if constexpr (G > 0) {
        // (a) r = Qe S (the reads) and W = Ek S, rows t = rg RA + i
        ta r[G][GD_RA], w[G][GD_RA];
#pragma unroll
        for (int g = 0; g < G; ++g)
#pragma unroll
            for (int i = 0; i < GD_RA; ++i) r[g][i] = w[g][i] = (ta)0;
        for (int k0 = 0; k0 < DK; k0 += 4) {  // rows k0 .. k0 + 3 (beyond DK: zero in the tiles and slots)
            ta sv[G][4];
#pragma unroll
            for (int g = 0; g < G; ++g)
#pragma unroll
                for (int u = 0; u < 4; ++u) sv[g][u] = cok && k0 + u < DK ? Sg[g].p[(k0 + u) * Sg[g].ld + col] : (ta)0;
#pragma unroll
            for (int i = 0; i < GD_RA; ++i) {
                ta qa[4], ea[4];
                ldv<4>(sm.Qe + (rg * GD_RA + i) * GD_LDQ + k0, qa);
                ldv<4>(sm.Ek + (rg * GD_RA + i) * GD_LDQ + k0, ea);
#pragma unroll
                for (int g = 0; g < G; ++g)
#pragma unroll
                    for (int u = 0; u < 4; ++u) {
                        r[g][i] = fma(qa[u], sv[g][u], r[g][i]);
                        w[g][i] = fma(ea[u], sv[g][u], w[g][i]);
                    }
            }
        }
#pragma unroll
        for (int i = 0; i < GD_RA; ++i) {
            const int t = rg * GD_RA + i;
            const i64 tabs = c * CH + t, gi = tabs - p;
            const bool real = gi >= 0 && gi < T;  // padding rows read nothing
#pragma unroll
            for (int g = 0; g < G; ++g) {
                W[(g * CH + t) * GD_BV + col] = w[g][i];
                if (real) {
                    acc[i] = fma(sm.Lm[t * LS + gd_level(lv[g], p, tabs)], r[g][i], acc[i]);
                }
            }
        }
    }
    __syncthreads();
    if constexpr (G > 0) {
        // (b) S <- e^g S - phi W, rows kk = rg RB + i of this thread's column
        ta x[G][GD_RB];
#pragma unroll
        for (int g = 0; g < G; ++g)
#pragma unroll
            for (int i = 0; i < GD_RB; ++i) {
                const int kk = rg * GD_RB + i;
                x[g][i] = cok && kk < DK ? eg * Sg[g].p[kk * Sg[g].ld + col] : (ta)0;
            }
        for (int t0 = 0; t0 < CH; t0 += 4) {
            ta wv[G][4];
#pragma unroll
            for (int g = 0; g < G; ++g)
#pragma unroll
                for (int u = 0; u < 4; ++u) wv[g][u] = W[(g * CH + t0 + u) * GD_BV + col];
#pragma unroll
            for (int i = 0; i < GD_RB; ++i) {
                ta pa[4];
                ldv<4>(sm.Ph + (rg * GD_RB + i) * GD_LDP + t0, pa);
#pragma unroll
                for (int g = 0; g < G; ++g)
#pragma unroll
                    for (int u = 0; u < 4; ++u) x[g][i] = fma(-pa[u], wv[g][u], x[g][i]);
            }
        }
        if (cok) {
#pragma unroll
            for (int g = 0; g < G; ++g)
#pragma unroll
                for (int i = 0; i < GD_RB; ++i) {
                    const int kk = rg * GD_RB + i;
                    if (kk < DK) Sg[g].p[kk * Sg[g].ld + col] = x[g][i];
                }
        }
    }
    __syncthreads();
}

// The split (tf32 hi + lo) fragments of gd_pass_tc (lane = 4 g8 + t4, mma_tf32's layout): A (rows
// r0 .., reductions k0 .. k0 + 7) of X [row][k] (row stride ld); B (reductions k0 .., columns n0 ..)
// as at(k, n).
// (templates on the element type: a float64 build compiles gd_pass_tc's text without running it)
template <typename E>
__device__ __forceinline__ void gd_frag_a(const E* X, int ld, int r0, int k0, unsigned (&h)[4], unsigned (&l)[4]) {
    const int g8 = threadIdx.x % 32 / 4, t4 = threadIdx.x % 4;
#pragma unroll
    for (int x = 0; x < 4; ++x) tf32_split((float)X[(r0 + g8 + 8 * (x & 1)) * ld + k0 + t4 + 4 * (x >> 1)], h[x], l[x]);
}
template <typename F>
__device__ __forceinline__ void gd_frag_b(F at, int k0, int n0, unsigned (&h)[2], unsigned (&l)[2]) {
    const int g8 = threadIdx.x % 32 / 4, t4 = threadIdx.x % 4;
    tf32_split((float)at(k0 + t4, n0 + g8), h[0], l[0]);
    tf32_split((float)at(k0 + t4 + 4, n0 + g8), h[1], l[1]);
}
// c += A B for split operands: A_lo B_hi + A_hi B_lo + A_hi B_hi (the dropped A_lo B_lo: ~2^-22)
__device__ __forceinline__ void gd_mma3(float (&c)[4], const unsigned (&ah)[4], const unsigned (&al)[4],
                                        const unsigned (&bh)[2], const unsigned (&bl)[2]) {
    mma_tf32(c, al, bh[0], bh[1]);
    mma_tf32(c, ah, bl[0], bl[1]);
    mma_tf32(c, ah, bh[0], bh[1]);
}

// gd_pass on tensor cores (float32): the group's 8 warps own C tiles of 16 x 8. (a) R = Qe S and
// W = Ek S (CH x GD_BV each): tile w = (rows 16 (w / 2), columns 8 (w % 2)) to warp w (CH / 8 tiles);
// (b) S <- e^g S - phi W (DK x GD_BV): tiles (rows 16 (i / 2), columns 8 (i % 2)) to warps i % 8.
// Every operand is split (3 mma per k-step: all are float32 values, none exact in tf32). Rows past
// DK are zero in the tiles (cp.async zero fill) and read as zero from the slots; acc holds the
// warp's (a) tile of reads (c0..c3 as mma_tf32's C).
template <int G>
__device__ __forceinline__ void gd_pass_tc(const GdSlot (&Sg)[GD_G], const int (&lv)[GD_G], ta (&acc)[GD_ACC],
                                           const GdTiles& sm, ta* W, int LS, i64 p, i64 c, int T, ta eg, int DK, int c0,
                                           int DV) {
    const int wg = threadIdx.x % NT / 32, g8 = threadIdx.x % 32 / 4, t4 = threadIdx.x % 4;
    if constexpr (G > 0) {
        if (wg < CH / 8) {
            const int r0 = 16 * (wg / 2), n0 = 8 * (wg % 2);
            float r[G][4], w[G][4];
#pragma unroll
            for (int g = 0; g < G; ++g)
#pragma unroll
                for (int x = 0; x < 4; ++x) r[g][x] = w[g][x] = 0.f;
            for (int k0 = 0; k0 < DK; k0 += 8) {
                unsigned qh[4], ql[4], eh[4], el[4];
                gd_frag_a(sm.Qe, GD_LDQ, r0, k0, qh, ql);
                gd_frag_a(sm.Ek, GD_LDQ, r0, k0, eh, el);
#pragma unroll
                for (int g = 0; g < G; ++g) {
                    const GdSlot S = Sg[g];
                    unsigned bh[2], bl[2];  // slot elements, zero past DK / DV
                    gd_frag_b([&](int kk, int cc) { return kk < DK && c0 + cc < DV ? S.p[kk * S.ld + cc] : 0.f; },
                              k0, n0, bh, bl);
                    gd_mma3(r[g], qh, ql, bh, bl);
                    gd_mma3(w[g], eh, el, bh, bl);
                }
            }
#pragma unroll
            for (int x = 0; x < 4; ++x) {
                const int t = r0 + g8 + 8 * (x >> 1), cc = n0 + 2 * t4 + (x & 1);
                const i64 tabs = c * CH + t, gi = tabs - p;
                const bool real = gi >= 0 && gi < T;  // padding rows read nothing
#pragma unroll
                for (int g = 0; g < G; ++g) {
                    W[(g * CH + t) * GD_BV + cc] = w[g][x];
                    if (real) acc[x] = fma(sm.Lm[t * LS + gd_level(lv[g], p, tabs)], r[g][x], acc[x]);
                }
            }
        }
    }
    __syncthreads();
    if constexpr (G > 0) {
        for (int tile = wg; tile < 2 * ((DK + 15) / 16); tile += 8) {
            const int r0 = 16 * (tile / 2), n0 = 8 * (tile % 2);
            float x4[G][4];
#pragma unroll
            for (int g = 0; g < G; ++g)
#pragma unroll
                for (int x = 0; x < 4; ++x) x4[g][x] = 0.f;
            for (int k0 = 0; k0 < CH; k0 += 8) {
                unsigned ah[4], al[4];
                gd_frag_a(sm.Ph, GD_LDP, r0, k0, ah, al);
#pragma unroll
                for (int g = 0; g < G; ++g) {
                    unsigned bh[2], bl[2];
                    gd_frag_b([&](int t, int cc) { return W[(g * CH + t) * GD_BV + cc]; }, k0, n0, bh, bl);
                    gd_mma3(x4[g], ah, al, bh, bl);
                }
            }
#pragma unroll
            for (int x = 0; x < 4; ++x) {
                const int kk = r0 + g8 + 8 * (x >> 1), cc = n0 + 2 * t4 + (x & 1);
                if (kk < DK && c0 + cc < DV)
#pragma unroll
                    for (int g = 0; g < G; ++g) {
                        ta* e = Sg[g].p + kk * Sg[g].ld + cc;
                        *e = eg * *e - x4[g][x];
                    }
            }
        }
    }
    __syncthreads();
}

// One pass of a group over G of its held slots (see gd_pass_ffma / gd_pass_tc); two block-wide barriers.
template <int G>
__device__ __forceinline__ void gd_pass(const GdSlot (&Sg)[GD_G], const int (&lv)[GD_G], ta (&acc)[GD_ACC],
                                        const GdTiles& sm, ta* W, int LS, i64 p, i64 c, int T, ta eg, int DK, int c0,
                                        int DV) {
    if constexpr (GD_TC)
        gd_pass_tc<G>(Sg, lv, acc, sm, W, LS, p, c, T, eg, DK, c0, DV);
    else
        gd_pass_ffma<G>(Sg, lv, acc, sm, W, LS, p, c, T, eg, DK, c0 + threadIdx.x % NT % GD_BV < DV);
}

// The chunk's tiles: Qe^T, Ek^T as [kk][t] (Qe^T skipped when null; reads coalesced along kk), Ph as
// [t][kk] (ph_t: the backward's phase 1) or [kk][t] (the backward's phase 2); zero-padded.
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

// Chunk j's tiles and lambda rows into d (asynchronous element copies, one commit group;
// consecutive threads copy consecutive elements of a row): Qe, Ek as [t][kk], phi as [kk][t]
// (zero-padded), lambda's first LS levels of its rows.
__device__ __forceinline__ void gd_chunk_async(const GdTiles& d, const ta* qej, const ta* ekj, const ta* phj,
                                               const ta* lamb, int T, int L, int LS, i64 g0, int DK) {
    for (int idx = threadIdx.x; idx < CH * DKP; idx += GD_NT) {
        const int t = idx / DKP, kk = idx % DKP, kr = idx / CH, tc = idx % CH;
        const bool ok = kk < DK, okr = kr < DK;
        cp_async_ta(d.Qe + t * GD_LDQ + kk, ok ? qej + t * DK + kk : qej, ok);
        cp_async_ta(d.Ek + t * GD_LDQ + kk, ok ? ekj + t * DK + kk : ekj, ok);
        cp_async_ta(d.Ph + kr * GD_LDP + tc, okr ? phj + kr * CH + tc : phj, okr);
    }
    for (int idx = threadIdx.x; idx < CH * LS; idx += GD_NT) {
        const i64 gi = g0 + idx / LS;
        const bool ok = gi >= 0 && gi < T;
        cp_async_ta(d.Lm + idx, ok ? lamb + gi * L + idx % LS : lamb, ok);
    }
    cp_async_commit();
}

extern "C" __global__ void __launch_bounds__(GD_NT) gd_scan(
    const ta* __restrict__ qe,   // (BH, n, CH, DK)  qeff
    const ta* __restrict__ ek,   // (BH, n, CH, DK)  e^G K
    const ta* __restrict__ ph,   // (BH, n, DK, CH)  phi
    const ta* __restrict__ Hc,   // (BH, n, DK, DV)  H = phi V
    const ta* __restrict__ gc,   // (BH, n)          chunk total log decay
    const ta* __restrict__ lam,  // (BH, T, L)
    ta* __restrict__ out,        // (BH, n, CH, DV)  in: intra-chunk output; out: + the reads
    ta* __restrict__ lev,        // (BH, NLC, DK, DV) in: zeros; out: chunk-level slots at the end
    ta* __restrict__ oldc,       // (BH, n_old, DK, DV) in: incoming slots; out: carried to the end
    int T, int DK, int DV, int L, i64 p, i64 F, int n, int n_old, int NLC, int merge_last,
    int nres) {                  // slots 0 .. nres - 1 of the n_old + NLC live in shared memory
    extern __shared__ __align__(16) unsigned char smem_raw[];
    constexpr int SLOT = DKP * GD_BV, WG = GD_G * CH * GD_BV;  // a resident slot; a group's W
    const int LS = min(L, GD_LMAX);                              // lambda levels staged
    GdTiles sm;
    sm.Qe = reinterpret_cast<ta*>(smem_raw);
    sm.Ek = sm.Qe + CH * GD_LDQ;
    sm.Ph = sm.Ek + CH * GD_LDQ;
    sm.Lm = sm.Ph + DKP * GD_LDP;
    ta* Wall = sm.Lm + CH * LS;
    ta* Sr = Wall + GD_NG * WG;
    check_smem((2 * CH * GD_LDQ + DKP * GD_LDP + CH * LS + GD_NG * WG + nres * SLOT) * sizeof(ta));
    constexpr int RA = GD_RA, OE = (CH * GD_BV + GD_NT - 1) / GD_NT, HE = (DKP * GD_BV + GD_NT - 1) / GD_NT;
    const int tid = threadIdx.x, grp = tid / NT, gt = tid % NT, col = gt % GD_BV, rg = gt / GD_BV;
    const i64 bh = blockIdx.x;
    const int c0 = blockIdx.y * GD_BV;  // the block's first value column
    const int NS = n_old + NLC;
    const i64 slot_sz = (i64)DK * DV;
    ta* levb = lev + bh * NLC * slot_sz;
    ta* oldb = oldc + bh * n_old * slot_sz;
    auto glob = [&](int s) { return (s < n_old ? oldb + s * slot_sz : levb + (s - n_old) * slot_sz) + c0; };
    auto slot = [&](int s) { return s < nres ? GdSlot{Sr + s * SLOT, GD_BV} : GdSlot{glob(s), DV}; };
    // the resident slots in: the incoming slots' columns, zero chunk-level slots (lev is zero)
    for (int idx = tid; idx < nres * SLOT; idx += GD_NT) {
        const int s = idx / SLOT, kk = idx % SLOT / GD_BV, cc = idx % GD_BV;
        Sr[idx] = s < n_old && kk < DK && c0 + cc < DV ? glob(s)[(i64)kk * DV + cc] : (ta)0;
    }
    unsigned long long occ = 0;  // chunk-level slots holding keys (bit m - 1: S^m)
    for (int j = 0; j < n; ++j) {
        const i64 c = F + j, cj = bh * n + j;
        // chunk j's intra-chunk output and H (elements idx = tid + e GD_NT of CH x GD_BV and
        // DKP x GD_BV) and g into registers (used after the passes); its tiles and lambda rows into
        // shared memory (read last by the previous chunk's passes, before the barrier after them)
        ta ov[OE], hv[HE];
#pragma unroll
        for (int e = 0; e < OE; ++e) {
            const int idx = tid + e * GD_NT, t = idx / GD_BV, cc = idx % GD_BV;
            ov[e] = idx < CH * GD_BV && c0 + cc < DV ? out[(cj * CH + t) * DV + c0 + cc] : (ta)0;
        }
#pragma unroll
        for (int e = 0; e < HE; ++e) {
            const int idx = tid + e * GD_NT, kk = idx / GD_BV, cc = idx % GD_BV;
            hv[e] = idx < DKP * GD_BV && kk < DK && c0 + cc < DV ? Hc[cj * slot_sz + (i64)kk * DV + c0 + cc] : (ta)0;
        }
        const ta eg = ex(gc[cj]);
        gd_chunk_async(sm, qe + cj * CH * DK, ek + cj * CH * DK, ph + cj * DK * CH, lam + bh * T * L, T, L, LS,
                       c * CH - p, DK);
        cp_async_wait<0>();
        ta acc[GD_ACC];
#pragma unroll
        for (int i = 0; i < GD_ACC; ++i) acc[i] = (ta)0;
        __syncthreads();
        // this group's held slots (held slot number r % GD_NG == grp), GD_G per pass: incoming slot
        // s < n_old where bit s of p is set, chunk-level slot m = s - n_old + 1 where bit m - 1 of
        // occ is; as many passes as group 0 (which has the most) needs
        const int held = __popcll(n_old >= 64 ? p : p & ((1ll << n_old) - 1)) + __popcll(occ);
        const int passes = (held + GD_NG * GD_G - 1) / (GD_NG * GD_G);
        ta* W = Wall + grp * WG;
        for (int pass = 0, s = 0, r = 0; pass < passes; ++pass) {
            GdSlot Sg[GD_G];
            int lv[GD_G];  // > 0: chunk level m; <= -2: incoming slot j = -2 - lv
            int cnt = 0;
            for (; s < NS && cnt < GD_G; ++s) {
                if (!(s < n_old ? ((p >> s) & 1) : ((occ >> (s - n_old)) & 1ull))) continue;
                if (r++ % GD_NG != grp) continue;
#pragma unroll
                for (int g = 0; g < GD_G; ++g) {  // Sg[cnt], lv[cnt] with static indices: registers, not a stack frame
                    if (g == cnt) {
                        Sg[g] = slot(s);
                        lv[g] = s < n_old ? -2 - s : s - n_old + 1;
                    }
                }
                ++cnt;
            }
#if GD_G != 2
#error "gd_scan dispatches passes of 0, 1 or 2 slots"
#endif
            if (cnt == 2) {
                gd_pass<2>(Sg, lv, acc, sm, W, LS, p, c, T, eg, DK, c0, DV);
            } else if (cnt == 1) {
                gd_pass<1>(Sg, lv, acc, sm, W, LS, p, c, T, eg, DK, c0, DV);
            } else {
                gd_pass<0>(Sg, lv, acc, sm, W, LS, p, c, T, eg, DK, c0, DV);
            }
        }
        // the group's reads into its W buffer (its passes are done), summed over the groups
        if constexpr (GD_TC) {
            const int wg = gt / 32, g8 = gt % 32 / 4, t4 = gt % 4;
            if (wg < CH / 8)
#pragma unroll
                for (int x = 0; x < 4; ++x) W[(16 * (wg / 2) + g8 + 8 * (x >> 1)) * GD_BV + 8 * (wg % 2) + 2 * t4 + (x & 1)] = acc[x];
        } else {
#pragma unroll
            for (int i = 0; i < RA; ++i) W[(rg * RA + i) * GD_BV + col] = acc[i];
        }
        __syncthreads();
#pragma unroll
        for (int e = 0; e < OE; ++e) {
            const int idx = tid + e * GD_NT, t = idx / GD_BV, cc = idx % GD_BV;
            if (idx < CH * GD_BV && c0 + cc < DV) {
                ta x = ov[e];
#pragma unroll
                for (int g = 0; g < GD_NG; ++g) x += Wall[g * WG + idx];
                out[(cj * CH + t) * DV + c0 + cc] = x;
            }
        }
        // (c) the Fenwick merge after chunk c (slots are read and written by the passes before the
        // barrier above, and after it only here)
        if (j < n - 1 || merge_last) {
            const int z = __ffsll((long long)(c + 1)) - 1;  // trailing zeros of c + 1
#pragma unroll
            for (int e = 0; e < HE; ++e) {
                const int idx = tid + e * GD_NT, kk = idx / GD_BV, cc = idx % GD_BV;
                if (idx < DKP * GD_BV && kk < DK && c0 + cc < DV) {
                    ta x = hv[e];
                    for (int mm = 1; mm <= z; ++mm) {
                        if ((occ >> (mm - 1)) & 1ull) {
                            const GdSlot Sm = slot(n_old + mm - 1);
                            x += Sm.p[kk * Sm.ld + cc];
                            Sm.p[kk * Sm.ld + cc] = (ta)0;
                        }
                    }
                    const GdSlot Sz = slot(n_old + z);
                    Sz.p[kk * Sz.ld + cc] = x;
                }
            }
            occ = (occ & ~((1ull << z) - 1ull)) | (1ull << z);
        }
        // the next chunk's copies write the tiles read last before the barrier above; its passes
        // start after its barrier
    }
    __syncthreads();
    // the resident slots out
    for (int idx = tid; idx < nres * SLOT; idx += GD_NT) {
        const int s = idx / SLOT, kk = idx % SLOT / GD_BV, cc = idx % GD_BV;
        if (kk < DK && c0 + cc < DV) glob(s)[(i64)kk * DV + cc] = Sr[idx];
    }
}
