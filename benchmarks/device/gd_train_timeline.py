"""Where one public bf16 ``loglinear_gated_delta`` fwd+bwd step spends its time (issue 16, session 29): the
fwd+bwd table's step (``bench_gpu_gated_delta.train``: ``(out.float() * dO.float()).sum().backward()``, B=2, H=16,
d=64) at the T given: its median CUDA-event latency from an idle GPU, then one step under torch.profiler through
``gd_timeline.timeline`` (every GPU operation with its start and length, the host phases, the GPU's idle gaps).

    python benchmarks/device/gd_train_timeline.py [T[,T...]]
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gd_timeline  # noqa: E402  (its host-phase spans installed on import)
from bench_gpu_gated_delta import ours_train_step  # noqa: E402


def main():
    for T in [int(t) for t in (sys.argv[1] if len(sys.argv) > 1 else "32768").split(",")]:
        step = ours_train_step(T)
        print(f"==== T={T} bf16 fwd+bwd: latency {gd_timeline.latency(step, 7):.3f} ms (median of 7, CUDA events)",
              flush=True)
        gd_timeline.timeline(step, f"train_{T}")
        step = None  # (its inputs freed before the next size)
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
