"""What a run trains, built once before the loop: tokenizer, model (a bi-encoder or a
reranker), DDP, optimizer, precision."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import torch
from torch.nn.parallel import DistributedDataParallel

from dpr.data.tensorizer import Tensorizer, build_tensorizer, is_fairseq_folder
from dpr.models.biencoder import BiEncoder
from dpr.models.checkpoint import load_model_state, load_reranker_state
from dpr.models.encoder import Encoder
from dpr.models.factory import build_biencoder, build_reranker, check_sequence_length, encoders
from dpr.models.fairseq import check_dictionary, read_dictionary
from dpr.recipe import Recipe
from dpr.training.config import ModelConfig, RerankConfig, TrainConfig
from dpr.training.optim import build_optimizer
from dpr.training.resume import Resume, restore_optimizer, restore_scaler
from dpr.utils.device import autocast_dtype
from dpr.utils.dist import DistContext

logger = logging.getLogger(__name__)


class TrainingParts(NamedTuple):
    """Everything the loop needs besides the data."""

    tensorizer: Tensorizer  # tokenizes and pads questions and passages
    bare: BiEncoder | Encoder  # the bare model (a reranker: one Encoder): saved and validated
    model: torch.nn.Module  # `bare`, in DDP when several processes train
    optimizer: torch.optim.Optimizer  # AdamW, with the checkpoint's state when it fits
    autocast: Callable[[], contextlib.AbstractContextManager]  # disabled in float32
    scaler: torch.amp.GradScaler  # enabled for float16 only
    amp_dtype: torch.dtype | None  # the autocast type, None in float32


def check_fairseq_dictionary(folder: Path, tensorizer: Tensorizer) -> None:
    """Checks that the tokenizer gives every piece of fairseq's `dict.txt` its id."""
    if not (folder / "dict.txt").is_file():
        logger.warning("%s has no dict.txt: cannot check the tokenizer's ids against it", folder)
        return
    if not is_fairseq_folder(folder):
        logger.info("dict.txt of a non-SentencePiece model: id check skipped")
        return
    tokenizer = tensorizer.tokenizer
    check_dictionary(read_dictionary(folder / "dict.txt"), tokenizer.convert_tokens_to_ids,
                     unk_token=tokenizer.unk_token, source=str(folder))
    logger.info("%s/dict.txt agrees with the tokenizer's ids", folder)


def _build_model(m: ModelConfig, t: TrainConfig, resume: Resume | None, multiple: int,
                 rerank: RerankConfig | None) -> BiEncoder | Encoder:
    """The bi-encoder, or with `rerank` the reranker, from `resume` or the pretrained weights."""
    common = {"pretrained_file": m.pretrained_file, "dropout": m.dropout,
              "load_weights": resume is None, "allow_pickle": t.allow_unsafe_pickle,
              "recipe": Recipe.from_params(dataclasses.asdict(m))}
    if rerank is not None:
        model = build_reranker(m.encoder_model_type, m.pretrained_model_cfg,
                               head_init=rerank.head_init, **common)
        load_state = load_reranker_state
    else:
        model = build_biencoder(m.encoder_model_type, m.pretrained_model_cfg,
                                projection_dim=m.projection_dim,
                                fix_ctx_encoder=m.fix_ctx_encoder, **common)
        load_state = load_model_state
    if resume is not None:
        load_state(model, resume.state.model_dict, source=resume.path)
    for tower in encoders(model):
        tower.length_bucket_size = t.length_bucket_size
        tower.length_bucket_multiple = multiple
        if m.freeze_embeddings:
            tower.model.get_input_embeddings().requires_grad_(False)
        if t.gradient_checkpointing:
            tower.model.gradient_checkpointing_enable({"use_reentrant": False})
    return model


def compile_towers(model: BiEncoder | Encoder) -> None:
    """`--compile`: compiles each encoder's transformer in place (`nn.Module.compile`), so
    parameter names, checkpoints and the optimizer state stay those of the eager model; default
    mode, on GPUs too (why: docs/PERFORMANCE.md)."""
    for tower in encoders(model):
        tower.model.compile()
    logger.info("torch.compile: the encoders compiled (default mode)")


def build_parts(m: ModelConfig, t: TrainConfig, dctx: DistContext, resume: Resume | None,
                rerank: RerankConfig | None = None) -> TrainingParts:
    """Builds the model (from `resume`, else the pretrained weights; a reranker with
    `rerank`) and what trains it, on `dctx.device`, with the encoder settings in effect `m`
    (`resume.resolve_model_config`)."""
    # Padded lengths are multiples of 64 on GPUs (fewer shapes), else 8 (docs/PERFORMANCE.md).
    multiple = t.pad_to_multiple_of or (64 if dctx.device.type == "cuda" else 8)
    tensorizer = build_tensorizer(
        m.encoder_model_type, m.pretrained_model_cfg or m.pretrained_file,
        sequence_length=m.sequence_length, do_lower_case=m.do_lower_case,
        query_prefix=m.query_prefix or "", passage_prefix=m.passage_prefix or "",
        passage_format=m.passage_format, pad_to_max=t.pad_to_max, pad_to_multiple_of=multiple)
    bare = _build_model(m, t, resume, multiple, rerank)
    check_sequence_length(bare, m.sequence_length)
    if m.encoder_model_type == "fairseq_roberta":
        check_fairseq_dictionary(Path(m.pretrained_file), tensorizer)
    bare.to(dctx.device)
    if t.compile:
        compile_towers(bare)
    model: torch.nn.Module = bare
    if dctx.distributed:
        ids = [dctx.device.index] if dctx.device.type == "cuda" else None
        # No buffer is updated in training, so none needs broadcasting at each forward.
        model = DistributedDataParallel(bare, device_ids=ids, broadcast_buffers=False)
    optimizer = build_optimizer(bare, learning_rate=t.learning_rate,
                                weight_decay=t.weight_decay, eps=t.adam_eps, betas=t.betas,
                                head_learning_rate=rerank.head_learning_rate if rerank else None)
    restore_optimizer(optimizer, resume)
    dtype = autocast_dtype(t.use_amp, t.amp_dtype, dctx.device)
    if dtype is not None:
        logger.info("Mixed precision: %s autocast on %s%s", dtype, dctx.device.type,
                    " with loss scaling" if dtype == torch.float16 else "")
    scaler = torch.amp.GradScaler(dctx.device.type, enabled=dtype == torch.float16)
    restore_scaler(scaler, resume)
    autocast = functools.partial(torch.autocast, dctx.device.type, dtype=dtype,
                                 enabled=dtype is not None)
    return TrainingParts(tensorizer, bare, model, optimizer, autocast, scaler, dtype)
