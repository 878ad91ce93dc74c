"""A few small loglinear_gated_delta calls on the cupy kernels (gd_forms, gd_scan), for compute-sanitizer
(memcheck / racecheck): float32, float64 and float16 (read as such), odd T, a stream with an incoming
state, d_v not a multiple of the column block; one bfloat16 call on torch tensors when torch is there.
gd_scan runs at its group size per call (scan_group), then forced to GD_G.

    python benchmarks/device/gd_small.py [bf16]   (bf16: the bfloat16 torch calls only: gd_forms' 16-bit tiles,
                                                   GF_H; d_k < 64, d_v > 64, a stream with a state, a strided input;
                                                   f32: two float32 calls at C = d_k = 64, d_v 64 / 100)
"""
import sys

import numpy as np
import cupy

import lsattn
from lsattn.backends.cupy import gated_delta as cgd

BF16_ONLY = sys.argv[1:] == ["bf16"]
rng = np.random.default_rng(0)
if sys.argv[1:] == ["f32"]:  # float32 at C = d = 64 only: gd_forms' tensor-core path (GF_TF); T partial, d_v in two blocks
    for T, dv in ((150, 64), (77, 100)):
        q, k, v = (cupy.asarray(rng.standard_normal((2, T, d)), dtype="float32") for d in (64, 64, dv))
        k /= cupy.linalg.norm(k, axis=-1, keepdims=True)
        a, beta = cupy.asarray(-rng.random((2, T)), dtype="float32"), cupy.asarray(rng.random((2, T)), dtype="float32")
        lam = cupy.asarray(rng.random((2, T, lsattn.num_levels(T))), dtype="float32")
        o = lsattn.loglinear_gated_delta(q, k, v, a, beta, lam)
        cupy.cuda.Device().synchronize()
        print("float32", T, dv, float(cupy.abs(o).max()))
    print("sanitize ok")
    sys.exit(0)
if BF16_ONLY:
    import torch

    for T, dk, dv in ((150, 64, 64), (301, 40, 100), (77, 64, 20)):
        x = [torch.randn((2, T, d), device="cuda") for d in (dk, dk, dv)]
        x[1] = torch.nn.functional.normalize(x[1], dim=-1)
        x += [-torch.rand((2, T), device="cuda"), torch.rand((2, T), device="cuda"),
              torch.rand((2, T, lsattn.num_levels(T)), device="cuda")]
        x = [t.to(torch.bfloat16) for t in x]
        h = T // 3
        o1, st = lsattn.loglinear_gated_delta(*[t[:, :h] for t in x], return_state=True)
        o2 = lsattn.loglinear_gated_delta(*[t[:, h:] for t in x], state=st)
        wide = torch.zeros((2, T, dk + 3), dtype=torch.bfloat16, device="cuda")
        wide[..., 1:dk + 1] = x[0]  # q a strided view (rows not 8-byte aligned: gd_forms' element loads)
        o3 = lsattn.loglinear_gated_delta(wide[..., 1:dk + 1], *x[1:])
        torch.cuda.synchronize()
        print("bfloat16", T, dk, dv, float(o2.float().abs().max()), float((o3 - lsattn.loglinear_gated_delta(*x)).abs().max()))
    print("sanitize ok")
    sys.exit(0)
for cgd.GROUP_MIN_CHUNKS in (cgd.GROUP_MIN_CHUNKS, 0):  # the calls' group size, then GD_G
    for dtype, T, dk, dv, C in (("float32", 100, 64, 64, 64), ("float64", 37, 5, 19, 16), ("float32", 300, 128, 130, 32),
                                ("float16", 150, 64, 64, 64)):  # float16: gd_forms reads the 16-bit inputs
        q, k, v = (cupy.asarray(rng.standard_normal((2, T, d)), dtype=dtype) for d in (dk, dk, dv))
        k /= cupy.linalg.norm(k, axis=-1, keepdims=True)
        a = cupy.asarray(-rng.random((2, T)), dtype=dtype)
        beta = cupy.asarray(rng.random((2, T)), dtype=dtype)
        lam = cupy.asarray(rng.standard_normal((2, T, lsattn.num_levels(T))), dtype=dtype)
        h = T // 3
        o1, st = lsattn.loglinear_gated_delta(q[:, :h], k[:, :h], v[:, :h], a[:, :h], beta[:, :h], lam[:, :h], chunk_size=C,
                                              return_state=True)
        o2 = lsattn.loglinear_gated_delta(q[:, h:], k[:, h:], v[:, h:], a[:, h:], beta[:, h:], lam[:, h:], chunk_size=C,
                                          state=st)
        cupy.cuda.Device().synchronize()
        print(dtype, T, float(cupy.abs(o2).max()))
try:  # bfloat16 (torch): gd_forms' tensor-core products of K K^T and Q K^T
    import torch
except ImportError:
    torch = None
if torch is not None:
    T = 150
    x = [torch.randn((2, T, 64), device="cuda") for _ in range(3)]
    x[1] = torch.nn.functional.normalize(x[1], dim=-1)
    x += [-torch.rand((2, T), device="cuda"), torch.rand((2, T), device="cuda"),
          torch.rand((2, T, lsattn.num_levels(T)), device="cuda")]
    o = lsattn.loglinear_gated_delta(*[t.to(torch.bfloat16) for t in x])
    torch.cuda.synchronize()
    print("bfloat16", T, float(o.abs().max()))
    # the direct path of torch tensors without state (gated_delta._torch_call): T not a multiple of the chunk, f32 / f16 / f64
    for dt, C in ((torch.float32, 64), (torch.float16, 64), (torch.float64, 16)):
        o = lsattn.loglinear_gated_delta(*[t.to(dt) for t in x], chunk_size=C)
        torch.cuda.synchronize()
        print("direct", dt, T, float(o.abs().max()))
print("sanitize ok")
