// Backward of exp-kernel attention (and log_attention, LOGV) on tensor cores for bfloat16 inputs:
// ekb_dq_tc / ekb_dkdv_tc take the places of exp_kernel_bwd.cu's ekb_dq / ekb_dkdv (same arguments and
// outputs; LOGV: y is the float32 log output, dO the bf16 output gradient); compiled after common.cu
// and exp_kernel_bwd.cu. CH = 64 rows, NTC = 128 threads: warp w owns rows 16w .. 16w+15.
//
// The notation of exp_kernel_bwd.cu. Every per-pair exponential is factorised with per-chunk shifts,
// as the forward's tensor-core kernels do: mm_i >= every key of the chunk (and, in ekb_dq, >= M_c,i),
// R_t = max_i (q_ti + mm_i), and bf16 operands <= 1 where they are rounded:
//   A_ti = exp(q_ti + mm_i - R_t),  B_si = exp(k_si - mm_i),  P_i(t,s) = A'_ti B_si with
//   A'_ti = exp(q_ti + mm_i - lden_t) = A_ti / den_t (den_t: the chunk's scores A B^T plus the state's
//   sum_i A_ti exp(M_i - mm_i) z_i, so lden_t = R_t + log den_t).
// LOGV: E_sj = exp(lv_sj - nn_j) (nn_j >= every log value of the chunk, and >= n_in_j in ekb_dq),
//   G_tj = g_tj exp(nn_j - o_tj), so that D_ts = sum_j G_tj E_sj - delta_t; exp mode: E = v, G = dO.
//   ekb_dq    scores A B^T (den, lden), D = G E^T - delta, dq = A' o (D B + G H^T - exp(M - mm) z delta)
//             with H = exp(M - mm) [exp(n_in - nn)] S_in, U^c = A_s^T G'' and Z^c = A_s^T delta with
//             A_s = exp(q + M - lden) <= 1 and G'' = dO (LOGV: g exp(-o - W^c) <= |g|)
//   ekb_dkdv  P^T = B A'^T, D^T = E G^T - delta, dk = B o (D^T A' + E U''^T - Z''), dv = P^T G + B U''
//             (LOGV: d lv = E o (P^T G + B U'')), where U''_ij = U_ij exp(mm_i - M_{c+1,i}) [exp(W_j + nn_j)]
//             folds the state factors B' = B exp(mm - M_{c+1}) and V' = E exp(W + nn) (column factors) into U
//             (one d_k x d_v tile, bf16; its magnitude capped at e^80, ekt_scale)
// A row whose factor exp(R_t - lden_t) or (LOGV, g_tj != 0) exp(nn_j - o_tj) exceeds e^TC_LIM (a later
// key or value of the chunk dominates it) leaves the products (its A' and D rows are zero) and is
// computed exactly, per pair in fp32 (the FFMA kernels' formulas), like the forward's exact rows.
#if TI_BF16
namespace {
constexpr int BLK = DKP + 8, BLV = DVP + 8;  // bf16 tile strides (8 mod 16 elements: conflict-free fragments)
constexpr float TC_LIM = 40.f;
}
// LOGV: the exponents lv_s - o_t (G, the exact rows' pairs) and U'''s magnitude are capped at exp_kernel_bwd.cu's
// ex_capv() (80: pair factors e^(lv_s - o_t) <= 1 / P(t,s) exact for weights P >= e^-80, behind a key spike).
// Headroom as G's: d_v |dO| e^80 finite (an exact row's G meets A' = 0 in a product).
// x e^e with the magnitude capped at e^80 (finite whatever x), exact below it: U'' = U Mn e^(W + nn)
// takes e = log Mn + W + nn, W + nn = max_s lv_s - min_t o_t beyond 64 behind a key spike
__device__ __forceinline__ float ekt_scale(float x, float e) {
    return x == 0.f ? 0.f : copysignf(ex_cap(logf(fabsf(x)) + e), x);
}
// ekt_scale(x, log m + e) (m >= 0) as a product where the cap is not reached (no log, one ex2): x m e^e when
// e <= 80 and |x m e^e| <= e^80, else through the logarithm (capped)
__device__ __forceinline__ float ekt_scale_m(float x, float m, float e) {
    const float y = x * m * __expf(fminf(e, ex_capv()));
    return (e <= ex_capv() && fabsf(y) <= 5.5406224e34f /* e^80 */) ? y : ekt_scale(x, logf(m) + e);
}
// max(init, max_r X[r * ld] over r < CH where r < ns): every load issued at once, four chains
template <typename L>
__device__ __forceinline__ float ekt_colmax(L x, int ns, float init) {
    float m[4] = {init, init, init, init};
#pragma unroll
    for (int r = 0; r < CH; ++r)
        if (r < ns) m[r & 3] = fmaxf(m[r & 3], x(r));
    return fmaxf(fmaxf(m[0], m[1]), fmaxf(m[2], m[3]));
}
#if LOGV
typedef float yt;  // the log output, float32 (its bf16 rounding would carry |o| 2^-9 into exp(lv - o))
#else
typedef bf yt;
#endif

// mm_i = max(M_i (M null: none), max over the chunk's keys) into mmS (i < DKP; i >= DK: anything);
// fb: NTC floats. Ends with a barrier.
__device__ __forceinline__ void ekt_key_shift(const bf* Kr, int ns, const float* M, int DK, float* mmS, float* fb) {
    constexpr int NP = NTC / DKP;
    const int i = threadIdx.x % DKP, pp = threadIdx.x / DKP;
    float m = neg_big();
    for (int r = pp; r < ns; r += NP) m = fmaxf(m, from_bf(Kr[r * BLK + i]));
    fb[pp * DKP + i] = m;
    __syncthreads();
    if (threadIdx.x < DKP) {
        float mm = (M && i < DK) ? M[i] : neg_big();
#pragma unroll
        for (int u = 0; u < NP; ++u) mm = fmaxf(mm, fb[u * DKP + i]);
        mmS[i] = mm;
    }
    __syncthreads();
}

// The chunk's rows in global memory (row t at t * DV), read where shared memory no longer holds them (E, G
// over log v, g; A, B over o: 3 blocks per SM): o_tj, g_tj where o_tj is finite (else 0), log v clamped
struct EktRows {
    const bf* v;
    const bf* g;
    const float* o;
    int DV;
    __device__ float yo(int t, int j) const { return __ldg(o + (i64)t * DV + j); }
    __device__ float gg(int t, int j) const { return yo(t, j) > lo_v() / 2 ? from_bf(__ldg(g + (i64)t * DV + j)) : 0.f; }
    __device__ float lv(int s, int j) const { return fmaxf(from_bf(__ldg(v + (i64)s * DV + j)), lo_v()); }
};
#if LOGV
// o rows of the chunk into Yo [t][DVP], -lo_v() (the mask of exp_kernel_bwd.cu's logv_mask) for -inf
// outputs, rows past the chunk and padding columns: exp(. - o) of it is 0, -o is lo_v(). Asynchronous (16-byte
// pieces beside the tiles' copies; y 16-byte aligned, DV % 4 == 0): ekt_mask_o masks them after
// cp_async_wait_all(), each thread its own pieces, before the barrier. Else staged and masked here (a
// synchronous 16 KB load on the kernels' critical path measured ~25% of either LOGV kernel at 32K).
__device__ __forceinline__ bool ekt_o_async(const float* y, int DV) {
    return (DV & 3) == 0 && (reinterpret_cast<unsigned long long>(y) & 15) == 0;
}
__device__ __forceinline__ void ekt_load_o(float* Yo, const float* y, int ns, int DV) {
    if (ekt_o_async(y, DV)) {
        constexpr int W = DVP / 4;
        for (int idx = threadIdx.x; idx < CH * W; idx += NTC) {
            const int t = idx / W, j = 4 * (idx % W);
            const bool ok = t < ns && j < DV;
            cp_async16(Yo + t * DVP + j, ok ? (const void*)(y + (i64)t * DV + j) : (const void*)y, ok);
        }
        return;
    }
    staged<CH * DVP, NTC>([&](int idx) {
        const int t = idx / DVP, j = idx % DVP;
        return (t < ns && j < DV) ? __ldg(y + (i64)t * DV + j) : -lo_v();
    }, [&](int idx, float o) { Yo[idx] = o > lo_v() / 2 ? o : -lo_v(); });
}
// ekt_load_o's asynchronous pieces masked by the threads that copied them (their copies are complete and
// visible to them after cp_async_wait_all(); the other threads read them after the next barrier)
__device__ __forceinline__ void ekt_mask_o(float* Yo, const float* y, int ns, int DV) {
    if (!ekt_o_async(y, DV)) return;
    constexpr int W = DVP / 4;
    for (int idx = threadIdx.x; idx < CH * W; idx += NTC) {
        const int t = idx / W, j = 4 * (idx % W);
        float* p = Yo + t * DVP + j;
#pragma unroll
        for (int e = 0; e < 4; ++e) p[e] = (t < ns && j < DV && p[e] > lo_v() / 2) ? p[e] : -lo_v();
    }
}
// g_tj where o_tj is finite, else 0
__device__ __forceinline__ float ekt_g(const bf* Gr, const float* Yo, int t, int j) {
    return Yo[t * DVP + j] < -lo_v() / 2 ? from_bf(Gr[t * BLV + j]) : 0.f;
}
// nn_j = max(n0_j (null: none), max over the chunk's log values clamped to lo_v()) (threads j < DVP)
__device__ __forceinline__ float ekt_value_shift(const bf* Vr, int ns, const float* n0, int DV, int j) {
    return ekt_colmax([&](int r) { return from_bf(Vr[r * BLV + j]); }, ns, (n0 && j < DV) ? n0[j] : lo_v());
}
// E = exp(lv - nn) (0 for -inf log values) over Eb, G = g exp(nn - o) over Gb (exponent capped at 80:
// finite); rows with g_tj != 0 and nn_j - o_tj > TC_LIM flagged. Eb, Gb may be Vr, Gr (each entry read
// before it is written, by the same thread)
__device__ __forceinline__ void ekt_EG(bf* Eb, bf* Gb, const bf* Vr, const bf* Gr, const float* Yo, const float* nnS,
                                       int* flag, int ns, int DV) {
    for (int idx = threadIdx.x; idx < CH * DVP; idx += NTC) {
        const int r = idx / DVP, j = idx % DVP;
        const float lv = from_bf(Vr[r * BLV + j]);
        Eb[r * BLV + j] = to_bf((r < ns && j < DV && lv > lo_v() / 2) ? __expf(lv - nnS[j]) : 0.f);
        const float gv = ekt_g(Gr, Yo, r, j), x = nnS[j] - Yo[idx];
        if (gv != 0.f && x > TC_LIM) flag[r] = 1;
        Gb[r * BLV + j] = to_bf(gv * ex_cap(x));
    }
}
#endif

// D_ts (s <= t) of one row t computed exactly into Df[s] (threads s < CH): dO_t . v_s - delta_t
// (LOGV: sum_j g_tj exp(lv_sj - o_tj) - delta_t from the rows X, exponents capped at 80)
__device__ __forceinline__ void ekt_exact_D(float* Df, const bf* Vr, const bf* Gr, const EktRows& X, float delta,
                                            int t, int DV) {
    const int s = threadIdx.x;
    if (s >= CH) return;
    float d = 0.f;
    if (s <= t) {
        d = -delta;
        for (int j = 0; j < DV; ++j) {
#if LOGV
            d = fmaf(X.gg(t, j), ex_cap(X.lv(s, j) - X.yo(t, j)), d);
#else
            d = fmaf(from_bf(Gr[t * BLV + j]), from_bf(Vr[s * BLV + j]), d);
#endif
        }
    }
    Df[s] = d;
}

// A (16 x CH) C-fragment block (rows of this warp) as the A fragments of a product over its CH columns
__device__ __forceinline__ void ekt_pack(unsigned (&pa)[4], const float (&X)[CH / 8][4], int kk) {
    pa[0] = pack2(X[2 * kk][0], X[2 * kk][1]);
    pa[1] = pack2(X[2 * kk][2], X[2 * kk][3]);
    pa[2] = pack2(X[2 * kk + 1][0], X[2 * kk + 1][1]);
    pa[3] = pack2(X[2 * kk + 1][2], X[2 * kk + 1][3]);
}

template <int NN>
__device__ __forceinline__ void ekt_zero(float (&X)[NN][4]) {
#pragma unroll
    for (int nt = 0; nt < NN; ++nt) X[nt][0] = X[nt][1] = X[nt][2] = X[nt][3] = 0.f;
}

// acc (16 x NN: this warp's rows) += A B: A as KD / 16 fragments of this warp's rows, B (KD x NN) from Y,
// row-major [k][n] (KN, ldmatrix.trans) or [n][k]
template <int KD, int NN, bool KN>
__device__ __forceinline__ void ekt_mma(float (&acc)[NN / 8][4], const unsigned (&a)[KD / 16][4], const bf* Y, int ld) {
#pragma unroll
    for (int kk = 0; kk < KD / 16; ++kk)
#pragma unroll
        for (int nt = 0; nt < NN / 8; ++nt) {
            unsigned b0, b1;
            if constexpr (KN) frag_b_kn(b0, b1, Y, ld, 16 * kk, 8 * nt);
            else frag_b(b0, b1, Y, ld, 8 * nt, 16 * kk);
            mma_bf16(acc[nt], a[kk], b0, b1);
        }
}
// acc += X B with X this warp's 16 x CH accumulator block (rounded to bf16), B row-major [CH][NN]
template <int NN>
__device__ __forceinline__ void ekt_mma_c(float (&acc)[NN / 8][4], const float (&X)[CH / 8][4], const bf* Y, int ld) {
    unsigned a[CH / 16][4];
#pragma unroll
    for (int kk = 0; kk < CH / 16; ++kk) ekt_pack(a[kk], X, kk);
    ekt_mma<CH, NN, true>(acc, a, Y, ld);
}

extern "C" __global__ void __launch_bounds__(NTC) ekb_dq_tc(
    const bf* __restrict__ q, const bf* __restrict__ k, const bf* __restrict__ v, const yt* __restrict__ y,
    const bf* __restrict__ dO, const float* __restrict__ m_in, float* __restrict__ S, float* __restrict__ z,
    bf* __restrict__ dq, float* __restrict__ lden, float* __restrict__ dl, int T, int DK, int DV, int n,
    const float* __restrict__ n_in, float* __restrict__ Wc) {  // n_in, Wc (BH, n, DV): LOGV only
    // LOGV: o shares A and B's bytes until they are formed, E and G log v and g's (then the rows' log v, g, o
    // are read from global memory: X): 3 blocks per SM as without LOGV
    constexpr int ABY = (2 * CH * BLK * 2 > (LOGV ? CH * DVP * 4 : 0)) ? 2 * CH * BLK * 2 : CH * DVP * 4;  // bytes
    extern __shared__ __align__(16) unsigned char smem_b[];
    bf* Qr = reinterpret_cast<bf*>(smem_b);  // CH x BLK: q
    bf* Kr = Qr + CH * BLK;                  // k
    bf* Ab = Kr + CH * BLK;                  // A, then A_s
    bf* Bb = Ab + CH * BLK;                  // B
    float* Yo = reinterpret_cast<float*>(Ab);  // LOGV: CH x DVP, o (masked), until ekt_EG
    bf* Vr = reinterpret_cast<bf*>(reinterpret_cast<unsigned char*>(Ab) + ABY);  // CH x BLV: v (LOGV: log v, then E)
    bf* Gr = Vr + CH * BLV;                  // dO (LOGV: g, then G, then G'')
    bf* Hs = Gr + CH * BLV;                  // DKP x BLV: H
    bf* Eb = Vr;
    bf* Gb = Gr;
    float* mmS = reinterpret_cast<float*>(Hs + DKP * BLV);  // DKP: mm
    float* scS = mmS + DKP;                  // DKP: exp(M - mm)
    float* zS = scS + DKP;                   // DKP: z_in
    float* Ms = zS + DKP;                    // DKP: M
    float* RS = Ms + DKP;                    // CH: R
    float* LS = RS + CH;                     // CH: lden
    float* DS = LS + CH;                     // CH: delta
    float* DN = DS + CH;                     // CH: the state part of den
    float* fb = DN + CH;                     // 2 NTC: scratch
    float* Df = fb + 2 * NTC;                // CH: an exact row's D
    float* nnS = Df + CH;                    // DVP: nn (LOGV)
    float* gS = nnS + DVP;                   // DVP: exp(n_in - nn)
    float* Ws = gS + DVP;                    // DVP: W^c
    float* Ni = Ws + DVP;                    // DVP: n_in
    int* flag = reinterpret_cast<int*>(Ni + DVP);  // CH: rows on the exact path
    check_smem((unsigned)((2 * CH * BLK + 2 * CH * BLV + DKP * BLV) * 2 + ABY + (4 * DKP + 5 * CH + 2 * NTC + 4 * DVP) * 4 +
                          CH * 4));
    const int tid = threadIdx.x, w = tid >> 5, lane = tid & 31, g = lane >> 2, t4 = lane & 3;
    const int c = blockIdx.x;
    const i64 bh = blockIdx.y;
    const i64 g0 = (i64)c * CH;
    const int ns = (int)min((i64)CH, (i64)T - g0);
#if LOGV
    const EktRows X{v + (bh * T + g0) * DV, dO + (bh * T + g0) * DV, y + (bh * T + g0) * DV, DV};
#else
    const EktRows X{nullptr, nullptr, nullptr, DV};
#endif
    float* Sc = S + (bh * n + c) * (i64)DK * DV;
    float* zc = z + (bh * n + c) * DK;
    tile_async<DKP>(Qr, BLK, q + bh * T * DK, g0, T, DK);
    tile_async<DKP>(Kr, BLK, k + bh * T * DK, g0, T, DK);
    tile_async<DVP>(Vr, BLV, v + bh * T * DV, g0, T, DV);
    tile_async<DVP>(Gr, BLV, dO + bh * T * DV, g0, T, DV);
#if LOGV
    ekt_load_o(Yo, y + (bh * T + g0) * DV, ns, DV);
#endif
    if (tid < CH) flag[tid] = 0;
    cp_async_wait_all();
#if LOGV
    ekt_mask_o(Yo, y + (bh * T + g0) * DV, ns, DV);
#endif
    __syncthreads();
    for (int r = w; r < CH; r += NTC / 32) {  // delta_t (LOGV: sum_j g_tj over finite o_tj), a warp per row
        float s = 0.f;
        if (r < ns)
            for (int j = lane; j < DV; j += 32)
#if LOGV
                s += ekt_g(Gr, Yo, r, j);
#else
                s = fmaf(from_bf(Gr[r * BLV + j]), from_bf(__ldg(y + (bh * T + g0 + r) * DV + j)), s);
#endif
        s = warp_sum(s);
        if (lane == 0) DS[r] = s;
    }
    const float* mi = m_in + (bh * n + c) * DK;
    ekt_key_shift(Kr, ns, mi, DK, mmS, fb);
    if (tid < DKP) {
        const bool ok = tid < DK;
        const float M = ok ? mi[tid] : 0.f;
        Ms[tid] = M;
        scS[tid] = ok ? __expf(M - mmS[tid]) : 0.f;
        zS[tid] = ok ? zc[tid] : 0.f;
    }
#if LOGV
    for (int x = tid; x < 2 * DVP; x += NTC) {  // the column shifts nn (x < DVP) and W^c, a thread per column each
        const int j = x % DVP;
        if (x < DVP) {
            const float* n0 = n_in + (bh * n + c) * DV;
            const float nn = ekt_value_shift(Vr, ns, n0, DV, j);
            const float ni = j < DV ? n0[j] : lo_v();
            nnS[j] = nn;
            Ni[j] = ni;
            gS[j] = j < DV ? __expf(ni - nn) : 0.f;
        } else {
            const float wv = ekt_colmax([&](int t) { return -Yo[t * DVP + j]; }, ns, lo_v());
            Ws[j] = wv;
            if (j < DV) Wc[(bh * n + c) * DV + j] = wv;
        }
    }
#endif
    __syncthreads();
    {  // R_t, two threads per row
        const int r = tid >> 1, h = tid & 1;
        float R = neg_big();
        for (int i = h; i < DK; i += 2) R = fmaxf(R, from_bf(Qr[r * BLK + i]) + mmS[i]);
        R = fmaxf(R, __shfl_xor_sync(0xffffffffu, R, 1));
        if (h == 0) RS[r] = R;
    }
    staged<DKP * DVP, NTC>(  // H, bf16 [i][j] (the loads of a batch in flight together)
        [&](int idx) { const int i = idx / DVP, j = idx % DVP; return (i < DK && j < DV) ? Sc[(i64)i * DV + j] : 0.f; },
        [&](int idx, float x) {
            const int i = idx / DVP, j = idx % DVP;
            Hs[i * BLV + j] = to_bf(LOGV ? scS[i] * gS[j] * x : scS[i] * x);
        });
#if LOGV
    ekt_EG(Eb, Gb, Vr, Gr, Yo, nnS, flag, ns, DV);  // the last read of Yo
#endif
    __syncthreads();
    for (int idx = tid; idx < CH * DKP; idx += NTC) {
        const int r = idx / DKP, i = idx % DKP;
        const bool ok = r < ns && i < DK;
        Ab[r * BLK + i] = to_bf(ok ? __expf(from_bf(Qr[r * BLK + i]) + mmS[i] - RS[r]) : 0.f);
        Bb[r * BLK + i] = to_bf(ok ? __expf(from_bf(Kr[r * BLK + i]) - mmS[i]) : 0.f);
    }
    __syncthreads();
    {  // the state part of den, two threads per row (the warp of the row)
        const int r = tid >> 1, h = tid & 1;
        float d = 0.f;
        for (int i = h; i < DKP; i += 2) d = fmaf(from_bf(Ab[r * BLK + i]), scS[i] * zS[i], d);
        d += __shfl_xor_sync(0xffffffffu, d, 1);
        if (h == 0) DN[r] = d;
    }
    __syncwarp();
    const int rlo = 16 * w + g, rhi = rlo + 8;
    float L_lo, L_hi;
    bool f_lo, f_hi;
    {  // den and lden from the scores A B^T (s <= t)
        unsigned qa[DKP / 16][4];
#pragma unroll
        for (int kk = 0; kk < DKP / 16; ++kk) frag_a(qa[kk], Ab, BLK, 16 * w, 16 * kk);
        float P[CH / 8][4];
        ekt_zero(P);
        mma_rows<CH>(P, qa, Bb, BLK);
        float rs_lo = 0.f, rs_hi = 0.f;
#pragma unroll
        for (int nt = 0; nt < CH / 8; ++nt)
#pragma unroll
            for (int x = 0; x < 4; ++x) {
                const int tt = x < 2 ? rlo : rhi, s = 8 * nt + 2 * t4 + (x & 1);
                const float p = s <= tt ? P[nt][x] : 0.f;
                if (x < 2) rs_lo += p;
                else rs_hi += p;
            }
        rs_lo += __shfl_xor_sync(0xffffffffu, rs_lo, 1);
        rs_lo += __shfl_xor_sync(0xffffffffu, rs_lo, 2);
        rs_hi += __shfl_xor_sync(0xffffffffu, rs_hi, 1);
        rs_hi += __shfl_xor_sync(0xffffffffu, rs_hi, 2);
        const float dlo = rs_lo + DN[rlo], dhi = rs_hi + DN[rhi];
        L_lo = RS[rlo] + logf(dlo);
        L_hi = RS[rhi] + logf(dhi);
        const float floor_ = __expf(-TC_LIM);
        f_lo = rlo < ns && (flag[rlo] || !(dlo >= floor_));
        f_hi = rhi < ns && (flag[rhi] || !(dhi >= floor_));
    }
    float DQ[DKP / 8][4];
    ekt_zero(DQ);
    {  // D = G E^T - delta (s <= t); dq's bracket D B + G H^T
        const bf* Gt = LOGV ? Gb : Gr;
        const bf* Et = LOGV ? Eb : Vr;
        unsigned ga[DVP / 16][4];
#pragma unroll
        for (int kk = 0; kk < DVP / 16; ++kk) frag_a(ga[kk], Gt, BLV, 16 * w, 16 * kk);
        float D[CH / 8][4];
        ekt_zero(D);
        ekt_mma<DVP, CH, false>(D, ga, Et, BLV);
        const float dlo = DS[rlo], dhi = DS[rhi];
#pragma unroll
        for (int nt = 0; nt < CH / 8; ++nt)
#pragma unroll
            for (int x = 0; x < 4; ++x) {
                const int tt = x < 2 ? rlo : rhi, s = 8 * nt + 2 * t4 + (x & 1);
                D[nt][x] = s <= tt ? D[nt][x] - (x < 2 ? dlo : dhi) : 0.f;
            }
        ekt_mma_c<DKP>(DQ, D, Bb, BLK);
        ekt_mma<DVP, DKP, false>(DQ, ga, Hs, BLV);
    }
    __syncwarp();  // this warp's rows of Ab (A) and Gb (G) are read: A_s and G'' over them
    if (t4 == 0) {
        LS[rlo] = L_lo;
        LS[rhi] = L_hi;
        if (f_lo) flag[rlo] = 1;
        if (f_hi) flag[rhi] = 1;
    }
#pragma unroll
    for (int nt = 0; nt < DKP / 8; ++nt)
#pragma unroll
        for (int x = 0; x < 4; x += 2) {
            const int tt = x < 2 ? rlo : rhi, i = 8 * nt + 2 * t4;
            const bool live = tt < ns && !(x < 2 ? f_lo : f_hi);
            const float L = x < 2 ? L_lo : L_hi, dd = DS[tt];
            float o2[2], as[2];
#pragma unroll
            for (int e = 0; e < 2; ++e) {
                const int ii = i + e;
                o2[e] = as[e] = 0.f;
                if (live && ii < DK) {
                    const float ap = __expf(from_bf(Qr[tt * BLK + ii]) + mmS[ii] - L);
                    o2[e] = ap * (DQ[nt][x + e] - scS[ii] * zS[ii] * dd);
                    as[e] = ap * scS[ii];
                }
            }
            Ab[tt * BLK + i] = to_bf(as[0]);
            Ab[tt * BLK + i + 1] = to_bf(as[1]);
            if (live && i < DK)
                store_pair(dq, (bh * T + g0 + tt) * DK + i, o2[0], o2[1], (DK & 1) == 0 && i + 1 < DK, i + 1 < DK);
        }
#if LOGV
    // G'' over this warp's rows of Gb: o_tj <= nn_j (a log output is at most the largest log value it saw), so an
    // unflagged row's G = g e^(nn - o) is exact (exponent in [0, TC_LIM]) and G'' = G e^(-nn_j - W^c_j) (<= 1,
    // a normal float while -nn - W^c >= -80); flagged rows and other columns from g, o in global memory (X)
    __syncwarp();  // this warp's flags above
    for (int idx = lane; idx < 16 * DVP; idx += 32) {
        const int t = 16 * w + idx / DVP, j = idx % DVP;
        const float fx = -nnS[j] - Ws[j];
        float gg = 0.f;
        if (!flag[t] && fx >= -ex_capv()) {
            gg = from_bf(Gb[t * BLV + j]) * __expf(fminf(fx, 0.f));
        } else {
            const float o = (t < ns && j < DV) ? X.yo(t, j) : -lo_v();
            gg = o > lo_v() / 2 && o < -lo_v() / 2 ? X.gg(t, j) * __expf(-o - Ws[j]) : 0.f;
        }
        Gb[t * BLV + j] = to_bf(gg);
    }
#endif
    __syncthreads();
    const bool any = __syncthreads_or(tid < CH && flag[tid]);
    for (int t = 0; any && t < ns; ++t) {  // the exact rows
        if (!flag[t]) continue;
        if (tid < DKP) {  // (max, sum) of q_ti + k_si over s <= t, from the state's term exp(q_ti + M_i) z_i
            const int i = tid;
            float m = neg_big(), s = 0.f;
            if (i < DK) {
                const float qi = from_bf(Qr[t * BLK + i]);
                m = qi + Ms[i];
                s = zS[i];
                for (int u = 0; u <= t; ++u) {
                    const float x = qi + from_bf(Kr[u * BLK + i]);
                    if (x > m) { s = s * __expf(m - x) + 1.f; m = x; }
                    else s += __expf(x - m);
                }
            }
            fb[i] = m;
            fb[NTC + i] = s;
        }
        ekt_exact_D(Df, Vr, Gr, X, DS[t], t, DV);
        __syncthreads();
        float m = neg_big();
        for (int i = 0; i < DK; ++i) m = fmaxf(m, fb[i]);
        float s = 0.f;
        for (int i = 0; i < DK; ++i) s += fb[NTC + i] * __expf(fb[i] - m);
        const float L = m + logf(s);
        if (tid < DKP) {
            const int i = tid;
            float a = 0.f;
            if (i < DK) {
                const float qi = from_bf(Qr[t * BLK + i]) - L;
                float gi = 0.f, sr = 0.f;
                for (int u = 0; u <= t; ++u) gi = fmaf(__expf(qi + from_bf(Kr[u * BLK + i])), Df[u], gi);
                for (int j = 0; j < DV; ++j) {
#if LOGV  // S_in,ij e^(n_in_j - o_tj) capped as U'' (S_in <= the tokens before: e^80 alone could overflow)
                    sr = fmaf(ekt_scale(Sc[(i64)i * DV + j], Ni[j] - X.yo(t, j)), X.gg(t, j), sr);
#else
                    sr = fmaf(Sc[(i64)i * DV + j], from_bf(Gr[t * BLV + j]), sr);
#endif
                }
                a = __expf(qi + Ms[i]);
                st(dq + (bh * T + g0 + t) * DK + i, gi + a * (sr - zS[i] * DS[t]));
            }
            Ab[t * BLK + i] = to_bf(a);
        }
        if (tid == 0) LS[t] = L;
        __syncthreads();
    }
    if (tid < ns) {
        lden[bh * T + g0 + tid] = LS[tid];
        dl[bh * T + g0 + tid] = DS[tid];
    }
    if (tid < DK) {  // Z^c from the rounded A_s, as U^c; z_in was read above
        float s = 0.f;
        for (int t = 0; t < ns; ++t) s = fmaf(from_bf(Ab[t * BLK + tid]), DS[t], s);
        zc[tid] = s;
    }
    mma_state_kn(Sc, Ab, BLK, LOGV ? Gb : Gr, BLV, DK, DV);  // U^c over S_in (every read of it is above)
}

extern "C" __global__ void __launch_bounds__(NTC) ekb_dkdv_tc(
    const bf* __restrict__ q, const bf* __restrict__ k, const bf* __restrict__ v, const bf* __restrict__ dO,
    const float* __restrict__ lden, const float* __restrict__ dl, const float* __restrict__ U,
    const float* __restrict__ Z, const float* __restrict__ m_next, bf* __restrict__ dk, bf* __restrict__ dv, int T,
    int DK, int DV, int n, const yt* __restrict__ y, const float* __restrict__ Wn) {  // LOGV only: o, W(b_{c+1})
    // LOGV: o shares A' and B's bytes until they are formed, E and G log v and g's (then the rows' log v, g, o
    // are read from global memory: X): 3 blocks per SM as without LOGV
    constexpr int ABY = (2 * CH * BLK * 2 > (LOGV ? CH * DVP * 4 : 0)) ? 2 * CH * BLK * 2 : CH * DVP * 4;  // bytes
    constexpr int PROD = ABY + DKP * BLV * 2;             // bytes of the products' tiles
    constexpr int FALL = (CH * DKP + CH * DVP) * 4;       // the exact rows' sums over them
    constexpr int REG = PROD > FALL ? PROD : FALL;
    extern __shared__ __align__(16) unsigned char smem_b[];
    bf* Qr = reinterpret_cast<bf*>(smem_b);  // CH x BLK: q
    bf* Kr = Qr + CH * BLK;                  // k
    bf* Vr = Kr + CH * BLK;                  // CH x BLV: v (LOGV: log v, then E)
    bf* Gr = Vr + CH * BLV;                  // dO (LOGV: g, then G)
    unsigned char* reg = reinterpret_cast<unsigned char*>(Gr + CH * BLV);
    bf* Ab = reinterpret_cast<bf*>(reg);     // CH x BLK: A' (0 on exact rows)
    bf* Bb = Ab + CH * BLK;                  // B
    float* Yo = reinterpret_cast<float*>(reg);  // LOGV: CH x DVP, o (masked), until ekt_EG
    bf* Us = reinterpret_cast<bf*>(reg + ABY);  // DKP x BLV: U''
    bf* Eb = Vr;
    bf* Gb = Gr;
    float* Fk = reinterpret_cast<float*>(reg);  // CH x DKP: the exact rows' dk (after the products)
    float* Fv = Fk + CH * DKP;               // CH x DVP: their dv
    float* mmS = reinterpret_cast<float*>(reg + REG);  // DKP: mm
    float* Mn = mmS + DKP;                   // DKP: exp(mm - M_{c+1})
    float* Zs = Mn + DKP;                    // DKP: Z''
    float* LS = Zs + DKP;                    // CH: lden
    float* DS = LS + CH;                     // CH: delta
    float* fb = DS + CH;                     // NTC: scratch
    float* Df = fb + NTC;                    // CH: an exact row's D
    float* Pf = Df + CH;                     // CH: its P
    float* nnS = Pf + CH;                    // DVP: nn (LOGV)
    float* Wj = nnS + DVP;                   // DVP: W(b_{c+1})
    int* flag = reinterpret_cast<int*>(Wj + DVP);  // CH
    check_smem((unsigned)((2 * CH * BLK + 2 * CH * BLV) * 2 + REG + (3 * DKP + 4 * CH + NTC + 2 * DVP) * 4 + CH * 4));
    const int tid = threadIdx.x, w = tid >> 5, lane = tid & 31, g = lane >> 2, t4 = lane & 3;
    const int c = blockIdx.x;
    const i64 bh = blockIdx.y;
    const i64 g0 = (i64)c * CH;
    const int ns = (int)min((i64)CH, (i64)T - g0);
#if LOGV
    const EktRows X{v + (bh * T + g0) * DV, dO + (bh * T + g0) * DV, y + (bh * T + g0) * DV, DV};
#else
    const EktRows X{nullptr, nullptr, nullptr, DV};
#endif
    const bool E_is_V = !LOGV;
    tile_async<DKP>(Qr, BLK, q + bh * T * DK, g0, T, DK);
    tile_async<DKP>(Kr, BLK, k + bh * T * DK, g0, T, DK);
    tile_async<DVP>(Vr, BLV, v + bh * T * DV, g0, T, DV);
    tile_async<DVP>(Gr, BLV, dO + bh * T * DV, g0, T, DV);
#if LOGV
    ekt_load_o(Yo, y + (bh * T + g0) * DV, ns, DV);
    if (tid < DVP) Wj[tid] = tid < DV ? Wn[(bh * n + c) * DV + tid] : lo_v();
#endif
    if (tid < CH) {
        flag[tid] = 0;
        LS[tid] = tid < ns ? lden[bh * T + g0 + tid] : 0.f;
        DS[tid] = tid < ns ? dl[bh * T + g0 + tid] : 0.f;
    }
    cp_async_wait_all();
#if LOGV
    ekt_mask_o(Yo, y + (bh * T + g0) * DV, ns, DV);
#endif
    __syncthreads();
    ekt_key_shift(Kr, ns, nullptr, DK, mmS, fb);
    if (tid < DKP) {
        const int i = tid;
        const float f = i < DK ? __expf(mmS[i] - m_next[(bh * n + c) * DK + i]) : 0.f;
        Mn[i] = f;
        Zs[i] = i < DK ? f * Z[(bh * n + c) * DK + i] : 0.f;
    }
#if LOGV
    if (tid < DVP) {  // nn, and the column factor e^(W + nn) of U'' over W (-1 where the exponent passes the cap)
        const float nn = ekt_value_shift(Vr, ns, nullptr, DV, tid), e = Wj[tid] + nn;
        nnS[tid] = nn;
        Wj[tid] = e <= ex_capv() ? __expf(e) : -1.f;
    }
#endif
    __syncthreads();
    const float* Uc = U + (bh * n + c) * (i64)DK * DV;
    auto u_at = [&](int idx) { const int i = idx / DVP, j = idx % DVP; return (i < DK && j < DV) ? __ldg(Uc + (i64)i * DV + j) : 0.f; };
#if LOGV
    bool slow = false;  // some entry of U'' beyond e^80 (or its exponent beyond the cap): all again below
#endif
    staged<DKP * DVP, NTC>(u_at, [&](int idx, float x) {  // U'' [i][j]
        const int i = idx / DVP, j = idx % DVP;
#if LOGV  // ekt_scale_m's product (the same rounding), the column's factor taken once
        const float f = Wj[j], u = x * Mn[i] * f;
        slow |= !(f >= 0.f && fabsf(u) <= 5.5406224e34f /* e^80 */);
        Us[i * BLV + j] = to_bf(u);
#else
        Us[i * BLV + j] = to_bf(Mn[i] * x);
#endif
    });
#if LOGV
    ekt_EG(Eb, Gb, Vr, Gr, Yo, nnS, flag, ns, DV);  // the last read of Yo
    if (__syncthreads_or(slow)) {  // rare (behind a key spike): U'' = U Mn e^(W + nn) capped at e^80 (ekt_scale_m)
        const float* wn = Wn + (bh * n + c) * DV;
        staged<DKP * DVP, NTC>(u_at, [&](int idx, float x) {
            const int i = idx / DVP, j = idx % DVP;
            Us[i * BLV + j] = to_bf(j < DV ? ekt_scale_m(x, Mn[i], __ldg(wn + j) + nnS[j]) : 0.f);
        });
        __syncthreads();
    }
#else
    __syncthreads();
#endif
    for (int idx = tid; idx < CH * DKP; idx += NTC) {
        const int r = idx / DKP, i = idx % DKP;
        Bb[r * BLK + i] = to_bf((r < ns && i < DK) ? __expf(from_bf(Kr[r * BLK + i]) - mmS[i]) : 0.f);
    }
    {  // exact rows (exp(R_t - lden_t) > e^TC_LIM, or flagged above); A' (0 on them), two threads per row
        const int r = tid >> 1, h = tid & 1;
        float R = neg_big();
        for (int i = h; i < DK; i += 2) R = fmaxf(R, from_bf(Qr[r * BLK + i]) + mmS[i]);
        R = fmaxf(R, __shfl_xor_sync(0xffffffffu, R, 1));
        const bool fl = r < ns && (flag[r] || !(R - LS[r] <= TC_LIM));
        __syncwarp();
        if (h == 0 && fl) flag[r] = 1;
        for (int i = h; i < DKP; i += 2)
            Ab[r * BLK + i] = to_bf((r < ns && i < DK && !fl) ? __expf(from_bf(Qr[r * BLK + i]) + mmS[i] - LS[r]) : 0.f);
    }
    __syncthreads();
    const bf* Gt = LOGV ? Gb : Gr;
    const bf* Et = E_is_V ? Vr : Eb;
    const int slo = 16 * w + g, shi = slo + 8;
    float KX[DKP / 8][4], VX[DVP / 8][4];
    ekt_zero(KX);
    ekt_zero(VX);
    {  // P^T = B A'^T (t >= s); dv's bracket P^T G + B U''
        unsigned ba[DKP / 16][4];
#pragma unroll
        for (int kk = 0; kk < DKP / 16; ++kk) frag_a(ba[kk], Bb, BLK, 16 * w, 16 * kk);
        float P[CH / 8][4];
        ekt_zero(P);
        mma_rows<CH>(P, ba, Ab, BLK);
#pragma unroll
        for (int nt = 0; nt < CH / 8; ++nt)
#pragma unroll
            for (int x = 0; x < 4; ++x) {
                const int ss = x < 2 ? slo : shi, t = 8 * nt + 2 * t4 + (x & 1);
                if (t < ss) P[nt][x] = 0.f;
            }
        ekt_mma_c<DVP>(VX, P, Gt, BLV);
        ekt_mma<DKP, DVP, true>(VX, ba, Us, BLV);
    }
    {  // D^T = E G^T - delta (t >= s; the exact rows' columns meet zero rows of A'); dk's bracket D^T A' + E U''^T
        unsigned ea[DVP / 16][4];
#pragma unroll
        for (int kk = 0; kk < DVP / 16; ++kk) frag_a(ea[kk], Et, BLV, 16 * w, 16 * kk);
        float D[CH / 8][4];
        ekt_zero(D);
        ekt_mma<DVP, CH, false>(D, ea, Gt, BLV);
#pragma unroll
        for (int nt = 0; nt < CH / 8; ++nt)
#pragma unroll
            for (int x = 0; x < 4; ++x) {
                const int ss = x < 2 ? slo : shi, t = 8 * nt + 2 * t4 + (x & 1);
                D[nt][x] = (t >= ss && t < ns) ? D[nt][x] - DS[t] : 0.f;
            }
        ekt_mma_c<DKP>(KX, D, Ab, BLK);
        ekt_mma<DVP, DKP, false>(KX, ea, Us, BLV);
    }
    // the exact rows' sums (Fk, Fv over the products' tiles, read by every warp until this barrier)
    const bool any = __syncthreads_or(tid < CH && flag[tid]);
    if (any) {
        for (int idx = tid; idx < CH * (DKP + DVP); idx += NTC) Fk[idx] = 0.f;
        for (int t = 0; t < ns; ++t) {
            if (!flag[t]) continue;
            const float L = LS[t];
            ekt_exact_D(Df, Vr, Gr, X, DS[t], t, DV);
            if (tid < CH) {
                float p = 0.f;
                if (tid <= t)
                    for (int i = 0; i < DK; ++i) p += __expf(from_bf(Qr[t * BLK + i]) + from_bf(Kr[tid * BLK + i]) - L);
                Pf[tid] = p;
            }
            __syncthreads();
            for (int idx = tid; idx < (t + 1) * DKP; idx += NTC) {
                const int s = idx / DKP, i = idx % DKP;
                if (i < DK)
                    Fk[idx] = fmaf(__expf(from_bf(Qr[t * BLK + i]) + from_bf(Kr[s * BLK + i]) - L), Df[s], Fk[idx]);
            }
            for (int idx = tid; idx < (t + 1) * DVP; idx += NTC) {
                const int s = idx / DVP, j = idx % DVP;
                if (j < DV) {
#if LOGV
                    const float gv = X.gg(t, j) * ex_cap(X.lv(s, j) - X.yo(t, j));
#else
                    const float gv = from_bf(Gr[t * BLV + j]);
#endif
                    Fv[idx] = fmaf(Pf[s], gv, Fv[idx]);
                }
            }
            __syncthreads();
        }
    }
#pragma unroll
    for (int nt = 0; nt < DKP / 8; ++nt)
#pragma unroll
        for (int x = 0; x < 4; x += 2) {
            const int s = x < 2 ? slo : shi, i = 8 * nt + 2 * t4;
            if (s >= ns || i >= DK) continue;
            float o2[2];
#pragma unroll
            for (int e = 0; e < 2; ++e) {
                const int ii = i + e;
                o2[e] = ii < DK ? __expf(from_bf(Kr[s * BLK + ii]) - mmS[ii]) * (KX[nt][x + e] - Zs[ii]) +
                                      (any ? Fk[s * DKP + ii] : 0.f)
                                : 0.f;
            }
            store_pair(dk, (bh * T + g0 + s) * DK + i, o2[0], o2[1], (DK & 1) == 0 && i + 1 < DK, i + 1 < DK);
        }
#pragma unroll
    for (int nt = 0; nt < DVP / 8; ++nt)
#pragma unroll
        for (int x = 0; x < 4; x += 2) {
            const int s = x < 2 ? slo : shi, j = 8 * nt + 2 * t4;
            if (s >= ns || j >= DV) continue;
            float o2[2];
#pragma unroll
            for (int e = 0; e < 2; ++e) {
                const int jj = j + e;
                float r = VX[nt][x + e];
#if LOGV
                r *= from_bf(Eb[s * BLV + jj]);  // E = e^(lv - nn) (0 for -inf log values), this warp's rows
#endif
                o2[e] = jj < DV ? r + (any ? Fv[s * DVP + jj] : 0.f) : 0.f;
            }
            store_pair(dv, (bh * T + g0 + s) * DV + j, o2[0], o2[1], (DV & 1) == 0 && j + 1 < DV, j + 1 < DV);
        }
}
#endif
