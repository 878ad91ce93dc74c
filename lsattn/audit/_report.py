"""Reporting of sweep records: the text :func:`table`, :func:`write_json` and the :func:`plot` of
error against input magnitude.
"""
from __future__ import annotations

import json
import math

from ._compare import EPS
from ._inputs import DTYPES
from ._sweep import RECORD_KEYS


def _jsonable(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _format_table(rows, header):
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([line.format(*header), line.format(*("-" * w for w in widths))] + [line.format(*r) for r in rows])


def _groups(records):
    groups = {}
    for r in records:
        groups.setdefault((r["op"], r["formulation"], r["backend"], r["dtype"]), []).append(r)
    return groups


def _broken(r):
    return r["skipped"] is None and (r["nonfinite"] or not math.isfinite(r["normwise_rel_err"] if r["normwise_rel_err"] is not None else math.inf))


def table(records):
    """A readable summary, one row per (op, formulation, backend, dtype): the worst normwise
    relative error over the cases with finite output (and where), the first scale at which the
    output is not finite, and counts. Skip reasons follow the table."""
    rows = []
    for (op, form, backend, dtype), recs in _groups(records).items():
        ran = [r for r in recs if r["skipped"] is None]
        ok = [r for r in ran if not _broken(r)]
        broken = sorted(r["scale"] for r in ran if _broken(r))
        worst = max(ok, key=lambda r: r["normwise_rel_err"], default=None)
        rows.append(
            (
                op,
                form,
                backend,
                dtype,
                f"{len(ran)}/{len(recs)}",
                "-" if worst is None else f"{worst['normwise_rel_err']:.1e}",
                "-" if worst is None else f"{worst['err_in_eps']:.3g}",
                "-" if worst is None else f"scale={worst['scale']:g}, T={worst['T']}",
                f"{broken[0]:g}" if broken else "never",
                f"{len(broken)}",
            )
        )
    header = ("op", "formulation", "backend", "dtype", "ran", "worst rel err", "in eps", "worst at", "non-finite from scale", "non-finite cases")
    return _format_table(rows, header) + _skip_summary(records)


def _skip_summary(records):
    """Skipped cases grouped by formulation and reason (numbers in parentheses dropped)."""
    reasons = {}
    for r in records:
        if r["skipped"] is not None:
            key = (r["formulation"], r["backend"], r["skipped"].split(" (")[0])
            reasons.setdefault(key, []).append(r)
    lines = []
    for (form, backend, why), recs in reasons.items():
        lengths = ", ".join(str(T) for T in sorted({r["T"] for r in recs}))
        ops = ", ".join(dict.fromkeys(r["op"] for r in recs))
        lines.append(f"  {form} [{backend}]: {len(recs)} cases (T = {lengths}; {ops}): {why}")
    return "\n\nSkipped cases:\n" + "\n".join(lines) if lines else ""


def write_json(records, path):
    """Write the records as a JSON list (non-finite figures as null; see ``nonfinite``)."""
    with open(path, "w") as fh:
        json.dump([{k: _jsonable(r[k]) for k in RECORD_KEYS} for r in records], fh, indent=1)
        fh.write("\n")


#: Where non-finite cases are drawn in the figure (above every finite error).
_CEILING = 1e2
_FLOOR = 1e-17


def plot(records, path, *, dpi=80):
    """Save a figure of error against input magnitude: one panel per (op, dtype), one line per
    (formulation, backend); the worst normwise relative error over lengths at each scale,
    non-finite outputs drawn as crosses on the 'non-finite' line, the dtype's epsilon dotted.
    Needs matplotlib (``pip install 'lsattn[bench]'``)."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise RuntimeError("plotting needs matplotlib, which is not installed: pip install matplotlib (or 'lsattn[bench]')") from None
    ran = [r for r in records if r["skipped"] is None]
    ops = list(dict.fromkeys(r["op"] for r in ran))
    dtypes = [dt for dt in DTYPES if any(r["dtype"] == dt for r in ran)]
    lines = list(dict.fromkeys((r["formulation"], r["backend"]) for r in ran))
    fig = Figure(figsize=(2.6 * max(len(dtypes), 1) + 1.2, 1.9 * max(len(ops), 1) + 0.8), layout="constrained")
    axes = fig.subplots(max(len(ops), 1), max(len(dtypes), 1), squeeze=False, sharex=True, sharey=True)
    colors = {key: f"C{i}" for i, key in enumerate(lines)}
    for i, op in enumerate(ops):
        for j, dt in enumerate(dtypes):
            ax = axes[i][j]
            _panel(ax, [r for r in ran if r["op"] == op and r["dtype"] == dt], lines, colors)
            ax.axhline(EPS[dt], color="grey", lw=0.6, ls=":")
            ax.axhline(_CEILING, color="red", lw=0.5, ls="--")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_ylim(_FLOOR / 3, _CEILING * 30)
            if i == 0:
                ax.set_title(dt, fontsize=9)
            if j == 0:
                ax.set_ylabel(f"{op}\nrel. error", fontsize=7)
            if i == len(ops) - 1:
                ax.set_xlabel("input magnitude (scale)", fontsize=7)
            ax.tick_params(labelsize=6)
    handles = [axes[0][0].plot([], [], color=colors[key], marker="o", ms=3, label=f"{key[0]} [{key[1]}]" if key[1] != "-" else key[0])[0] for key in lines]
    handles.append(axes[0][0].plot([], [], color="red", marker="x", ls="--", lw=0.5, label="non-finite output")[0])
    handles.append(axes[0][0].plot([], [], color="grey", ls=":", lw=0.6, label="dtype epsilon")[0])
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 4), fontsize=7)
    fig.savefig(path, dpi=dpi)
    return path


def _panel(ax, recs, lines, colors):
    for key in lines:
        pts = {}
        for r in recs:
            if (r["formulation"], r["backend"]) == key:
                err = math.inf if _broken(r) else r["normwise_rel_err"]
                pts[r["scale"]] = max(pts.get(r["scale"], 0.0), err)
        if not pts:
            continue
        xs = sorted(pts)
        ys = [_CEILING if math.isinf(pts[s]) else max(pts[s], _FLOOR) for s in xs]
        ax.plot(xs, ys, color=colors[key], marker="o", ms=2.5, lw=1)
        bad = [s for s in xs if math.isinf(pts[s])]
        ax.plot(bad, [_CEILING] * len(bad), color="red", marker="x", ls="none", ms=5)
