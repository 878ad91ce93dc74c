"""s19g16 (issue 16): the Gated DeltaNet bf16 training step outside the scan backward, A/B of its switches.

Switches (``lsattn.backends.cupy.gated_delta``): ``GRAD_BF16`` (bfloat16 inputs under autograd reach gd_forms /
gd_forms_bwd as they are: no float32 copies, gradients written in bfloat16 by gd_forms_bwd_x1's TI_BF16 build, lam's
float32 copy from gd_forms) and ``forward.checks_grad_inputs`` ("chk": the prologue's finiteness check answered by
gd_forms under autograd instead of its own pass); ``_autograd.SCAN_IN_PLACE`` ("inp": the scan's forward adds into
gd_forms' intra output in place, no copy of it). B=2 H=16 d=64, C=64, bf16.

    python ab_s19g16.py warm                 compile every kernel both builds launch (T = 512), nothing timed
    python ab_s19g16.py kernel T,T reps      kernel alone, interleaved: gd_forms_bwd_x1 float32 build on widened inputs
                                             (+ the 12 casts the off path makes) against the TI_BF16 build on the bf16
                                             inputs; gd_forms float32 against its bf16 build; the bf16 build's gradients
                                             against the float32 build's rounded (mismatching entries: 0 expected)
    python ab_s19g16.py public T,T reps      one fwd+bwd step as a user makes it (CUDA tensors, no backend=), builds
                                             on (all three), off (none), nochk (without chk), noinp (without inp)
                                             interleaved: medians,
                                             peak memory, the on build's gradients against off's
"""
import statistics
import sys
import time

import cupy
import numpy as np
import torch

import lsattn
from lsattn._chunktree import chunk_layout
from lsattn.backends.cupy import _autograd, gated_delta as cgd, gated_delta_bwd as gdb
from lsattn.backends.cupy._arrays import narrow, widen
from lsattn.backends.cupy._compile import CupyOps, make_config

B, H, D, C = 2, 16, 64, 64


def inputs(T, seed=0):
    g = torch.Generator(device="cuda").manual_seed(seed)
    q, k, v = (torch.randn((B, H, T, D), generator=g, device="cuda") for _ in range(3))
    k = k / k.norm(dim=-1, keepdim=True)
    a = torch.nn.functional.logsigmoid(torch.randn((B, H, T), generator=g, device="cuda") + 3.0)
    b = torch.rand((B, H, T), generator=g, device="cuda")
    lam = torch.rand((B, H, T, lsattn.num_levels(T)), generator=g, device="cuda") + 0.5
    return [x.to(torch.bfloat16) for x in (q, k, v, a, b, lam)]


def setb(name):
    cgd.GRAD_BF16 = name in ("on", "nochk", "noinp")
    cgd.forward.checks_grad_inputs = name in ("on", "noinp")
    _autograd.SCAN_IN_PLACE = name in ("on", "nochk")


def step(xs):
    for x in xs:
        x.grad = None
    lsattn.loglinear_gated_delta(*xs).float().square().mean().backward()


def public(Ts, reps):
    names = ("on", "off", "nochk", "noinp")
    for T in Ts:
        xs = [x.requires_grad_(True) for x in inputs(T)]
        grads = {}
        for name in names:  # warm-up, gradients, peak memory
            setb(name)
            step(xs)
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            step(xs)
            torch.cuda.synchronize()
            grads[name] = [x.grad.float() for x in xs]
            print(f"T={T} {name}: peak {(torch.cuda.max_memory_allocated() - base) / 2**20:.0f} MiB above the inputs",
                  flush=True)
        ms = {name: [] for name in names}
        for _ in range(reps):
            for name in names:  # interleaved
                setb(name)
                torch.cuda.synchronize()
                t = time.perf_counter()
                step(xs)
                torch.cuda.synchronize()
                ms[name].append(1e3 * (time.perf_counter() - t))
        med = {name: statistics.median(v) for name, v in ms.items()}
        print(f"public T={T} fwd+bwd ms (median of {reps}): " + " ".join(f"{n} {m:.3f}" for n, m in med.items())
              + f"  on-off {med['on'] - med['off']:+.3f} ({100 * (med['on'] / med['off'] - 1):+.1f}%)", flush=True)
        err = [float((a - b).abs().max() / b.abs().max()) for a, b in zip(grads["on"], grads["off"])]
        print(f"T={T} grads on vs off, max |diff| / max |off|: " + " ".join(
            f"{n} {e:.1e}" for n, e in zip(("dq", "dk", "dv", "da", "dbeta", "dlam"), err)), flush=True)
    setb("on")


def events_ms(fn, reps):
    e0, e1 = cupy.cuda.Event(), cupy.cuda.Event()
    fn()
    e0.record()
    for _ in range(reps):
        fn()
    e1.record()
    e1.synchronize()
    return cupy.cuda.get_elapsed_time(e0, e1) / reps


def kernel(Ts, reps):
    ops = CupyOps(cupy.cuda.Device().id)
    cfg = make_config("float", D, 16, C)
    for T in Ts:
        xs = [cupy.asarray(x.reshape((B * H,) + tuple(x.shape[2:])).view(torch.int16).contiguous()) for x in inputs(T)]
        wide = [widen(cupy, x, "bf16") for x in xs]
        lay = chunk_layout(0, T, C)
        n, L = lay.n_chunks, xs[5].shape[-1]
        BH = B * H
        rng = cupy.random.default_rng(1)
        shapes = [(BH, n, C, D), (BH, n, C, D), (BH, n, D, C), (BH, n, D, D), (BH, n), (BH, n, C, D)]
        grads = [rng.standard_normal(s, dtype=np.float32) for s in shapes]
        dlw = rng.standard_normal((BH, T, L), dtype=np.float32)
        s32 = gdb.Scan(cfg, T, 0, lay.first_chunk, n, 1, False, True)
        s16 = gdb.Scan(cfg, T, 0, lay.first_chunk, n, 1, False, True, "bf16")
        tq = [torch.as_tensor(x, device="cuda").view(torch.bfloat16) for x in xs]  # the off path's torch casts

        def bwd32():
            return gdb.forms_backward(ops, s32, *wide, grads)

        def bwd16():
            return gdb.forms_backward(ops, s16, *xs, grads, dlw)

        def casts():  # the off path: 6 widening casts (forward) and 6 narrowing ones (backward)
            w = [x.float() for x in tq]
            return [x.to(torch.bfloat16) for x in w]

        def f32():
            return cgd.forms(ops, cfg, *wide, 0)

        lamw = cupy.empty(xs[5].shape, dtype=cupy.float32)
        hcfg = s16.fcfg

        def f16():
            return cgd.forms(ops, hcfg, *xs, 0, lamw)

        got, want = bwd16(), list(bwd32())
        want[5] = want[5] + dlw
        bad = [int((g != narrow(cupy, w, "bf16")).sum()) for g, w in zip(got, want)]
        print(f"T={T} gd_forms_bwd_x1 bf16 build vs float32 build rounded: mismatching entries {bad}", flush=True)
        t = {k: [] for k in ("bwd32", "bwd16", "casts", "f32", "f16")}
        for _ in range(3):  # interleaved rounds
            for k, fn in (("bwd32", bwd32), ("bwd16", bwd16), ("casts", casts), ("f32", f32), ("f16", f16)):
                t[k].append(events_ms(fn, reps))
        m = {k: statistics.median(v) for k, v in t.items()}
        print(f"T={T} kernel ms: gd_forms_bwd_x1 f32 {m['bwd32']:.3f} bf16 {m['bwd16']:.3f} ({m['bwd16'] - m['bwd32']:+.3f}); "
              f"12 casts {m['casts']:.3f}; gd_forms f32 {m['f32']:.3f} bf16 {m['f16']:.3f} ({m['f16'] - m['f32']:+.3f})",
              flush=True)


def warm():
    xs = [x.requires_grad_(True) for x in inputs(512)]
    for name in ("on", "off"):
        setb(name)
        step(xs)
    torch.cuda.synchronize()
    kernel([512], 1)
    print("compiled", flush=True)


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "warm":
        warm()
    else:
        Ts = [int(x) for x in sys.argv[2].split(",")]
        reps = int(sys.argv[3]) if sys.argv[3:] else 5
        (kernel if mode == "kernel" else public)(Ts, reps)
