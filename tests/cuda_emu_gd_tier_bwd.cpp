// The CUDA sources of the two-tier scan's backward (K1-K4: gated_delta_tier3_bwd.cu, gated_delta_coarse_bwd.cu,
// gated_delta_tier1x_bwd.cu, gated_delta_tier1_bwd.cu) compiled as C++ for the CPU on the emulation of
// cuda_emu_gd_scan_bwd.cpp (which brings gd_scan's and gd_scan_bwd's); tests/test_cupy_gated_delta_tier_bwd.py builds
// it with -DKERNEL (gated_delta.cu + gated_delta_tier.cu + gated_delta_coarse.cu), -DBWD_KERNEL (gated_delta_bwd.cu +
// gated_delta_bwd_scan.cu) and -DTIER_BWD_KERNEL (the four files).
#include "cuda_emu_gd_scan_bwd.cpp"

#include TIER_BWD_KERNEL

// one launch of nblocks blocks running `body` (a kernel call) with smem bytes of dynamic shared memory (the kernel checks
// its layout against the host's Config.smem); every cp.async group waited for and committed
template <typename F>
void emu_run(unsigned nblocks, unsigned smem, F body) {
    emu_smem = smem;
    emu_launch(nblocks, 1, 1, [=] {
        body();
        for (const auto& grp : emu_groups)
            if (!grp.empty()) std::abort();  // copies never waited for
        if (!emu_open.empty()) std::abort();  // or never committed
    });
    emu_smem = sizeof(smem_raw);
}

// ---- K1 gd_tier3_bwd (s25a) ----
// gd_tier3_bwd's launch: nblocks ((nP - 1) BH NCB), NT threads, smem bytes; x1: gd_tier3_bwd_x1 (1xTF32)
extern "C" void run_tier3_bwd(const gd_e* qe, const gd_e* Qp, const ta* Sb, const ta* lam, const gd_do* dout, ta* dQp, ta* dSb,
                              ta* dlam, int T, int DK, int DV, int L, int n, int nP, int BH, int x1, unsigned nblocks,
                              unsigned smem) {
    emu_run(nblocks, smem, [=] {
        if (x1) gd_tier3_bwd_x1(qe, Qp, Sb, lam, dout, dQp, dSb, dlam, T, DK, DV, L, n, nP, BH);
        else gd_tier3_bwd(qe, Qp, Sb, lam, dout, dQp, dSb, dlam, T, DK, DV, L, n, nP, BH);
    });
}

// ---- K2 gd_coarse_bwd (s25a) ----
// gd_coarse_bwd's launch: nblocks (coarse_chains BH NCB), NT threads, smem bytes; x1: gd_coarse_bwd_x1 (1xTF32)
extern "C" void run_coarse_bwd(const ta* Z, const ta* Sb, const ta* dSb, ta* dZ, ta* dTot, int DK, int DV, int nP, int NCL,
                               int BH, int x1, unsigned nblocks, unsigned smem) {
    emu_run(nblocks, smem, [=] {
        if (x1) gd_coarse_bwd_x1(Z, Sb, dSb, dZ, dTot, DK, DV, nP, NCL, BH);
        else gd_coarse_bwd(Z, Sb, dSb, dZ, dTot, DK, DV, nP, NCL, BH);
    });
}

// ---- K3 gd_tier1x_bwd (s25b) ----
// gd_tier1x_bwd's launch (CupyOps.gd_tier1x_bwd): a 1-D grid of nblocks, smem bytes; st: dqe, dek, dph stored (s29a);
// x1: gd_tier1x_bwd_x1 (1xTF32)
extern "C" void run_tier1x_bwd(const gd_e* qe, const gd_e* ek, const gd_e* ph, const ta* gc, const ta* dQp, const ta* dZ,
                               ta* dqe, ta* dek, ta* dph, ta* dg, int T, int DK, int n, int nP, int BH, int st,
                               int x1, unsigned nblocks, unsigned smem) {
    emu_run(nblocks, smem, [=] {
        if (x1) gd_tier1x_bwd_x1(qe, ek, ph, gc, dQp, dZ, dqe, dek, dph, dg, T, DK, n, nP, BH, st);
        else gd_tier1x_bwd(qe, ek, ph, gc, dQp, dZ, dqe, dek, dph, dg, T, DK, n, nP, BH, st);
    });
}

// ---- K4 gd_tier1_bwd (s25c) ----
// gd_tier1_bwd's launch (CupyOps.gd_tier1_bwd): a 1-D grid of nblocks, smem bytes; x1: gd_tier1_bwd_x1 (1xTF32);
// -DGD_S16=1: qe, ek, ph, Hc as bfloat16 patterns (gd_e); -DGD_DO16=1 (K1 and K4): dout as bfloat16 patterns (gd_do)
extern "C" void run_tier1_bwd(const gd_e* qe, const gd_e* ek, const gd_e* ph, const gd_e* Hc, const ta* gc, const ta* lam,
                              const gd_do* dout, const ta* dTot, ta* dqe, ta* dek, ta* dph, ta* dH, ta* dg, ta* dlam, int T,
                              int DK, int DV, int L, int n, int nP, int BH, int x1, unsigned nblocks, unsigned smem) {
    emu_run(nblocks, smem, [=] {
        if (x1)
            gd_tier1_bwd_x1(qe, ek, ph, Hc, gc, lam, dout, dTot, dqe, dek, dph, dH, dg, dlam, T, DK, DV, L, n, nP, BH);
        else
            gd_tier1_bwd(qe, ek, ph, Hc, gc, lam, dout, dTot, dqe, dek, dph, dH, dg, dlam, T, DK, DV, L, n, nP, BH);
    });
}
