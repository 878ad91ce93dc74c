"""The exp / log chunk's small products on one core: OpenBLAS (SciPy's, through ``_numba_chunked._gemm``, the
gemm the log-linear kernels call) against ``_numba_simd``'s register-blocked ``mm`` / ``mmt``, each called
20000 times inside one @njit loop, alternated, min of 7 (``time.process_time``). Shapes of one block of 16
rows at d = 64 (benchmarks/NOTES.md, s28b): Y_b NN 16x64x80, U TN 64x64x16, W_bb NT 16x16x64 (``mmt``: its
lower triangle only, the flops counted as the full product's), and 64^3.

    NUMBA_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python benchmarks/cpu_small_products.py

Run it on a new host before trusting ``_numba_simd`` there (e.g. an AVX-512 host whose OpenBLAS picks its
SkylakeX small-matrix kernels); the header names the OpenBLAS kernel set.
"""
import os
import sys
import time

import numba
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_cpu_roofline import blas_cores  # noqa: E402

from lsattn.backends._numba_chunked import _gemm  # noqa: E402
from lsattn.backends._numba_simd import mm, mmt  # noqa: E402

REPS = 20000


@numba.njit
def run_blas(a, b, c, ta, tb, reps):
    one = np.array([1.0, 0.0], a.dtype)
    for _ in range(reps):
        _gemm(ta, tb, a, b, c, True, one)


@numba.njit
def run_simd(a, b, c, ta, tb, reps):
    m, n = c.shape
    kk = a.shape[0] if ta else a.shape[1]
    for _ in range(reps):
        if tb:
            mmt(m, n, kk, a.ctypes.data, kk, b.ctypes.data, kk, c.ctypes.data, n, True, a[0, 0])
        else:
            ra, ca = (1, m) if ta else (kk, 1)
            mm(m, n, kk, a.ctypes.data, ra, ca, b.ctypes.data, n, c.ctypes.data, n, True, a[0, 0])


def case(dt, ta, tb, m, n, kk):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((kk, m) if ta else (m, kk)).astype(dt)
    b = rng.standard_normal((n, kk) if tb else (kk, n)).astype(dt)
    c = np.zeros((m, n), dt)
    ts = {"blas": [], "simd": []}
    for r in range(8):
        for k, f in (("blas", run_blas), ("simd", run_simd)):
            t = time.process_time()
            f(a, b, c, ta, tb, REPS if r else 1)
            if r:
                ts[k].append(time.process_time() - t)
    fl = 2 * m * n * kk * REPS / 1e9
    print(f"{np.dtype(dt).name} {'T' if ta else 'N'}{'T' if tb else 'N'} {m}x{n}x{kk}: OpenBLAS "
          f"{fl / min(ts['blas']):.1f} GFLOP/s, {'mmt (triangle)' if tb else 'mm'} {fl / min(ts['simd']):.1f}", flush=True)


if __name__ == "__main__":
    import scipy.linalg  # noqa: F401  (the kernels' BLAS, loaded for blas_cores)

    print(blas_cores())
    for dt in (np.float32, np.float64):
        for shape in ((False, False, 16, 64, 80), (True, False, 64, 64, 16), (False, True, 16, 16, 64),
                      (False, False, 64, 64, 64)):
            case(dt, *shape)
