"""Issue 17, s12e17: where bf16 ``log_attention`` spends its time against ``exp_kernel_attention``, and
the prologue's check modes (``_nonfinite.FOREACH`` against ``_nonfinite.KERNEL``).

    python benchmarks/device/ek_log_s12e17.py warm                  # compile every kernel the timings use
    python benchmarks/device/ek_log_s12e17.py profile [T ...]       # bf16 fwd and fwd+bwd, per kernel (default 8192 16384 32768)
    python benchmarks/device/ek_log_s12e17.py checks [T ...]        # the check modes, all five operators (default 128 8192)

B=2, H=16, d=64 CUDA torch tensors, public calls (no ``backend=``); inputs as ``prologue_s9c17.make``.
``profile``: per call, the latency (median CUDA-event time of one call, empty queue, 20 reps), then
torch.profiler's device time per kernel (per call, of 5 calls), largest first, and the total.
``checks``: per operator / T / dtype, the check modes interleaved (3 rounds, median of the rounds; ``MODES``):
latency (10 reps), pipelined (20 calls back to back, per call) and host per call, then the device
time of the checks' own kernels and copies in one call (torch.profiler: reductions, ``_foreach``,
``lsattn_extrema``, the copy), and the host time of ``_nonfinite.checks`` alone (median of 200, with
the wait for its copy).
"""
from __future__ import annotations

import statistics
import sys

import torch

sys.path[:0] = ["benchmarks", "benchmarks/device"]
import lsattn  # noqa: E402
from bench_gpu import cuda_time  # noqa: E402
from lsattn import _nonfinite  # noqa: E402
from prologue_s9c17 import make, pipelined, profiled  # noqa: E402

B, H, D = 2, 16, 64


def _inputs(T, dtype, grad=False):
    g = torch.Generator(device="cuda").manual_seed(0)
    q, k = ((torch.randn(B, H, T, D, generator=g, device="cuda") * D ** -0.5).to(dtype) for _ in range(2))
    v = torch.randn(B, H, T, D, generator=g, device="cuda").to(dtype)
    return [x.requires_grad_(grad) for x in (q, k, v)]


def _calls(T, dtype):
    """name -> fn: exp / log, fwd and fwd+bwd (``out.float().square().mean()``), bf16."""
    xs, ls = _inputs(T, dtype), _inputs(T, dtype, grad=True)

    def train(f):
        def run():
            for x in ls:
                x.grad = None
            f(*ls).float().square().mean().backward()
        return run

    return {"exp fwd": lambda: lsattn.exp_kernel_attention(*xs), "log fwd": lambda: lsattn.log_attention(*xs),
            "exp train": train(lsattn.exp_kernel_attention), "log train": train(lsattn.log_attention)}


def per_kernel(fn, n=5, match=None):
    """{kernel name: (us per call, launches per call)} of ``fn`` (torch.profiler, CUDA activity)."""
    prof = profiled(fn, n)
    per = {}
    for e in prof.events():
        if e.device_type == torch.autograd.DeviceType.CUDA:
            name = e.name[:70]
            if match is not None and not match(name):
                continue
            us, c = per.get(name, (0.0, 0))
            per[name] = (us + e.time_range.elapsed_us(), c + 1)
    return {k: (us / n, c / n) for k, (us, c) in per.items()}


def warm():
    for T in (128, 2048):
        for dt in (torch.float32, torch.bfloat16):
            for name, fn in list(make(T, dt).items()) + list(_calls(T, dt).items()):
                for mode in MODES:
                    _mode(mode)
                    try:
                        fn()
                    except Exception as exc:  # noqa: BLE001
                        print(f"warm T={T} {dt} {name} {mode} fails: {type(exc).__name__}: {exc}"[:200], flush=True)
    torch.cuda.synchronize()
    _mode(DEFAULT)
    print("warm done", flush=True)


def profile_main(Ts):
    for T in Ts:
        calls = _calls(T, torch.bfloat16)
        for name, fn in calls.items():
            lat = cuda_time(fn, reps=20)
            per = per_kernel(fn)
            tot = sum(us for us, _ in per.values())
            print(f"T={T} bf16 {name:9s} latency {lat:8.3f} ms  device {tot / 1e3:8.3f} ms  launches "
                  f"{sum(c for _, c in per.values()):5.1f}", flush=True)
            for k, (us, c) in sorted(per.items(), key=lambda kv: -kv[1][0])[:14]:
                print(f"      {us:9.1f} us  x{c:4.1f}  {k}", flush=True)
        del calls
        torch.cuda.empty_cache()


#: the check modes this tree has: "reduce" (one reduction per array), "foreach" (torch's multi-tensor
#: max |x| / max, ``_nonfinite.FOREACH``), "kernel" (one launch, ``_nonfinite.KERNEL``)
MODES = ("reduce",) + tuple(m for m, flag in (("foreach", "FOREACH"), ("kernel", "KERNEL")) if hasattr(_nonfinite, flag))
DEFAULT = next((m for m, flag in (("kernel", "KERNEL"), ("foreach", "FOREACH")) if getattr(_nonfinite, flag, False)), "reduce")


def _mode(mode):
    for m, flag in (("foreach", "FOREACH"), ("kernel", "KERNEL")):
        if hasattr(_nonfinite, flag):
            setattr(_nonfinite, flag, mode == m)


_CHECK_KERNELS = ("reduce", "foreach", "Reduce", "lsattn_extrema", "Memcpy", "aminmax", "CatArray")


def checks_main(Ts, rounds=3):
    for T in Ts:
        for tag, dt in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            calls = make(T, dt)
            for name, fn in calls.items():
                res = {m: [] for m in MODES}
                for _ in range(rounds):
                    for mode in res:
                        _mode(mode)
                        lat = cuda_time(fn, reps=10)
                        pipe, host = pipelined(fn)
                        res[mode].append((lat, pipe, host))
                for mode, rows in res.items():
                    _mode(mode)
                    lat, pipe, host = (statistics.median(r[i] for r in rows) for i in range(3))
                    chk = per_kernel(fn, match=lambda s: any(w in s for w in _CHECK_KERNELS))
                    dev = sum(us for us, _ in chk.values())
                    print(f"T={T} {tag} {name:13s} {mode:8s} latency {lat:7.3f}  pipelined {pipe:7.3f}  host {host:7.3f} ms"
                          f"  checks' device {dev:6.1f} us ({sum(c for _, c in chk.values()):.0f} ops)", flush=True)
            del calls
            torch.cuda.empty_cache()
    _mode(DEFAULT)


def main():
    argv = sys.argv[1:]
    what = argv.pop(0) if argv else "profile"
    Ts = [int(x) for x in argv if x.isdigit()]
    print(torch.cuda.get_device_name(0), what, " ".join(argv), flush=True)
    if what == "warm":
        return warm()
    if what == "checks":
        return checks_main(Ts or [128, 8192])
    return profile_main(Ts or [8192, 16384, 32768])


if __name__ == "__main__":
    main()
