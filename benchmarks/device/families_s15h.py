"""Session 15 (s15h): every operator family once through its public call on the cupy kernels after _compile.py's split
(``Config`` and the variant choice into ``_config.py``): float32 CuPy arrays (B=2, T=100, d_k=16, d_v=24, a stream of two
calls with a state) and bfloat16 torch tensors (the tensor-core variants), each against the array-API path on the same
inputs (float32: 1e-4 of the output's scale; bfloat16: 3e-2). Prints one line per case, then "families ok N/N"."""
from __future__ import annotations

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
import lsattn  # noqa: E402

rng = np.random.default_rng(0)
B, T, DK, DV = 2, 100, 16, 24
L = lsattn.num_levels(T)
q, k = (rng.standard_normal((B, T, DK)) / 4 for _ in range(2))
v, lv = rng.standard_normal((B, T, DV)), rng.standard_normal((B, T, DV))
a, lam = -rng.random((B, T)) / 4, rng.standard_normal((B, T, L)) / 2
beta = rng.random((B, T))
CALLS = {
    "exp_kernel_attention": ("exp_kernel_attention", (q, k, v), {}),
    "log_attention": ("log_attention", (q, k, lv), {}),
    "loglinear_attention": ("loglinear_attention", (q, k, v, a, np.exp(lam)), {}),
    "loglinear_gated_delta": ("loglinear_gated_delta", (q, k / np.linalg.norm(k, axis=-1, keepdims=True), v, a, beta,
                                                       np.exp(lam)), {}),
    "loglinear_log_attention": ("loglinear_log_attention", (q, k, lv, lam), {"log_decay": a}),
}


def host(x):
    return x.float().cpu().numpy() if hasattr(x, "cpu") else (x.get() if hasattr(x, "get") else np.asarray(x))


def check(name, dtype):
    import cupy
    import torch

    fn, args, kw = CALLS[name]
    fn = getattr(lsattn, fn)
    want = np.asarray(fn(*args, **kw, backend="array_api"), np.float64)
    if dtype == "float32":
        dev = [cupy.asarray(x, dtype=cupy.float32) for x in args]
        kdev = {n: cupy.asarray(x, dtype=cupy.float32) for n, x in kw.items()}
        h = T // 3
        o1, st = fn(*[x[:, :h] for x in dev], **{n: x[:, :h] for n, x in kdev.items()}, return_state=True)
        o2 = fn(*[x[:, h:] for x in dev], **{n: x[:, h:] for n, x in kdev.items()}, state=st)
        out, tol = np.concatenate([host(o1), host(o2)], axis=-2), 1e-4
    else:
        dev = [torch.as_tensor(x, device="cuda").to(torch.bfloat16) for x in args]
        kdev = {n: torch.as_tensor(x, device="cuda").to(torch.bfloat16) for n, x in kw.items()}
        want = np.asarray(fn(*[host(x).astype(np.float64) for x in dev], **{n: host(x).astype(np.float64)
                                                                          for n, x in kdev.items()}, backend="array_api"))
        out, tol = host(fn(*dev, **kdev)), 3e-2
    fin = np.isfinite(want)
    err = float(np.max(np.abs(out[fin] - want[fin]))) / (1 + float(np.max(np.abs(want[fin]))))
    ok = err <= tol and bool((np.isfinite(out) == fin).all())
    print(f"{'ok  ' if ok else 'FAIL'} {name:24s} {dtype:9s} err {err:.2e} (tol {tol:.0e})", flush=True)
    return ok


if __name__ == "__main__":
    res = [check(n, dt) for dt in ("float32", "bfloat16") for n in CALLS]
    print(f"families ok {sum(res)}/{len(res)}")
    sys.exit(0 if all(res) else 1)
