"""DPR checkpoint → Hugging Face folders, written to a staging folder, verified, then published.

Output layout under `output_dir`:
- `question_encoder/`, `ctx_encoder/`: the tower's transformer (`BertModel`, `RobertaModel` or
  `CamembertModel`, safetensors), its tokenizer, `encode_proj.safetensors` when the checkpoint
  projects, a sentence-transformers configuration and a model card.
- `dpr_question_encoder/`, `dpr_ctx_encoder/` (BERT checkpoints only): Hugging Face's
  `DPRQuestionEncoder` / `DPRContextEncoder` with a DPR tokenizer.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from transformers import (
    BertTokenizerFast,
    DPRConfig,
    DPRContextEncoder,
    DPRContextEncoderTokenizerFast,
    DPRQuestionEncoder,
    DPRQuestionEncoderTokenizerFast,
    PreTrainedTokenizerBase,
)

from dpr.data.tensorizer import Tensorizer, tensorizer_for, tokenizer_options
from dpr.inference import load_encoder
from dpr.models.biencoder import BiEncoder
from dpr.models.checkpoint import SIDE_NAMES
from dpr.models.encoder import Encoder
from dpr.models.export import TOWER_FOLDERS, export_entry, save_projection
from dpr.models.recipe import Pooling, recipe_of
from dpr.utils.errors import InputError
from dpr2hf import verify
from dpr2hf.card import CardInfo, render_card
from dpr2hf.sbert import write_sentence_transformers_config

logger = logging.getLogger(__name__)

MODEL_INPUT_NAMES = ["input_ids", "attention_mask"]
PAIR_NOTE = (
    "For passages pass `(title, text)` tuples, `model.encode([(title, text)])`: "
    "sentence-transformers then tokenizes the pair exactly as training did (checked at "
    "conversion). A single string gives the same ids only if nothing is truncated and the "
    "separator is exactly right: `title + \" [SEP] \" + text` (BERT), `title + \"</s></s>\" + "
    "text` (CamemBERT: spaces around it do not matter; RoBERTa: no spaces); when the pair is "
    "longer than the maximum length, training trimmed the longer of title and text while a "
    "single string loses the end of the text.")


class ConversionError(InputError):
    """Bad input to the converter (the message names the file or folder)."""


@dataclass
class ConversionResult:
    """What was written and how closely it reproduces the bi-encoder."""

    output_dir: Path
    folders: list[str]
    max_differences: dict[str, float] = field(default_factory=dict)


def check_output_dir(output_dir: Path, *, overwrite: bool) -> None:
    """Refuses an existing file, or a non-empty folder unless `overwrite`."""
    if output_dir.exists() and not output_dir.is_dir():
        raise ConversionError(f"--output_dir {output_dir}: exists and is not a folder")
    if output_dir.is_dir() and any(output_dir.iterdir()) and not overwrite:
        raise ConversionError(f"--output_dir {output_dir}: exists and is not empty "
                              "(pass --overwrite to replace it)")


def _export_tokenizer(tokenizer: PreTrainedTokenizerBase, params: dict, folder: Path, *,
                      cls: type | None = None) -> None:
    """Saves the training tokenizer's class (or `cls`), with its recipe options, to `folder`."""
    cls = cls or type(tokenizer)
    options = tokenizer_options(params["encoder_model_type"], params["do_lower_case"])
    saved = cls.from_pretrained(params["pretrained_model_cfg"],
                                model_max_length=params["sequence_length"],
                                model_input_names=MODEL_INPUT_NAMES, **options)
    saved.save_pretrained(folder)


def export_tower(tower: Encoder, folder: Path, *, tensorizer: Tensorizer, params: dict) -> None:
    """The tower's transformer, tokenizer, projection and sentence-transformers config."""
    model = tower.model
    model.config.dpr = export_entry(params)
    model.save_pretrained(folder, safe_serialization=True)
    del model.config.dpr
    _export_tokenizer(tensorizer.tokenizer, params, folder)
    proj = tower.encode_proj
    if proj is not None:
        save_projection(proj, folder)
    recipe = recipe_of(params)
    prompts = {name: prefix for name, prefix in (("query", recipe.query_prefix),
                                                 ("passage", recipe.passage_prefix)) if prefix}
    write_sentence_transformers_config(
        folder, hidden_size=model.config.hidden_size, max_seq_length=params["sequence_length"],
        do_lower_case=params["do_lower_case"], projection=proj, pooling=recipe.pooling,
        normalize=recipe.normalize, prompts=prompts)


def export_dpr_bert(tower: Encoder, folder: Path, side: str, *, tensorizer: Tensorizer,
                    params: dict) -> None:
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
        raise ConversionError(f"DPR {side} encoder: missing {missing}, unexpected "
                              f"{result.unexpected_keys}")
    model.save_pretrained(folder, safe_serialization=True)
    _export_tokenizer(tensorizer.tokenizer, params, folder, cls=tok_cls)


def has_dpr_classes(params: dict, tensorizer: Tensorizer) -> bool:
    """Whether Hugging Face's DPR classes can hold the model: a BERT with a WordPiece
    tokenizer (theirs), read by DPR's own recipe (their `pooler_output` is the raw first
    token)."""
    recipe = recipe_of(params)
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
        export_tower(tower, staging / name, tensorizer=tensorizer, params=params)
        written.append((name, side, False))
        if has_dpr_classes(params, tensorizer):
            export_dpr_bert(tower, staging / f"dpr_{name}", side, tensorizer=tensorizer,
                            params=params)
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
        st = verify.verify_sentence_transformers(folder, side, ref[side], tolerance=tolerance)
        if st is not None:
            diffs[name]["sentence-transformers"] = st
    return diffs


@contextlib.contextmanager
def staging_folder(output_dir: Path) -> Iterator[Path]:
    """A new hidden folder beside `output_dir` (`.NAME.XXXX.tmp`) to write into before
    `publish`; whatever is left of it is removed when the block exits, error or not."""
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.", suffix=".tmp",
                                    dir=output_dir.parent))
    try:
        yield staging
    finally:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(staging)


def publish(staging: Path, output_dir: Path, *, overwrite: bool) -> None:
    """Moves the verified staging folder to `output_dir` (replacing it when allowed)."""
    check_output_dir(output_dir, overwrite=overwrite)
    if not output_dir.exists():
        os.replace(staging, output_dir)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.old.", dir=output_dir.parent))
    os.replace(output_dir, old / output_dir.name)
    os.replace(staging, output_dir)
    shutil.rmtree(old, ignore_errors=True)


def convert(checkpoint: str | os.PathLike[str], output_dir: str | os.PathLike[str], *,
            pretrained_model_cfg: str | None = None, pretrained_file: str | None = None,
            overwrite: bool = False, allow_pickle: bool = False,
            tolerance: float = 1e-4) -> ConversionResult:
    """Converts a DPR checkpoint into verified Hugging Face folders under `output_dir`.

    Everything is written to a hidden staging folder beside `output_dir`, reloaded and compared
    with the bi-encoder, and renamed into place only when every check passes; on any error the
    staging folder is removed and `output_dir` is left as it was.

    Args:
        checkpoint: DPR checkpoint file (ours or the original DPR's).
        output_dir: Folder to create.
        pretrained_model_cfg: Overrides the model config/tokenizer folder stored in the checkpoint.
        pretrained_file: Overrides the fairseq folder stored in the checkpoint.
        overwrite: Replace a non-empty `output_dir`.
        allow_pickle: Allow files that need full unpickling (trusted files only).
        tolerance: Largest accepted absolute difference between vectors.

    Raises:
        CheckpointError: Unreadable, unknown-type or mismatching checkpoint, or stored/given
            paths that do not load.
        TokenizerError: No usable tokenizer in the model folder.
        ConversionError: Non-empty output folder.
        verify.VerificationError: An exported folder does not reproduce the bi-encoder.
    """
    checkpoint, output_dir = Path(checkpoint), Path(output_dir).absolute()
    check_output_dir(output_dir, overwrite=overwrite)
    biencoder, params, stored = _load(checkpoint, {"pretrained_model_cfg": pretrained_model_cfg,
                                                   "pretrained_file": pretrained_file},
                                      allow_pickle=allow_pickle)
    tensorizer = tensorizer_for(params, pad_to_multiple_of=1)
    with staging_folder(output_dir) as staging:
        written = _write_all(staging, biencoder, tensorizer=tensorizer, params=params)
        diffs = _verify_all(staging, written, biencoder, tensorizer=tensorizer, params=params,
                            tolerance=tolerance)
        for name, side, is_dpr in written:
            card = CardInfo(side=side, model_class=_model_class(staging / name),
                            checkpoint=checkpoint.name, encoder_params=stored,
                            hidden_size=biencoder.question_model.model.config.hidden_size,
                            projection_dim=params["projection_dim"],
                            max_differences=diffs[name], dpr_class=is_dpr)
            (staging / name / "README.md").write_text(render_card(card, pair_note=PAIR_NOTE),
                                                      encoding="utf-8")
        publish(staging, output_dir, overwrite=overwrite)
    flat = {f"{name}/{how}": d for name, per in diffs.items() for how, d in per.items()}
    return ConversionResult(output_dir=output_dir, folders=[w[0] for w in written],
                            max_differences=flat)


def _load(path: Path, cli: dict, *, allow_pickle: bool) -> tuple[BiEncoder, dict, dict]:
    """The bi-encoder to export, its resolved parameters and the parameters to show on the
    model cards, read by the one loader (`dpr.inference.load_encoder`): a checkpoint, or a
    plain model folder exported as the untrained bi-encoder training starts from."""
    model = load_encoder(path, cli, allow_pickle=allow_pickle)
    if model.kind == "export":
        raise ConversionError(f"{path}: already a dpr2hf export")
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
