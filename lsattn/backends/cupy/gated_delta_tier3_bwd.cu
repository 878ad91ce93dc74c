// K1 of the two-tier scan's backward (benchmarks/NOTES.md "Session 24 — s24c"; host: _compile.CupyOps.gd_tier3_bwd):
// gd_tier3's backward, gd_tier3_bwd (3xTF32, float32 callers) and gd_tier3_bwd_x1 (1xTF32, bfloat16 callers), one
// body gt3b_body<X1>. Compiled after gated_delta.cu, gated_delta_tier.cu, gated_delta_coarse.cu (gd_copy, GdWarpTiles,
// gd_popsum, Sb's compact layout) and gated_delta_bwd.cu (gdb_fa, gdb_fb, gdb_mma: the X1 template's products).
//
// The forward (gd_tier3): out_t += sum_cl lam[t, LOG2C + TM + cl] Qp_t S_cl(pp) over the coarse slots S_cl(pp) held at
// period pp (level cl - 1 = a set bit of pp; Sb's entry popsum(pp) + the bit's rank), Qp_c the chunk's queries carried to
// its period's start (a period's first chunk: qe_c, GD_T1X0Q_SET). Its backward, per held slot S and chunk c of pp:
//   U = dout_c S^T (C x d_k, K = the block's value columns)
//   dlam[t, LOG2C + TM + cl] += rowdot(Qp_t, U_t)   (rows t < T)
//   dQp_c += lam U                                   (a period's first chunk's: qe's gradient from this read)
//   dS_cl(pp) += Qp_c^T (lam dout_c)                 (d_k x the block's columns)
// (the forward's r = Qp S not needed: dlam from U). Two products per (slot, chunk).
// Grid: one block per (period pp >= 1, sequence, GT3B_BW = 64 value columns) ((nP - 1) BH NCB; period 0 holds no slot:
// its dQp rows are zeros, the host's, or stored by period 1's block where NCB = 1). The period's chunks in groups of
// GT3B_R chunks (2 at d_k = C = 64: two blocks a SM) whose Qp (qe) and dout tiles stay in shared memory while the
// period's slots pass (the slot outer: S copied once a group, the next slot's copy during the current one's products);
// dQp's R chunks accumulate in registers over the slots.
// Writes: dSb (BH, popsum(nP), DK, DV) every entry of pp's slots, the block's columns (plain stores; R < 4: the later
// groups add to the first's, the same thread's entries); dQp (BH, n, CH, DK) stored whole where d_v has one column
// block (every row of periods >= 1, the padding rows past T and period 0's rows as zeros: the host's dQp need not be
// zeroed, TIER_BWD_STORES), else atomicAdd (the column blocks' partial sums; rows past T, period 0 untouched), and dlam
// (BH, T, L) atomicAdd (zeroed by the host); pairs of columns (float2) where d_k is even.
// Shared (Config.smem("gd_tier3_bwd")): Qp's R CH rows [t][kk] (gd_e, row stride GD_LDQE), dout's R CH rows [t][col]
// (row stride GT3B_LD), two buffers of a slot [kk][col] (row stride GT3B_LS: the transposed B reads of U on 32 banks)
// and of its R CH read weights.
constexpr int GT3B_BW = 64, GT3B_LD = GT3B_BW + 8, GT3B_LS = GT3B_BW + 8;
// GT3B_V2_SET (s26c; 0: session 25's form, for A/B timing): U's fragments as 8-byte loads, its reduction's k-steps
// permuted (the lane's k slots t, t + 4 read from the adjacent columns 2 t, 2 t + 1 of D's and S's rows: the same
// permutation on both sides leaves the sum; LD, LS = 8 mod 32 banks: a half-warp's 8-byte loads on 32 banks): A 2
// loads, B 1 a tile, where 4 and 2; and the later groups' dS (R < 4) loaded before the products, not after them.
#ifndef GT3B_V2_SET
#define GT3B_V2_SET 1
#endif
constexpr int gt3b_smem(int R) {
    return R * CH * GD_LDQE * GD_E2 + (R * CH * GT3B_LD + 2 * (DKP * GT3B_LS + R * CH)) * (int)sizeof(ta);
}
// R: the most (4 or 2) whose shared memory allows 2 blocks per SM (GT3B_SMAX2), else the most within one block's
// (s25a, H200, d = C = 64, S16 x1: R = 2 at 2 blocks a SM 0.94 / 0.91 / 0.89x of R = 4 at one, 8K / 16K / 32K;
// benchmarks/NOTES.md "Session 25 — s25a"); GT3B_R_SET (a test's or timing build's) sets it.
constexpr int GT3B_SMAX2 = 113 * 1024, GT3B_SMAX = 227 * 1024;
#ifdef GT3B_R_SET
constexpr int GT3B_R = GT3B_R_SET;
#else
constexpr int GT3B_R = gt3b_smem(GD_TP) <= GT3B_SMAX2 ? GD_TP : gt3b_smem(GD_TP / 2) <= GT3B_SMAX2 ? GD_TP / 2
                       : gt3b_smem(GD_TP) <= GT3B_SMAX ? GD_TP : gt3b_smem(GD_TP / 2) <= GT3B_SMAX ? GD_TP / 2 : 1;
#endif
constexpr int GT3B_MINB = gt3b_smem(GT3B_R) <= GT3B_SMAX2 ? 2 : 1;  // blocks per SM the registers must allow
// 1xTF32 (PR): operands stored as exact tf32 values loaded without a cvt (gd_scan_bwd's GDB_PR): dout's tiles rounded in
// place once a group (U's A, dS's B), Sb as the bfloat16 builds' forward stores it (GD_SBR: U's B), Qp / qe (GD_H16:
// bfloat16 widened); dS's read weights on its A side (lam Qp, rounded at the load: 4 of a k-step's operands, not the B
// side's 2 NTL) (s25a: 0.92 / 0.88 / 0.88x of the form rounding every fragment load, the weights on dS's B side).
constexpr int GT3B_SMEM = gt3b_smem(GT3B_R);
static_assert(GT3B_R * CH <= NT, "a thread per row for the read weights");

template <bool X1>
__device__ __forceinline__ void gt3b_body(const gd_e* __restrict__ qe, const gd_e* __restrict__ Qp, const ta* __restrict__ Sb,
                                          const ta* __restrict__ lam, const gd_do* __restrict__ dout, ta* __restrict__ dQp,
                                          ta* __restrict__ dSb, ta* __restrict__ dlam, int T, int DK, int DV, int L, int n,
                                          int nP, int BH) {
    static_assert(GD_TC, "float32 compute only (float64 callers keep gd_scan_bwd)");
    extern __shared__ __align__(16) unsigned char smem_raw[];
    constexpr int R = GT3B_R, RR = R * CH, SS = DKP * GT3B_LS;
    gd_e* Qs = reinterpret_cast<gd_e*>(smem_raw);        // [t][kk] the group's chunks' Qp rows
    ta* Ds = reinterpret_cast<ta*>(Qs + RR * GD_LDQE);   // [t][col] their dout rows (zero past T)
    ta* Ss = Ds + RR * GT3B_LD;                          // [buffer][kk][col]
    ta* lw = Ss + 2 * SS;                                // [buffer][t] the slot's read weights (zero past T)
    check_smem(GT3B_SMEM);
    constexpr bool PR = X1;  // (RN below: an operand rounded at its fragment loads)
    using WA = GdWarpTiles<CH / 16, DKP>;      // U: CH x DKP
    using WB = GdWarpTiles<DKP / 16, GT3B_BW>;  // dS: DKP x GT3B_BW
    constexpr int TWA = WA::NTL, TWB = WB::NTL;
    const WA wa;
    const WB wb;
    const int NCB = (DV + GT3B_BW - 1) / GT3B_BW, tid = threadIdx.x, t4 = tid % 4;
    const int pp = 1 + (int)(blockIdx.x / ((i64)BH * NCB)), c0 = (int)(blockIdx.x % NCB) * GT3B_BW;
    const i64 bh = blockIdx.x / NCB % BH, slot_sz = (i64)DK * DV;
    const int nc = min(GT3B_BW, DV - c0), K8 = (nc + 7) / 8 * 8;  // the block's columns (U's reduction)
    const int f0 = pp * GD_TP, ncv = min(GD_TP, n - f0), NG = (ncv + R - 1) / R, ns = __popcll(pp), NI = NG * ns;
    const bool vq = DK % (16 / GD_E2) == 0, vs = DV % (16 / (int)sizeof(ta)) == 0;
    const i64 e0 = bh * gd_popsum(nP) + gd_popsum(pp);  // the period's slots, in its bits' order
    auto level = [&](int s) {  // the rank-s set bit of pp (0-based: the level's bit)
        long long b = pp;
        for (int k = 0; k < s; ++k) b &= b - 1;
        return __ffsll(b) - 1;
    };
    auto load = [&](int j) {  // item j = (group j / ns, slot j % ns) into buffer j & 1: the slot and its read weights
        const int s = j % ns, g = j / ns;
        gd_copy<DKP, GT3B_BW>(Ss + (j & 1) * SS, GT3B_LS, Sb + (e0 + s) * slot_sz + c0, DV, DK, nc, vs);
        if (tid < RR) {
            const i64 gi = (i64)(f0 + g * R) * CH + tid;
            const ta* src = lam + (bh * T + gi) * L + GD_LOG2C + GD_TM + level(s) + 1;
            cp_async_ta(lw + (j & 1) * RR + tid, gi < T ? src : lam, gi < T);
        }
    };
    float dq[R][TWA][4] = {};  // dQp of the group's chunks, the warp's U tiles
    load(0);
    cp_async_commit();
    if (pp == 1 && NCB == 1)  // (one column block) period 0's dQp rows, which no block sums into: their zeros
        for (i64 idx = tid; idx < (i64)GD_TP * CH * DK; idx += NT) dQp[bh * n * CH * DK + idx] = (ta)0;
    for (int j = 0; j < NI; ++j) {
        const int s = j % ns, g = j / ns;
        if (s == 0)  // the group's tiles (the previous group's readers passed the last barrier)
#pragma unroll
            for (int r = 0; r < R; ++r) {
                const int c = f0 + g * R + r;
                const int vr = c < n ? (int)max((i64)0, min((i64)CH, (i64)T - (i64)c * CH)) : 0;
                const i64 cj = bh * n + min(c, n - 1);
                const gd_e* q = GD_T1X0Q_SET && !(c & (GD_TP - 1)) ? qe : Qp;  // (a period's first chunk: qe)
                gd_copy<CH, DKP>(Qs + r * CH * GD_LDQE, GD_LDQE, q + cj * CH * DK, DK, c < n ? CH : 0, DK, vq);
                gd_copy<CH, GT3B_BW>(Ds + r * CH * GT3B_LD, GT3B_LD, dout + cj * CH * DV + c0, DV, vr, nc, vs);
            }
        cp_async_commit();
        if (j + 1 < NI) load(j + 1);  // buffer (j + 1) & 1: its last readers passed the previous barrier
        cp_async_commit();
        cp_async_wait<1>();
        __syncthreads();  // the tiles, slot j and its weights in place
        if (PR && !GD_DO16 && s == 0) {  // (block-uniform) the group's dout rounded to tf32 in place (GD_DO16: bf16 values, tf32 already)
            for (int idx = tid; idx < RR * GT3B_BW; idx += NT) {
                ta* e = Ds + idx / GT3B_BW * GT3B_LD + idx % GT3B_BW;
                *e = gdb_round(*e);
            }
            __syncthreads();
        }
        const ta* S = Ss + (j & 1) * SS;
        const ta* w = lw + (j & 1) * RR;
        const int lcol = GD_LOG2C + GD_TM + level(s) + 1;
        float ds[TWB][4] = {};
        if (GT3B_V2_SET && g && wb.on) {  // (R < 4) the earlier groups' dS_cl(pp), added to
            const ta* d = dSb + (e0 + s) * slot_sz + c0;
#pragma unroll
            for (int i = 0; i < TWB; ++i)
#pragma unroll
                for (int x = 0; x < 4; ++x) {
                    const int kk = wb.row(x), cc = wb.col(i, x);
                    if (kk < DK && cc < nc) ds[i][x] = (float)d[(i64)kk * DV + cc];
                }
        }
#pragma unroll
        for (int r = 0; r < R; ++r) {
            const int c = f0 + g * R + r;
            if (g * R + r >= ncv) break;  // (block-uniform)
            const gd_e* Q = Qs + r * CH * GD_LDQE;
            const ta* D = Ds + r * CH * GT3B_LD;
            // U = dout S^T: A (t, col) = D[t][col], B (col, kk) = S[kk][col]
            float u[TWA][4] = {};
            if (GT3B_V2_SET && wa.on) {
                // (tf32 operands: 1xTF32 hi (RN: rounded here), 3xTF32 hi / lo)
                auto op = [&](float v, bool rn, unsigned& h, unsigned& l) {
                    if (X1) h = rn ? to_tf32(v) : __float_as_uint(v), l = 0u;
                    else tf32_split(v, h, l);
                };
                const int g8 = tid % 32 / 4;
                for (int k0 = 0; k0 < K8; k0 += 8) {
                    unsigned ah[4], al[4];
#pragma unroll
                    for (int h = 0; h < 2; ++h) {  // rows g8 + 8 h: k slots t4 (x = h), t4 + 4 (x = h + 2)
                        const float2 a = *reinterpret_cast<const float2*>(D + (wa.r0 + g8 + 8 * h) * GT3B_LD + k0 + 2 * t4);
                        op(a.x, !PR, ah[h], al[h]);
                        op(a.y, !PR, ah[h + 2], al[h + 2]);
                    }
#pragma unroll
                    for (int i = 0; i < TWA; ++i) {
                        unsigned bh_[2], bl[2];
                        const float2 b = *reinterpret_cast<const float2*>(S + (wa.n0 + 8 * i + g8) * GT3B_LS + k0 + 2 * t4);
                        op(b.x, !(PR && GD_SBR), bh_[0], bl[0]);
                        op(b.y, !(PR && GD_SBR), bh_[1], bl[1]);
                        gdb_mma<X1>(u[i], ah, al, bh_, bl);
                    }
                }
            } else if (wa.on)
                for (int k0 = 0; k0 < K8; k0 += 8) {
                    unsigned ah[4], al[4];
                    gdb_fa<X1, !PR>([&](int a, int k) { return (float)D[(wa.r0 + a) * GT3B_LD + k0 + k]; }, ah, al);
#pragma unroll
                    for (int i = 0; i < TWA; ++i) {
                        unsigned bh_[2], bl[2];
                        gdb_fb<X1, !(PR && GD_SBR)>([&](int k, int b) { return (float)S[(wa.n0 + 8 * i + b) * GT3B_LS + k0 + k]; },
                                                    bh_, bl);
                        gdb_mma<X1>(u[i], ah, al, bh_, bl);
                    }
                }
            // dlam[t] += rowdot(Qp_t, U_t) (the thread's rows wa.row(0), wa.row(2); the quad's sum), dQp += lam U
            float part[2] = {0.f, 0.f};
            if (wa.on)
#pragma unroll
                for (int i = 0; i < TWA; ++i)
#pragma unroll
                    for (int x = 0; x < 4; ++x) {
                        const int t = wa.row(x);
                        part[x >> 1] += (float)gd_wid(Q[t * GD_LDQE + wa.col(i, x)]) * u[i][x];
                        dq[r][i][x] += (float)w[r * CH + t] * u[i][x];
                    }
#pragma unroll
            for (int h = 0; h < 2; ++h) {  // (every thread: the emulation's shuffles are block-wide)
                part[h] += __shfl_xor_sync(0xffffffffu, part[h], 1, 4);
                part[h] += __shfl_xor_sync(0xffffffffu, part[h], 2, 4);
            }
            if (wa.on && t4 == 0)
#pragma unroll
                for (int h = 0; h < 2; ++h) {
                    const i64 gi = (i64)c * CH + wa.row(2 * h);
                    if (gi < T) atomicAdd(dlam + (bh * T + gi) * L + lcol, (ta)part[h]);
                }
            // dS += Qp^T (lam dout): A (kk, t) = Q[t][kk] (PR: w[t] Q[t][kk]), B (t, col) = D[t][col] (PR; else w[t] D[t][col])
            if (wb.on)
                for (int k0 = 0; k0 < CH; k0 += 8) {
                    unsigned ah[4], al[4];
                    gdb_fa<X1, PR || !GD_H16>([&](int a, int k) {
                        const float q = (float)gd_wid(Q[(k0 + k) * GD_LDQE + wb.r0 + a]);
                        return PR ? (float)w[r * CH + k0 + k] * q : q;
                    }, ah, al);
#pragma unroll
                    for (int i = 0; i < TWB; ++i) {
                        unsigned bh_[2], bl[2];
                        gdb_fb<X1, !PR>([&](int k, int b) {
                            const float d = (float)D[(k0 + k) * GT3B_LD + wb.n0 + 8 * i + b];
                            return PR ? d : (float)w[r * CH + k0 + k] * d;
                        }, bh_, bl);
                        gdb_mma<X1>(ds[i], ah, al, bh_, bl);
                    }
                }
        }
        if (wb.on) {  // dS_cl(pp)'s columns: the first group stores, later ones add (the same thread's entries)
            ta* d = dSb + (e0 + s) * slot_sz + c0;
#pragma unroll
            for (int i = 0; i < TWB; ++i)
#pragma unroll
                for (int x = 0; x < 4; ++x) {
                    const int kk = wb.row(x), cc = wb.col(i, x);
                    if (kk < DK && cc < nc)
                        d[(i64)kk * DV + cc] = (GT3B_V2_SET || !g ? (ta)0 : d[(i64)kk * DV + cc]) + (ta)ds[i][x];
                }
        }
        if (s == ns - 1 && wa.on) {  // the group's dQp: stored (one column block: the only writer), else added
#pragma unroll
            for (int r = 0; r < R; ++r) {
                const int c = f0 + g * R + r;
#pragma unroll
                for (int i = 0; i < TWA; ++i)
#pragma unroll
                    for (int x = 0; x < 4; x += 2) {  // (columns kk, kk + 1 of row t: a pair)
                        const int t = wa.row(x), kk = wa.col(i, x);
                        const bool past = (i64)c * CH + t >= T;  // (a padding row: stored as its zero where NCB = 1)
                        const float v0 = past ? 0.f : dq[r][i][x], v1 = past ? 0.f : dq[r][i][x + 1];
                        dq[r][i][x] = dq[r][i][x + 1] = 0.f;
                        if (c >= n || kk >= DK || (past && NCB > 1)) continue;
                        ta* q = dQp + ((bh * n + c) * CH + t) * DK + kk;
                        if (DK % 2 == 0 && NCB == 1) *reinterpret_cast<gd_pair*>(q) = gd_pair{v0, v1};
                        else if (DK % 2 == 0) atomicAdd(reinterpret_cast<float2*>(q), float2{v0, v1});
                        else
#pragma unroll
                            for (int h = 0; h < 2; ++h) {  // (d_k odd: an element at a time)
                                if (kk + h >= DK) break;
                                if (NCB == 1) q[h] = h ? v1 : v0;
                                else atomicAdd(q + h, (ta)(h ? v1 : v0));
                            }
                    }
            }
        }
        __syncthreads();  // item j's buffers read: the copies of item j + 2 and the next group's tiles may overwrite them
    }
    cp_async_wait<0>();
}
extern "C" __global__ void __launch_bounds__(NT, GT3B_MINB) gd_tier3_bwd(
    const gd_e* __restrict__ qe,  // (BH, n, CH, DK) gd_forms': a period's first chunk's Qp
    const gd_e* __restrict__ Qp,  // (BH, n, CH, DK) gd_tier1x's (rows of a period's first chunk unread)
    const ta* __restrict__ Sb,    // (BH, popsum(nP), DK, DV) the coarse slots (complete: gd_coarse / gd_cfill)
    const ta* __restrict__ lam,   // (BH, T, L)
    const gd_do* __restrict__ dout,  // (BH, n, CH, DV) the scan output's gradient (GD_DO16: bfloat16)
    ta* __restrict__ dQp,         // (BH, n, CH, DK) in: zeros where d_v > 64 (else anything: stored whole)
    ta* __restrict__ dSb,         // as Sb, out (every entry of periods >= 1)
    ta* __restrict__ dlam,        // (BH, T, L) in: zeros (or others' adds)
    int T, int DK, int DV, int L, int n, int nP, int BH) {
    gt3b_body<false>(qe, Qp, Sb, lam, dout, dQp, dSb, dlam, T, DK, DV, L, n, nP, BH);
}
extern "C" __global__ void __launch_bounds__(NT, GT3B_MINB) gd_tier3_bwd_x1(
    const gd_e* __restrict__ qe, const gd_e* __restrict__ Qp, const ta* __restrict__ Sb, const ta* __restrict__ lam,
    const gd_do* __restrict__ dout, ta* __restrict__ dQp, ta* __restrict__ dSb, ta* __restrict__ dlam, int T, int DK, int DV,
    int L, int n, int nP, int BH) {
    gt3b_body<true>(qe, Qp, Sb, lam, dout, dQp, dSb, dlam, T, DK, DV, L, n, nP, BH);
}
