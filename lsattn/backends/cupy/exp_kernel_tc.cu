// Exp-kernel attention (lsattn.exp_kernel_attention, and log_attention with -DLOGV=1): the
// tensor-core kernels for bfloat16 inputs (ek_chunk_tc5, ek_output_tc5, ek_scan_Shv / ek_scan_Sh1);
// compiled after common.cu and exp_kernel.cu (whose scan_S and ek_exact_rows they share). The host
// picks them through Config.kernel.

#if TI_BF16
// ---- tensor-core versions for bfloat16 inputs (CH = 64, NTC = 128 threads, fp32 accumulation) -----
// Rounded to bf16 on the way into a product: exp(k - m) <= 1, exp(q + mm - R) <= 1, the masked
// scores, and the rescaled S_in (relative 2^-9 each); shifts, maxima, z and denominators of the
// state part in fp32. The exact-row fallback is the fp32 one of exp_kernel.cu (ek_exact_rows).
// LOGV (log_attention; the mode of exp_kernel.cu, same shifts and exact-row rule): the value operand
// is exp(lv - nc) (chunk) / exp(lv - nn) (output) <= 1 in bf16, the state read exp(m_in - mm)
// exp(n_in - nn) S_in in bf16; log y = log acc - log den + nn in fp32, and a row with some
// acc < DEN_FLOOR (a later value of the chunk dominates its column) is recomputed exactly.

// ---- v4: asynchronous row-major tiles (cp.async), transposed operands through ldmatrix.trans ----
// Every global load of a block is issued at once; no transposed shared-memory stores.

// ST: storage of the per-chunk summaries S (float; bf16 in v5); FAST: __expf for factors that are
// rounded to bf16 right after (v5).
template <typename ST, bool FAST>
__device__ __forceinline__ void ek_chunk_body(
    const bf* __restrict__ k, const bf* __restrict__ v, float* __restrict__ mk, ST* __restrict__ S,
    float* __restrict__ z, int T, int DK, int DV, int n, float* __restrict__ nc,  // nc: LOGV only
    const int* __restrict__ rows, const int* __restrict__ tok) {  // tok: packed segments (exp_kernel.cu), or null
    constexpr int LDK = DKP + 8, LDV = DVP + 8, NP = NTC / DKP;
    extern __shared__ __align__(16) unsigned char smem_t[];
    bf* Ks = reinterpret_cast<bf*>(smem_t);  // CH x LDK: k, then exp(k - mk)
    bf* Vs = Ks + CH * LDK;                    // CH x LDV
    float* part = reinterpret_cast<float*>(Vs + CH * LDV);  // NTC partials
    float* mS = part + NTC;                                  // DKP
    float* nS = mS + DKP;                                    // LOGV: DVP column maxima of lv
#if LOGV
    float* vp = nS + DVP;                                    // NTC partial column maxima
#endif
    check_smem((unsigned)((CH * LDK + CH * LDV) * 2 + (NTC + DKP + (LOGV ? DVP + NTC : 0)) * 4));
    const int j = blockIdx.x;
    const i64 bh = blockIdx.y;
    const i64 r0 = (i64)j * CH;
    const int ns = (int)min((i64)CH, (i64)T - r0);
    const int lo = tok ? (int)max((i64)0, (i64)tok[r0 + ns - 1] - r0) : 0;  // the rows of the last segment: lo .. ns - 1
    tile_async<DKP>(Ks, LDK, k + seq_row(rows, 1, bh, gridDim.y) * T * DK, r0, T, DK);
    tile_async<DVP>(Vs, LDV, v + seq_row(rows, 2, bh, gridDim.y) * T * DV, r0, T, DV);
    cp_async_wait_all();
    __syncthreads();
    const int i = threadIdx.x % DKP, pp = threadIdx.x / DKP;
    float m = neg_big();
#pragma unroll
    for (int s = pp; s < CH; s += NP)
        if (s >= lo && s < ns) m = fmaxf(m, from_bf(Ks[s * LDK + i]));
    part[pp * DKP + i] = m;
#if LOGV
    {  // the chunk's column maxima of lv (-inf: the stand-in): NTC / DVP threads per column, as the keys'
        // (a fixed unrolled trip count: the loads in flight together, not one serial chain of 64)
        constexpr int NV = NTC / DVP;
        const int c = threadIdx.x % DVP, pv = threadIdx.x / DVP;
        float mv = lo_v();
#pragma unroll
        for (int s = pv; s < CH; s += NV)
            if (s >= lo && s < ns) mv = fmaxf(mv, from_bf(Vs[s * LDV + c]));
        vp[pv * DVP + c] = mv;
    }
#endif
    __syncthreads();
    if (threadIdx.x < DKP) {
        float mm = part[i];
#pragma unroll
        for (int u = 1; u < NP; ++u) mm = fmaxf(mm, part[u * DKP + i]);
        mS[i] = mm;
        if (i < DK) mk[(bh * n + j) * DK + i] = mm;
    }
#if LOGV
    if (threadIdx.x < DVP) {
        const int c = threadIdx.x;
        float mv = vp[c];
#pragma unroll
        for (int u = 1; u < NTC / DVP; ++u) mv = fmaxf(mv, vp[u * DVP + c]);
        if (c < DV) nc[(bh * n + j) * DV + c] = mv;
        nS[c] = mv;
    }
#endif
    __syncthreads();
    for (int idx = threadIdx.x; idx < CH * DKP; idx += NTC) {
        int ss = idx / DKP, ii = idx % DKP;
        Ks[ss * LDK + ii] = to_bf((ii < DK && ss >= lo && ss < ns) ? exf<FAST>(from_bf(Ks[ss * LDK + ii]) - mS[ii]) : 0.f);
    }
#if LOGV
    for (int idx = threadIdx.x; idx < CH * DVP; idx += NTC) {
        int ss = idx / DVP, c = idx % DVP;
        Vs[ss * LDV + c] = to_bf((c < DV && ss >= lo && ss < ns) ? exf<FAST>(fmaxf(from_bf(Vs[ss * LDV + c]), lo_v()) - nS[c]) : 0.f);
    }
#endif
    __syncthreads();
    float zz = 0.f;  // z from the rounded factors, consistent with S
#pragma unroll
    for (int s = pp; s < CH; s += NP) zz += from_bf(Ks[s * LDK + i]);
    part[pp * DKP + i] = zz;
    __syncthreads();
    if (threadIdx.x < DK) {
        float t = part[i];
#pragma unroll
        for (int u = 1; u < NP; ++u) t += part[u * DKP + i];
        z[(bh * n + j) * DK + i] = t;
    }
    mma_state_kn(S + (bh * n + j) * (i64)DK * DV, Ks, LDK, Vs, LDV, DK, DV);
}

extern "C" __global__ void __launch_bounds__(NTC) ek_chunk_tc5(
    const bf* __restrict__ k, const bf* __restrict__ v, float* __restrict__ mk, bf* __restrict__ S,
    float* __restrict__ z, int T, int DK, int DV, int n, float* __restrict__ nc,  // nc: LOGV only
    const int* __restrict__ rows, const int* __restrict__ tok) {
    ek_chunk_body<bf, true>(k, v, mk, S, z, T, DK, DV, n, nc, rows, tok);
}

// the backward's summaries (exp_kernel_bwd_tc.cu): fp32, overwritten by its U^c
extern "C" __global__ void __launch_bounds__(NTC) ek_chunk_tc5f(
    const bf* __restrict__ k, const bf* __restrict__ v, float* __restrict__ mk, float* __restrict__ S,
    float* __restrict__ z, int T, int DK, int DV, int n, float* __restrict__ nc, const int* __restrict__ rows,
    const int* __restrict__ tok) {
    ek_chunk_body<float, true>(k, v, mk, S, z, T, DK, DV, n, nc, rows, tok);
}

// OT: the output's type, bf16 or (ek_output_tc5f: bf16 log_attention training, whose backward reads log y) float32
template <typename ST, bool FAST, typename OT = bf>
__device__ __forceinline__ void ek_output_body(
    const bf* __restrict__ q, const bf* __restrict__ k, const bf* __restrict__ v, const float* __restrict__ m_in,
    const ST* __restrict__ S_in, const float* __restrict__ z_in, OT* __restrict__ out,
    int Tq, int Tk, int DK, int DV, int n_state, int causal, const float* __restrict__ n_in,  // n_in: LOGV only
    const int* __restrict__ rows, const int* __restrict__ tok, const float* __restrict__ m0, const float* __restrict__ z0,
    const float* __restrict__ S0, const float* __restrict__ n0, int nseg) {  // packed segments as ek_output, or null
    constexpr bool F32S = sizeof(ST) == 4;  // summaries in fp32: staged through Fs and converted
    constexpr int LDK = DKP + 8, LDV = DVP + 8, LDF = DVP + 4, NW = NTC / 32, NF = F32S ? DKP * LDF : 0;
    extern __shared__ __align__(16) unsigned char smem_t[];
    float* Fs = reinterpret_cast<float*>(smem_t);  // DKP x LDF: S_in (fp32, as loaded), fp32 only
    bf* Qs = reinterpret_cast<bf*>(Fs + NF);         // CH x LDK: q, then A = exp(q + mm - R)
    bf* Ks = Qs + CH * LDK;                          // CH x LDK: k, then B = exp(k - mm)
    bf* Vs = Ks + CH * LDK;                          // CH x LDV
    bf* Hs = Vs + CH * LDV;                          // DKP x LDV: exp(m_in - mm) S_in, bf16
    float* mmS = reinterpret_cast<float*>(Hs + DKP * LDV);
    float* scS = mmS + DKP;
    float* zS = scS + DKP;
    float* RS = zS + DKP;
    float* DS = RS + CH;
    float* fb = DS + CH;  // NW x (DKP + CH)
    float* nnS = fb + NW * (DKP + CH);  // LOGV: DVP column shifts nn
    float* gS = nnS + (LOGV ? DVP : 0);  // LOGV: DVP, exp(n_in - nn)
    int* flag = reinterpret_cast<int*>(gS + (LOGV ? DVP : 0));
    int* segl = flag + CH;  // CH: first token of each row's segment - r0 (-1: one stream)
    check_smem((unsigned)(NF * 4 + (2 * CH * LDK + CH * LDV + DKP * LDV) * 2 +
                          (3 * DKP + 2 * CH + NW * (DKP + CH) + (LOGV ? 2 * DVP : 0)) * 4 + 2 * CH * 4));
    const int tid = threadIdx.x, w = tid >> 5, lane = tid & 31, g = lane >> 2, t4 = lane & 3;
    const int j = blockIdx.x;
    const i64 bh = blockIdx.y;
    const i64 r0 = (i64)j * CH;
    const int ns = (int)min((i64)CH, (i64)Tq - r0);
    const i64 sidx = bh * n_state + (causal ? j : 0);
    const float* mi_p = m_in + sidx * DK;
    const float* zi_p = z_in + sidx * DK;
    const ST* Si_p = S_in + sidx * (i64)DK * DV;
    const i64 qr = seq_row(rows, 0, bh, gridDim.y), kr = seq_row(rows, 1, bh, gridDim.y), vr = seq_row(rows, 2, bh, gridDim.y);
    const bf* qb = q + (qr * Tq + r0) * DK;
    const bf* kb = k + (kr * Tk + r0) * DK;
    const bf* vb = v + (vr * Tk + r0) * DV;  // causal only
    const float* ni_p = LOGV ? n_in + sidx * DV : nullptr;
    tile_async<DKP>(Qs, LDK, q + qr * Tq * DK, r0, Tq, DK);
    if (causal) {
        tile_async<DKP>(Ks, LDK, k + kr * Tk * DK, r0, Tk, DK);
        tile_async<DVP>(Vs, LDV, v + vr * Tk * DV, r0, Tk, DV);
    }
    if constexpr (F32S) state_async(Fs, LDF, reinterpret_cast<const float*>(Si_p), DK, DV);
    else state_async_bf(Hs, LDV, reinterpret_cast<const bf*>(Si_p), DK, DV);
    if (tid < CH) {
        flag[tid] = 0;
        segl[tid] = tok && tid < ns ? (int)((i64)tok[r0 + tid] - r0) : -1;
    }
    cp_async_wait_all();
    __syncthreads();
    const bool reads = segl[0] < 0;  // some row reads the entering summary (its segment started earlier)
    {  // chunk maximum per feature, NTC / DKP threads per feature (partials in fb)
        constexpr int NP = NTC / DKP;
        const int i = tid % DKP, pp = tid / DKP;
        float m = neg_big();
        if (causal) {
#pragma unroll
            for (int r = pp; r < CH; r += NP)
                if (r < ns) m = fmaxf(m, from_bf(Ks[r * LDK + i]));
        }
        fb[pp * DKP + i] = m;
#if LOGV
        if (causal) {  // the chunk's column maxima of lv, NTC / DVP threads per column (partials after the keys')
            constexpr int NV = NTC / DVP;
            const int c = tid % DVP, pv = tid / DVP;
            float mv = lo_v();
#pragma unroll
            for (int r = pv; r < CH; r += NV)
                if (r < ns) mv = fmaxf(mv, from_bf(Vs[r * LDV + c]));
            fb[NTC + pv * DVP + c] = mv;
        }
#endif
        __syncthreads();
        if (tid < DKP) {
            float mm = 0.f, sc = 0.f, zz = 0.f;
            if (i < DK) {
                float mi = reads ? mi_p[i] : neg_big();
                mm = mi;
#pragma unroll
                for (int u = 0; u < NP; ++u) mm = fmaxf(mm, fb[u * DKP + i]);
                sc = ex(mi - mm);
                zz = sc * zi_p[i];
            }
            mmS[i] = mm;
            scS[i] = sc;
            zS[i] = zz;
        }
#if LOGV
        if (tid < DVP) {  // the column shifts nn over the state and the chunk
            const int c = tid;
            float nn = 0.f, gg = 0.f;
            if (c < DV) {
                const float ni = reads ? ni_p[c] : lo_v();
                nn = ni;
                if (causal)
#pragma unroll
                    for (int u = 0; u < NTC / DVP; ++u) nn = fmaxf(nn, fb[NTC + u * DVP + c]);
                gg = ex(ni - nn);
            }
            nnS[c] = nn;
            gS[c] = gg;
        }
#endif
    }
    __syncthreads();
    {  // row shifts: two threads per row (adjacent lanes)
        const int r = tid >> 1, h = tid & 1;
        float R = neg_big();
#pragma unroll
        for (int i = h; i < DKP; i += 2)
            if (i < DK) R = fmaxf(R, from_bf(Qs[r * LDK + i]) + mmS[i]);
        R = fmaxf(R, __shfl_xor_sync(0xffffffffu, R, 1));
        if (h == 0) RS[r] = R;
    }
    for (int idx = tid; idx < DKP * DVP; idx += NTC) {  // scaled state, bf16, row-major [i][j]
        int i = idx / DVP, jj = idx % DVP;
        const float f = LOGV ? scS[i] * gS[jj] : scS[i];
        if constexpr (F32S) Hs[i * LDV + jj] = to_bf(f * Fs[i * LDF + jj]);
        else Hs[i * LDV + jj] = to_bf(f * from_bf(Hs[i * LDV + jj]));
    }
    __syncthreads();
    for (int idx = tid; idx < CH * DKP; idx += NTC) {
        int r = idx / DKP, i = idx % DKP;
        bool ok = r < ns && i < DK;
        Qs[r * LDK + i] = to_bf(ok ? exf<FAST>((from_bf(Qs[r * LDK + i]) + mmS[i]) - RS[r]) : 0.f);
        if (causal) Ks[r * LDK + i] = to_bf(ok ? exf<FAST>(from_bf(Ks[r * LDK + i]) - mmS[i]) : 0.f);
    }
#if LOGV
    if (causal)
        for (int idx = tid; idx < CH * DVP; idx += NTC) {
            int r = idx / DVP, c = idx % DVP;
            Vs[r * LDV + c] = to_bf((r < ns && c < DV) ? exf<FAST>(fmaxf(from_bf(Vs[r * LDV + c]), lo_v()) - nnS[c]) : 0.f);
        }
#endif
    __syncthreads();
    {  // state part of the denominators, two threads per row
        const int r = tid >> 1, h = tid & 1;
        float d = 0.f;
#pragma unroll
        for (int i = h; i < DKP; i += 2) d = fmaf(from_bf(Qs[r * LDK + i]), zS[i], d);
        d += __shfl_xor_sync(0xffffffffu, d, 1);
        if (h == 0) DS[r] = segl[r] >= 0 ? 0.f : d;
    }
    const int rlo = 16 * w + g, rhi = rlo + 8;
    unsigned qa[DKP / 16][4];
#pragma unroll
    for (int kk = 0; kk < DKP / 16; ++kk) frag_a(qa[kk], Qs, LDK, 16 * w, 16 * kk);
    float O[DVP / 8][4];
#pragma unroll
    for (int nt = 0; nt < DVP / 8; ++nt) O[nt][0] = O[nt][1] = O[nt][2] = O[nt][3] = 0.f;
    float rs_lo = 0.f, rs_hi = 0.f;
#pragma unroll
    for (int kk = 0; kk < DKP / 16; ++kk)  // the entering summary's part first: rows that do not read it drop it
#pragma unroll
        for (int nt = 0; nt < DVP / 8; ++nt) {
            unsigned b0, b1;
            frag_b_kn(b0, b1, Hs, LDV, 16 * kk, 8 * nt);
            mma_bf16(O[nt], qa[kk], b0, b1);
        }
    const int sl_lo = segl[rlo], sl_hi = segl[rhi];
#pragma unroll
    for (int nt = 0; nt < DVP / 8; ++nt) {
        if (sl_lo >= 0) O[nt][0] = O[nt][1] = 0.f;
        if (sl_hi >= 0) O[nt][2] = O[nt][3] = 0.f;
    }
    if (causal) {
        float P[CH / 8][4];
#pragma unroll
        for (int nt = 0; nt < CH / 8; ++nt) P[nt][0] = P[nt][1] = P[nt][2] = P[nt][3] = 0.f;
        mma_rows<CH>(P, qa, Ks, LDK);
#pragma unroll
        for (int nt = 0; nt < CH / 8; ++nt)
#pragma unroll
            for (int x = 0; x < 4; ++x) {
                int tt = x < 2 ? rlo : rhi, s = 8 * nt + 2 * t4 + (x & 1);
                if (s > tt || s < (x < 2 ? sl_lo : sl_hi)) P[nt][x] = 0.f;  // its segment's keys
                if (x < 2) rs_lo += P[nt][x];
                else rs_hi += P[nt][x];
            }
        rs_lo += __shfl_xor_sync(0xffffffffu, rs_lo, 1);
        rs_lo += __shfl_xor_sync(0xffffffffu, rs_lo, 2);
        rs_hi += __shfl_xor_sync(0xffffffffu, rs_hi, 1);
        rs_hi += __shfl_xor_sync(0xffffffffu, rs_hi, 2);
#pragma unroll
        for (int kk = 0; kk < CH / 16; ++kk) {
            unsigned pa[4] = {pack2(P[2 * kk][0], P[2 * kk][1]), pack2(P[2 * kk][2], P[2 * kk][3]),
                              pack2(P[2 * kk + 1][0], P[2 * kk + 1][1]), pack2(P[2 * kk + 1][2], P[2 * kk + 1][3])};
#pragma unroll
            for (int nt = 0; nt < DVP / 8; ++nt) {
                unsigned b0, b1;
                frag_b_kn(b0, b1, Vs, LDV, 16 * kk, 8 * nt);
                mma_bf16(O[nt], pa, b0, b1);
            }
        }
    }
    __syncthreads();  // DS
    const float dlo = rs_lo + DS[rlo], dhi = rs_hi + DS[rhi];
    // (a row whose segment starts here with an incoming state: the exact path reads that state)
    const bool blo = rlo < ns && (!(dlo >= DEN_FLOOR) || (m0 && sl_lo >= 0));
    const bool bhi = rhi < ns && (!(dhi >= DEN_FLOOR) || (m0 && sl_hi >= 0));
    bool flo = blo, fhi = bhi;  // rows for the exact path
#if LOGV
    const float llo = lg(dlo), lhi = lg(dhi);
#else
    const float ilo = 1.f / dlo, ihi = 1.f / dhi;
#endif
    OT* ob = out + (bh * Tq + r0) * DV;
#pragma unroll
    for (int nt = 0; nt < DVP / 8; ++nt)
#pragma unroll
        for (int x = 0; x < 4; x += 2) {
            int tt = x < 2 ? rlo : rhi, c = 8 * nt + 2 * t4;
            bool bad = x < 2 ? blo : bhi;
            if (tt >= ns || bad || c >= DV) continue;
            float a = O[nt][x], b = O[nt][x + 1];
#if LOGV
            if (!(a >= DEN_FLOOR) || (c + 1 < DV && !(b >= DEN_FLOOR))) {  // underflow against a later value
                (x < 2 ? flo : fhi) = true;
                continue;
            }
            const float l = x < 2 ? llo : lhi;
            a = log_out(lg(a) - l + nnS[c]);
            b = c + 1 < DV ? log_out(lg(b) - l + nnS[c + 1]) : 0.f;
#else
            const float inv = x < 2 ? ilo : ihi;
            a *= inv;
            b *= inv;
#endif
            if constexpr (sizeof(OT) == 4) {
                store_pair(ob, (i64)tt * DV + c, a, b, (DV & 1) == 0 && c + 1 < DV, c + 1 < DV);
            } else if ((DV & 1) == 0 && c + 1 < DV) {
                *reinterpret_cast<unsigned*>(ob + (i64)tt * DV + c) = pack2(a, b);
            } else {
                st(ob + (i64)tt * DV + c, a);
                if (c + 1 < DV) st(ob + (i64)tt * DV + c + 1, b);
            }
        }
    if (flo) flag[rlo] = 1;  // (the same value from every lane that flags the row)
    if (fhi) flag[rhi] = 1;
    if (!__syncthreads_or(flo || fhi)) return;  // flag[] is read only after this barrier
    const i64 g0 = bh * nseg;  // this sequence's rows of the incoming states
    ek_exact_rows<NW>(flag, fb, ns, causal, qb, kb, vb, mi_p, zi_p, Si_p, ni_p, ob, DK, DV, tok ? segl : nullptr,
                      tok ? tok + Tq + r0 : nullptr, m0 ? m0 + g0 * DK : nullptr, m0 ? z0 + g0 * DK : nullptr,
                      m0 ? S0 + g0 * DK * DV : nullptr, m0 && n0 ? n0 + g0 * DV : nullptr);
}

extern "C" __global__ void __launch_bounds__(NTC) ek_output_tc5(
    const bf* __restrict__ q, const bf* __restrict__ k, const bf* __restrict__ v, const float* __restrict__ m_in,
    const bf* __restrict__ S_in, const float* __restrict__ z_in, bf* __restrict__ out,
    int Tq, int Tk, int DK, int DV, int n_state, int causal, const float* __restrict__ n_in,  // n_in: LOGV only
    const int* __restrict__ rows, const int* __restrict__ tok, const float* __restrict__ m0, const float* __restrict__ z0,
    const float* __restrict__ S0, const float* __restrict__ n0, int nseg) {
    ek_output_body<bf, true>(q, k, v, m_in, S_in, z_in, out, Tq, Tk, DK, DV, n_state, causal, n_in, rows, tok, m0, z0, S0,
                             n0, nseg);
}
extern "C" __global__ void __launch_bounds__(NTC) ek_output_tc5f(
    const bf* __restrict__ q, const bf* __restrict__ k, const bf* __restrict__ v, const float* __restrict__ m_in,
    const bf* __restrict__ S_in, const float* __restrict__ z_in, float* __restrict__ out,
    int Tq, int Tk, int DK, int DV, int n_state, int causal, const float* __restrict__ n_in, const int* __restrict__ rows,
    const int* __restrict__ tok, const float* __restrict__ m0, const float* __restrict__ z0, const float* __restrict__ S0,
    const float* __restrict__ n0, int nseg) {
    ek_output_body<bf, true, float>(q, k, v, m_in, S_in, z_in, out, Tq, Tk, DK, DV, n_state, causal, n_in, rows, tok, m0,
                                    z0, S0, n0, nseg);
}

// The scan over bf16 summaries (S_c read and S_in written as bf16; VEC = 4 per 8 bytes when
// d_v % 4 == 0, else 1).
extern "C" __global__ void __launch_bounds__(NT) ek_scan_Shv(const float* __restrict__ al, const float* __restrict__ be,
    bf* __restrict__ S, const float* __restrict__ S0, float* __restrict__ S_out, int DK, int DV, int n, int has_init,
    const ta* __restrict__ ga, const ta* __restrict__ gb, const int* __restrict__ rst, int nseg) {
    scan_S<bf, 4>(al, be, S, S0, S_out, DK, DV, n, has_init, ga, gb, rst, nseg);
}
extern "C" __global__ void __launch_bounds__(NT) ek_scan_Sh1(const float* __restrict__ al, const float* __restrict__ be,
    bf* __restrict__ S, const float* __restrict__ S0, float* __restrict__ S_out, int DK, int DV, int n, int has_init,
    const ta* __restrict__ ga, const ta* __restrict__ gb, const int* __restrict__ rst, int nseg) {
    scan_S<bf, 1>(al, be, S, S0, S_out, DK, DV, n, has_init, ga, gb, rst, nseg);
}
#endif
