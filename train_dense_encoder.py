"""Trains a DPR bi-encoder with DPR's command line.

Single process:   python train_dense_encoder.py --encoder_model_type hf_bert ...
Several processes: python -m torch.distributed.launch --nproc_per_node=N train_dense_encoder.py ...
                   torchrun --nproc_per_node=N train_dense_encoder.py ...
"""

from __future__ import annotations

import logging
import sys

from dpr.training.config import parse_config
from dpr.training.run import USER_ERRORS, run
from dpr.utils.dist import cleanup, init_distributed
from dpr.utils.logging import setup_logging

logger = logging.getLogger("train_dense_encoder")


def main(argv: list[str] | None = None) -> int:
    """Parses the flags, sets up the process group and trains (or validates).

    Returns:
        0 on success, 1 on bad input (the error is logged), 2 on bad flags.
    """
    try:
        cfg = parse_config(argv, description=__doc__.splitlines()[0])
    except SystemExit as exit_:
        return int(exit_.code or 0)
    try:
        dctx = init_distributed(cfg.train.local_rank, no_cuda=cfg.train.no_cuda)
    except (ValueError, RuntimeError) as err:
        setup_logging(0)
        logger.error("Cannot set up distributed training: %s", err)
        return 1
    setup_logging(dctx.rank)
    try:
        run(cfg, dctx)
    except USER_ERRORS as err:
        logger.error("%s", err)
        return 1
    finally:
        cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
