"""Timing and reporting helpers shared by the benchmark scripts (``benchmarks/bench_*.py``).

- the command line of a sweep over T = 2^min .. 2^max: :func:`sweep_parser`;
- timing: :func:`best_of` (shortest of ``repeat`` calls, after an optional warm-up call) with a
  clock from :data:`CLOCKS` (``--clock cpu|wall``);
- memory: :func:`traced_peak` (tracemalloc peak of one call), :func:`proc_status_bytes` (peak or
  current resident set size from ``/proc/self/status``) and :func:`reset_peak_rss`;
- the header of a result file: :func:`cpu_name`, :func:`python_numpy`, :func:`today`, :func:`utc_now`;
- results: :func:`md_table`, :func:`write_text`, :func:`write_json`, :func:`print_row`,
  :func:`pyplot` (matplotlib, or None) and :func:`plot_vs_T`.

Only the standard library is imported here (bench_exp_kernel sets thread counts before NumPy is
imported). The scripts run as ``python benchmarks/bench_x.py``, which puts this folder on
``sys.path``.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import time

#: Where the scripts write their tables and plots.
RESULTS = pathlib.Path(__file__).parent / "results"

#: ``--clock`` choices. ``cpu``: seconds of CPU used by this process (user + system); on a machine
#: shared with other jobs it does not count the time other processes hold the cores, wall time does.
CLOCKS = {"cpu": time.process_time, "wall": time.perf_counter}


def sweep_parser(doc, *, min_log2, max_log2, repeat, d=None, heads=None, chunk=None):
    """The argument parser of a script timing T = 2^min_log2 .. 2^max_log2 (``--min-log2``,
    ``--max-log2``), with ``--d`` (d_k = d_v), ``--heads`` and ``--chunk`` where a default is given,
    and ``--repeat``; ``doc`` (the script's docstring) is its help. The script adds its own options."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--min-log2", type=int, default=min_log2)
    ap.add_argument("--max-log2", type=int, default=max_log2)
    if d is not None:
        ap.add_argument("--d", type=int, default=d, help="d_k = d_v")
    if heads is not None:
        ap.add_argument("--heads", type=int, default=heads)
    if chunk is not None:
        ap.add_argument("--chunk", type=int, default=chunk)
    ap.add_argument("--repeat", type=int, default=repeat)
    return ap


def best_of(fn, repeat, *, warmup=True, clock=time.perf_counter):
    """Shortest of ``repeat`` timed calls of ``fn()``, in seconds of ``clock``; one untimed call
    first (caches, allocator, compilation) unless ``warmup=False``."""
    if warmup:
        fn()
    times = []
    for _ in range(repeat):
        t0 = clock()
        fn()
        times.append(clock() - t0)
    return min(times)


def traced_peak(fn):
    """Peak bytes traced by tracemalloc during one call of ``fn()`` (NumPy allocations included;
    the output too, if ``fn`` returns it)."""
    import tracemalloc

    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def proc_status_bytes(key="VmHWM"):
    """``VmHWM`` (peak resident set size) or ``VmRSS`` (current) of this process in bytes, from
    /proc/self/status (Linux). Not ``getrusage().ru_maxrss``, which a child inherits from its
    parent across fork + exec (it would start at the parent's peak and hide a call's growth)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {key} in /proc/self/status (needs Linux)")


def reset_peak_rss():
    """Reset this process's ``VmHWM`` to its current RSS (Linux >= 4.0)."""
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


def cpu_name():
    """The processor's name, or the machine type where the platform does not say."""
    return platform.processor() or platform.machine()


def python_numpy():
    """``"CPython 3.11.7, NumPy 2.1.0"``."""
    import numpy as np

    return f"{platform.python_implementation()} {platform.python_version()}, NumPy {np.__version__}"


def today():
    """Today's date, ``YYYY-MM-DD`` (local)."""
    return datetime.date.today().isoformat()


def utc_now():
    """Now, ``YYYY-MM-DD HH:MM UTC``."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def md_table(header, rows, align="---"):
    """Lines of a Markdown table: ``header`` cells, then each row's cells (already formatted).
    ``align``: the rule of every column (``"---"``, ``"---:"``) or a list, one per column."""
    rule = [align] * len(header) if isinstance(align, str) else list(align)
    line = lambda cells: "| " + " | ".join(str(c) for c in cells) + " |"  # noqa: E731
    return [line(header), "|" + "|".join(rule) + "|"] + [line(r) for r in rows]


def write_text(path, lines):
    """Write ``lines`` (one string each) to ``path``, creating its folder."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def write_json(path, obj):
    """Write ``obj`` as indented JSON to ``path``, creating its folder."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as fh:
        json.dump(obj, fh, indent=1)


def print_row(row):
    """``name=value`` pairs of one result row on one line (floats to 4 decimals), flushed."""
    print(", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)


def pyplot():
    """``matplotlib.pyplot`` on the file-only Agg backend, or None (said on stdout) without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot")
        return None
    return plt


def plot_vs_T(rows, names, title, path):
    """Log-log plot of time (ms) against T: one line per column ``names`` of ``rows`` (dicts with
    ``"T"`` and seconds, None where not run), saved to ``path``."""
    plt = pyplot()
    if plt is None:
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    for n in names:
        pts = [(r["T"], r[n]) for r in rows if r[n] is not None]
        ax.loglog([p[0] for p in pts], [p[1] * 1e3 for p in pts], "o-", label=n)
    ax.set_xlabel("T (tokens)")
    ax.set_ylabel("time (ms)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
