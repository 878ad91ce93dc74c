"""Session 16, s16c17 (issue 17), on the CPU: main's hierarchical backward (s16c17_main: hierarchical_bwd{,_chunk}.cu at
0b5d11b) against the tree's through the g++ emulation (tests/cuda_emu_hier_bwd.cpp) and the backward's host logic.
dq, dk, dlv and the decay's gradient bit for bit (hib_dq's dq keeps its arithmetic: the same terms summed in the same
order), dlam to float rounding (the slot terms' row sums in another order); largest relative difference printed.
Cases: the bf16 callers' variant (tc) at d_k = 64 (hib_slot_rows' DKP >= 64 branch) and at d_k = 16 (DKP < 64),
chunks 16 / 32, after a state (P > 0: the old slots' per-row levels), a key spike (exact rows); the FFMA variants.
``MUT='old=>new;;...'`` edits the tree's chunk text first (the check's power: a changed term must differ).

    PYTHONPATH=$PWD python benchmarks/device/hier_emu_eq_s16c17.py [tc|ffma]
"""
import os
import sys

import numpy as np

sys.path[:0] = ["tests"]  # noqa: E402 (the tests' helpers)
import test_cupy_hierarchical_grad as t
from helpers import emulation
from test_cupy_hierarchical import hier_source
from test_hierarchical import make
from lsattn.backends.cupy import hierarchical as chi, hierarchical_bwd as chb
import lsattn

HERE = os.path.dirname(os.path.abspath(__file__))


def emu(chunk_text, bwd_text):
    class E(t.EmuBwd):
        def _lib(self, cfg):
            defines = {"TA": cfg.ta, "CH": cfg.CH, "DKP": cfg.DKP, "DVP": cfg.DVP, "HIB_PMIN": chb.PMIN,
                       "HIB_NPC": chb.NPC, "HIB_TC": int(cfg.tc), "HIB_UNB": cfg.hib_unb}
            return emulation("cuda_emu_hier_bwd.cpp", defines,
                             {"KERNEL": hier_source(), "KERNEL_BWD": bwd_text + "\n" + chunk_text})
    return E()


def grads(ops, T, dk, dv, C, P, spike, dtype, tc, seed):
    arrays = make(seed, (2,), P + T, dk, dv, scale=3.0, decay="mixed", weights="random")
    if spike:
        arrays[1][0, P + T // 2, :] += spike / 10
        arrays[2][1, P + T // 3, 1] += spike
    pre = [x[..., :P] if x.ndim == 2 else x[..., :P, :] for x in arrays]
    cur = [np.ascontiguousarray(x[..., P:] if x.ndim == 2 else x[..., P:, :], dtype=dtype) for x in arrays]
    old = None
    if P:
        _, state = lsattn.loglinear_log_attention(*pre[:4], log_decay=pre[4], return_state=True, backend="array_api")
        old = tuple(np.ascontiguousarray(state.tensors[x], dtype=dtype) for x in ("m", "n", "S", "z"))
    out = chi.compute(ops, *cur[:4], cur[4], P, old, C)
    do = np.ascontiguousarray(np.random.default_rng(seed + 1).standard_normal((2, T, dv)), dtype=dtype)
    return [np.asarray(g) for g in chb.backward(ops, *cur[:4], cur[4], P, old, out, do, C, tc)]


def tree_text(name):
    return open(os.path.join(os.path.dirname(chb.__file__), name)).read()


chunk = tree_text("hierarchical_bwd_chunk.cu")
for m in filter(None, os.environ.get("MUT", "").split(";;")):
    a, b = m.split("=>")
    assert a in chunk, a
    chunk = chunk.replace(a, b)
new = emu(chunk, tree_text("hierarchical_bwd.cu"))
base = emu(*(open(os.path.join(HERE, "s16c17_main", f + ".txt")).read()
             for f in ("hierarchical_bwd_chunk.cu", "hierarchical_bwd.cu")))
TC = [(150, 64, 64, 32, 0, 0.0, "float32", True, 1), (70, 33, 17, 32, 21, 0.0, "float32", True, 2), (100, 64, 64, 32, 0, 60.0, "float32", True, 7),
      (90, 16, 5, 16, 0, 0.0, "float32", True, 3), (61, 16, 16, 32, 5, 0.0, "float32", True, 4)]
FF = [(150, 64, 64, 32, 0, 60.0, "float32", False, 5), (61, 64, 64, 32, 21, 0.0, "float32", False, 8), (45, 16, 5, 16, 0, 0.0, "float64", False, 6)]
cases = {"tc": TC, "ffma": FF}.get(sys.argv[1] if len(sys.argv) > 1 else "", TC + FF)
bad = 0
for c in cases:
    a, b = grads(new, *c), grads(base, *c)
    names = ["dq", "dk", "dlv", "dlam", "da"]
    same = [np.array_equal(x, y) for x, y in zip(a, b)]
    rel = [float(np.max(np.abs(x - y)) / max(float(np.max(np.abs(y))), 1e-300)) for x, y in zip(a, b)]
    ok = all(s for n, s in zip(names, same) if n != "dlam") and rel[3] < 1e-5
    bad += not ok
    print(f"{'ok  ' if ok else 'BAD '} T={c[0]} dk={c[1]} dv={c[2]} C={c[3]} P={c[4]} spike={c[5]} {c[6]} tc={c[7]}: "
          + ", ".join(f"{n} {'bit-equal' if s else f'{r:.1e}'}" for n, s, r in zip(names, same, rel)), flush=True)
print(f"{len(cases) - bad} of {len(cases)} cases: dq, dk, dlv, da bit-equal to main's, dlam within 1e-5")
sys.exit(1 if bad else 0)
