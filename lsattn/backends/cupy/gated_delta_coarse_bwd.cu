// K2 of the two-tier scan's backward (benchmarks/NOTES.md "Session 24 — s24c"; host: _compile.CupyOps.gd_coarse_bwd):
// the coarse slots' reverse chains, gd_coarse_bwd (3xTF32, float32 callers) and gd_coarse_bwd_x1 (1xTF32, bfloat16
// callers), one body gcb_body<X1>. Compiled after gated_delta.cu, gated_delta_tier.cu, gated_delta_coarse.cu (gd_copy,
// GdWarpTiles, gd_popsum, Sb's compact layout) and gated_delta_bwd.cu (gdb_fa, gdb_fb, gdb_mma).
//
// The forward (gd_coarse, per level cl and level period [b, b + 2^cl) with reads, mid = b + 2^(cl-1), end = min(b + 2^cl,
// nP)): the chain's state before period x, A(x), steps as A(x + 1) = Z_x A(x) + [x < mid] Tot_x (A(b) = 0; Z row-major
// as gd_tier1x stores it: A(x + 1)[kk] = sum_j Z_x[kk][j] A(x)[j]); S_cl(x) = A(x) held at x >= mid (Sb's entry popsum(x)
// + rank of bit cl - 1); at x < mid, A(x) is the sum of the lower levels' slots held at x (Sb's first popcount(x mod
// 2^(cl-1)) entries of x: the keys of [b, x) carried to x). Its backward, R(x) the adjoint of A(x + 1) (zero after the
// chain's last step, x = end - 1), x = end - 1 .. b:
//   dZ_x += R(x) A(x)^T,  dTot_x += R(x) (x < mid),  R(x - 1) = [x >= mid] dS_cl(x) + Z_x^T R(x)
// (the twin's coarse_bwd with grouped=False). One block per (level cl, level period, sequence, GCB_BW = 64 value
// columns), the longest chains first (gd_coarse's order); dZ (BH, nP, DK, DK) and dTot (BH, nP, DK, DV) atomicAdd
// (zeroed by the host: the levels' and column blocks' adds; float2 pairs where the row length is even). A step: one chained product (Z^T R, DK x DK x 64), one off
// the chain (dZ's, DK x 64 x DK) and its DK^2 atomics.
// Shared (Config.smem("gd_coarse_bwd")): Z_x [j][i] (row stride DKP + 8: Z^T's A fragments on 32 banks), two buffers of
// R [kk][col] (row stride GCB_BW + 8), A(x) [kk][col] (row stride GCB_BW + 4: A^T's B fragments on 32 banks) and
// GCB_NSA of its slots as copied.
constexpr int GCB_BW = 64, GCB_LZ = DKP + 8, GCB_LR = GCB_BW + 8, GCB_LA = GCB_BW + 4;
// A(x)'s first GCB_NSA slots are copied (cp.async) into shared memory during step x + 1, with Z_x (every held x's one
// slot, the first half's up to two: most steps' A(x) off the step's L2 round trips); the others loaded at step x (s25a:
// 0.94 / 0.95 / 0.93x of every slot loaded at its step, 8K / 16K / 32K). (Two blocks a SM, 128 registers: 1.09-1.33x,
// slower.)
constexpr int GCB_NSA = 2;
constexpr int GCB_SMEM = (DKP * GCB_LZ + 2 * DKP * GCB_LR + (1 + GCB_NSA) * DKP * GCB_LA) * (int)sizeof(ta);

template <bool X1>
__device__ __forceinline__ void gcb_body(const ta* __restrict__ Z, const ta* __restrict__ Sb, const ta* __restrict__ dSb,
                                         ta* __restrict__ dZ, ta* __restrict__ dTot, int DK, int DV, int nP, int NCL, int BH) {
    static_assert(GD_TC, "float32 compute only (float64 callers keep gd_scan_bwd)");
    extern __shared__ __align__(16) unsigned char smem_raw[];
    ta* Zs = reinterpret_cast<ta*>(smem_raw);  // [j][i] Z_x as stored
    ta* Rs = Zs + DKP * GCB_LZ;                // [buffer][kk][col] R(x)
    ta* As = Rs + 2 * DKP * GCB_LR;            // [kk][col] A(x)
    ta* St = As + DKP * GCB_LA;                // [slot][kk][col] A(x)'s first GCB_NSA slots, copied a step ahead
    check_smem(GCB_SMEM);
    using WR = GdWarpTiles<DKP / 16, GCB_BW>;  // R: DKP x GCB_BW (the chain's product)
    using WZ = GdWarpTiles<DKP / 16, DKP>;     // dZ: DKP x DKP
    constexpr int TR = WR::NTL, TZ = WZ::NTL, EPT = DKP * GCB_BW / NT;  // (A(x)'s elements a thread)
    const WR wr;
    const WZ wz;
    const int NCB = (DV + GCB_BW - 1) / GCB_BW, tid = threadIdx.x, K8 = (DK + 7) / 8 * 8;
    i64 r = blockIdx.x / ((i64)BH * NCB);
    int cl = NCL;
    for (; cl > 1; --cl) {  // level cl's periods with reads (base + 2^(cl-1) < nP), the top level's first
        const i64 cnt = ((nP - 1 - (1ll << (cl - 1))) >> cl) + 1;
        if (r < cnt) break;
        r -= cnt;
    }
    const i64 bh = blockIdx.x / NCB % BH, slot_sz = (i64)DK * DV, e0 = bh * gd_popsum(nP);
    const int c0 = (int)(blockIdx.x % NCB) * GCB_BW, nc = min(GCB_BW, DV - c0), NC8 = (nc + 7) / 8 * 8;
    const int b = (int)(r << cl), mid = b + (1 << (cl - 1)), end = min(nP, b + (1 << cl)), low = (1 << (cl - 1)) - 1;
    const bool vec = DK % (16 / (int)sizeof(ta)) == 0, vs = DV % (16 / (int)sizeof(ta)) == 0;
    // x's slot entries: level cl's (held, x >= mid) or the first popcount(x & low) (the lower levels': x < mid)
    auto entry = [&](int x) { return Sb + (e0 + gd_popsum(x) + (x >= mid ? __popcll(x & low) : 0)) * slot_sz + c0; };
    auto zmat = [&](int x) { return Z + (bh * nP + x) * DK * DK; };
    auto kslots = [&](int x) { return x >= mid ? 1 : (int)__popcll(x & low); };  // A(x)'s slots
    auto stage = [&](int x) {  // A(x)'s first GCB_NSA slots into St (issued; the caller commits)
        for (int m = 0; m < min(kslots(x), GCB_NSA); ++m)
            gd_copy<DKP, GCB_BW>(St + m * DKP * GCB_LA, GCB_LA, entry(x) + m * slot_sz, DV, DK, nc, vs);
    };
    // dS_cl(x)'s entries of the thread's R tiles (zero where x < mid)
    auto load_ds = [&](int x, float (&v)[TR][4]) {
        const ta* d = x >= mid ? dSb + (e0 + gd_popsum(x) + __popcll(x & low)) * slot_sz + c0 : nullptr;
#pragma unroll
        for (int i = 0; i < TR; ++i)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int kk = wr.row(e), cc = wr.col(i, e);
                v[i][e] = d && wr.on && kk < DK && cc < nc ? (float)d[(i64)kk * DV + cc] : 0.f;
            }
    };
    float R[TR][4], dsv[TR][4];  // R(x) of the thread's tiles (as in Rs), dS_cl(x - 1)'s
    // p[0], p[1] += v0, v1 (elements j, j + 1 < lim of a row; j even: one float2 add where two, p 8-byte aligned)
    auto add2 = [](ta* p, bool two, int j, int lim, float v0, float v1) {
        if (two && j + 1 < lim) {
            atomicAdd(reinterpret_cast<float2*>(p), float2{v0, v1});
        } else if (j < lim) {
            atomicAdd(p, (ta)v0);
            if (j + 1 < lim) atomicAdd(p + 1, (ta)v1);
        }
    };
    auto add_tot = [&](int x) {  // dTot_x += R(x) (x < mid)
        ta* t = dTot + (bh * nP + x) * slot_sz + c0;
#pragma unroll
        for (int i = 0; i < TR; ++i)
#pragma unroll
            for (int e = 0; e < 4; e += 2) {
                const int kk = wr.row(e), cc = wr.col(i, e);
                if (wr.on && kk < DK) add2(t + (i64)kk * DV + cc, DV % 2 == 0, cc, nc, R[i][e], R[i][e + 1]);
            }
    };
    load_ds(end - 1, R);         // R(end - 2) = dS_cl(end - 1): the chain's first step has no product
    if (end - 2 < b) return;     // (a chain of one period: nothing to add)
    int cur = 0;
#pragma unroll
    for (int i = 0; i < TR; ++i)
#pragma unroll
        for (int e = 0; e < 4; ++e)
            if (wr.on) Rs[wr.row(e) * GCB_LR + wr.col(i, e)] = R[i][e];
    if (end - 2 > b) gd_copy<DKP, DKP>(Zs, GCB_LZ, zmat(end - 2), DK, DK, DK, vec);
    stage(end - 2);
    cp_async_commit();
    load_ds(end - 2, dsv);
    for (int x = end - 2; x >= b; --x) {  // R = R(x), in Rs[cur] and the registers
        cp_async_wait<0>();
        __syncthreads();  // Z_x, A(x)'s staged slots, R(x) in place; As's and Rs[cur ^ 1]'s last readers done
        // A(x) into registers: the thread's elements (rows kk0 + e NT / GCB_BW, column cc) of the k slots, summed: the
        // staged ones, then the others (their loads issued two slots at a time)
        const int k = kslots(x);
        const int cc = tid % GCB_BW, kk0 = tid / GCB_BW;
        const ta* a0 = entry(x) + (i64)kk0 * DV + cc;
        float av[EPT];
#pragma unroll
        for (int e = 0; e < EPT; ++e) {
            const ta* st = St + (kk0 + e * (NT / GCB_BW)) * GCB_LA + cc;
            av[e] = (k > 0 ? (float)st[0] : 0.f) + (k > 1 ? (float)st[DKP * GCB_LA] : 0.f);  // (GCB_NSA = 2)
        }
        for (int m0 = GCB_NSA; m0 < k; m0 += 2) {
            float v[2][EPT];
#pragma unroll
            for (int u = 0; u < 2; ++u) {
                const ta* a = a0 + (m0 + u) * slot_sz;
#pragma unroll
                for (int e = 0; e < EPT; ++e)
                    v[u][e] = m0 + u < k && kk0 + e * (NT / GCB_BW) < DK && cc < nc ? (float)a[e * (NT / GCB_BW) * DV] : 0.f;
            }
#pragma unroll
            for (int e = 0; e < EPT; ++e) av[e] += v[0][e] + v[1][e];
        }
        // R(x - 1) = dS_cl(x) + Z_x^T R(x): A (i, j) = Z_x[j][i], B (j, col) = R[j][col]
        if (x > b) {
            float acc[TR][4] = {};
            const ta* Rc = Rs + cur * DKP * GCB_LR;
            if (wr.on)
                for (int k0 = 0; k0 < K8; k0 += 8) {
                    unsigned ah[4], al[4];
                    gdb_fa<X1>([&](int a, int kq) { return (float)Zs[(k0 + kq) * GCB_LZ + wr.r0 + a]; }, ah, al);
#pragma unroll
                    for (int i = 0; i < TR; ++i) {
                        unsigned bh_[2], bl[2];
                        gdb_fb<X1>([&](int kq, int n) { return (float)Rc[(k0 + kq) * GCB_LR + wr.n0 + 8 * i + n]; }, bh_, bl);
                        gdb_mma<X1>(acc[i], ah, al, bh_, bl);
                    }
                }
            ta* Rn = Rs + (cur ^ 1) * DKP * GCB_LR;
#pragma unroll
            for (int i = 0; i < TR; ++i)
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                    acc[i][e] += dsv[i][e];
                    if (wr.on) Rn[wr.row(e) * GCB_LR + wr.col(i, e)] = acc[i][e];
                }
            if (x < mid) add_tot(x);  // (before R becomes R(x - 1))
#pragma unroll
            for (int i = 0; i < TR; ++i)
#pragma unroll
                for (int e = 0; e < 4; ++e) R[i][e] = acc[i][e];
            if (x - 1 > b) load_ds(x - 1, dsv);
        } else {  // (x = b: the last step; b < mid always)
            add_tot(x);
        }
#pragma unroll
        for (int e = 0; e < EPT; ++e) As[(kk0 + e * (NT / GCB_BW)) * GCB_LA + cc] = av[e];
        __syncthreads();  // Z_x and St read (the next may land), A(x) in As, R(x - 1) in Rs[cur ^ 1]
        if (x - 1 > b) gd_copy<DKP, DKP>(Zs, GCB_LZ, zmat(x - 1), DK, DK, DK, vec);
        if (x - 1 >= b) stage(x - 1);  // (St's readers: before the barrier)
        cp_async_commit();
        // dZ_x += R(x) A(x)^T: A (kk, col) = R(x)[kk][col], B (col, j) = A(x)[j][col]; K = the block's columns
        if (k && wz.on) {
            const ta* Rc = Rs + cur * DKP * GCB_LR;
            float dz[TZ][4] = {};
            for (int k0 = 0; k0 < NC8; k0 += 8) {
                unsigned ah[4], al[4];
                gdb_fa<X1>([&](int a, int kq) { return (float)Rc[(wz.r0 + a) * GCB_LR + k0 + kq]; }, ah, al);
#pragma unroll
                for (int i = 0; i < TZ; ++i) {
                    unsigned bh_[2], bl[2];
                    gdb_fb<X1>([&](int kq, int n) { return (float)As[(wz.n0 + 8 * i + n) * GCB_LA + k0 + kq]; }, bh_, bl);
                    gdb_mma<X1>(dz[i], ah, al, bh_, bl);
                }
            }
            ta* d = dZ + (bh * nP + x) * DK * DK;
#pragma unroll
            for (int i = 0; i < TZ; ++i)
#pragma unroll
                for (int e = 0; e < 4; e += 2) {
                    const int kk = wz.row(e), j = wz.col(i, e);
                    if (kk < DK) add2(d + kk * DK + j, DK % 2 == 0, j, DK, dz[i][e], dz[i][e + 1]);
                }
        }
        cur ^= 1;
    }
    cp_async_wait<0>();
}
extern "C" __global__ void __launch_bounds__(NT, 1) gd_coarse_bwd(
    const ta* __restrict__ Z,    // (BH, nP, DK, DK) gd_tier1x's transfers (row-major, as gd_coarse reads them)
    const ta* __restrict__ Sb,   // (BH, popsum(nP), DK, DV) the coarse slots (complete)
    const ta* __restrict__ dSb,  // as Sb: gd_tier3_bwd's
    ta* __restrict__ dZ,         // (BH, nP, DK, DK) in: zeros
    ta* __restrict__ dTot,       // (BH, nP, DK, DV) in: zeros
    int DK, int DV, int nP, int NCL, int BH) {
    gcb_body<false>(Z, Sb, dSb, dZ, dTot, DK, DV, nP, NCL, BH);
}
extern "C" __global__ void __launch_bounds__(NT, 1) gd_coarse_bwd_x1(
    const ta* __restrict__ Z, const ta* __restrict__ Sb, const ta* __restrict__ dSb, ta* __restrict__ dZ,
    ta* __restrict__ dTot, int DK, int DV, int nP, int NCL, int BH) {
    gcb_body<true>(Z, Sb, dSb, dZ, dTot, DK, DV, nP, NCL, BH);
}
