"""CPU model of the host work of one ``loglinear_log_attention`` training step on the cupy backend (issue 17, s15f17):
CPU torch tensors dispatched as CUDA ones (the cupy backend's ``serves`` / ``probe`` stood in for), the autograd Function
(``hierarchical_bwd``) and the host modules (``hierarchical.py``, ``hierarchical_bwd.py``, ``_compile.CupyOps``) as on a
GPU, with NumPy for CuPy (``on_gpu`` yields NumPy views and a ``CupyOps`` whose kernels are no-ops) and the checks by
the reductions (``_nonfinite.KERNEL`` off: the GPU's extrema launch needs a device). So the Python of the call, not
CuPy's or the driver's costs. ``time.process_time`` per step (the machine is shared: CPU time only), then a cProfile.

    python benchmarks/host_hier_s15f17.py [steps] [--profile] [--T 256] [--fwd]
"""
import contextlib
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
from lsattn.backends.cupy import _arrays, _compile, hierarchical as chi, hierarchical_bwd as chb  # noqa: E402


def stub():
    """The cupy backend serving CPU torch tensors through NumPy, its kernels no-ops."""
    b = backends.get("cupy")
    b._status = (True, "ok")
    cupy_backend._kind = lambda a: "torch" if type(a).__module__.startswith("torch") else None
    _nonfinite._cuda_checks = lambda xp, arrays: True
    _nonfinite.KERNEL = False
    noop = lambda *a, **kw: None  # noqa: E731
    _compile._launch = lambda op, dev, cfg, name: (noop, (256,), 0)
    ops = _compile.CupyOps.__new__(_compile.CupyOps)
    ops.xp, ops.device_id = np, 0

    def to_cp(x):
        return x.detach().numpy(), _arrays._half(x)

    def back(x, half):
        return torch.from_numpy(np.ascontiguousarray(x))

    @contextlib.contextmanager
    def on_emu(like):
        yield to_cp, back, ops

    chi.on_gpu = chb.on_gpu = on_emu


def main():
    steps = int(next((a for a in sys.argv[1:] if a.isdigit()), "300"))
    T = int(sys.argv[sys.argv.index("--T") + 1]) if "--T" in sys.argv else 256
    B, H, d = 2, 16, 64
    stub()
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(B, H, T, d, generator=g) * 0.1 for _ in range(3))
    a = -torch.rand(B, H, T, generator=g)
    lw = torch.randn(B, H, T, lsattn.num_levels(T), generator=g)
    xs = [x.clone().requires_grad_(True) for x in (q, k, v)]
    fwd_only = "--fwd" in sys.argv

    def step():
        for x in xs:
            x.grad = None
        out = lsattn.loglinear_log_attention(*xs, lw, log_decay=a)
        if not fwd_only:
            out.float().square().mean().backward()

    for _ in range(20):
        step()
    best = []
    for _ in range(7):
        t = time.process_time()
        for _ in range(steps):
            step()
        best.append((time.process_time() - t) / steps * 1e6)
    print(f"T={T} fp32 {'fwd' if fwd_only else 'fwd+bwd'}: {min(best):.1f} us CPU per step (best of 7 x {steps}; "
          f"all {' '.join(f'{x:.0f}' for x in best)})")
    if "--profile" in sys.argv:
        pr = cProfile.Profile()
        pr.enable()
        for _ in range(steps):
            step()
        pr.disable()
        st = pstats.Stats(pr)
        st.sort_stats("tottime").print_stats(30)
        st.sort_stats("cumtime").print_stats(45)


if __name__ == "__main__":
    main()
