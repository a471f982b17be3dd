"""Averages a fine-tuned checkpoint with the pretrained weights it started from (WiSE-FT).

python -m dpr.average output/dpr_biencoder.2 --alpha 0.5 --output output/dpr_biencoder.wise50

writes a checkpoint holding `(1 - alpha) * start + alpha * fine-tuned` (see
`dpr.models.average`), with the same encoder parameters and recipe, that every tool reads like
any other checkpoint. Choose alpha on a tuning split, not on the test data.
"""

from __future__ import annotations

import argparse
import sys

from dpr.models.average import average_with_start
from dpr.utils.cli import add_debug_flag, run_main
from dpr.utils.logging import setup_logging

PROG = "dpr.average"


def build_parser() -> argparse.ArgumentParser:
    """The flags of `python -m dpr.average`."""
    parser = argparse.ArgumentParser(prog=f"python -m {PROG}", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("model_file", help="fine-tuned DPR checkpoint")
    parser.add_argument("--alpha", type=float, required=True,
                        help="weight of the fine-tuned weights: 1 = the checkpoint unchanged, "
                        "0 = the pretrained start; WiSE-FT's usual choice is 0.5")
    parser.add_argument("--output", required=True, help="checkpoint file to write")
    parser.add_argument("--pretrained_model_cfg", default=None,
                        help="the start model's folder (default: the one stored in the "
                        "checkpoint)")
    parser.add_argument("--pretrained_file", default=None,
                        help="fairseq_roberta: the start's fairseq folder (default: stored)")
    parser.add_argument("--allow_unsafe_pickle", action="store_true",
                        help="allow files that need full unpickling (trusted files only)")
    add_debug_flag(parser)
    return parser


def run(args: argparse.Namespace) -> dict:
    """Averages and writes the checkpoint."""
    return average_with_start(args.model_file, args.output, alpha=args.alpha,
                              cli={"pretrained_model_cfg": args.pretrained_model_cfg,
                                   "pretrained_file": args.pretrained_file},
                              allow_pickle=args.allow_unsafe_pickle)


def main(argv: list[str] | None = None) -> int:
    """Runs the command line; returns 0, 1 on bad input, 2 on bad flags."""
    return run_main(build_parser(), argv, run, prog=PROG, setup=lambda _: setup_logging(0))


if __name__ == "__main__":
    sys.exit(main())
