// Log-linear Gated DeltaNet: the chunk scan's backward kernels gd_scan_bwd (3xTF32 / FFMA) and gd_scan_bwd_x1
// (1xTF32), one body gdb_body (host: gated_delta_bwd.py). Compiled after common.cu, gated_delta.cu and
// gated_delta_bwd.cu (the formulas, the switches GDB_*, the shared layout, GdbTiles, the mma helpers, gd_held).
// (Split from gated_delta_bwd.cu in session 20, text unchanged.)

#define GDB_PARAMS                                                                                                     \
    const gd_e* __restrict__ qe,  /* (BH, n, CH, DK)  qeff (gd_e: bfloat16 in a GD_S16 build) */                       \
    const gd_e* __restrict__ ek,  /* (BH, n, CH, DK)  e^G K */                                                         \
    const gd_e* __restrict__ ph,  /* (BH, n, DK, CH)  phi */                                                           \
    const gd_e* __restrict__ Hc,  /* (BH, n, DK, DV)  H = phi V */                                                     \
    const ta* __restrict__ gc,    /* (BH, n)          chunk total log decay */                                         \
    const ta* __restrict__ lam,   /* (BH, T, L) */                                                                     \
    const ta* __restrict__ dout,  /* (BH, n, CH, DV)  gradient of the scan's output (chunked) */                       \
    const ta* __restrict__ oldc,  /* (BH, n_old, DK, DV) incoming slots */                                             \
    ta* __restrict__ sv,          /* (BH, n, NS, DK, DV) scratch: the slots before each chunk */                       \
    ta* __restrict__ dS,          /* (BH, NS, DK, DV) in: zeros; out: adjoints before the call */                      \
    ta* __restrict__ dqe,         /* (BH, n, CH, DK)  in: zeros (the column blocks add theirs) */                      \
    ta* __restrict__ dek,         /* (BH, n, CH, DK)  in: zeros */                                                     \
    ta* __restrict__ dph,         /* (BH, n, DK, CH)  in: zeros */                                                     \
    ta* __restrict__ dH,          /* (BH, n, DK, DV)  in: zeros */                                                     \
    ta* __restrict__ dg,          /* (BH, n)          in: zeros */                                                     \
    ta* __restrict__ dlam,        /* (BH, T, L)       in: zeros */                                                     \
    int T, int DK, int DV, int L, i64 p, i64 F, int n, int n_old, int NLC, int merge_last
#define GDB_ARGS qe, ek, ph, Hc, gc, lam, dout, oldc, sv, dS, dqe, dek, dph, dH, dg, dlam, T, DK, DV, L, p, F, n, n_old, NLC, merge_last

// The kernel's body (X1: 1xTF32 products, gd_scan_bwd_x1; the FFMA path ignores it)
template <bool X1>
__device__ __forceinline__ void gdb_body(GDB_PARAMS) {
    extern __shared__ __align__(16) unsigned char smem_raw[];
    ta* const tiles = reinterpret_cast<ta*>(smem_raw);  // GDB_NB sets of the chunk's tiles:
    ta* QeT = tiles;  // FFMA: Qe^T [kk][t]; TC: Qe [t][kk] (GDB_LQ)
    ta* EkT = QeT + (GDB_TC ? CH * GDB_LQ : DKP * CH);  // FFMA: Ek^T [kk][t]; TC: Ek [t][kk] (GDB_LQ)
    ta* PhT = EkT + (GDB_TC ? CH * GDB_LQ : DKP * CH);  // FFMA: phi [t][kk] in phase 1, [kk][t] in phase 2; TC: [kk][t] (GDB_LP)
    ta* const sets = tiles + GDB_NB * GDB_TW;  // GDB_NS2 sets of the slot buffers:
    ta *Sb, *dSb, *Wb, *dRb, *dWb;  // S, dS' [kk][col] (stride GDB_LS); W, dr, dW [t][col] (stride GDB_LW)
    auto slot_set = [&](int b) {
        Sb = sets + b * GDB_SET;
        dSb = Sb + DKP * GDB_LS;
        Wb = dSb + DKP * GDB_LS;
        dRb = Wb + CH * GDB_LW;
        dWb = dRb + CH * GDB_LW;
    };
    slot_set(0);
    int sbt = 0;  // GDB_NS2 = 2: the next slot step's set
    ta* red = sets + GDB_NS2 * GDB_SET;  // [NT]
    gd_e* const stage = reinterpret_cast<gd_e*>(sets);  // GD_H16: the chunk's tiles as stored (qe, ek [t][kk], ph [kk][t])
    check_smem(GDB_SMEM * sizeof(ta));
    constexpr int RA = CH / GDB_RG, RB = DKP / GDB_RG, E = CH * DKP / NT;
    constexpr int LOG2C = CH == 16 ? 4 : (CH == 32 ? 5 : 6);
    constexpr bool MG = GDB_MG && RB <= 4;  // (8 rows a thread at DKP = 128: more spills)
    const int tid = threadIdx.x, col = tid % GDB_BV, rg = tid / GDB_BV;
    const int ekk = tid % DKP, et0 = tid / DKP;  // FFMA: the outer products' column and first row (DKP divides NT)
    const int g8 = tid % 32 / 4, t4 = tid % 4;   // TC: the lane's rows and columns in mma's fragments
    const i64 bh = blockIdx.x;
    const int vc = blockIdx.y * GDB_BV + col;
    const bool cok = vc < DV;
    const int NS = n_old + NLC;
    const i64 slot_sz = (i64)DK * DV;
    const bool vec = DK % (16 / (int)sizeof(gd_e)) == 0;
    const ta* oldb = oldc + bh * n_old * slot_sz;
    ta* svb = sv + bh * n * NS * slot_sz;
    ta* dSh = dS + bh * NS * slot_sz;
    auto held = [&](i64 c, int s) { return s < n_old ? (((p >> s) & 1) != 0) : gd_held(c, s - n_old + 1, F); };
    // a slot's columns of this block, EPT values a thread, fetched into registers, then put into [kk][col] (stride
    // GDB_LS): with GDB_PF the next held slot's fetch is issued before the current slot's products (its latency
    // under them; the slots of one chunk are independent: slot s writes only its own adjoint)
    constexpr int EPT = DKP * GDB_BV / NT;
    auto fetch = [&](ta(&r)[EPT], const ta* src) {
#pragma unroll
        for (int e = 0; e < EPT; ++e) {
            const int idx = tid + e * NT, kk = idx / GDB_BV, vcc = blockIdx.y * GDB_BV + idx % GDB_BV;
            r[e] = (kk < DK && vcc < DV) ? src[(i64)kk * DV + vcc] : (ta)0;
        }
    };
    auto put = [&](ta* dst, const ta(&r)[EPT]) {
#pragma unroll
        for (int e = 0; e < EPT; ++e) dst[(tid + e * NT) / GDB_BV * GDB_LS + (tid + e * NT) % GDB_BV] = r[e];
    };
    auto next_held = [&](i64 c, int s) {  // the first slot >= s held before chunk c (NS: none)
        while (s < NS && !held(c, s)) ++s;
        return s;
    };
    // TC: chunk j's tiles as stored (Qe only in phase 2) into set j % GDB_NB, issued (cp.async) and committed; use()
    // points QeT, EkT, PhT at chunk j's set
    // (GD_H16: into the staging area, rows of DKP / CH elements; widened by prep_tiles)
    auto issue = [&](int j, bool with_qe) {
        const i64 cj = bh * n + j;
        gd_e* Q = GD_H16 ? stage : reinterpret_cast<gd_e*>(tiles + j % GDB_NB * GDB_TW);
        const int lq = GD_H16 ? DKP : GDB_LQ, lp = GD_H16 ? CH : GDB_LP;
        if (with_qe) gd_copy<CH, DKP>(Q, lq, qe + cj * CH * DK, DK, CH, DK, vec);
        gd_copy<CH, DKP>(Q + CH * lq, lq, ek + cj * CH * DK, DK, CH, DK, vec);
        gd_copy<DKP, CH>(Q + 2 * CH * lq, lp, ph + cj * DK * CH, CH, DK, CH, vec);
        cp_async_commit();
    };
    auto use = [&](int j) {
        QeT = tiles + j % GDB_NB * GDB_TW;
        EkT = QeT + CH * GDB_LQ;
        PhT = EkT + CH * GDB_LQ;
    };
    constexpr bool PR = X1 && GDB_PR && GDB_TC, RN = !PR;  // RN: the tiles, W, dr, dW rounded at their fragment loads
    auto wr = [](float x) { return PR ? gdb_round(x) : x; };  // a store of W, dr, dW
    // chunk j's tile set (between two barriers): PR, rounded in place; GD_H16, widened from the staging area (its qe tile
    // where with_qe), a pair of elements a thread and step
    auto prep_tiles = [&](int j, bool with_qe) {
        ta* Q = tiles + j % GDB_NB * GDB_TW;
        if constexpr (GD_H16) {
            constexpr int HQ = CH * DKP / 2;  // pairs a tile
            for (int e = with_qe ? tid : HQ + tid; e < 3 * HQ; e += NT) {
                const int f = 2 * (e % HQ), x = e / HQ;
                ta* d = x < 2 ? Q + x * CH * GDB_LQ + f / DKP * GDB_LQ + f % DKP : Q + 2 * CH * GDB_LQ + f / CH * GDB_LP + f % CH;
                ta x0, x1;
                gd_ld2(stage + 2 * e, x0, x1);  // (a pair widened: gated_delta.cu's loader)
                float2 w;
                w.x = (float)x0, w.y = (float)x1;
                *reinterpret_cast<float2*>(d) = w;
            }
        } else {
            for (int idx = tid; idx < GDB_TW; idx += NT) Q[idx] = gdb_round(Q[idx]);
        }
    };
    auto raw = [](const gd_e* x) { return reinterpret_cast<const ta*>(x); };  // (FFMA: float64, where gd_e is ta)
    constexpr int GG = GDB_TC && GDB_NS2 == 2 && CH * DKP <= 64 * 64 ? (X1 ? GDB_G : GDB_GF) : 1;  // slots per pass
    static_assert(GG == 1 || GG == 2, "GDB_G, GDB_GF: 1 or 2");
    // a pass's slots from s (ss[u]: NS where none) -> the next pass's first slot
    auto pass_slots = [&](i64 c, int s, int(&ss)[GG]) {
        ss[0] = s;
#pragma unroll
        for (int u = 1; u < GG; ++u) ss[u] = ss[u - 1] < NS ? next_held(c, ss[u - 1] + 1) : NS;
        return ss[GG - 1] < NS ? next_held(c, ss[GG - 1] + 1) : NS;
    };
    // the pass's slot u's buffers (GG = 1: the current set): S, dS' (stride GDB_LS), W, dr, dW (GDB_LW)
    auto setS = [&](int u) { return GG == 1 ? Sb : sets + u * GDB_SET; };
    auto setD = [&](int u) { return setS(u) + DKP * GDB_LS; };
    auto setW = [&](int u) { return setS(u) + 2 * DKP * GDB_LS; };
    auto setR = [&](int u) { return setW(u) + CH * GDB_LW; };
    auto setX = [&](int u) { return setW(u) + 2 * CH * GDB_LW; };  // dW
    using GTA = GdbTiles<CH / 16, 2>;         // TC: (r, W, dW), CH x GDB_BV
    using GTD = GdbTiles<DKP / 16, 2>;        // TC: dS (phase 2), S' (phase 1), DKP x GDB_BV
    using GTO = GdbTiles<CH / 16, DKP / 8>;   // TC: the outer products, CH x DKP ([t][kk])

    // ---- phase 1: the slots before every chunk (sv[j]) ----
    // (the incoming slots' rows kk = rg + GDB_RG i of column col: fetch's elements, so that the first chunk's fetch
    // reads this thread's own writes, before any barrier)
    for (int s = 0; s < n_old; ++s) {
        if (!((p >> s) & 1) || !cok) continue;
        for (int kk = rg; kk < DK; kk += GDB_RG)
            svb[(i64)s * slot_sz + (i64)kk * DV + vc] = oldb[(i64)s * slot_sz + (i64)kk * DV + vc];
    }
    if (GDB_TC && GDB_NB == 2 && n > 1) issue(0, false);
    static_assert(EPT == RB, "a thread's fetch rows are its merge rows");
    constexpr bool CB1 = (GDB_CB == 2 || (GDB_CB == 1 && !X1)) && GDB_TC && GDB_NB == 1 && MG && GDB_PF;
    ta rS[GG][EPT];
    int ss[GG], s = NS, sn = NS;
    if (CB1 && n > 1 && !(GDB_ABL & 2)) {  // chunk 0's tiles and first pass (CB1: the later chunks' before each merge)
        issue(0, false);
        s = next_held(F, 0), sn = pass_slots(F, s, ss);
#pragma unroll
        for (int u = 0; u < GG; ++u)
            if (ss[u] < NS) fetch(rS[u], svb + (i64)ss[u] * slot_sz);
    }
    for (int j = 0; j + 1 < (GDB_ABL & 2 ? 0 : n); ++j) {
        const i64 c = F + j, cj = bh * n + j;
        const ta* svj = svb + (i64)j * NS * slot_sz;
        if (!CB1) {
            if (GDB_TC && GDB_NB == 1) issue(j, false);
            // the first held slot fetched under the tile copies (written before the last barrier, or by this thread)
            s = next_held(c, 0), sn = pass_slots(c, s, ss);
#pragma unroll
            for (int u = 0; u < GG; ++u)
                if (GDB_PF && ss[u] < NS) fetch(rS[u], svj + (i64)ss[u] * slot_sz);
        }
        ta eg = CB1 ? ex(gc[cj]) : (ta)0;
        if constexpr (GDB_TC) cp_async_wait<0>();
        else gd_tiles(nullptr, EkT, PhT, nullptr, raw(ek + cj * CH * DK), raw(ph + cj * DK * CH), DK, tid, true);
        if (!CB1) eg = ex(gc[cj]);
        __syncthreads();
        if constexpr (GDB_TC) {  // the next chunk's tiles into the other set (its last readers: the chunk before)
            if (GDB_NB == 2 && j + 2 < n) issue(j + 1, false);
            use(j);
            if (PR || GD_H16) {
                prep_tiles(j, false);
                __syncthreads();
            }
        }
        while (s < NS) {
            int sx[GG];  // the next pass's slots
            const int snn = pass_slots(c, sn, sx);
#pragma unroll
            for (int u = 0; u < GG; ++u)
                if (!GDB_PF && ss[u] < NS) fetch(rS[u], svj + (i64)ss[u] * slot_sz);
            if (GDB_NS2 == 2 && GG == 1) slot_set(sbt), sbt ^= 1;
#pragma unroll
            for (int u = 0; u < GG; ++u)
                if (ss[u] < NS) put(setS(u), rS[u]);
            __syncthreads();
#pragma unroll
            for (int u = 0; u < GG; ++u)
                if (GDB_PF && sx[u] < NS) fetch(rS[u], svj + (i64)sx[u] * slot_sz);
            ta* S1 = svb + ((i64)(j + 1) * NS + s) * slot_sz;
            if constexpr (GDB_TC) {
                const GTA wa;
                if (wa.on) {  // W = Ek S
                    const int r0 = wa.r0(), n0 = wa.n0(0);
                    float acc[GG][4] = {};
#pragma unroll  // (over DKP: rows past DK are zero; unrolled, the next k-step's loads issue under this one's mma)
                    for (int k0 = 0; k0 < DKP; k0 += 8) {
                        unsigned ah[4], al[4];
                        gdb_fa<X1, RN>([&](int r, int k) { return (float)EkT[(r0 + r) * GDB_LQ + k0 + k]; }, ah, al);
#pragma unroll
                        for (int u = 0; u < GG; ++u) {
                            if (ss[u] == NS) continue;
                            unsigned bh_[2], bl[2];
                            const ta* Su = setS(u);
                            gdb_fb<X1>([&](int k, int m) { return (float)Su[(k0 + k) * GDB_LS + n0 + m]; }, bh_, bl);
                            gdb_mma<X1>(acc[u], ah, al, bh_, bl);
                        }
                    }
#pragma unroll
                    for (int u = 0; u < GG; ++u)
                        if (ss[u] < NS)
#pragma unroll
                            for (int x = 0; x < 4; ++x) setW(u)[(r0 + g8 + 8 * (x >> 1)) * GDB_LW + n0 + 2 * t4 + (x & 1)] = wr(acc[u][x]);
                }
                __syncthreads();
                const GTD wd;
                if (wd.on) {  // S' = e^g S - phi W
                    const int r0 = wd.r0();
                    float acc[GG][GTD::NTL][4] = {};
#pragma unroll
                    for (int k0 = 0; k0 < CH; k0 += 8) {
                        unsigned ah[4], al[4];
                        gdb_fa<X1, RN>([&](int r, int k) { return (float)PhT[(r0 + r) * GDB_LP + k0 + k]; }, ah, al);
#pragma unroll
                        for (int i = 0; i < GTD::NTL; ++i)
#pragma unroll
                            for (int u = 0; u < GG; ++u) {
                                if (ss[u] == NS) continue;
                                unsigned bh_[2], bl[2];
                                const int n0 = wd.n0(i);
                                const ta* Wu = setW(u);
                                gdb_fb<X1, RN>([&](int k, int m) { return (float)Wu[(k0 + k) * GDB_LW + n0 + m]; }, bh_, bl);
                                gdb_mma<X1>(acc[u][i], ah, al, bh_, bl);
                            }
                    }
#pragma unroll
                    for (int u = 0; u < GG; ++u) {
                        if (ss[u] == NS) continue;
                        ta* S1u = svb + ((i64)(j + 1) * NS + ss[u]) * slot_sz;
                        const ta* Su = setS(u);
#pragma unroll
                        for (int i = 0; i < GTD::NTL; ++i)
#pragma unroll
                            for (int x = 0; x < 4; ++x) {
                                const int kk = r0 + g8 + 8 * (x >> 1), cc = wd.n0(i) + 2 * t4 + (x & 1);
                                const int vcc = blockIdx.y * GDB_BV + cc;
                                if (kk < DK && vcc < DV) S1u[(i64)kk * DV + vcc] = eg * Su[kk * GDB_LS + cc] - (ta)acc[u][i][x];
                            }
                    }
                }
            } else {
                ta w[RA];
#pragma unroll
                for (int i = 0; i < RA; ++i) w[i] = (ta)0;
                for (int kk = 0; kk < DK; ++kk) {
                    const ta sv_ = Sb[kk * GDB_LS + col];
                    ta ea[RA];
                    ldv<RA>(EkT + kk * CH + rg * RA, ea);
#pragma unroll
                    for (int i = 0; i < RA; ++i) w[i] = fma(ea[i], sv_, w[i]);
                }
#pragma unroll
                for (int i = 0; i < RA; ++i) Wb[(rg * RA + i) * GDB_LW + col] = w[i];
                __syncthreads();
                ta x[RB];
#pragma unroll
                for (int i = 0; i < RB; ++i) x[i] = eg * Sb[(rg * RB + i) * GDB_LS + col];
                for (int t = 0; t < CH; ++t) {
                    const ta wv = Wb[t * GDB_LW + col];
                    ta pa[RB];
                    ldv<RB>(PhT + t * DKP + rg * RB, pa);
#pragma unroll
                    for (int i = 0; i < RB; ++i) x[i] = fma(-pa[i], wv, x[i]);
                }
#pragma unroll
                for (int i = 0; i < RB; ++i) {
                    const int kk = rg * RB + i;
                    if (kk < DK && cok) S1[(i64)kk * DV + vc] = x[i];
                }
            }
            if (GDB_NS2 == 1 || GG == 2) __syncthreads();  // (GG = 2: the next pass writes the same sets)
            s = sn, sn = snn;
#pragma unroll
            for (int u = 0; u < GG; ++u) ss[u] = sx[u];
        }
        if (GDB_NS2 == 2 && GG == 1) __syncthreads();  // the slots' S1 rows, read by other threads' merges
        // (c): every chunk but the last merges
        const int z = __ffsll((long long)(c + 1)) - 1;
        ta* S1 = svb + (i64)(j + 1) * NS * slot_sz;
        if (CB1) {  // the next chunk's tiles and first pass, then the merge (rows kk = rg + GDB_RG i: the fetch's)
            const bool nxt = j + 2 < n;
            if (nxt) {
                issue(j + 1, false);
                s = next_held(c + 1, 0), sn = pass_slots(c + 1, s, ss);
#pragma unroll
                for (int u = 0; u < GG; ++u)
                    if (ss[u] < NS && ss[u] != n_old + z) fetch(rS[u], S1 + (i64)ss[u] * slot_sz);
            }
            ta x[RB];
#pragma unroll
            for (int i = 0; i < RB; ++i) x[i] = cok && rg + GDB_RG * i < DK ? (ta)gd_wid(Hc[cj * slot_sz + (i64)(rg + GDB_RG * i) * DV + vc]) : (ta)0;
            for (int m = 1; m <= z; ++m)
                if (gd_held(c, m, F))
#pragma unroll
                    for (int i = 0; i < RB; ++i)
                        if (cok && rg + GDB_RG * i < DK) x[i] += S1[(i64)(n_old + m - 1) * slot_sz + (i64)(rg + GDB_RG * i) * DV + vc];
#pragma unroll
            for (int i = 0; i < RB; ++i)
                if (cok && rg + GDB_RG * i < DK) S1[(i64)(n_old + z) * slot_sz + (i64)(rg + GDB_RG * i) * DV + vc] = x[i];
            if (nxt)
#pragma unroll
                for (int u = 0; u < GG; ++u)
                    if (ss[u] == n_old + z)
#pragma unroll
                        for (int e = 0; e < EPT; ++e) rS[u][e] = x[e];
            continue;  // (no barrier: the next chunk's fetches are this thread's or before the passes' last barrier)
        }
        if (cok && MG) {
            ta x[RB];
#pragma unroll
            for (int i = 0; i < RB; ++i) x[i] = rg * RB + i < DK ? (ta)gd_wid(Hc[cj * slot_sz + (i64)(rg * RB + i) * DV + vc]) : (ta)0;
            for (int m = 1; m <= z; ++m)
                if (gd_held(c, m, F))
#pragma unroll
                    for (int i = 0; i < RB; ++i)
                        if (rg * RB + i < DK) x[i] += S1[(i64)(n_old + m - 1) * slot_sz + (i64)(rg * RB + i) * DV + vc];
#pragma unroll
            for (int i = 0; i < RB; ++i)
                if (rg * RB + i < DK) S1[(i64)(n_old + z) * slot_sz + (i64)(rg * RB + i) * DV + vc] = x[i];
        } else if (cok) {
            for (int kk = rg * RB; kk < min(DK, rg * RB + RB); ++kk) {
                ta x = (ta)gd_wid(Hc[cj * slot_sz + (i64)kk * DV + vc]);
                for (int m = 1; m <= z; ++m)
                    if (gd_held(c, m, F)) x += S1[(i64)(n_old + m - 1) * slot_sz + (i64)kk * DV + vc];
                S1[(i64)(n_old + z) * slot_sz + (i64)kk * DV + vc] = x;
            }
        }
        __syncthreads();
    }

    // ---- phase 2: the reverse scan ----
    constexpr bool CB2 = (GDB_CB == 2 || (GDB_CB == 1 && !X1)) && GDB_TC && MG && GDB_PF;
    constexpr bool LP = GDB_LA && GDB_TC, DS2 = GDB_DS2 && GDB_TC;
    if (GDB_TC && GDB_NB == 2) issue(n - 1, true);
    for (int j = n - 1; j >= 0; --j) {
        const i64 c = F + j, cj = bh * n + j;
        if (GDB_TC && GDB_NB == 1) issue(j, true);  // the tile copies under the merge's round trips
        ta rS[GG][EPT], rD[GG][EPT];
        const ta* svj = svb + (i64)j * NS * slot_sz;
        int ss[GG], s = next_held(c, 0), sn = pass_slots(c, s, ss);
        // CB2: the first pass's slots fetched before the merge's stores (the slots it sets: from its registers)
#pragma unroll
        for (int u = 0; u < GG; ++u)
            if (CB2 && ss[u] < NS) fetch(rS[u], svj + (i64)ss[u] * slot_sz), fetch(rD[u], dSh + (i64)ss[u] * slot_sz);
        // the read weight of row t at slot s1's level, the level
        auto lam_at = [&](int s1, int t, bool on, int& level, i64& gi) {
            const i64 tabs = c * CH + t;
            gi = tabs - p;
            level = s1 < n_old ? max(s1 + 1, bitlen64(p ^ tabs)) : LOG2C + s1 - n_old + 1;
            return on && gi >= 0 && gi < T;
        };
        ta lmq[GG][2];  // LP: the read weights of the next pass's rows ((r, W, dW)'s tile rows)
        auto lam_rows = [&](const int(&sl)[GG]) {
            const GTA wa;
#pragma unroll
            for (int u = 0; u < GG; ++u)
#pragma unroll
                for (int h = 0; h < 2; ++h) {
                    int lv;
                    i64 gi;
                    lmq[u][h] = lam_at(sl[u], wa.r0() + g8 + 8 * h, wa.on && sl[u] < NS, lv, gi) ? lam[(bh * T + gi) * L + lv] : (ta)0;
                }
        };
        ta dov[2][2];  // TC: dout at the lane's rows and columns of (r, W, dW)'s tile, the same for every slot
        auto load_dov = [&] {
            const GTA wa;
#pragma unroll
            for (int h = 0; h < 2; ++h)
#pragma unroll
                for (int e = 0; e < 2; ++e) {
                    const int t = wa.r0() + g8 + 8 * h, vcc = blockIdx.y * GDB_BV + wa.n0(0) + 2 * t4 + e;
                    const i64 gi = c * CH + t - p;
                    dov[h][e] = wa.on && gi >= 0 && gi < T && vcc < DV ? dout[(cj * CH + t) * DV + vcc] : (ta)0;
                }
        };
        ta eg = (ta)0;
        if (CB2) {
            eg = ex(gc[cj]);
            load_dov();
        }
        if (LP) lam_rows(ss);
        // reverse of (c), rows kk = rg + GDB_RG i of column col: fetch's elements (the first fetch below reads this
        // thread's own writes, before any barrier)
        if (j < n - 1 || merge_last) {
            const int z = __ffsll((long long)(c + 1)) - 1;
            if (cok && MG) {
                ta x[RB];
#pragma unroll
                for (int i = 0; i < RB; ++i) x[i] = rg + GDB_RG * i < DK ? dSh[(i64)(n_old + z) * slot_sz + (i64)(rg + GDB_RG * i) * DV + vc] : (ta)0;
#pragma unroll
                for (int i = 0; i < RB; ++i) {
                    const i64 o = (i64)(rg + GDB_RG * i) * DV + vc;
                    if (rg + GDB_RG * i >= DK) continue;
                    dH[cj * slot_sz + o] = x[i];
                    dSh[(i64)(n_old + z) * slot_sz + o] = (ta)0;
                    for (int m = 1; m <= z; ++m)
                        if (gd_held(c, m, F)) dSh[(i64)(n_old + m - 1) * slot_sz + o] = x[i];
                }
#pragma unroll
                for (int u = 0; u < GG; ++u)  // CB2: the held chunk-level slots m <= z now hold x
                    if (CB2 && ss[u] >= n_old && ss[u] < n_old + z)
#pragma unroll
                        for (int e = 0; e < EPT; ++e) rD[u][e] = x[e];
            } else if (cok) {
                for (int kk = rg; kk < DK; kk += GDB_RG) {
                    const i64 o = (i64)kk * DV + vc;
                    const ta x = dSh[(i64)(n_old + z) * slot_sz + o];
                    dH[cj * slot_sz + o] = x;
                    dSh[(i64)(n_old + z) * slot_sz + o] = (ta)0;
                    for (int m = 1; m <= z; ++m)
                        if (gd_held(c, m, F)) dSh[(i64)(n_old + m - 1) * slot_sz + o] = x;
                }
            }
        }
#pragma unroll
        for (int u = 0; u < GG; ++u)
            if (!CB2 && GDB_PF && ss[u] < NS) fetch(rS[u], svj + (i64)ss[u] * slot_sz), fetch(rD[u], dSh + (i64)ss[u] * slot_sz);
        if constexpr (GDB_TC) cp_async_wait<0>();
        else gd_tiles(QeT, EkT, PhT, raw(qe + cj * CH * DK), raw(ek + cj * CH * DK), raw(ph + cj * DK * CH), DK, tid, false);  // Ph as [kk][t]
        if (!CB2) eg = ex(gc[cj]);
        ta aq[E], ae[E], ap[E];  // FFMA: the outer products' elements
        float oq[GTO::NTL][4], oe[GTO::NTL][4], op[GTO::NTL][4];  // TC: their C fragments (op: W dS'^T, [t][kk])
#pragma unroll
        for (int e = 0; e < E; ++e) aq[e] = ae[e] = ap[e] = (ta)0;
#pragma unroll
        for (int i = 0; i < GTO::NTL; ++i)
#pragma unroll
            for (int x = 0; x < 4; ++x) oq[i][x] = oe[i][x] = op[i][x] = 0.f;
        ta dga = (ta)0;
        if (GDB_TC && !CB2) load_dov();
        __syncthreads();
        if constexpr (GDB_TC) {
            if (GDB_NB == 2 && j > 0) issue(j - 1, true);
            use(j);
            if (PR || GD_H16) {
                prep_tiles(j, true);
                __syncthreads();
            }
        }
        while (s < NS) {
            int sx[GG];  // the next pass's slots
            const int snn = pass_slots(c, sn, sx);
#pragma unroll
            for (int u = 0; u < GG; ++u)
                if (!GDB_PF && ss[u] < NS) fetch(rS[u], svj + (i64)ss[u] * slot_sz), fetch(rD[u], dSh + (i64)ss[u] * slot_sz);
            if (GDB_NS2 == 2 && GG == 1) slot_set(sbt), sbt ^= 1;
#pragma unroll
            for (int u = 0; u < GG; ++u)
                if (ss[u] < NS) put(setS(u), rS[u]), put(setD(u), rD[u]);
            __syncthreads();
#pragma unroll
            for (int u = 0; u < GG; ++u)
                if (GDB_PF && sx[u] < NS) fetch(rS[u], svj + (i64)sx[u] * slot_sz), fetch(rD[u], dSh + (i64)sx[u] * slot_sz);
            if constexpr (GDB_TC) {
                // r = Qe S, W = Ek S, dW = -Ph^T dS' (CH x GDB_BV); dr = lambda dout, dlambda
                const GTA wa;
                const int r0 = wa.r0(), n0 = wa.n0(0);
                float r[GG][4] = {}, w[GG][4] = {}, dw[GG][4] = {};
                // the rows' read weights at the slots' levels, loaded before the products (their latency under them)
                ta lm[GG][2];
                i64 gis[GG][2];
                int lvs[GG][2];
                bool oks[GG][2];
#pragma unroll
                for (int u = 0; u < GG; ++u)
#pragma unroll
                    for (int h = 0; h < 2; ++h) {
                        oks[u][h] = lam_at(ss[u], r0 + g8 + 8 * h, wa.on && ss[u] < NS, lvs[u][h], gis[u][h]);
                        lm[u][h] = LP ? lmq[u][h] : oks[u][h] ? lam[(bh * T + gis[u][h]) * L + lvs[u][h]] : (ta)0;
                    }
                if (LP) lam_rows(sx);  // the next pass's, under this one's products
                if (wa.on)
#pragma unroll
                    for (int k0 = 0; k0 < DKP; k0 += 8) {
                        unsigned qh[4], ql[4], eh[4], el[4], ph_[4], pl[4];
                        gdb_fa<X1, RN>([&](int rr, int k) { return (float)QeT[(r0 + rr) * GDB_LQ + k0 + k]; }, qh, ql);
                        gdb_fa<X1, RN>([&](int rr, int k) { return (float)EkT[(r0 + rr) * GDB_LQ + k0 + k]; }, eh, el);
                        gdb_fa<X1, RN>([&](int rr, int k) { return (float)PhT[(k0 + k) * GDB_LP + r0 + rr]; }, ph_, pl);
#pragma unroll
                        for (int u = 0; u < GG; ++u) {
                            if (ss[u] == NS) continue;
                            unsigned sh[2], sl[2], dh[2], dl[2];
                            const ta *Su = setS(u), *Du = setD(u);
                            gdb_fb<X1>([&](int k, int m) { return (float)Su[(k0 + k) * GDB_LS + n0 + m]; }, sh, sl);
                            gdb_fb<X1>([&](int k, int m) { return (float)Du[(k0 + k) * GDB_LS + n0 + m]; }, dh, dl);
                            gdb_mma<X1>(r[u], qh, ql, sh, sl);
                            gdb_mma<X1>(w[u], eh, el, sh, sl);
                            gdb_mma<X1>(dw[u], ph_, pl, dh, dl);
                        }
                    }
#pragma unroll
                for (int u = 0; u < GG; ++u) {
                    if (ss[u] == NS) continue;
                    ta *Wu = setW(u), *Ru = setR(u), *Xu = setX(u);
#pragma unroll
                    for (int h = 0; h < 2; ++h) {  // rows t = r0 + g8 + 8 h, columns n0 + 2 t4 + e
                        const int t = r0 + g8 + 8 * h;
                        ta contrib = (ta)0;
#pragma unroll
                        for (int e = 0; e < 2; ++e) {
                            const int cc = n0 + 2 * t4 + e;
                            const ta d_o = oks[u][h] ? dov[h][e] : (ta)0;
                            contrib += (ta)r[u][2 * h + e] * d_o;
                            if (wa.on) {
                                Wu[t * GDB_LW + cc] = wr(w[u][2 * h + e]);
                                Ru[t * GDB_LW + cc] = wr((float)(lm[u][h] * d_o));
                                Xu[t * GDB_LW + cc] = wr(-dw[u][2 * h + e]);
                            }
                        }
                        // the row's 8 columns of this tile (4 lanes); the other tile's warp adds its own
                        contrib += __shfl_xor_sync(0xffffffffu, contrib, 1, 4);
                        contrib += __shfl_xor_sync(0xffffffffu, contrib, 2, 4);
                        if (t4 == 0 && oks[u][h]) atomicAdd(dlam + (bh * T + gis[u][h]) * L + lvs[u][h], contrib);
                    }
                }
                __syncthreads();
                // the outer products dr S^T, dW S^T, W dS'^T (CH x DKP, K = GDB_BV), summed over the chunk's slots
                const GTO wo;
                if (wo.on) {
                    const int o0 = wo.r0();
#pragma unroll
                    for (int u = 0; u < GG; ++u) {
                        if (ss[u] == NS) continue;
                        const ta *Su = setS(u), *Du = setD(u), *Wu = setW(u), *Ru = setR(u), *Xu = setX(u);
#pragma unroll
                        for (int k0 = 0; k0 < GDB_BV; k0 += 8) {
                            unsigned rh[4], rl[4], wh[4], wl[4], xh[4], xl[4];
                            gdb_fa<X1, RN>([&](int rr, int k) { return (float)Ru[(o0 + rr) * GDB_LW + k0 + k]; }, rh, rl);
                            gdb_fa<X1, RN>([&](int rr, int k) { return (float)Xu[(o0 + rr) * GDB_LW + k0 + k]; }, wh, wl);
                            gdb_fa<X1, RN>([&](int rr, int k) { return (float)Wu[(o0 + rr) * GDB_LW + k0 + k]; }, xh, xl);
#pragma unroll
                            for (int i = 0; i < GTO::NTL; ++i) {
                                const int m0 = wo.n0(i);
                                unsigned sh[2], sl[2], dh[2], dl[2];
                                gdb_fb<X1>([&](int k, int m) { return (float)Su[(m0 + m) * GDB_LS + k0 + k]; }, sh, sl);
                                gdb_fb<X1>([&](int k, int m) { return (float)Du[(m0 + m) * GDB_LS + k0 + k]; }, dh, dl);
                                gdb_mma<X1>(oq[i], rh, rl, sh, sl);
                                gdb_mma<X1>(oe[i], wh, wl, sh, sl);
                                gdb_mma<X1>(op[i], xh, xl, dh, dl);
                            }
                        }
                    }
                }
                // dS = e^g dS' + Qe^T dr + Ek^T dW (DKP x GDB_BV, K = CH); dg's sum of dS' S
                const GTD wd;
                if (wd.on) {
                    const int d0 = wd.r0();
                    float acc[GG][GTD::NTL][4] = {}, acc2[DS2 ? GG : 1][GTD::NTL][4] = {};  // (DS2: Ek^T dW's)
#pragma unroll
                    for (int k0 = 0; k0 < CH; k0 += 8) {
                        unsigned qh[4], ql[4], eh[4], el[4];
                        gdb_fa<X1, RN>([&](int rr, int k) { return (float)QeT[(k0 + k) * GDB_LQ + d0 + rr]; }, qh, ql);
                        gdb_fa<X1, RN>([&](int rr, int k) { return (float)EkT[(k0 + k) * GDB_LQ + d0 + rr]; }, eh, el);
#pragma unroll
                        for (int i = 0; i < GTD::NTL; ++i)
#pragma unroll
                            for (int u = 0; u < GG; ++u) {
                                if (ss[u] == NS) continue;
                                const int m0 = wd.n0(i);
                                const ta *Ru = setR(u), *Xu = setX(u);
                                unsigned rh[2], rl[2], wh[2], wl[2];
                                gdb_fb<X1, RN>([&](int k, int m) { return (float)Ru[(k0 + k) * GDB_LW + m0 + m]; }, rh, rl);
                                gdb_fb<X1, RN>([&](int k, int m) { return (float)Xu[(k0 + k) * GDB_LW + m0 + m]; }, wh, wl);
                                gdb_mma<X1>(acc[u][i], qh, ql, rh, rl);
                                if constexpr (DS2) gdb_mma<X1>(acc2[u][i], eh, el, wh, wl);
                                else gdb_mma<X1>(acc[u][i], eh, el, wh, wl);
                            }
                    }
#pragma unroll
                    for (int u = 0; u < GG; ++u) {
                        if (ss[u] == NS) continue;
                        const ta *Su = setS(u), *Du = setD(u);
#pragma unroll
                        for (int i = 0; i < GTD::NTL; ++i)
#pragma unroll
                            for (int x = 0; x < 4; ++x) {
                                const int kk = d0 + g8 + 8 * (x >> 1), cc = wd.n0(i) + 2 * t4 + (x & 1);
                                const int vcc = blockIdx.y * GDB_BV + cc;
                                const ta ds = Du[kk * GDB_LS + cc];
                                dga = fma(Su[kk * GDB_LS + cc], ds, dga);
                                if (kk < DK && vcc < DV)
                                    dSh[(i64)ss[u] * slot_sz + (i64)kk * DV + vcc] =
                                        eg * ds + (ta)(DS2 ? acc[u][i][x] + acc2[DS2 ? u : 0][i][x] : acc[u][i][x]);
                            }
                    }
                }
            } else {
                // r = Qe S, W = Ek S, dW = -Ph^T dS' (rows t); dr, dlambda
                ta r[RA], w[RA], dw[RA];
#pragma unroll
                for (int i = 0; i < RA; ++i) r[i] = w[i] = dw[i] = (ta)0;
                for (int kk = 0; kk < DK; ++kk) {
                    const ta sv_ = Sb[kk * GDB_LS + col], ds = dSb[kk * GDB_LS + col];
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
                    int level;
                    i64 gi;
                    const bool ok = lam_at(s, t, true, level, gi);
                    const ta d_o = (ok && cok) ? dout[(cj * CH + t) * DV + vc] : (ta)0;
                    const ta lm = ok ? lam[(bh * T + gi) * L + level] : (ta)0;
                    ta contrib = r[i] * d_o;  // summed over the GDB_BV columns (lanes of one warp)
#pragma unroll
                    for (int off = GDB_BV / 2; off > 0; off /= 2) contrib += __shfl_xor_sync(0xffffffffu, contrib, off, GDB_BV);
                    if (col == 0 && ok) atomicAdd(dlam + (bh * T + gi) * L + level, contrib);
                    Wb[t * GDB_LW + col] = w[i];
                    dRb[t * GDB_LW + col] = lm * d_o;
                    dWb[t * GDB_LW + col] = dw[i];
                }
                __syncthreads();
                // the outer products, reduced over this block's columns (element e: row t = t0 + e NT / DKP, column kk)
#pragma unroll 4
                for (int cc = 0; cc < GDB_BV; ++cc) {
                    const ta sk = Sb[ekk * GDB_LS + cc], dsk = -dSb[ekk * GDB_LS + cc];
#pragma unroll
                    for (int e = 0; e < E; ++e) {
                        const int t = et0 + e * (NT / DKP);
                        aq[e] = fma(dRb[t * GDB_LW + cc], sk, aq[e]);
                        ae[e] = fma(dWb[t * GDB_LW + cc], sk, ae[e]);
                        ap[e] = fma(dsk, Wb[t * GDB_LW + cc], ap[e]);
                    }
                }
                // dS = e^g dS' + Qe^T dr + Ek^T dW (rows kk)
                ta x[RB];
#pragma unroll
                for (int i = 0; i < RB; ++i) {
                    const ta ds = dSb[(rg * RB + i) * GDB_LS + col];
                    dga = fma(Sb[(rg * RB + i) * GDB_LS + col], ds, dga);
                    x[i] = eg * ds;
                }
#pragma unroll 2
                for (int t0 = 0; t0 < CH; t0 += 4) {  // 4 rows t per step: vector loads of Qe^T, Ek^T along t
                    ta dr4[4], dw4[4];
#pragma unroll
                    for (int u = 0; u < 4; ++u) {
                        dr4[u] = dRb[(t0 + u) * GDB_LW + col];
                        dw4[u] = dWb[(t0 + u) * GDB_LW + col];
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
            }
            if (GDB_NS2 == 1 || GG == 2) __syncthreads();  // (GG = 2: the next pass writes the same sets)
            s = sn, sn = snn;
#pragma unroll
            for (int u = 0; u < GG; ++u) ss[u] = sx[u];
        }
        if constexpr (GDB_TC) {
            const GTO wo;
            if (wo.on && !(GDB_ABL & 1))
#pragma unroll
                for (int i = 0; i < GTO::NTL; ++i)
#pragma unroll
                    for (int x = 0; x < 4; ++x) {
                        const int t = wo.r0() + g8 + 8 * (x >> 1), kk = wo.n0(i) + 2 * t4 + (x & 1);
                        if (kk < DK) {
                            atomicAdd(dqe + (cj * CH + t) * DK + kk, (ta)oq[i][x]);
                            atomicAdd(dek + (cj * CH + t) * DK + kk, (ta)oe[i][x]);
                            atomicAdd(dph + (cj * DK + kk) * CH + t, -(ta)op[i][x]);
                        }
                    }
        } else {
#pragma unroll
            for (int e = 0; e < E; ++e) {
                const int t = et0 + e * (NT / DKP);
                if (ekk < DK) {
                    atomicAdd(dqe + (cj * CH + t) * DK + ekk, aq[e]);
                    atomicAdd(dek + (cj * CH + t) * DK + ekk, ae[e]);
                    atomicAdd(dph + (cj * DK + ekk) * CH + t, ap[e]);
                }
            }
        }
        // dg: the block's sum of dS' S, by the warps' lanes, then their 8 sums
#pragma unroll
        for (int off = 16; off > 0; off /= 2) dga += __shfl_xor_sync(0xffffffffu, dga, off, 32);
        if (tid % 32 == 0) red[tid / 32] = dga;
        __syncthreads();
        if (tid == 0) {
            ta sum = (ta)0;
            for (int w = 0; w < NT / 32; ++w) sum += red[w];
            atomicAdd(dg + cj, eg * sum);
        }
        __syncthreads();
    }
}

extern "C" __global__ void __launch_bounds__(NT) gd_scan_bwd(GDB_PARAMS) { gdb_body<false>(GDB_ARGS); }
extern "C" __global__ void __launch_bounds__(NT) gd_scan_bwd_x1(GDB_PARAMS) { gdb_body<true>(GDB_ARGS); }
