"""Where a training run starts from: the resume policy and restoring a checkpoint's state.

Policy (announced in one log line): when training, the most advanced readable checkpoint of
the run in `--output_dir`, whatever `--model_file` says (the `--ignore_checkpoint_*` flags are
for `--model_file` only); else `--model_file`; else a fresh model. Unreadable checkpoints and
flags that disagree with the checkpoint: docs/RELIABILITY.md. The gradient scaler's state
travels inside `optimizer_dict` under `SCALER_KEY`, so that checkpoints keep DPR's six keys.
"""

from __future__ import annotations

import dataclasses
import logging
import pickle
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import torch

from dpr.models.checkpoint import (
    ENCODER_PARAM_KEYS,
    PATH_KEYS,
    CheckpointError,
    CheckpointKindError,
    CheckpointState,
    checkpoint_candidates,
    load_checkpoint,
    resolve_encoder_params,
)
from dpr.models.st_folder import folder_recipe
from dpr.recipe import COSINE_TEMPERATURE, RECIPE_KEYS
from dpr.training.config import Config, ModelConfig
from dpr.training.optim import load_optimizer_state
from dpr.utils.errors import UsageError

logger = logging.getLogger(__name__)

SCALER_KEY = "dpr_grad_scaler"


@dataclass(frozen=True)
class Resume:
    """The checkpoint a run starts from."""

    path: str
    state: CheckpointState  # optimizer / scheduler emptied when ignored
    keep_progress: bool = True  # False with --ignore_checkpoint_offset: start at 0, 0
    own: bool = False  # this run's own checkpoint, found in --output_dir


def _own_checkpoint(cfg: Config) -> tuple[Path, CheckpointState] | None:
    """The most advanced readable checkpoint of the run in `--output_dir`, loaded; an
    unreadable one (truncated) is skipped with a warning. `CheckpointError` when there are
    checkpoints but none is readable, or one needs full unpickling that was not allowed."""
    t = cfg.train
    if not (cfg.data.train_file and t.output_dir):
        return None
    candidates = checkpoint_candidates(t.output_dir, t.checkpoint_file_name)
    skipped: list[str] = []
    for path in candidates:
        try:
            state = load_checkpoint(path, allow_pickle=t.allow_unsafe_pickle,
                                    reranker=cfg.rerank is not None)
        except CheckpointError as err:
            if isinstance(err.__cause__, pickle.UnpicklingError) or \
                    isinstance(err, CheckpointKindError):
                raise  # refused (unsafe, or another kind of model), not broken
            logger.warning("Skipping an unreadable checkpoint of this run: %s", err)
            skipped.append(path.name)
            continue
        if skipped:
            logger.warning("Resuming from %s, the newest readable checkpoint of this run (%s "
                           "skipped, left in place)", path, ", ".join(skipped))
        return path, state
    if candidates:
        raise CheckpointError(
            f"--output_dir {t.output_dir}: none of this run's {len(candidates)} checkpoint(s) "
            f"is readable ({', '.join(skipped)}); move them away to start afresh, or give "
            "another --output_dir")
    return None


def load_resume(cfg: Config) -> Resume | None:
    """Loads the checkpoint the resume policy picks (module docstring), or None."""
    m, t = cfg.model, cfg.train
    found = _own_checkpoint(cfg)
    if found is not None:
        own, state = found
        given = f" (instead of --model_file {m.model_file})" if m.model_file else ""
        logger.info("Resuming this run from its checkpoint %s%s (epoch %d, offset %d)", own,
                    given, state.epoch, state.offset)
        return Resume(str(own), state, keep_progress=True, own=True)
    if m.model_file is None:
        return None
    path = m.model_file
    state = load_checkpoint(path, allow_pickle=t.allow_unsafe_pickle,
                            reranker=cfg.rerank is not None)
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


def resolve_model_config(model_cfg: ModelConfig, resume: Resume | None,
                         explicit: frozenset[str] = frozenset(), *,
                         folder_keys: Collection[str] | None = None) -> ModelConfig:
    """The command line's encoder settings, with what defines the model taken from `resume`
    (logged): the recipe flags not among the `explicit` ones come from the checkpoint, else
    from a sentence-transformers folder (`complete_recipe`, the `folder_keys` only).

    Raises:
        UsageError: With the run's own checkpoint, for an explicit flag that disagrees with it
            (naming the flag, its value and the checkpoint's).
    """
    if resume is None:
        return complete_recipe(model_cfg, explicit, keys=folder_keys)
    # Recipe entries beyond DPR's six are "not given" unless the user set them.
    cli = {k: v for k, v in dataclasses.asdict(model_cfg).items()
           if k in explicit or k in ENCODER_PARAM_KEYS or k not in RECIPE_KEYS}
    merged, overrides = resolve_encoder_params(cli, resume.state.encoder_params,
                                               checkpoint=resume.path)
    for override in overrides:
        if resume.own and override.key in explicit and override.key not in PATH_KEYS:
            raise UsageError(
                f"--{override.key} {override.given!r} disagrees with {override.stored!r} stored "
                f"in {resume.path}, the checkpoint this run resumes from: drop the flag, give "
                "the checkpoint's value, or use another --output_dir")
        logger.info("Checkpoint overrides %s", override)
    return dataclasses.replace(model_cfg, **merged)


def complete_recipe(model_cfg: ModelConfig, explicit: frozenset[str], *,
                    keys: Collection[str] | None = None) -> ModelConfig:
    """The recipe flags not given, completed from the sentence-transformers files of
    `--pretrained_model_cfg` when it has them (`dpr.models.st_folder.folder_recipe`, only
    `keys` of it when given; logged, one value each), else DPR's; a cosine recipe without
    `--temperature` trains at `COSINE_TEMPERATURE` (logged)."""
    declared = {k: v for k, v in folder_recipe(model_cfg.pretrained_model_cfg).items()
                if k not in explicit and (keys is None or k in keys)}
    if declared:
        logger.info("Recipe from the sentence-transformers files of %s (flags override): %s",
                    model_cfg.pretrained_model_cfg,
                    ", ".join(f"--{k} {v!r}" for k, v in declared.items()))
    model_cfg = dataclasses.replace(model_cfg, **declared)
    if model_cfg.normalize and model_cfg.temperature is None:
        logger.info("Cosine similarity without --temperature: temperature %g (the default of "
                    "sentence-transformers' MultipleNegativesRankingLoss; multilingual-e5 was "
                    "trained at 0.01)", COSINE_TEMPERATURE)
        model_cfg = dataclasses.replace(model_cfg, temperature=COSINE_TEMPERATURE)
    return model_cfg


def restore_optimizer(optimizer: torch.optim.Optimizer, resume: Resume | None) -> None:
    """Loads the checkpoint's optimizer state when it fits this optimizer."""
    if resume is None or not resume.state.optimizer_dict:
        return
    state = {k: v for k, v in resume.state.optimizer_dict.items() if k != SCALER_KEY}
    try:
        load_optimizer_state(optimizer, state)
    except ValueError as err:  # e.g. the original's one-group fairseq Adam state
        logger.warning("Optimizer state of %s does not fit this optimizer (%s): starting from "
                       "a fresh optimizer state", resume.path, err)


def restore_scaler(scaler: torch.amp.GradScaler, resume: Resume | None) -> None:
    """Loads the gradient scaler's state (loss scale, growth tracker) when one is stored."""
    if resume is None or not scaler.is_enabled():
        return
    stored = resume.state.optimizer_dict.get(SCALER_KEY)
    if stored:
        scaler.load_state_dict(stored)
        logger.info("Gradient scaler restored (loss scale %g)", scaler.get_scale())


def optimizer_state(optimizer: torch.optim.Optimizer,
                    scaler: torch.amp.GradScaler | None) -> dict:
    """What a checkpoint stores as `optimizer_dict`: the optimizer's state, plus the scaler's
    under `SCALER_KEY` when loss scaling is on (ignored by `torch.optim` and DPR's tools)."""
    state = optimizer.state_dict()
    if scaler is not None and scaler.is_enabled():
        state[SCALER_KEY] = scaler.state_dict()
    return state


def restore_scheduler(scheduler: torch.optim.lr_scheduler.LRScheduler,
                      optimizer: torch.optim.Optimizer, resume: Resume | None) -> None:
    """Loads the schedule's position and sets the optimizer's learning rates from it."""
    if resume is None or not resume.state.scheduler_dict:
        return
    scheduler.load_state_dict(resume.state.scheduler_dict)
    for group, lr in zip(optimizer.param_groups, scheduler.get_last_lr()):
        group["lr"] = lr


def start_position(resume: Resume | None, batches_per_epoch: int) -> tuple[int, int]:
    """(epoch, batches already done in it) where training continues; a checkpoint written at
    the end of an epoch resumes at the start of the next one."""
    if resume is None or not resume.keep_progress:
        return 0, 0
    epoch, offset = resume.state.epoch, resume.state.offset
    if offset <= 0 or offset >= batches_per_epoch:
        return epoch + 1, 0
    return epoch, offset
