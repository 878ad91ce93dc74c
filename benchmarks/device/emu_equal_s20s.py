"""Session 20, s20s (CPU, one-off): the two-tier scan's emulated output (tests/test_cupy_gated_delta.py's ``Emulated``:
the CUDA sources through g++) of the tree in the current directory on fixed inputs, saved; then two trees' saves
compared bit for bit. Cases: T = 1100, 2700, 6000; float32 / bfloat16 inputs; C = 16 (d_k 16, d_v 40) / 64 (d_k 64,
d_v 48); modes: the defaults, the grouped form from any size (TIER_MIN_CHUNKS = COARSE_GROUP_PERIODS = 0; T3FILL's
fold), the same with T3FILL off (gd_cfill). Slow decays, no resets: the coarse levels reach the output.
    (cd TREE_A && python /path/emu_equal_s20s.py run a.npz [T-dtype-C,..]); (cd TREE_B && ... run b.npz)
    python emu_equal_s20s.py cmp a.npz b.npz"""
import os
import sys
import time

import numpy as np


def run(path, only=None):
    sys.path[:0] = [os.getcwd(), os.path.join(os.getcwd(), "tests")]
    import test_cupy_gated_delta as t
    from lsattn.backends.cupy import gated_delta as cgd

    assert cgd.__file__.startswith(os.getcwd()), cgd.__file__
    emu, launched, real_tk = t.Emulated(), [], t.Emulated._tk

    def tk(self, op, cfg, name):
        fn, block, smem = real_tk(self, op, cfg, name)
        return (lambda *a, **k: launched.append(name) or fn(*a, **k)), block, smem

    t.Emulated._tk = tk
    cases = [(T, dt, C) for T in (1100, 2700, 6000) for dt in ("float32", "bfloat16") for C in (16, 64)]
    cases = [c for c in cases if not only or f"{c[0]}-{c[1]}-{c[2]}" in only.split(",")]
    modes = {"default": {}, "grouped": {"TIER_MIN_CHUNKS": 0, "COARSE_GROUP_PERIODS": 0},
             "grouped_cfill": {"TIER_MIN_CHUNKS": 0, "COARSE_GROUP_PERIODS": 0, "T3FILL": False}}
    defaults = {k: getattr(cgd, k) for k in ("TIER_MIN_CHUNKS", "COARSE_GROUP_PERIODS", "T3FILL")}
    res = {}
    for T, dt, C in cases:
        dk, dv = (16, 40) if C == 16 else (64, 48)
        arrays = list(t.make(21, (2,), T, dk, dv, keys="normalised", decay="zero"))
        arrays[3] = -0.003 * np.random.default_rng(22).random(arrays[3].shape)
        half = "bf16" if dt == "bfloat16" else ""
        bits = ([t.narrow(np, x.astype(np.float32), "bf16").view(np.uint16) for x in arrays] if half else
                [x.astype(dt) for x in arrays])
        for m, over in modes.items():
            for k, v in {**defaults, **over}.items():
                setattr(cgd, k, v)
            launched.clear()
            t0 = time.time()
            out, _ = cgd.compute(emu, *bits, C, 0, None, False, half)
            res[f"{T}-{dt}-{C}-{m}"] = np.asarray(out)
            print(f"{T}-{dt}-{C}-{m}", f"{time.time() - t0:.1f}s", sorted(set(launched)), flush=True)
    np.savez(path, **res)


def cmp(pa, pb):
    a, b = np.load(pa), np.load(pb)
    assert sorted(a.files) == sorted(b.files)
    for k in sorted(a.files):
        x, y = a[k], b[k]
        assert x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x.view(np.uint8), y.view(np.uint8)), k
    g = [k for k in a.files if k.endswith("-grouped")]
    d = {k: float(np.abs(a[k] - a[k + "_cfill"]).max()) for k in g}
    print(f"{len(a.files)} outputs bit-identical; T3FILL on vs off (the check's sensitivity): differ in "
          f"{sum(v > 0 for v in d.values())} of {len(g)}, max {max(d.values()):.2e}")


if __name__ == "__main__":
    (run if sys.argv[1] == "run" else cmp)(*sys.argv[2:])
