"""``python -m examples.mqar``: MQAR with every mixer side by side (see docs/examples.md).

    python -m examples.mqar --quick                                    # CPU, tiny, a few minutes
    python -m examples.mqar --small --budget-seconds 480 --out res/    # one GPU, 8 minutes
    python -m examples.mqar --sweep --budget-seconds 7200 --out res/   # the Zoology-sized grid
"""
import time

T_START = time.perf_counter()          # the budget counts from here, the imports included

import argparse  # noqa: E402

import torch  # noqa: E402

from .models import MIXERS  # noqa: E402
from .sweep import FULL, QUICK, SMALL, run  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m examples.mqar", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--quick", action="store_true", help="tiny sizes, fixed steps (CPU)")
    mode.add_argument("--small", action="store_true",
                      help="T in {128,256} x pairs in {8,16,32}, vocabulary 256, lr 1e-2")
    mode.add_argument("--sweep", action="store_true",
                      help="T in {256,512,1024} x pairs in {16,32,64}, vocabulary 8192, 3 lrs")
    p.add_argument("--budget-seconds", "--budget-s", dest="budget_s", type=float, default=None,
                   help="wall-clock budget of the whole run in seconds: steps per run fitted to "
                        "it from measured step times, everything (timing included) ends within it")
    p.add_argument("--out", default=None, help="folder for mqar_<date>.json/.md/.png")
    p.add_argument("--mixers", default=",".join(MIXERS), help=f"comma-separated subset of {MIXERS}")
    p.add_argument("--steps", type=int, default=None,
                   help="steps per run (without --budget-seconds; default: the mode's)")
    p.add_argument("--vocab", type=int, default=None, help="vocabulary size")
    p.add_argument("--d-model", dest="d_model", type=int, default=None, help="model width")
    p.add_argument("--batch", type=int, default=None, help="sequences per step")
    p.add_argument("--lengths", default=None, help="comma-separated sequence lengths")
    p.add_argument("--pairs", default=None, help="comma-separated numbers of key-value pairs")
    p.add_argument("--lrs", default=None, help="comma-separated peak learning rates (first kept last)")
    p.add_argument("--device", default=None, help="torch device (default: cuda when available)")
    args = p.parse_args(argv)
    mixers = [m.strip() for m in args.mixers.split(",") if m.strip()]
    bad = [m for m in mixers if m not in MIXERS]
    if bad:
        p.error(f"--mixers: unknown {bad}; choose from {MIXERS}")
    if args.steps is not None and args.budget_s is not None:
        p.error("--steps and --budget-seconds exclude each other (the budget sets the steps)")
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if args.quick and device.type == "cpu":
        torch.set_num_threads(1)       # tiny tensors: more threads only add overhead (10x here)
    cfg = dict(QUICK if args.quick else SMALL if args.small else FULL)
    for key, conv in (("vocab", None), ("d_model", None), ("batch", None), ("lengths", int),
                      ("pairs", int), ("lrs", float)):
        val = getattr(args, key)
        if val is not None:
            cfg[key] = val if conv is None else [conv(x) for x in val.split(",")]
    if args.steps is not None:
        cfg["steps"] = args.steps
    run(cfg, mixers, device, args.budget_s, args.out, t_start=T_START)


if __name__ == "__main__":
    main()
