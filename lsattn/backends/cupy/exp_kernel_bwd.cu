// Backward of exp-kernel attention (lsattn.exp_kernel_attention, causal; lsattn.log_attention, causal, in LOGV mode below); compiled after common.cu.
// FFMA kernels computing in TA (float for 16-bit inputs, which they read and whose gradients they
// write as such).
//
// With P_i(t,s) = exp(q_ti + k_si - lden_t) (lden_t = log sum_{s<=t} w(t,s): P_i <= 1 for s <= t),
// P = sum_i P_i (the attention weights), delta_t = dy_t . y_t and D_ts = dy_t . v_s - delta_t:
//   dq_ti = sum_{s<=t} P_i(t,s) D_ts,   dk_si = sum_{t>=s} P_i(t,s) D_ts,   dv_s = sum_{t>=s} P(t,s) dy_t.
// Inside a chunk every P_i is formed from its exponent (<= 0, nothing to overflow, exact whatever
// key of the chunk dominates). Across chunks, with M_c = m_in of chunk c (the per-feature key
// maximum over everything before it, the forward's shift; lden_t >= q_ti + M_c for t in or after c):
//   earlier keys, read by chunk c's queries: the forward's summary (M_c, S_in, z_in) with
//     A_ti = exp(q_ti + M_c,i - lden_t) <= 1:  dq_ti += A_ti (sum_j S_in[i,j] dy_tj - z_in_i delta_t)
//   later queries, read by chunk c's keys: the reverse state U(b) = sum_{t>=b} exp(q_t - lden_t + M_b) dy_t^T
//     (and Z(b) likewise with delta_t), built from per-chunk parts U^c = A^T dY (ekb_dq) by a reverse
//     scan (ekb_rscan: U(b_c) = U^c + exp(M_c - M_{c+1}) U(b_{c+1}), factors <= 1); a key of chunk c
//     reads U(b_{c+1}) with B_si = exp(k_si - M_{c+1,i}) <= 1:
//     dk_si += B_si (sum_j v_sj U[i,j] - Z_i),  dv_s += sum_i B_si U[i,:]
//   U(b_0) is the gradient of the incoming state's S (shift m = M_0), -Z(b_0) that of its z.
//
//   ekb_dq    per chunk: lden (online max / sum over the chunk's pairs and the summary), delta,
//             dq, and U^c, Z^c written over the chunk's S_in, z_in (read first)
//   ekb_rscan per (sequence, element of U or Z): the reverse scan, U(b_{c+1}) over U^c; U(b_0) out
//   ekb_dkdv  per chunk: dk, dv
//
// LOGV = 1 (log_attention: lv = log v in, o = log y out, g = dL/do). log_attention is the above with
// v = exp(lv), y = exp(o), dy = g exp(-o) and d lv = v o dv, so with E_tsj = exp(lv_sj - o_tj):
//   delta_t = sum_j g_tj,   D_ts = sum_j g_tj E_tsj - delta_t,   dq, dk as above,
//   d lv_sj = sum_{t>=s} P(t,s) g_tj E_tsj.
// Outputs o_tj = -inf (every visible value 0) do not depend on any input: their g counts as 0 (and
// o as +big, so every factor exp(. - o) is 0). A -inf entry of lv (clamped to lo_v) gets exactly 0.
// No raw exp(lv) or exp(-o) is formed; every exponent is a difference bounded while the forward
// is exact (o_tj >= n_tj - B with n_tj the running column maximum over s <= t; see exp_kernel.py):
//   inside a chunk  E_tsj per pair (lv_sj - o_tj <= n_tj - o_tj <= B), s <= t: no chunk-wide value
//                   shift, whose later entries would overflow early rows
//   earlier keys    the forward's summary (M_c, n_in, S_in, z_in), n_in its column shift:
//                   dq_ti += A_ti (sum_j S_in[i,j] G_tj - z_in_i delta_t), G_tj = g_tj exp(n_in_j - o_tj)
//   later queries   U^c = A^T G' with G'_tj = g_tj exp(-o_tj - W^c_j), W^c_j = max_{t in c} -o_tj (<= 1),
//                   a column shift that the reverse scan merges like the forward's: W(b_c) =
//                   max(W^c, W(b_{c+1})); a key of chunk c reads U(b_{c+1}) with V'_sj =
//                   exp(lv_sj + W_j(b_{c+1})) in place of v_sj (lv_sj + W_j = lv_sj - min_{t>=b} o_tj <= B):
//                   dk_si += B_si (sum_j V'_sj U[i,j] - Z_i),  d lv_sj += V'_sj sum_i B_si U[i,j]
//   incoming state  dS0_ij = U(b_0)_ij exp(n0_j + W_j(b_0)), dz0 = -Z(b_0), dn0_j = sum_i S0_ij dS0_ij,
//                   dm0_i = sum_j S0_ij dS0_ij + z0_i dz0_i (host).
// Exponents are capped (ex_cap) so that outputs beyond the forward's bound give finite gradients. A pair's
// factor e^(lv_s - o_t) <= 1 / P(t,s) is exact up to the cap, i.e. for weights P >= e^-80 (float): behind a
// key spike (+60) the earlier keys weigh e^-65 while their values dominate the outputs, and the former cap,
// 64, was off by e^(x - 64). What keeps each sum finite in float (FLT_MAX = e^88.7; double: cap 640 of e^709.8):
//   D, the intra d lv  g_tj e^(lv - o) with the row's cap c_t = 80 - max(0, log max_j |g_tj|) (ex_capr):
//                   each term <= e^80, d_v <= 128 of them (D) or CH <= 64 times P <= 1 (d lv): <= e^84.9
//   the state read  S_in's columns scaled to max_i |S'_ij| = 1 (sigma_j = log max_i |S_in_ij|), G_tj =
//                   g_tj e^min(n_in_j - o_tj + sigma_j, c_t) (<= e^80): sum_j G S' <= d_v e^80
//   later queries   U's columns likewise (tau_j), V'_sj = e^min(lv_sj + W_j + tau_j, 80): sum_j V' U'^T and
//                   V' sum_i B U' <= 128 e^80
// (the column scales move a summary's magnitude into the capped exponent, where it is exact up to e^80).
namespace {
constexpr int QLD = CH + 4;
constexpr float FX_LIM = 40.f;  // LOGV: rows with a factor e^(nn_j - o_tj) beyond e^FX_LIM are computed per pair
}

// The per-pair exponentials (arguments <= 0 where they matter; LOGV: <= the cap): common.cu's fex
// (relative error ~1e-6 for arguments down to -87, far inside the float32 gradient bound).

// The cap of the LOGV backward's exponents, shared with exp_kernel_bwd_tc.cu (see above)
__device__ __forceinline__ ta ex_capv() { return sizeof(ta) == 4 ? (ta)80 : (ta)640; }
// exp(min(x, c)): an exponent that is <= B while the forward is exact, capped beyond (finite, never NaN)
__device__ __forceinline__ ta ex_capr(ta x, ta c) { return fex(x < c ? x : c); }
__device__ __forceinline__ ta ex_cap(ta x) { return ex_capr(x, ex_capv()); }

#if LOGV
// g over -inf outputs -> 0, those outputs -> +big; rows past the chunk likewise (Or: g [t][j], Yo: o [t][j]);
// Cr[t] = the cap of row t's terms g_tj e^x, 80 - max(0, log max_j |g_tj|), so that each is <= e^80 (a warp per
// row; unrolled: the rows' reductions interleave, the phase being a serial part of the block's)
__device__ __forceinline__ void logv_mask(ta* Or, ta* Yo, ta* Cr, int ns) {
    const int lane = threadIdx.x & 31;
#pragma unroll
    for (int r = threadIdx.x >> 5; r < CH; r += NT / 32) {
        ta m = (ta)0;
#pragma unroll
        for (int j = lane; j < DVP; j += 32) {
            const int idx = r * DVP + j;
            const bool ok = r < ns && Yo[idx] > lo_v() / 2;
            const ta g = ok ? Or[idx] : (ta)0;
            Or[idx] = g;
            Yo[idx] = ok ? Yo[idx] : -lo_v();
            m = fmx(m, fabs(g));
        }
        m = warp_max(m);
        if (lane == 0) Cr[r] = ex_capv() - (m > (ta)1 ? lg(m) : (ta)0);
    }
}

// A summary's column scales: sigma_j = log max_i |X_ij| (0 for a zero column) into Sg[j], and X's columns
// scaled by e^-sigma_j (Xt: X transposed [j][i], rows i < DK at stride DKP); nn_j = max_{s < ns} lv_sj, the
// chunk's column maxima of the clamped log values (Vt [j][s]) into Nn. A warp per column, unrolled.
__device__ __forceinline__ void logv_cols(ta* Xt, ta* Sg, int DK, const ta* Vt, ta* Nn, int ns) {
    const int lane = threadIdx.x & 31;
#pragma unroll
    for (int j = threadIdx.x >> 5; j < DVP; j += NT / 32) {
        ta m = (ta)0, v = lo_v();
#pragma unroll
        for (int i = lane; i < DKP; i += 32)
            if (i < DK) m = fmx(m, fabs(Xt[j * DKP + i]));
#pragma unroll
        for (int r = lane; r < CH; r += 32)
            if (r < ns) v = fmx(v, Vt[j * QLD + r]);
        m = warp_max(m);
        v = warp_max(v);
        const ta sg = m > (ta)0 ? lg(m) : (ta)0, f = ex(-sg);
#pragma unroll
        for (int i = lane; i < DKP; i += 32)
            if (i < DK) Xt[j * DKP + i] *= f;
        if (lane == 0) {
            Sg[j] = sg;
            Nn[j] = v;
        }
    }
}

// The pair factors factorised: e^(lv_sj - o_tj) = E_sj e^(nn_j - o_tj) with E_sj = e^(lv_sj - nn_j) <= 1
// (over Vt; 0 for -inf log values, rows past the chunk, padding) and G_tj = g_tj e^(nn_j - o_tj) (into Gt
// [j][t], and Gr [t][j] unless null), so that the per-pair sums are products. A row t is flagged (Fl[t], G
// row 0) where some g_tj != 0 has nn_j - o_tj > min(FX_LIM, c_t): there a later value of the chunk dominates
// (G would not be bounded) or the cap c_t is reached, and its sums are taken per pair (logv_exact_D, the
// intra d lv). Elsewhere every exponent lv_sj - o_tj <= min(FX_LIM, c_t): the products are the capped
// per-pair sums, less terms below e^(FX_LIM - 87) |g_tj| lost with E's underflow. Returns whether any row
// is flagged (ends with a barrier).
__device__ __forceinline__ bool logv_GE(ta* Gt, ta* Gr, const ta* Or, const ta* Yo, ta* Vt, const ta* Nn, const ta* Cr,
                                        int* Fl, int ns, int DV) {
    const int lane = threadIdx.x & 31;
    bool any = false;
#pragma unroll
    for (int t = threadIdx.x >> 5; t < CH; t += NT / 32) {  // a warp per row (unrolled, as logv_mask)
        const ta lim = Cr[t] < (ta)FX_LIM ? Cr[t] : (ta)FX_LIM;
        bool bad = false;
#pragma unroll
        for (int j = lane; j < DVP; j += 32) bad |= Or[t * DVP + j] != (ta)0 && Nn[j] - Yo[t * DVP + j] > lim;
        bad = __any_sync(0xffffffffu, bad);
#pragma unroll
        for (int j = lane; j < DVP; j += 32) {
            const ta g = Or[t * DVP + j];
            const ta G = (!bad && g != (ta)0) ? g * fex(Nn[j] - Yo[t * DVP + j]) : (ta)0;  // exponent <= 40
            Gt[j * QLD + t] = G;
            if (Gr) Gr[t * DVP + j] = G;
        }
        if (lane == 0) Fl[t] = bad;
        any |= bad;
    }
    for (int idx = threadIdx.x; idx < DVP * CH; idx += NT) {
        const int j = idx / CH, s = idx % CH;
        const ta lv = Vt[j * QLD + s];
        Vt[j * QLD + s] = (s < ns && j < DV && lv > lo_v() / 2) ? fex(lv - Nn[j]) : (ta)0;
    }
    return __syncthreads_or(any);
}

// D[t][s] (s <= t) of the flagged rows per pair: sum_j g_tj e^min(lv_sj - o_tj, c_t) - delta_t, g and the
// log values read from the chunk's rows in global memory (gc, vc: row t at t DV), o masked (Yo)
__device__ __forceinline__ void logv_exact_D(ta* Dm, const ti* vc, const ti* gc, const ta* Yo, const ta* Ds, const ta* Cr,
                                             const int* Fl, int ns, int DV) {
    for (int idx = threadIdx.x; idx < CH * CH; idx += NT) {
        const int t = idx / CH, s = idx % CH;
        if (t >= ns || s > t || !Fl[t]) continue;
        ta d = -Ds[t];
        const ta c = Cr[t];
        for (int j = 0; j < DV; ++j) {
            const ta o = Yo[t * DVP + j];
            if (o < -lo_v() / 2) d = fma(ld(gc + (i64)t * DV + j), ex_capr(fmx(ld(vc + (i64)s * DV + j), lo_v()) - o, c), d);
        }
        Dm[t * QLD + s] = d;
    }
}

#endif

// The chunk's tiles of both backward kernels: q, k [t][i] (Kt: k transposed [i][s], or null), dO
// transposed [j][t] and as is [t][j], v transposed [j][s] (LOGV: log values clamped, and Yo: the
// log output [t][j]).
__device__ __forceinline__ void ekb_tiles(const ti* q, const ti* k, const ti* v, const ti* dO, const ti* y, ta* Qr,
                                          ta* Kr, ta* Kt, ta* Ot, ta* Vt, ta* Or, ta* Yo, i64 bh, i64 g0, int T, int DK,
                                          int DV) {
    load_rows<DKP>(q + bh * T * DK, g0, T, DK, Qr, nullptr, 0);
    load_rows<DKP>(k + bh * T * DK, g0, T, DK, Kr, Kt, QLD);
    load_rows<DVP>(dO + bh * T * DV, g0, T, DV, Or, Ot, QLD);
    load_rows<DVP>(v + bh * T * DV, g0, T, DV, nullptr, Vt, QLD, LOGV);
    if (Yo) load_rows<DVP>(y + bh * T * DV, g0, T, DV, Yo, nullptr, 0);
}

// D[t][s] for s <= t < ns (else 0): dO_t . v_s - delta_t (Ot, Vt); LOGV: G_t . E_s - delta_t (logv_GE's
// factors), the flagged rows (Fl) left to logv_exact_D
__device__ __forceinline__ void ekb_D(ta* Dm, const ta* Ot, const ta* Vt, const ta* Ds, const int* Fl, int ns) {
    constexpr int RM = CH / 16;
    const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
    ta acc[RM][RM];
    zero_acc(acc);
    mm_acc<RM, RM, DVP>(acc, Ot, QLD, Vt, QLD, ty, tx);
#pragma unroll
    for (int ii = 0; ii < RM; ++ii) {
        const int t = ty * RM + ii;
        if (LOGV && t < ns && Fl[t]) continue;
#pragma unroll
        for (int jj = 0; jj < RM; ++jj) {
            const int s = tx * RM + jj;
            Dm[t * QLD + s] = (s <= t && t < ns) ? acc[ii][jj] - Ds[t] : (ta)0;
        }
    }
}


extern "C" __global__ void __launch_bounds__(NT) ekb_dq(
    const ti* __restrict__ q, const ti* __restrict__ k, const ti* __restrict__ v, const ti* __restrict__ y,
    const ti* __restrict__ dO, const ta* __restrict__ m_in, ta* __restrict__ S, ta* __restrict__ z,
    ti* __restrict__ dq, ta* __restrict__ lden, ta* __restrict__ dl, int T, int DK, int DV, int n,
    const ta* __restrict__ n_in, ta* __restrict__ Wc) {  // n_in (BH, n, DV) in, Wc (BH, n, DV) out: LOGV only
    constexpr int RM = CH / 16, RI = DKP / 16, RN = DVP / 16;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    ta* Qr = reinterpret_cast<ta*>(smem_raw);  // CH x DKP: q [t][i]
    ta* Kr = Qr + CH * DKP;                    // CH x DKP: k [s][i]
    ta* Ot = Kr + CH * DKP;                    // DVP x QLD: dO transposed [j][t]
    ta* Vt = Ot + DVP * QLD;                   // DVP x QLD: v transposed [j][s]
    ta* Or = Vt + DVP * QLD;                   // CH x DVP: dO [t][j]
    ta* Dm = Or + CH * DVP;                    // CH x QLD: D [t][s] (0 where s > t)
    ta* St = Dm + CH * QLD;                    // DVP x DKP: S_in transposed [j][i]
    ta* Aq = St + DVP * DKP;                   // CH x DKP: running sums, then A [t][i]
    ta* Wm = Aq + CH * DKP;                    // CH x DKP: running maxima, then the intra-chunk dq
    ta* mi = Wm + CH * DKP;                    // DKP: M_c
    ta* zi = mi + DKP;                         // DKP: z_in
    ta* Ls = zi + DKP;                         // CH: lden
    ta* Ds = Ls + CH;                          // CH: delta
    ta* Yo = LOGV ? Ds + CH : nullptr;         // LOGV: CH x DVP, o [t][j]
#if LOGV  // Vt holds lv, then E; Ot holds g, then G (logv_GE), then G^T; Or g, then G'; St S_in scaled by columns (S')
    ta* Ni = Yo + CH * DVP;                    // DVP: n_in
    ta* Ws = Ni + DVP;                         // DVP: W^c
    ta* Sg = Ws + DVP;                         // DVP: sigma, S_in's column scales
    ta* Cr = Sg + DVP;                         // CH: the rows' caps
    ta* Nn = Cr + CH;                          // DVP: nn, the chunk's column maxima of lv
    int* Fl = reinterpret_cast<int*>(Nn + DVP);  // CH (ta slots): the rows computed per pair
#else
    const int* Fl = nullptr;
#endif
    check_smem((unsigned)((4 * CH * DKP + 2 * DVP * QLD + CH * DVP + CH * QLD + DVP * DKP + 2 * DKP + 2 * CH +
                           (LOGV ? CH * DVP + 4 * DVP + 2 * CH : 0)) * sizeof(ta)));
    const int tid = threadIdx.x, tx = tid & 15, ty = tid >> 4, lane = tid & 31, warp = tid >> 5;
    const int c = blockIdx.x;
    const i64 bh = blockIdx.y;
    const i64 g0 = (i64)c * CH;
    const int ns = (int)min((i64)CH, (i64)T - g0);
    ta* Sc = S + (bh * n + c) * (i64)DK * DV;
    ta* zc = z + (bh * n + c) * DK;
    ekb_tiles(q, k, v, dO, y, Qr, Kr, nullptr, Ot, Vt, Or, Yo, bh, g0, T, DK, DV);
    staged<DKP * DVP, NT>([&](int idx) { int i = idx / DVP, j = idx % DVP; return (i < DK && j < DV) ? Sc[(i64)i * DV + j] : (ta)0; },
                          [&](int idx, ta x) { St[(idx % DVP) * DKP + idx / DVP] = x; });
    if (tid < DKP) {
        mi[tid] = tid < DK ? m_in[(bh * n + c) * DK + tid] : (ta)0;
        zi[tid] = tid < DK ? zc[tid] : (ta)0;
    }
#if LOGV
    if (tid < DVP) {
        Ni[tid] = tid < DV ? n_in[(bh * n + c) * DV + tid] : (ta)0;
    }
#endif
    for (int r = warp; r < CH; r += NT / 32) {  // delta_t = dy_t . y_t (LOGV: sum_j g_tj over finite o_tj), a warp per row
        ta s = (ta)0;
        if (r < ns)
            for (int j = lane; j < DV; j += 32) {
                const ta yv = ld(y + (bh * T + g0 + r) * DV + j), gv = ld(dO + (bh * T + g0 + r) * DV + j);
                s += LOGV ? (yv > lo_v() / 2 ? gv : (ta)0) : yv * gv;
            }
        s = warp_sum(s);
        if (lane == 0) Ds[r] = s;
    }
    __syncthreads();
#if LOGV
    logv_mask(Or, Yo, Cr, ns);
    logv_cols(St, Sg, DK, Vt, Nn, ns);  // S' = S_in e^-sigma; nn
#endif
    // (running max, sum) of q_ti + k_si over s <= t, started from the summary's term exp(q_ti + M_i) z_i
    for (int idx = tid; idx < CH * DKP; idx += NT) {
        const int t = idx / DKP, i = idx % DKP;
        ta m = neg_big(), s = (ta)0;
        if (t < ns && i < DK) {
            const ta qi = Qr[idx];
            m = qi + mi[i];
            s = zi[i];
            for (int u = 0; u <= t; ++u) {
                const ta x = qi + Kr[u * DKP + i];
                if (x > m) { s = s * fex(m - x) + (ta)1; m = x; }
                else s += fex(x - m);
            }
        }
        Wm[idx] = m;
        Aq[idx] = s;
    }
    __syncthreads();
    if (tid < CH) {  // lden_t: the row's partial (max, sum) pairs combined
        const int t = tid;
        ta m = neg_big();
        for (int i = 0; i < DK; ++i) m = fmx(m, Wm[t * DKP + i]);
        ta s = (ta)0;
        for (int i = 0; i < DK; ++i) s += Aq[t * DKP + i] * ex(Wm[t * DKP + i] - m);
        const ta L = t < ns ? m + log(s) : (ta)0;
        Ls[t] = L;
        if (t < ns) {
            lden[bh * T + g0 + t] = L;
            dl[bh * T + g0 + t] = Ds[t];
        }
    }
#if LOGV
    if (tid >= NT - DVP) {  // W^c_j = max_t -o_tj (threads disjoint from tid < CH)
        const int j = tid - (NT - DVP);
        ta wm[4] = {lo_v(), lo_v(), lo_v(), lo_v()};  // rows past the chunk are masked (-o = lo_v): all CH, four chains
#pragma unroll
        for (int t = 0; t < CH; ++t) wm[t & 3] = fmx(wm[t & 3], -Yo[t * DVP + j]);
        const ta w = fmx(fmx(wm[0], wm[1]), fmx(wm[2], wm[3]));
        Ws[j] = w;
        if (j < DV) Wc[(bh * n + c) * DV + j] = w;
    }
    if (logv_GE(Ot, nullptr, Or, Yo, Vt, Nn, Cr, Fl, ns, DV))
        logv_exact_D(Dm, v + (bh * T + g0) * DV, dO + (bh * T + g0) * DV, Yo, Ds, Cr, Fl, ns, DV);
#endif
    ekb_D(Dm, Ot, Vt, Ds, Fl, ns);
    __syncthreads();
    // A = exp(q + M - lden); the intra-chunk dq into Wm
    for (int idx = tid; idx < CH * DKP; idx += NT) {
        const int t = idx / DKP, i = idx % DKP;
        ta a = (ta)0, g = (ta)0;
        if (t < ns && i < DK) {
            const ta qi = Qr[idx] - Ls[t];
            a = ex(qi + mi[i]);
            for (int u = 0; u <= t; ++u) g = fma(fex(qi + Kr[u * DKP + i]), Dm[t * QLD + u], g);
        }
        Aq[idx] = a;
        Wm[idx] = g;
    }
#if LOGV  // G^T over Ot (the state read), G' over Or (U^c); every read of g is above
    for (int idx = tid; idx < CH * DVP; idx += NT) {
        const int t = idx / DVP, j = idx % DVP;
        const ta gv = Or[idx], o = Yo[idx];
        Ot[j * QLD + t] = gv * ex_capr(Ni[j] - o + Sg[j], Cr[t]);
        Or[idx] = gv * ex(-o - Ws[j]);
    }
#endif
    __syncthreads();
    {  // dq = intra + A o (dO S_in^T - delta z_in)
        ta acc[RM][RI];
        zero_acc(acc);
        mm_acc<RM, RI, DVP>(acc, Ot, QLD, St, DKP, ty, tx);
#pragma unroll
        for (int ii = 0; ii < RM; ++ii) {
            const int t = ty * RM + ii;
            if (t >= ns) continue;
#pragma unroll
            for (int jj = 0; jj < RI; ++jj) {
                const int i = tx * RI + jj;
                if (i < DK)
                    st(dq + (bh * T + g0 + t) * DK + i, Wm[t * DKP + i] + Aq[t * DKP + i] * (acc[ii][jj] - zi[i] * Ds[t]));
            }
        }
    }
    {  // U^c = A^T dO, Z^c = A^T delta, over S_in / z_in (every read of them is above)
        ta acc[RI][RN];
        zero_acc(acc);
        mm_acc<RI, RN, CH>(acc, Aq, DKP, Or, DVP, ty, tx);
        store_tile(Sc, acc, DK, DV, ty, tx);
        if (tid < DK) {
            ta s = (ta)0;
            for (int t = 0; t < ns; ++t) s = fma(Aq[t * DKP + tid], Ds[t], s);
            zc[tid] = s;
        }
    }
}

// Reverse scan per (sequence, element e): e < DK*DV an element of U (row i = e / DV), else Z[e - DK*DV].
// X[c] holds U^c on entry and U(b_{c+1}) on exit; R0 receives U(b_0).
// LOGV: U's column shifts, W^c in Wc (BH, n, DV); Wn[c] receives W(b_{c+1}), W0 W(b_0) (written by
// block 0); Z has none. The column factors of a step, e^(W^c - W(b_c)) on U^c and e^(W(b_{c+1}) - W(b_c))
// on the running U, are the same for every row: the block's first DV threads take them for NB chunks at
// a time into shared memory (double-buffered, one barrier a batch), the elements read them.
// Packed segments (exp_kernel.py's chunk-aligned layout): m_next = +finfo.max / 8 (-lo_v) marks the
// last chunk of a segment: U(b_c) = U^c there, its column shift W^c (nothing of a later segment).
// The scan's loads of chunks c0, c0 - 1, .. (NB of them, none below 0 or off a live element): U^c (Z^c) at X,
// the row factor's exponent m_in - m_next and whether a segment ends there (m_next at +big); m0 = (bh n) DK + i
template <int NB>
__device__ __forceinline__ void rscan_loads(ta (&u)[NB], ta (&f)[NB], bool (&cut)[NB], const ta* X, i64 stride,
                                            const ta* m_in, const ta* m_next, i64 m0, int DK, int c0, bool live) {
#pragma unroll
    for (int b = 0; b < NB; ++b) {
        const int c = c0 - b;
        const i64 mc = m0 + (i64)max(c, 0) * DK;
        u[b] = (c >= 0 && live) ? X[max(c, 0) * stride] : (ta)0;
        f[b] = (c >= 0 && live) ? m_in[mc] - m_next[mc] : (ta)0;
        cut[b] = c >= 0 && live && m_next[mc] >= -lo_v();
    }
}

// LOGV, float: at most 48 registers, 5 blocks of NT per SM (B=2, H=16, d=64 launches 544 blocks: at 4 per SM, 528
// on an H200's 132 SMs, a second wave of 16; it took 62 registers). Exp mode: the kernel after this one (43
// registers fit 5 blocks as they are; its code measured 8% slower under the bound).
#if LOGV
#define RSCAN_BOUNDS __launch_bounds__(NT, sizeof(ta) == 4 ? 5 : 1)
#else
#define RSCAN_BOUNDS __launch_bounds__(NT)
#endif
extern "C" __global__ void RSCAN_BOUNDS ekb_rscan(
    ta* __restrict__ U, ta* __restrict__ Z, const ta* __restrict__ m_in, const ta* __restrict__ m_next,
    ta* __restrict__ R0, int DK, int DV, int n, const ta* __restrict__ Wc, ta* __restrict__ Wn, ta* __restrict__ W0) {
    const i64 bh = blockIdx.y;
    const int e = blockIdx.x * NT + threadIdx.x;
    const int E = DK * DV;
    constexpr int NB = 8;  // the loads of NB chunks are issued before their sequential update
#if LOGV
    const bool live = e < E + DK;  // (the others still take part in the barriers)
    const int i = !live ? 0 : (e < E ? e / DV : e - E);
    ta* X = e < E ? U + bh * n * (i64)E + e : Z + bh * n * (i64)DK + i;
    const i64 stride = e < E ? E : DK;
    ta R = (ta)0;
    __shared__ ta fa[2][NB][DVP], fb[2][NB][DVP];  // e^(W^c - W(b_c)), e^(W(b_{c+1}) - W(b_c)) by column
    const bool col = e < E;  // an element of U: column j
    const int j = col ? e % DV : 0, jl = threadIdx.x;
    const bool lead = jl < DV;  // the column factors of column jl
    ta Wr = lo_v();
    int buf = 0;
    for (int c0 = n - 1; c0 >= 0; c0 -= NB) {
        ta u[NB], f[NB];
        bool cut[NB];
        rscan_loads(u, f, cut, X, stride, m_in, m_next, (bh * n) * DK + i, DK, c0, live);
        if (lead) {
            ta w[NB];
            bool cw[NB];
#pragma unroll
            for (int b = 0; b < NB; ++b) {
                const int c = max(c0 - b, 0);
                w[b] = Wc[(bh * n + c) * DV + jl];
                cw[b] = m_next[(bh * n + c) * DK] >= -lo_v();
            }
#pragma unroll
            for (int b = 0; b < NB; ++b) {
                const int c = c0 - b;
                if (c < 0) break;
                if (blockIdx.x == 0) Wn[(bh * n + c) * DV + jl] = Wr;
                if (cw[b]) Wr = lo_v();
                const ta wn = fmx(Wr, w[b]);
                fa[buf][b][jl] = ex(w[b] - wn);
                fb[buf][b][jl] = ex(Wr - wn);
                Wr = wn;
            }
        }
        __syncthreads();
#pragma unroll
        for (int b = 0; b < NB; ++b) {
            const int c = c0 - b;
            if (c < 0 || !live) break;
            X[c * stride] = R;
            if (cut[b]) R = (ta)0;  // a segment ends in chunk c
            if (col) {
                R = u[b] * fa[buf][b][j] + ex(f[b]) * (fb[buf][b][j] * R);
                continue;
            }
            R = u[b] + ex(f[b]) * R;
        }
        buf ^= 1;
    }
    if (live) R0[bh * (i64)(E + DK) + e] = R;
    if (lead && blockIdx.x == 0) W0[bh * DV + jl] = Wr;
#else
    if (e >= E + DK) return;
    const int i = e < E ? e / DV : e - E;
    ta* X = e < E ? U + bh * n * (i64)E + e : Z + bh * n * (i64)DK + i;
    const i64 stride = e < E ? E : DK;
    ta R = (ta)0;
    for (int c0 = n - 1; c0 >= 0; c0 -= NB) {
        ta u[NB], f[NB];
        bool cut[NB];
        rscan_loads(u, f, cut, X, stride, m_in, m_next, (bh * n) * DK + i, DK, c0, true);
#pragma unroll
        for (int b = 0; b < NB; ++b) {
            const int c = c0 - b;
            if (c < 0) break;
            X[c * stride] = R;
            if (cut[b]) R = (ta)0;  // a segment ends in chunk c
            R = u[b] + ex(f[b]) * R;
        }
    }
    R0[bh * (i64)(E + DK) + e] = R;
#endif
}

extern "C" __global__ void __launch_bounds__(NT) ekb_dkdv(
    const ti* __restrict__ q, const ti* __restrict__ k, const ti* __restrict__ v, const ti* __restrict__ dO,
    const ta* __restrict__ lden, const ta* __restrict__ dl, const ta* __restrict__ U, const ta* __restrict__ Z,
    const ta* __restrict__ m_next, ti* __restrict__ dk, ti* __restrict__ dv, int T, int DK, int DV, int n,
    const ti* __restrict__ y, const ta* __restrict__ Wn) {  // LOGV only: o (BH, T, DV), W(b_{c+1}) (BH, n, DV)
    constexpr int RM = CH / 16, RI = DKP / 16, RN = DVP / 16;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    ta* Qr = reinterpret_cast<ta*>(smem_raw);  // CH x DKP: q [t][i]
    ta* Kr = Qr + CH * DKP;                    // CH x DKP: k [s][i]
    ta* Kt = Kr + CH * DKP;                    // DKP x QLD: k transposed [i][s], then B [i][s]
    ta* Ot = Kt + DKP * QLD;                   // DVP x QLD: dO transposed [j][t]
    ta* Vt = Ot + DVP * QLD;                   // DVP x QLD: v transposed [j][s]
    ta* Or = Vt + DVP * QLD;                   // CH x DVP: dO [t][j]
    ta* Dm = Or + CH * DVP;                    // CH x QLD: D [t][s] (0 where s > t)
    ta* Pm = Dm + CH * QLD;                    // CH x QLD: P [t][s] (0 where s > t)
    ta* Us = Pm + CH * QLD;                    // DKP x DVP: U(b_{c+1}) [i][j]
    ta* Ut = Us + DKP * DVP;                   // DVP x DKP: U transposed [j][i]
    ta* Wk = Ut + DVP * DKP;                   // CH x DKP: the intra-chunk dk [s][i]
    ta* Zs = Wk + CH * DKP;                    // DKP
    ta* Mn = Zs + DKP;                         // DKP: M_{c+1}
    ta* Ls = Mn + DKP;                         // CH: lden
    ta* Ds = Ls + CH;                          // CH: delta
    ta* Yo = LOGV ? Ds + CH : nullptr;         // LOGV: CH x DVP, o [t][j]
#if LOGV  // Vt holds lv, then E, then V'; Or g, then G; Ot g^T, then G^T, then the flagged rows' d lv [j][s];
          // Ut U scaled by columns (U')
    ta* Wj = Yo + CH * DVP;                    // DVP: W(b_{c+1})
    ta* Tg = Wj + DVP;                         // DVP: tau, U's column scales
    ta* Cr = Tg + DVP;                         // CH: the rows' caps
    ta* Nn = Cr + CH;                          // DVP: nn, the chunk's column maxima of lv
    int* Fl = reinterpret_cast<int*>(Nn + DVP);  // CH (ta slots): the rows computed per pair
    const ti* vc = v + ((i64)blockIdx.y * T + (i64)blockIdx.x * CH) * DV;  // the chunk's rows of lv and g in global memory
    const ti* gc = dO + ((i64)blockIdx.y * T + (i64)blockIdx.x * CH) * DV;
    bool anyf = false;
#else
    const int* Fl = nullptr;
#endif
    check_smem((unsigned)((3 * CH * DKP + DKP * QLD + 2 * DVP * QLD + CH * DVP + 2 * CH * QLD + 2 * DKP * DVP +
                           2 * DKP + 2 * CH + (LOGV ? CH * DVP + 3 * DVP + 2 * CH : 0)) * sizeof(ta)));
    const int tid = threadIdx.x, tx = tid & 15, ty = tid >> 4;
    const int c = blockIdx.x;
    const i64 bh = blockIdx.y;
    const i64 g0 = (i64)c * CH;
    const int ns = (int)min((i64)CH, (i64)T - g0);
    const ta* Uc = U + (bh * n + c) * (i64)DK * DV;
    ekb_tiles(q, k, v, dO, y, Qr, Kr, Kt, Ot, Vt, Or, Yo, bh, g0, T, DK, DV);
    staged<DKP * DVP, NT>([&](int idx) { int i = idx / DVP, j = idx % DVP; return (i < DK && j < DV) ? Uc[(i64)i * DV + j] : (ta)0; },
                          [&](int idx, ta x) { Us[idx] = x; Ut[(idx % DVP) * DKP + idx / DVP] = x; });
#if LOGV
    if (tid < DVP) Wj[tid] = tid < DV ? Wn[(bh * n + c) * DV + tid] : (ta)0;
#endif
    if (tid < DKP) {
        Zs[tid] = tid < DK ? Z[(bh * n + c) * DK + tid] : (ta)0;
        Mn[tid] = tid < DK ? m_next[(bh * n + c) * DK + tid] : (ta)0;
    }
    if (tid < CH) {
        Ls[tid] = tid < ns ? lden[bh * T + g0 + tid] : (ta)0;
        Ds[tid] = tid < ns ? dl[bh * T + g0 + tid] : (ta)0;
    }
    __syncthreads();
#if LOGV
    logv_mask(Or, Yo, Cr, ns);
    logv_cols(Ut, Tg, DK, Vt, Nn, ns);  // U' = U e^-tau over Ut (Us keeps U: its product B U is scaled after); nn
    __syncthreads();
    anyf = logv_GE(Ot, Or, Or, Yo, Vt, Nn, Cr, Fl, ns, DV);
    if (anyf) logv_exact_D(Dm, vc, gc, Yo, Ds, Cr, Fl, ns, DV);
#endif
    ekb_D(Dm, Ot, Vt, Ds, Fl, ns);
    // P[t][s] = sum_i exp(q_ti + k_si - lden_t), s <= t
    for (int idx = tid; idx < CH * CH; idx += NT) {
        const int t = idx / CH, s = idx % CH;
        ta p = (ta)0;
        if (s <= t && t < ns) {
            const ta L = Ls[t];
            for (int i = 0; i < DK; ++i) p += fex(Qr[t * DKP + i] + Kt[i * QLD + s] - L);
        }
        Pm[t * QLD + s] = p;
    }
    __syncthreads();  // Dm complete; Kt no longer read
#if LOGV
    // the log values V' (below) and d lv's epilogue read, loaded from global memory (L2) ahead of the phase's and
    // the product's work: NV per thread at V''s positions, RM x RN at the epilogue's
    constexpr int NV = (CH * DVP + NT - 1) / NT;
    ta lvv[NV], lve[RM][RN];
#pragma unroll
    for (int u = 0; u < NV; ++u) {
        const int idx = tid + u * NT, s = idx / DVP, j = idx % DVP;
        lvv[u] = (idx < CH * DVP && s < ns && j < DV) ? ld(vc + (i64)s * DV + j) : lo_v();
    }
#pragma unroll
    for (int ii = 0; ii < RM; ++ii)
#pragma unroll
        for (int jj = 0; jj < RN; ++jj) {
            const int s = ty * RM + ii, j = tx * RN + jj;
            lve[ii][jj] = (s < ns && j < DV) ? ld(vc + (i64)s * DV + j) : lo_v();
        }
#endif
    // the intra-chunk dk; B = exp(k - M_{c+1}) over Kt
    for (int idx = tid; idx < CH * DKP; idx += NT) {
        const int s = idx / DKP, i = idx % DKP;
        ta g = (ta)0;
        if (s < ns && i < DK) {
            const ta ki = Kr[idx];
            for (int t = s; t < ns; ++t) g = fma(fex(Qr[t * DKP + i] + ki - Ls[t]), Dm[t * QLD + s], g);
        }
        Wk[idx] = g;
        Kt[i * QLD + s] = (s < ns && i < DK) ? ex(Kr[idx] - Mn[i]) : (ta)0;
    }
#if LOGV
    // the intra-chunk d lv_sj = sum_{t>=s} P(t,s) g_tj e^min(lv_sj - o_tj, c_t): E_sj (P^T G)_sj (below) plus
    // the flagged rows' terms per pair into Ot
    for (int idx = tid; anyf && idx < CH * DVP; idx += NT) {
        const int s = idx / DVP, j = idx % DVP;
        ta g = (ta)0;
        if (s < ns && j < DV) {
            const ta lv = fmx(ld(vc + (i64)s * DV + j), lo_v());
            for (int t = s; t < ns; ++t)
                if (Fl[t] && Yo[t * DVP + j] < -lo_v() / 2)
                    g = fma(Pm[t * QLD + s] * ld(gc + (i64)t * DV + j), ex_capr(lv - Yo[t * DVP + j], Cr[t]), g);
        }
        Ot[j * QLD + s] = g;
    }
#pragma unroll
    for (int u = 0; u < NV; ++u) {  // V' = exp(lv + W + tau) over Vt (E's last read is above)
        const int idx = tid + u * NT, s = idx / DVP, j = idx % DVP;
        if (idx < CH * DVP) Vt[j * QLD + s] = (s < ns && j < DV) ? ex_cap(fmx(lvv[u], lo_v()) + Wj[j] + Tg[j]) : (ta)0;
    }
#endif
    __syncthreads();
    {  // dk = intra + B o (V U^T - Z)
        ta acc[RM][RI];
        zero_acc(acc);
        mm_acc<RM, RI, DVP>(acc, Vt, QLD, Ut, DKP, ty, tx);
#pragma unroll
        for (int ii = 0; ii < RM; ++ii) {
            const int s = ty * RM + ii;
            if (s >= ns) continue;
#pragma unroll
            for (int jj = 0; jj < RI; ++jj) {
                const int i = tx * RI + jj;
                if (i < DK)
                    st(dk + (bh * T + g0 + s) * DK + i, Wk[s * DKP + i] + Kt[i * QLD + s] * (acc[ii][jj] - Zs[i]));
            }
        }
    }
    {  // dv = P^T dO + B U (LOGV: d lv = E o (P^T G) + the flagged rows' + V' o (B U) e^-tau, B U e^-tau <= d_k)
        ta acc[RM][RN];
        zero_acc(acc);
        mm_acc<RM, RN, CH>(acc, Pm, QLD, Or, DVP, ty, tx);
#if LOGV
        ta bu[RM][RN];
        zero_acc(bu);
        mm_acc<RM, RN, DKP>(bu, Kt, QLD, Us, DVP, ty, tx);
#else
        mm_acc<RM, RN, DKP>(acc, Kt, QLD, Us, DVP, ty, tx);
#endif
#pragma unroll
        for (int ii = 0; ii < RM; ++ii) {
            const int s = ty * RM + ii;
            if (s >= ns) continue;
#pragma unroll
            for (int jj = 0; jj < RN; ++jj) {
                const int j = tx * RN + jj;
#if LOGV
                if (j < DV) {
                    const ta lv = fmx(lve[ii][jj], lo_v());
                    const ta e = lv > lo_v() / 2 ? fex(lv - Nn[j]) : (ta)0;
                    st(dv + (bh * T + g0 + s) * DV + j,
                       e * acc[ii][jj] + (anyf ? Ot[j * QLD + s] : (ta)0) + Vt[j * QLD + s] * (bu[ii][jj] * ex(-Tg[j])));
                }
#else
                if (j < DV) st(dv + (bh * T + g0 + s) * DV + j, acc[ii][jj]);
#endif
            }
        }
    }
}
