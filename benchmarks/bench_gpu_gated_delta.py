"""GPU benchmark of log-linear Gated DeltaNet (forward), side by side in one run, with peak memory.

    python benchmarks/bench_gpu_gated_delta.py [--out DIR] [--T 2048,8192,16384,32768] [--fla-dtypes bf16]
        (fla's fp32 row, which also gives the check column, compiles / autotunes Triton kernels on its first call per T:
        with it the table's first T alone outran an 80 s limit on a fresh machine)
    python benchmarks/bench_gpu_gated_delta.py --train [--out DIR] [--T 2048,8192,16384]   (fwd+bwd, ``train``:
        ours, array-API, fla plain GDN (``--rows ...,fla_lifted``: timed with fla's Hopper / Triton guard lifted,
        see ``_fla_guard_lifted``), fla chunk_log_linear_attn and torch SDPA, with peak memory)

Shapes B=2, H=16, d_k=d_v=64, bfloat16 and float32, on CUDA torch tensors. Ours:
``lsattn.loglinear_gated_delta`` exactly as a user calls it (no ``backend=``: the CuPy kernels,
``gd_forms`` for the per-chunk WY forms and the scan ``gd_scan``), and the array-API path
(``backend="array_api"``, what CUDA arrays ran before the kernel). Peer: fla's plain (not
log-linear) ``chunk_gated_delta_rule`` forward (layout (B, T, H, d), ``g`` = log decay, ``beta``),
the reference point of the issue's targets. Keys are L2-normalised, ``g = logsigmoid(x + 3)``,
``beta = sigmoid(x)``, level weights ``lambda`` uniform in [0.5, 1.5].

Check column: with ``lambda == 1`` the log-linear operator is Gated DeltaNet, so ours (float32)
and fla (float32) must agree: max |ours - fla| / max |fla| at each T.

Timing: median of CUDA events (``bench_gpu.cuda_time``); peak memory: torch's allocator and
CuPy's pool (``bench_gpu.peak_mem``). Writes ``gpu_gated_delta.json`` and ``gpu_gated_delta.md``
to ``--out``.

    python benchmarks/bench_gpu_gated_delta.py --plot RESULT.json [...]   (no GPU: each saved table's plot, time
        against T per row, as RESULT.png beside it)
"""
from __future__ import annotations

import argparse
import contextlib
import os

from _common import plot_vs_T, utc_now, write_json, write_text
from bench_gpu import B, D, H, device_info, measure


def inputs(T, dtype, seed=0):
    """(B, H, T, d) q, k (L2-normalised), v; (B, H, T) log decay and beta; (B, H, T, L) weights."""
    import torch

    import lsattn

    g = torch.Generator(device="cuda").manual_seed(seed)
    shp = (B, H, T, D)
    q = torch.randn(shp, generator=g, device="cuda") * D**-0.5
    k = torch.nn.functional.normalize(torch.randn(shp, generator=g, device="cuda"), dim=-1)
    v = torch.randn(shp, generator=g, device="cuda")
    a = torch.nn.functional.logsigmoid(torch.randn((B, H, T), generator=g, device="cuda") + 3.0)
    beta = torch.sigmoid(torch.randn((B, H, T), generator=g, device="cuda"))
    lam = 0.5 + torch.rand((B, H, T, lsattn.num_levels(T)), generator=g, device="cuda")
    return [x.to(dtype) for x in (q, k, v, a, beta, lam)]


def ours_train_step(T, warm=3):
    """The fwd+bwd table's step of ours on bfloat16 inputs at T (``train``'s ``step``: ``(out.float() *
    dO.float()).sum().backward()``, the gradients cleared), called ``warm`` times: the device scripts' profiles of it."""
    import torch

    import lsattn

    x = [t.requires_grad_(True) for t in inputs(T, torch.bfloat16)]
    dO = torch.randn(x[2].shape, device="cuda", dtype=torch.bfloat16)

    def step():
        (lsattn.loglinear_gated_delta(*x).float() * dO.float()).sum().backward()
        for t in x:
            t.grad = None

    for _ in range(warm):
        step()
    return step


def fla_args(q, k, v, a, beta):
    """Our (B, H, T, ...) layout -> fla's (B, T, H, ...)."""
    return [x.transpose(1, 2).contiguous() for x in (q, k, v, a, beta)]


def main():
    import torch

    import lsattn

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=".")
    ap.add_argument("--T", default="2048,8192,16384,32768")
    ap.add_argument("--api-max-T", type=int, default=16384, help="largest T of the array-API column")
    ap.add_argument("--fla-dtypes", default="bf16,fp32",
                    help="the forward's fla rows (fp32 also gives the check column; its first call per T autotunes Triton)")
    ap.add_argument("--train", action="store_true", help="forward + backward rows (train) instead of the forward")
    ap.add_argument("--rows", default="ours_bf16,ours_fp32,api,fla,fla_ll,sdpa",
                    help="--train: the rows to measure, in this order of the columns (ours_bf16, ours_fp32, api, fla, "
                         "fla_lifted, fla_ll, sdpa)")
    ap.add_argument("--plot", nargs="+", metavar="JSON", help="plot saved tables (forward or --train) instead of measuring")
    args = ap.parse_args()
    if args.plot:
        return plot(args.plot)
    info = device_info()
    try:
        from fla.ops.gated_delta_rule import chunk_gated_delta_rule
    except Exception as exc:
        print("fla not importable:", exc)
        chunk_gated_delta_rule = None
    if args.train:
        return train(args, info, chunk_gated_delta_rule)
    res = {"info": info, "date": utc_now(), "shape": {"B": B, "H": H, "d_k": D, "d_v": D}, "rows": {}}
    torch.set_grad_enabled(False)
    for T in [int(t) for t in args.T.split(",")]:
        print(f"T = {T}", flush=True)
        row = res["rows"].setdefault(str(T), {})
        for dname, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
            x = inputs(T, dtype)
            measure(f"ours {dname}", lambda: lsattn.loglinear_gated_delta(*x), row, f"ours_{dname}")
            if T <= args.api_max_T:
                measure(f"array_api {dname}", lambda: lsattn.loglinear_gated_delta(*x, backend="array_api"), row,
                         f"api_{dname}", reps=3)
            if chunk_gated_delta_rule is not None and dname in args.fla_dtypes.split(","):
                fx = fla_args(*x[:5])
                measure(f"fla chunk_gated_delta_rule {dname}",
                         lambda: chunk_gated_delta_rule(*fx, scale=1.0), row, f"fla_{dname}")
                if dtype == torch.float32:  # lambda == 1: the same function
                    try:
                        ones = torch.ones_like(x[5])
                        ours = lsattn.loglinear_gated_delta(*x[:5], ones).double()
                        theirs = chunk_gated_delta_rule(*fx, scale=1.0)[0].transpose(1, 2).double()
                        row["check"] = float((ours - theirs).abs().max() / theirs.abs().max())
                        print(f"  check lambda=1 vs fla fp32: {row['check']:.2e}", flush=True)
                    except Exception as exc:
                        row["check"] = f"{type(exc).__name__}: {exc}"[:160]
            del x
            torch.cuda.empty_cache()
        write_json(os.path.join(args.out, "gpu_gated_delta.json"), res)  # after every T: a timeout keeps the rows
        write_text(os.path.join(args.out, "gpu_gated_delta.md"), markdown(res).splitlines())
    print(markdown(res))


def plot(paths):
    """Each saved table (``gpu_gated_delta*.json``) as a log-log plot of its rows' ms against T, ``.png`` beside it."""
    import json

    for path in paths:
        with open(path) as f:
            res = json.load(f)
        rows = [{"T": int(T), **{k: v.get("ms") for k, v in r.items() if isinstance(v, dict)}}
                for T, r in sorted(res["rows"].items(), key=lambda kv: int(kv[0]))]
        names = sorted({k for r in rows for k in r if k != "T"})
        rows = [{n: (r.get(n) or 0) / 1e3 or None for n in names} | {"T": r["T"]} for r in rows]  # seconds
        what = "fwd+bwd" if "train" in os.path.basename(path) else "forward"
        title = f"loglinear_gated_delta {what}, {res['info'].get('device', 'GPU')}, {res['date'][:10]}"
        plot_vs_T(rows, names, title, os.path.splitext(path)[0] + ".png")


def markdown(res):
    """The forward table of ``res`` (with the lambda = 1 check column)."""
    cols = [("ours_bf16", "ours bf16"), ("ours_fp32", "ours fp32"), ("fla_bf16", "fla bf16"), ("fla_fp32", "fla fp32"),
            ("api_bf16", "array-API bf16"), ("api_fp32", "array-API fp32")]
    return table(res, "forward", "fla is plain Gated DeltaNet (no levels).", cols,
                 [("ours_bf16", "fla_bf16", "ours / fla (bf16)"), ("api_bf16", "ours_bf16", "array-API / ours (bf16)"),
                  ("api_fp32", "ours_fp32", "array-API / ours (fp32)")],
                 check=True)


def table(res, what, note, cols, ratios, check=False):
    """Markdown table of ``res["rows"]``: ``cols`` (key, header) cells as ms (peak GB), ``ratios``
    (key a, key b, header) as a / b, ``check`` the lambda = 1 column; failing cells listed below."""
    info = res["info"]
    heads = [c for _, c in cols] + [h for _, _, h in ratios] + (["lambda=1 vs fla (fp32)"] if check else [])
    lines = [f"# Log-linear Gated DeltaNet {what}, {info.get('device')}, {res['date']}", "",
             f"B={B}, H={H}, d={D}; torch {info.get('torch')}, cupy {info.get('cupy')}, fla {info.get('fla')}. "
             f"Median ms (peak GB) of the {what}. {note}", "",
             "| T | " + " | ".join(heads) + " |", "|---|" + "---|" * len(heads)]
    errors = []

    def cell(r, k):
        d = r.get(k, {})
        if "error" in d:
            errors.append(f"- {k}: {d['error']}")
        return f"{d['ms']:.2f} ({d['gb']:.2f})" if "ms" in d else ("fails" if "error" in d else "-")

    def ratio(r, a, b):
        return f"{r[a]['ms'] / r[b]['ms']:.1f}x" if "ms" in r.get(a, {}) and "ms" in r.get(b, {}) else "-"

    for T, r in res["rows"].items():
        cells = [cell(r, k) for k, _ in cols] + [ratio(r, a, b) for a, b, _ in ratios]
        if check:
            chk = r.get("check", "-")
            cells.append(f"{chk:.1e}" if isinstance(chk, float) else str(chk))
        lines.append(f"| {T} | " + " | ".join(cells) + " |")
    if errors:
        lines += ["", "Failures:"] + sorted(set(errors))
    return "\n".join(lines)


def train(args, info, chunk_gated_delta_rule):
    """Forward + backward (``sum(out * dO)``, gradients of every input) side by side: ours (no
    ``backend=``: the WY forms under torch autograd, the scan through ``gd_scan`` / ``gd_scan_bwd``),
    the array-API path under torch autograd, fla's ``chunk_gated_delta_rule`` fwd+bwd (its refusal
    recorded where its backward does not run: on the H200 with Triton 3.x it refuses), and, since
    that plain peer may not run, fla's ``chunk_log_linear_attn`` fwd+bwd (log-linear Mamba-2: the
    same level structure without the delta rule, bf16) and torch SDPA causal fwd+bwd (bf16): the
    measured floors of the training table. Writes ``gpu_gated_delta_train.{json,md}``."""
    import torch
    import torch.nn.functional as Fn

    import lsattn

    try:
        from fla.ops.log_linear_attn import chunk_log_linear_attn
    except Exception as exc:
        print("fla log_linear_attn not importable:", exc)
        chunk_log_linear_attn = None
    res = {"info": info, "date": utc_now(), "shape": {"B": B, "H": H, "d_k": D, "d_v": D}, "rows": {}}
    rows = set(args.rows.split(","))
    for T in [int(t) for t in args.T.split(",")]:
        print(f"T = {T} (fwd+bwd)", flush=True)
        row = res["rows"].setdefault(str(T), {})
        for dname, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
            x = [t.requires_grad_(True) for t in inputs(T, dtype)]
            do = torch.randn(x[2].shape, device="cuda", dtype=dtype)

            def step(fn, xs, dO=do):
                out = fn(xs)
                (out.float() * dO.float()).sum().backward()
                for t in xs:
                    t.grad = None

            if f"ours_{dname}" in rows:
                measure(f"ours {dname} fwd+bwd", lambda: step(lambda xs: lsattn.loglinear_gated_delta(*xs), x), row,
                         f"ours_{dname}")
            if T <= args.api_max_T and "api" in rows:
                measure(f"array_api {dname} fwd+bwd",
                         lambda: step(lambda xs: lsattn.loglinear_gated_delta(*xs, backend="array_api"), x), row,
                         f"api_{dname}", reps=3)
            if chunk_gated_delta_rule is not None and "fla" in rows:
                fx = [t.detach().requires_grad_(True) for t in fla_args(*x[:5])]
                measure(f"fla chunk_gated_delta_rule {dname} fwd+bwd",
                         lambda: step(lambda xs: chunk_gated_delta_rule(*xs, scale=1.0)[0].transpose(1, 2), fx), row, f"fla_{dname}")
            if dtype == torch.bfloat16 and chunk_gated_delta_rule is not None and "fla_lifted" in rows:
                fx = [t.detach().requires_grad_(True) for t in fla_args(*x[:5])]
                with _fla_guard_lifted():
                    measure("fla chunk_gated_delta_rule bf16 fwd+bwd, guard lifted (timing only)",
                             lambda: step(lambda xs: chunk_gated_delta_rule(*xs, scale=1.0)[0].transpose(1, 2), fx),
                             row, "fla_lifted_bf16")
                del fx
            if dtype == torch.bfloat16:
                if chunk_log_linear_attn is not None and "fla_ll" in rows:  # (q, k, v, g, level weights), fla's layout
                    fl = [t.detach().transpose(1, 2).contiguous().requires_grad_(True) for t in (x[0], x[1], x[2], x[3], x[5])]
                    measure("fla chunk_log_linear_attn bf16 fwd+bwd",
                             lambda: step(lambda xs: _first(chunk_log_linear_attn(*xs)).transpose(1, 2), fl), row,
                             "fla_ll_bf16")
                    del fl
                if "sdpa" in rows:
                    sx = [t.detach().requires_grad_(True) for t in x[:3]]
                    measure("torch SDPA causal bf16 fwd+bwd",
                             lambda: step(lambda xs: Fn.scaled_dot_product_attention(*xs, is_causal=True), sx), row,
                             "sdpa_bf16")
                    del sx
            del x
            torch.cuda.empty_cache()
        # after every T: a run cut short by its time limit keeps the rows it measured
        write_json(os.path.join(args.out, "gpu_gated_delta_train.json"), res)
        md = markdown_train(res)
        write_text(os.path.join(args.out, "gpu_gated_delta_train.md"), md.splitlines())
    print(md)


@contextlib.contextmanager
def _fla_guard_lifted():
    """fla 0.6.0 refuses its gated ``chunk_bwd_dqkwg`` on Hopper with Triton >= 3.4 and < 3.7.1
    (fla issue #640: that Triton miscompiles it, so its gradients are wrong). For the *time* of
    fla's Gated DeltaNet fwd+bwd only, this lifts the guard (fla's module flag) while the row runs
    and restores it after; the gradients it produces are not used. Nothing in lsattn does this."""
    import fla.ops.common.chunk_o as chunk_o

    saved = chunk_o.TRITON_ABOVE_3_4_0
    chunk_o.TRITON_ABOVE_3_4_0 = False
    try:
        yield
    finally:
        chunk_o.TRITON_ABOVE_3_4_0 = saved


def _first(o):
    return o[0] if isinstance(o, tuple) else o


def markdown_train(res):
    """The fwd+bwd table: ours, the array-API path, fla's plain Gated DeltaNet (where its backward
    runs), fla's log-linear Mamba-2 and SDPA (bf16)."""
    cols = [("ours_bf16", "ours bf16"), ("ours_fp32", "ours fp32"), ("fla_bf16", "fla GDN bf16"),
            ("fla_lifted_bf16", "fla GDN bf16, guard lifted (timing only)"),
            ("fla_ll_bf16", "fla log-linear Mamba-2 bf16"), ("sdpa_bf16", "SDPA bf16"), ("api_bf16", "array-API bf16"),
            ("api_fp32", "array-API fp32")]
    note = ("fla GDN is plain Gated DeltaNet (no levels); fla log-linear Mamba-2 and SDPA are the measured floors "
            "where fla's Gated DeltaNet backward does not run. 'guard lifted': fla's own refusal of its gated backward "
            "on Hopper with Triton 3.4-3.7.0 (fla #640, wrong gradients) lifted for this row's time only.")
    return table(res, "forward + backward of sum(out * dO)", note, cols,
                 [("ours_bf16", "fla_lifted_bf16", "ours / fla GDN lifted (bf16)"),
                  ("ours_bf16", "fla_ll_bf16", "ours / fla log-linear (bf16)"), ("ours_bf16", "sdpa_bf16", "ours / SDPA (bf16)")])


if __name__ == "__main__":
    main()
