"""Trains a reranker (a cross-encoder) on DPR training files, as train_dense_encoder.py trains.

The reranker is one encoder reading a question and a passage together, with a one-score head,
trained with a listwise loss over each question's positive and `--negatives` negatives
(README.md, "Reranker").

One process, or several started by `python -m torch.distributed.launch`, `torchrun` or `srun`
(one task each). SIGTERM, SIGINT and SIGUSR1 stop training with a resumable checkpoint, exit
status 128 + the signal number; the same command resumes (docs/RELIABILITY.md).
"""

from __future__ import annotations

import argparse
import sys

from dpr.cli.flags import add_debug_flag
from dpr.cli.main import run_main
from dpr.training.command_line import build_parser, config_from_args
from dpr.training.trainer import run
from dpr.utils.dist import cleanup, init_distributed
from dpr.utils.logging import setup_logging

PROG = "train_reranker"


def _train(parser: argparse.ArgumentParser, argv: list[str] | None,
           args: argparse.Namespace) -> int:
    cfg = config_from_args(parser, argv, args, reranker=True)
    dctx = init_distributed(cfg.train.local_rank, no_cuda=cfg.train.no_cuda,
                            timeout_minutes=cfg.train.distributed_timeout_minutes)
    setup_logging(dctx.rank)
    try:
        run(cfg, dctx)
    finally:
        cleanup()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parses the flags, sets up the process group and trains (or validates `--model_file` on
    `--dev_file`); returns 0, 1 on bad input, 2 on bad flags, 128 + N after a stop signal N
    (with a checkpoint to resume from)."""
    parser = build_parser(description=__doc__.splitlines()[0], reranker=True)
    parser.prog = f"{PROG}.py"
    add_debug_flag(parser)
    return run_main(parser, argv, lambda args: _train(parser, argv, args), prog=PROG)


if __name__ == "__main__":
    sys.exit(main())
