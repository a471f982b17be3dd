"""Top-level training flow shared by `train_dense_encoder.py` and tests."""

from __future__ import annotations

import json
import logging
import socket
from pathlib import Path
from typing import Any

from dpr.data.records import DataFormatError, load_samples
from dpr.training.config import Config
from dpr.training.trainer import BiEncoderTrainer
from dpr.utils.dist import DistContext
from dpr.utils.errors import UsageError, naming_flag
from dpr.utils.io import check_input_path, check_output_dir

logger = logging.getLogger(__name__)


def run(cfg: Config, dctx: DistContext) -> dict[str, Any]:
    """Trains, or validates a checkpoint when no training file is given (DPR's main flow).

    Data files are read before any model is built, so bad input fails fast and leaves no
    checkpoint behind.

    Returns:
        A small summary (best checkpoint, or validation metrics).

    Raises:
        DprError: For unusable input (files, records, checkpoints); OSError for files that
            cannot be read or written. Anything else is a bug.
    """
    logger.info("Host %s, rank %d/%d (local rank %d), device %s, mixed precision %s",
                socket.gethostname(), dctx.rank, dctx.world_size, dctx.local_rank, dctx.device,
                cfg.train.use_amp)
    logger.info("Configuration:\n%s", json.dumps(cfg.to_dict(), indent=2, sort_keys=True))
    data, model, train = cfg.data, cfg.model, cfg.train
    if model.model_file:
        check_input_path(model.model_file, flag="--model_file")
    if data.train_file:
        with naming_flag("--train_file"):
            train_samples = load_samples(data.train_file, data.train_files_upsample_rates)
            if not train_samples:
                raise DataFormatError(f"{data.train_file}: no training sample has a positive "
                                      "passage")
        with naming_flag("--dev_file"):
            dev_samples = load_samples(data.dev_file) if data.dev_file else None
        if train.output_dir:
            make_output_dir(train.output_dir)
        trainer = BiEncoderTrainer(cfg, dctx)
        return trainer.train(train_samples, dev_samples)
    if model.model_file and data.dev_file:
        with naming_flag("--dev_file"):
            dev_samples = load_samples(data.dev_file)
        trainer = BiEncoderTrainer(cfg, dctx)
        return trainer.validate_only(dev_samples)
    logger.warning("Nothing to do: give --train_file to train, or --model_file and --dev_file "
                   "to validate a checkpoint")
    return {}


def make_output_dir(path: str) -> None:
    """Creates `--output_dir` (and its parents) if missing.

    Raises:
        UsageError: Naming the flag when the path is a file, under a file, or cannot be made.
    """
    check_output_dir(path, flag="--output_dir")
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(f"--output_dir {path}: cannot be created ({err.strerror or err})") \
            from err
