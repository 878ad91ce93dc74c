// hierarchical exp-kernel attention's reads (hi_read), compiled after common.cu and hierarchical.cu (whose top
// comment describes all four kernels; hi_read uses its hi_mma3, hi_rows, hi_decays, hi_lse_add, hi_slot, hr_row,
// hr_col and tile constants). Host: hierarchical.py.

#if HI_RTC
// hi_lse_add where w may be 0 (then U and S stay as they are), without branches: for w > 0 the same values as
// hi_lse_add (fex(-|x - U|) is its fex(U - x) or fex(x - U), bit for bit)
__device__ __forceinline__ void hi_lse_addz(ta& U, ta& S, ta x, ta w) {
    const ta dx = x - U, e = fex(-fabs(dx));
    const bool up = dx > (ta)0, on = w > (ta)0;
    const ta s1 = up ? fma(S, e, w) : fma(w, e, S);
    S = on ? s1 : S;
    U = on && up ? x : U;
}
#endif

// hi_read: one block per (chunk F + j, HI_RW value columns (nrb blocks), sequence), in parallel: the reads of
// the slots held before the chunk, one at a time (hi_merge's slots, m from hi_snap's msnap), combined with
// hi_intra's partials. Each thread owns HI_RR HI_RC of the block's CH x HI_RW outputs (hr_row, hr_col).
// FFMA: num = E S as a register tile (HI_RR + 1 shared loads per HI_RR HI_RC FMAs). Tensor cores (HI_RTC):
// each warp its m-tile's rows alone (row maxima by shuffles, E made in the A fragments of hi_mma3, den
// beside it), the next slot's S, m, z, n copied asynchronously into the other of two buffers meanwhile:
// one barrier per slot; HI_RNT threads (4 CH), 512 / HI_RNT blocks per SM (<= 128 registers).
extern "C" __global__ void __launch_bounds__(HI_RNT, 512 / HI_RNT) hi_read(
    const ti* __restrict__ q, const ti* __restrict__ lam, const ti* __restrict__ a,  // as hi_intra
    const ta* __restrict__ lden,    // (BH, T)      hi_intra's
    const ta* __restrict__ lnum,    // (BH, T, DV)  hi_intra's
    const ta* __restrict__ msnap, const ta* __restrict__ wz, const ta* __restrict__ wn, const ta* __restrict__ wS,  // hi_snap's, hi_merge's
    ti* __restrict__ out,           // (BH, T, DV), or null (outf only)
    int T, int DK, int DV, int L, i64 p, i64 F, int n, int n_old, int NLC, ta alo, int ncb, int nrb,
    ta* __restrict__ ltot,          // (BH, T) the rows' log den, or null (packed streams' partials: loglinear_streams.cu)
    ta* __restrict__ outf) {        // (BH, T, DV) the output in the compute type too, or null (16-bit inputs under
                                    // autograd: the backward needs log y to float32 accuracy, the caller its dtype)
    extern __shared__ __align__(16) unsigned char smem_raw[];
    ta* b = reinterpret_cast<ta*>(smem_raw);
#if HI_RTC
    constexpr int NB = 2;             // buffers of the slot tiles
#else
    constexpr int NB = 1;
#endif
    ta* Ss = b; b += NB * DKP * HI_SLD;  // the slot's S, columns of the block (16-byte aligned rows)
    ta* Ms = b; b += NB * DKP;          // the slot's m (decayed to the chunk's start), z
    ta* Zs = b; b += NB * DKP;
    ta* Ns = b; b += NB * HI_RW;        // its column shifts
    ta* Qs = b; b += CH * HI_RKLD;       // the chunk's queries
    ta* Lam = b; b += CH * HI_LMAX;     // the rows' level weights (clamped)
    ta* ac = b; b += CH;                // decays, prefix sums from the chunk's first token of the call
    ta* pre = b; b += CH;
    ta* Ld = b; b += CH;                // log den of the rows
#if HI_RTC
    int* hs = reinterpret_cast<int*>(b); b += 2 * HI_HELD + 1;  // the held slots: (s2, id) pairs, their count
#else
    ta* E = b; b += CH * HI_RKLD;      // exp(q + m - r)
    ta* Rp = b; b += NT;              // partial row maxima, then partial den
    ta* Rr = b; b += CH;              // row shifts
    ta* Xw = b; b += CH;              // row log weights
#endif
    check_smem((unsigned)((b - reinterpret_cast<ta*>(smem_raw)) * sizeof(ta)));
    const int tid = threadIdx.x;
    const int j = blockIdx.x / nrb, cb = blockIdx.x % nrb;  // grid (n nrb, BH): any d_v
    const i64 bh = blockIdx.y;
    const int c0 = cb * HI_RW;  // the block's first value column
    const int LL = min(L, HI_LMAX);  // levels read (< num_levels(p + T) <= 63)
    const int NS = n_old + n, NSL = n_old + NLC;
    const ta* mj = msnap + (bh * n + j) * NSL * DK;
    const ta* zb = wz + (bh * ncb) * NS * DK;  // column block 0's copy (hi_merge's copies are equal)
    const ta* nb = wn + bh * NS * DV;
    const ta* Sb = wS + bh * NS * (i64)DK * DV;
    const i64 c = F + j, g0 = c * CH - p;
    const int t0 = (int)max((i64)0, -g0), t1 = (int)min((i64)CH, (i64)T - g0);
    // the block's first loads as batches in flight together (session 12: hi_read bf16 -10%): unconditional loads
    // of valid addresses (element 0 where out of range) and a select after, bf16 query rows 16 bytes at a time
    hi_rows(Qs, q + bh * T * DK, g0, T, DK, HI_RKLD, true, HI_RNT);
    {
        constexpr int NL = CH * HI_LMAX / HI_RNT;
        ta lw[NL];
#pragma unroll
        for (int u = 0; u < NL; ++u) {
            const int idx = tid + u * HI_RNT, t = idx / HI_LMAX, l = idx % HI_LMAX;
            const bool ok = t >= t0 && t < t1 && l < LL;
            lw[u] = ld(lam + (ok ? (bh * T + g0 + t) * L + l : (i64)0));
        }
#pragma unroll
        for (int u = 0; u < NL; ++u) {
            const int idx = tid + u * HI_RNT, t = idx / HI_LMAX, l = idx % HI_LMAX;
            Lam[idx] = (t >= t0 && t < t1 && l < LL) ? fmx(lw[u], lo_v()) : lo_v();
        }
    }
    ta U[HI_RR][HI_RC], Nm[HI_RR][HI_RC];  // running (shift, sum) of num
#pragma unroll
    for (int ii = 0; ii < HI_RR; ++ii)
#pragma unroll
        for (int jj = 0; jj < HI_RC; ++jj) {
            const int t = hr_row(ii, jj), vc = c0 + hr_col(ii, jj);
            const bool ok = t >= t0 && t < t1 && vc < DV;
            const ta x = lnum[ok ? (bh * T + g0 + t) * DV + vc : (i64)0];
            U[ii][jj] = ok ? x : neg_big();
            Nm[ii][jj] = (ta)1;
        }
#if HI_RTC
    if (tid == 0) {  // the held slots (s2 < n_old incoming slot s2, else chunk level s2 - n_old + 1)
        int nh = 0;
        for (int s2 = 0; s2 < NSL; ++s2) {
            const int id = s2 < n_old ? (((p >> s2) & 1) ? s2 : -1) : hi_slot(c, s2 - n_old + 1, F, n_old);
            if (id >= 0) {
                hs[2 * nh] = s2;
                hs[2 * nh + 1] = id;
                ++nh;
            }
        }
        hs[2 * HI_HELD] = nh;
    }
    __syncthreads();
    const int nh = hs[2 * HI_HELD];
    // slot h's S (the block's columns), m, z, n into buffer u, asynchronously (zeros outside DK x DV). 16-byte
    // pieces: the thread's rows i0 + x RI, columns v4 .. v4 + 3, their offsets made once (per slot only its base)
    constexpr int W = HI_RW / 4, RI = HI_RNT / W;
    static_assert(HI_RNT % W == 0 && DKP % RI == 0, "hi_read's 16-byte pieces");
    const int i0 = tid / W, v4 = 4 * (tid % W), so = i0 * DV + c0 + v4, sd = i0 * HI_SLD + v4;
    const bool vok = c0 + v4 < DV;
    auto issue = [&](int h, int u) {
        const int s2 = hs[2 * h], id = hs[2 * h + 1];
        ta* S_ = Ss + u * DKP * HI_SLD;
        if ((DV & 3) == 0) {
            const ta* src = Sb + (i64)id * DK * DV + so;
#pragma unroll
            for (int x = 0; x < DKP / RI; ++x) {
                const bool ok = vok && i0 + x * RI < DK;
                cp_async16(S_ + sd + x * RI * HI_SLD, ok ? (const void*)(src + (i64)x * RI * DV) : (const void*)Sb, ok);
            }
        } else {
            for (int idx = tid; idx < DKP * HI_RW; idx += HI_RNT) {
                const int i = idx / HI_RW, v2 = c0 + idx % HI_RW;
                const bool ok = i < DK && v2 < DV;
                cp_async_ta(S_ + i * HI_SLD + idx % HI_RW, ok ? Sb + ((i64)id * DK + i) * DV + v2 : Sb, ok);
            }
        }
        for (int i = tid; i < DKP; i += HI_RNT) {
            cp_async_ta(Ms + u * DKP + i, mj + (i < DK ? s2 * DK + i : 0), i < DK);
            cp_async_ta(Zs + u * DKP + i, zb + (i < DK ? id * DK + i : 0), i < DK);
        }
        for (int cc = tid; cc < HI_RW; cc += HI_RNT) cp_async_ta(Ns + u * HI_RW + cc, nb + (c0 + cc < DV ? id * DV + c0 + cc : 0), c0 + cc < DV);
        cp_async_commit();
    };
    if (nh > 0) issue(0, 0);
    hi_decays(ac, pre, a ? a + bh * T : nullptr, g0, T, alo);
    const int w = tid >> 5, lane = tid & 31, mt = w / HI_RWPM, wp = w % HI_RWPM;
    const int rA = 16 * mt + (lane >> 2), rB = rA + 8;  // the lane's rows (hr_row)
    const bool vA = rA >= t0 && rA < t1, vB = rB >= t0 && rB < t1;
    ta UdA = vA ? lden[bh * T + g0 + rA] : neg_big(), DdA = (ta)1;  // running (shift, sum) of den of the rows
    ta UdB = vB ? lden[bh * T + g0 + rB] : neg_big(), DdB = (ta)1;
    for (int h = 0; h < nh; ++h) {
        cp_async_wait_all();
        __syncthreads();  // slot h's tiles are in; every warp is done with slot h - 1's buffer
        if (h + 1 < nh) issue(h + 1, (h + 1) & 1);
        const int s2 = hs[2 * h];
        const ta* S_ = Ss + (h & 1) * DKP * HI_SLD;
        const ta* M_ = Ms + (h & 1) * DKP;
        const ta* Z_ = Zs + (h & 1) * DKP;
        const ta* N_ = Ns + (h & 1) * HI_RW;
        ta mA = neg_big(), mB = neg_big();  // row maxima of q + m over the lane's features, then the rows'
        for (int kb = 0; kb < DKP; kb += 16)
#pragma unroll
            for (int x = 0; x < 4; ++x) {
                const int i = kb + 2 * (lane & 3) + (x & 1) + 8 * (x >> 1);
                const ta ya = Qs[rA * HI_RKLD + i] + M_[i], yb = Qs[rB * HI_RKLD + i] + M_[i];
                mA = i < DK ? fmx(mA, ya) : mA;  // (selects: no branch per feature)
                mB = i < DK ? fmx(mB, yb) : mB;
            }
        mA = fmx(mA, __shfl_xor_sync(0xffffffffu, mA, 1));
        mA = fmx(mA, __shfl_xor_sync(0xffffffffu, mA, 2));
        mB = fmx(mB, __shfl_xor_sync(0xffffffffu, mB, 1));
        mB = fmx(mB, __shfl_xor_sync(0xffffffffu, mB, 2));
        float acc[HI_RNPW][4];  // num = E S, E = exp(q + m - r) <= 1 made as hi_mma3 reads it; den = e . z beside
#pragma unroll
        for (int u = 0; u < HI_RNPW; ++u) acc[u][0] = acc[u][1] = acc[u][2] = acc[u][3] = 0.f;
        ta dA = (ta)0, dB = (ta)0;
        hi_mma3<HI_RNPW>(acc, 16 * mt, 8 * wp * HI_RNPW, 0, DKP,
                        [&](int r, int kk) {
                            const bool up = r == rA;
                            const float2 qq = hi_row2(Qs, r * HI_RKLD + kk);
                            // made for the padded features too (Qs, M_ hold zeros there), then selected: no branch
                            const ta x0 = fex(qq.x + M_[kk] - (up ? mA : mB)), x1 = fex(qq.y + M_[kk + 1] - (up ? mA : mB));
                            const ta e0 = kk < DK ? x0 : (ta)0, e1 = kk + 1 < DK ? x1 : (ta)0;
                            (up ? dA : dB) += e0 * Z_[kk] + e1 * Z_[kk + 1];
                            return make_float2(e0, e1);
                        },
                        [&](int kk, int col) { return hi_col2(S_, kk * HI_SLD + col, HI_SLD); });
        dA += __shfl_xor_sync(0xffffffffu, dA, 1);
        dA += __shfl_xor_sync(0xffffffffu, dA, 2);
        dB += __shfl_xor_sync(0xffffffffu, dB, 1);
        dB += __shfl_xor_sync(0xffffffffu, dB, 2);
        const int lA = s2 < n_old ? max(s2 + 1, bitlen64(p ^ (c * CH + rA))) : HI_LOG2C + (s2 - n_old + 1);
        const int lB = s2 < n_old ? max(s2 + 1, bitlen64(p ^ (c * CH + rB))) : HI_LOG2C + (s2 - n_old + 1);
        const ta xA = mA + Lam[rA * HI_LMAX + lA] + pre[rA], xB = mB + Lam[rB * HI_LMAX + lB] + pre[rB];  // row log weights
#pragma unroll
        for (int ii = 0; ii < HI_RR; ++ii)
#pragma unroll
            for (int jj = 0; jj < HI_RC; ++jj) {  // (rows outside the call and columns >= DV: never written)
                const int e = ii * HI_RC + jj;
                hi_lse_addz(U[ii][jj], Nm[ii][jj], ((e & 3) >> 1 ? xB : xA) + N_[hr_col(ii, jj)], acc[e >> 2][e & 3]);
            }
        hi_lse_addz(UdA, DdA, xA, dA);
        hi_lse_addz(UdB, DdB, xB, dB);
    }
    if (wp == 0 && (lane & 3) == 0) {
        Ld[rA] = UdA + lg(DdA);
        Ld[rB] = UdB + lg(DdB);
    }
#else
    ta Ud = neg_big(), Dd = (ta)1;  // running (shift, sum) of den of row tid (tid < CH)
    if (tid < CH && tid >= t0 && tid < t1) Ud = lden[bh * T + g0 + tid];
    hi_decays(ac, pre, a ? a + bh * T : nullptr, g0, T, alo);
    for (int s2 = 0; s2 < NSL; ++s2) {  // the held slots (s2 < n_old incoming slot s2, else chunk level s2 - n_old + 1)
        const int id = s2 < n_old ? (((p >> s2) & 1) ? s2 : -1) : hi_slot(c, s2 - n_old + 1, F, n_old);
        if (id < 0) continue;  // uniform over the block
        for (int i = tid; i < DKP; i += NT) {
            Ms[i] = i < DK ? mj[s2 * DK + i] : neg_big();
            Zs[i] = i < DK ? zb[id * DK + i] : (ta)0;
        }
        for (int cc = tid; cc < HI_RW; cc += NT) Ns[cc] = c0 + cc < DV ? nb[id * DV + c0 + cc] : lo_v();
        staged<DKP * HI_RW, NT>(
            [&](int idx) {
                const int i = idx / HI_RW, v2 = c0 + idx % HI_RW;
                return (i < DK && v2 < DV) ? Sb[((i64)id * DK + i) * DV + v2] : (ta)0;
            },
            [&](int idx, ta x) { Ss[idx] = x; });
        __syncthreads();
        {  // partial row maxima of q + m
            const int t = tid / HI_P, part = tid % HI_P;
            ta mx = neg_big();
            for (int i = part; i < DK; i += HI_P) mx = fmx(mx, Qs[t * HI_RKLD + i] + Ms[i]);
            Rp[tid] = mx;
        }
        __syncthreads();
        for (int t = tid; t < CH; t += NT) {  // row shifts and row log weights
            ta r = Rp[t * HI_P];
            for (int u = 1; u < HI_P; ++u) r = fmx(r, Rp[t * HI_P + u]);
            Rr[t] = r;
            const int level = s2 < n_old ? max(s2 + 1, bitlen64(p ^ (c * CH + t))) : HI_LOG2C + (s2 - n_old + 1);
            Xw[t] = (t >= t0 && t < t1) ? r + Lam[t * HI_LMAX + level] + pre[t] : neg_big();
        }
        __syncthreads();
        for (int idx = tid; idx < CH * DKP; idx += NT) {
            const int t = idx / DKP, i = idx % DKP;
            E[t * HI_RKLD + i] = i < DK ? fex(Qs[t * HI_RKLD + i] + Ms[i] - Rr[t]) : (ta)0;
        }
        __syncthreads();
        {  // partial den: e . z
            const int t = tid / HI_P, part = tid % HI_P;
            ta x = (ta)0;
            for (int i = part; i < DK; i += HI_P) x = fma(E[t * HI_RKLD + i], Zs[i], x);
            Rp[tid] = x;
        }
        ta acc[HI_RR][HI_RC];  // num = E S
        const int tx = tid % 16, ty = tid / 16;
#pragma unroll
        for (int ii = 0; ii < HI_RR; ++ii)
#pragma unroll
            for (int jj = 0; jj < HI_RC; ++jj) acc[ii][jj] = (ta)0;
        for (int kk = 0; kk < DK; ++kk) {
            ta sv[HI_RC], ev[HI_RR];
#pragma unroll
            for (int jj = 0; jj < HI_RC; ++jj) sv[jj] = Ss[kk * HI_RW + tx * HI_RC + jj];
#pragma unroll
            for (int ii = 0; ii < HI_RR; ++ii) ev[ii] = E[(ty * HI_RR + ii) * HI_RKLD + kk];
#pragma unroll
            for (int ii = 0; ii < HI_RR; ++ii)
#pragma unroll
                for (int jj = 0; jj < HI_RC; ++jj) acc[ii][jj] = fma(ev[ii], sv[jj], acc[ii][jj]);
        }
#pragma unroll
        for (int ii = 0; ii < HI_RR; ++ii) {
#pragma unroll
            for (int jj = 0; jj < HI_RC; ++jj) {
                const int t = hr_row(ii, jj), cc = hr_col(ii, jj);
                if (t >= t0 && t < t1 && c0 + cc < DV && acc[ii][jj] > (ta)0)
                    hi_lse_add(U[ii][jj], Nm[ii][jj], Xw[t] + Ns[cc], acc[ii][jj]);
            }
        }
        __syncthreads();
        if (tid < CH && tid >= t0 && tid < t1) {
            ta den = (ta)0;
            for (int u = 0; u < HI_P; ++u) den += Rp[tid * HI_P + u];
            if (den > (ta)0) hi_lse_add(Ud, Dd, Xw[tid], den);
        }
        __syncthreads();  // the slot's tiles are read: the next one may be staged
    }
    if (tid < CH) Ld[tid] = Ud + lg(Dd);
#endif
    __syncthreads();
    if (ltot != nullptr && cb == 0)
        for (int t = t0 + tid; t < t1; t += HI_RNT) ltot[bh * T + g0 + t] = Ld[t];
#pragma unroll
    for (int ii = 0; ii < HI_RR; ++ii) {
#pragma unroll
        for (int jj = 0; jj < HI_RC; ++jj) {
            const int t = hr_row(ii, jj), vc = c0 + hr_col(ii, jj);
            if (t >= t0 && t < t1 && vc < DV) {
                const ta y = U[ii][jj] + lg(Nm[ii][jj]) - Ld[t];
                const ta yo = y > alo / 2 ? y : minus_inf();  // see "Zeros" above
                if (outf) outf[(bh * T + g0 + t) * DV + vc] = yo;
                if (out) st(out + (bh * T + g0 + t) * DV + vc, yo);
            }
        }
    }
}
