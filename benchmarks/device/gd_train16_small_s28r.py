"""gd_train16_small_s24a.py's small bfloat16 training steps (S16_TRAIN, the two-tier path from 3 chunks) with
``gated_delta_bwd.FORMS_X_SAVED`` on (s27r, R1: gd_forms' GF_XO build writing each chunk's X, gd_forms_bwd_x1's FB_XIN
build reading it), then two float32 steps (3xTF32 forms, X saved alike), for compute-sanitizer (memcheck / racecheck /
initcheck: X written whole by gd_forms, read whole by gd_forms_bwd; padding rows, a partial last chunk).
    python benchmarks/device/gd_train16_small_s28r.py"""
import os
import runpy

import numpy as np
import torch

import lsattn
from lsattn.backends.cupy import _compile, gated_delta_bwd as gdb

gdb.FORMS_X_SAVED = True
xins, real = [], _compile.CupyOps.gd_forms_bwd
_compile.CupyOps.gd_forms_bwd = lambda self, *a, xin=None, **k: xins.append(xin is not None) or real(self, *a, xin=xin, **k)
runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), "gd_train16_small_s24a.py"), run_name="__main__")
assert xins and all(xins), xins
rng = np.random.default_rng(1)
for T, dk, dv in ((300, 64, 64), (1100, 64, 33)):
    def t(*shape):
        return torch.tensor(rng.standard_normal(shape), device="cuda", dtype=torch.float32)

    q, k, v = t(2, T, dk), t(2, T, dk), t(2, T, dv)
    k = k / k.norm(dim=-1, keepdim=True)
    a, beta, lam = -t(2, T).abs(), torch.sigmoid(t(2, T)), t(2, T, lsattn.num_levels(T))
    xs = [x.requires_grad_(True) for x in (q, k, v, a, beta, lam)]
    xins.clear()
    out = lsattn.loglinear_gated_delta(*xs)
    out.square().sum().backward()
    torch.cuda.synchronize()
    assert xins == [True], xins
    print("f32-train-xs", T, dk, dv, float(out.abs().max()), [float(x.grad.abs().max()) for x in xs])
print("sanitize ok (FORMS_X_SAVED)")
