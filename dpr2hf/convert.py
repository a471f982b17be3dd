"""DPR checkpoint → Hugging Face folders (`question_encoder/`, `ctx_encoder/`, and for BERT
checkpoints `dpr_question_encoder/`, `dpr_ctx_encoder/`; layout: docs/DPR2HF.md), or a reranker
checkpoint → one sentence-transformers `CrossEncoder` folder (docs/DPR2HF.md, "A reranker"),
written to a staging folder, verified, then published (`dpr.utils.io.staged_folder`).
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import (
    BertTokenizerFast,
    DPRConfig,
    DPRContextEncoder,
    DPRContextEncoderTokenizerFast,
    DPRQuestionEncoder,
    DPRQuestionEncoderTokenizerFast,
)

from dpr.data.tensorizer import Tensorizer, build_tokenizer, tensorizer_for
from dpr.inference import Reranker, load_encoder, load_reranker
from dpr.models.biencoder import BiEncoder
from dpr.models.checkpoint import RERANKER_KEY, SIDE_NAMES, CheckpointKindError
from dpr.models.encoder import Encoder
from dpr.models.export import TOWER_FOLDERS, export_entry, save_projection
from dpr.models.st_folder import save_cross_encoder, save_sentence_transformer
from dpr.recipe import Pooling, Recipe
from dpr.utils.errors import InputError
from dpr.utils.io import staged_folder
from dpr2hf import verify
from dpr2hf.card import CardInfo, render_card, render_reranker_card

logger = logging.getLogger(__name__)


@dataclass
class ConversionResult:
    """What was written and how closely it reproduces the bi-encoder (or the reranker: then
    `folders` is empty, `output_dir` itself being the `CrossEncoder` folder)."""

    output_dir: Path
    folders: list[str]
    max_differences: dict[str, float] = field(default_factory=dict)
    reranker: bool = False


def check_output_dir(output_dir: Path, *, overwrite: bool) -> None:
    """Refuses an existing file, or a non-empty folder unless `overwrite`."""
    if output_dir.exists() and not output_dir.is_dir():
        raise InputError(f"--output_dir {output_dir}: exists and is not a folder")
    if output_dir.is_dir() and any(output_dir.iterdir()) and not overwrite:
        raise InputError(f"--output_dir {output_dir}: exists and is not empty "
                              "(pass --overwrite to replace it)")


def _tokenizer_options(params: dict) -> dict:
    """The training tokenizer's settings, and what makes a plain call reproduce training: its
    length as `model_max_length`, no `token_type_ids` (training fed none)."""
    return {"model_max_length": params["sequence_length"], "do_lower_case": params["do_lower_case"],
            "model_input_names": ["input_ids", "attention_mask"]}


def _save_plain(encoder: Encoder, plain: str, *, params: dict, entry: dict) -> None:
    """The encoder's transformer (config.json with the `dpr` entry `entry`) and the training
    tokenizer, set to reproduce training (`_tokenizer_options`), as a transformers folder."""
    model = encoder.model
    model.config.dpr = entry
    model.save_pretrained(plain, safe_serialization=True)
    del model.config.dpr
    build_tokenizer(params["encoder_model_type"], params["pretrained_model_cfg"],
                    **_tokenizer_options(params)).save_pretrained(plain)


def export_tower(tower: Encoder, folder: Path, *, side: str, params: dict) -> None:
    """The tower's transformer, tokenizer and projection, as a sentence-transformers folder
    whose default prompt is the tower's prefix."""
    with tempfile.TemporaryDirectory(dir=folder.parent) as plain:
        _save_plain(tower, plain, params=params, entry=export_entry(params))
        save_sentence_transformer(plain, folder, Recipe.from_params(params),
                                  projection=tower.encode_proj,
                                  default_prompt="query" if side == "question" else "passage")
    if tower.encode_proj is not None:
        save_projection(tower.encode_proj, folder)


def export_dpr_bert(tower: Encoder, folder: Path, side: str, *, params: dict) -> None:
    """Hugging Face's DPRQuestionEncoder / DPRContextEncoder built from a BERT tower."""
    bert = tower.model.config.to_dict()
    accepted = set(inspect.signature(DPRConfig.__init__).parameters)
    config = DPRConfig(**{k: v for k, v in bert.items() if k in accepted},
                       projection_dim=params["projection_dim"])
    config.dpr = export_entry(params)
    model_cls, tok_cls, attr = ((DPRQuestionEncoder, DPRQuestionEncoderTokenizerFast,
                                 "question_encoder") if side == "question" else
                                (DPRContextEncoder, DPRContextEncoderTokenizerFast, "ctx_encoder"))
    model = model_cls(config)
    state = {f"{attr}.bert_model.{k}": v for k, v in tower.model.state_dict().items()
             if not k.startswith("pooler.")}
    if tower.encode_proj is not None:
        state |= {f"{attr}.encode_proj.{k}": v for k, v in tower.encode_proj.state_dict().items()}
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith("position_ids")]
    if missing or result.unexpected_keys:
        raise InputError(f"DPR {side} encoder: missing {missing}, unexpected "
                              f"{result.unexpected_keys}")
    model.save_pretrained(folder, safe_serialization=True)
    tok_cls.from_pretrained(params["pretrained_model_cfg"],
                            **_tokenizer_options(params)).save_pretrained(folder)


def export_reranker(reranker: Encoder, folder: Path, *, params: dict) -> None:
    """The reranker's transformer, tokenizer and head as a sentence-transformers
    `CrossEncoder` folder (`save_cross_encoder`); its config.json's `dpr` entry is the
    bi-encoder towers' with `"reranker": true`."""
    with tempfile.TemporaryDirectory(dir=folder.parent) as plain:
        _save_plain(reranker, plain, params=params,
                    entry=export_entry(params) | {RERANKER_KEY: True})
        save_cross_encoder(plain, folder, Recipe.from_params(params), head=reranker.encode_proj)


def has_dpr_classes(params: dict, tensorizer: Tensorizer) -> bool:
    """Whether Hugging Face's DPR classes can hold the model: a BERT with a WordPiece
    tokenizer (theirs), read by DPR's own recipe (their `pooler_output` is the raw first
    token)."""
    recipe = Recipe.from_params(params)
    return (params["encoder_model_type"] == "hf_bert"
            and isinstance(tensorizer.tokenizer, BertTokenizerFast)
            and recipe.pooling == Pooling.CLS and not recipe.normalize)


def _write_all(staging: Path, biencoder: BiEncoder, *, tensorizer: Tensorizer,
               params: dict) -> list[tuple[str, str, bool]]:
    """Writes every folder; returns (folder name, side, is a DPR-class folder)."""
    written = []
    for side, attr in SIDE_NAMES.items():
        tower = getattr(biencoder, attr)
        name = TOWER_FOLDERS[side]
        export_tower(tower, staging / name, side=side, params=params)
        written.append((name, side, False))
        if has_dpr_classes(params, tensorizer):
            export_dpr_bert(tower, staging / f"dpr_{name}", side, params=params)
            written.append((f"dpr_{name}", side, True))
    return written


def _verify_all(staging: Path, written: list[tuple[str, str, bool]], biencoder: BiEncoder, *,
                tensorizer: Tensorizer, params: dict,
                tolerance: float) -> dict[str, dict[str, float]]:
    ref = verify.reference(biencoder, tensorizer)
    diffs: dict[str, dict[str, float]] = {}
    for name, side, is_dpr in written:
        folder = staging / name
        if is_dpr:
            diffs[name] = {"DPR class pooler_output": verify.verify_dpr_folder(
                folder, side, ref[side], tolerance=tolerance)}
            continue
        diffs[name] = {"transformers AutoModel": verify.verify_hf_folder(
            folder, side, ref[side], tolerance=tolerance)}
        diffs[name]["sentence-transformers"] = verify.verify_sentence_transformers(
            folder, side, ref[side], tolerance=tolerance)
    return diffs


def convert(checkpoint: str | os.PathLike[str], output_dir: str | os.PathLike[str], *,
            cli: Mapping[str, Any] | None = None, overwrite: bool = False,
            allow_pickle: bool = False, tolerance: float = 1e-4) -> ConversionResult:
    """Converts a DPR checkpoint into verified Hugging Face folders under `output_dir`, or a
    reranker checkpoint into a verified `CrossEncoder` folder `output_dir` (left as it was on
    any error).

    Args:
        checkpoint: DPR checkpoint file (ours or the original DPR's), a reranker checkpoint
            (`train_reranker.py`), or a plain model folder (exported as the untrained
            bi-encoder training would start from).
        cli: Command-line encoder parameters (`dpr.cli.flags.encoder_params`): the paths
            overriding those stored in the checkpoint, the recipe of a plain folder.
        allow_pickle: Allow files that need full unpickling (trusted files only).
        tolerance: Largest accepted absolute difference between vectors.

    Raises:
        CheckpointError: Unreadable, unknown-type or mismatching checkpoint, or stored/given
            paths that do not load.
        TokenizerError: No usable tokenizer in the model folder.
        InputError: Non-empty output folder.
        verify.VerificationError: An exported folder does not reproduce the bi-encoder.
    """
    checkpoint, output_dir = Path(checkpoint), Path(output_dir).absolute()
    check_output_dir(output_dir, overwrite=overwrite)
    try:
        biencoder, params, stored = _load(checkpoint, dict(cli or {}), allow_pickle=allow_pickle)
    except CheckpointKindError:  # a reranker checkpoint: read again by the reranker's loader
        reranker = load_reranker(checkpoint, dict(cli or {}), allow_pickle=allow_pickle)
        return convert_reranker(reranker, checkpoint.name, output_dir, tolerance=tolerance)
    tensorizer = tensorizer_for(params, pad_to_multiple_of=1)
    with staged_folder(output_dir, overwrite=output_dir.exists()) as staging:
        written = _write_all(staging, biencoder, tensorizer=tensorizer, params=params)
        diffs = _verify_all(staging, written, biencoder, tensorizer=tensorizer, params=params,
                            tolerance=tolerance)
        for name, side, is_dpr in written:
            card = CardInfo(side=side, model_class=_model_class(staging / name),
                            checkpoint=checkpoint.name, encoder_params=stored,
                            recipe=Recipe.from_params(params),
                            hidden_size=biencoder.question_model.model.config.hidden_size,
                            projection_dim=params["projection_dim"],
                            max_differences=diffs[name], dpr_class=is_dpr)
            (staging / name / "README.md").write_text(render_card(card), encoding="utf-8")
    flat = {f"{name}/{how}": d for name, per in diffs.items() for how, d in per.items()}
    return ConversionResult(output_dir=output_dir, folders=[w[0] for w in written],
                            max_differences=flat)


def convert_reranker(reranker: Reranker, checkpoint: str, output_dir: Path, *,
                     tolerance: float) -> ConversionResult:
    """Writes the loaded reranker checkpoint `checkpoint` (its file name) as the `CrossEncoder`
    folder `output_dir` with its model card, once `verify.verify_cross_encoder` passed."""
    params, state = reranker.params, reranker.state
    logger.info("Reranker checkpoint %s (epoch %s, offset %s): %s", checkpoint, state.epoch,
                state.offset, params)
    with staged_folder(output_dir, overwrite=output_dir.exists()) as staging:
        export_reranker(reranker.encoder, staging, params=params)
        diffs = verify.verify_cross_encoder(staging, reranker, tolerance=tolerance)
        card = CardInfo(side="reranker", model_class=_model_class(staging),
                        checkpoint=checkpoint, encoder_params=dict(state.encoder_params),
                        recipe=Recipe.from_params(params),
                        hidden_size=reranker.encoder.model.config.hidden_size,
                        projection_dim=1, max_differences=diffs)
        (staging / "README.md").write_text(render_reranker_card(card, output_dir.name),
                                           encoding="utf-8")
    return ConversionResult(output_dir=output_dir, folders=[], max_differences=diffs,
                            reranker=True)


def _load(path: Path, cli: dict, *, allow_pickle: bool) -> tuple[BiEncoder, dict, dict]:
    """The bi-encoder to export, its resolved parameters and the parameters to show on the
    model cards, read by the one loader (`dpr.inference.load_encoder`): a checkpoint, or a
    plain model folder exported as the untrained bi-encoder training starts from."""
    model = load_encoder(path, cli, allow_pickle=allow_pickle)
    if model.kind == "export":
        raise InputError(f"{path}: already a dpr2hf export")
    question, ctx = model.question.encoder, model.ctx.encoder
    biencoder = BiEncoder(question, None if ctx is question else ctx).eval()
    if model.state is not None:
        logger.info("Checkpoint %s (epoch %s, offset %s): %s", path, model.state.epoch,
                    model.state.offset, model.params)
        return biencoder, model.params, dict(model.state.encoder_params)
    logger.info("Model folder %s, as an untrained bi-encoder: %s", path, model.params)
    return biencoder, model.params, dict(model.params)


def _model_class(folder: Path) -> str:
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    return (config.get("architectures") or ["?"])[0]
