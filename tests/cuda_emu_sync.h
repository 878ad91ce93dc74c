// __syncthreads_or for the CPU emulations (included after their __syncthreads and threadIdx): the block's
// barrier three times around one shared flag.
#pragma once
static std::atomic<int> emu_or{0};
inline bool __syncthreads_or(int p) {
    __syncthreads();
    if (p) emu_or.store(1);
    __syncthreads();
    const bool r = emu_or.load() != 0;
    __syncthreads();
    if (threadIdx.x == 0) emu_or.store(0);  // the next call's first barrier waits for it
    return r;
}
