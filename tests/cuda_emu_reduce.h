// common.cu's warp shuffle and block reductions restated for the CPU emulations (cuda_emu_step.cpp,
// cuda_emu_ll_streams.cpp): a shuffle is an exchange between two barriers of the warp's 32 threads
// (emu_warp_bar of cuda_emu.h). Include after cuda_emu.h.
#pragma once
static double emu_shfl[NT];
inline ta __shfl_xor_sync(unsigned, ta v, int lane_mask) {
    const int t = threadIdx.x;
    emu_barrier* bar = emu_warp_bar[t >> 5];
    emu_shfl[t] = v;
    bar->arrive_and_wait();
    const ta r = (ta)emu_shfl[(t & ~31) | ((t & 31) ^ lane_mask)];
    bar->arrive_and_wait();
    return r;
}
inline ta warp_sum(ta x) {
    for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}
inline ta warp_max(ta x) {
    for (int o = 16; o > 0; o >>= 1) x = fmx(x, __shfl_xor_sync(0xffffffffu, x, o));
    return x;
}
inline ta block_sum(ta x, ta* red) {
    x = warp_sum(x);
    __syncthreads();
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = x;
    __syncthreads();
    ta s = (ta)0;
    for (int w = 0; w < NT / 32; ++w) s += red[w];
    return s;
}
inline ta block_max(ta x, ta* red) {
    x = warp_max(x);
    __syncthreads();
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = x;
    __syncthreads();
    ta s = red[0];
    for (int w = 1; w < NT / 32; ++w) s = fmx(s, red[w]);
    return s;
}
