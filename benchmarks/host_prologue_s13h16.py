"""CPU model of the host work for a CUDA torch call of ``loglinear_gated_delta`` without state (issue 16,
s13h16): CPU torch tensors dispatched as CUDA ones (the cupy backend's ``serves`` / ``probe`` stood in for, the
prologue's ``_cuda_checks`` answering True, the backend's ``forward`` replaced by a stub that asks for the check's
pointer and returns a preallocated output), so the time measured is the prologue's alone: its plan cache,
``resolve``, the checks object, ``prepare``, the casts, the undefined rows. ``time.process_time`` per call (the
machine is shared: CPU time only), then a cProfile of the same loop (``--profile``). ``--backend``: the stub is the
backend's own ``forward`` with its direct path (``gated_delta._torch_call``), CuPy, the stream and the kernels
stood in for (the kernels do nothing): the host work of the whole call but CuPy's launch and torch's CUDA allocator.

    python benchmarks/host_prologue_s13h16.py [calls] [--profile] [--backend] [--bf16]
"""
import cProfile
import os
import pstats
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import lsattn  # noqa: E402
from lsattn import _nonfinite, backends  # noqa: E402
from lsattn.backends import cupy as cupy_backend  # noqa: E402


def stub_backend(out):
    """The cupy backend serving CPU torch tensors, its gated-delta forward a stub (the check's protocol kept)."""
    b = backends.get("cupy")
    b._status = (True, "ok")
    cupy_backend._kind = lambda a: "torch" if type(a).__module__.startswith("torch") else None
    flag = np.zeros(1, np.int32)

    def forward(q, k, v, a, beta, lam, chunk_size, state, return_state, check=None):
        if check is not None:
            check.pointer()
            check._wait = lambda: int(flag[0])
        return out, None

    forward.checks_inputs = True
    b._impls[("loglinear_gated_delta", False)] = forward
    _nonfinite._cuda_checks = lambda xp, arrays: True

    def pointer(self):
        self._buf = flag
        return flag.ctypes.data

    _nonfinite.KernelCheck.pointer = pointer


def real_backend():
    """The backend's forward and direct path on CPU tensors, the kernels no-ops (as test_torch_direct_path_emulated)."""
    import contextlib
    import types

    from lsattn.backends.cupy import gated_delta as cgd

    b = backends.get("cupy")
    b._impls.pop(("loglinear_gated_delta", False), None)
    sys.modules["cupy"] = types.SimpleNamespace(ndarray=type("ndarray", (), {}), cuda=types.SimpleNamespace(
        runtime=types.SimpleNamespace(getDevice=lambda: -1),
        Event=lambda **kw: types.SimpleNamespace(record=lambda *a: None, synchronize=lambda: None)))
    torch._C._cuda_getCurrentRawStream = lambda dev: 0
    cgd._external_stream = lambda ptr, dev: contextlib.nullcontext()
    noop = lambda *a, **kw: None  # noqa: E731
    cgd._launch = lambda op, dev, cfg, name: (noop, (256,), 0)
    cgd.array_kind = lambda a: "torch"


def main():
    calls = int(next((a for a in sys.argv[1:] if a.isdigit()), "2000"))
    B, H, T, d = 2, 16, 256, 64
    g = torch.Generator().manual_seed(0)
    # bfloat16 (--bf16): the output's rounding to bfloat16 is CPU work here (a kernel after gd_forms' launch on a GPU)
    for dtype in (torch.bfloat16, torch.float32) if "--bf16" in sys.argv else (torch.float32,):
        q, k, v = (torch.randn(B, H, T, d, generator=g).to(dtype) for _ in range(3))
        a = -torch.rand(B, H, T, generator=g).to(dtype)
        beta = torch.rand(B, H, T, generator=g).to(dtype)
        lam = torch.rand(B, H, T, lsattn.num_levels(T), generator=g).to(dtype)
        stub_backend(torch.empty(B, H, T, d, dtype=torch.float32 if dtype == torch.bfloat16 else dtype))
        if "--backend" in sys.argv:
            real_backend()
        f = lambda: lsattn.loglinear_gated_delta(q, k, v, a, beta, lam)  # noqa: E731
        for _ in range(50):
            f()
        best = []
        for _ in range(9):
            t = time.process_time()
            for _ in range(calls):
                f()
            best.append((time.process_time() - t) / calls * 1e6)
        print(f"{dtype}: prologue {min(best):.1f} us CPU per call (best of 9 x {calls}; all {' '.join(f'{x:.1f}' for x in best)})")
        if "--profile" in sys.argv:
            pr = cProfile.Profile()
            pr.enable()
            for _ in range(calls):
                f()
            pr.disable()
            pstats.Stats(pr).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
