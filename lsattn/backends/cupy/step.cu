// Fused decoding steps of the stepper (lsattn.stepper on CuPy arrays / CUDA torch tensors): ONE
// launch per token that reads the token's inputs, the state buffers and the device offset, writes
// the output, updates the buffers IN PLACE and advances the device offset. No host sync, no host
// value of the offset, nothing allocated but the output: capturable in a CUDA graph.
//
// The per-row logic is twinned in NumPy (lsattn/backends/cupy/step.py: twin_ek_step,
// twin_ll_step: the same loops and index math), tested against the array-API step in CI.
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
//   R = max_i (q_i + mm_i), A_i = e^{q_i + mm_i - R}, out_c = sum_i A_i S'_ic / sum_i A_i z'_i.
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
    ta x = neg_big();
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
        const ta xi = ld(q + bh * sq + i) + mm;
        A[i] = xi;
        x = fmx(x, xi);
    }
    const ta R = block_max(x, red);  // synchronises: A visible
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
        if (w == 0 && c < DV) st(out + bh * DV + c, num / den);
    }
    if (bh == 0 && tid == 0) off[0] += 1;  // no block reads the offset here
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
    if (tid == 0) {
        const i64 p = *reinterpret_cast<volatile i64*>(off);
        ps = p;
        __threadfence();  // p is read before this block's ticket
        const unsigned long long t = atomicAdd(reinterpret_cast<unsigned long long*>(off + 1), 1ULL);
        if (t == (unsigned long long)gridDim.x * gridDim.y - 1) {  // the last block: every block has read p
            off[1] = 0;
            off[0] = p + 1;
        }
    }
    __syncthreads();
    const i64 p = ps;
    // the host checks p < max_tokens on every eager step; a graph replayed past it must not write
    // beyond the K slots: such a step only advances the offset
    if (bitlen64(p + 1) > K) return;
    const int n = bitlen64(p), h = bitlen64(p ^ (p + 1));
    ta part = (ta)0;
    for (int i = tid; i < DK; i += NT) {
        qs[i] = ld(q + bh * sq + i);
        ks[i] = ld(k + bh * sk + i);
        part = fma(qs[i], ks[i], part);
    }
    // slots beyond level L - 1 take level L - 1's weight (as the array-API step; the host checks
    // L > bit_length(p) on eager steps, so only a replay past the inputs' levels meets them)
    if (tid < K) wl[tid] = (tid < n && ((p >> tid) & 1)) ? ld(lam + bh * sl + min(tid + 1, L - 1)) : (ta)0;
    const ta qk = block_sum(part, red);  // synchronises: qs, ks, wl visible
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
