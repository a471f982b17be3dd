"""A run's output folder and its resume policy.

What lives in `--output_dir` (written by the main process only):
- `<checkpoint_file_name>.<epoch>.<offset>`: checkpoints in DPR's layout (`dpr.models.checkpoint`);
- `training_config.json`: the resolved flags, the checkpoint's encoder settings included;
- `training_log.jsonl`: one JSON object per training step and per validation.

Resume policy (DPR's, announced in one log line): `--model_file` when given, else the most
advanced checkpoint in `--output_dir`, else a fresh model. A checkpoint written at the end of
an epoch resumes at the start of the next one; the best validation so far is recovered from
`training_log.jsonl`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dpr.models.checkpoint import (
    CheckpointState,
    checkpoint_name,
    encoder_params_of,
    find_latest_checkpoint,
    load_checkpoint,
    resolve_encoder_params,
    save_checkpoint,
    to_dpr_layout,
)
from dpr.training.config import Config, ModelConfig
from dpr.utils.io import atomic_write

logger = logging.getLogger(__name__)

LOG_FILE = "training_log.jsonl"
CONFIG_FILE = "training_config.json"


@dataclass(frozen=True)
class Resume:
    """The checkpoint a run starts from."""

    path: str
    state: CheckpointState
    keep_progress: bool = True  # False with --ignore_checkpoint_offset


@dataclass(frozen=True)
class Best:
    """The best validation so far (lower is better)."""

    metric: str
    value: float
    checkpoint: str

    def improved_by(self, metric: str, value: float) -> bool:
        """Whether (metric, value) replaces this best: a new kind of metric always does."""
        return self.metric != metric or value < self.value


def load_resume(cfg: Config) -> Resume | None:
    """Loads the checkpoint the resume policy picks (module docstring), or None."""
    m, t = cfg.model, cfg.train
    path: str | None = m.model_file
    if path is None and t.output_dir:
        latest = find_latest_checkpoint(t.output_dir, t.checkpoint_file_name)
        path = str(latest) if latest else None
    if path is None:
        return None
    state = load_checkpoint(path, allow_pickle=t.allow_unsafe_pickle)
    ignored = [name for name, flag in (("offset", t.ignore_checkpoint_offset),
                                       ("optimizer", t.ignore_checkpoint_optimizer),
                                       ("lr", t.ignore_checkpoint_lr)) if flag]
    if t.ignore_checkpoint_optimizer:
        state = dataclasses.replace(state, optimizer_dict={})
    if t.ignore_checkpoint_lr:
        state = dataclasses.replace(state, scheduler_dict={})
    if ignored:
        logger.info("Initialising from checkpoint %s (epoch %d, offset %d) without its %s",
                    path, state.epoch, state.offset, ", ".join(ignored))
    else:
        logger.info("Resuming from checkpoint %s (epoch %d, offset %d)", path, state.epoch,
                    state.offset)
    return Resume(path, state, keep_progress=not t.ignore_checkpoint_offset)


def resolve_model_config(model_cfg: ModelConfig, resume: Resume | None) -> ModelConfig:
    """The command line's encoder settings, with what defines the model taken from `resume`."""
    if resume is None:
        return model_cfg
    merged, overrides = resolve_encoder_params(
        dataclasses.asdict(model_cfg), resume.state.encoder_params, checkpoint=resume.path)
    for message in overrides:
        logger.info("Checkpoint overrides %s", message)
    return dataclasses.replace(model_cfg, **merged)


def restore_optimizer(optimizer: torch.optim.Optimizer, resume: Resume | None) -> None:
    """Loads the checkpoint's optimizer state when it fits this optimizer."""
    if resume is None or not resume.state.optimizer_dict:
        return
    try:
        optimizer.load_state_dict(resume.state.optimizer_dict)
    except ValueError as err:  # e.g. the original's one-group fairseq Adam state
        logger.warning("Optimizer state of %s does not fit this optimizer (%s): starting from "
                       "a fresh optimizer state", resume.path, err)


def restore_scheduler(scheduler: torch.optim.lr_scheduler.LRScheduler,
                      optimizer: torch.optim.Optimizer, resume: Resume | None) -> None:
    """Loads the schedule's position and sets the optimizer's learning rates from it."""
    if resume is None or not resume.state.scheduler_dict:
        return
    scheduler.load_state_dict(resume.state.scheduler_dict)
    for group, lr in zip(optimizer.param_groups, scheduler.get_last_lr()):
        group["lr"] = lr


def start_position(resume: Resume | None, batches_per_epoch: int) -> tuple[int, int]:
    """(epoch, batches already done in it) where training continues."""
    if resume is None or not resume.keep_progress:
        return 0, 0
    epoch, offset = resume.state.epoch, resume.state.offset
    if offset <= 0 or offset >= batches_per_epoch:
        return epoch + 1, 0
    return epoch, offset


class RunDir:
    """The files of one run; every method is a no-op without `--output_dir` or off rank 0."""

    def __init__(self, output_dir: str | None, *, prefix: str, is_main: bool) -> None:
        self.folder = Path(output_dir) if output_dir else None
        self.prefix = prefix
        self.writes = self.folder is not None and is_main

    def write_config(self, values: dict[str, Any]) -> None:
        """Writes `training_config.json`."""
        if self.writes:
            with atomic_write(self.folder / CONFIG_FILE) as handle:
                json.dump(values, handle, indent=2, sort_keys=True)

    def log_event(self, **record: Any) -> None:
        """Appends one record to `training_log.jsonl`."""
        if self.writes:
            with open(self.folder / LOG_FILE, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")

    def best_from_log(self) -> Best | None:
        """The best validation recorded in `training_log.jsonl` (by any process)."""
        log = self.folder / LOG_FILE if self.folder else None
        if log is None or not log.is_file():
            return None
        best: Best | None = None
        for line in log.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            if record.get("event") == "validation":
                if best is None or best.improved_by(record["metric"], record["value"]):
                    best = Best(record["metric"], record["value"], record["checkpoint"])
        return best

    def save_checkpoint(self, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                        scheduler: torch.optim.lr_scheduler.LRScheduler,
                        model_cfg: ModelConfig, epoch: int, offset: int) -> str | None:
        """Writes `<prefix>.<epoch>.<offset>`; returns its path (None when nothing is written)."""
        if not self.writes:
            return None
        path = self.folder / checkpoint_name(self.prefix, epoch, offset)
        state = CheckpointState(
            model_dict=to_dpr_layout(model.state_dict()),
            optimizer_dict=optimizer.state_dict(),
            scheduler_dict=scheduler.state_dict(),
            offset=offset, epoch=epoch,
            encoder_params=encoder_params_of(dataclasses.asdict(model_cfg)),
        )
        save_checkpoint(state, path)
        logger.info("Saved checkpoint %s", path)
        return str(path)
