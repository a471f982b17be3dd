"""`load_encoder`: a DPR checkpoint file, a `dpr2hf` export folder or a plain Hugging Face /
sentence-transformers folder (the untrained bi-encoder training starts from), ready to encode
questions and `(title, text)` passages through `dpr.data.recipe` and the tower's `Encoder`,
exactly as training does. Where each kind's recipe comes from: docs/EVALUATION.md (`dpr`
retrievers, "Shared encoder flags"). `load_reranker`: a reranker checkpoint
(`train_reranker.py`) or its `CrossEncoder` folder (`dpr2hf`), ready to score (question,
passage) pairs as training does.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from dpr.data.recipe import (
    Item,
    PassageText,
    encode_in_batches,
    pair_items,
    passage_items,
    question_items,
)
from dpr.data.tensorizer import Tensorizer, export_tensorizer, tensorizer_for
from dpr.models.checkpoint import CheckpointState
from dpr.models.encoder import Encoder
from dpr.models.export import (
    CTX_FOLDER,
    QUESTION_FOLDER,
    exported_params,
    is_hf_export,
    is_reranker_export,
    load_exported_encoder,
)
from dpr.models.factory import (
    build_biencoder,
    check_sequence_length,
    load_trained_biencoder,
    load_trained_reranker,
    usable_positions,
)
from dpr.models.st_folder import folder_recipe, load_cross_encoder
from dpr.recipe import APPLIED, Recipe
from dpr.utils.errors import InputError

logger = logging.getLogger(__name__)

# config.json model_type -> the encoder type training would use for that folder.
UNTRAINED_TYPES = {"bert": "hf_bert", "roberta": "hf_roberta", "camembert": "hf_roberta",
                   "xlm-roberta": "hf_roberta"}


@dataclass
class Tower:
    """One side of a loaded model: its encoder (eval mode, on the device) and tensorizer."""

    encoder: Encoder
    tensorizer: Tensorizer


class DenseEncoder:
    """A loaded model applying its recipe to questions and `(title, text)` passages.

    Attributes:
        question, ctx: The two towers (the same object when the encoder is shared).
        params: Resolved encoder parameters, the recipe's entries included.
        kind: `checkpoint`, `export` or `untrained`.
        state: The checkpoint's content (epoch, offset, stored parameters) for `checkpoint`.
    """

    def __init__(self, question: Tower, ctx: Tower, params: Mapping[str, Any], *, kind: str,
                 source: str, device: torch.device, amp_dtype: torch.dtype | None = None,
                 batch_size: int = 32, quiet: bool = True,
                 state: CheckpointState | None = None) -> None:
        self.question, self.ctx = question, ctx
        self.params, self.kind, self.state = dict(params), kind, state
        self.device, self.amp_dtype = device, amp_dtype
        self.batch_size, self.quiet = batch_size, quiet
        self.description = f"{kind} {source} ({self.recipe.describe()})"

    @property
    def recipe(self) -> Recipe:
        """Pooling, similarity, prefixes and sharing of the model."""
        return Recipe.from_params(self.params)

    @property
    def dim(self) -> int:
        """Size of the vectors."""
        return int(self.question.encoder.out_size)

    def _encode(self, tower: Tower, items: Sequence[Item], desc: str,
                sort_by_length: bool) -> np.ndarray:
        return encode_in_batches(tower.encoder, tower.tensorizer, items, dim=self.dim,
                                 batch_size=self.batch_size, device=self.device,
                                 sort_by_length=sort_by_length, amp_dtype=self.amp_dtype,
                                 desc=desc, quiet=self.quiet)

    def encode_questions(self, questions: Sequence[str], *,
                         sort_by_length: bool = True) -> np.ndarray:
        """Question vectors, float32 [N × D] (one trailing '?' removed, prefix added)."""
        items = question_items(list(questions), self.question.tensorizer.recipe)
        return self._encode(self.question, items, "Encoding questions", sort_by_length)

    def encode_passages(self, passages: Sequence[PassageText], *,
                        sort_by_length: bool = True) -> np.ndarray:
        """Vectors of `(title, text)` passages, float32 [N × D]."""
        items = passage_items(list(passages), self.ctx.tensorizer.recipe)
        return self._encode(self.ctx, items, "Encoding passages", sort_by_length)


def load_encoder(path: str | os.PathLike[str], cli: Mapping[str, Any] | None = None, *,
                 device: torch.device | str = "cpu", allow_pickle: bool = False,
                 amp_dtype: torch.dtype | None = None, batch_size: int = 32,
                 quiet: bool = True) -> DenseEncoder:
    """Loads a checkpoint file, `dpr2hf` export folder or Hugging Face model folder.

    Args:
        cli: Command-line encoder parameters (`dpr.cli.flags.encoder_params`: the paths,
            type, projection and recipe; absent or None = not given).
        allow_pickle: Allow checkpoints / fairseq files that need full unpickling.
        amp_dtype: Encode under autocast in this type (None: the model's own).

    Raises:
        InputError: An unusable path (the subclass names the file and what is wrong).
    """
    path, cli, device = os.fspath(path), dict(cli or {}), torch.device(device)
    options = {"device": device, "amp_dtype": amp_dtype, "batch_size": batch_size,
               "quiet": quiet}
    if os.path.isdir(path):
        if is_hf_export(path):
            return _load_export(Path(path), **options)
        if os.path.isfile(os.path.join(path, "config.json")):
            return _load_untrained(path, cli, **options)
        missing = [f"{name}/config.json" for name in (QUESTION_FOLDER, CTX_FOLDER)
                   if not os.path.isfile(os.path.join(path, name, "config.json"))]
        raise InputError(f"{path}: a folder must be a dpr2hf export (missing "
                         f"{', '.join(missing)}) or a Hugging Face encoder folder (config.json), "
                         "or pass a DPR checkpoint file")
    return _load_checkpoint(path, cli, allow_pickle=allow_pickle, **options)


def _towers(question: Encoder, ctx: Encoder, tensorizer: Tensorizer,
            device: torch.device) -> tuple[Tower, Tower]:
    question_tower = Tower(question.to(device).eval(), tensorizer)
    if ctx is question:
        return question_tower, question_tower
    return question_tower, Tower(ctx.to(device).eval(), tensorizer)


def _load_checkpoint(path: str, cli: Mapping[str, Any], *, allow_pickle: bool,
                     device: torch.device, **options: Any) -> DenseEncoder:
    trained = load_trained_biencoder(path, cli, allow_pickle=allow_pickle)
    biencoder = trained.biencoder
    towers = _towers(biencoder.question_model, biencoder.ctx_model,
                     tensorizer_for(trained.params), device)
    return DenseEncoder(*towers, trained.params, kind="checkpoint", source=path, device=device,
                        state=trained.state, **options)


def _load_export(folder: Path, *, device: torch.device, **options: Any) -> DenseEncoder:
    towers = []
    for name in (QUESTION_FOLDER, CTX_FOLDER):
        params = exported_params(folder / name)
        towers.append(Tower(load_exported_encoder(folder / name, device),
                            export_tensorizer(folder / name, params)))
    entry = exported_params(folder / QUESTION_FOLDER)
    params = {**dataclasses.asdict(Recipe.from_params(entry)), **entry}
    return DenseEncoder(*towers, params, kind="export", source=str(folder), device=device,
                        **options)


def untrained_params(path: str, cli: Mapping[str, Any]) -> dict[str, Any]:
    """The encoder parameters of a plain model folder used as an untrained bi-encoder;
    InputError for a `dpr2hf` tower folder, or a model type that is no DPR encoder."""
    config = json.loads((Path(path) / "config.json").read_text(encoding="utf-8-sig"))
    if is_reranker_export(path):
        raise InputError(f"{path}: a reranker's CrossEncoder folder (dpr2hf), not a "
                         "bi-encoder; give it where a reranker is asked for")
    if "dpr" in config:
        raise InputError(f"{path}: one tower of a dpr2hf export; pass the export's folder "
                         "(with question_encoder/ and ctx_encoder/)")
    kind = UNTRAINED_TYPES.get(config.get("model_type", ""))
    if kind is None:
        raise InputError(f"{path}: model_type {config.get('model_type')!r} is not a "
                         f"DPR encoder ({', '.join(UNTRAINED_TYPES)})")
    declared = folder_recipe(path)
    given = {key: cli.get(key) for key in APPLIED if cli.get(key) is not None}
    recipe = Recipe.from_params({**declared, **given, "shared_encoder": True})  # equal towers
    limit = usable_positions(SimpleNamespace(**config)) or 512
    if "sequence_length" not in given:
        recipe = dataclasses.replace(recipe, sequence_length=min(512, limit))
    return {"encoder_model_type": kind, "pretrained_model_cfg": path, "pretrained_file": None,
            "projection_dim": 0, **dataclasses.asdict(recipe)}


def _load_untrained(path: str, cli: Mapping[str, Any], *, device: torch.device,
                    **options: Any) -> DenseEncoder:
    params = untrained_params(path, cli)
    recipe = Recipe.from_params(params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        biencoder = build_biencoder(params["encoder_model_type"], path, dropout=0.0,
                                    recipe=recipe).eval()
    check_sequence_length(biencoder, params["sequence_length"])
    tensorizer = tensorizer_for(params)
    towers = _towers(biencoder.question_model, biencoder.ctx_model, tensorizer, device)
    return DenseEncoder(*towers, params, kind="untrained", source=path, device=device,
                        **options)


class Reranker:
    """A loaded reranker scoring (question, `(title, text)` passage) pairs by its recipe
    (`dpr.data.recipe.prepare_pair`).

    Attributes:
        encoder: Its `Encoder` (eval mode, on the device), `encode_proj` the one-score head.
        params: Resolved encoder parameters, the recipe's entries included.
        description: One line for logs and reports.
        state: The checkpoint's content (epoch, offset, stored parameters), None for a folder.
    """

    def __init__(self, encoder: Encoder, tensorizer: Tensorizer, params: Mapping[str, Any], *,
                 source: str, device: torch.device, amp_dtype: torch.dtype | None = None,
                 batch_size: int = 32, quiet: bool = True,
                 state: CheckpointState | None = None) -> None:
        self.encoder, self.tensorizer = encoder, tensorizer
        self.params, self.state = dict(params), state
        self.device, self.amp_dtype = device, amp_dtype
        self.batch_size, self.quiet = batch_size, quiet
        self.description = (f"reranker {source} ({Recipe.from_params(self.params).pooling} "
                            "pooling, one-score head)")

    def score_pairs(self, pairs: Sequence[tuple[str, PassageText]]) -> np.ndarray:
        """One score per (question, `(title, text)`) pair, float32 [N] (higher: more relevant),
        `batch_size` pairs at a time, length-sorted, under autocast in `amp_dtype`."""
        items = pair_items(list(pairs), self.tensorizer.recipe)
        return encode_in_batches(self.encoder, self.tensorizer, items, dim=1,
                                 batch_size=self.batch_size, device=self.device,
                                 amp_dtype=self.amp_dtype, desc="Re-ranking",
                                 quiet=self.quiet)[:, 0]


def load_reranker(path: str | os.PathLike[str], cli: Mapping[str, Any] | None = None, *,
                  device: torch.device | str = "cpu", allow_pickle: bool = False,
                  amp_dtype: torch.dtype | None = None, batch_size: int = 32,
                  quiet: bool = True) -> Reranker:
    """Loads a reranker checkpoint (`train_reranker.py`) or the `CrossEncoder` folder `dpr2hf`
    writes from one (its recipe from its config.json's `dpr` entry and its sentence-transformers
    modules, the weights loaded once).

    Args:
        cli: Command-line encoder parameters of a checkpoint (the paths, type and recipe;
            absent or None = not given), as `load_encoder`'s; a folder applies its own.
        allow_pickle: Allow checkpoints / fairseq files that need full unpickling.
        amp_dtype: Score under autocast in this type (None: the model's own).
        batch_size: Pairs per forward pass.

    Raises:
        InputError: An unusable path, a bi-encoder checkpoint or folder (the subclass names
            the file and what is wrong).
    """
    path, device = os.fspath(path), torch.device(device)
    options = {"device": device, "amp_dtype": amp_dtype, "batch_size": batch_size,
               "quiet": quiet}
    if os.path.isdir(path):
        return _load_reranker_folder(Path(path), **options)
    trained = load_trained_reranker(path, dict(cli or {}), allow_pickle=allow_pickle)
    return Reranker(trained.reranker.to(device), tensorizer_for(trained.params), trained.params,
                    source=path, state=trained.state, **options)


def _load_reranker_folder(folder: Path, *, device: torch.device, **options: Any) -> Reranker:
    """A reranker's `CrossEncoder` folder (`dpr2hf`); InputError naming what else it is."""
    if not is_reranker_export(folder):
        if is_hf_export(folder):
            what = "a dpr2hf bi-encoder export"
        elif (folder / "config.json").is_file() and exported_params(folder):
            what = "one tower of a dpr2hf bi-encoder export"
        else:
            what = "no reranker folder (no config.json whose dpr entry says reranker)"
        raise InputError(f"{folder}: {what}; a reranker is a checkpoint written by "
                         "train_reranker.py or its CrossEncoder folder written by dpr2hf")
    entry = exported_params(folder)
    encoder = load_cross_encoder(folder)
    params = {**dataclasses.asdict(Recipe.from_params(entry)), **entry,
              "pooling": encoder.pooling.value}
    return Reranker(encoder.to(device), export_tensorizer(folder, params), params,
                    source=str(folder), device=device, **options)
