// The CUDA sources of the two-tier scan's backward (K1-K4: gated_delta_tier3_bwd.cu, gated_delta_coarse_bwd.cu,
// gated_delta_tier1x_bwd.cu, gated_delta_tier1_bwd.cu) compiled as C++ for the CPU on the emulation of
// cuda_emu_gd_scan_bwd.cpp (which brings gd_scan's and gd_scan_bwd's); tests/test_cupy_gated_delta_tier_bwd.py builds
// it with -DKERNEL (gated_delta.cu + gated_delta_tier.cu + gated_delta_coarse.cu), -DBWD_KERNEL (gated_delta_bwd.cu +
// gated_delta_bwd_scan.cu) and -DTIER_BWD_KERNEL (the four files).
#include "cuda_emu_gd_scan_bwd.cpp"

#include TIER_BWD_KERNEL

// ---- K1 gd_tier3_bwd (s25a) ----

// ---- K2 gd_coarse_bwd (s25a) ----

// ---- K3 gd_tier1x_bwd (s25b) ----

// ---- K4 gd_tier1_bwd (s25c) ----
