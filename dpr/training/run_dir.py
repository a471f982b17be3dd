"""A run's output folder, written by the main process only: checkpoints in DPR's layout
(`<checkpoint_file_name>.<epoch>.<offset>`, `dpr.models.checkpoint`), `training_config.json`
(the resolved flags and the checkpoint's encoder settings), `training_log.jsonl` (one record
per step and per validation), `best_checkpoint.json` and `training_curves.png`. Crash safety
(`RunDir.prepare`) and the best checkpoint: docs/RELIABILITY.md.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dpr.models.checkpoint import (
    CheckpointState,
    checkpoint_name,
    encoder_params_of,
    parse_checkpoint_name,
    save_checkpoint,
    to_dpr_layout,
    to_reranker_layout,
)
from dpr.training.config import ModelConfig
from dpr.training.curves import TrainingCurves
from dpr.training.resume import Resume, optimizer_state
from dpr.utils.errors import InputError, UsageError
from dpr.utils.io import atomic_write, check_output_dir, naming_full_disk, remove_stale_temp_files

logger = logging.getLogger(__name__)

LOG_FILE = "training_log.jsonl"
CONFIG_FILE = "training_config.json"
BEST_FILE = "best_checkpoint.json"
# Validation metrics where higher is better (a reranker's MRR); lower is better for the others.
HIGHER_IS_BETTER = frozenset({"mrr@10"})


@dataclass(frozen=True)
class Best:
    """The best validation so far (lower is better, or higher for `HIGHER_IS_BETTER`)."""

    metric: str
    value: float
    checkpoint: str


def new_best(best: Best | None, metric: str, value: float, checkpoint: str) -> Best | None:
    """The best after a validation of `checkpoint`: itself when its value is finite and the
    first, of a new kind of metric or better than `best`'s (lower, or higher for
    `HIGHER_IS_BETTER`); else `best` unchanged."""
    if not math.isfinite(value):
        return best
    if best is None or best.metric != metric:
        return Best(metric, value, checkpoint)
    better = value > best.value if metric in HIGHER_IS_BETTER else value < best.value
    return Best(metric, value, checkpoint) if better else best


def make_output_dir(path: str) -> None:
    """Creates `--output_dir` (and its parents) if missing; `UsageError` naming the flag when
    it cannot be one."""
    check_output_dir(path, flag="--output_dir")
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(f"--output_dir {path}: cannot be created ({err.strerror or err})") \
            from err


class RunDir:
    """The files of one run; every method is a no-op without `--output_dir` or off rank 0."""

    def __init__(self, output_dir: str | None, *, prefix: str, is_main: bool) -> None:
        self.folder = Path(output_dir) if output_dir else None
        self.prefix = prefix
        self.writes = self.folder is not None and is_main
        self.curves: TrainingCurves | None = None  # given the records logged, when set
        self.best: Best | None = None

    def write_config(self, values: dict[str, Any]) -> None:
        """Writes `training_config.json`."""
        if self.writes:
            with atomic_write(self.folder / CONFIG_FILE) as handle:
                json.dump(values, handle, indent=2, sort_keys=True)

    def log_event(self, **record: Any) -> None:
        """Appends one record to `training_log.jsonl` (and gives it to `curves`)."""
        if self.writes:
            log = self.folder / LOG_FILE
            with naming_full_disk(log), open(log, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")
            if self.curves is not None:
                self.curves.add(record)

    def _belongs(self, name: str) -> bool:
        return name in (LOG_FILE, CONFIG_FILE, BEST_FILE) or name.startswith(self.prefix)

    def read_log(self) -> list[dict[str, Any]]:
        """The records of `training_log.jsonl`, without a torn last line (warned about); an
        unreadable line before it is an `InputError`."""
        log = self.folder / LOG_FILE if self.folder else None
        if log is None or not log.is_file():
            return []
        lines = log.read_text(encoding="utf-8").splitlines()
        records = []
        for number, line in enumerate(lines, 1):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as err:
                if number < len(lines):
                    raise InputError(f"{log}: line {number} is not JSON ({err})") from err
                logger.warning("%s: dropping its torn last line %d (the run was killed while "
                               "writing it)", log, number)
        return records

    def prepare(self, resume: Resume | None) -> Best | None:
        """Makes the folder consistent with where training starts: stale temporary files
        removed, the log cut back to the resume point; returns the best validation recorded up
        to it (also `self.best`)."""
        if not self.writes:
            return None
        for path in remove_stale_temp_files(self.folder, self._belongs):
            logger.info("Removed temporary file %s of an interrupted run", path)
        point = (-1, -1)
        if resume is not None and resume.keep_progress:
            point = (resume.state.epoch, resume.state.offset)
        records = self.read_log()
        kept = [r for r in records if (r.get("epoch", -1), r.get("iteration", -1)) <= point]
        log = self.folder / LOG_FILE
        if log.is_file():
            if len(kept) < len(records):
                logger.info("%s: cut back to epoch %d, step %d, where training resumes (%d "
                            "later record(s) dropped)", log, *point, len(records) - len(kept))
            with atomic_write(log) as handle:
                handle.writelines(json.dumps(r) + "\n" for r in kept)
        for record in kept:
            if record.get("event") == "validation":
                self.best = new_best(self.best, record["metric"], record["value"],
                                     record["checkpoint"])
            if self.curves is not None:
                self.curves.add(record)
        self.record_best()
        return self.best

    def log_validation(self, epoch: int, iteration: int, metric: str, value: float,
                       checkpoint: str) -> None:
        """Logs the validation of `checkpoint` (before it is written, so that a checkpoint on
        disk always has its validation in the log) and keeps the best (`new_best`)."""
        self.log_event(event="validation", epoch=epoch, iteration=iteration, metric=metric,
                       value=value, checkpoint=checkpoint)
        best, self.best = self.best, new_best(self.best, metric, value, checkpoint)
        if self.best is not best:
            logger.info("New best validation checkpoint %s (%s %.5f)", checkpoint, metric, value)
        elif not math.isfinite(value):
            logger.warning("Validation %s is %s at epoch %d, step %d: %s is not a best "
                           "checkpoint candidate", metric, value, epoch, iteration, checkpoint)

    def record_best(self) -> None:
        """Writes `best_checkpoint.json` (removes it when there is no best)."""
        if not self.writes:
            return
        path, best = self.folder / BEST_FILE, self.best
        if best is None:
            path.unlink(missing_ok=True)
            return
        with atomic_write(path) as handle:
            json.dump({"path": best.checkpoint, "metric": best.metric, "value": best.value},
                      handle, indent=2)

    def checkpoint_path(self, epoch: int, offset: int) -> str | None:
        """The file (rank 0's) `save_checkpoint` writes for (epoch, offset); None without
        `--output_dir`."""
        if self.folder is None:
            return None
        return str(self.folder / checkpoint_name(self.prefix, epoch, offset))

    def save_checkpoint(self, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                        scheduler: torch.optim.lr_scheduler.LRScheduler,
                        scaler: torch.amp.GradScaler | None = None,
                        model_cfg: ModelConfig, epoch: int, offset: int,
                        reranker: bool = False) -> str | None:
        """Writes `<prefix>.<epoch>.<offset>` (on rank 0), of a bi-encoder or a `reranker`'s
        `Encoder` (`dpr.models.checkpoint`); returns its path (None without
        `--output_dir`)."""
        path = self.checkpoint_path(epoch, offset)
        if not self.writes or path is None:
            return path
        layout = to_reranker_layout if reranker else to_dpr_layout
        state = CheckpointState(
            model_dict=layout(model.state_dict()),
            optimizer_dict=optimizer_state(optimizer, scaler),
            scheduler_dict=scheduler.state_dict(), offset=offset, epoch=epoch,
            encoder_params=encoder_params_of(dataclasses.asdict(model_cfg), reranker=reranker))
        save_checkpoint(state, path)
        logger.info("Saved checkpoint %s", path)
        return path

    def prune(self, keep_last: int, best: Best | None) -> list[Path]:
        """Deletes this run's checkpoints but the `keep_last` most advanced and the best (none
        when `keep_last` is 0); returns the deleted files."""
        if not self.writes or keep_last <= 0:
            return []
        named = [(parse_checkpoint_name(p.name, self.prefix), p)
                 for p in self.folder.glob(f"{self.prefix}.*")]
        ordered = sorted((position, p) for position, p in named if position is not None)
        keep = {p.name for _, p in ordered[-keep_last:]}
        if best is not None:
            keep.add(Path(best.checkpoint).name)
        deleted = [p for _, p in ordered if p.name not in keep]
        for path in deleted:
            path.unlink(missing_ok=True)
            logger.info("Deleted checkpoint %s (--keep_last_checkpoints %d)", path, keep_last)
        return deleted
