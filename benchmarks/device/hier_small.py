"""A few small loglinear_log_attention calls on the cupy kernels (hierarchical.cu), for
compute-sanitizer (memcheck / racecheck): float32, float64 and bfloat16, odd T, a stream with an
incoming state, d_v not a multiple of the column block, d_k = 128 (chunk 32)."""
import numpy as np
import cupy

import lsattn

rng = np.random.default_rng(0)
for dtype, T, dk, dv in (("float32", 100, 64, 64), ("float64", 37, 5, 19), ("float32", 300, 128, 130), ("bfloat16", 130, 64, 64)):
    dt = "float32" if dtype == "bfloat16" else dtype
    q, k, lv = (cupy.asarray(rng.standard_normal((2, T, d)), dtype=dt) for d in (dk, dk, dv))
    a = cupy.asarray(-rng.random((2, T)), dtype=dt)
    lam = cupy.asarray(rng.standard_normal((2, T, lsattn.num_levels(T))), dtype=dt)
    if dtype == "bfloat16":
        import torch

        q, k, lv, a, lam = (torch.as_tensor(x, device="cuda").to(torch.bfloat16) for x in (q, k, lv, a, lam))
    h = T // 3
    o1, st = lsattn.loglinear_log_attention(q[:, :h], k[:, :h], lv[:, :h], lam[:, :h], log_decay=a[:, :h],
                                            return_state=True)
    o2 = lsattn.loglinear_log_attention(q[:, h:], k[:, h:], lv[:, h:], lam[:, h:], log_decay=a[:, h:], state=st)
    cupy.cuda.Device().synchronize()
    print(dtype, T, float(abs(o2.float() if hasattr(o2, "float") else o2).max()))
print("sanitize ok")
