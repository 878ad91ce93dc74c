// Fused decoding steps of the stepper (lsattn.stepper on CuPy arrays / CUDA torch tensors): ONE
// launch per token that reads the token's inputs, the state buffers and the device offset, writes
// the output, updates the buffers IN PLACE and advances the device offset. No host sync, no host
// value of the offset, nothing allocated but the output: capturable in a CUDA graph.
//
// The per-row logic is twinned in NumPy (lsattn/backends/cupy/step.py, class Twin: ek_step,
// ll_step, gd_step, hier_step with the same loops and index math), tested against the array-API
// step in CI.
//
// Inputs are (BH, d) rows with a row stride (elements) and a contiguous last axis; states are
// contiguous float32 / float64 (ta); the output (BH, DV) in the inputs' type (ti).
// off: int64[2] on the device: off[0] the stream's offset p (tokens seen), off[1] a ticket
// counter (0 between launches).
//
// Thread layout: NT = 256 threads = 8 warps; a warp's lane is a column of a 32-column tile of the
// d_v axis and the warps take the rows i = w, w + 8, ... of d_k: every state element is read once
// and written once per step by one thread, a warp's accesses one 128-byte row segment.

#define SW (NT / 32)  // warps per block

// sum over the warps of red[w * 32 + lane] (every thread of the block calls it; synchronises)
__device__ __forceinline__ ta column_sum(ta acc, ta* red) {
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    __syncthreads();
    red[w * 32 + lane] = acc;
    __syncthreads();
    ta s = (ta)0;
#pragma unroll
    for (int u = 0; u < SW; ++u) s += red[u * 32 + lane];
    return s;
}

// Exp-kernel attention, one token: the key joins the summary (m, S, z) (per-feature shift m; the
// larger of m_i, k_i gets factor exactly 1), then the query reads the updated summary:
//   mm_i = max(m_i, k_i), fa_i = e^{m_i - mm_i}, fb_i = e^{k_i - mm_i}
//   S'_ic = fa_i S_ic + fb_i v_c, z'_i = fa_i z_i + fb_i
//   R = max_i (q_i + mm_i), A_i = e^{q_i + mm_i - R}, out_c = sum_i A_i S'_ic / sum_i A_i z'_i;
// NaN when no feature has q_i > -inf and mm_i above the inputs' stand-in (no key above -inf yet):
// no weight at all, 0/0 as a plain call (lsattn._nonfinite.undefined_rows).
// Grid (BH): one block per row (m and z are shared by all columns). Dynamic shared memory:
// 4 DK + 32 SW values of ta.
extern "C" __global__ void __launch_bounds__(NT) ek_step(
    const ti* __restrict__ q, const ti* __restrict__ k, const ti* __restrict__ v, i64 sq, i64 sk, i64 sv,
    ta* __restrict__ m, ta* __restrict__ S, ta* __restrict__ z, ti* __restrict__ out, i64* __restrict__ off,
    int DK, int DV) {
    extern __shared__ __align__(16) unsigned char smem_raw[];
    ta* fa = reinterpret_cast<ta*>(smem_raw);  // DK
    ta* fb = fa + DK;                          // DK
    ta* A = fb + DK;                           // DK: q_i + mm_i, then e^{q_i + mm_i - R}
    ta* zn = A + DK;                           // DK: z'
    ta* red = zn + DK;                         // 32 SW
    const int tid = threadIdx.x, lane = tid & 31, w = tid >> 5;
    const i64 bh = blockIdx.x;
    // the inputs' stand-in for -inf (-finfo.max / 8 of ti): a running maximum at or below it holds no key
#if TI_F16
    const ta lo_in = (ta)(-65504.0f / 8);
#elif TI_BF16
    const ta lo_in = (ta)(-3.3895313892515355e38f / 8);
#else
    const ta lo_in = lo_v();
#endif
    ta x = neg_big(), live = (ta)0;
    for (int i = tid; i < DK; i += NT) {
        const i64 e = bh * DK + i;
        const ta mi = m[e], ki = ld(k + bh * sk + i);
        const ta mm = fmx(mi, ki);
        const ta a = ex(mi - mm), b = ex(ki - mm);
        const ta zi = fma(a, z[e], b);
        fa[i] = a;
        fb[i] = b;
        zn[i] = zi;
        m[e] = mm;
        z[e] = zi;
        const ta qi = ld(q + bh * sq + i), xi = qi + mm;
        A[i] = xi;
        x = fmx(x, xi);
        if (qi > minus_inf() && mm > lo_in) live = (ta)1;
    }
    const ta R = block_max(x, red);  // synchronises: A visible
    const bool defined = block_max(live, red) > (ta)0;
    ta dp = (ta)0;
    for (int i = tid; i < DK; i += NT) {
        const ta e = ex(A[i] - R);
        A[i] = e;
        dp = fma(e, zn[i], dp);
    }
    const ta den = block_sum(dp, red);  // synchronises: A (the weights) visible
    ta* Sb = S + bh * (i64)DK * DV;
    for (int c0 = 0; c0 < DV; c0 += 32) {
        const int c = c0 + lane;
        ta acc = (ta)0;
        if (c < DV) {
            const ta vc = ld(v + bh * sv + c);
            for (int i = w; i < DK; i += SW) {
                const i64 e = (i64)i * DV + c;
                const ta s2 = fma(fa[i], Sb[e], fb[i] * vc);
                Sb[e] = s2;
                acc = fma(A[i], s2, acc);
            }
        }
        const ta num = column_sum(acc, red);
        if (w == 0 && c < DV) st(out + bh * DV + c, defined ? num / den : minus_inf() - minus_inf());  // NaN: 0/0
    }
    if (bh == 0 && tid == 0) off[0] += 1;  // no block reads the offset here
}

// The offset of a step whose blocks all read it (a ticket per block): thread 0 reads p
// into *ps, then takes a ticket; the last block to take one advances the offset and resets the
// counter. Every thread calls it (synchronises).
__device__ __forceinline__ i64 read_offset(i64* off, i64* ps) {
    if (threadIdx.x == 0) {
        const i64 p = *reinterpret_cast<volatile i64*>(off);
        *ps = p;
        __threadfence();  // p is read before this block's ticket
        const unsigned long long t = atomicAdd(reinterpret_cast<unsigned long long*>(off + 1), 1ULL);
        if (t == (unsigned long long)gridDim.x * gridDim.y - 1) {  // the last block: every block has read p
            off[1] = 0;
            off[0] = p + 1;
        }
    }
    __syncthreads();
    return *ps;
}

// The level steps' token prologue (ll_step, gd_step; q, k, lam: the sequence's rows): q and k
// into shared memory, wl[j] = lam_{j+1} for the occupied slots j (else 0; slots beyond level L - 1
// take level L - 1's weight, as the array-API step: the host checks L > bit_length(p) on eager
// steps, so only a replay past the inputs' levels meets them); returns q . k. Every thread calls it
// (synchronises: qs, ks, wl visible).
__device__ __forceinline__ ta level_prologue(const ti* q, const ti* k, const ti* lam, ta* qs, ta* ks, ta* wl, ta* red,
                                             i64 p, int n, int DK, int L, int K) {
    ta part = (ta)0;
    for (int i = threadIdx.x; i < DK; i += NT) {
        qs[i] = ld(q + i);
        ks[i] = ld(k + i);
        part = fma(qs[i], ks[i], part);
    }
    const int j = threadIdx.x;
    if (j < K) wl[j] = (j < n && ((p >> j) & 1)) ? ld(lam + min(j + 1, L - 1)) : (ta)0;
    return block_sum(part, red);
}

// Log-linear Mamba-2 attention, one token at p = off[0] (h = bit_length(p XOR (p + 1)): slots
// 0 .. h - 2 are occupied and fold into slot h - 1), on K level slots (slot j = level j + 1):
//   out_c = lam_0 (q . k) v_c + e^{a} sum_{j: bit j of p} lam_{j+1} sum_i q_i S_jic
//   S_{h-1} <- e^{a} sum_{j < h-1} S_j + k v^T; S_j <- 0 (j < h - 1); S_j <- e^{a} S_j (j >= h, bit j set);
// slots of clear bits above h - 1 are zero and stay zero (not touched).
// lam (BH, L) level weights. Grid (ceil(DV / 32), BH): every block reads p; the last block to take a ticket advances it.
// Dynamic shared memory: 2 DK + 32 SW values of ta.
extern "C" __global__ void __launch_bounds__(NT) ll_step(
    const ti* __restrict__ q, const ti* __restrict__ k, const ti* __restrict__ v, const ti* __restrict__ a,
    const ti* __restrict__ lam, i64 sq, i64 sk, i64 sv, i64 sa, i64 sl, ta* __restrict__ S, ti* __restrict__ out,
    i64* __restrict__ off, int DK, int DV, int L, int K) {
    extern __shared__ __align__(16) unsigned char smem_raw[];
    ta* qs = reinterpret_cast<ta*>(smem_raw);  // DK
    ta* ks = qs + DK;                          // DK
    ta* red = ks + DK;                         // 32 SW
    __shared__ ta wl[64];                      // lam_{j+1} for the occupied slots j, else 0
    __shared__ i64 ps;
    const int tid = threadIdx.x, lane = tid & 31, w = tid >> 5;
    const i64 bh = blockIdx.y;
    const i64 p = read_offset(off, &ps);
    // the host checks p < max_tokens on every eager step; a graph replayed past it must not write
    // beyond the K slots: such a step only advances the offset
    if (bitlen64(p + 1) > K) return;
    const int n = bitlen64(p), h = bitlen64(p ^ (p + 1));
    const ta qk = level_prologue(q + bh * sq, k + bh * sk, lam + bh * sl, qs, ks, wl, red, p, n, DK, L, K);
    const ta ea = ex(ld(a + bh * sa));
    const i64 mat = (i64)DK * DV;
    ta* Sb = S + bh * (i64)K * mat;
    const int c = blockIdx.x * 32 + lane;
    ta acc = (ta)0, vc = (ta)0;
    if (c < DV) {
        vc = ld(v + bh * sv + c);
        for (int i = w; i < DK; i += SW) {
            const i64 e = (i64)i * DV + c;
            ta rd = (ta)0, fold = (ta)0;
            for (int j = 0; j < n; ++j) {
                if (!((p >> j) & 1)) continue;
                const ta x = Sb[j * mat + e];
                rd = fma(wl[j], x, rd);
                if (j < h - 1) {
                    fold += x;
                    Sb[j * mat + e] = (ta)0;
                } else {
                    Sb[j * mat + e] = ea * x;
                }
            }
            Sb[(h - 1) * mat + e] = fma(ea, fold, ks[i] * vc);
            acc = fma(qs[i], rd, acc);
        }
    }
    const ta rdq = column_sum(acc, red);
    if (w == 0 && c < DV) st(out + bh * DV + c, fma(ea, rdq, ld(lam + bh * sl) * qk * vc));
}

// Log-linear Gated DeltaNet, one token at p = off[0] (h, slots as ll_step). Every occupied slot
// takes the token's transition, then the reads and the Fenwick merge:
//   kS_jc = sum_i k_i S_jic;  S'_jic = e^{a} (S_jic - beta k_i kS_jc)
//   out_c = lam_0 beta (q . k) v_c + sum_{j: bit j of p} lam_{j+1} sum_i q_i S'_jic
//   S_{h-1} <- beta k v^T + sum_{j < h-1} S'_j; S_j <- 0 (j < h - 1); S_j <- S'_j (j >= h, bit j set).
// Per occupied slot two passes over the block's columns: k^T S (column_sum over the warps),
// then the transition, the read and the merge (slot h - 1, empty before, accumulates the fold).
// Grid (ceil(DV / 32), BH) as ll_step; dynamic shared memory: 2 DK + 32 SW values of ta.
extern "C" __global__ void __launch_bounds__(NT) gd_step(
    const ti* __restrict__ q, const ti* __restrict__ k, const ti* __restrict__ v, const ti* __restrict__ a,
    const ti* __restrict__ beta, const ti* __restrict__ lam, i64 sq, i64 sk, i64 sv, i64 sa, i64 sb, i64 sl,
    ta* __restrict__ S, ti* __restrict__ out, i64* __restrict__ off, int DK, int DV, int L, int K) {
    extern __shared__ __align__(16) unsigned char smem_raw[];
    ta* qs = reinterpret_cast<ta*>(smem_raw);  // DK
    ta* ks = qs + DK;                          // DK
    ta* red = ks + DK;                         // 32 SW
    __shared__ ta wl[64];
    __shared__ i64 ps;
    const int tid = threadIdx.x, lane = tid & 31, w = tid >> 5;
    const i64 bh = blockIdx.y;
    const i64 p = read_offset(off, &ps);
    if (bitlen64(p + 1) > K) return;  // a graph replayed past max_tokens: only the offset advances
    const int n = bitlen64(p), h = bitlen64(p ^ (p + 1));
    const ta qk = level_prologue(q + bh * sq, k + bh * sk, lam + bh * sl, qs, ks, wl, red, p, n, DK, L, K);
    const ta ea = ex(ld(a + bh * sa)), bt = ld(beta + bh * sb);
    const i64 mat = (i64)DK * DV;
    ta* Sb = S + bh * (i64)K * mat;
    const int c = blockIdx.x * 32 + lane;
    const bool col = c < DV;
    const ta vc = col ? ld(v + bh * sv + c) : (ta)0;
    if (col)
        for (int i = w; i < DK; i += SW) Sb[(h - 1) * mat + (i64)i * DV + c] = (bt * ks[i]) * vc;  // the write
    ta acc = (ta)0;
    for (int j = 0; j < n; ++j) {  // uniform over the block (p is)
        if (!((p >> j) & 1)) continue;
        ta* Sj = Sb + j * mat;
        ta kp = (ta)0;
        if (col)
            for (int i = w; i < DK; i += SW) kp = fma(ks[i], Sj[(i64)i * DV + c], kp);
        const ta kS = column_sum(kp, red);
        if (!col) continue;
        for (int i = w; i < DK; i += SW) {
            const i64 e = (i64)i * DV + c;
            const ta x = ea * (Sj[e] - (bt * ks[i]) * kS);
            acc = fma(wl[j] * qs[i], x, acc);
            if (j < h - 1) {
                Sb[(h - 1) * mat + e] += x;
                Sj[e] = (ta)0;
            } else {
                Sj[e] = x;
            }
        }
    }
    const ta rd = column_sum(acc, red);
    if (w == 0 && col) st(out + bh * DV + c, fma(ld(lam + bh * sl) * bt * qk, vc, rd));
}

// Hierarchical exp-kernel attention, one token at p = off[0] (h, slots as ll_step), on one
// exp-kernel summary per slot: m (K, DK), n (K, DV), S (K, DK, DV), z (K, DK); empty slots
// m = n = lo, S = z = 0 (lo = lo_v(), the finite "minus infinity"). a: log decay (null: none),
// clamped at lo / (4 (p + 1)) as a plain call; log weights and log values clamped at lo.
//   diagonal: r0 = max_i (q_i + k_i) + lam_0, den0 = sum_i e^{q_i + k_i - r0 + lam_0}
//   slot j (occupied): r_j = max_i (q_i + m_ji), A_ji = e^{q_i + m_ji - r_j}, d_j = sum_i A_ji z_ji,
//     N_jc = sum_i A_ji S_jic, shift e_j = r_j + lam_{j+1} + a;  R = max(r0, e_j)
//   log y_c = LSE(log den0 + r0 - R + lv_c, e_j - R + n_jc + log N_jc [N_jc > 0]) - log(e^{r0-R} den0 + sum_j e^{e_j-R} d_j)
//   merge: mk_i = max(k_i, m_li + a (l < h-1)); F = e^{k_i - mk_i}, e^{m_li + a - mk_i};
//     nn_c = max(lv_c, n_lc (l < h-1)); G = e^{lv_c - nn_c}, e^{n_lc - nn_c};
//     slot h-1: m = max(mk, lo), n = nn, S_ic = F_key G_key + sum_l F_li G_lc S_lic, z_i = F_key + sum_l F_li z_li;
//     slots l < h-1 emptied; slots l >= h: m <- max(m + a, lo).
// A row whose weights are all switched off (lam_0 = -inf, and every occupied slot's lam or the
// token's decay -inf) has no defined output (0 / 0, docs/hierarchical.md): NaN, as the reference.
// Grid (BH): one block per row (m, z are shared by its columns); warp w takes the slots j = w, w + 8, ...
// (its lanes over d_k) for r_j, A_j, d_j; then per 32-column tile the warps take the rows of d_k:
// every occupied slot's partial numerators in one sweep (all the tile's loads in flight at once),
// one barrier, warp 0 sums them over the warps (column_sum's order) into the log-sum-exp.
// Dynamic shared memory: (2 K DK + 4 DK + 32 K + 32 SW (K + 1)) values of ta. At most 64 registers
// (4 blocks of 256 threads per SM; unbounded, ptxas took 128: 2 blocks, latency-bound).
extern "C" __global__ void __launch_bounds__(NT, 4) hier_step(
    const ti* __restrict__ q, const ti* __restrict__ k, const ti* __restrict__ lv, const ti* __restrict__ lam,
    const ti* __restrict__ a, i64 sq, i64 sk, i64 sv, i64 sl, i64 sa, ta* __restrict__ m, ta* __restrict__ nv,
    ta* __restrict__ S, ta* __restrict__ z, ti* __restrict__ out, i64* __restrict__ off, int DK, int DV, int L, int K) {
    extern __shared__ __align__(16) unsigned char smem_raw[];
    ta* qs = reinterpret_cast<ta*>(smem_raw);  // DK
    ta* ks = qs + DK;                          // DK
    ta* mks = ks + DK;                         // DK: the merged slot's shift
    ta* zzs = mks + DK;                        // DK: the merged slot's z
    ta* As = zzs + DK;                         // K DK: A_ji of the occupied slots
    ta* Fs = As + (i64)K * DK;                 // K DK: F_li (l < h - 1), the key's at row h - 1
    ta* Gs = Fs + (i64)K * DK;                 // 32 K: G_lc of a column tile (the key's at h - 1)
    ta* red = Gs + 32 * K;                     // 32 SW
    ta* Ps = red + 32 * SW;                    // 32 SW K: each slot's per-warp partial numerators
    __shared__ ta rls[64], dls[64];
    __shared__ int live[64];  // slot j's weight is not switched off
    __shared__ i64 ps;
    const int tid = threadIdx.x, lane = tid & 31, w = tid >> 5;
    const i64 bh = blockIdx.x;
    const i64 p = read_offset(off, &ps);
    if (bitlen64(p + 1) > K) return;
    const int n = bitlen64(p), h = bitlen64(p ^ (p + 1));
    const ta lo = lo_v();
    const ta alo = lo / ((ta)4 * (ta)(p + 1));
    const ta ab = a ? fmx(ld(a + bh * sa), alo) : (ta)0;
    const ta* mb = m + bh * (i64)K * DK;
    const ta* zb = z + bh * (i64)K * DK;
    // the token's row, the diagonal's shift, the merge's per-row factors
    ta x = neg_big();
    for (int i = tid; i < DK; i += NT) {
        const ta qi = ld(q + bh * sq + i), ki = ld(k + bh * sk + i);
        qs[i] = qi;
        ks[i] = ki;
        x = fmx(x, qi + ki);
        ta mk = ki;
        for (int l = 0; l < h - 1; ++l) mk = fmx(mk, mb[(i64)l * DK + i] + ab);
        const ta fk = ex(ki - mk);
        ta zz = fk;
        for (int l = 0; l < h - 1; ++l) {
            const ta f = ex(mb[(i64)l * DK + i] + ab - mk);
            Fs[(i64)l * DK + i] = f;
            zz = fma(f, zb[(i64)l * DK + i], zz);
        }
        Fs[(i64)(h - 1) * DK + i] = fk;
        mks[i] = mk;
        zzs[i] = zz;
    }
    const ta rd = block_max(x, red);  // synchronises: qs, ks visible
    ta dp = (ta)0;
    for (int i = tid; i < DK; i += NT) dp += ex(qs[i] + ks[i] - rd);
    const ta den0 = block_sum(dp, red);
    const ta l0 = fmx(ld(lam + bh * sl), lo), r0 = rd + l0;
    // each occupied slot's shift, weights and denominator (warp w: slots w, w + 8, ...)
    for (int j = w; j < n; j += SW) {
        if (!((p >> j) & 1)) continue;
        ta y = neg_big();
        for (int i = lane; i < DK; i += 32) y = fmx(y, qs[i] + mb[(i64)j * DK + i]);
        const ta rj = warp_max(y);
        ta dj = (ta)0;
        for (int i = lane; i < DK; i += 32) {
            const ta A = ex(qs[i] + mb[(i64)j * DK + i] - rj);
            As[(i64)j * DK + i] = A;
            dj = fma(A, zb[(i64)j * DK + i], dj);
        }
        dj = warp_sum(dj);
        if (lane == 0) {
            const ta lj = fmx(ld(lam + bh * sl + min(j + 1, L - 1)), lo);
            rls[j] = rj + lj + ab;  // e_j
            dls[j] = dj;
            live[j] = lj > lo && (!a || ab > alo);
        }
    }
    __syncthreads();  // As, Fs, rls, dls visible; m and z read by every thread that reads them
    ta R = r0;
    bool on = l0 > lo;
    for (int j = 0; j < n; ++j)
        if ((p >> j) & 1) {
            R = fmx(R, rls[j]);
            on = on || live[j];
        }
    ta den = ex(r0 - R) * den0;
    for (int j = 0; j < n; ++j)
        if ((p >> j) & 1) den = fma(ex(rls[j] - R), dls[j], den);
    const ta ldiag = lg(den0) + r0 - R, lden = lg(den);
    // the new shifts and z of the row: merged slot, folded slots emptied, higher slots decayed
    for (int i = tid; i < DK; i += NT) {
        ta* mr = m + bh * (i64)K * DK + i;
        ta* zr = z + bh * (i64)K * DK + i;
        for (int l = 0; l < h - 1; ++l) {
            mr[(i64)l * DK] = lo;
            zr[(i64)l * DK] = (ta)0;
        }
        mr[(i64)(h - 1) * DK] = fmx(mks[i], lo);
        zr[(i64)(h - 1) * DK] = zzs[i];
        for (int l = h; l < n; ++l) mr[(i64)l * DK] = fmx(mr[(i64)l * DK] + ab, lo);
    }
    const i64 mat = (i64)DK * DV;
    ta* Sb = S + bh * (i64)K * mat;
    ta* nb = nv + bh * (i64)K * DV;
    for (int c0 = 0; c0 < DV; c0 += 32) {
        const int c = c0 + lane;
        const bool col = c < DV;
        const ta vc = col ? fmx(ld(lv + bh * sv + c), lo) : (ta)0;
        // the merge's column shift and factors (warp 0; the slots' n as they were)
        ta nn = vc;
        if (w == 0 && col) {
            for (int l = 0; l < h - 1; ++l) nn = fmx(nn, nb[(i64)l * DV + c]);
            for (int l = 0; l < h - 1; ++l) Gs[l * 32 + lane] = ex(nb[(i64)l * DV + c] - nn);
            Gs[(h - 1) * 32 + lane] = ex(vc - nn);
        }
        // the read: every occupied slot's partial numerators (all the tile's loads at once)
        for (int j = 0; j < n; ++j) {
            if (!((p >> j) & 1)) continue;
            ta part = (ta)0;
            if (col)
                for (int i = w; i < DK; i += SW) part = fma(As[(i64)j * DK + i], Sb[j * mat + (i64)i * DV + c], part);
            Ps[(j * SW + w) * 32 + lane] = part;
        }
        __syncthreads();  // Ps, Gs visible
        // warp 0: the log-sum-exp over the diagonal and the slots, the output
        if (w == 0 && col) {
            ta M = ldiag + vc, s = (ta)1;
            for (int j = 0; j < n; ++j) {
                if (!((p >> j) & 1)) continue;
                ta N = (ta)0;
                for (int u = 0; u < SW; ++u) N += Ps[(j * SW + u) * 32 + lane];
                if (N > (ta)0) {
                    const ta t = rls[j] - R + nb[(i64)j * DV + c] + lg(N);
                    if (t > M) {
                        s = fma(s, ex(M - t), (ta)1);
                        M = t;
                    } else {
                        s += ex(t - M);
                    }
                }
            }
            st(out + bh * DV + c, on ? log_out(M + lg(s) - lden) : minus_inf() - minus_inf());  // NaN: all off
        }
        // the Fenwick merge of the folded slots and the key into slot h - 1 (S read a second time)
        if (col)
            for (int i = w; i < DK; i += SW) {
                const i64 e = (i64)i * DV + c;
                ta acc = Fs[(i64)(h - 1) * DK + i] * Gs[(h - 1) * 32 + lane];
                for (int l = 0; l < h - 1; ++l) {
                    acc = fma(Fs[(i64)l * DK + i] * Gs[l * 32 + lane], Sb[l * mat + e], acc);
                    Sb[l * mat + e] = (ta)0;
                }
                Sb[(h - 1) * mat + e] = acc;
            }
        if (w == 0 && col) {
            for (int l = 0; l < h - 1; ++l) nb[(i64)l * DV + c] = lo;
            nb[(i64)(h - 1) * DV + c] = nn;
        }
        __syncthreads();  // Ps, Gs reused by the next tile
    }
}
