"""In-process A/B of the host's time before gd_forms' launch in a public ``loglinear_gated_delta`` forward (issue 16,
s23a): main's host code (``s23a_base/``: main's ``_prologue.py``, ``backends/cupy/gated_delta.py`` and
``_rawlaunch.py``, loaded beside this tree's as modules of their own) against this tree's, the two alternated call by
call in one process (the H200 host's speed moved ~2x between processes in batch 1), B=2, H=16, d=64 bf16 CUDA torch
tensors (the forward table's inputs).

A mode is the public function's ``run`` (lsattn.gated_delta's global) and the cupy backend's registered ``forward``;
main's ``forward`` builds its own plans with main's ``_rawlaunch`` (ctypes' ``cuLaunchKernel``). Per call (the latency
protocol of ``bench_gpu.cuda_time``: synchronize, event, call, event, wait): the CUDA-event latency and host stamps (us
after the call's start) at the backend's ``forward``, ``_torch_call``, gd_forms' launch (``RawLaunch.__call__``'s entry
and return); medians per mode; the pipelined time per mode (10 calls back to back / 10, rounds alternated); the
outputs of the two modes compared bit for bit.

    python benchmarks/device/gd_host_ab_s23a.py [T[,T..]] [calls per mode]

``s23a_base/`` was removed after session 23's run (benchmarks/NOTES.md, s23a); to run this again:
``for f in _prologue.py backends/cupy/gated_delta.py backends/cupy/_rawlaunch.py; do git show
c5f8ac2:lsattn/$f > benchmarks/device/s23a_base/$(basename $f); done`` (after ``mkdir benchmarks/device/s23a_base``).
"""
import collections
import functools
import importlib.util
import os
import statistics
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), os.path.dirname(os.path.dirname(HERE))]
import lsattn  # noqa: E402
from bench_gpu_gated_delta import inputs  # noqa: E402
from lsattn import _prologue, backends, gated_delta as public  # noqa: E402
from lsattn.backends.cupy import _rawlaunch, gated_delta as cgd  # noqa: E402

STAMPS = []


def stamp(name):
    STAMPS.append((name, time.perf_counter_ns()))


def load(name, file):
    """main's ``file`` (s23a_base/) as the module ``name`` (its relative imports: this tree's package)."""
    spec = importlib.util.spec_from_file_location(name, os.path.join(HERE, "s23a_base", file))
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


base_raw = load("lsattn.backends.cupy._rawlaunch_s23base", "_rawlaunch.py")
base_cgd = load("lsattn.backends.cupy._gated_delta_s23base", "gated_delta.py")
base_cgd.raw_launch = base_raw.raw_launch  # main's plans launch through main's _rawlaunch
base_pro = load("lsattn._prologue_s23base", "_prologue.py")


def stamped(fn, name):
    @functools.wraps(fn)  # (forward's checks_inputs kept)
    def wrapped(*a, **kw):
        stamp(name)
        return fn(*a, **kw)
    return wrapped


def stamp_launches(cls):
    call = cls.__call__

    def wrapped(self, *a):
        stamp("launch")
        call(self, *a)
        stamp("launch_ret")
    cls.__call__ = wrapped


for mod in (cgd, base_cgd):
    mod._torch_call = stamped(mod._torch_call, "torch_call")
for mod in (_rawlaunch, base_raw):
    stamp_launches(mod.RawLaunch)
KEY = ("loglinear_gated_delta", False)
CUPY = backends.get("cupy")
MODES = {"main": (base_pro.run, stamped(base_cgd.forward, "forward")),
         "s23a": (_prologue.run, stamped(cgd.forward, "forward"))}


def use(mode):
    public.run, CUPY._impls[KEY] = MODES[mode]  # (an item of _impls: no backend attribute set, the memo kept)


def one(f):
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    STAMPS.clear()
    a.record()
    t0 = time.perf_counter_ns()
    out = f()
    t1 = time.perf_counter_ns()
    b.record()
    b.synchronize()
    got = {}
    for name, t in STAMPS:  # the first of each: gd_forms' launch
        got.setdefault(name, (t - t0) / 1e3)
    got["return"] = (t1 - t0) / 1e3
    got["latency"] = a.elapsed_time(b) * 1e3
    return got, out


def main():
    Ts = [int(t) for t in (sys.argv[1] if len(sys.argv) > 1 else "8192,32768").split(",")]
    calls = int(sys.argv[2]) if len(sys.argv) > 2 else 40
    tiny = torch.zeros(1, device="cuda")
    for _ in range(5):
        one(lambda: tiny.add_(1))
    floor = statistics.median(one(lambda: tiny.add_(1))[0]["latency"] for _ in range(calls))
    print(f"tiny kernel from an idle GPU: {floor:.0f} us (median of {calls})")
    for T in Ts:
        x = inputs(T, torch.bfloat16)
        f = lambda: lsattn.loglinear_gated_delta(*x)  # noqa: E731
        outs = {}
        for mode in MODES:
            use(mode)
            for _ in range(3):
                outs[mode] = f()
            assert CUPY.implementation("loglinear_gated_delta") is MODES[mode][1]
        same = torch.equal(outs["main"], outs["s23a"])
        runs = collections.defaultdict(list)
        for i in range(calls):  # call by call, the order swapped every other pair
            for mode in (("main", "s23a") if i % 2 else ("s23a", "main")):
                use(mode)
                runs[mode].append(one(f)[0])
        pipe = collections.defaultdict(list)
        for i in range(6):
            for mode in (("main", "s23a") if i % 2 else ("s23a", "main")):
                use(mode)
                torch.cuda.synchronize()
                t = time.perf_counter()
                for _ in range(10):
                    f()
                torch.cuda.synchronize()
                pipe[mode].append((time.perf_counter() - t) * 100)
        print(f"T={T} bf16 ({calls} calls per mode, alternated; outputs of the two modes bit-equal: {same})")
        for mode, rs in runs.items():
            med = {k: statistics.median(r[k] for r in rs if k in r) for k in rs[-1]}
            first = [r["launch"] for r in rs]
            print(f"  {mode:5s} latency {med['latency']:.0f} us, pipelined {1e3 * statistics.median(pipe[mode]):.0f} us; "
                  f"gd_forms' launch min {min(first):.0f} median {med['launch']:.0f} max {max(first):.0f} us; stamps: "
                  + ", ".join(f"{k} {v:.1f}" for k, v in med.items() if k != "latency"), flush=True)
        x = f = outs = None  # noqa: F841
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
