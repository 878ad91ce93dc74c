"""Which call of G5's packed-vs-per-segment check faults (CUDA_LAUNCH_BLOCKING=1, one call per process)."""
import subprocess
import sys

CASE = """
import torch, lsattn
g = torch.Generator(device='cuda').manual_seed(0)
op = getattr(lsattn, '{op}')
q, k, v = (torch.randn(3, 2, 3000, 16, device='cuda', dtype=torch.{dt}, generator=g) for _ in range(3))
a, b = {a}, {b}
if a is None:
    y = op(q, k, v, cu_seqlens=[0, 100, 101, 1500, 3000])
else:
    y = op(q[:, a:b], k[:, a:b], v[:, a:b])
torch.cuda.synchronize()
print('ok', float(y.abs().max()))
"""
for op in ("exp_kernel_attention", "log_attention"):
    for dt in ("float64", "float32"):
        for a, b in ((None, None), (0, 100), (100, 101), (101, 1500), (1500, 3000)):
            r = subprocess.run([sys.executable, "-c", CASE.format(op=op, dt=dt, a=a, b=b)], capture_output=True, text=True,
                               env={**__import__("os").environ, "CUDA_LAUNCH_BLOCKING": "1"}, timeout=60)
            last = (r.stdout.strip().splitlines() or [""])[-1]
            err = [ln for ln in r.stderr.splitlines() if "Error" in ln or "error" in ln][-2:]
            print(op, dt, a, b, "rc", r.returncode, last, err, flush=True)
