"""Builds a bi-encoder, or a reranker (one `Encoder` whose `encode_proj` is a one-score head,
Linear(hidden, 1), never normalised), from encoder parameters (CLI flags or a checkpoint's
`encoder_params`), and loads either kind's checkpoint."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from huggingface_hub.errors import HFValidationError
from torch import nn

from dpr.models.biencoder import BiEncoder
from dpr.models.checkpoint import (
    CheckpointError,
    CheckpointState,
    load_checkpoint,
    load_model_state,
    load_reranker_state,
    resolve_encoder_params,
)
from dpr.models.encoder import Encoder, build_fairseq_encoder, build_hf_encoder
from dpr.models.fairseq import load_fairseq_folder
from dpr.recipe import Recipe
from dpr.utils.errors import UsageError

logger = logging.getLogger(__name__)


def build_encoder(encoder_model_type: str, pretrained_model_cfg: str | None, *,
                  pretrained_file: str | None = None, allow_pickle: bool = False,
                  **options: Any) -> Callable[[], Encoder]:
    """A function building one `Encoder` of the type (`options`: `build_hf_encoder`'s); the
    fairseq folder is read once, however many encoders are built.

    Args:
        pretrained_model_cfg: Hugging Face model folder (not read for fairseq_roberta).
        pretrained_file: fairseq model folder (fairseq_roberta only).
        allow_pickle: Allow a fairseq `model.pt` that needs full unpickling (trusted files).
    """
    if encoder_model_type == "fairseq_roberta":
        if not pretrained_file:
            raise UsageError("--pretrained_file (the fairseq model folder) is required for "
                             "fairseq_roberta")
        folder = load_fairseq_folder(pretrained_file, allow_pickle=allow_pickle)
        return lambda: build_fairseq_encoder(folder, **options)
    if not pretrained_model_cfg:
        raise UsageError(f"--pretrained_model_cfg is required for {encoder_model_type}")
    return lambda: build_hf_encoder(encoder_model_type, pretrained_model_cfg, **options)


def build_biencoder(encoder_model_type: str, pretrained_model_cfg: str | None, *,
                    pretrained_file: str | None = None, dropout: float = 0.1,
                    projection_dim: int = 0, fix_ctx_encoder: bool = False,
                    load_weights: bool = True, allow_pickle: bool = False,
                    recipe: Recipe | None = None) -> BiEncoder:
    """Two independent towers initialised from the same pretrained model (DPR), or one
    shared encoder, with the recipe's pooling and normalisation (None: DPR's recipe).

    Args:
        pretrained_model_cfg, pretrained_file, allow_pickle: As in `build_encoder`.
        fix_ctx_encoder: Freeze the passage tower.
        load_weights: False when a checkpoint overwrites the weights.
    """
    recipe = recipe or Recipe()
    build = build_encoder(encoder_model_type, pretrained_model_cfg,
                          pretrained_file=pretrained_file, allow_pickle=allow_pickle,
                          dropout=dropout, projection_dim=projection_dim,
                          load_weights=load_weights, pooling=recipe.pooling,
                          normalize=recipe.normalize)
    return BiEncoder(build(), None if recipe.shared_encoder else build(),
                     fix_ctx_encoder=fix_ctx_encoder)


# How a reranker's head starts: `zero` (weight and bias 0: every candidate scores the same at
# first, a uniform softmax, and the head learns first) or `random` (the encoder's
# initialisation).
HEAD_INITS = ("zero", "random")


def build_reranker(encoder_model_type: str, pretrained_model_cfg: str | None, *,
                   pretrained_file: str | None = None, dropout: float = 0.1,
                   load_weights: bool = True, allow_pickle: bool = False,
                   recipe: Recipe | None = None, head_init: str = "zero") -> Encoder:
    """A reranker: one encoder with the recipe's pooling (None: DPR's recipe), never
    normalised, and a one-score head: score = head(pool(encoder(question, passage))), [B × 1].

    Args:
        pretrained_model_cfg, pretrained_file, allow_pickle: As in `build_encoder`.
        load_weights: False when a checkpoint overwrites the weights.
        head_init: One of `HEAD_INITS`.
    """
    recipe = recipe or Recipe()
    encoder = build_encoder(encoder_model_type, pretrained_model_cfg,
                            pretrained_file=pretrained_file, allow_pickle=allow_pickle,
                            dropout=dropout, projection_dim=1, load_weights=load_weights,
                            pooling=recipe.pooling, normalize=False)()
    if head_init == "zero":
        nn.init.zeros_(encoder.encode_proj.weight)
        nn.init.zeros_(encoder.encode_proj.bias)
    return encoder


# Model types whose position ids start after the padding index (fairseq's convention).
OFFSET_POSITION_TYPES = ("roberta", "camembert", "xlm-roberta")


def usable_positions(config: Any) -> int | None:
    """Longest token sequence a transformer config can embed (None when it has no limit):
    `max_position_embeddings`, less `pad_token_id + 1` for RoBERTa-type models."""
    limit = getattr(config, "max_position_embeddings", None)
    if not isinstance(limit, int):
        return None
    if getattr(config, "model_type", "") in OFFSET_POSITION_TYPES:
        pad = getattr(config, "pad_token_id", None)
        limit -= (1 if pad is None else int(pad)) + 1
    return limit


def encoders(model: BiEncoder | Encoder) -> list[Encoder]:
    """The distinct encoders of a bi-encoder (one when shared), or a reranker's one."""
    if isinstance(model, Encoder):
        return [model]
    return list(dict.fromkeys((model.question_model, model.ctx_model)))


def check_sequence_length(model: BiEncoder | Encoder, sequence_length: int) -> None:
    """Refuses (`UsageError` naming the flag and the limit) a `--sequence_length` longer than
    any encoder's position table, at start-up rather than at the first long batch."""
    for tower in encoders(model):
        limit = usable_positions(tower.model.config)
        if limit is not None and sequence_length > limit:
            raise UsageError(
                f"--sequence_length {sequence_length} exceeds the {limit} positions the model "
                f"can embed ({tower.model.config.model_type}, max_position_embeddings="
                f"{tower.model.config.max_position_embeddings}); use at most {limit}")


@dataclass
class TrainedBiEncoder:
    """A checkpoint ready for inference or export."""

    biencoder: BiEncoder  # eval mode, on the CPU
    params: dict[str, Any]  # resolved encoder parameters (`resolve_encoder_params`)
    state: CheckpointState  # the file's content (epoch, offset, stored encoder_params...)


@dataclass
class TrainedReranker:
    """A reranker checkpoint ready for inference or export."""

    reranker: Encoder  # eval mode, on the CPU; its `encode_proj` is the one-score head
    params: dict[str, Any]  # resolved encoder parameters (`resolve_encoder_params`)
    state: CheckpointState  # the file's content (epoch, offset, stored encoder_params...)


def load_trained_biencoder(path: str | os.PathLike[str], cli: Mapping[str, Any], *,
                           allow_pickle: bool = False) -> TrainedBiEncoder:
    """Reads a checkpoint, resolves its encoder parameters and builds its bi-encoder (in eval
    mode, on the CPU): the one loading path of every tool (evaluation, embedding, retrieval,
    dpr2hf). Unpickling warnings are logged.

    Args:
        cli: Command-line encoder parameters (missing or None = not given).
        allow_pickle: Allow checkpoints / fairseq files that need full unpickling.

    Raises:
        CheckpointError: Unreadable, unknown-type, mismatching or reranker checkpoint, or a
            model config that cannot be loaded from the paths.
        FairseqFormatError: An unreadable fairseq folder.
    """
    def build(params: dict[str, Any]) -> BiEncoder:
        return build_biencoder(
            params["encoder_model_type"], params["pretrained_model_cfg"],
            pretrained_file=params["pretrained_file"], dropout=0.0,
            projection_dim=params["projection_dim"], load_weights=False,
            allow_pickle=allow_pickle, recipe=Recipe.from_params(params))

    return TrainedBiEncoder(*_load_trained(path, cli, build, load_model_state, reranker=False,
                                           allow_pickle=allow_pickle))


def load_trained_reranker(path: str | os.PathLike[str], cli: Mapping[str, Any], *,
                          allow_pickle: bool = False) -> TrainedReranker:
    """`load_trained_biencoder` for a reranker checkpoint (`CheckpointError` for a bi-encoder
    one)."""
    def build(params: dict[str, Any]) -> Encoder:
        return build_reranker(params["encoder_model_type"], params["pretrained_model_cfg"],
                              pretrained_file=params["pretrained_file"], dropout=0.0,
                              load_weights=False, allow_pickle=allow_pickle,
                              recipe=Recipe.from_params(params))

    return TrainedReranker(*_load_trained(path, cli, build, load_reranker_state, reranker=True,
                                          allow_pickle=allow_pickle))


def _load_trained(path: str | os.PathLike[str], cli: Mapping[str, Any],
                  build: Callable[[dict[str, Any]], nn.Module], load_state: Callable, *,
                  reranker: bool, allow_pickle: bool
                  ) -> tuple[nn.Module, dict[str, Any], CheckpointState]:
    """(model in eval mode, resolved parameters, file content) of a checkpoint of the kind
    `reranker` says, built by `build` and filled by `load_state`."""
    path = os.fspath(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        state = load_checkpoint(path, allow_pickle=allow_pickle, reranker=reranker)
        params, overrides = resolve_encoder_params(cli, state.encoder_params, checkpoint=path)
        for override in overrides:
            logger.info("Checkpoint overrides %s", override)
        try:
            model = build(params)
        except (OSError, HFValidationError) as err:
            raise CheckpointError(
                f"{path}: cannot load the model's config from pretrained_model_cfg="
                f"{params['pretrained_model_cfg']!r}, pretrained_file="
                f"{params['pretrained_file']!r} (pass --pretrained_model_cfg / "
                f"--pretrained_file): {str(err).splitlines()[0]}") from err
        load_state(model, state.model_dict, source=path)
        check_sequence_length(model, params["sequence_length"])
    for item in caught:
        logger.warning("%s", item.message)
    return model.eval(), params, state
