"""CPU per-token decoding time: ``lsattn.stepper`` (Numba and array-API steps) side by side with a
hand-written NumPy loop of the same recurrence (the code a user would write) and with the plain
``state=`` call, one token at a time, float32, d_k = d_v = 64.

Each method decodes the same ``--tokens`` tokens from a state at offset ``--offset`` (a prefill);
the time per token is the best of ``--repeat`` such runs divided by the number of tokens. Every
method's outputs are checked against the stepper's before timing. Targets (issue 18): the Numba
step at least 2x faster than the NumPy loop, the array-API step within 3x of it.

Batched decoding (``--many`` sequences, default 4096): the Numba step's time per token against the
state bytes it must read and write (:func:`state_bytes`), as a fraction of the bandwidth of
``np.copyto`` over the same bytes, measured in the same run. This is the CPU analogue of the issue's
GPU target (>= 50% of the copy bandwidth): both run on one core.

    python benchmarks/bench_stepper.py            # writes results/stepper_cpu.{md,json,png}
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

import lsattn
from lsattn.state import State
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

def inputs(op, batch, T, d, rng, offset=0):
    """float32 (..., T, .) inputs of ``op`` in its positional order, and its keywords (level weights
    for tokens from ``offset`` on)."""
    f = lambda *shape: rng.standard_normal(batch + shape).astype(np.float32)
    L = lsattn.num_levels(offset + T)
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


# ---- batched decoding: state bytes per step against the copy bandwidth ------------------------

def state_bytes(op, p, B, dk, dv, itemsize):
    """Bytes of state a step at position ``p`` must read plus write, for ``B`` sequences: the
    exp-kernel summary (``m, S, z``, and ``n`` for log values) read and written once; log-linear: the
    occupied levels (``popcount(p)``) read once, and written once together with the merged level
    (levels above are rescaled, those below emptied); hierarchical: the occupied levels' summaries
    read once, the ``h`` folded and merged summaries written (``h = bit_length(p XOR (p + 1))``) and
    the row shifts ``m`` of the levels kept above them."""
    slot = dk * dv + 2 * dk + dv  # one summary (m, n, S, z)
    occupied, h = bin(p).count("1"), (p ^ (p + 1)).bit_length()
    if op in ("exp_kernel_attention", "log_attention"):
        per = 2 * (slot - (dv if op == "exp_kernel_attention" else 0))
    elif op == "loglinear_log_attention":
        above = bin(p >> h).count("1")
        per = occupied * slot + h * slot + above * dk
    else:
        per = (2 * occupied + 1) * dk * dv
    return B * per * itemsize


def tiled_state(op, B, d, offset, rng):
    """A float32 state at ``offset`` for ``B`` sequences: a prefill of 8 sequences, tiled."""
    args, kw = inputs(op, (8,), offset, d, rng)
    _, st = getattr(lsattn, op)(*args, **kw, return_state=True)
    tensors = {n: np.tile(x, (B // 8,) + (1,) * (x.ndim - 1)) for n, x in st.tensors.items()}
    return State(op, st.offset, (B,), st.d_k, st.d_v, st.dtype, tensors)


def run_many(op, B, d, offset, tokens, repeat, rng):
    """The Numba step for ``B`` sequences: us per token, bytes per token and the copy bandwidth."""
    state = tiled_state(op, B, d, offset, rng)
    args, kw = inputs(op, (B,), tokens, d, rng, offset)
    toks = [([x[..., t : t + 1] if x.ndim == 2 else x[..., t : t + 1, :] for x in args],
             {n: x[..., t : t + 1] for n, x in kw.items()}) for t in range(tokens)]
    limit = offset + tokens if op.startswith("loglinear") else None
    nbytes = sum(state_bytes(op, offset + t, B, d, d, 4) for t in range(tokens))
    times = []
    for _ in range(repeat + 1):
        step = lsattn.stepper(op, state, max_tokens=limit, backend="numba")  # buffer copies: not timed
        t0 = time.perf_counter()
        for xs, kws in toks:
            step(*xs, **kws)
        times.append(time.perf_counter() - t0)
        del step
    t_step = min(times[1:]) / tokens
    src = np.ones(nbytes // tokens // 2 // 4, np.float32)  # copy: read + write = the step's bytes
    dst = np.empty_like(src)
    t_copy = best_of(lambda: np.copyto(dst, src), repeat)
    return {"op": op, "sequences": B, "us_per_token": round(t_step * 1e6, 1),
            "state_MB_per_token": round(nbytes / tokens / 1e6, 1),
            "step_GBps": round(nbytes / tokens / t_step / 1e9, 2), "copy_GBps": round(2 * src.nbytes / t_copy / 1e9, 2),
            "fraction_of_copy": round(t_copy / t_step, 2)}


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
    ap.add_argument("--many", type=int, default=4096, help="sequences of the batched rows (0: none)")
    ap.add_argument("--many-tokens", type=int, default=8)
    ap.add_argument("--out", default="stepper_cpu")
    args = ap.parse_args()
    load = os.getloadavg()
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
    many = []
    for op in args.ops if args.many else ():
        many.append(run_many(op, args.many, args.d, args.offset, args.many_tokens, args.repeat, rng))
        print(many[-1], flush=True)
    load = load + os.getloadavg()
    header = ["operator", "B x H", "NumPy loop (us)", "stepper numba (us)", "stepper array_api (us)",
              "plain state= (us)", "numba speed-up vs loop (target >= 2x)", "array_api / loop (target <= 3x)"]
    meta = {"machine": f"{cpu_name()}, {python_numpy()}", "date": utc_now(), "d": args.d, "offset": args.offset,
            "tokens": args.tokens, "repeat": args.repeat, "dtype": "float32",
            "load_average_1_5_15_before_after": [round(x, 2) for x in load]}
    many_header = ["operator", "sequences", "us per token", "state MB read + written per token",
                   "step GB/s", "np.copyto GB/s (same bytes, same run)",
                   "fraction of copy bandwidth (CPU analogue of >= 50%)"]
    many_rows = [[r["op"], r["sequences"], f"{r['us_per_token']:.0f}", f"{r['state_MB_per_token']:.1f}",
                  f"{r['step_GBps']:.2f}", f"{r['copy_GBps']:.2f}", f"{r['fraction_of_copy']:.0%}"] for r in many]
    lines = [
        "# Per-token decoding on the CPU: `lsattn.stepper` vs a hand-written NumPy loop",
        "",
        f"Machine: {meta['machine']}; {meta['date']}. The machine is shared with other jobs (2 cores, "
        f"several engineers; load average (1, 5, 15 min) {meta['load_average_1_5_15_before_after'][:3]} before "
        f"the run, {meta['load_average_1_5_15_before_after'][3:]} after): the numbers are noisy, best of "
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
        *([f"## Batched decoding: {args.many} sequences, Numba step, one core", "",
           f"The Numba step for {args.many} sequences (d_k = d_v = {args.d}, float32, from offset {args.offset}, "
           f"best of {args.repeat} runs of {args.many_tokens} tokens) against the state bytes it must read and "
           "write per token (`state_bytes` in the script: each occupied summary read once, each rewritten one "
           "written once), as a fraction of the bandwidth of `np.copyto` over the same bytes (half read, half "
           "written) measured in the same run. CPU analogue of the issue's GPU target (>= 50% of the copy "
           "bandwidth); both on one core (the steps run the sequences serially on the calling thread).", "",
           *md_table(many_header, many_rows, ["---"] + ["---:"] * 6), "",
           f"- batched step >= 50% of the copy bandwidth: met in {sum(r['fraction_of_copy'] >= 0.5 for r in many)} "
           f"of {len(many)} rows.", ""] if many else []),
        "Command: `python benchmarks/bench_stepper.py`",
        "",
    ]
    write_text(RESULTS / f"{args.out}.md", lines)
    write_json(RESULTS / f"{args.out}.json", {"meta": meta, "rows": records, "many": many})
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
