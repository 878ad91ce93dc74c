// Log-linear Gated DeltaNet: the backward of the chunk scan gd_scan (gated_delta.cu), for torch
// autograd (host: gated_delta_bwd.py). Compiled after common.cu and gated_delta.cu.
//
// The forward scan, per block (sequence, GDB_BV value columns; every column evolves on its own),
// over the call's chunks c = F + j, j = 0 .. n - 1, for every slot S held before chunk c (an
// incoming slot s: bit s of p; a chunk-level slot m: gd_held(c, m, F)):
//   (a) r = Qe S,  out[t] += lambda[t, lev] r[t]          (Qe = qeff_c: CH x d_k)
//   (b) W = Ek S,  S' = e^g S - Ph W                      (Ek = e^G K: CH x d_k, Ph = phi: d_k x CH)
//   (c) after (a), (b) of every slot, unless the call ends inside chunk c: z = trailing zeros of
//       c + 1,  S^{z+1} <- H_c + sum_{m <= z held} S^m  (slot z + 1 is empty before: bit z of c
//       is clear), and the slots m <= z are no longer held.
// lev: the chunk-level slot m is read at level log2 CH + m, the incoming slot s at
// max(s + 1, bit_length(p XOR t)); only rows t of the call (0 <= t - p < T) read.
//
// Backward: adjoint slots dS (d_k x GDB_BV each, zero after the last chunk: the final states are
// not outputs of the differentiated call), in reverse chunk order j = n - 1 .. 0:
//   reverse of (c): dH_c = dS^{z+1}; dS^m = dS^{z+1} for the held m <= z; dS^{z+1} = 0;
//   reverse of (a), (b) for every held slot, with S the slot before chunk c and dS' its adjoint
//   after the chunk:
//     dr[t]     = lambda[t, lev] dout[t]                  (rows of the call; 0 elsewhere)
//     dlambda[t, lev] += sum_cols r[t] dout[t]
//     dW        = -Ph^T dS'                                (CH x w)
//     dQe      += dr S^T,  dEk += dW S^T,  dPh -= dS' W^T
//     dg       += e^g sum(dS' * S)
//     dS        = e^g dS' + Qe^T dr + Ek^T dW
//   after chunk 0 the incoming slots' adjoints are d old.
// The slots S before each chunk are recomputed first (phase 1: (b) and (c) for j < n - 1, the
// reads skipped) into the scratch `sv` (n x NS slots of d_k x d_v, NS = n_old + NLC: a d_k x d_v
// state per chunk and level, ~(NS / CH) of a T d_k d_v tensor; see gated_delta_bwd.py).
// Column blocks own disjoint columns of sv, dS, dH and d old; their shares of the reductions over
// columns (dQe, dEk, dPh, dg, dlambda) are added with atomicAdd into zeroed outputs (ceil(d_v / GDB_BV)
// adds per element: no per-column-block copies, no host-side sum; the order of the adds varies).
//
// Threads: GDB_BV columns x GDB_RG row groups; a thread owns rows kk = rg DKP/GDB_RG + i of
// its column of every slot in global memory (the (b), (c) and dS writes), rows t = rg CH/GDB_RG + i
// of the per-token products, and elements (t, kk) = (tid / DKP + e NT / DKP, tid % DKP) of the CH x DKP
// outer products (a fixed kk: the staged S and dS' values are loaded once per column).
// Shared: qeff^T, eGK^T ([kk][t]), phi ([t][kk] in phase 1, [kk][t] in phase 2), the staged S and dS' (row stride GDB_BV + 1:
// the outer products read them along kk), W, dr, dW ([t][col]) and NT values for a reduction.
// Value columns per block (the host's grid: ceil(d_v / 16) column blocks, _compile.gd_scan_bwd_columns). 8 or 4
// (timing builds, CH and DKP >= 32 / 64) were slower at 8K (H200, session 13: 7.49 ms at 16, 11.8 at 8 (186
// registers: 1 block per SM), 21.5 at 4): more blocks repeat the chunks' tile copies and the column sums' atomics.
#ifndef GDB_BV
#define GDB_BV 16
#endif
// Threads per block: NT, or GDB_NT = 2 NT (a timing build at CH = DKP = 64: twice the warps on the same columns, each
// thread half the rows; the chunk tiles still copied by the first NT threads, gd_tiles)
#ifndef GDB_NT
#define GDB_NT NT
#endif
#define GDB_RG (GDB_NT / GDB_BV)
#ifndef GDB_PF  // the next held slot fetched during the current one's products (0: fetched before its own; 8K: 7.49 -> 7.14 ms)
#define GDB_PF 1
#endif
#define GDB_SBS (GDB_BV + 1)

// Chunk-level slot m (1-based) holds keys before chunk c of a call whose first chunk is F: bit
// m - 1 of c is set (the Fenwick bucket [cl - 2^(m-1), cl), cl = c with its low m - 1 bits
// cleared) and the bucket has chunks of the call (cl - 1 >= F).
__device__ __forceinline__ bool gd_held(i64 c, int m, i64 F) {
    return ((c >> (m - 1)) & 1) && ((c >> (m - 1)) << (m - 1)) > F;
}

extern "C" __global__ void __launch_bounds__(GDB_NT) gd_scan_bwd(
    const ta* __restrict__ qe,    // (BH, n, CH, DK)  qeff
    const ta* __restrict__ ek,    // (BH, n, CH, DK)  e^G K
    const ta* __restrict__ ph,    // (BH, n, DK, CH)  phi
    const ta* __restrict__ Hc,    // (BH, n, DK, DV)  H = phi V
    const ta* __restrict__ gc,    // (BH, n)          chunk total log decay
    const ta* __restrict__ lam,   // (BH, T, L)
    const ta* __restrict__ dout,  // (BH, n, CH, DV)  gradient of the scan's output (chunked)
    const ta* __restrict__ oldc,  // (BH, n_old, DK, DV) incoming slots
    ta* __restrict__ sv,          // (BH, n, NS, DK, DV) scratch: the slots before each chunk
    ta* __restrict__ dS,          // (BH, NS, DK, DV) in: zeros; out: adjoints before the call
    ta* __restrict__ dqe,         // (BH, n, CH, DK)  in: zeros (the column blocks add theirs)
    ta* __restrict__ dek,         // (BH, n, CH, DK)  in: zeros
    ta* __restrict__ dph,         // (BH, n, DK, CH)  in: zeros
    ta* __restrict__ dH,          // (BH, n, DK, DV)  in: zeros
    ta* __restrict__ dg,          // (BH, n)          in: zeros
    ta* __restrict__ dlam,        // (BH, T, L)       in: zeros
    int T, int DK, int DV, int L, i64 p, i64 F, int n, int n_old, int NLC, int merge_last) {
    extern __shared__ __align__(16) unsigned char smem_raw[];
    ta* QeT = reinterpret_cast<ta*>(smem_raw);  // [kk][t]
    ta* EkT = QeT + DKP * CH;                   // [kk][t]
    ta* PhT = EkT + DKP * CH;                   // phi: [t][kk] in phase 1, [kk][t] in phase 2
    ta* Sb = PhT + DKP * CH;                    // [kk][col], stride GDB_SBS
    ta* dSb = Sb + DKP * GDB_SBS;                // [kk][col], stride GDB_SBS
    ta* Wb = dSb + DKP * GDB_SBS;                // [t][col]
    ta* dRb = Wb + CH * GDB_BV;                  // [t][col]
    ta* dWb = dRb + CH * GDB_BV;                 // [t][col]
    ta* red = dWb + CH * GDB_BV;                 // [GDB_NT]
    check_smem((3 * DKP * CH + 2 * DKP * GDB_SBS + 3 * CH * GDB_BV + GDB_NT) * sizeof(ta));
    constexpr int RA = CH / GDB_RG, RB = DKP / GDB_RG, E = CH * DKP / GDB_NT;
    constexpr int LOG2C = CH == 16 ? 4 : (CH == 32 ? 5 : 6);
    const int tid = threadIdx.x, col = tid % GDB_BV, rg = tid / GDB_BV;
    const int ekk = tid % DKP, et0 = tid / DKP;  // the outer products' column and first row (DKP divides GDB_NT)
    const i64 bh = blockIdx.x;
    const int vc = blockIdx.y * GDB_BV + col;
    const bool cok = vc < DV;
    const int NS = n_old + NLC;
    const i64 slot_sz = (i64)DK * DV;
    const ta* oldb = oldc + bh * n_old * slot_sz;
    ta* svb = sv + bh * n * NS * slot_sz;
    ta* dSh = dS + bh * NS * slot_sz;
    auto held = [&](i64 c, int s) { return s < n_old ? (((p >> s) & 1) != 0) : gd_held(c, s - n_old + 1, F); };
    // a slot's columns of this block, EPT values a thread, fetched into registers, then put into [kk][col] (stride
    // GDB_SBS): with GDB_PF the next held slot's fetch is issued before the current slot's products (its latency
    // under them; the slots of one chunk are independent: slot s writes only its own adjoint)
    constexpr int EPT = DKP * GDB_BV / GDB_NT;
    auto fetch = [&](ta(&r)[EPT], const ta* src) {
#pragma unroll
        for (int e = 0; e < EPT; ++e) {
            const int idx = tid + e * GDB_NT, kk = idx / GDB_BV, vcc = blockIdx.y * GDB_BV + idx % GDB_BV;
            r[e] = (kk < DK && vcc < DV) ? src[(i64)kk * DV + vcc] : (ta)0;
        }
    };
    auto put = [&](ta* dst, const ta(&r)[EPT]) {
#pragma unroll
        for (int e = 0; e < EPT; ++e) dst[(tid + e * GDB_NT) / GDB_BV * GDB_SBS + (tid + e * GDB_NT) % GDB_BV] = r[e];
    };
    auto next_held = [&](i64 c, int s) {  // the first slot >= s held before chunk c (NS: none)
        while (s < NS && !held(c, s)) ++s;
        return s;
    };

    // ---- phase 1: the slots before every chunk (sv[j]) ----
    for (int s = 0; s < n_old; ++s) {
        if (!((p >> s) & 1) || !cok) continue;
        for (int kk = rg * RB; kk < min(DK, rg * RB + RB); ++kk)
            svb[(i64)s * slot_sz + (i64)kk * DV + vc] = oldb[(i64)s * slot_sz + (i64)kk * DV + vc];
    }
    for (int j = 0; j + 1 < n; ++j) {
        const i64 c = F + j, cj = bh * n + j;
        if (GDB_NT == NT || tid < NT) gd_tiles(nullptr, EkT, PhT, nullptr, ek + cj * CH * DK, ph + cj * DK * CH, DK, tid, true);
        const ta eg = ex(gc[cj]);
        __syncthreads();
        ta rS[EPT];
        const ta* svj = svb + (i64)j * NS * slot_sz;
        int s = next_held(c, 0);
        if (GDB_PF && s < NS) fetch(rS, svj + (i64)s * slot_sz);
        for (int sn; s < NS; s = sn) {
            sn = next_held(c, s + 1);
            if (!GDB_PF) fetch(rS, svj + (i64)s * slot_sz);
            put(Sb, rS);
            __syncthreads();
            if (GDB_PF && sn < NS) fetch(rS, svj + (i64)sn * slot_sz);
            ta w[RA];
#pragma unroll
            for (int i = 0; i < RA; ++i) w[i] = (ta)0;
            for (int kk = 0; kk < DK; ++kk) {
                const ta sv_ = Sb[kk * GDB_SBS + col];
                ta ea[RA];
                ldv<RA>(EkT + kk * CH + rg * RA, ea);
#pragma unroll
                for (int i = 0; i < RA; ++i) w[i] = fma(ea[i], sv_, w[i]);
            }
#pragma unroll
            for (int i = 0; i < RA; ++i) Wb[(rg * RA + i) * GDB_BV + col] = w[i];
            __syncthreads();
            ta x[RB];
#pragma unroll
            for (int i = 0; i < RB; ++i) x[i] = eg * Sb[(rg * RB + i) * GDB_SBS + col];
            for (int t = 0; t < CH; ++t) {
                const ta wv = Wb[t * GDB_BV + col];
                ta pa[RB];
                ldv<RB>(PhT + t * DKP + rg * RB, pa);
#pragma unroll
                for (int i = 0; i < RB; ++i) x[i] = fma(-pa[i], wv, x[i]);
            }
            ta* S1 = svb + ((i64)(j + 1) * NS + s) * slot_sz;
#pragma unroll
            for (int i = 0; i < RB; ++i) {
                const int kk = rg * RB + i;
                if (kk < DK && cok) S1[(i64)kk * DV + vc] = x[i];
            }
            __syncthreads();
        }
        // (c): every chunk but the last merges
        const int z = __ffsll((long long)(c + 1)) - 1;
        ta* S1 = svb + (i64)(j + 1) * NS * slot_sz;
        if (cok) {
            for (int kk = rg * RB; kk < min(DK, rg * RB + RB); ++kk) {
                ta x = Hc[cj * slot_sz + (i64)kk * DV + vc];
                for (int m = 1; m <= z; ++m)
                    if (gd_held(c, m, F)) x += S1[(i64)(n_old + m - 1) * slot_sz + (i64)kk * DV + vc];
                S1[(i64)(n_old + z) * slot_sz + (i64)kk * DV + vc] = x;
            }
        }
        __syncthreads();
    }

    // ---- phase 2: the reverse scan ----
    for (int j = n - 1; j >= 0; --j) {
        const i64 c = F + j, cj = bh * n + j;
        if (j < n - 1 || merge_last) {  // reverse of (c)
            const int z = __ffsll((long long)(c + 1)) - 1;
            if (cok) {
                for (int kk = rg * RB; kk < min(DK, rg * RB + RB); ++kk) {
                    const i64 o = (i64)kk * DV + vc;
                    const ta x = dSh[(i64)(n_old + z) * slot_sz + o];
                    dH[cj * slot_sz + o] = x;
                    dSh[(i64)(n_old + z) * slot_sz + o] = (ta)0;
                    for (int m = 1; m <= z; ++m)
                        if (gd_held(c, m, F)) dSh[(i64)(n_old + m - 1) * slot_sz + o] = x;
                }
            }
        }
        if (GDB_NT == NT || tid < NT) gd_tiles(QeT, EkT, PhT, qe + cj * CH * DK, ek + cj * CH * DK, ph + cj * DK * CH, DK, tid, false);  // Ph as [kk][t]
        const ta eg = ex(gc[cj]);
        ta aq[E], ae[E], ap[E];
#pragma unroll
        for (int e = 0; e < E; ++e) aq[e] = ae[e] = ap[e] = (ta)0;
        ta dga = (ta)0;
        __syncthreads();
        ta rS[EPT], rD[EPT];
        const ta* svj = svb + (i64)j * NS * slot_sz;
        int s = next_held(c, 0);
        if (GDB_PF && s < NS) fetch(rS, svj + (i64)s * slot_sz), fetch(rD, dSh + (i64)s * slot_sz);
        for (int sn; s < NS; s = sn) {
            sn = next_held(c, s + 1);
            if (!GDB_PF) fetch(rS, svj + (i64)s * slot_sz), fetch(rD, dSh + (i64)s * slot_sz);
            put(Sb, rS);
            put(dSb, rD);
            __syncthreads();
            if (GDB_PF && sn < NS) fetch(rS, svj + (i64)sn * slot_sz), fetch(rD, dSh + (i64)sn * slot_sz);
            // r = Qe S, W = Ek S, dW = -Ph^T dS' (rows t); dr, dlambda
            ta r[RA], w[RA], dw[RA];
#pragma unroll
            for (int i = 0; i < RA; ++i) r[i] = w[i] = dw[i] = (ta)0;
            for (int kk = 0; kk < DK; ++kk) {
                const ta sv_ = Sb[kk * GDB_SBS + col], ds = dSb[kk * GDB_SBS + col];
                ta qa[RA], ea[RA], pa[RA];
                ldv<RA>(QeT + kk * CH + rg * RA, qa);
                ldv<RA>(EkT + kk * CH + rg * RA, ea);
                ldv<RA>(PhT + kk * CH + rg * RA, pa);  // phase 2: Ph as [kk][t]
#pragma unroll
                for (int i = 0; i < RA; ++i) {
                    r[i] = fma(qa[i], sv_, r[i]);
                    w[i] = fma(ea[i], sv_, w[i]);
                    dw[i] = fma(-pa[i], ds, dw[i]);
                }
            }
#pragma unroll
            for (int i = 0; i < RA; ++i) {
                const int t = rg * RA + i;
                const i64 tabs = c * CH + t, gi = tabs - p;
                const bool ok = gi >= 0 && gi < T;
                const int level = s < n_old ? max(s + 1, bitlen64(p ^ tabs)) : LOG2C + s - n_old + 1;
                const ta d_o = (ok && cok) ? dout[(cj * CH + t) * DV + vc] : (ta)0;
                const ta lm = ok ? lam[(bh * T + gi) * L + level] : (ta)0;
                ta contrib = r[i] * d_o;  // summed over the GDB_BV columns (lanes of one warp)
#pragma unroll
                for (int off = GDB_BV / 2; off > 0; off /= 2) contrib += __shfl_xor_sync(0xffffffffu, contrib, off, GDB_BV);
                if (col == 0 && ok) atomicAdd(dlam + (bh * T + gi) * L + level, contrib);
                Wb[t * GDB_BV + col] = w[i];
                dRb[t * GDB_BV + col] = lm * d_o;
                dWb[t * GDB_BV + col] = dw[i];
            }
            __syncthreads();
            // the outer products, reduced over this block's columns (element e: row t = t0 + e GDB_NT / DKP, column kk)
#pragma unroll 4
            for (int cc = 0; cc < GDB_BV; ++cc) {
                const ta sk = Sb[ekk * GDB_SBS + cc], dsk = -dSb[ekk * GDB_SBS + cc];
#pragma unroll
                for (int e = 0; e < E; ++e) {
                    const int t = et0 + e * (GDB_NT / DKP);
                    aq[e] = fma(dRb[t * GDB_BV + cc], sk, aq[e]);
                    ae[e] = fma(dWb[t * GDB_BV + cc], sk, ae[e]);
                    ap[e] = fma(dsk, Wb[t * GDB_BV + cc], ap[e]);
                }
            }
            // dS = e^g dS' + Qe^T dr + Ek^T dW (rows kk)
            ta x[RB];
#pragma unroll
            for (int i = 0; i < RB; ++i) {
                const ta ds = dSb[(rg * RB + i) * GDB_SBS + col];
                dga = fma(Sb[(rg * RB + i) * GDB_SBS + col], ds, dga);
                x[i] = eg * ds;
            }
#pragma unroll 2
            for (int t0 = 0; t0 < CH; t0 += 4) {  // 4 rows t per step: vector loads of Qe^T, Ek^T along t
                ta dr4[4], dw4[4];
#pragma unroll
                for (int u = 0; u < 4; ++u) {
                    dr4[u] = dRb[(t0 + u) * GDB_BV + col];
                    dw4[u] = dWb[(t0 + u) * GDB_BV + col];
                }
#pragma unroll
                for (int i = 0; i < RB; ++i) {
                    ta qa[4], ea[4];
                    ldv<4>(QeT + (rg * RB + i) * CH + t0, qa);
                    ldv<4>(EkT + (rg * RB + i) * CH + t0, ea);
#pragma unroll
                    for (int u = 0; u < 4; ++u) x[i] = fma(qa[u], dr4[u], fma(ea[u], dw4[u], x[i]));
                }
            }
#pragma unroll
            for (int i = 0; i < RB; ++i) {
                const int kk = rg * RB + i;
                if (kk < DK && cok) dSh[(i64)s * slot_sz + (i64)kk * DV + vc] = x[i];
            }
            __syncthreads();
        }
#pragma unroll
        for (int e = 0; e < E; ++e) {
            const int t = et0 + e * (GDB_NT / DKP);
            if (ekk < DK) {
                atomicAdd(dqe + (cj * CH + t) * DK + ekk, aq[e]);
                atomicAdd(dek + (cj * CH + t) * DK + ekk, ae[e]);
                atomicAdd(dph + (cj * DK + ekk) * CH + t, ap[e]);
            }
        }
        red[tid] = dga;
        __syncthreads();
        for (int h = GDB_NT / 2; h > 0; h /= 2) {
            if (tid < h) red[tid] += red[tid + h];
            __syncthreads();
        }
        if (tid == 0) atomicAdd(dg + cj, eg * red[0]);
        __syncthreads();
    }
}
