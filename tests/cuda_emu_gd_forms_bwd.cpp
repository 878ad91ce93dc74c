// The CUDA source of gd_forms_bwd (lsattn/backends/cupy/gated_delta_forms_bwd.cu) compiled as C++ for
// the CPU after the sources it follows on the GPU (gated_delta.cu, gated_delta_bwd(_scan).cu): the emulation of
// cuda_emu_gd_scan_bwd.cpp (a fiber per CUDA thread, __syncthreads a barrier, the warp
// shuffle through a block-wide buffer: gd_forms_bwd's solve calls it the same number of times in
// every thread) plus common.cu's zero_acc. tests/test_cupy_gated_delta_grad.py builds it with
//   g++ -std=c++20 -shared -fPIC -DTA=.. [-DTI_BF16=1] -DCH=.. -DDKP=.. -DKERNEL=.. -DBWD_KERNEL=.. -DFORMS_BWD_KERNEL='"<gated_delta_forms_bwd.cu>"'
#include "cuda_emu_gd_scan_bwd.cpp"
#include "cuda_emu_mm.h"

#include FORMS_BWD_KERNEL

// gd_forms_bwd's launch (x1: gd_forms_bwd_x1's): grid (n, BH), NT threads per block, smem bytes of dynamic shared memory
// (-DTI_BF16=1: the inputs and their gradients as bfloat16 patterns; dlw: null or the float gradient added into dlam).
extern "C" void run_forms_bwd(const ti* q, const ti* k, const ti* v, const ti* a, const ti* bt, const ti* lam,
                              const ta* dqe, const ta* dek, const ta* dph, const ta* dH, const ta* dg, const gd_do* dI,
                              ti* dq, ti* dk, ti* dv, ti* da, ti* dbeta, ti* dlam, const ta* dlw, int T, int DK, int DV,
                              int L, i64 p, i64 F, int n, int BH, unsigned smem, int x1, const ta* xin) {
    emu_smem = smem;  // the host's Config.smem("gd_forms_bwd"): check_smem aborts below the kernel's need
    emu_launch(n, BH, 1, [=] {
        (x1 ? gd_forms_bwd_x1 : gd_forms_bwd)(q, k, v, a, bt, lam, dqe, dek, dph, dH, dg, dI, dq, dk, dv, da, dbeta, dlam, dlw,
                                             T, DK, DV, L, p, F, n FB_XARG);  // (-DFB_XIN=1: xin, X from gd_forms; else unused)
    });
    emu_smem = sizeof(smem_raw);
}
