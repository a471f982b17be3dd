"""Trains a DPR bi-encoder with DPR's command line.

One process, or several started by `python -m torch.distributed.launch`, `torchrun` or `srun`
(one task each). SIGTERM, SIGINT and SIGUSR1 stop training with a resumable checkpoint, exit
status 128 + the signal number; the same command resumes (docs/RELIABILITY.md).
"""

from __future__ import annotations

import sys

from dpr.cli.flags import add_debug_flag
from dpr.cli.main import run_main
from dpr.training.command_line import build_parser, config_from_args
from dpr.training.trainer import run_in_process_group
from dpr.utils.logging import setup_logging

PROG = "train_dense_encoder"


def main(argv: list[str] | None = None) -> int:
    """Parses the flags, sets up the process group and trains (or validates); returns 0, 1 on
    bad input, 2 on bad flags, 128 + N after a stop signal N (with a checkpoint to resume from).
    """
    parser = build_parser(description=__doc__.splitlines()[0])
    parser.prog = f"{PROG}.py"
    add_debug_flag(parser)
    return run_main(parser, argv, lambda args: run_in_process_group(
        config_from_args(parser, argv, args), on_rank=setup_logging), prog=PROG)


if __name__ == "__main__":
    sys.exit(main())
