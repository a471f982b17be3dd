"""Trains a reranker (a cross-encoder) on DPR training files, as train_dense_encoder.py trains.

The reranker is one encoder reading a question and a passage together, with a one-score head,
trained with a listwise loss over each question's positive and `--negatives` negatives
(README.md, "Reranker"). Launchers, stop signals and exit statuses: those of
train_dense_encoder.py.
"""

from __future__ import annotations

import sys

from dpr.cli.flags import add_debug_flag
from dpr.cli.main import run_main
from dpr.training.command_line import build_parser, config_from_args
from dpr.training.trainer import run_in_process_group
from dpr.utils.logging import setup_logging

PROG = "train_reranker"


def main(argv: list[str] | None = None) -> int:
    """Trains (or validates `--model_file` on `--dev_file`); returns 0, 1 on bad input, 2 on
    bad flags, 128 + N after a stop signal N (with a checkpoint to resume from)."""
    parser = build_parser(description=__doc__.splitlines()[0], reranker=True)
    parser.prog = f"{PROG}.py"
    add_debug_flag(parser)
    return run_main(parser, argv, lambda args: run_in_process_group(
        config_from_args(parser, argv, args, reranker=True), on_rank=setup_logging), prog=PROG)


if __name__ == "__main__":
    sys.exit(main())
