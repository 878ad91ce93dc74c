"""Session 15, s15d17 (issue 17), on the CPU: main's exp_kernel_bwd_tc.cu (s15d17_base, 26378e6) against the
tree's through the g++ emulation (tests/cuda_emu_ek_bwd.cpp) and the backward's host logic: dq, dk, dv bitwise
(the branch keeps the arithmetic). Cases: log values up to 1e3 with -inf entries and columns behind a +60 key spike
(o's mask, exact rows), d_v = 2 (o staged), +100 spikes (U'' past e^80: ekb_dkdv_tc's pass through ekt_scale_m),
plain inputs, exp mode. ``MUT='old=>new;;...'`` edits the tree's text first (the check's power: a changed mask or
slow pass must differ).

    PYTHONPATH=$PWD python benchmarks/device/ek_emu_eq_s15d17.py      # ~3 min on 2 cores (four g++ builds)
"""
import os
import sys

import numpy as np

sys.path[:0] = ["tests"]  # noqa: E402 (the tests' helpers)
import test_cupy_log_attention as t
from helpers import cupy_source, emulation
from lsattn.backends.cupy import exp_kernel as cek
from lsattn import reference as ref

BASE = open("benchmarks/device/s15d17_base/exp_kernel_bwd_tc.cu.txt").read()


def make(text):
    class E(t.EmuTC):
        def _lib(self, cfg):
            caps = [ln for ln in cupy_source("exp_kernel_bwd.cu").splitlines() if ln.startswith("__device__ __forceinline__ ta ex_cap")]
            return emulation("cuda_emu_ek_bwd.cpp", {"CH": cfg.CH, "DKP": cfg.DKP, "DVP": cfg.DVP, "LOGV": int(cfg.logv)},
                             {"KERNEL": text, "CAPS": "\n".join(caps) + "\n"})
    return E()


def run(ops, logv, T, dk, dv, scale, lv_scale, p_inf, spike, seed):
    q, k, v = t.lv_inputs(seed, (2,), T, dk, dv, scale, lv_scale, p_inf) if logv else t.ek_inputs(seed, (2,), T, dk, dv, scale)
    if spike:
        t.key_spike(k, v if logv else None, lv_scale)
        k[..., (2 * T) // 3, :] += spike - 60.0
    (qb, q), (kb, k), (vb, v), (dob, do) = (t.bf16_bits(x) for x in (q, k, v, np.random.default_rng(seed + 1).standard_normal((2, T, dv))))
    if logv:
        y = np.asarray(ref.log_attention(q, k, v)).astype(np.float32)
    else:
        y = t.bf16_bits(np.asarray(ref.exp_kernel_attention(q, k, v)))[0]
    dq, dk_, dv_, _ = cek.backward(ops, qb, kb, vb, None, y, dob, False, "bf16", logv)
    return [np.asarray(g) for g in (dq, dk_, dv_)]


txt = cupy_source("exp_kernel_bwd_tc.cu")
for m in filter(None, os.environ.get("MUT", "").split(";;")):
    a, b = m.split("=>")
    assert a in txt, a
    txt = txt.replace(a, b)
new, base = make(txt), make(BASE)
cases = [(True, 150, 16, 16, 3.0, 1e3, 0.3, 60.0, 1), (True, 129, 16, 2, 3.0, 1e3, 0.0, 100.0, 0),
         (True, 200, 16, 16, 3.0, 30.0, 0.3, 100.0, 5), (True, 190, 16, 16, 1.0, 1.0, 0.0, 0, 7),
         (False, 150, 16, 16, 3.0, 1.0, 0.0, 60.0, 2)]
bad = 0
for c in cases:
    a, b = run(new, *c), run(base, *c)
    same = all(np.array_equal(x.view(np.uint16), y.view(np.uint16)) for x, y in zip(a, b))
    bad += not same
    print(c, "bitwise equal" if same else "DIFFER", flush=True)
print("cases differing:", bad)
