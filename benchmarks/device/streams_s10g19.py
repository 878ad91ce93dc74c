"""Packed streams with states on the GPU (issue 19, session 10): where the time of a packed call with
``state=`` / ``return_state=True`` goes. For each case (``streams_s9e19``'s: N streams prefilled to
``p`` tokens (copies of one stream's state), then ``n`` new tokens each; CuPy float32, H = 16, d = 64) the packed call and one
ordinary call on the packed length continuing one stream's state, each as ``cupyx.profiler.benchmark``
reports it: host time of the call (CPU) and the stream's time from its start to its end (GPU), mean of
``reps``; the uploads per call (``lsattn._upload.count``) and the max relative difference to the
per-segment loop (``_varlen.streams``, run once).
    python3 benchmarks/device/streams_s10g19.py [op ...] [op:N,p,n ...]
"""
import sys

import cupy as cp
import numpy as np
from cupyx.profiler import benchmark
from streams_s9e19 import OPS, inputs, per_segment

import lsattn
from lsattn import _upload, _varlen


def timed(fn, reps):
    r = benchmark(fn, n_repeat=reps, n_warmup=1)
    return 1e3 * float(np.mean(r.cpu_times)), 1e3 * float(np.mean(r.gpu_times[0]))


def setup(op, N, p, n, H=16, d=64):
    """``(f, x, kw, call, one_stream)``: the operator, the new tokens' inputs, the packed call with
    states of the case, and the state of one stream at ``p`` (whose N copies are the packed state:
    a packed prefill of N p tokens costs seconds)."""
    rng = np.random.default_rng(0)
    f = getattr(lsattn, op)
    L = lsattn.num_levels(p + N * n)
    x0, kw0 = inputs(op, rng, H, p, d, L)
    _, one_stream = f(*x0, **kw0, return_state=True)
    state = _varlen.merge([one_stream] * N, (H,))
    x, kw = inputs(op, rng, H, N * n, d, L)
    cu = list(range(0, N * n + 1, n))
    return f, x, kw, lambda: f(*x, **kw, cu_seqlens=cu, state=state, return_state=True), one_stream


def case(op, N, p, n, H=16, d=64, reps=10):
    f, x, kw, call, one_stream = setup(op, N, p, n, H, d)
    c0 = _upload.count
    out1, _ = call()
    ups = _upload.count - c0
    pk = timed(call, reps)
    one = timed(lambda: f(*x, **kw, state=one_stream, return_state=True), reps)
    out2, _ = per_segment(call)  # the per-segment calls it replaces: the result only
    err = float(cp.abs(out1 - out2).max() / cp.abs(out2).max())
    backend = lsattn.backends.resolve(op, cp, x[0], None, varlen=True).name
    print(f"{op:24s} ({backend}) N={N:3d} p={p:5d} n={n:5d}: packed+state cpu {pk[0]:7.2f} gpu {pk[1]:7.2f} ms | one call + one "
          f"stream's state cpu {one[0]:6.2f} gpu {one[1]:6.2f} ms | gpu ratio {pk[1] / one[1]:4.1f} | uploads {ups} | "
          f"max rel diff to the loop {err:.1e}", flush=True)


CASES = [(16, 1023, 1), (64, 4096, 1), (16, 4095, 64), (16, 2000, 1024)]

if __name__ == "__main__":
    # arguments: operators (every case each), or op:N,p,n for single cases
    specs = [(a.split(":")[0], tuple(map(int, a.split(":")[1].split(",")))) for a in sys.argv[1:] if ":" in a]
    specs += [(op, c) for op in [a for a in sys.argv[1:] if a in OPS] for c in CASES]
    for op, c in specs or [(op, c) for op in OPS for c in CASES]:
        case(op, *c)
