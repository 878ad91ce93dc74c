// common.cu's register-tiled product (mm_acc, zero_acc) restated for the CPU emulations of the
// kernels (cuda_emu_gd_forms.cpp, cuda_emu_hier_bwd.cpp); include after `ta` and `ldv<N>` are defined.
#pragma once
template <int RM, int RN, int KD>
inline void mm_acc(ta (&acc)[RM][RN], const ta* A, int lda, const ta* B, int ldb, int ty, int tx) {
    const ta* a0 = A + ty * RM;
    const ta* b0 = B + tx * RN;
    for (int kk = 0; kk < KD; ++kk) {
        ta a[RM], b[RN];
        ldv<RM>(a0 + kk * lda, a);
        ldv<RN>(b0 + kk * ldb, b);
        for (int i = 0; i < RM; ++i)
            for (int j = 0; j < RN; ++j) acc[i][j] = std::fma(a[i], b[j], acc[i][j]);
    }
}
template <int RM, int RN>
inline void zero_acc(ta (&acc)[RM][RN]) {
    for (int i = 0; i < RM; ++i)
        for (int j = 0; j < RN; ++j) acc[i][j] = (ta)0;
}
