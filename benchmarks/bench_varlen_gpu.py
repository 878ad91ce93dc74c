"""Packed variable-length batches on the GPU (issue 19): one ``loglinear_attention`` call with
``cu_seqlens`` against fla's ``chunk_log_linear_attn`` with the same ``cu_seqlens``, a Python loop
over the documents, and one call on an unpacked sequence of the same total length; and the peak
memory of grouped-query heads (G = 1 shared q, k for r = 16 value heads) read as broadcast views
against materialised copies.

Shape: 16 documents whose lengths follow a long-tailed (Pareto) distribution and sum to 64K tokens,
packed along T (batch 1), H = 16 heads, d_k = d_v = 64, bfloat16, through the public API (no
``backend=``: the automatic choice; ``cupy`` for CUDA torch tensors). Targets (issue 19): at least
4x faster than fla (forward), within 1.2x of the unpacked call.

Run (GPU, writes ``benchmarks/results/varlen_gpu.{json,md}`` with the device name and date)::

    python benchmarks/bench_varlen_gpu.py

``--ops``: the operators of the packed comparison (default: all five; fla runs beside
``loglinear_attention`` only, the one it has). ``--smoke``: a tiny CPU run (torch CPU float32 tensors and NumPy arrays, 256 tokens, no fla, no
GPU), which checks that every code path of the script runs; CI runs it (``tests/test_varlen.py``).
"""
from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time

import array_api_compat
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from _common import RESULTS, best_of, md_table, traced_peak, utc_now, write_json, write_text  # noqa: E402


def doc_lengths(n_docs, total, seed=0):
    """``n_docs`` lengths >= 1 drawn from a Pareto (alpha 1.2) distribution, scaled to sum to ``total``."""
    rng = np.random.default_rng(seed)
    w = rng.pareto(1.2, n_docs) + 0.05
    lens = np.maximum(1, np.floor(w / w.sum() * total)).astype(np.int64)
    lens[np.argmax(lens)] += total - lens.sum()
    assert lens.sum() == total and lens.min() >= 1
    return lens


OPS = ("loglinear_attention", "loglinear_gated_delta", "loglinear_log_attention", "exp_kernel_attention",
       "log_attention")


def make_inputs(torch, T, H, d, dtype, device, seed=0, op="loglinear_attention"):
    """Ours, ``(1, H, T, ...)`` in ``op``'s positional order: q, k, v (hierarchical / ``log_attention``:
    log v), then log_decay ``(1, H, T)`` (Gated DeltaNet: and beta), level weights ``(1, H, T, L)``
    (hierarchical: their logs, then log_decay)."""
    import lsattn

    g = torch.Generator(device=device).manual_seed(seed)
    q, k = (torch.randn((1, H, T, d), generator=g, device=device) * d**-0.5 for _ in range(2))
    v = torch.randn((1, H, T, d), generator=g, device=device)
    a = torch.nn.functional.logsigmoid(torch.randn((1, H, T), generator=g, device=device) + 3.0)
    lam = torch.rand((1, H, T, lsattn.num_levels(T)), generator=g, device=device) + 0.5
    if op == "loglinear_gated_delta":
        k = k / k.norm(dim=-1, keepdim=True)
        x = (q, k, v, a, torch.rand((1, H, T), generator=g, device=device), lam)
    elif op == "loglinear_log_attention":
        x = (q, k, v, lam.log(), a)
    elif op in ("exp_kernel_attention", "log_attention"):
        x = (q, k, v)
    else:
        x = (q, k, v, a, lam)
    return [y.to(dtype) for y in x]


def op_call(lsattn, op):
    """``op`` as ``f(*inputs, **kw)`` in :func:`make_inputs`' order (hierarchical: log_decay by keyword)."""
    f = getattr(lsattn, op)
    if op == "loglinear_log_attention":
        return lambda q, k, lv, lw, a, **kw: f(q, k, lv, lw, log_decay=a, **kw)
    return f


def timer(smoke):
    """``fn -> ms``: CUDA events on the GPU, the best of 3 wall-clock calls in smoke mode."""
    if smoke:
        return lambda fn: 1e3 * best_of(fn, 3)
    from bench_gpu import cuda_time

    return lambda fn: cuda_time(fn, warmup=1, reps=10, budget_s=1.5)  # median; >= 3 reps of a slow path


def seg(x, s0, s1):
    """Tokens ``[s0, s1)`` of one of our inputs (per-token scalars along -1, the others along -2)."""
    return x[..., s0:s1] if x.ndim == 3 else x[..., s0:s1, :]


def bench_packed(args, torch, lsattn, rows, done=None):
    """The issue's case for ``loglinear_attention`` (with fla and host offsets), and the same packed
    batch for every other operator of ``--ops``: packed, the loop over documents, unpacked. ``done()``
    after each operator (the results so far written: a run cut by a time limit keeps them)."""
    device, dtype = ("cpu", torch.float32) if args.smoke else ("cuda", torch.bfloat16)
    lens = doc_lengths(args.docs, args.total, args.seed)
    cu = np.concatenate([[0], np.cumsum(lens)])
    T = int(cu[-1])
    cu_dev = torch.as_tensor(cu, device=device)
    ms = timer(args.smoke)
    for op in args.ops:
        x = make_inputs(torch, T, args.heads, args.d, dtype, device, args.seed, op)
        f = op_call(lsattn, op)

        def loop():
            return torch.cat([f(*(seg(y, s0, s1) for y in x)) for s0, s1 in zip(cu[:-1].tolist(), cu[1:].tolist())],
                             dim=-2)

        packed = f(*x, cu_seqlens=cu_dev)
        ref = loop().float()
        err = float((packed.float() - ref).abs().max() / ref.abs().max())
        row = {"op": op, "T": T, "docs": len(lens), "lengths": lens.tolist(), "packed_vs_loop_rel_err": err,
               "backend": lsattn.backends.resolve(op, array_api_compat.array_namespace(x[0]), x[0], None,
                                                  varlen=True).name,
               "ours_packed_ms": ms(lambda: f(*x, cu_seqlens=cu_dev))}
        # the offsets as a Python list (FlashAttention's host max_seqlen): no read-back
        row["ours_packed_host_ms"] = ms(lambda: f(*x, cu_seqlens=cu.tolist()))
        row["ours_loop_ms"] = ms(loop)
        row["ours_unpacked_ms"] = ms(lambda: f(*x))
        if op in ("exp_kernel_attention", "log_attention"):  # peak memory of the three (issue 19: no padding, no T d_k d_v)
            peak = traced_peak if args.smoke else __import__("bench_gpu").peak_mem
            for name, fn in (("packed", lambda: f(*x, cu_seqlens=cu_dev)), ("loop", loop), ("unpacked", lambda: f(*x))):
                row[f"{name}_peak_MiB"] = peak(fn) / 2**20
            xg = [y.detach().requires_grad_(True) for y in x]  # training: forward and backward

            def train(**kw):
                o = f(*xg, **kw)
                torch.where(torch.isfinite(o), o, 0).float().square().mean().backward()

            row["train_packed_ms"], row["train_unpacked_ms"] = ms(lambda: train(cu_seqlens=cu_dev)), ms(train)
        if op == "loglinear_attention":
            fla_row(args, x, cu_dev, packed, ms, row)
            row["packed_host_over_unpacked"] = row["ours_packed_host_ms"] / row["ours_unpacked_ms"]
        row["packed_over_unpacked"] = row["ours_packed_ms"] / row["ours_unpacked_ms"]
        row["loop_over_packed"] = row["ours_loop_ms"] / row["ours_packed_ms"]
        print({k: v for k, v in row.items() if k != "lengths"}, flush=True)
        rows["packed" if op == "loglinear_attention" else op] = row
        if done is not None:
            done()


def fla_row(args, x, cu_dev, packed, ms, row):
    """fla's ``chunk_log_linear_attn`` with the same ``cu_seqlens`` (GPU only; a failure is recorded)."""
    try:
        if args.smoke:
            raise ImportError("not in smoke mode")
        from fla.ops.log_linear_attn import chunk_log_linear_attn
    except Exception as exc:
        print("fla not run:", exc, flush=True)
        return
    fl = [y.transpose(1, 2).contiguous() for y in x]  # (1, T, H, ...)
    cu_long = cu_dev.long()
    try:  # a peer that fails (e.g. no varlen in this fla) is recorded, not fatal
        o_fla = chunk_log_linear_attn(*fl, cu_seqlens=cu_long)[0]
        row["fla_vs_ours_rel_err"] = float((o_fla.transpose(1, 2).float() - packed.float()).abs().max()
                                           / packed.float().abs().max())
        row["fla_packed_ms"] = ms(lambda: chunk_log_linear_attn(*fl, cu_seqlens=cu_long))
        row["fla_over_ours"] = row["fla_packed_ms"] / row["ours_packed_ms"]
    except Exception as exc:
        print("fla failed:", repr(exc), flush=True)
        row["fla_error"] = repr(exc)


def bench_memory(args, torch, lsattn, rows):
    """Peak memory of one call with q, k shared by r = 16 heads (G = 1) against materialised copies."""
    r, T, d = 16, args.mem_T, args.d
    f = lsattn.loglinear_attention
    if args.smoke:  # NumPy arrays on the numba backend: tracemalloc sees every allocation
        rng = np.random.default_rng(0)
        q, k = (rng.standard_normal((1, 1, T, d)).astype(np.float32) for _ in range(2))
        v = rng.standard_normal((1, r, T, d)).astype(np.float32)
        a = -rng.random((1, 1, T)).astype(np.float32)
        lam = rng.random((1, 1, T, lsattn.num_levels(T))).astype(np.float32)
        full = [np.broadcast_to(y, (1, r) + y.shape[2:]).copy() for y in (q, k, a, lam)]
        peak = traced_peak
        shared_args, full_args = (q, k, v, a, lam), (full[0], full[1], v, full[2], full[3])
    else:
        from bench_gpu import peak_mem

        q, k, v, a, lam = make_inputs(torch, T, r, d, torch.bfloat16, "cuda", args.seed)
        q, k, a, lam = q[:, :1], k[:, :1], a[:, :1], lam[:, :1]
        full_args = (q.expand(1, r, T, d).contiguous(), k.expand(1, r, T, d).contiguous(), v,
                     a.expand(1, r, T).contiguous(), lam.expand((1, r) + lam.shape[2:]).contiguous())
        shared_args = (q, k, v, a, lam)
        peak = peak_mem
    f(*shared_args), f(*full_args)  # compiled, allocator warm
    nbytes = lambda xs: sum(x.nbytes if hasattr(x, "nbytes") else x.numel() * x.element_size() for x in xs)  # noqa: E731
    row = {"G": 1, "r": r, "T": T, "d": d, "shared_peak_bytes": peak(lambda: f(*shared_args)),
           "materialised_peak_bytes": peak(lambda: f(*full_args)),
           "shared_input_bytes": nbytes(shared_args), "materialised_input_bytes": nbytes(full_args),
           "copy_bytes_of_q_k": 2 * r * T * d * (4 if args.smoke else 2)}
    print(row, flush=True)
    rows["memory"] = row


def markdown(res):
    info, rows = res["info"], res["rows"]
    any_row = next(r for r in rows.values() if "op" in r)
    lines = [f"# Packed variable-length batch ({info.get('device', 'cpu')}, {res['date']})", "",
             f"{any_row['docs']} documents, {any_row['T']} tokens (lengths {any_row['lengths']}), H = {res['shape']['H']}, "
             f"d = {res['shape']['d']}, {res['shape']['dtype']}, forward through the public API. "
             f"torch {info.get('torch')}, cupy {info.get('cupy')}, fla {info.get('fla')}.", ""]
    p = rows.get("packed")
    if p is not None:
        cell = lambda k: f"{p[k]:.2f}" if k in p else "n/a"  # noqa: E731
        lines += ["`loglinear_attention`:", ""]
        lines += md_table(["ours packed ms", "fla packed ms", "fla / ours", "loop over docs ms", "unpacked ms",
                           "packed / unpacked", "ours packed, list offsets ms", "that / unpacked"],
                          [[cell("ours_packed_ms"), cell("fla_packed_ms"), cell("fla_over_ours"), cell("ours_loop_ms"),
                            cell("ours_unpacked_ms"), cell("packed_over_unpacked"), cell("ours_packed_host_ms"),
                            cell("packed_host_over_unpacked")]], "---:")
        lines += ["", "Offsets: `cu_seqlens` as a CUDA tensor (the first columns, as fla gets them: reading them "
                  "is a device-to-host copy that waits for the queued work) and as a Python list (no read-back).", "",
                  f"Packed vs per-document loop: max relative difference {p['packed_vs_loop_rel_err']:.2e}"
                  + (f"; fla vs ours {p['fla_vs_ours_rel_err']:.2e}." if "fla_vs_ours_rel_err" in p else ".")]
    others = [r for k, r in rows.items() if k != "packed" and "op" in r]
    if others:
        lines += ["", "Every operator (offsets as a CUDA tensor; `backend`: the automatic choice for a packed call):", ""]
        lines += md_table(["operator", "backend", "packed ms", "packed, list offsets ms", "loop over docs ms", "unpacked ms",
                           "packed / unpacked", "loop / packed", "packed vs loop rel diff"],
                          [[r["op"], r["backend"], f"{r['ours_packed_ms']:.2f}", f"{r['ours_packed_host_ms']:.2f}",
                            f"{r['ours_loop_ms']:.2f}", f"{r['ours_unpacked_ms']:.2f}", f"{r['packed_over_unpacked']:.2f}",
                            f"{r['loop_over_packed']:.2f}", f"{r['packed_vs_loop_rel_err']:.1e}"]
                           for r in ([p] if p is not None else []) + others], "---:")
        mem = [r for r in others if "packed_peak_MiB" in r]
        if mem:
            lines += ["", "Peak memory allocated during one forward call (MiB; inputs excluded), and a training step "
                      "(forward and backward of a squared-output loss) packed and unpacked:", ""]
            lines += md_table(["operator", "packed", "loop over docs", "unpacked", "train packed ms", "train unpacked ms"],
                              [[r["op"], f"{r['packed_peak_MiB']:.1f}", f"{r['loop_peak_MiB']:.1f}",
                                f"{r['unpacked_peak_MiB']:.1f}", f"{r['train_packed_ms']:.2f}",
                                f"{r['train_unpacked_ms']:.2f}"] for r in mem], "---:")
    m = rows.get("memory")
    if m is not None:
        lines += ["", f"Grouped-query heads, G = 1, r = {m['r']}, T = {m['T']}: the call's peak allocation "
                  f"{m['shared_peak_bytes'] / 2**20:.1f} MiB with shared q, k (and decays, level weights) vs "
                  f"{m['materialised_peak_bytes'] / 2**20:.1f} MiB materialised (copies of q, k alone: "
                  f"{m['copy_bytes_of_q_k'] / 2**20:.1f} MiB)"
                  + (f"; with the inputs: {(m['shared_peak_bytes'] + m['shared_input_bytes']) / 2**20:.1f} vs "
                     f"{(m['materialised_peak_bytes'] + m['materialised_input_bytes']) / 2**20:.1f} MiB." if "shared_input_bytes" in m
                     else ".")]
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="tiny CPU run of every code path")
    ap.add_argument("--out", default=str(RESULTS), help="folder of varlen_gpu.json / .md")
    ap.add_argument("--total", type=int, default=65536)
    ap.add_argument("--docs", type=int, default=16)
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--d", type=int, default=64)
    ap.add_argument("--mem-T", type=int, default=16384, help="T of the memory comparison")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ops", nargs="+", default=list(OPS), choices=OPS, help="operators of the packed comparison")
    ap.add_argument("--no-memory", action="store_true", help="skip the grouped-heads memory comparison")
    args = ap.parse_args(argv)
    if args.smoke:
        args.total, args.docs, args.heads, args.d, args.mem_T = 256, 5, 2, 8, 64
    import torch

    import lsattn

    if args.smoke:
        info = {"device": "cpu (smoke)", "torch": torch.__version__}
    else:
        from bench_gpu import device_info

        info = device_info()
        try:
            import fla

            info["fla"] = getattr(fla, "__version__", "?")
        except Exception:
            info["fla"] = None
    res = {"info": info, "date": utc_now(), "shape": {"H": args.heads, "d": args.d,
                                                       "dtype": "float32" if args.smoke else "bfloat16"}, "rows": {}}
    t0 = time.perf_counter()

    def save():
        res["seconds"] = time.perf_counter() - t0
        write_json(os.path.join(args.out, "varlen_gpu.json"), res)
        text = markdown(res)
        write_text(os.path.join(args.out, "varlen_gpu.md"), text.splitlines())
        return text

    bench_packed(args, torch, lsattn, res["rows"], save)
    if not args.no_memory:
        bench_memory(args, torch, lsattn, res["rows"])
    print(save())
    return res


if __name__ == "__main__":
    main()
