"""The ``lsattn audit`` command: its argument parser (:func:`add_parser`, used by lsattn.cli),
:func:`run`, :func:`main` and the :class:`ProgressBar`.
"""
from __future__ import annotations

import sys
import time

from ._inputs import NAMESPACES, OPS
from ._report import plot, table, write_json
from ._sweep import DEFAULT_LENGTHS, DEFAULT_SCALES, QUICK_LENGTHS, QUICK_SCALES, sweep


class ProgressBar:
    """``[#####.....] done/total label`` rewritten in place on stderr (with ``\\r``)."""

    def __init__(self, stream=None, width=30):
        self.stream, self.width = stream or sys.stderr, width

    def __call__(self, done, total, label):
        filled = self.width * done // max(total, 1)
        self.stream.write(f"\r[{'#' * filled}{'.' * (self.width - filled)}] {done}/{total} {label[:60]:<60}")
        if done >= total:
            self.stream.write("\n")
        self.stream.flush()


def _split_list(values, cast=str):
    if values is None:
        return None
    return [cast(x) for v in values for x in str(v).split(",") if x.strip()]


def add_parser(subparsers):
    """Add the ``audit`` subcommand to an argparse sub-parser set (used by lsattn.cli)."""
    p = subparsers.add_parser(
        "audit",
        help="numerical stability audit of every formulation against float64",
        description="Error of lsattn's formulations and of naive/published ones against float64 references, "
        "over dtypes, input magnitudes and lengths. Lists take commas or spaces.",
    )
    p.add_argument("--ops", nargs="+", help=f"operators (default all: {', '.join(OPS)})")
    p.add_argument("--dtypes", nargs="+", help="dtypes (default float16, bfloat16, float32, float64 where the namespace has them)")
    p.add_argument("--scales", nargs="+", help=f"input magnitudes (default {', '.join(f'{s:g}' for s in DEFAULT_SCALES)})")
    p.add_argument("--lengths", nargs="+", help=f"sequence lengths T (default {', '.join(map(str, DEFAULT_LENGTHS))})")
    p.add_argument("--backends", nargs="+", help="lsattn backends (default every available one)")
    p.add_argument("--formulations", nargs="+", help="formulations to audit: lsattn, naive, paper (default all)")
    p.add_argument("--namespace", default="numpy", choices=NAMESPACES, help="array library of the inputs (default numpy)")
    p.add_argument("--json", metavar="PATH", help="write one JSON record per case")
    p.add_argument("--plot", metavar="PATH", help="save a figure of error against magnitude (needs matplotlib)")
    p.add_argument("--quick", action="store_true", help=f"small sweep: scales {', '.join(f'{s:g}' for s in QUICK_SCALES)}, lengths {', '.join(map(str, QUICK_LENGTHS))}")
    p.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    p.add_argument("--memory-budget", type=float, default=256, metavar="MIB", help="skip formulations needing more (default 256 MiB)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run)
    return p


def run(args):
    """Run the audit described by parsed ``args``; print the table; write JSON / figure."""
    scales = _split_list(args.scales, float) or (QUICK_SCALES if args.quick else None)
    lengths = _split_list(args.lengths, int) or (QUICK_LENGTHS if args.quick else None)
    progress = ProgressBar() if (not args.quiet and sys.stderr.isatty()) else None
    t0 = time.perf_counter()
    records = sweep(
        _split_list(args.ops),
        _split_list(args.dtypes),
        scales,
        lengths,
        _split_list(args.backends),
        _split_list(args.formulations),
        namespace=args.namespace,
        seed=args.seed,
        memory_budget=args.memory_budget * 2**20,
        progress=progress,
    )
    print(f"lsattn audit on {args.namespace}: {len(records)} cases in {time.perf_counter() - t0:.1f} s "
          "(error: max |out - ref| / max |ref| against float64)")
    print(table(records))
    if args.json:
        write_json(records, args.json)
        print(f"wrote {args.json}")
    if args.plot:
        plot(records, args.plot)
        print(f"wrote {args.plot}")
    return 0


def main(argv=None):
    """``lsattn.audit.main(["--quick", ...])``: the same as ``lsattn audit --quick ...``."""
    import argparse

    parser = argparse.ArgumentParser(prog="lsattn")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["audit"] + list(sys.argv[1:] if argv is None else argv))
    return args.run(args)
