"""CPU per-token decoding time: ``lsattn.stepper`` (Numba and array-API steps) side by side with a
hand-written NumPy loop of the same recurrence (the code a user would write) and with the plain
``state=`` call, one token at a time, float32, d_k = d_v = 64.

Each method decodes the same ``--tokens`` tokens from a state at offset ``--offset`` (a prefill);
the time per token is the best of ``--repeat`` such runs divided by the number of tokens. Every
method's outputs are checked against the stepper's before timing. Targets (issue 18): the Numba
step at least 2x faster than the NumPy loop, the array-API step within 3x of it.

    python benchmarks/bench_stepper.py            # writes results/stepper_cpu.{md,json,png}
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import lsattn
from _common import RESULTS, best_of, cpu_name, md_table, pyplot, python_numpy, utc_now, write_json, write_text

OPS = ("exp_kernel_attention", "log_attention", "loglinear_attention", "loglinear_gated_delta",
       "loglinear_log_attention")


# ---- hand-written NumPy loops: what a user would write for one token ----------------------------
# q, k (..., d_k), v (..., d_v), per-token scalars (...), level weights (..., L); states as tuples /
# Python lists of levels (None: empty).

def np_exp_kernel(st, p, q, k, v):
    m, S, z = st
    mm = np.maximum(m, k)
    fa, fb = np.exp(m - mm), np.exp(k - mm)
    S = fa[..., None] * S + fb[..., None] * v[..., None, :]
    z = fa * z + fb
    qm = q + mm
    A = np.exp(qm - qm.max(-1, keepdims=True))
    y = (A[..., None, :] @ S)[..., 0, :] / (A * z).sum(-1, keepdims=True)
    return y, (mm, S, z)


def np_log_attention(st, p, q, k, lv):
    m, n, S, z = st
    mm, nn = np.maximum(m, k), np.maximum(n, lv)
    fa, fb = np.exp(m - mm), np.exp(k - mm)
    S = (fa[..., None] * np.exp(n - nn)[..., None, :]) * S + fb[..., None] * np.exp(lv - nn)[..., None, :]
    z = fa * z + fb
    qm = q + mm
    A = np.exp(qm - qm.max(-1, keepdims=True))
    y = np.log((A[..., None, :] @ S)[..., 0, :]) + nn - np.log((A * z).sum(-1, keepdims=True))
    return y, (mm, nn, S, z)


def np_loglinear(levels, p, q, k, v, a, lam):
    e = np.exp(a)
    o = (lam[..., 0] * (q * k).sum(-1))[..., None] * v
    for l, S in enumerate(levels):
        if S is not None:
            o = o + (lam[..., l + 1] * e)[..., None] * (q[..., None, :] @ S)[..., 0, :]
    h = (p ^ (p + 1)).bit_length()
    new = k[..., :, None] * v[..., None, :]
    for l in range(h - 1):
        new = new + e[..., None, None] * levels[l]
        levels[l] = None
    for l in range(h, len(levels)):
        if levels[l] is not None:
            levels[l] = e[..., None, None] * levels[l]
    levels.extend([None] * (h - len(levels)))
    levels[h - 1] = new
    return o, levels


def np_gated_delta(levels, p, q, k, v, a, beta, lam):
    e = np.exp(a)[..., None, None]
    bk = beta[..., None] * k
    o = (lam[..., 0] * beta * (q * k).sum(-1))[..., None] * v
    for l, S in enumerate(levels):
        if S is not None:
            S = e * (S - bk[..., :, None] * (k[..., None, :] @ S))
            levels[l] = S
            o = o + lam[..., l + 1, None] * (q[..., None, :] @ S)[..., 0, :]
    h = (p ^ (p + 1)).bit_length()
    new = bk[..., :, None] * v[..., None, :]
    for l in range(h - 1):
        new = new + levels[l]
        levels[l] = None
    levels.extend([None] * (h - len(levels)))
    levels[h - 1] = new
    return o, levels


def np_hierarchical(levels, p, q, k, lv, lam, a):
    """levels: list of (m, n, S, z) summaries (keys decayed to p - 1) or None."""
    qk = q + k
    r0 = qk.max(-1)
    parts = [(r0 + lam[..., 0], np.exp(qk - r0[..., None]).sum(-1), None)]
    parts[0] = parts[0][:2] + (np.log(parts[0][1])[..., None] + lv,)
    for l, s in enumerate(levels):
        if s is not None:
            m, n, S, z = s
            qm = q + m
            r = qm.max(-1)
            A = np.exp(qm - r[..., None])
            parts.append((r + lam[..., l + 1] + a, (A * z).sum(-1), np.log((A[..., None, :] @ S)[..., 0, :]) + n))
    R = np.max([r for r, _, _ in parts], axis=0)
    den = sum(np.exp(r - R) * d for r, d, _ in parts)
    y = np.logaddexp.reduce([y + (r - R)[..., None] for r, _, y in parts], axis=0)
    out = y - np.log(den)[..., None]
    h = (p ^ (p + 1)).bit_length()
    keys = [(k, lv, np.ones(k.shape + lv.shape[-1:], k.dtype), np.ones_like(k))]
    for l in range(h - 1):
        m, n, S, z = levels[l]
        keys.append((m + a[..., None], n, S, z))
        levels[l] = None
    mm = np.max([m for m, _, _, _ in keys], axis=0)
    nn = np.max([n for _, n, _, _ in keys], axis=0)
    S = sum((np.exp(m - mm)[..., :, None] * np.exp(n - nn)[..., None, :]) * S for m, n, S, _ in keys)
    z = sum(np.exp(m - mm) * z for m, _, _, z in keys)
    for l in range(h, len(levels)):
        if levels[l] is not None:
            m, n, S_, z_ = levels[l]
            levels[l] = (m + a[..., None], n, S_, z_)
    levels.extend([None] * (h - len(levels)))
    levels[h - 1] = (mm, nn, S, z)
    return out, levels


NUMPY_LOOP = {"exp_kernel_attention": np_exp_kernel, "log_attention": np_log_attention,
              "loglinear_attention": np_loglinear, "loglinear_gated_delta": np_gated_delta,
              "loglinear_log_attention": np_hierarchical}


def loop_state(op, state):
    """The hand-written loop's state from an lsattn State."""
    t = state.tensors
    if op == "exp_kernel_attention":
        return t["m"], t["S"], t["z"]
    if op == "log_attention":
        return t["m"], t["n"], t["S"], t["z"]
    p = state.offset
    occupied = lambda l: (p >> l) & 1
    if op == "loglinear_log_attention":
        return [(t["m"][..., l, :], t["n"][..., l, :], t["S"][..., l, :, :], t["z"][..., l, :]) if occupied(l) else None
                for l in range(p.bit_length())]
    return [t["levels"][..., l, :, :] if occupied(l) else None for l in range(p.bit_length())]


# ---- inputs -----------------------------------------------------------------------------------

def inputs(op, batch, T, d, rng):
    """float32 (..., T, .) inputs of ``op`` in its positional order, and its keywords."""
    f = lambda *shape: rng.standard_normal(batch + shape).astype(np.float32)
    L = lsattn.num_levels(T)
    q, k, v = f(T, d), f(T, d), f(T, d)
    a = (-0.05 * rng.random(batch + (T,))).astype(np.float32)
    lam = rng.random(batch + (T, L)).astype(np.float32)
    if op in ("exp_kernel_attention", "log_attention"):
        return (q, k, v), {}
    if op == "loglinear_attention":
        return (q, k, v, a, lam), {}
    if op == "loglinear_gated_delta":
        k = k / np.linalg.norm(k, axis=-1, keepdims=True)
        return (q, k, v, a, rng.random(batch + (T,)).astype(np.float32), lam), {}
    return (q, k, v, np.log(lam)), {"log_decay": a}


def run(op, batch, d, offset, tokens, repeat, rng):
    T = offset + tokens
    args, kw = inputs(op, batch, T, d, rng)
    fn = getattr(lsattn, op)
    pre = lambda x, scalar: x[..., :offset] if scalar else x[..., :offset, :]
    nb = len(batch)
    scal = [x.ndim == nb + 1 for x in args]
    _, state = fn(*[pre(x, s) for x, s in zip(args, scal)], **{n: x[..., :offset] for n, x in kw.items()},
                  return_state=True)
    keep = [[x[..., t : t + 1] if s else x[..., t : t + 1, :] for x, s in zip(args, scal)] for t in range(offset, T)]
    keep_kw = [{n: x[..., t : t + 1] for n, x in kw.items()} for t in range(offset, T)]
    drop = [[x[..., t] if s else x[..., t, :] for x, s in zip(args, scal)] + [x[..., t] for x in kw.values()]
            for t in range(offset, T)]
    limit = T if op.startswith("loglinear") else None

    def stepper(backend):
        def go():
            step = lsattn.stepper(op, state, max_tokens=limit, backend=backend)
            return [step(*xs, **kws) for xs, kws in zip(keep, keep_kw)]
        return go

    def plain():
        st, outs = state, []
        for xs, kws in zip(keep, keep_kw):
            o, st = fn(*xs, **kws, state=st, return_state=True)
            outs.append(o)
        return outs

    def numpy_loop():
        st, outs = loop_state(op, state), []
        for i, xs in enumerate(drop):
            o, st = NUMPY_LOOP[op](st, offset + i, *xs)
            outs.append(o)
        return outs

    methods = {"numpy loop": numpy_loop, "stepper numba": stepper("numba"), "stepper array_api": stepper("array_api"),
               "plain state=": plain}
    expect = np.stack([o[..., 0, :] for o in methods["stepper numba"]()])
    for name, f in methods.items():
        got = np.stack([o if name == "numpy loop" else o[..., 0, :] for o in f()])
        err = np.max(np.abs(got - expect)) / max(np.max(np.abs(expect)), 1e-30)
        assert err < 1e-4, f"{op} {name}: relative difference {err:.2e} from the numba stepper"
    # the stepper's construction (validation, buffer copies) is outside the per-token time
    return {name: best_of(f, repeat) / tokens * 1e6 for name, f in methods.items()}


def summary(records):
    """Lines saying which targets this run met, row by row."""
    lines = []
    for key, what, ok in (("numba_speedup_vs_loop", "numba step >= 2x faster than the NumPy loop", lambda x: x >= 2),
                          ("array_api_vs_loop", "array-API step within 3x of the NumPy loop", lambda x: x <= 3)):
        missed = [f"{r['op']} {'x'.join(map(str, r['batch']))} ({r[key]:.2f}x)" for r in records if not ok(r[key])]
        met = len(records) - len(missed)
        lines.append(f"- {what}: met in {met} of {len(records)} rows" + (f"; missed: {', '.join(missed)}." if missed else "."))
    return ["Targets in this run:", ""] + lines


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--d", type=int, default=64)
    ap.add_argument("--offset", type=int, default=1000)
    ap.add_argument("--tokens", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--ops", nargs="*", default=list(OPS))
    ap.add_argument("--out", default="stepper_cpu")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    rows, records = [], []
    for batch in ((1, 2), (2, 16)):
        for op in args.ops:
            t = run(op, batch, args.d, args.offset, args.tokens, args.repeat, rng)
            loop = t["numpy loop"]
            rec = {"op": op, "batch": list(batch), **{k: round(v, 2) for k, v in t.items()},
                   "numba_speedup_vs_loop": round(loop / t["stepper numba"], 2),
                   "array_api_vs_loop": round(t["stepper array_api"] / loop, 2)}
            records.append(rec)
            rows.append([op, "x".join(map(str, batch)), f"{loop:.1f}", f"{t['stepper numba']:.1f}",
                         f"{t['stepper array_api']:.1f}", f"{t['plain state=']:.1f}",
                         f"{rec['numba_speedup_vs_loop']:.2f}x", f"{rec['array_api_vs_loop']:.2f}x"])
            print(" | ".join(rows[-1]), flush=True)
    header = ["operator", "B x H", "NumPy loop (us)", "stepper numba (us)", "stepper array_api (us)",
              "plain state= (us)", "numba speed-up vs loop (target >= 2x)", "array_api / loop (target <= 3x)"]
    meta = {"machine": f"{cpu_name()}, {python_numpy()}", "date": utc_now(), "d": args.d, "offset": args.offset,
            "tokens": args.tokens, "repeat": args.repeat, "dtype": "float32"}
    lines = [
        "# Per-token decoding on the CPU: `lsattn.stepper` vs a hand-written NumPy loop",
        "",
        f"Machine: {meta['machine']}; {meta['date']}. The machine is shared with other jobs (2 cores, "
        "several engineers): the numbers are noisy, best of "
        f"{args.repeat} runs of {args.tokens} tokens each, decoded from a state at offset {args.offset}, "
        f"float32, d_k = d_v = {args.d}. Microseconds per token (all B x H sequences together).",
        "",
        "Columns: the NumPy loop is the recurrence written by hand with NumPy (`benchmarks/bench_stepper.py`); "
        "`stepper numba` / `stepper array_api` are `lsattn.stepper(op, state, backend=...)`; `plain state=` is "
        "the operator called with `state=..., return_state=True` per token (automatic backend: numba, whose "
        "scans run parallel over batch elements; on this shared machine that column varied from ~0.1 ms to "
        "several ms per token between runs).",
        "",
        *md_table(header, rows, ["---"] * 2 + ["---:"] * 6),
        "",
        *summary(records),
        "",
        "Command: `python benchmarks/bench_stepper.py`",
        "",
    ]
    write_text(RESULTS / f"{args.out}.md", lines)
    write_json(RESULTS / f"{args.out}.json", {"meta": meta, "rows": records})
    plt = pyplot()
    if plt is not None:
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
        methods = ["numpy loop", "stepper numba", "stepper array_api", "plain state="]
        for ax, batch in zip(axes, ([1, 2], [2, 16])):
            recs = [r for r in records if r["batch"] == batch]
            x = np.arange(len(recs))
            for i, m in enumerate(methods):
                ax.bar(x + (i - 1.5) * 0.2, [r[m] for r in recs], 0.2, label=m)
            ax.set_xticks(x, [r["op"].replace("_attention", "").replace("loglinear_", "ll_") for r in recs], rotation=20)
            ax.set_yscale("log")
            ax.set_title(f"B x H = {'x'.join(map(str, batch))}, d = {args.d}, float32")
            ax.set_ylabel("us per token")
        axes[0].legend()
        fig.suptitle(f"per-token decoding, CPU ({meta['date']}, shared machine)")
        fig.tight_layout()
        fig.savefig(RESULTS / f"{args.out}.png", dpi=110)


if __name__ == "__main__":
    main()
