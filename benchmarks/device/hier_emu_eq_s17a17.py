"""Session 17, s17a17 (issue 17), on the CPU: main's hib_dq (s17a17_base: hierarchical_bwd_{chunk,dq}.cu at 5793862)
against the tree's through the g++ emulation (tests/cuda_emu_hier_bwd.cpp) and the backward's host logic (after
s16c17's hier_emu_eq_s16c17.py). Every gradient's largest difference relative to its largest magnitude; bit-equal where
so. EQ=1: dq, dk, dlv, da must be bit-equal (dlam to 1e-5; the bit-equal changes); else every gradient within TOL
(default 1e-5 relative: the slot fold, not bit-equal: rounding of the same terms).
Cases: the bf16 callers' variant (tc) at d_k = 64 / 33 / 16, chunks 16 / 32, after a state (P > 0: the old slots),
a key / value spike (exact rows; the fold's fallback); the FFMA variants (float32, float64).
``MUT='old=>new;;...'`` edits the tree's hib_dq text first (the check's power: a changed term must differ);
``DQ=path``: another hib_dq text (s17a17_var/); ``DEFS='HIB_FOLD_OK=0 ...'`` defines before it (the fold off: the bit-equal changes alone, EQ=1). REF=1: also every
gradient's largest error against float64 torch autograd of the reference (inputs as cast), the tree's and main's.

    PYTHONPATH=$PWD python benchmarks/device/hier_emu_eq_s17a17.py [tc|ffma]
(s17a17_base/ and s17a17_var/ were removed after the session: ``git checkout 6faca7f -- benchmarks/device/s17a17_base
benchmarks/device/s17a17_var``.)
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
SRC = os.path.dirname(chb.__file__)


def emu(texts):
    class E(t.EmuBwd):
        def _lib(self, cfg):
            defines = {"TA": cfg.ta, "CH": cfg.CH, "DKP": cfg.DKP, "DVP": cfg.DVP, "HIB_PMIN": chb.PMIN,
                       "HIB_NPC": chb.NPC, "HIB_TC": int(cfg.tc), "HIB_UNB": cfg.hib_unb}
            return emulation("cuda_emu_hier_bwd.cpp", defines, {"KERNEL": hier_source(), "KERNEL_BWD": "\n".join(texts)})
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
    got = [np.asarray(g) for g in chb.backward(ops, *cur[:4], cur[4], P, old, out, do, C, tc)]
    if not REF:
        return got
    import torch
    want, _ = t.grad_oracle(torch, [x.astype(np.float64) for x in cur], do.astype(np.float64), prefix=pre if P else None)
    return got, [float(np.max(np.abs(g - w)) / max(float(np.max(np.abs(w))), 1e-300)) for g, w in zip(got, want)]


def read(d, f):
    return open(os.path.join(d, f)).read()


dq = "".join(f"#define {d.replace('=', ' ')}\n" for d in os.environ.get("DEFS", "").split()) + (open(os.environ["DQ"]).read() if os.environ.get("DQ")
                                                                                   else read(SRC, "hierarchical_bwd_dq.cu"))
for m in filter(None, os.environ.get("MUT", "").split(";;")):
    a, b = m.split("=>")
    assert a in dq, a
    dq = dq.replace(a, b)
new = emu([read(SRC, "hierarchical_bwd.cu"), read(SRC, "hierarchical_bwd_chunk.cu"), dq, read(SRC, "hierarchical_bwd_dkdv.cu")])
base = emu([read(SRC, "hierarchical_bwd.cu"), read(os.path.join(HERE, "s17a17_base"), "hierarchical_bwd_chunk.cu.txt"),
            read(os.path.join(HERE, "s17a17_base"), "hierarchical_bwd_dq.cu.txt"), read(SRC, "hierarchical_bwd_dkdv.cu")])
TC = [(150, 64, 64, 32, 0, 0.0, "float32", True, 1), (70, 33, 17, 32, 21, 0.0, "float32", True, 2),
      (100, 64, 64, 32, 0, 60.0, "float32", True, 7), (90, 16, 5, 16, 0, 0.0, "float32", True, 3),
      (61, 16, 16, 32, 5, 0.0, "float32", True, 4), (200, 64, 64, 16, 37, 0.0, "float32", True, 9)]
FF = [(150, 64, 64, 32, 0, 60.0, "float32", False, 5), (61, 64, 64, 32, 21, 0.0, "float32", False, 8),
      (130, 64, 64, 32, 0, 0.0, "float32", False, 10), (45, 16, 5, 16, 0, 0.0, "float64", False, 6),
      (70, 16, 16, 16, 9, 0.0, "float64", False, 11)]
cases = {"tc": TC, "ffma": FF}.get(sys.argv[1] if len(sys.argv) > 1 else "", TC + FF)
EQ, TOL = os.environ.get("EQ") == "1", float(os.environ.get("TOL", "1e-5"))
REF = os.environ.get("REF") == "1"  # each gradient's error against float64 autograd of the reference, tree and main
bad = 0
for c in cases:
    a, b = grads(new, *c), grads(base, *c)
    if REF:
        (a, ea), (b, eb) = a, b
        print(f"     T={c[0]} dk={c[1]} dv={c[2]} C={c[3]} P={c[4]} spike={c[5]} {c[6]} tc={c[7]}: error against the reference"
              " (tree / main): " + ", ".join(f"{n} {x:.1e} / {y:.1e}" for n, x, y in zip(["dq", "dk", "dlv", "dlam", "da"], ea, eb)))
    names = ["dq", "dk", "dlv", "dlam", "da"]
    same = [np.array_equal(x, y) for x, y in zip(a, b)]
    rel = [float(np.max(np.abs(x - y)) / max(float(np.max(np.abs(y))), 1e-300)) for x, y in zip(a, b)]
    fin = all(np.isfinite(x).all() for x in a)
    ok = fin and (all(s for n, s in zip(names, same) if n != "dlam") and rel[3] < 1e-5 if EQ else max(rel) < TOL)
    bad += not ok
    print(f"{'ok  ' if ok else 'BAD '} T={c[0]} dk={c[1]} dv={c[2]} C={c[3]} P={c[4]} spike={c[5]} {c[6]} tc={c[7]}: "
          + ", ".join(f"{n} {'bit-equal' if s else f'{r:.1e}'}" for n, s, r in zip(names, same, rel)), flush=True)
print(f"{len(cases) - bad} of {len(cases)} cases " + ("bit-equal (dlam 1e-5)" if EQ else f"within {TOL:g}"))
sys.exit(1 if bad else 0)
