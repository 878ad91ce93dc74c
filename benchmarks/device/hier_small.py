"""A few small loglinear_log_attention calls on the cupy kernels (hierarchical.cu), for
compute-sanitizer (memcheck / racecheck): float32 (3xTF32 tensor cores), float64, bfloat16 and float16, odd T, a stream with an
incoming state, d_v not a multiple of the column block, d_k = 128 (chunk 32); bfloat16 at chunk 64, with
hi_intra's exact rows (and float32 on those inputs at chunk 64)."""
import numpy as np
import cupy

import lsattn

rng = np.random.default_rng(0)
for dtype, T, dk, dv in (("float32", 100, 64, 64), ("float64", 37, 5, 19), ("float32", 300, 128, 130), ("bfloat16", 130, 64, 64),
                         ("float16", 130, 64, 64)):
    dt = "float32" if dtype in ("bfloat16", "float16") else dtype
    q, k, lv = (cupy.asarray(rng.standard_normal((2, T, d)), dtype=dt) for d in (dk, dk, dv))
    a = cupy.asarray(-rng.random((2, T)), dtype=dt)
    lam = cupy.asarray(rng.standard_normal((2, T, lsattn.num_levels(T))), dtype=dt)
    if dtype in ("bfloat16", "float16"):
        import torch

        q, k, lv, a, lam = (torch.as_tensor(x, device="cuda").to(getattr(torch, dtype)) for x in (q, k, lv, a, lam))
    h = T // 3
    o1, st = lsattn.loglinear_log_attention(q[:, :h], k[:, :h], lv[:, :h], lam[:, :h], log_decay=a[:, :h],
                                            return_state=True)
    o2 = lsattn.loglinear_log_attention(q[:, h:], k[:, h:], lv[:, h:], lam[:, h:], log_decay=a[:, h:], state=st)
    cupy.cuda.Device().synchronize()
    print(dtype, T, float(abs(o2.float() if hasattr(o2, "float") else o2).max()))
# bf16 at chunk 64 (the default from 8K tokens; hi_read's tensor-core tile with 2 warps per m-tile), d_v = 70
import torch  # noqa: E402

from lsattn.backends.cupy import hierarchical as chi  # noqa: E402

x = [torch.randn(2, 200, d, device="cuda").to(torch.bfloat16) for d in (64, 64, 70, lsattn.num_levels(200))]
a = (-torch.rand(2, 200, device="cuda")).to(torch.bfloat16)
o, _ = chi.forward(*x, a, None, False, chunk_size=64)
torch.cuda.synchronize()
print("bfloat16 C=64", float(o.float().abs().max()))
# bf16 hi_intra's exact rows (tensor-core sums below DEN_FLOOR: a late value far above the others, a key far below)
x[2][:, 62::64, 1] = 150.0
x[1][:, 3::64, :] -= 100.0
o, _ = chi.forward(*x, a, None, False, chunk_size=64)
torch.cuda.synchronize()
print("bfloat16 C=64 exact rows", float(o.float().abs().max()))
o, _ = chi.forward(*[t.float() for t in x], a.float(), None, False, chunk_size=64)  # float32 (3xTF32) at chunk 64
torch.cuda.synchronize()
print("float32 C=64 exact rows", float(o.abs().max()))
print("sanitize ok")
