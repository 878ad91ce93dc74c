"""GPU training benchmark: forward + backward of ``loss = o.square().mean()`` through the public
functions, side by side with the peers in one run, with peak memory.

    python benchmarks/bench_gpu_train.py [--out DIR] [--T 2048,8192,16384,32768,65536] [--ops ll,fla,ek,la,gla,sdpa]

Shapes B=2, H=16, d_k=d_v=64, bfloat16 and float32. Ours: ``lsattn.loglinear_attention`` exactly as
a user calls it (no ``backend=``) on CUDA torch tensors that require grad: the CuPy forward and
backward kernels (``loglinear_bwd.cu``), and ``lsattn.exp_kernel_attention`` (causal): its CuPy
forward and backward kernels (``exp_kernel_bwd.cu``), and ``lsattn.log_attention`` (causal, ``v`` taken as
log values): the same kernels in their LOGV mode. Peers: fla-core's ``chunk_log_linear_attn``
forward + backward (bf16); torch SDPA causal forward + backward (bf16); fla's ``chunk_simple_gla``
forward + backward without a gate (the exp-kernel's closest linear-time peer; called without ``g`` it
ran on the H200 with Triton 3.6, where the gated call refuses its backward). Timing: median of CUDA events, each repetition re-running forward
and backward from leaf tensors; peak memory: torch's allocator and CuPy's pool (``bench_gpu``).
"""
from __future__ import annotations

import argparse
import os

from _common import utc_now, write_json
from bench_gpu import B, D, H, cuda_time, device_info, ll_inputs_bhtd, peak_mem, to_fla


def _first(o):
    return o[0] if isinstance(o, tuple) else o


def _train_step(fn, leaves):
    def run():
        for x in leaves:
            x.grad = None
        fn(*leaves).float().square().mean().backward()
    return run


def _measure(name, fn, leaves, row, key, reps=10):
    try:
        run = _train_step(fn, leaves)
        mem = peak_mem(run)
        ms = cuda_time(run, reps=reps)
        row[key] = {"ms": ms, "gb": mem / 1e9}
        print(f"  {name:46s} {ms:9.3f} ms  {mem / 1e9:7.2f} GB", flush=True)
    except Exception as exc:  # recorded, not fatal
        msg = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"
        row[key] = {"error": msg}
        print(f"  {name:46s} fails: {msg}", flush=True)


def main():
    import torch
    import torch.nn.functional as Fn

    import lsattn

    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=".")
    ap.add_argument("--T", default="2048,8192,16384,32768,65536")
    ap.add_argument("--ops", default="ll,fla,ek,la,gla,sdpa",
                    help="rows: ll (ours log-linear), fla (fla log-linear), ek (ours exp-kernel), la (ours log_attention), "
                         "gla (fla simple_gla), sdpa")
    args = ap.parse_args()
    ops = set(args.ops.split(","))
    info = device_info()
    try:
        from fla.ops.log_linear_attn import chunk_log_linear_attn
    except Exception as exc:
        print("fla not importable:", exc)
        chunk_log_linear_attn = None
    try:
        from fla.ops.simple_gla import chunk_simple_gla
    except Exception as exc:
        print("fla simple_gla not importable:", exc)
        chunk_simple_gla = None
    res = {"info": info, "date": utc_now(), "shape": {"B": B, "H": H, "d_k": D, "d_v": D}, "rows": {}}
    for T in [int(t) for t in args.T.split(",")]:
        print(f"T = {T}", flush=True)
        row = res["rows"].setdefault(str(T), {})
        f32 = [x.requires_grad_(True) for x in ll_inputs_bhtd(T, torch.float32)]
        b16 = [x.detach().to(torch.bfloat16).requires_grad_(True) for x in f32]
        if "ll" in ops:
            _measure("ours loglinear bf16 fwd+bwd", lsattn.loglinear_attention, b16, row, "ours_ll_bf16")
            _measure("ours loglinear fp32 fwd+bwd", lsattn.loglinear_attention, f32, row, "ours_ll_fp32")
        if chunk_log_linear_attn is not None and "fla" in ops:
            fl = [to_fla(x.detach()).requires_grad_(True) for x in b16]
            _measure("fla chunk_log_linear_attn bf16 fwd+bwd", lambda *x: _first(chunk_log_linear_attn(*x)), fl, row,
                     "fla_ll_bf16")
            del fl
        if "ek" in ops:
            _measure("ours exp-kernel bf16 fwd+bwd", lsattn.exp_kernel_attention, b16[:3], row, "ours_ek_bf16")
            _measure("ours exp-kernel fp32 fwd+bwd", lsattn.exp_kernel_attention, f32[:3], row, "ours_ek_fp32")
        if "la" in ops:
            _measure("ours log_attention bf16 fwd+bwd", lsattn.log_attention, b16[:3], row, "ours_la_bf16")
            _measure("ours log_attention fp32 fwd+bwd", lsattn.log_attention, f32[:3], row, "ours_la_fp32")
        if chunk_simple_gla is not None and "gla" in ops:
            fl = [to_fla(x.detach()).requires_grad_(True) for x in b16[:3]]
            _measure("fla chunk_simple_gla bf16 fwd+bwd", lambda q, k, v: _first(chunk_simple_gla(q, k, v)), fl, row,
                     "fla_gla_bf16")
            del fl
        if "sdpa" in ops:
            _measure("torch SDPA causal bf16 fwd+bwd", lambda q, k, v: Fn.scaled_dot_product_attention(q, k, v, is_causal=True),
                     b16[:3], row, "sdpa_bf16")
        del f32, b16
        torch.cuda.empty_cache()
    write_json(os.path.join(args.out, "gpu_train.json"), res)
    print(markdown(res))


def markdown(res):
    info = res["info"]
    lines = [f"# GPU training (forward + backward), {info.get('device')}, {res['date']}", "",
             f"B={B}, H={H}, d={D}; torch {info.get('torch')}, cupy {info.get('cupy')}, fla {info.get('fla')}. "
             "Median ms (peak GB).", "",
             "| T | ours log-linear bf16 | ours log-linear fp32 | fla log-linear bf16 | fla / ours (bf16) | ours exp-kernel bf16 | ours exp-kernel fp32 | ours log_attention bf16 | ours log_attention fp32 | log / exp (fp32) | fla simple_gla bf16 | SDPA bf16 | SDPA / ours exp-kernel (bf16) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]

    def cell(r, k):
        d = r.get(k, {})
        return f"{d['ms']:.2f} ({d['gb']:.2f})" if "ms" in d else ("fails" if "error" in d else "-")

    for T, r in res["rows"].items():
        ratio = "-"
        if "ms" in r.get("ours_ll_bf16", {}) and "ms" in r.get("fla_ll_bf16", {}):
            ratio = f"{r['fla_ll_bf16']['ms'] / r['ours_ll_bf16']['ms']:.2f}x"
        ek = "-"
        if "ms" in r.get("ours_ek_bf16", {}) and "ms" in r.get("sdpa_bf16", {}):
            ek = f"{r['sdpa_bf16']['ms'] / r['ours_ek_bf16']['ms']:.2f}x"
        la = "-"
        if "ms" in r.get("ours_la_fp32", {}) and "ms" in r.get("ours_ek_fp32", {}):
            la = f"{r['ours_la_fp32']['ms'] / r['ours_ek_fp32']['ms']:.2f}x"
        lines.append(f"| {T} | {cell(r, 'ours_ll_bf16')} | {cell(r, 'ours_ll_fp32')} | {cell(r, 'fla_ll_bf16')} | {ratio} | "
                     f"{cell(r, 'ours_ek_bf16')} | {cell(r, 'ours_ek_fp32')} | {cell(r, 'ours_la_bf16')} | "
                     f"{cell(r, 'ours_la_fp32')} | {la} | {cell(r, 'fla_gla_bf16')} | {cell(r, 'sdpa_bf16')} | {ek} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
