// Exp-kernel attention (lsattn.exp_kernel_attention) as CUDA kernels; compiled after cupy_common.cu.
//
//   w(t,s) = sum_i exp(q_ti + k_si),   y_t = sum_{s<=t} w(t,s) v_s / sum_{s<=t} w(t,s)
//
// Linear attention with feature map exp(k - m) and a per-key-feature shift m. A summary of a
// group of keys is (m, S, z): m_i its per-feature key maximum, S_ij = sum_s exp(k_si - m_i) v_sj,
// z_i = sum_s exp(k_si - m_i) (the streaming state of lsattn.exp_kernel has this layout).
//
//   ek_chunk   per chunk (parallel): its summary (mk, S_c, z_c)
//   ek_scan_mz per (sequence, feature): the running maximum and z over chunks, and the rescale
//              factors of every merge; ek_scan_S applies them to S (pure FMA, vectorised). Together
//              they write the summary entering every chunk (m_in, S_in, z_in) over the chunk's own,
//              and the final state
//   ek_output  per chunk (parallel): with mm = max(m_in, mk) and one row shift
//              R_t = max_i (q_ti + mm_i), A = exp(q + mm - R) <= 1, B = exp(k - mm) <= 1:
//              num = (A B^T masked s <= t) V + A (exp(m_in - mm) S_in), den likewise with 1 and z.
//              Every term is a product of two factors <= 1, so terms that matter never underflow;
//              but mm includes keys later in the chunk, and if such a key dominates, a row's whole
//              denominator can sit far below exp(R_t). Rows whose den < DEN_FLOOR are recomputed
//              exactly (a warp per row) with the row's own shift max_i (q_ti + max_{s<=t} k_si).
//   ek_decode  one token for every sequence: merge, then read (den >= 1 exactly).
// The tensor-core versions for bfloat16 inputs are in exp_kernel_tc.cu, compiled after this file.
//
// Non-causal calls summarise all keys (ek_chunk + ek_scan) and read that summary with every
// query chunk (ek_output with causal = 0: no intra-chunk part, den >= 1).
//
// LOGV = 1 (log_attention: log v in, log y out; the array-API twin is lsattn/exp_kernel.py). Values
// are v_sj = exp(lv_sj) with lv of any magnitude (-inf clamped to the stand-in lo = -finfo.max / 8);
// a global per-column shift is not enough (a column whose early values are e^-700 of its later ones
// must stay exact early on), so every summary carries its own per-column value shift n_j:
//   summary (m, n, S, z):  S_ij = sum_s exp(k_si - m_i) exp(lv_sj - n_j),  n_j = max_s lv_sj
//   ek_chunk   also writes the chunk's column maxima nc (BH, n, DV) and builds S with exp(lv - nc)
//   ek_scan    the running column shift is the same max-scan as m (ek_scan_mz's blockIdx.z = 1, on nc, no z):
//              n_{j+1} = max(n_j, nc_j), ga_j = exp(n_j - n_{j+1}), gb_j = exp(nc_j - n_{j+1}),
//              S_{j+1}[i][c] = al_j[i] ga_j[c] S_j[i][c] + be_j[i] gb_j[c] S_c,j[i][c]
//              (the array-API merge: S = (fa ga) Sa + (fb gb) Sb; n_in of chunk j = n_j)
//   ek_output  the chunk's column shift nn_c = max(n_in_c, max_{s in chunk} lv_sc), V = exp(lv - nn),
//              the state read with exp(m_in_i - mm_i) exp(n_in_c - nn_c) S_in[i][c]; then
//              acc_tc = exp(-R_t - nn_c) (sum_{s<=t} w(t,s) v_sc + state part) and
//              log y_tc = log acc_tc + nn_c - log den_t   (R_t cancels; the array-API _finish).
//              nn_c includes later rows of the chunk, so acc_tc of an early row can underflow:
//              a row with some acc_tc < DEN_FLOOR (terms lost to underflow are < 2^-126 each) is
//              recomputed exactly like the rows with a small den, with the visible column shift
//              n'_tc = max(n_in_c, max_{s<=t} lv_sc):
//              num = sum_{s<=t} w'(t,s) exp(lv_sc - n'_tc) + exp(n_in_c - n'_tc) sum_i e_i S_in[i][c],
//              log y_tc = log num + n'_tc - log den'_t.
//   Outputs at the stand-in (every visible value 0) are -inf (log_out). The decoding kernel has no
//   LOGV mode (one token runs as one chunk).
//
// Packed segments (cu_seqlens; tok: (2, T) int32, the first token of every token's segment, then its
// segment; null: one stream). Nothing flows across a boundary:
//   ek_chunk   a chunk's summary holds the keys of its last token's segment only
//   ek_scan_*  a chunk in which that segment starts resets the running summary to the segment's
//              incoming state (rows bh nseg + segment of m0, S0, z0, n0; none: no keys) before merging
//              it; the summary entering the chunk (m_in, ...) is written before the reset: it is the
//              running segment's, which the chunk's rows of a segment started earlier read. The scans
//              read the resets from rst (n,) int32 (CupyOps.ek_scan builds it from tok, one launch):
//              one load per chunk beside mk / z, not two dependent loads of tok inside the serial loop
//              (those made the packed scans 2-3x slower, session 12)
//   ek_output  a row t reads the entering summary only if its segment started before the chunk
//              (segl[t] = first - r0 < 0); its intra-chunk keys are s in [first, t]; a row whose
//              segment starts in the chunk with an incoming state takes the exact path, which reads
//              that state (ek_exact_rows)
//   The returned states (one per segment) are assembled on the host (exp_kernel.py).

namespace {
constexpr int QLD = CH + 4;
constexpr int HS = DKP < 32 ? DKP : 32;
}

// Packed segments: the segment that starts in chunk j and holds its last token (the scan resets to
// its incoming state there), or -1 (no reset; always -1 without rst).
__device__ __forceinline__ int chunk_reset(const int* rst, int j) { return rst ? rst[j] : -1; }

extern "C" __global__ void __launch_bounds__(NT) ek_chunk(
    const ti* __restrict__ k, const ti* __restrict__ v, ta* __restrict__ mk, ta* __restrict__ S,
    ta* __restrict__ z, int T, int DK, int DV, int n, ta* __restrict__ nc,  // nc: LOGV only
    const int* __restrict__ rows,  // rows: seq_row of q, k, v (0, 1, 2), or null
    const int* __restrict__ tok) {  // packed segments, or null
    constexpr int RI = DKP / 16, RN = DVP / 16;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    ta* Kf = reinterpret_cast<ta*>(smem_raw);  // CH x DKP
    ta* Vs = Kf + CH * DKP;                    // CH x DVP (LOGV: lv, then exp(lv - nc))
    ta* mS = Vs + CH * DVP;                    // DKP
#if LOGV
    ta* nS = mS + DKP;                         // DVP
#endif
    check_smem((unsigned)((CH * DKP + CH * DVP + DKP + (LOGV ? DVP : 0)) * sizeof(ta)));
    const int tid = threadIdx.x, tx = tid & 15, ty = tid >> 4;
    const int j = blockIdx.x;
    const i64 bh = blockIdx.y;
    const i64 r0 = (i64)j * CH;
    const int ns = (int)min((i64)CH, (i64)T - r0);
    const int lo = tok ? (int)max((i64)0, (i64)tok[r0 + ns - 1] - r0) : 0;  // the rows of the last segment: lo .. ns - 1
    const i64 kr = seq_row(rows, 1, bh, gridDim.y), vr = seq_row(rows, 2, bh, gridDim.y);
    staged<CH * DKP, NT>(tile_loader<DKP>(k + kr * T * DK, r0, T, DK), [&](int idx, ta x) { Kf[idx] = x; });
    staged<CH * DVP, NT>(tile_loader<DVP>(v + vr * T * DV, r0, T, DV), [&](int idx, ta x) { Vs[idx] = x; });
    __syncthreads();
    if (tid < DKP) {
        ta m = (ta)0;
        if (tid < DK) {
            m = Kf[lo * DKP + tid];
#pragma unroll 8
            for (int r = 1; r < CH; ++r)
                if (r > lo && r < ns) m = fmx(m, Kf[r * DKP + tid]);
            mk[(bh * n + j) * DK + tid] = m;
        }
        mS[tid] = m;
    }
#if LOGV
    if (tid >= NT - DVP) {  // the chunk's column maxima of lv (threads disjoint from tid < DKP)
        const int c = tid - (NT - DVP);
        ta m = lo_v();
        for (int r = lo; r < ns; ++r) m = fmx(m, Vs[r * DVP + c]);
        if (c < DV) nc[(bh * n + j) * DV + c] = m;
        nS[c] = m;
    }
#endif
    __syncthreads();
    for (int idx = tid; idx < CH * DKP; idx += NT) {
        int r = idx / DKP, i = idx % DKP;
        Kf[idx] = (r >= lo && r < ns && i < DK) ? ex(Kf[idx] - mS[i]) : (ta)0;
    }
#if LOGV
    for (int idx = tid; idx < CH * DVP; idx += NT) {
        int r = idx / DVP, c = idx % DVP;
        Vs[idx] = (r >= lo && r < ns && c < DV) ? ex(fmx(Vs[idx], lo_v()) - nS[c]) : (ta)0;
    }
#endif
    __syncthreads();
    if (tid < DK) {
        ta s = (ta)0;
#pragma unroll 8
        for (int r = 0; r < CH; ++r) s += Kf[r * DKP + tid];  // rows >= ns are 0
        z[(bh * n + j) * DK + tid] = s;
    }
    ta acc[RI][RN];
    zero_acc(acc);
    mm_acc<RI, RN, CH>(acc, Kf, DKP, Vs, DVP, ty, tx);
    store_tile(S + (bh * n + j) * (i64)DK * DV, acc, DK, DV, ty, tx);
}

// The scan over chunks, in two passes.
// ek_scan_mz: thread per (sequence, feature i), sequential over chunks: the running maximum m, the
//   rescale factors of every merge al_j = exp(m_j - m_{j+1}), be_j = exp(mk_j - m_{j+1}), and the
//   running z; writes m_in, al, be, and z entering each chunk over z_c. LOGV: blockIdx.z = 1 runs the
//   value columns' max-scan (nc -> n_in, ga, gb, n_out; no z) in the same launch: both serial scans
//   side by side instead of one after the other (their time is the chunks' latency, not bandwidth).
__device__ __forceinline__ void scan_max(
    const ta* __restrict__ mk, ta* __restrict__ z, const ta* __restrict__ m0, const ta* __restrict__ z0,
    ta* __restrict__ m_in, ta* __restrict__ al, ta* __restrict__ be, ta* __restrict__ m_out, ta* __restrict__ z_out,
    int DK, int n, int has_init, ta lo, const int* __restrict__ rst, int nseg, int i, i64 bh) {  // z null: no z
    const i64 base = bh * (i64)n * DK + i;
    const bool from0 = has_init && !rst;
    ta m = from0 ? m0[bh * DK + i] : lo, s = from0 && z ? z0[bh * DK + i] : (ta)0;  // no state: no keys yet
    for (int j0 = 0; j0 < n; j0 += 8) {
        ta mv[8], zv[8];
        int rs[8];
#pragma unroll
        for (int u = 0; u < 8; ++u)
            if (j0 + u < n) {
                mv[u] = mk[base + (i64)(j0 + u) * DK];
                zv[u] = z ? z[base + (i64)(j0 + u) * DK] : (ta)0;
                rs[u] = chunk_reset(rst, j0 + u);
            }
#pragma unroll
        for (int u = 0; u < 8; ++u)
            if (j0 + u < n) {
                const i64 o = base + (i64)(j0 + u) * DK;
                m_in[o] = m;
                if (z) z[o] = s;  // z entering chunk j (shift m)
                if (rs[u] >= 0) {  // a segment starts: its incoming state (or no keys)
                    const i64 g = (bh * nseg + rs[u]) * DK + i;
                    m = has_init ? m0[g] : lo;
                    s = has_init && z ? z0[g] : (ta)0;
                }
                ta mn = fmx(m, mv[u]);
                ta a = ex(m - mn), b = ex(mv[u] - mn);
                al[o] = a;
                be[o] = b;
                s = fma(a, s, b * zv[u]);
                m = mn;
            }
    }
    m_out[bh * DK + i] = m;
    if (z) z_out[bh * DK + i] = s;
}

extern "C" __global__ void __launch_bounds__(NT) ek_scan_mz(
    const ta* __restrict__ mk, ta* __restrict__ z, const ta* __restrict__ m0, const ta* __restrict__ z0,
    ta* __restrict__ m_in, ta* __restrict__ al, ta* __restrict__ be, ta* __restrict__ m_out, ta* __restrict__ z_out,
    int DK, int n, int has_init, ta lo, const int* __restrict__ rst, int nseg,  // rst: packed segments' resets, or null
    const ta* __restrict__ nc, const ta* __restrict__ n0, ta* __restrict__ n_in, ta* __restrict__ ga,
    ta* __restrict__ gb, ta* __restrict__ n_out, int DV) {  // LOGV (blockIdx.z = 1): the value columns
    const i64 bh = blockIdx.y;
    const int i = blockIdx.x * NT + threadIdx.x;
    if (blockIdx.z == 0) {
        if (i < DK) scan_max(mk, z, m0, z0, m_in, al, be, m_out, z_out, DK, n, has_init, lo, rst, nseg, i, bh);
    } else if (i < DV) {
        scan_max(nc, nullptr, n0, nullptr, n_in, ga, gb, n_out, nullptr, DV, n, has_init, lo, rst, nseg, i, bh);
    }
}

// ek_scan_S: S_{j+1} = al_j S_j + be_j S_c,j per element, writing the S entering each chunk over
//   S_c. VEC consecutive columns per thread (16 bytes of them when d_v allows, else 1); the loads of
//   the next 8 chunks are issued before the current 8 are processed and stored. ST: storage of the
//   summaries (the compute type, or bf16 in the bf16 path); the running sum stays in ta.
// LOGV: the column factors ga, gb (BH, n, DV) of the value shifts multiply al, be (VEC of them per
//   chunk and thread, loaded with S: a load inside the dependent loop would stall every chunk).
template <typename ST, int VEC>
__device__ __forceinline__ void scan_S(const ta* __restrict__ al, const ta* __restrict__ be, ST* __restrict__ S,
                                       const ta* __restrict__ S0, ta* __restrict__ S_out, int DK, int DV, int n,
                                       int has_init, const ta* __restrict__ ga, const ta* __restrict__ gb,
                                       const int* __restrict__ rst, int nseg) {
    typedef Pack<VEC, ST> vec;
    const i64 bh = blockIdx.y;
    const int e = (blockIdx.x * NT + threadIdx.x) * VEC;
    if (e >= DK * DV) return;
    const int i = e / DV;
    const i64 mstride = (i64)DK * DV;
    vec* Sb = reinterpret_cast<vec*>(S + bh * (i64)n * mstride + e);
    const ta* alb = al + bh * (i64)n * DK + i;
    const ta* beb = be + bh * (i64)n * DK + i;
    const i64 vstride = mstride / VEC;
    ta s[VEC];
#pragma unroll
    for (int x = 0; x < VEC; ++x) s[x] = has_init && !rst ? S0[bh * mstride + e + x] : (ta)0;
    constexpr int G = 8;
    vec cur[G], nxt[G];
    ta ca[G], cb[G], na[G], nb[G];
    int crs[G], nrs[G];  // packed segments: chunk_reset
#if LOGV
    typedef Pack<VEC, ta> fvec;  // e % DV is a multiple of VEC (DV % VEC == 0 for VEC > 1)
    const fvec* gab = reinterpret_cast<const fvec*>(ga + bh * (i64)n * DV + e % DV);
    const fvec* gbb = reinterpret_cast<const fvec*>(gb + bh * (i64)n * DV + e % DV);
    const i64 gstride = DV / VEC;
    fvec cga[G], cgb[G], nga[G], ngb[G];
#endif
#pragma unroll
    for (int u = 0; u < G; ++u)
        if (u < n) {
            cur[u] = Sb[u * vstride];
            ca[u] = alb[(i64)u * DK];
            cb[u] = beb[(i64)u * DK];
            crs[u] = chunk_reset(rst, u);
#if LOGV
            cga[u] = gab[u * gstride];
            cgb[u] = gbb[u * gstride];
#endif
        }
    for (int j0 = 0; j0 < n; j0 += G) {
#pragma unroll
        for (int u = 0; u < G; ++u)
            if (j0 + G + u < n) {
                nxt[u] = Sb[(i64)(j0 + G + u) * vstride];
                na[u] = alb[(i64)(j0 + G + u) * DK];
                nb[u] = beb[(i64)(j0 + G + u) * DK];
                nrs[u] = chunk_reset(rst, j0 + G + u);
#if LOGV
                nga[u] = gab[(j0 + G + u) * gstride];
                ngb[u] = gbb[(j0 + G + u) * gstride];
#endif
            }
#pragma unroll
        for (int u = 0; u < G; ++u)
            if (j0 + u < n) {
                vec o;
#pragma unroll
                for (int x = 0; x < VEC; ++x) {
                    ta a = ca[u], b = cb[u];
#if LOGV
                    a *= cga[u].v[x];
                    b *= cgb[u].v[x];
#endif
                    o.v[x] = to_st<ST>(s[x]);
                    if (crs[u] >= 0)  // a segment starts: its incoming state (or no keys)
                        s[x] = has_init ? S0[(bh * nseg + crs[u]) * mstride + e + x] : (ta)0;
                    s[x] = fma(a, s[x], b * from_st(cur[u].v[x]));
                }
                Sb[(i64)(j0 + u) * vstride] = o;
            }
#pragma unroll
        for (int u = 0; u < G; ++u) {
            cur[u] = nxt[u];
            ca[u] = na[u];
            cb[u] = nb[u];
            crs[u] = nrs[u];
#if LOGV
            cga[u] = nga[u];
            cgb[u] = ngb[u];
#endif
        }
    }
#pragma unroll
    for (int x = 0; x < VEC; ++x) S_out[bh * mstride + e + x] = s[x];
}

extern "C" __global__ void __launch_bounds__(NT) ek_scan_Sv(const ta* __restrict__ al, const ta* __restrict__ be,
    ta* __restrict__ S, const ta* __restrict__ S0, ta* __restrict__ S_out, int DK, int DV, int n, int has_init,
    const ta* __restrict__ ga, const ta* __restrict__ gb, const int* __restrict__ rst, int nseg) {
    scan_S<ta, 16 / sizeof(ta)>(al, be, S, S0, S_out, DK, DV, n, has_init, ga, gb, rst, nseg);
}
extern "C" __global__ void __launch_bounds__(NT) ek_scan_S1(const ta* __restrict__ al, const ta* __restrict__ be,
    ta* __restrict__ S, const ta* __restrict__ S0, ta* __restrict__ S_out, int DK, int DV, int n, int has_init,
    const ta* __restrict__ ga, const ta* __restrict__ gb, const int* __restrict__ rst, int nseg) {
    scan_S<ta, 1>(al, be, S, S0, S_out, DK, DV, n, has_init, ga, gb, rst, nseg);
}

#if TI_BF16 || TI_F16
__device__ __forceinline__ void st(float* p, ta x) { *p = x; }  // float32 outputs of 16-bit inputs (ek_output_tc5f)
#endif

// One row t of a chunk, exact, by a warp: the row's own shift R' = max_i (q_ti + max(m_i, max_{s0<=s<=t}
// k_si)), den and (LOGV: with the visible column shift n'_tc) num from the chunk's keys s0 .. t (causal)
// and a summary (mi_p, zi_p, Si_p: S stored as SI; ni_p: LOGV's n; mi_p null: none); fe, fw: the
// warp's scratch (DKP, CH).
template <typename SI, typename OT>
__device__ __forceinline__ void ek_exact_row(int t, int s0, int causal, const ti* qb, const ti* kb, const ti* vb,
                                             const ta* mi_p, const ta* zi_p, const SI* Si_p, const ta* ni_p, ta* fe,
                                             ta* fw, OT* ob, int DK, int DV) {
    const int lane = threadIdx.x & 31;
    const ti* qr = qb + (i64)t * DK;
    ta xm = neg_big();
    for (int i = lane; i < DK; i += 32) {
        ta mr = mi_p ? mi_p[i] : neg_big();
        if (causal)
            for (int s = s0; s <= t; ++s) mr = fmx(mr, ld(kb + (i64)s * DK + i));
        xm = fmx(xm, ld(qr + i) + mr);
    }
    const ta R = warp_max(xm);
    ta dst = (ta)0;
    if (mi_p)
        for (int i = lane; i < DK; i += 32) {
            ta e = ex((ld(qr + i) + mi_p[i]) - R);
            fe[i] = e;
            dst = fma(e, zi_p[i], dst);
        }
    ta den = warp_sum(dst);
    if (causal) {
        for (int s = s0; s <= t; ++s) {
            ta ws = (ta)0;
            for (int i = lane; i < DK; i += 32) ws += ex((ld(qr + i) + ld(kb + (i64)s * DK + i)) - R);
            ws = warp_sum(ws);
            if (lane == 0) fw[s] = ws;
            den += ws;
        }
    }
    __syncwarp();
#if LOGV
    const ta lden = lg(den);
    for (int c = lane; c < DV; c += 32) {  // the visible column shift n'
        const ta ni = mi_p ? ni_p[c] : lo_v();
        ta np = ni;
        if (causal)
            for (int s = s0; s <= t; ++s) np = fmx(np, ld(vb + (i64)s * DV + c));
        ta num = (ta)0;
        if (causal)
            for (int s = s0; s <= t; ++s) num = fma(fw[s], ex(fmx(ld(vb + (i64)s * DV + c), lo_v()) - np), num);
        ta sp = (ta)0;
        if (mi_p)
            for (int i = 0; i < DK; ++i) sp = fma(fe[i], (ta)from_st(Si_p[(i64)i * DV + c]), sp);
        num = fma(ex(ni - np), sp, num);
        st(ob + (i64)t * DV + c, log_out(lg(num) - lden + np));
    }
#else
    const ta inv = (ta)1 / den;
    for (int c = lane; c < DV; c += 32) {
        ta num = (ta)0;
        if (causal)
            for (int s = s0; s <= t; ++s) num = fma(fw[s], ld(vb + (i64)s * DV + c), num);
        if (mi_p)
            for (int i = 0; i < DK; ++i) num = fma(fe[i], (ta)from_st(Si_p[(i64)i * DV + c]), num);
        st(ob + (i64)t * DV + c, num * inv);
    }
#endif
    __syncwarp();
}

// Exact recomputation of the rows of a chunk flagged in flag[] (ns rows), one warp per row (NW warps),
// from the inputs (qb, kb, vb: the chunk's first rows) and the summary entering the chunk (mi_p, zi_p,
// Si_p: S_in stored as the compute type or bf16; ni_p: LOGV's n_in); fb: NW x (DKP + CH) scratch; ob:
// outputs of the input type or (ek_output_tc5f) float32. Packed segments (segl: each row's first
// token of its segment minus the chunk's first, or null): a row with segl[t] >= 0 reads the keys
// segl[t] .. t and its segment's incoming state (m0, z0, S0, n0 at the rows of this sequence; sid: the
// rows' segments) or none (m0 null). Shared by ek_output and the tensor-core ek_output_tc5 / tc5f.
template <int NW, typename SI, typename OT>
__device__ __forceinline__ void ek_exact_rows(const int* flag, ta* fb, int ns, int causal, const ti* qb, const ti* kb,
                                              const ti* vb, const ta* mi_p, const ta* zi_p, const SI* Si_p,
                                              const ta* ni_p, OT* ob, int DK, int DV, const int* segl, const int* sid,
                                              const ta* m0, const ta* z0, const ta* S0, const ta* n0) {
    const int w = threadIdx.x >> 5;
    ta* fe = fb + w * (DKP + CH);  // exp(q_ti + m_i - R')
    ta* fw = fe + DKP;             // w(t, s) exp(-R'), s <= t
    for (int t = w; t < ns; t += NW) {
        if (!flag[t]) continue;
        if (segl && segl[t] >= 0) {  // its segment starts in this chunk: its incoming state, or none
            const i64 g = m0 ? sid[t] : 0;
            ek_exact_row<ta, OT>(t, segl[t], causal, qb, kb, vb, m0 ? m0 + g * DK : nullptr, m0 ? z0 + g * DK : nullptr,
                                 m0 ? S0 + g * DK * DV : nullptr, m0 && n0 ? n0 + g * DV : nullptr, fe, fw, ob, DK, DV);
        } else {
            ek_exact_row<SI, OT>(t, 0, causal, qb, kb, vb, mi_p, zi_p, Si_p, ni_p, fe, fw, ob, DK, DV);
        }
    }
}

extern "C" __global__ void __launch_bounds__(NT) ek_output(
    const ti* __restrict__ q, const ti* __restrict__ k, const ti* __restrict__ v, const ta* __restrict__ m_in,
    const ta* __restrict__ S_in, const ta* __restrict__ z_in, ti* __restrict__ out,
    int Tq, int Tk, int DK, int DV, int n_state, int causal, const ta* __restrict__ n_in,  // n_in: LOGV only
    const int* __restrict__ rows,  // rows: seq_row of q, k, v (0, 1, 2), or null
    const int* __restrict__ tok, const ta* __restrict__ m0, const ta* __restrict__ z0, const ta* __restrict__ S0,
    const ta* __restrict__ n0, int nseg) {  // packed segments (causal) and their incoming states (m0 null: none), or null
    constexpr int RM = CH / 16, RN = DVP / 16;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    ta* Qt = reinterpret_cast<ta*>(smem_raw);  // DKP x QLD: q, then A = exp(q + mm - R)
    ta* Kt = Qt + DKP * QLD;                   // DKP x QLD: k, then B = exp(k - mm)
    ta* Vs = Kt + DKP * QLD;                   // CH x DVP
    ta* Pt = Vs + CH * DVP;                    // CH x QLD: masked A B^T, transposed
    ta* Hs = Pt + CH * QLD;                    // HS x DVP staging of the scaled S_in
    ta* mmS = Hs + HS * DVP;                   // DKP
    ta* scS = mmS + DKP;                       // DKP: exp(m_in - mm)
    ta* zS = scS + DKP;                        // DKP: exp(m_in - mm) z_in
    ta* RS = zS + DKP;                         // CH: row shifts
    ta* DS = RS + CH;                          // CH: state part of the denominators
    ta* fb = DS + CH;                          // (NT/32) x (DKP + CH): fallback scratch per warp
    ta* nnS = fb + (NT / 32) * (DKP + CH);     // LOGV: DVP column shifts nn
    ta* gS = nnS + (LOGV ? DVP : 0);           // LOGV: DVP, exp(n_in - nn)
    int* flag = reinterpret_cast<int*>(gS + (LOGV ? DVP : 0));  // CH
    int* segl = flag + CH;  // CH: first token of each row's segment - r0 (-1: one stream)
    check_smem((unsigned)((2 * DKP * QLD + CH * DVP + CH * QLD + HS * DVP + 3 * DKP + 2 * CH + (NT / 32) * (DKP + CH)
                           + (LOGV ? 2 * DVP : 0)) * sizeof(ta) + 2 * CH * sizeof(int)));
    const int tid = threadIdx.x, tx = tid & 15, ty = tid >> 4;
    const int j = blockIdx.x;
    const i64 bh = blockIdx.y;
    const i64 r0 = (i64)j * CH;
    const int ns = (int)min((i64)CH, (i64)Tq - r0);
    const i64 sidx = bh * n_state + (causal ? j : 0);
    const ta* mi_p = m_in + sidx * DK;
    const ta* zi_p = z_in + sidx * DK;
    const ta* Si_p = S_in + sidx * (i64)DK * DV;
    const i64 qr = seq_row(rows, 0, bh, gridDim.y), kr = seq_row(rows, 1, bh, gridDim.y), vr = seq_row(rows, 2, bh, gridDim.y);
    const ti* qb = q + (qr * Tq + r0) * DK;
    const ti* kb = k + (kr * Tk + r0) * DK;  // causal only (Tk == Tq)
    const ti* vb = v + (vr * Tk + r0) * DV;  // causal only
    const ta* ni_p = LOGV ? n_in + sidx * DV : nullptr;
    staged<CH * DKP, NT>(tile_loader<DKP>(q + qr * Tq * DK, r0, Tq, DK),
                         [&](int idx, ta x) { Qt[(idx % DKP) * QLD + idx / DKP] = x; });
    if (causal) {
        staged<CH * DKP, NT>(tile_loader<DKP>(k + kr * Tk * DK, r0, Tk, DK),
                             [&](int idx, ta x) { Kt[(idx % DKP) * QLD + idx / DKP] = x; });
        staged<CH * DVP, NT>(tile_loader<DVP>(v + vr * Tk * DV, r0, Tk, DV),
            [&](int idx, ta x) { Vs[idx] = x; });
    }
    if (tid < CH) {
        flag[tid] = 0;
        segl[tid] = tok && tid < ns ? (int)((i64)tok[r0 + tid] - r0) : -1;
    }
    __syncthreads();
    const bool reads = segl[0] < 0;  // some row reads the entering summary (its segment started earlier)
    {  // chunk maximum per feature: NT / DKP threads per feature, partials in fb
        constexpr int NP = NT / DKP;
        const int i = tid % DKP, pp = tid / DKP;
        ta m = neg_big();
        if (causal) {
#pragma unroll
            for (int r = pp; r < CH; r += NP)
                if (r < ns) m = fmx(m, Kt[i * QLD + r]);
        }
        fb[pp * DKP + i] = m;
        __syncthreads();
        if (tid < DKP) {
            ta mm = (ta)0, sc = (ta)0, zz = (ta)0;
            if (i < DK) {
                ta mi = reads ? mi_p[i] : neg_big();
                mm = mi;
#pragma unroll
                for (int u = 0; u < NP; ++u) mm = fmx(mm, fb[u * DKP + i]);
                sc = ex(mi - mm);
                zz = sc * zi_p[i];
            }
            mmS[i] = mm;
            scS[i] = sc;
            zS[i] = zz;
        }
#if LOGV
        if (tid >= NT - DVP) {  // the column shifts nn (threads disjoint from tid < DKP)
            const int c = tid - (NT - DVP);
            ta nn = (ta)0, g = (ta)0;
            if (c < DV) {
                const ta ni = reads ? ni_p[c] : lo_v();
                nn = ni;
                if (causal)
                    for (int r = 0; r < ns; ++r) nn = fmx(nn, Vs[r * DVP + c]);
                g = ex(ni - nn);
            }
            nnS[c] = nn;
            gS[c] = g;
        }
#endif
    }
    __syncthreads();
    {  // row shifts: NT / CH threads per row (adjacent lanes)
        constexpr int NR = NT / CH;
        const int r = tid / NR, h = tid % NR;
        ta R = neg_big();
#pragma unroll
        for (int i = h; i < DKP; i += NR)
            if (i < DK) R = fmx(R, Qt[i * QLD + r] + mmS[i]);
#pragma unroll
        for (int o = 1; o < NR; o <<= 1) R = fmx(R, __shfl_xor_sync(0xffffffffu, R, o));
        if (h == 0) RS[r] = R;
    }
    __syncthreads();
    for (int idx = tid; idx < CH * DKP; idx += NT) {
        int i = idx / CH, r = idx % CH;
        bool ok = r < ns && i < DK;
        Qt[i * QLD + r] = ok ? ex((Qt[i * QLD + r] + mmS[i]) - RS[r]) : (ta)0;
        if (causal) Kt[i * QLD + r] = ok ? ex(Kt[i * QLD + r] - mmS[i]) : (ta)0;
    }
#if LOGV
    if (causal)
        for (int idx = tid; idx < CH * DVP; idx += NT) {
            int r = idx / DVP, c = idx % DVP;
            Vs[idx] = (r < ns && c < DV) ? ex(fmx(Vs[idx], lo_v()) - nnS[c]) : (ta)0;
        }
#endif
    __syncthreads();
    {  // state part of the denominators, NT / CH threads per row
        constexpr int NR = NT / CH;
        const int r = tid / NR, h = tid % NR;
        ta d = (ta)0;
#pragma unroll
        for (int i = h; i < DKP; i += NR) d = fma(Qt[i * QLD + r], zS[i], d);
#pragma unroll
        for (int o = 1; o < NR; o <<= 1) d += __shfl_xor_sync(0xffffffffu, d, o);
        if (h == 0) DS[r] = segl[r] >= 0 ? (ta)0 : d;
    }
    ta acc[RM][RN];
    zero_acc(acc);
    ta rsum[RM];
#pragma unroll
    for (int ii = 0; ii < RM; ++ii) rsum[ii] = (ta)0;
    for (int k0 = 0; k0 < DKP; k0 += HS) {  // the entering summary's part first: rows that do not read it drop it
        __syncthreads();
        staged<HS * DVP, NT>(
            [&](int idx) {
                int c = idx % DVP, i = k0 + idx / DVP;
                return (i < DK && c < DV) ? Si_p[(i64)i * DV + c] : (ta)0;
            },
            [&](int idx, ta x) { Hs[idx] = scS[k0 + idx / DVP] * (LOGV ? gS[idx % DVP] : (ta)1) * x; });
        __syncthreads();
        mm_acc<RM, RN, HS>(acc, Qt + k0 * QLD, QLD, Hs, DVP, ty, tx);
    }
#pragma unroll
    for (int ii = 0; ii < RM; ++ii)
        if (segl[ty * RM + ii] >= 0)
#pragma unroll
            for (int jj = 0; jj < RN; ++jj) acc[ii][jj] = (ta)0;
    if (causal) {
        ta P[RM][RM];
        zero_acc(P);
        mm_acc<RM, RM, DKP>(P, Qt, QLD, Kt, QLD, ty, tx);
#pragma unroll
        for (int ii = 0; ii < RM; ++ii) {
            int t = ty * RM + ii;
#pragma unroll
            for (int jj = 0; jj < RM; ++jj) {
                int s = tx * RM + jj;
                ta x = (s <= t && s >= segl[t]) ? P[ii][jj] : (ta)0;  // its segment's keys
                rsum[ii] += x;
                Pt[s * QLD + t] = x;
            }
        }
#pragma unroll
        for (int ii = 0; ii < RM; ++ii)
#pragma unroll
            for (int o = 8; o > 0; o >>= 1) rsum[ii] += __shfl_xor_sync(0xffffffffu, rsum[ii], o);  // over tx
        __syncthreads();
        mm_acc<RM, RN, CH>(acc, Pt, QLD, Vs, DVP, ty, tx);
    }
    ti* ob = out + (bh * Tq + r0) * DV;
    int flagged = 0;  // this thread's own knowledge: flag[] is read only after the barrier below
#pragma unroll
    for (int ii = 0; ii < RM; ++ii) {
        int t = ty * RM + ii;
        if (t >= ns) continue;
        ta den = rsum[ii] + DS[t];
        if (!(den >= DEN_FLOOR) || (m0 && segl[t] >= 0)) {  // (a segment's incoming state: the exact path reads it)
            if (tx == 0) flag[t] = 1;
            flagged = 1;
            continue;
        }
#if LOGV
        const ta lden = lg(den);
#pragma unroll
        for (int jj = 0; jj < RN; ++jj) {
            int c = tx * RN + jj;
            if (c >= DV) continue;
            if (!(acc[ii][jj] >= DEN_FLOOR)) {  // underflow against a later value of the chunk: exact path
                flag[t] = 1;
                flagged = 1;
            } else {
                st(ob + (i64)t * DV + c, log_out(lg(acc[ii][jj]) - lden + nnS[c]));
            }
        }
#else
        ta inv = (ta)1 / den;
#pragma unroll
        for (int jj = 0; jj < RN; ++jj) {
            int c = tx * RN + jj;
            if (c < DV) st(ob + (i64)t * DV + c, acc[ii][jj] * inv);
        }
#endif
    }
    if (!__syncthreads_or(flagged)) return;

    const i64 g0 = bh * nseg;  // this sequence's rows of the incoming states
    ek_exact_rows<NT / 32>(flag, fb, ns, causal, qb, kb, vb, mi_p, zi_p, Si_p, ni_p, ob, DK, DV, tok ? segl : nullptr,
                           tok ? tok + Tq + r0 : nullptr, m0 ? m0 + g0 * DK : nullptr, m0 ? z0 + g0 * DK : nullptr,
                           m0 ? S0 + g0 * DK * DV : nullptr, m0 && n0 ? n0 + g0 * DV : nullptr);
}

// One decoding step for every sequence: merge the token into (m, S, z), then read it; blocks
// (sequence, 16 columns of S).
extern "C" __global__ void __launch_bounds__(NT) ek_decode(
    const ti* __restrict__ q, const ti* __restrict__ k, const ti* __restrict__ v, const ta* __restrict__ m,
    const ta* __restrict__ S, const ta* __restrict__ z, ta* __restrict__ m2, ta* __restrict__ S2,
    ta* __restrict__ z2, ti* __restrict__ out, int DK, int DV, const int* __restrict__ rows) {  // rows: seq_row or null
    __shared__ ta so[DKP], sn[DKP], es[DKP], zn[DKP], vs[DVP], outs[DVP], red[NT / 32];
    const int tid = threadIdx.x;
    const i64 bh = blockIdx.x;
    const i64 qr = seq_row(rows, 0, bh, gridDim.x), kr = seq_row(rows, 1, bh, gridDim.x), vr = seq_row(rows, 2, bh, gridDim.x);
    ta x = neg_big();
    for (int i = tid; i < DK; i += NT) {
        ta mi = m[bh * DK + i], ki = ld(k + kr * DK + i);
        ta mn = fmx(mi, ki);
        ta a = ex(mi - mn), b = ex(ki - mn);
        so[i] = a;
        sn[i] = b;
        ta zi = fma(a, z[bh * DK + i], b);
        zn[i] = zi;
        if (blockIdx.y == 0) {  // every column block computes m', z' (cheap); the first one stores them
            z2[bh * DK + i] = zi;
            m2[bh * DK + i] = mn;
        }
        ta xi = ld(q + qr * DK + i) + mn;
        es[i] = xi;
        x = fmx(x, xi);
    }
    for (int c = tid; c < DV; c += NT) {
        vs[c] = ld(v + vr * DV + c);
        outs[c] = (ta)0;
    }
    const ta R = block_max(x, red);
    ta dp = (ta)0;
    for (int i = tid; i < DK; i += NT) {
        ta e = ex(es[i] - R);
        es[i] = e;
        dp = fma(e, zn[i], dp);
    }
    const ta den = block_sum(dp, red);  // synchronises: es visible
    const int mm = DK * DV;
    const ta* Sb = S + bh * (i64)mm;
    ta* S2b = S2 + bh * (i64)mm;
    const int c0 = blockIdx.y * DEC_CB, cw = min(DEC_CB, DV - c0);  // this block's columns
    for (int y = tid; y < DK * cw; y += NT) {
        const int i = y / cw, c = c0 + y % cw, e = i * DV + c;
        ta s2 = fma(so[i], Sb[e], sn[i] * vs[c]);
        S2b[e] = s2;
        atomicAdd(&outs[c], es[i] * s2);
    }
    __syncthreads();
    for (int c = c0 + tid; c < c0 + cw; c += NT) st(out + bh * DV + c, outs[c] / den);
}
