"""Training: the run as a whole (`run`) and the one loop of both models (a bi-encoder, or a
reranker with `cfg.rerank`), what differs between them behind `dpr.training.tasks`; one step
reads top to bottom in `Trainer._train_epoch` (docs/ARCHITECTURE.md, "Two paths").
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import socket
from collections.abc import Callable
from typing import Any

import torch
from transformers import get_linear_schedule_with_warmup, set_seed

from dpr.data.iterator import ShardedIterator
from dpr.data.records import BiEncoderSample, DataFormatError, load_samples
from dpr.data.teacher import TeacherScores, check_teacher_scores, read_teacher_scores
from dpr.recipe import Recipe
from dpr.training.build import build_parts
from dpr.training.config import Config
from dpr.training.curves import TrainingCurves
from dpr.training.interrupt import StopRequest, TrainingInterrupted
from dpr.training.progress import EpochReport
from dpr.training.resume import load_resume, resolve_model_config, restore_scheduler, start_position
from dpr.training.run_dir import RunDir, make_output_dir
from dpr.training.step import LossGuard
from dpr.training.tasks import RERANK_FOLDER_KEYS, BiEncoderTask, RerankTask, Task
from dpr.utils.dist import DistContext, barrier, cleanup, init_distributed
from dpr.utils.errors import naming_flag
from dpr.utils.io import check_input_path
from dpr.utils.seed import derive_seed, make_rng

logger = logging.getLogger(__name__)


def run_in_process_group(cfg: Config, *, on_rank: Callable[[int], object]) -> dict[str, Any]:
    """`run` in this process's group (`torch.distributed.launch`, torchrun, SLURM or one
    process), left at the end; `on_rank` is called with the rank once known (the entry
    point's logging: until then every process logs at rank 0's level, so that an early error
    is seen on any rank)."""
    dctx = init_distributed(cfg.train.local_rank, no_cuda=cfg.train.no_cuda,
                            timeout_minutes=cfg.train.distributed_timeout_minutes)
    on_rank(dctx.rank)
    try:
        return run(cfg, dctx)
    finally:
        cleanup()


def run(cfg: Config, dctx: DistContext) -> dict[str, Any]:
    """Trains, or validates a checkpoint when no training file is given (DPR's main flow);
    returns a small summary (best checkpoint, or validation metrics). Data files are read
    before any model is built, so bad input fails fast and leaves no checkpoint behind."""
    logger.info("Host %s, rank %d/%d (local rank %d), device %s, mixed precision %s",
                socket.gethostname(), dctx.rank, dctx.world_size, dctx.local_rank, dctx.device,
                cfg.train.use_amp)
    logger.info("Configuration:\n%s", json.dumps(cfg.to_dict(), indent=2, sort_keys=True))
    data, model, train = cfg.data, cfg.model, cfg.train
    task = RerankTask if cfg.rerank is not None else BiEncoderTask
    if model.model_file:
        check_input_path(model.model_file, flag="--model_file")
    if data.train_file:
        with naming_flag("--train_file"):
            train_samples = load_samples(data.train_file, data.train_files_upsample_rates)
            if not train_samples:
                raise DataFormatError(f"{data.train_file}: no training sample has a positive "
                                      "passage")
            train_samples = task.usable(train_samples, "--train_file")
        teacher = None
        if data.distill_scores:
            with naming_flag("--distill_scores"):
                teacher = read_teacher_scores(data.distill_scores)
                check_teacher_scores(teacher, train_samples, data.distill_scores)
        with naming_flag("--dev_file"):
            dev_samples = (task.usable(load_samples(data.dev_file), "--dev_file")
                           if data.dev_file else None)
        if train.output_dir:
            make_output_dir(train.output_dir)
        return Trainer(cfg, dctx, teacher=teacher).train(train_samples, dev_samples)
    if model.model_file and data.dev_file:
        with naming_flag("--dev_file"):
            dev_samples = task.usable(load_samples(data.dev_file), "--dev_file")
        return Trainer(cfg, dctx).validate_only(dev_samples)
    logger.warning("Nothing to do: give --train_file to train, or --model_file and --dev_file "
                   "to validate a checkpoint")
    return {}


class Trainer:
    """Builds the model (from scratch or a checkpoint) and runs training or validation."""

    def __init__(self, cfg: Config, dctx: DistContext, *,
                 teacher: TeacherScores | None = None) -> None:
        self.cfg, self.dctx = cfg, dctx
        set_seed(cfg.train.seed % 2**32)  # numpy takes seeds in [0, 2**32) only
        self.resume = load_resume(cfg)
        self.model_cfg = resolve_model_config(
            cfg.model, self.resume, cfg.explicit,
            folder_keys=RERANK_FOLDER_KEYS if cfg.rerank is not None else None)
        self.recipe = Recipe.from_params(dataclasses.asdict(self.model_cfg))
        parts = build_parts(self.model_cfg, cfg.train, dctx, self.resume, cfg.rerank)
        self.bare, self.model, self.optimizer, self.scaler = \
            parts.bare, parts.model, parts.optimizer, parts.scaler
        self.task: Task = (RerankTask if cfg.rerank is not None else BiEncoderTask)(
            cfg, dctx, parts, self.recipe, teacher)
        logger.info("%s", self.task.describe())
        self.run_dir = RunDir(cfg.train.output_dir, prefix=cfg.train.checkpoint_file_name,
                              is_main=dctx.is_main)
        self.stop = StopRequest()

    # -- training -----------------------------------------------------------------------------
    def train(self, train_samples: list[BiEncoderSample],
              dev_samples: list[BiEncoderSample] | None) -> dict[str, Any]:
        """Trains for `--num_train_epochs`, validating and checkpointing along the way."""
        cfg, t, dctx = self.cfg, self.cfg.train, self.dctx
        self.train_samples, self.dev_samples = train_samples, dev_samples
        self.iterator = ShardedIterator(len(train_samples), rank=dctx.rank,
                                        world_size=dctx.world_size,
                                        batch_size=cfg.data.batch_size, shuffle=True,
                                        seed=t.seed)
        batches = self.iterator.batches_per_epoch
        accum = t.gradient_accumulation_steps
        total_updates = math.ceil(batches / accum) * t.epochs
        # The whole run's updates: on resume the saved step counter continues the curve.
        self.scheduler = get_linear_schedule_with_warmup(self.optimizer, t.warmup_steps,
                                                         total_updates)
        restore_scheduler(self.scheduler, self.optimizer, self.resume)
        start_epoch, start_offset = start_position(self.resume, batches)
        self.guard = LossGuard(batches=batches, accumulation=accum,
                               scaled=self.scaler.is_enabled())
        self.run_dir.curves = TrainingCurves(batches=batches, accumulation=accum)
        self.run_dir.prepare(self.resume)
        self.run_dir.write_config(cfg.to_dict(self.model_cfg))
        logger.info(
            "Training: %d samples, %d epoch(s), %d batch(es) per epoch per process, batch %d per "
            "process x %d process(es) x %d accumulation = %d questions per update, %d updates "
            "in total, %d warm-up", len(train_samples), t.epochs, batches,
            cfg.data.batch_size, dctx.world_size, accum,
            cfg.data.batch_size * dctx.world_size * accum, total_updates, t.warmup_steps)
        if start_epoch >= t.epochs:
            logger.warning("Checkpoint is already at epoch %d of %d: nothing to train",
                           start_epoch, t.epochs)
        with self.stop:
            for epoch in range(start_epoch, t.epochs):
                self._train_epoch(epoch, start_offset if epoch == start_epoch else 0)
        if self.run_dir.writes:
            self.run_dir.curves.draw(self.run_dir.folder)
        best = self.run_dir.best
        if best is not None:
            logger.info("Training finished. Best validation checkpoint: %s (%s %.5f)",
                        best.checkpoint, best.metric, best.value)
        return {"best_checkpoint": best.checkpoint if best else None,
                "best_metric": (best.metric, best.value) if best else None}

    def _eval_points(self, batches: int) -> set[int]:
        accum = self.cfg.train.gradient_accumulation_steps
        step = math.ceil(batches / self.cfg.train.eval_per_epoch)
        step = math.ceil(step / accum) * accum
        return {min(k * step, batches) for k in range(1, batches // step + 2)} | {batches}

    def _train_epoch(self, epoch: int, start: int) -> None:
        t, dctx = self.cfg.train, self.dctx
        batches = self.iterator.batches_per_epoch
        accum = t.gradient_accumulation_steps
        eval_points = self._eval_points(batches)
        self.model.train()
        report = EpochReport(t, self.run_dir, self.guard, epoch=epoch, start=start,
                             batches=batches, enabled=dctx.is_main)
        for iteration, indices in report.wrap(self.iterator.batches(epoch, start)):
            # Randomness of a step (dropout, negatives) depends only on where it is in the run.
            torch.manual_seed(derive_seed(t.seed, epoch, iteration, dctx.rank))
            batch = self.task.batch([self.train_samples[i] for i in indices],
                                    [make_rng(t.seed, epoch, i) for i in indices]
                                    ).to(dctx.device)
            group_start = (iteration - 1) // accum * accum
            group_size = min(accum, batches - group_start)
            update = iteration - group_start == group_size
            result = self.task.step(batch, 1.0 / group_size, update)
            lr = self.optimizer.param_groups[0]["lr"]
            if update:
                self._optimizer_step()
            # Numbers stay on the device until shown or written (dpr.training.progress).
            report.add(iteration, lr, result)
            # Every process reaches these points at the same step (a time-based read may not).
            shared = (iteration in eval_points or (iteration - 1) % t.log_batch_step == 0
                      or iteration % t.train_rolling_loss_step == 0)
            if shared or report.due():
                report.flush(check=shared or not dctx.distributed)
            saved = None
            if iteration in eval_points:
                with report.paused():
                    saved = self.validate_and_save(epoch, iteration)
                self.model.train()
            last = epoch == t.epochs - 1 and iteration == batches  # then the run is complete
            if update and not last and self.stop.agreed(dctx):
                report.flush()
                self._save_and_stop(epoch, iteration, saved)
        report.finish()

    def _optimizer_step(self) -> None:
        t, scaler = self.cfg.train, self.scaler
        if t.max_grad_norm > 0:
            scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.bare.parameters(), t.max_grad_norm)
        scaler.step(self.optimizer)
        scaler.update()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)

    def _save_and_stop(self, epoch: int, iteration: int, saved: str | None) -> None:
        """Writes the checkpoint of (epoch, iteration) unless just written, then stops."""
        path = saved or self._save(epoch, iteration)
        barrier(self.dctx)  # no process leaves before the checkpoint is complete
        raise TrainingInterrupted(self.stop.signum, path)

    # -- validation and checkpoints -----------------------------------------------------------
    def _save(self, epoch: int, iteration: int) -> str | None:
        path = self.run_dir.save_checkpoint(
            model=self.bare, optimizer=self.optimizer, scheduler=self.scheduler,
            scaler=self.scaler, model_cfg=self.model_cfg, epoch=epoch, offset=iteration,
            reranker=self.task.reranker)
        self.run_dir.prune(self.cfg.train.keep_last_checkpoints, self.run_dir.best)
        return path

    def validate(self, epoch: int) -> tuple[str, float]:
        """The task's validation at `epoch`: (metric name, value)."""
        return self.task.validate(self.dev_samples, epoch)

    def validate_and_save(self, epoch: int, iteration: int) -> str | None:
        """Validates (when a dev set is given), writes a checkpoint and tracks the best one."""
        metric = self.validate(epoch) if self.dev_samples else None
        path = self.run_dir.checkpoint_path(epoch, iteration)
        if metric is not None and path is not None:
            self.run_dir.log_validation(epoch, iteration, *metric, path)
        saved = self._save(epoch, iteration)
        if metric is not None:
            self.run_dir.record_best()
        if self.run_dir.writes and not self.stop.signum:  # a stop does not wait for a drawing
            self.run_dir.curves.maybe_draw(self.run_dir.folder)
        return saved

    def validate_only(self, dev_samples: list[BiEncoderSample]) -> dict[str, float]:
        """DPR's no-train mode: the task's validations of `--model_file`."""
        return self.task.validate_only(dev_samples)
