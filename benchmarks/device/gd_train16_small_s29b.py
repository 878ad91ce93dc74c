"""gd_train16_small_s24a.py's small bfloat16 training steps (S16_TRAIN, the two-tier path from 3 chunks, TIER_BWD) with
``gated_delta_bwd.TRAIN_OUT16`` on (s29b: gd_tier3 writing the bfloat16 output (BH, T, d_v), K1 / K4 / gd_forms_bwd_x1's
GD_DO16 builds reading the bfloat16 output gradient), then output gradients torch hands over non-contiguous (``out.sum()``:
an expanded gradient, copied) and as a bfloat16 product (``(out * w).sum()``), for compute-sanitizer (memcheck /
initcheck: the output written whole at its T rows, dout's padding rows zero, the 8-byte bf16 loads in bounds).
    python benchmarks/device/gd_train16_small_s29b.py"""
import os
import runpy

import numpy as np
import torch

import lsattn
from lsattn.backends.cupy import _compile, gated_delta as cgd, gated_delta_bwd as gdb

gdb.TRAIN_OUT16 = True
seen, real = [], _compile.CupyOps._tk
_compile.CupyOps._tk = lambda self, op, cfg, name: seen.append((name, cfg.do16)) or real(self, op, cfg, name)
runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), "gd_train16_small_s24a.py"), run_name="__main__")
assert ("gd_tier1_bwd_x1", True) in seen and ("gd_forms_bwd_x1", True) in seen, sorted(set(seen))
cgd.TIER_MIN_CHUNKS = 0
rng = np.random.default_rng(2)
for T, dk, dv, loss in ((300, 64, 64, "sum"), (1100, 64, 33, "mul"), (650, 40, 20, "sum")):
    def t(*shape):
        return torch.tensor(rng.standard_normal(shape), device="cuda", dtype=torch.bfloat16)

    q, k, v = t(2, T, dk), t(2, T, dk), t(2, T, dv)
    k = k / k.float().norm(dim=-1, keepdim=True).to(k.dtype)
    a, beta, lam = -t(2, T).abs(), torch.sigmoid(t(2, T)), t(2, T, lsattn.num_levels(T))
    xs = [x.requires_grad_(True) for x in (q, k, v, a, beta, lam)]
    seen.clear()
    out = lsattn.loglinear_gated_delta(*xs)
    assert out.dtype == torch.bfloat16
    (out.sum() if loss == "sum" else (out * t(2, T, dv)).sum()).backward()
    torch.cuda.synchronize()
    assert ("gd_tier3_bwd_x1", True) in seen, sorted(set(seen))
    print("bf16-train-out16", T, dk, dv, loss, float(out.float().abs().max()),
          [float(x.grad.float().abs().max()) for x in xs])
print("sanitize ok (TRAIN_OUT16)")
