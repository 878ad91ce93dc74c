"""GPU backward vs the NumPy twin on the same inputs: per-gradient errors (a development aid)."""
import sys

import cupy
import numpy as np

sys.path.insert(0, "tests")
sys.path.insert(0, ".")
from test_cupy_backend import Twin, ll_inputs  # noqa: E402
from lsattn.backends.cupy import loglinear as cll  # noqa: E402
from lsattn.backends.cupy._compile import CupyOps  # noqa: E402

ops = CupyOps(0)
for (T, dk, dv, C, P) in [(40, 8, 8, 64, 0), (40, 3, 2, 16, 0), (130, 3, 2, 16, 0), (70, 8, 8, 32, 0), (300, 64, 64, 64, 0)]:
    arrays = ll_inputs(1, (2,), T, dk, dv)
    do = np.random.default_rng(2).standard_normal((2, T, dv))
    q, k, v, a, lam = arrays
    out, _ = cll.compute(Twin(), q, k, v, a, lam, C, P, None, False)
    want = cll.backward(Twin(), q, k, v, a, lam, None, out, do, C, P, False)
    g = [cupy.asarray(x) for x in (q, k, v, a, lam)]
    outg, _ = cll.compute(ops, *g, C, P, None, False)
    got = cll.backward(ops, *g, None, outg, cupy.asarray(do), C, P, False)
    errs = []
    for name, x, y in zip(["dq", "dk", "dv", "da", "dl"], got, want):
        x = cupy.asnumpy(x)
        errs.append(f"{name} {np.max(np.abs(x - y)) / max(np.max(np.abs(y)), 1e-300):.1e}")
    print(T, dk, dv, C, "out", f"{np.max(np.abs(cupy.asnumpy(outg) - out)):.1e}", " ".join(errs), flush=True)
    if T == 40 and dk == 8:
        print("dl gpu", cupy.asnumpy(got[4])[0, :6], "\ndl twin", want[4][0, :6])
