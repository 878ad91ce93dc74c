"""Packed streams with states on the GPU (issue 19): one call (``lsattn._ll_packed``, the cupy kernels
computing the new tokens among themselves) against one ordinary call per segment (the loop it
replaces, ``_varlen.streams``), ``loglinear_attention`` on CuPy float32 arrays, H = 16 heads, d = 64.

Cases: N streams prefilled to ``p`` tokens each, then a packed call of ``n`` new tokens per stream
(``n = 1``: a decoding step of N streams). Prints the median milliseconds of each and their ratio.
    python3 benchmarks/device/streams_s8f19.py          (--cpu: NumPy, array-API path, small cases)
"""
import sys
import time

import numpy as np

if "--cpu" in sys.argv:
    cp = np
else:
    import cupy as cp

import lsattn
from lsattn import _varlen


def inputs(rng, H, T, d, L):
    q, k, v = (cp.asarray(rng.standard_normal((H, T, d)), dtype=cp.float32) / 8 for _ in range(3))
    a = cp.asarray(-0.05 * rng.random((H, T)), dtype=cp.float32)
    lam = cp.asarray(rng.random((H, T, L)), dtype=cp.float32)
    return q, k, v, a, lam


def sync():
    if cp is not np:
        cp.cuda.Device().synchronize()


def median_ms(f, reps):
    f()
    sync()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        f()
        sync()
        times.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(times))


def case(N, p, n, H=16, d=64, reps=10):
    rng = np.random.default_rng(0)
    L = lsattn.num_levels(p + n)
    _, state = lsattn.loglinear_attention(*inputs(rng, H, N * p, d, L), cu_seqlens=list(range(0, N * p + 1, p)),
                                          return_state=True, backend="array_api" if cp is np else None)
    x = inputs(rng, H, N * n, d, L)
    cu = list(range(0, N * n + 1, n))
    backend = "array_api" if cp is np else None
    call = lambda: lsattn.loglinear_attention(*x, cu_seqlens=cu, state=state, return_state=True,  # noqa: E731
                                              backend=backend)
    one = median_ms(call, reps)
    out1, st1 = call()
    keep = _varlen.STREAM_OPS
    _varlen.STREAM_OPS = ()  # the per-segment calls it replaces
    try:
        loop = median_ms(call, reps)
        out2, st2 = call()
    finally:
        _varlen.STREAM_OPS = keep
    err = float(cp.abs(out1 - out2).max() / cp.abs(out2).max())
    print(f"N={N:4d} p={p:5d} n={n:4d}: one call {one:8.2f} ms, per segment {loop:8.2f} ms, "
          f"x{loop / one:5.1f}, max rel diff {err:.1e}", flush=True)


if __name__ == "__main__":
    if cp is np:
        for N, p, n in [(8, 63, 1), (4, 31, 16)]:
            case(N, p, n, H=2, d=16, reps=3)
    else:
        print(lsattn.backends.resolve("loglinear_attention", cp, cp.zeros(1), None, varlen=True).name)
        for N, p, n in [(16, 1023, 1), (64, 4096, 1), (16, 4095, 64), (16, 2000, 1024), (4, 100, 4096)]:
            case(N, p, n)
