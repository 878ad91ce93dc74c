"""gd_train16_small_s28r.py's small training steps (gd_train16_small_s24a.py's bfloat16 S16 steps: the two-tier path
from 3 chunks, one period and several, padded d_k, d_v not a multiple of 16, padding rows, the grouped coarse form; then
two float32 steps) with ``gated_delta_bwd.TIER_BWD_STORES`` on (s29a: tier_backward's dQp and dqe / dek / dph allocated
empty, K1 and K3 storing them) and CuPy's memory pool off (each buffer a fresh cudaMalloc: a read of an element no
kernel wrote is one initcheck sees), for compute-sanitizer (memcheck / initcheck). Asserts that the stores ran.
    python benchmarks/device/gd_train16_small_s29a.py"""
import os
import runpy

import cupy

from lsattn.backends.cupy import gated_delta_bwd as gdb

cupy.cuda.set_allocator(None)
gdb.TIER_BWD_STORES = True
seen, real = [], gdb.tier_stores
gdb.tier_stores = lambda *a: seen.append(real(*a)) or seen[-1]
runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), "gd_train16_small_s28r.py"), run_name="__main__")
assert seen.count((True, True)) >= 5 and (False, False) in seen, seen  # (T = 130: one period, nothing stored)
print("sanitize ok (TIER_BWD_STORES)", seen)
