"""Averages a fine-tuned checkpoint with the pretrained weights it started from (WiSE-FT).

python -m dpr.average --model_file output/dpr_biencoder.2 --alpha 0.5 \
    --out_file output/dpr_biencoder.wise50

writes a checkpoint holding `(1 - alpha) * start + alpha * fine-tuned` (see
`dpr.models.average`), with the same encoder parameters and recipe, that every tool reads like
any other checkpoint. Choose alpha on a tuning split, not on the test data.
"""

from __future__ import annotations

import argparse
import sys

from dpr.cli.flags import (
    add_checkpoint_path_flags,
    add_debug_flag,
    add_flag,
    add_pickle_flag,
    add_positional_flag,
    require,
)
from dpr.cli.main import run_main
from dpr.models.average import average_with_start

PROG = "dpr.average"


def build_parser() -> argparse.ArgumentParser:
    """The flags of `python -m dpr.average`."""
    parser = argparse.ArgumentParser(prog=f"python -m {PROG}", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_positional_flag(parser, "--model_file", metavar="CHECKPOINT",
                        help="fine-tuned DPR checkpoint")
    parser.add_argument("--alpha", type=float, required=True,
                        help="weight of the fine-tuned weights: 1 = the checkpoint unchanged, "
                        "0 = the pretrained start; WiSE-FT's usual choice is 0.5")
    add_flag(parser, "--out_file", "--output", required=True, help="checkpoint file to write")
    add_checkpoint_path_flags(parser)
    add_pickle_flag(parser)
    add_debug_flag(parser)
    return parser


def run(args: argparse.Namespace) -> dict:
    """Averages and writes the checkpoint."""
    return average_with_start(require(args, "--model_file", "the checkpoint"), args.out_file,
                              alpha=args.alpha,
                              cli={"pretrained_model_cfg": args.pretrained_model_cfg,
                                   "pretrained_file": args.pretrained_file},
                              allow_pickle=args.allow_unsafe_pickle)


def main(argv: list[str] | None = None) -> int:
    """Runs the command line; returns 0, 1 on bad input, 2 on bad flags."""
    return run_main(build_parser(), argv, run, prog=PROG)


if __name__ == "__main__":
    sys.exit(main())
