"""``python -m examples.mqar``: MQAR with every mixer side by side (see docs/examples.md).

    python -m examples.mqar --quick                     # CPU, tiny, a few minutes for all mixers
    python -m examples.mqar --sweep --budget-s 420 --out results/mqar    # the GPU sweep
"""
import argparse

import torch

from .models import MIXERS
from .sweep import FULL, QUICK, run


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m examples.mqar", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--quick", action="store_true", help="tiny sizes, fixed steps (CPU)")
    mode.add_argument("--sweep", action="store_true",
                      help="T in {256,512,1024} x pairs in {16,32,64}, steps fitted to --budget-s")
    p.add_argument("--budget-s", type=float, default=None,
                   help="wall-clock budget of the whole run, seconds (sweep: default 420)")
    p.add_argument("--out", default=None, help="folder for mqar_<date>.json/.md/.png")
    p.add_argument("--mixers", default=",".join(MIXERS), help=f"comma-separated subset of {MIXERS}")
    p.add_argument("--steps", type=int, default=None, help="steps per run (overrides the budget plan)")
    p.add_argument("--vocab", type=int, default=None, help="vocabulary size (sweep: 8192)")
    p.add_argument("--batch", type=int, default=None, help="sequences per step (sweep: 64)")
    p.add_argument("--lengths", default=None, help="comma-separated sequence lengths")
    p.add_argument("--pairs", default=None, help="comma-separated numbers of key-value pairs")
    p.add_argument("--lrs", default=None, help="comma-separated peak learning rates (first kept last)")
    p.add_argument("--device", default=None, help="torch device (default: cuda when available)")
    args = p.parse_args(argv)
    mixers = [m.strip() for m in args.mixers.split(",") if m.strip()]
    bad = [m for m in mixers if m not in MIXERS]
    if bad:
        p.error(f"--mixers: unknown {bad}; choose from {MIXERS}")
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if args.quick and device.type == "cpu":
        torch.set_num_threads(1)       # tiny tensors: more threads only add overhead (10x here)
    cfg = dict(QUICK if args.quick else FULL)
    budget = args.budget_s if args.budget_s is not None or args.quick else 420.0
    for key, conv in (("vocab", None), ("batch", None), ("lengths", int), ("pairs", int), ("lrs", float)):
        val = getattr(args, key)
        if val is not None:
            cfg[key] = val if conv is None else [conv(x) for x in val.split(",")]
    if args.steps is not None:
        cfg["steps"], budget = args.steps, None
    run(cfg, mixers, device, budget, args.out)


if __name__ == "__main__":
    main()
