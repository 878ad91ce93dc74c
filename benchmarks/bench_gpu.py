"""GPU benchmark of the CuPy RawKernel backend against the peers it can import, in one run.

    python benchmarks/bench_gpu.py bench  [--out DIR] [--T 2048,8192,...] [--long]   # timings + table
    python benchmarks/bench_gpu.py check  [--out DIR]     # accuracy at benchmark sizes + per-kernel times
    python benchmarks/bench_gpu.py sanitize               # tiny runs of every kernel path (compute-sanitizer)
    python benchmarks/bench_gpu.py report RESULTS.json    # markdown table + PNG plot from a results file

Shapes: B=2, H=16, d_k=d_v=64 (the issue's), forward only, median of CUDA-event timings after
warm-up. Peers: fla-core's chunk_log_linear_attn (bf16, fp32) and chunk_simple_gla (bf16),
torch SDPA (causal, bf16), and the paper's logcumsumexp form of exp-kernel attention (fp32,
materialises (T, d_k, d_v)); each in its native layout. Ours: the public functions exactly as a
user calls them, no ``backend=``, on bfloat16 and float32 CUDA torch tensors (bfloat16 reaches the
tensor-core kernels as is). Peak memory: torch's allocator peak for torch peers; for ours, CuPy's
pool after a reset (what the call holds at its peak).

    python benchmarks/bench_gpu.py overhead [--out DIR]  # host time of the public call at T=8192 and T=1
    python benchmarks/bench_gpu.py logattn [--out DIR] [--T ...]  # log_attention vs exp_kernel_attention only
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

from _common import pyplot, utc_now, write_json

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

B, H, D = 2, 16, 64


# ---- helpers ---------------------------------------------------------------------------------------

def cuda_time(fn, warmup=2, reps=10, budget_s=4.0):
    """Median CUDA-event time in ms of ``fn()`` (torch's current stream)."""
    import torch

    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    t_start = time.perf_counter()
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
        if time.perf_counter() - t_start > budget_s and len(times) >= 3:
            break
    return statistics.median(times)


def cupy_ms(fn, reps, warmup=2):
    """Mean ms per call of ``reps`` back-to-back calls of ``fn()`` between two CuPy events on CuPy's
    current stream, after ``warmup`` calls (the kernel-alone A/B scripts under ``benchmarks/device``)."""
    import cupy

    for _ in range(warmup):
        fn()
    e0, e1 = cupy.cuda.Event(), cupy.cuda.Event()
    e0.record()
    for _ in range(reps):
        fn()
    e1.record()
    e1.synchronize()
    return cupy.cuda.get_elapsed_time(e0, e1) / reps


def events_ms(fn, n):
    """Mean ms per call of ``n`` back-to-back calls of ``fn()`` between two CUDA events on torch's current stream, from
    an idle GPU (n = 1: one call's latency, host included; n = 10: ~ the pipelined time; the device A/B scripts)."""
    import torch

    ev = [torch.cuda.Event(enable_timing=True) for _ in range(2)]
    torch.cuda.synchronize()
    ev[0].record()
    for _ in range(n):
        fn()
    ev[1].record()
    ev[1].synchronize()
    return ev[0].elapsed_time(ev[1]) / n


def kernel_ms(fn, calls=3):
    """Mean ms per call of each CUDA kernel over ``calls`` calls of ``fn()`` under torch.profiler (after one warm call)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(calls):
            fn()
        torch.cuda.synchronize()
    out = {}
    for e in prof.key_averages():
        us = getattr(e, "device_time_total", None)
        us = e.cuda_time_total if us is None else us
        if us:
            out[e.key] = us / 1e3 / calls
    return out


def peak_mem(fn):
    """Peak bytes allocated during fn(): torch allocator and CuPy pool together."""
    import cupy
    import torch

    torch.cuda.synchronize()
    pool = cupy.get_default_memory_pool()
    pool.free_all_blocks()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    base_t = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base_t) + pool.total_bytes()


def measure(name, fn, results, key, reps=10):
    import torch

    try:
        mem = peak_mem(fn)
        ms = cuda_time(fn, reps=reps)
        results[key] = {"ms": ms, "gb": mem / 1e9}
        print(f"  {name:42s} {ms:9.3f} ms  {mem / 1e9:7.2f} GB", flush=True)
    except Exception as exc:  # out of memory / shared memory, unsupported: recorded, not fatal
        msg = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"
        results[key] = {"error": msg}
        print(f"  {name:42s} fails: {msg}", flush=True)
    finally:
        try:
            import cupy

            torch.cuda.synchronize()
            cupy.get_default_memory_pool().free_all_blocks()
            torch.cuda.empty_cache()
        except Exception:
            pass


def device_info():
    import cupy
    import torch

    props = torch.cuda.get_device_properties(0)
    info = {
        "device": props.name,
        "sms": props.multi_processor_count,
        "date": utc_now(),
        "torch": torch.__version__,
        "cupy": cupy.__version__,
        "cuda_runtime": cupy.cuda.runtime.runtimeGetVersion(),
        "driver": cupy.cuda.runtime.driverGetVersion(),
    }
    try:
        import triton

        info["triton"] = triton.__version__
    except Exception:
        pass
    try:
        import fla

        info["fla"] = getattr(fla, "__version__", "?")
    except Exception as exc:
        info["fla"] = f"not importable: {exc}"
    return info


def ceilings():
    """Measured device-to-device bandwidth (read + write) and matrix rates (fp32 without TF32, bf16)."""
    import torch

    out = {}
    x = torch.empty(2 * 1024**3 // 4, dtype=torch.float32, device="cuda").normal_()
    y = torch.empty_like(x)
    ms = cuda_time(lambda: y.copy_(x), reps=10)
    out["bw_GBs"] = 2 * x.numel() * 4 / ms / 1e6
    del x, y
    prev = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    a = torch.randn(8192, 8192, device="cuda")
    ms = cuda_time(lambda: a @ a, reps=5)
    out["fp32_TFs"] = 2 * 8192**3 / ms / 1e9
    torch.backends.cuda.matmul.allow_tf32 = prev
    a = a.to(torch.bfloat16)
    ms = cuda_time(lambda: a @ a, reps=10)
    out["bf16_TFs"] = 2 * 8192**3 / ms / 1e9
    return out


# ---- inputs ------------------------------------------------------------------------------------------

def ll_inputs_bhtd(T, dtype, seed=0, bh=(B, H)):
    """(B, H, T, d) layout (ours): q, k, v, log_decay (B, H, T), level weights (B, H, T, L)."""
    import torch
    import lsattn

    g = torch.Generator(device="cuda").manual_seed(seed)
    shp = bh + (T, D)
    q = torch.randn(shp, generator=g, device="cuda", dtype=torch.float32) * D**-0.5
    k = torch.randn(shp, generator=g, device="cuda", dtype=torch.float32) * D**-0.5
    v = torch.randn(shp, generator=g, device="cuda", dtype=torch.float32)
    a = torch.nn.functional.logsigmoid(torch.randn(bh + (T,), generator=g, device="cuda") + 3.0)
    L = lsattn.num_levels(T)
    lam = torch.rand(bh + (T, L), generator=g, device="cuda") + 0.5
    return [x.to(dtype) for x in (q, k, v, a, lam)]


def to_fla(x):
    """(B, H, T, ...) -> (B, T, H, ...) contiguous."""
    return x.transpose(1, 2).contiguous()


# ---- the benchmark ---------------------------------------------------------------------------------

def bench(args):
    import torch
    import torch.nn.functional as Fn

    import lsattn

    info = device_info()
    print(json.dumps(info), flush=True)
    info["ceilings"] = ceilings()
    print("ceilings:", json.dumps(info["ceilings"]), flush=True)
    try:
        from fla.ops.log_linear_attn import chunk_log_linear_attn
        from fla.ops.simple_gla import chunk_simple_gla
    except Exception as exc:
        print("fla not importable:", exc)
        chunk_log_linear_attn = chunk_simple_gla = None

    Ts = [int(t) for t in args.T.split(",")]
    res = {"info": info, "shape": {"B": B, "H": H, "d_k": D, "d_v": D}, "rows": {}}
    for T in Ts:
        print(f"T = {T}", flush=True)
        row = res["rows"].setdefault(str(T), {})
        q, k, v, a, lam = ll_inputs_bhtd(T, torch.float32)
        qb, kb, vb, ab, lamb = (x.to(torch.bfloat16) for x in (q, k, v, a, lam))
        # log-linear Mamba-2
        measure("ours loglinear bf16 (public API)", lambda: lsattn.loglinear_attention(qb, kb, vb, ab, lamb), row,
                "ours_ll_bf16")
        measure("ours loglinear fp32 (public API)", lambda: lsattn.loglinear_attention(q, k, v, a, lam), row, "ours_ll_fp32")
        qh, kh, vh, ah, lamh = (x.to(torch.float16) for x in (q, k, v, a, lam))
        measure("ours loglinear fp16 (public API)", lambda: lsattn.loglinear_attention(qh, kh, vh, ah, lamh), row,
                "ours_ll_fp16")
        if chunk_log_linear_attn is not None:
            fq, fk, fv, fa, fl = (to_fla(x) for x in (qb, kb, vb, ab, lamb))
            measure("fla chunk_log_linear_attn bf16", lambda: chunk_log_linear_attn(fq, fk, fv, fa, fl), row, "fla_ll_bf16")
            fq, fk, fv, fa, fl = (to_fla(x) for x in (q, k, v, a, lam))
            measure("fla chunk_log_linear_attn fp32", lambda: chunk_log_linear_attn(fq, fk, fv, fa, fl), row, "fla_ll_fp32")
            del fq, fk, fv, fa, fl
        # exp-kernel attention
        measure("ours exp-kernel bf16 (public API)", lambda: lsattn.exp_kernel_attention(qb, kb, vb), row, "ours_ek_bf16")
        measure("ours exp-kernel fp32 (public API)", lambda: lsattn.exp_kernel_attention(q, k, v), row, "ours_ek_fp32")
        measure("ours exp-kernel fp16 (public API)", lambda: lsattn.exp_kernel_attention(qh, kh, vh), row, "ours_ek_fp16")
        _log_rows(lsattn, row, (qb, kb, vb), (q, k, v))
        del qh, kh, vh, ah, lamh
        if chunk_simple_gla is not None:
            fq, fk, fv, fa = (to_fla(x) for x in (qb, kb, vb, ab))
            measure("fla chunk_simple_gla bf16", lambda: chunk_simple_gla(fq, fk, fv, fa), row, "fla_sgla_bf16")
            del fq, fk, fv, fa
        measure("torch SDPA causal bf16", lambda: Fn.scaled_dot_product_attention(qb, kb, vb, is_causal=True), row, "sdpa_bf16")
        if T <= args.heinsen_max:
            measure("paper's logcumsumexp form fp32", lambda: heinsen_log_attention(q, k, torch.log(v.abs() + 1e-3)),
                    row, "heinsen_fp32")
        else:
            row["heinsen_fp32"] = {"error": "not run (T above --heinsen-max: (T, d_k, d_v) tensors)"}
        del q, k, v, a, lam, qb, kb, vb, ab, lamb
        torch.cuda.empty_cache()
    if args.long:
        res["long"] = {}
        for T in [1 << e for e in range(15, 21)]:
            print(f"long T = {T}", flush=True)
            row = res["long"].setdefault(str(T), {})
            q, k, v, a, lam = ll_inputs_bhtd(T, torch.float32)
            measure("ours loglinear fp32 (public API)",
                    lambda: lsattn.loglinear_attention(q, k, v, a, lam), row, "ours_ll_fp32", reps=3)
            del q, k, v, a, lam
            torch.cuda.empty_cache()
    path = os.path.join(args.out, "gpu_results.json")
    write_json(path, res)
    print("wrote", path)
    print(markdown(res))


def _log_rows(lsattn, row, bf16, fp32):
    """log_attention (log v = v: the same shapes, values of both signs as logs) on the tensors that
    exp_kernel_attention was timed on, bf16 and fp32."""
    measure("ours log_attention bf16 (public API)", lambda: lsattn.log_attention(*bf16), row, "ours_log_bf16")
    measure("ours log_attention fp32 (public API)", lambda: lsattn.log_attention(*fp32), row, "ours_log_fp32")


def logattn(args):
    """log_attention against exp_kernel_attention on the same shapes (B=2, H=16, d=64, forward)."""
    import torch

    import lsattn

    info = device_info()
    res = {"info": info, "shape": {"B": B, "H": H, "d_k": D, "d_v": D}, "rows": {}}
    for T in (int(t) for t in args.T.split(",")):
        print(f"T = {T}", flush=True)
        row = res["rows"].setdefault(str(T), {})
        q, k, v, _, _ = ll_inputs_bhtd(T, torch.float32)
        qb, kb, vb = (x.to(torch.bfloat16) for x in (q, k, v))
        measure("ours exp-kernel bf16 (public API)", lambda: lsattn.exp_kernel_attention(qb, kb, vb), row, "ours_ek_bf16")
        measure("ours exp-kernel fp32 (public API)", lambda: lsattn.exp_kernel_attention(q, k, v), row, "ours_ek_fp32")
        _log_rows(lsattn, row, (qb, kb, vb), (q, k, v))
        for h in ("bf16", "fp32"):
            print(f"  log_attention / exp_kernel_attention {h}: {_ratio(row, f'ours_ek_{h}', f'ours_log_{h}')}", flush=True)
        del q, k, v, qb, kb, vb
        torch.cuda.empty_cache()
    path = os.path.join(args.out, "gpu_logattn.json")
    write_json(path, res)
    print("wrote", path)


def heinsen_log_attention(q, k, log_v):
    """The paper's published causal form: log-cumsum-exp over (T, d_k, d_v) (memory T d_k d_v)."""
    import torch

    log_kv = torch.logcumsumexp(k.unsqueeze(-1) + log_v.unsqueeze(-2), dim=-3)  # (..., T, d_k, d_v)
    log_k = torch.logcumsumexp(k, dim=-2)  # (..., T, d_k)
    log_num = torch.logsumexp(q.unsqueeze(-1) + log_kv, dim=-2)
    log_den = torch.logsumexp(q + log_k, dim=-1)
    return log_num - log_den.unsqueeze(-1)


# ---- accuracy at benchmark sizes and per-kernel times ---------------------------------------------

class TimedOps:
    """Wraps _CupyOps: CUDA events around every launch, summed per kernel name."""

    def __init__(self, inner):
        self.inner, self.xp, self.times = inner, inner.xp, {}

    def __getattr__(self, name):
        fn = getattr(self.inner, name)
        import cupy

        def timed(*a, **kw):
            e0, e1 = cupy.cuda.Event(), cupy.cuda.Event()
            e0.record()
            fn(*a, **kw)
            e1.record()
            e1.synchronize()
            self.times[name] = self.times.get(name, 0.0) + cupy.cuda.get_elapsed_time(e0, e1)

        return timed


def rel_err(out, ref):
    out, ref = out.double(), ref.double()
    return float((out - ref).abs().max() / ref.abs().max())


def check(args):
    import cupy
    import torch

    import lsattn
    from lsattn import reference
    from lsattn.backends.cupy import _compile as cc, exp_kernel as cek, loglinear as cll

    print(json.dumps(device_info()), flush=True)
    out = {}
    # accuracy: loglinear at T=2048 (B*H=32), exp-kernel at T=1024 (B*H=4), reference float64 on GPU
    T = 2048
    q, k, v, a, lam = ll_inputs_bhtd(T, torch.float64)
    want = reference.loglinear_attention(q, k, v, a, lam)
    f32 = lsattn.loglinear_attention(*(x.float() for x in (q, k, v, a, lam)), backend="cupy")
    bf = lsattn.loglinear_attention(*(x.to(torch.bfloat16) for x in (q, k, v, a, lam)))
    want_bf = reference.loglinear_attention(*(x.to(torch.bfloat16).double() for x in (q, k, v, a, lam)))
    out["ll_fp32_relerr_T2048"] = rel_err(f32, want)
    out["ll_bf16_relerr_T2048"] = rel_err(bf, want_bf)
    del want, want_bf
    T = 1024
    q, k, v, a, lam = ll_inputs_bhtd(T, torch.float64, bh=(1, 4))
    q, k = q * 8, k * 8  # magnitudes where raw exp would be far off
    want = reference.exp_kernel_attention(q, k, v)
    f32 = lsattn.exp_kernel_attention(*(x.float() for x in (q, k, v)), backend="cupy")
    bf = lsattn.exp_kernel_attention(*(x.to(torch.bfloat16) for x in (q, k, v)))
    want_bf = reference.exp_kernel_attention(*(x.to(torch.bfloat16).double() for x in (q, k, v)))
    out["ek_fp32_relerr_T1024"] = rel_err(f32, want)
    out["ek_bf16_relerr_T1024"] = rel_err(bf, want_bf)
    print(json.dumps(out), flush=True)

    # per-kernel times (CUDA events around each launch; includes launch gaps)
    for T in [int(t) for t in args.T.split(",")]:
        q, k, v, a, lam = ll_inputs_bhtd(T, torch.float32)
        for label, xs, bf16 in (("fp32", (q, k, v, a, lam), False),
                                ("bf16", tuple(x.to(torch.bfloat16) for x in (q, k, v, a, lam)), True)):
            for op in ("ll", "ek"):
                dev = torch.cuda.current_device()
                ops = TimedOps(cc.CupyOps(dev))
                views = [cupy.from_dlpack(x.view(torch.int16) if bf16 else x) for x in xs]
                half = "bf16" if bf16 else ""
                run = (lambda: cll.compute(ops, *views, 64, 0, None, False, half)) if op == "ll" else \
                      (lambda: cek.compute(ops, *views[:3], True, None, False, None, half))
                run()
                cupy.cuda.Device().synchronize()
                ops.times = {}
                reps = 5
                for _ in range(reps):
                    run()
                times = {kk: round(vv / reps, 4) for kk, vv in ops.times.items()}
                out[f"kernels_{op}_{label}_T{T}"] = times
                print(f"T={T} {op} {label}: {times} total {sum(times.values()):.3f} ms", flush=True)
    # one decoding step for all 32 sequences at offset 32768 (fp32 states; 16 Fenwick levels)
    p = 32768
    q, k, v, a, lam = ll_inputs_bhtd(p + 1, torch.float32)
    _, st_ll = lsattn.loglinear_attention(q[..., :p, :], k[..., :p, :], v[..., :p, :], a[..., :p], lam[..., :p, :],
                                          return_state=True, backend="cupy")
    _, st_ek = lsattn.exp_kernel_attention(q[..., :p, :], k[..., :p, :], v[..., :p, :], return_state=True, backend="cupy")
    step = [x[..., p:, :] if x.ndim == 4 else x[..., p:] for x in (q, k, v, a, lam)]
    out["decode_ll_fp32_us"] = 1e3 * cuda_time(
        lambda: lsattn.loglinear_attention(*step, state=st_ll, return_state=True, backend="cupy"), reps=50)
    out["decode_ek_fp32_us"] = 1e3 * cuda_time(
        lambda: lsattn.exp_kernel_attention(*step[:3], state=st_ek, return_state=True, backend="cupy"), reps=50)
    # the same steps through the host logic on CuPy arrays, kernel time only (CUDA events per launch)
    dev = torch.cuda.current_device()
    cs = [cupy.from_dlpack(x.contiguous()) for x in step]
    lev = cupy.from_dlpack(st_ll.tensors["levels"])
    ek_state = tuple(cupy.from_dlpack(st_ek.tensors[n_]) for n_ in ("m", "S", "z"))
    for name, run in (("ll", lambda ops: cll.compute(ops, *cs, 64, p, lev, True)),
                      ("ek", lambda ops: cek.compute(ops, *cs[:3], True, ek_state, True))):
        ops = TimedOps(cc.CupyOps(dev))
        run(ops)
        ops.times = {}
        for _ in range(20):
            run(ops)
        out[f"decode_{name}_fp32_kernel_us"] = {kk: round(1e3 * vv / 20, 2) for kk, vv in ops.times.items()}
    print("decode step, public API on torch tensors (us):", out["decode_ll_fp32_us"], out["decode_ek_fp32_us"],
          "kernels only (us):", out["decode_ll_fp32_kernel_us"], out["decode_ek_fp32_kernel_us"], flush=True)
    write_json(os.path.join(args.out, "gpu_check.json"), out)


# ---- tiny runs for compute-sanitizer ------------------------------------------------------------------

def sanitize(args):
    import cupy

    import lsattn
    from lsattn.backends.cupy import exp_kernel as cek

    rng = np.random.default_rng(0)
    for dtype in ("float32", "float64"):
        for (T, dk, dv, C) in ((37, 3, 5, 16), (70, 64, 64, 64), (5, 128, 130, 32)):
            q, k = (cupy.asarray(rng.standard_normal((2, T, dk)), dtype=dtype) for _ in range(2))
            v = cupy.asarray(rng.standard_normal((2, T, dv)), dtype=dtype)
            a = cupy.asarray(-rng.random((2, T)), dtype=dtype)
            lam = cupy.asarray(rng.standard_normal((2, T, lsattn.num_levels(T + 100))), dtype=dtype)
            # log-linear: one call, then a stream with a state (offsets, decode steps)
            lsattn.loglinear_attention(q, k, v, a, lam, chunk_size=C, backend="cupy")
            st = None
            for lo, hi in ((0, T // 3), (T // 3, T // 3 + 1), (T // 3 + 1, T)):
                if hi > lo:
                    _, st = lsattn.loglinear_attention(q[:, lo:hi], k[:, lo:hi], v[:, lo:hi], a[:, lo:hi], lam[:, lo:hi],
                                                       chunk_size=C, state=st, return_state=True, backend="cupy")
            # exp-kernel: causal, with a late spike (fallback rows), stream with decode, non-causal
            k2 = k.copy()
            k2[:, T // 2] = 300.0
            cek.forward(q, k2, v, True, None, False, chunk_size=C)
            st = None
            for lo, hi in ((0, T // 2), (T // 2, T // 2 + 1), (T // 2 + 1, T)):
                if hi > lo:
                    _, st = lsattn.exp_kernel_attention(q[:, lo:hi], k[:, lo:hi], v[:, lo:hi], state=st,
                                                        return_state=True, backend="cupy")
            lsattn.exp_kernel_attention(q[:, : max(1, T // 2)], k, v, causal=False, backend="cupy")
            # log_attention (LOGV kernels): -inf values, a late value spike (exact rows), stream, non-causal
            lv = v.copy()
            lv[:, : T // 2, 0] = -float("inf")
            lv[:, T // 2:, 1] = 600.0
            lsattn.log_attention(q, k2, lv, backend="cupy")
            _, st = lsattn.log_attention(q[:, :-1], k[:, :-1], lv[:, :-1], return_state=True, backend="cupy")
            lsattn.log_attention(q[:, -1:], k[:, -1:], lv[:, -1:], state=st, backend="cupy")
            lsattn.log_attention(q[:, : max(1, T // 2)], k, lv, causal=False, backend="cupy")
            cupy.cuda.Device().synchronize()
            print("sanitize ok", dtype, T, dk, dv, C, flush=True)
    try:
        import torch

        for T, dk, dv in ((70, 64, 64), (37, 33, 5), (130, 128, 128)):
            q, k = (torch.randn(2, 3, T, dk, device="cuda").to(torch.bfloat16) for _ in range(2))
            v = torch.randn(2, 3, T, dv, device="cuda").to(torch.bfloat16)
            a = -torch.rand(2, 3, T, device="cuda").to(torch.bfloat16)
            lam = torch.randn(2, 3, T, lsattn.num_levels(T), device="cuda").to(torch.bfloat16)
            lsattn.loglinear_attention(q, k, v, a, lam)
            lsattn.exp_kernel_attention(q, k, v)
            _, st = lsattn.loglinear_attention(q[:, :, :-1], k[:, :, :-1], v[:, :, :-1], a[:, :, :-1], lam[:, :, :-1],
                                               return_state=True)
            lsattn.loglinear_attention(q[:, :, -1:], k[:, :, -1:], v[:, :, -1:], a[:, :, -1:], lam[:, :, -1:], state=st)
            _, st = lsattn.exp_kernel_attention(q[:, :, :-1], k[:, :, :-1], v[:, :, :-1], return_state=True)
            lsattn.exp_kernel_attention(q[:, :, -1:], k[:, :, -1:], v[:, :, -1:], state=st)
            for dt in (torch.float32, torch.float64):  # the backward kernels (torch autograd)
                xs = [x.detach().to(dt).requires_grad_(True) for x in (q, k, v, a, lam)]
                lsattn.loglinear_attention(*xs, chunk_size=32).square().mean().backward()
            h = [x.to(torch.float16) for x in (q, k, v, a, lam)]
            lsattn.loglinear_attention(*h)
            lsattn.exp_kernel_attention(*h[:3])
            k[:, :, T // 2] = 120.0  # late spike: flagged rows, exact fallback
            lsattn.exp_kernel_attention(q, k, v)
            torch.cuda.synchronize()
            print("sanitize ok bf16", T, dk, dv, flush=True)
    except ImportError:
        pass


# ---- host overhead of the public call ---------------------------------------------------------------

def overhead(args):
    """Host time of the public calls on CUDA torch tensors: a T=8192 forward and a T=1 decoding step
    at offset 4096 (B=2, H=16, d=64, float32 and bfloat16). Wall time per call with the GPU
    synchronised once per batch of calls (host-bound when the kernels are short), the kernels' own
    time (CUDA events around the call), and a cProfile of the decoding step (top functions)."""
    import cProfile
    import io
    import pstats

    import torch

    import lsattn

    out = {"info": device_info(), "lsattn": lsattn.__file__, "backend": args.backend}
    kw = {} if args.backend is None else {"backend": args.backend}
    p = 4096
    for label, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        q, k, v, a, lam = ll_inputs_bhtd(p + 8192, dtype)
        cut = lambda x, lo, hi: x[..., lo:hi, :] if x.ndim == 4 else x[..., lo:hi]  # noqa: E731
        pre = [cut(x, 0, p) for x in (q, k, v, a, lam)]
        if dtype == torch.bfloat16 and args.backend is not None:
            continue  # before: the public call cast half precision to float32
        _, st_ll = lsattn.loglinear_attention(*pre, return_state=True, **kw)
        _, st_ek = lsattn.exp_kernel_attention(*pre[:3], return_state=True, **kw)
        one = [cut(x, p, p + 1) for x in (q, k, v, a, lam)]
        long = [cut(x, p, p + 8192).contiguous() for x in (q, k, v, a, lam)]
        calls = {
            "ll_T8192": lambda: lsattn.loglinear_attention(*long, **kw),
            "ek_T8192": lambda: lsattn.exp_kernel_attention(*long[:3], **kw),
            "ll_T1_step": lambda: lsattn.loglinear_attention(*one, state=st_ll, return_state=True, **kw),
            "ek_T1_step": lambda: lsattn.exp_kernel_attention(*one[:3], state=st_ek, return_state=True, **kw),
        }
        for name, fn in calls.items():
            n = 20 if "8192" in name else 200
            for _ in range(3):
                fn()
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            host = (time.perf_counter() - t0) / n  # host side of one call (launches are asynchronous)
            torch.cuda.synchronize()
            wall = (time.perf_counter() - t0) / n
            gpu = cuda_time(fn, reps=20)
            out[f"{name}_{label}"] = {"host_us": 1e6 * host, "wall_us": 1e6 * wall, "event_us": 1e3 * gpu}
            print(f"{name:12s} {label}: host {1e6 * host:8.1f} us  wall {1e6 * wall:8.1f} us  "
                  f"events {1e3 * gpu:8.1f} us", flush=True)
        if label == "fp32":
            prof = cProfile.Profile()
            prof.enable()
            for _ in range(200):
                calls["ll_T1_step"]()
            prof.disable()
            torch.cuda.synchronize()
            s = io.StringIO()
            pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(25)
            out["profile_ll_T1_step"] = s.getvalue()
            print(s.getvalue()[:6000], flush=True)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, f"gpu_overhead{'_before' if args.backend else ''}.json"), "w") as f:
        json.dump(out, f, indent=1)


# ---- report --------------------------------------------------------------------------------------

COLS = [
    ("ours_ll_bf16", "ours log-linear bf16"),
    ("ours_ll_fp16", "ours log-linear fp16"),
    ("ours_ll_fp32", "ours log-linear fp32"),
    ("fla_ll_bf16", "fla chunk_log_linear_attn bf16"),
    ("fla_ll_fp32", "fla chunk_log_linear_attn fp32"),
    ("ours_ek_bf16", "ours exp-kernel bf16"),
    ("ours_ek_fp16", "ours exp-kernel fp16"),
    ("ours_ek_fp32", "ours exp-kernel fp32"),
    ("ours_log_bf16", "ours log_attention bf16"),
    ("ours_log_fp32", "ours log_attention fp32"),
    ("fla_sgla_bf16", "fla chunk_simple_gla bf16"),
    ("sdpa_bf16", "torch SDPA causal bf16"),
    ("heinsen_fp32", "paper's logcumsumexp fp32"),
]


def _cell(d):
    if not d:
        return "-"
    if "error" in d:
        return "fails" if "not run" not in d["error"] else "not run"
    return f"{d['ms']:.3f} ms, {d['gb']:.2f} GB"


def _ratio(row, a, b):
    x, y = row.get(a, {}), row.get(b, {})
    if "ms" in x and "ms" in y:
        return f"{y['ms'] / x['ms']:.2f}x"
    return "-"


def markdown(res):
    info = res["info"]
    lines = [f"Device: {info['device']} ({info.get('sms')} SMs), {info['date']}; torch {info.get('torch')}, "
             f"cupy {info.get('cupy')}, triton {info.get('triton')}, fla {info.get('fla')}.", ""]
    if "ceilings" in info:
        c = info["ceilings"]
        lines += [f"Measured ceilings: copy {c['bw_GBs']:.0f} GB/s (read + write), fp32 matmul (no TF32) "
                  f"{c['fp32_TFs']:.1f} TFLOP/s, bf16 matmul {c['bf16_TFs']:.0f} TFLOP/s.", ""]
    s = res["shape"]
    lines += [f"B={s['B']}, H={s['H']}, d_k=d_v={s['d_k']}, forward, median of CUDA-event timings; "
              "memory = peak bytes allocated by the call.", ""]
    lines += ["| T | " + " | ".join(n for _, n in COLS) + " |", "|" + "---|" * (len(COLS) + 1)]
    for T, row in res["rows"].items():
        lines.append(f"| {T} | " + " | ".join(_cell(row.get(key)) for key, _ in COLS) + " |")
    lines += ["", "Ratios (peer time / ours, > 1 means ours is faster):", "",
              "| T | fla log-linear bf16 / ours bf16 | fla log-linear fp32 / ours fp32 | fla simple_gla bf16 / ours exp-kernel bf16 | SDPA bf16 / ours exp-kernel bf16 | ours log_attention / ours exp-kernel bf16 | fp32 |",
              "|---|---|---|---|---|---|---|"]
    for T, row in res["rows"].items():
        lines.append(f"| {T} | {_ratio(row, 'ours_ll_bf16', 'fla_ll_bf16')} | {_ratio(row, 'ours_ll_fp32', 'fla_ll_fp32')} | "
                     f"{_ratio(row, 'ours_ek_bf16', 'fla_sgla_bf16')} | {_ratio(row, 'ours_ek_bf16', 'sdpa_bf16')} | "
                     f"{_ratio(row, 'ours_ek_bf16', 'ours_log_bf16')} | {_ratio(row, 'ours_ek_fp32', 'ours_log_fp32')} |")
    if res.get("long"):
        lines += ["", "Long sequences, ours log-linear fp32 (public API):", "", "| T | time | memory |", "|---|---|---|"]
        for T, row in res["long"].items():
            d = row.get("ours_ll_fp32", {})
            lines.append(f"| {T} | {_cell(d)} |" if "error" in d else f"| {T} | {d['ms']:.2f} ms | {d['gb']:.2f} GB |")
    return "\n".join(lines)


def report(args):
    with open(args.results) as f:
        res = json.load(f)
    md = markdown(res)
    print(md)
    if args.md:
        with open(args.md, "w") as f:
            f.write(md + "\n")
    plt = pyplot() if args.png else None
    if plt is not None:
        Ts = [int(t) for t in res["rows"]]
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
        groups = [("log-linear Mamba-2", ["ours_ll_bf16", "ours_ll_fp16", "ours_ll_fp32", "fla_ll_bf16", "fla_ll_fp32"]),
                  ("exp-kernel / softmax attention", ["ours_ek_bf16", "ours_ek_fp16", "ours_ek_fp32", "fla_sgla_bf16", "sdpa_bf16", "heinsen_fp32"])]
        names = dict(COLS)
        for ax, (title, keys) in zip(axes, groups):
            for key in keys:
                pts = [(T, res["rows"][str(T)].get(key, {}).get("ms")) for T in Ts]
                pts = [(t, m) for t, m in pts if m is not None]
                if pts:
                    ax.plot(*zip(*pts), marker="o", label=names[key], linestyle="-" if key.startswith("ours") else "--")
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel("T")
            ax.set_ylabel("ms (forward)")
            ax.set_title(title)
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8)
        fig.suptitle(f"{res['info']['device']}, {res['info']['date']}, B=2 H=16 d=64")
        fig.tight_layout()
        fig.savefig(args.png, dpi=120)
        print("wrote", args.png)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("bench")
    b.add_argument("--out", default=os.environ.get("OUT", "."))
    b.add_argument("--T", default="2048,8192,16384,32768")
    b.add_argument("--heinsen-max", type=int, default=16384)
    b.add_argument("--long", action="store_true")
    c = sub.add_parser("check")
    c.add_argument("--out", default=os.environ.get("OUT", "."))
    c.add_argument("--T", default="8192,32768")
    sub.add_parser("sanitize")
    g = sub.add_parser("logattn")
    g.add_argument("--out", default=os.environ.get("OUT", "."))
    g.add_argument("--T", default="2048,8192,32768")
    o = sub.add_parser("overhead")
    o.add_argument("--out", default=os.environ.get("OUT", "."))
    o.add_argument("--backend", default=None, help="force a backend (the measurement of an older lsattn)")
    r = sub.add_parser("report")
    r.add_argument("results")
    r.add_argument("--md")
    r.add_argument("--png")
    args = ap.parse_args()
    {"bench": bench, "check": check, "sanitize": sanitize, "overhead": overhead, "report": report,
     "logattn": logattn}[args.cmd](args)


if __name__ == "__main__":
    main()
