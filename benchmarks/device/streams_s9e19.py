"""Packed streams with states on the GPU (issue 19), every log-linear operator: one call
(``lsattn._ll_packed``; ``cupy``'s kernels compute the new tokens among themselves for
``loglinear_attention`` and ``loglinear_gated_delta``) against one ordinary call per segment (the
loop it replaces, ``_varlen.streams``) and one call on the packed length without state or
segments, and with the state of one stream at offset ``p`` (what "about one call" is measured against). CuPy float32, H = 16 heads, d = 64.

Cases: N streams prefilled to ``p`` tokens each, then a packed call of ``n`` new tokens per stream
(``n = 1``: a decoding step of N streams). Prints the median milliseconds and the ratios.
    python3 benchmarks/device/streams_s9e19.py [op ...]     (--cpu: NumPy, array-API path, small cases)
"""
import sys

import numpy as np

from streams_s8f19 import cp, median_ms

import lsattn
from lsattn import _varlen

OPS = ("loglinear_attention", "loglinear_gated_delta", "loglinear_log_attention")


def inputs(op, rng, H, T, d, L):
    q, k, v = (cp.asarray(rng.standard_normal((H, T, d)), dtype=cp.float32) / 8 for _ in range(3))
    a = cp.asarray(-0.05 * rng.random((H, T)), dtype=cp.float32)
    lam = cp.asarray(rng.random((H, T, L)), dtype=cp.float32)
    if op == "loglinear_attention":
        return (q, k, v, a, lam), {}
    if op == "loglinear_gated_delta":
        k = k / cp.linalg.norm(k, axis=-1, keepdims=True)
        return (q, k, v, a, cp.asarray(rng.random((H, T)), dtype=cp.float32), lam), {}
    return (q, k, v, cp.log(lam)), {"log_decay": a}


def per_segment(fn):
    """``fn()`` with ``_varlen.STREAM_OPS`` emptied: a packed call with states as the per-segment
    calls it replaces (``_varlen.streams``)."""
    keep = _varlen.STREAM_OPS
    _varlen.STREAM_OPS = ()
    try:
        return fn()
    finally:
        _varlen.STREAM_OPS = keep


def case(op, N, p, n, H=16, d=64, reps=10):
    rng = np.random.default_rng(0)
    f = getattr(lsattn, op)
    backend = "array_api" if cp is np else None
    L = lsattn.num_levels(p + N * n)  # the one-stream call reads up to p + N n
    x0, kw0 = inputs(op, rng, H, N * p, d, L)
    _, state = f(*x0, **kw0, cu_seqlens=list(range(0, N * p + 1, p)), return_state=True, backend=backend)
    x, kw = inputs(op, rng, H, N * n, d, L)
    cu = list(range(0, N * n + 1, n))
    call = lambda: f(*x, **kw, cu_seqlens=cu, state=state, return_state=True, backend=backend)  # noqa: E731
    plain = median_ms(lambda: f(*x, **kw, backend=backend), reps)  # one call on the packed length
    head = lambda y: y[..., :p] if y.ndim == 2 else y[..., :p, :]  # noqa: E731
    _, one_stream = f(*map(head, x0), **{n_: head(y) for n_, y in kw0.items()}, return_state=True, backend=backend)
    # one call on the packed length continuing one stream at offset p (the state read included)
    stream = median_ms(lambda: f(*x, **kw, state=one_stream, return_state=True, backend=backend), reps)
    one = median_ms(call, reps)
    out1, _ = call()
    loop = per_segment(lambda: median_ms(call, max(2, reps // 3)))
    out2, _ = per_segment(call)
    err = float(cp.abs(out1 - out2).max() / cp.abs(out2).max())
    print(f"{op:24s} N={N:4d} p={p:5d} n={n:4d}: packed+state {one:8.2f} ms, per segment {loop:8.2f} ms "
          f"(x{loop / one:5.1f}), one call on N n tokens {plain:7.2f} ms, with one stream's state {stream:7.2f} ms "
          f"(packed+state / that {one / stream:4.1f}), "
          f"max rel diff {err:.1e}", flush=True)


if __name__ == "__main__":
    ops = [a for a in sys.argv[1:] if a in OPS] or OPS
    for op in ops:
        if cp is np:
            for N, p, n in [(8, 63, 1), (4, 31, 16)]:
                case(op, N, p, n, H=2, d=16, reps=3)
        else:
            print(op, lsattn.backends.resolve(op, cp, cp.zeros(1), None, varlen=True).name, flush=True)
            for N, p, n in [(16, 1023, 1), (64, 4096, 1), (16, 4095, 64), (16, 2000, 1024), (4, 100, 4096)]:
                case(op, N, p, n)
