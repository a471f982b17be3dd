"""The bi-encoder training loop: one step reads top to bottom in `_train_epoch`."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
from collections import deque
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel

from dpr.data.batch import build_batch
from dpr.data.iterator import ShardedIterator
from dpr.data.records import BiEncoderSample
from dpr.data.tensorizer import build_tensorizer, is_camembert_folder
from dpr.models.checkpoint import (
    CheckpointState,
    checkpoint_name,
    encoder_params_of,
    find_latest_checkpoint,
    load_checkpoint,
    load_model_state,
    merge_encoder_params,
    save_checkpoint,
    to_dpr_layout,
)
from dpr.models.factory import build_biencoder
from dpr.models.fairseq import check_dictionary, read_dictionary
from dpr.training.config import Config
from dpr.training.optim import build_optimizer, linear_schedule
from dpr.training.step import StepResult, grad_cache_step, plain_step
from dpr.training.validation import validate_average_rank, validate_nll
from dpr.utils.dist import DistContext, cpu_has_fast_bf16
from dpr.utils.io import atomic_write
from dpr.utils.seed import derive_seed, make_rng, set_global_seed

logger = logging.getLogger(__name__)

LOG_FILE = "training_log.jsonl"
CONFIG_FILE = "training_config.json"


class BiEncoderTrainer:
    """Builds the model (from scratch or a checkpoint) and runs training or validation."""

    def __init__(self, cfg: Config, dctx: DistContext) -> None:
        self.cfg, self.dctx = cfg, dctx
        set_global_seed(cfg.train.seed)
        self.state = self._load_resume_state()
        model_cfg = cfg.model
        if self.state is not None:
            merged, overrides = merge_encoder_params(dataclasses.asdict(model_cfg),
                                                     self.state.encoder_params)
            for message in overrides:
                logger.info("Checkpoint overrides %s", message)
            model_cfg = dataclasses.replace(model_cfg, **merged)
        self.model_cfg = model_cfg
        self.tensorizer = build_tensorizer(
            model_cfg.encoder_model_type,
            model_cfg.pretrained_model_cfg or model_cfg.pretrained_file,
            sequence_length=model_cfg.sequence_length, do_lower_case=model_cfg.do_lower_case,
            pad_to_max=cfg.train.pad_to_max,
            pad_to_multiple_of=cfg.train.pad_to_multiple_of or
            (64 if dctx.device.type == "cuda" else 8))
        self.biencoder = build_biencoder(
            model_cfg.encoder_model_type, model_cfg.pretrained_model_cfg,
            pretrained_file=model_cfg.pretrained_file, dropout=model_cfg.dropout,
            projection_dim=model_cfg.projection_dim, fix_ctx_encoder=model_cfg.fix_ctx_encoder,
            load_weights=self.state is None, allow_pickle=cfg.train.allow_unsafe_pickle)
        if model_cfg.encoder_model_type == "fairseq_roberta":
            self._check_fairseq_dictionary()
        if self.state is not None:
            load_model_state(self.biencoder, self.state.model_dict, source=self.resume_path)
        for tower in (self.biencoder.question_model, self.biencoder.ctx_model):
            tower.length_bucket_size = cfg.train.length_bucket_size
            if cfg.train.gradient_checkpointing:
                tower.model.gradient_checkpointing_enable({"use_reentrant": False})
        self.biencoder.to(dctx.device)
        self.model: torch.nn.Module = self.biencoder
        if dctx.distributed:
            ids = [dctx.device.index] if dctx.device.type == "cuda" else None
            # No buffer is updated in training, so none needs broadcasting at each forward.
            self.model = DistributedDataParallel(self.biencoder, device_ids=ids,
                                                 broadcast_buffers=False)
        t = cfg.train
        self.optimizer = build_optimizer(self.biencoder, learning_rate=t.learning_rate,
                                         weight_decay=t.weight_decay, eps=t.adam_eps,
                                         betas=t.betas)
        if self.state is not None and self.state.optimizer_dict:
            try:
                self.optimizer.load_state_dict(self.state.optimizer_dict)
            except ValueError as err:  # e.g. the original's one-group fairseq Adam state
                logger.warning("Optimizer state of %s does not fit this optimizer (%s): "
                               "starting from a fresh optimizer state", self.resume_path, err)
        self.amp_dtype = self._amp_dtype()
        self.scaler = torch.amp.GradScaler(
            dctx.device.type, enabled=self.amp_dtype == torch.float16)
        self.best: tuple[str, float, str] | None = None

    # -- set-up -------------------------------------------------------------------------------
    def _load_resume_state(self) -> CheckpointState | None:
        m, t = self.cfg.model, self.cfg.train
        path: str | None = None
        if m.model_file:
            path = m.model_file
        elif t.output_dir:
            latest = find_latest_checkpoint(t.output_dir, t.checkpoint_file_name)
            path = str(latest) if latest else None
        self.resume_path = path
        if path is None:
            return None
        state = load_checkpoint(path, allow_pickle=t.allow_unsafe_pickle)
        logger.info("Resuming from checkpoint %s (epoch %d, offset %d)", path, state.epoch,
                    state.offset)
        return state

    def _check_fairseq_dictionary(self) -> None:
        folder = Path(self.model_cfg.pretrained_file)
        if not (folder / "dict.txt").is_file():
            logger.warning("%s has no dict.txt: cannot check the tokenizer's ids against it",
                           folder)
            return
        tokenizer = self.tensorizer.tokenizer
        if not is_camembert_folder(str(folder)):
            logger.info("dict.txt of a non-SentencePiece model: id check skipped")
            return
        check_dictionary(read_dictionary(folder / "dict.txt"), tokenizer.convert_tokens_to_ids,
                         unk_token=tokenizer.unk_token, source=str(folder))
        logger.info("%s/dict.txt agrees with the tokenizer's ids", folder)

    def _amp_dtype(self) -> torch.dtype | None:
        t = self.cfg.train
        if not t.use_amp:
            return None
        if t.amp_dtype != "auto":
            dtype = getattr(torch, t.amp_dtype)
        elif self.dctx.device.type == "cuda":
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        elif cpu_has_fast_bf16():
            dtype = torch.bfloat16  # float16 matmuls are very slow on CPUs
        else:
            logger.warning("--fp16: this CPU has no bfloat16 instructions (AVX512-BF16/AMX), "
                           "where mixed precision runs far slower than float32; training in "
                           "float32 (--amp_dtype bfloat16 forces it)")
            return None
        logger.info("Mixed precision: %s autocast on %s%s", dtype, self.dctx.device.type,
                    " with loss scaling" if dtype == torch.float16 else "")
        return dtype

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.dctx.device.type, dtype=self.amp_dtype)

    def _log_event(self, **record: Any) -> None:
        if self.dctx.is_main and self.cfg.train.output_dir:
            with open(Path(self.cfg.train.output_dir) / LOG_FILE, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")

    def _write_config(self) -> None:
        if self.dctx.is_main and self.cfg.train.output_dir:
            values = {**self.cfg.to_dict(), **dataclasses.asdict(self.model_cfg)}
            with atomic_write(Path(self.cfg.train.output_dir) / CONFIG_FILE) as handle:
                json.dump(values, handle, indent=2, sort_keys=True)

    # -- training -----------------------------------------------------------------------------
    def train(self, train_samples: list[BiEncoderSample],
              dev_samples: list[BiEncoderSample] | None) -> dict[str, Any]:
        """Trains for `--num_train_epochs`, validating and checkpointing along the way."""
        cfg, t, dctx = self.cfg, self.cfg.train, self.dctx
        if not train_samples:
            raise ValueError(f"{cfg.data.train_file}: no training sample has a positive passage")
        self.train_samples, self.dev_samples = train_samples, dev_samples
        self.iterator = ShardedIterator(len(self.train_samples), rank=dctx.rank,
                                        world_size=dctx.world_size,
                                        batch_size=cfg.data.batch_size, shuffle=True,
                                        seed=t.seed)
        batches = self.iterator.batches_per_epoch
        accum = t.gradient_accumulation_steps
        total_updates = math.ceil(batches / accum) * t.epochs
        self.scheduler = linear_schedule(self.optimizer, warmup_steps=t.warmup_steps,
                                         total_steps=total_updates)
        start_epoch, start_offset = 0, 0
        if self.state is not None:
            if self.state.scheduler_dict:
                self.scheduler.load_state_dict(self.state.scheduler_dict)
                for group, lr in zip(self.optimizer.param_groups, self.scheduler.get_last_lr()):
                    group["lr"] = lr
            start_epoch, start_offset = self.state.epoch, self.state.offset
            if start_offset <= 0 or start_offset >= batches:
                start_epoch, start_offset = start_epoch + 1, 0
            self._restore_best()
        self._write_config()
        logger.info(
            "Training: %d samples, %d epoch(s), %d batch(es) per epoch per process, batch %d per "
            "process x %d process(es) x %d accumulation = %d questions per update, %d updates "
            "in total, %d warm-up", len(self.train_samples), t.epochs, batches,
            cfg.data.batch_size, dctx.world_size, accum,
            cfg.data.batch_size * dctx.world_size * accum, total_updates, t.warmup_steps)
        if start_epoch >= t.epochs:
            logger.warning("Checkpoint is already at epoch %d of %d: nothing to train",
                           start_epoch, t.epochs)
        for epoch in range(start_epoch, t.epochs):
            self._train_epoch(epoch, start_offset if epoch == start_epoch else 0)
        if self.best is not None:
            logger.info("Training finished. Best validation checkpoint: %s (%s %.5f)",
                        self.best[2], self.best[0], self.best[1])
        return {"best_checkpoint": self.best[2] if self.best else None,
                "best_metric": self.best[:2] if self.best else None}

    def _eval_points(self, batches: int) -> set[int]:
        accum = self.cfg.train.gradient_accumulation_steps
        step = math.ceil(batches / self.cfg.train.eval_per_epoch)
        step = math.ceil(step / accum) * accum
        return {min(k * step, batches) for k in range(1, batches // step + 2)} | {batches}

    def _train_epoch(self, epoch: int, start: int) -> None:
        cfg, t, dctx = self.cfg, self.cfg.train, self.dctx
        batches = self.iterator.batches_per_epoch
        accum = t.gradient_accumulation_steps
        eval_points = self._eval_points(batches)
        rolling: deque[float] = deque(maxlen=t.train_rolling_loss_step)
        epoch_loss, epoch_correct, epoch_masked, seen = 0.0, 0, 0, 0
        self.model.train()
        for iteration, indices in self.iterator.batches(epoch, start):
            # Randomness of a step (dropout, negatives) depends only on where it is in the run.
            torch.manual_seed(derive_seed(t.seed, epoch, iteration, dctx.rank))
            batch = build_batch(
                [self.train_samples[i] for i in indices], self.tensorizer,
                num_hard=cfg.data.hard_negatives, num_other=cfg.data.other_negatives,
                rngs=[make_rng(t.seed, epoch, i) for i in indices],
                shuffle_positive=cfg.data.shuffle_positive_ctx,
            ).to(dctx.device)
            group_start = (iteration - 1) // accum * accum
            group_size = min(accum, batches - group_start)
            update = iteration - group_start == group_size
            result = self._forward_backward(batch, 1.0 / group_size, update)
            loss, correct, n_questions = result.loss, result.correct, result.questions
            lr = self.optimizer.param_groups[0]["lr"]
            if update:
                self._optimizer_step()
            value = loss.item()
            rolling.append(value)
            epoch_loss += value
            epoch_correct += int(correct)
            epoch_masked += result.masked
            seen += 1
            self._log_event(event="train", epoch=epoch, iteration=iteration, loss=value,
                            correct=int(correct), questions=n_questions, lr=lr,
                            masked=result.masked)
            if (iteration - 1) % t.log_batch_step == 0:
                logger.info("Epoch %d: step %d/%d, loss %.5f, lr %.3g, in-batch accuracy %d/%d, "
                            "%d masked", epoch, iteration, batches, value, lr, int(correct),
                            n_questions, result.masked)
            if iteration % t.train_rolling_loss_step == 0:
                logger.info("Epoch %d: rolling loss over %d batches: %.5f", epoch, len(rolling),
                            sum(rolling) / len(rolling))
            if iteration in eval_points:
                self.validate_and_save(epoch, iteration)
                self.model.train()
        if seen:
            logger.info("Epoch %d finished: average loss %.5f over %d batches, %d correct, %d "
                        "duplicate-positive column(s) masked", epoch, epoch_loss / seen, seen,
                        epoch_correct, epoch_masked)

    def _no_sync(self) -> contextlib.AbstractContextManager:
        return self.model.no_sync() if self.dctx.distributed else contextlib.nullcontext()

    def _forward_backward(self, batch, loss_factor: float, update: bool) -> StepResult:
        """Forward + backward of one batch; DDP reduces gradients only when `update`."""
        no_sync = self._no_sync
        mask = not self.cfg.train.keep_duplicate_positives
        if self.cfg.train.grad_cache_chunk_size:
            return grad_cache_step(self.model, batch, dctx=self.dctx, autocast=self.autocast,
                                   scale=self.scaler.scale, loss_factor=loss_factor,
                                   no_sync=no_sync,
                                   chunk_size=self.cfg.train.grad_cache_chunk_size,
                                   sync_last=update, mask_duplicates=mask)
        sync = contextlib.nullcontext if update else no_sync
        return plain_step(self.model, batch, dctx=self.dctx, autocast=self.autocast,
                          scale=self.scaler.scale, loss_factor=loss_factor, no_sync=sync,
                          mask_duplicates=mask)

    def _optimizer_step(self) -> None:
        t = self.cfg.train
        if t.max_grad_norm > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.biencoder.parameters(), t.max_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)

    # -- validation and checkpoints -----------------------------------------------------------
    def validate(self, epoch: int) -> tuple[str, float]:
        """Runs the validation DPR would run at `epoch`: (metric name, value; lower is better)."""
        cfg, t = self.cfg, self.cfg.train
        if epoch >= t.val_av_rank_start_epoch:
            value = validate_average_rank(
                self.biencoder, self.dev_samples, self.tensorizer, dctx=self.dctx,
                batch_size=cfg.data.dev_batch_size, num_hard=t.val_av_rank_hard_neg,
                num_other=t.val_av_rank_other_neg, encode_batch_size=t.val_av_rank_bsz,
                max_questions=t.val_av_rank_max_qs, autocast=self.autocast)
            return "average_rank", value
        loss, _ = validate_nll(
            self.biencoder, self.dev_samples, self.tensorizer, dctx=self.dctx,
            batch_size=cfg.data.dev_batch_size, num_hard=cfg.data.hard_negatives,
            num_other=cfg.data.other_negatives, autocast=self.autocast,
            log_every=t.log_batch_step, mask_duplicates=not t.keep_duplicate_positives)
        return "nll_loss", loss

    def validate_and_save(self, epoch: int, iteration: int) -> str | None:
        """Validates (when a dev set is given), writes a checkpoint and tracks the best one."""
        metric = self.validate(epoch) if self.dev_samples else None
        path = self.save(epoch, iteration)
        if metric is not None and path is not None:
            name, value = metric
            self._log_event(event="validation", epoch=epoch, iteration=iteration, metric=name,
                            value=value, checkpoint=path)
            if self.best is None or self.best[0] != name or value < self.best[1]:
                self.best = (name, value, path)
                logger.info("New best validation checkpoint %s (%s %.5f)", path, name, value)
        return path

    def _restore_best(self) -> None:
        log = Path(self.cfg.train.output_dir or "") / LOG_FILE
        if not self.cfg.train.output_dir or not log.is_file():
            return
        for line in log.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            if record.get("event") == "validation":
                name, value = record["metric"], record["value"]
                if self.best is None or self.best[0] != name or value < self.best[1]:
                    self.best = (name, value, record["checkpoint"])

    def save(self, epoch: int, offset: int) -> str | None:
        """Writes `<output_dir>/<prefix>.<epoch>.<offset>` on the main process; returns its path."""
        t = self.cfg.train
        if not self.dctx.is_main or not t.output_dir:
            return None
        path = Path(t.output_dir) / checkpoint_name(t.checkpoint_file_name, epoch, offset)
        state = CheckpointState(
            model_dict=to_dpr_layout(self.biencoder.state_dict()),
            optimizer_dict=self.optimizer.state_dict(),
            scheduler_dict=self.scheduler.state_dict(),
            offset=offset, epoch=epoch,
            encoder_params=encoder_params_of(dataclasses.asdict(self.model_cfg)),
        )
        save_checkpoint(state, path)
        logger.info("Saved checkpoint %s", path)
        return str(path)

    def validate_only(self, dev_samples: list[BiEncoderSample]) -> dict[str, float]:
        """DPR's no-train mode: NLL then average-rank validation of `--model_file`."""
        cfg, t = self.cfg, self.cfg.train
        self.dev_samples = dev_samples
        loss, accuracy = validate_nll(
            self.biencoder, self.dev_samples, self.tensorizer, dctx=self.dctx,
            batch_size=cfg.data.dev_batch_size, num_hard=cfg.data.hard_negatives,
            num_other=cfg.data.other_negatives, autocast=self.autocast,
            mask_duplicates=not t.keep_duplicate_positives)
        rank = validate_average_rank(
            self.biencoder, self.dev_samples, self.tensorizer, dctx=self.dctx,
            batch_size=cfg.data.dev_batch_size, num_hard=t.val_av_rank_hard_neg,
            num_other=t.val_av_rank_other_neg, encode_batch_size=t.val_av_rank_bsz,
            max_questions=t.val_av_rank_max_qs, autocast=self.autocast)
        return {"nll_loss": loss, "accuracy": accuracy, "average_rank": rank}
