"""Line by line, the host side of the public bf16 ``loglinear_gated_delta`` fwd+bwd step (issue 16, session 29):
the fwd+bwd table's step at T (default 8192; the host's work does not depend on T but for the finiteness check's one
wait) under line_profiler (a wheel in .whl/), 9 steps from an idle GPU, per line us totals over the 9.

    python benchmarks/device/host_lines_s29.py [T]
"""
import os
import sys

import torch
from line_profiler import LineProfiler

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench_gpu_gated_delta import ours_train_step  # noqa: E402
from lsattn import _prologue, gated_delta as api  # noqa: E402
from lsattn.backends.cupy import _arrays, _autograd, _compile, gated_delta, gated_delta_bwd  # noqa: E402


def main():
    T = int(sys.argv[1]) if len(sys.argv) > 1 else 8192
    step = ours_train_step(T)
    fn = _autograd._gd_function()[2]
    lp = LineProfiler()
    for f in (step, api.loglinear_gated_delta, _prologue._run, _prologue._compute, gated_delta.forward,
              gated_delta_bwd.differentiable, fn.forward, fn.backward, gated_delta.forms, _compile.CupyOps.gd_forms,
              _compile._launch, _arrays.on_gpu, _arrays._torch_view, _arrays._from_cupy, gated_delta_bwd.scan_tiers,
              _compile.CupyOps.gd_tiers, gated_delta_bwd.tier_backward, gated_delta_bwd.forms_backward,
              _compile.CupyOps.gd_forms_bwd, _autograd._tier_kept):
        lp.add_function(getattr(f, "__wrapped__", f))
    for _ in range(9):
        torch.cuda.synchronize()
        lp.enable_by_count()
        step()
        lp.disable_by_count()
    torch.cuda.synchronize()
    lp.print_stats(output_unit=1e-6, stripzeros=True)


if __name__ == "__main__":
    main()
