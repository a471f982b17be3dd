"""The DPR checkpoint schema, shared by the trainer, the evaluator and `dpr2hf`.

A checkpoint is a plain dict with exactly DPR's six keys (`model_dict`, `optimizer_dict`,
`scheduler_dict`, `offset`, `epoch`, `encoder_params`), saved with `torch.save` and loadable
with `torch.load(..., weights_only=True)`. `model_dict` uses DPR's key layout:
`question_model.` / `ctx_model.` followed by the Hugging Face model's own parameter names,
and `encode_proj.*` for the optional projection. Inside this package each tower keeps its
transformer under `.model.`; `to_dpr_layout` / `from_dpr_layout` translate.

A reranker checkpoint (`train_reranker.py`) has the same six keys: `model_dict` is its one
`Encoder`'s state under `reranker.` (`reranker.model.*`, `reranker.encode_proj.*`, the one-score
head), `encoder_params` DPR's six entries (projection_dim 0), the recipe entries that differ
from DPR's and `"reranker": true`. `load_checkpoint` refuses a checkpoint of the other kind in
one line naming the file and what it is.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dpr.models import fairseq
from dpr.models.torchfile import load_torch_file
from dpr.recipe import RECIPE_KEYS, Recipe
from dpr.utils.errors import InputError
from dpr.utils.io import atomic_write

logger = logging.getLogger(__name__)

CHECKPOINT_KEYS = ("model_dict", "optimizer_dict", "scheduler_dict", "offset", "epoch",
                   "encoder_params")
ENCODER_PARAM_KEYS = ("do_lower_case", "pretrained_model_cfg", "encoder_model_type",
                      "pretrained_file", "projection_dim", "sequence_length")
# The two towers: short name (dpr2hf folders, `encode_questions`...) -> checkpoint key prefix.
SIDE_NAMES = {"question": "question_model", "ctx": "ctx_model"}
SIDES = tuple(SIDE_NAMES.values())
# Values of `--encoder_model_type` (`encoder_params["encoder_model_type"]`).
ENCODER_TYPES = ("hf_bert", "hf_roberta", "fairseq_roberta")
# Buffers that some transformers versions save and others recompute; never an error.
OPTIONAL_BUFFERS = re.compile(r"(^|\.)embeddings\.(position_ids|token_type_ids)$")


RERANKER_PREFIX = "reranker."
RERANKER_KEY = "reranker"  # `encoder_params[RERANKER_KEY]` is True in a reranker checkpoint


class CheckpointError(InputError):
    """A checkpoint file that cannot be used; the message names the file."""


class CheckpointKindError(CheckpointError):
    """A reranker checkpoint where a bi-encoder is expected, or the reverse."""


@dataclass
class CheckpointState:
    """DPR's `CheckpointState` as plain data."""

    model_dict: dict[str, torch.Tensor]
    optimizer_dict: dict[str, Any] = field(default_factory=dict)
    scheduler_dict: dict[str, Any] = field(default_factory=dict)
    offset: int = 0
    epoch: int = 0
    encoder_params: dict[str, Any] = field(default_factory=dict)


def checkpoint_name(prefix: str, epoch: int, offset: int) -> str:
    """DPR's file name: `<prefix>.<epoch>`, plus `.<offset>` when offset > 0."""
    return f"{prefix}.{epoch}.{offset}" if offset > 0 else f"{prefix}.{epoch}"


def parse_checkpoint_name(name: str, prefix: str) -> tuple[int, int] | None:
    """Returns (epoch, offset) of a DPR checkpoint file name, or None if it is not one."""
    match = re.fullmatch(re.escape(prefix) + r"\.(\d+)(?:\.(\d+))?", name)
    if not match:
        return None
    return int(match.group(1)), int(match.group(2) or 0)


def checkpoint_candidates(output_dir: str | os.PathLike[str], prefix: str) -> list[Path]:
    """The checkpoints of `output_dir` to resume from, the preferred one first.

    The most advanced by (epoch, offset) in its name comes first; files with other names that
    start with the prefix rank below those, newest first (DPR picked the newest ctime).
    """
    folder = Path(output_dir)
    if not folder.is_dir():
        return []
    candidates = [p for p in folder.glob(f"{prefix}*") if p.is_file() and not
                  p.name.endswith((".json", ".tmp"))]

    def rank(path: Path) -> tuple[int, int, float]:
        parsed = parse_checkpoint_name(path.name, prefix) or (-1, -1)
        return parsed[0], parsed[1], path.stat().st_mtime

    return sorted(candidates, key=rank, reverse=True)


FAIRSEQ_PREFIX = "fairseq_roberta."
FAIRSEQ_ENCODER = "fairseq_roberta.model.encoder."
# What a tower's fairseq_roberta tensors are named after that prefix (0.9: `decoder.`).
_FAIRSEQ_KEY = re.compile(r"model\.(en|de)coder\.(sentence_encoder|lm_head)\.")


def to_dpr_layout(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our state dict → DPR key layout.

    hf types: `question_model.model.X` → `question_model.X`. fairseq_roberta (towers with an
    LM head): `question_model.fairseq_roberta.model.encoder.sentence_encoder.<fairseq name>`,
    `...encoder.lm_head.*` (with the tied `lm_head.weight`) and `...fairseq_roberta._float_tensor`,
    exactly the keys the original writes; `encode_proj.*` stays under the side prefix.
    """
    out: dict[str, torch.Tensor] = {}
    for side in SIDES:
        part = {k[len(side) + 1:]: v for k, v in state.items() if k.startswith(side + ".")}
        if "lm_head.dense.weight" not in part:  # an hf type
            out |= {f"{side}.{k.removeprefix('model.')}": v for k, v in part.items()}
            continue
        prefix = f"{side}.{FAIRSEQ_ENCODER}"
        encoder = fairseq.hf_to_sentence_encoder(
            {k[len("model."):]: v for k, v in part.items() if k.startswith("model.")})
        out |= {f"{prefix}sentence_encoder.{k}": v for k, v in encoder.items()}
        out[f"{prefix}lm_head.weight"] = encoder["embed_tokens.weight"]  # tied
        out |= {(prefix + k if k.startswith("lm_head.") else f"{side}.{k}"): v
                for k, v in part.items() if not k.startswith("model.") and k != "_float_tensor"}
        out[f"{side}.{FAIRSEQ_PREFIX}_float_tensor"] = part["_float_tensor"]
    return out


def _from_fairseq(side: str, part: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """One tower's `fairseq_roberta.*` tensors (names after that prefix) → ours."""
    unknown = [k for k in part if not _FAIRSEQ_KEY.match(k) and not fairseq.IGNORED.search(k)]
    if unknown:
        raise CheckpointError(f"unexpected fairseq_roberta key {side}."
                              f"{FAIRSEQ_PREFIX + unknown[0]!r}")
    encoder, head = fairseq.split_fairseq_state(part, prefix="model.")
    out = {f"{side}.model.{k}": v for k, v in fairseq.sentence_encoder_to_hf(encoder).items()}
    out |= {f"{side}.lm_head.{k}": v for k, v in head.items() if k != "weight"}  # tied
    if "_float_tensor" in part:
        out[f"{side}._float_tensor"] = part["_float_tensor"]
    return out


def from_dpr_layout(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """DPR key layout (hf or fairseq_roberta, fairseq 0.9's `decoder.` infix too) → ours."""
    out: dict[str, torch.Tensor] = {}
    fairseq_parts: dict[str, dict[str, torch.Tensor]] = {side: {} for side in SIDES}
    for key, value in state.items():
        side, _, rest = key.partition(".")
        if side not in SIDES:
            raise CheckpointError(f"unexpected key {key!r}: expected a question_model. or "
                                  "ctx_model. prefix")
        if rest.startswith(FAIRSEQ_PREFIX):
            fairseq_parts[side][rest[len(FAIRSEQ_PREFIX):]] = value
        elif rest.startswith("encode_proj."):
            out[key] = value
        else:
            out[f"{side}.model.{rest}"] = value
    for side, part in fairseq_parts.items():
        if part:
            out |= _from_fairseq(side, part)
    return out


def load_model_state(model: nn.Module, dpr_state: Mapping[str, torch.Tensor], *,
                     source: str = "checkpoint") -> None:
    """Loads a DPR-layout state dict into a `BiEncoder` (or one side with a single prefix):
    every parameter must be present and every stored tensor used (`CheckpointError` listing
    the others), except buffers that differ between transformers versions
    (`embeddings.position_ids`, `token_type_ids`)."""
    state = {k: v for k, v in from_dpr_layout(dpr_state).items() if not OPTIONAL_BUFFERS.search(k)}
    if getattr(model, "shared", False):
        _check_same_towers(state, source)
    _load_all(model, state, source)


def to_reranker_layout(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A reranker `Encoder`'s state dict → a reranker checkpoint's `model_dict`."""
    return {RERANKER_PREFIX + k: v for k, v in state.items()}


def load_reranker_state(encoder: nn.Module, model_dict: Mapping[str, torch.Tensor], *,
                        source: str = "checkpoint") -> None:
    """Loads a reranker checkpoint's `model_dict` into its `Encoder`, as strictly as
    `load_model_state`."""
    stray = [k for k in model_dict if not k.startswith(RERANKER_PREFIX)]
    if stray:
        raise CheckpointError(f"{source}: unexpected key {stray[0]!r} in a reranker checkpoint "
                              f"(expected the prefix {RERANKER_PREFIX!r})")
    _load_all(encoder, {k[len(RERANKER_PREFIX):]: v for k, v in model_dict.items()}, source)


def _load_all(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    state = {k: v for k, v in state.items() if not OPTIONAL_BUFFERS.search(k)}
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not OPTIONAL_BUFFERS.search(k)]
    unexpected = list(result.unexpected_keys)
    if missing or unexpected:
        raise CheckpointError(
            f"{source}: weights do not match the model: missing {missing[:5]}"
            f"{'...' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}"
            f"{'...' if len(unexpected) > 5 else ''} (was it trained with another "
            "--encoder_model_type, --pretrained_model_cfg or --projection_dim?)")


def _check_same_towers(state: Mapping[str, torch.Tensor], source: str) -> None:
    """A shared encoder loads only a checkpoint whose two towers hold the same weights."""
    question, ctx = SIDES
    for key, value in state.items():
        if not key.startswith(question + "."):
            continue
        other = state.get(ctx + key[len(question):])
        if other is not None and not (other is value or torch.equal(other, value)):
            raise CheckpointError(
                f"{source}: its question and passage towers differ ({key[len(question) + 1:]}"
                "): it cannot be loaded as a shared encoder (was it trained without "
                "--shared_encoder?)")


def save_checkpoint(state: CheckpointState, path: str | os.PathLike[str]) -> None:
    """Writes a checkpoint atomically: a crash never leaves a truncated file under `path`.

    The state's values are saved as they are (no copy, unlike `dataclasses.asdict`), so
    tensors that share storage, such as a shared encoder's two key prefixes, are stored once.
    """
    with atomic_write(path, "wb") as handle:
        torch.save({key: getattr(state, key) for key in CHECKPOINT_KEYS}, handle)


def is_reranker(state: CheckpointState) -> bool:
    """Whether a checkpoint holds a reranker (`train_reranker.py`) rather than a bi-encoder."""
    return state.encoder_params.get(RERANKER_KEY) is True or \
        any(k.startswith(RERANKER_PREFIX) for k in state.model_dict)


def check_kind(state: CheckpointState, path: str, *, reranker: bool) -> None:
    """`CheckpointKindError` naming `path` and what it holds, unless it holds a reranker
    exactly when `reranker`."""
    if is_reranker(state) == reranker:
        return
    if reranker:
        raise CheckpointKindError(f"{path}: a bi-encoder checkpoint, not a reranker (rerankers "
                                  "are trained by train_reranker.py)")
    raise CheckpointKindError(f"{path}: a reranker checkpoint (train_reranker.py), not a "
                              "bi-encoder: it scores (question, passage) pairs and encodes no "
                              "question or passage alone; give it where a reranker is asked for")


def load_checkpoint(path: str | os.PathLike[str], *, allow_pickle: bool = False,
                    reranker: bool | None = False) -> CheckpointState:
    """Reads a DPR checkpoint (ours or the original's) onto the CPU (`CheckpointError` if
    the file is missing, unreadable or lacks DPR's keys). `allow_pickle` falls back to full
    unpickling (arbitrary code execution on a malicious file) when the file holds more than
    plain tensors and containers. `reranker`: the kind expected (`check_kind`), a bi-encoder
    by default; None = either."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: checkpoint file does not exist")
    raw = load_torch_file(path, allow_pickle=allow_pickle, error=CheckpointError)
    if not isinstance(raw, Mapping):
        raw = getattr(raw, "_asdict", lambda: None)()
        if raw is None:
            raise CheckpointError(f"{path}: not a DPR checkpoint (top level is not a dict)")
    missing = [k for k in CHECKPOINT_KEYS if k not in raw]
    extra = [k for k in raw if k not in CHECKPOINT_KEYS]
    if missing or extra:
        raise CheckpointError(f"{path}: not a DPR checkpoint: missing keys {missing}, "
                              f"unexpected keys {extra}")
    state = CheckpointState(**{k: raw[k] for k in CHECKPOINT_KEYS})
    state.model_dict = dict(state.model_dict)
    state.encoder_params = dict(state.encoder_params or {})
    if reranker is not None:
        check_kind(state, path, reranker=reranker)
    return state


PATH_KEYS = ("pretrained_model_cfg", "pretrained_file")


def resolve_stored_path(value: str | None, checkpoint: str | os.PathLike[str] | None
                        ) -> str | None:
    """A stored path as given if it exists, else beside the checkpoint file if it exists
    there, else unchanged (it may be a hub name). Training stores paths as typed, often
    relative to the training directory."""
    if not value or checkpoint is None or Path(value).exists() or Path(value).is_absolute():
        return value
    beside = Path(checkpoint).parent / value
    if beside.exists():
        logger.info("Stored path %r resolved relative to the checkpoint: %s", value, beside)
        return str(beside)
    return value


def _checked_type(kind: str | None, checkpoint: str | os.PathLike[str] | None) -> str:
    """The encoder type of a checkpoint's parameters (`CheckpointError` if missing or
    unknown)."""
    source = os.fspath(checkpoint) if checkpoint is not None else "checkpoint"
    if not kind:
        raise CheckpointError(f"{source}: no encoder_model_type stored; pass "
                              "--encoder_model_type")
    if kind not in ENCODER_TYPES:
        raise CheckpointError(f"{source}: unknown encoder_model_type {kind!r} in encoder_params "
                              f"(supported: {', '.join(ENCODER_TYPES)})")
    return kind


@dataclass(frozen=True)
class Override:
    """An encoder parameter the checkpoint sets to another value than the command line."""

    key: str
    given: Any
    stored: Any

    def __str__(self) -> str:
        return f"{self.key}: {self.given!r} -> {self.stored!r} (from checkpoint)"


def resolve_encoder_params(cli: Mapping[str, Any], stored: Mapping[str, Any], *,
                           checkpoint: str | os.PathLike[str] | None = None
                          ) -> tuple[dict[str, Any], list[Override]]:
    """The encoder parameters to rebuild a checkpoint's model with, the one rule of every tool
    (docs/DIFFERENCES.md, "Checkpoints"): what defines the trained model
    (`encoder_model_type`, `do_lower_case`, `projection_dim`, `sequence_length`) comes from the
    checkpoint whenever stored (even false/0), else from the command line; the rest of the
    recipe from the checkpoint (absent: DPR's value); paths from the command line when given
    there, else the stored ones, tried as given, then beside the `checkpoint` file;
    fairseq_roberta's tokenizer from `pretrained_file` when no usable `pretrained_model_cfg`
    is stored or given (as training does).

    Args:
        cli: Command-line values of the `ENCODER_PARAM_KEYS` and `RECIPE_KEYS` (absent/None =
            not given).

    Returns:
        The six DPR values (projection_dim and sequence_length ints, do_lower_case a bool)
        and the recipe's, and the values that differ from the command line's.

    Raises:
        CheckpointError: If the encoder type is missing or unknown.
    """
    merged = {k: cli.get(k) for k in ENCODER_PARAM_KEYS}
    overrides = []
    for key in ENCODER_PARAM_KEYS:
        if stored.get(key) is None or (key in PATH_KEYS and cli.get(key)):
            continue
        value = resolve_stored_path(stored[key], checkpoint) if key in PATH_KEYS else stored[key]
        if value != cli.get(key):
            overrides.append(Override(key, cli.get(key), value))
        merged[key] = value
    dpr_recipe = Recipe()
    for key in (k for k in RECIPE_KEYS if k not in ENCODER_PARAM_KEYS):
        value = stored.get(key, getattr(dpr_recipe, key))
        if cli.get(key) is not None and cli.get(key) != value:
            overrides.append(Override(key, cli.get(key), value))
        merged[key] = value
    kind = _checked_type(merged["encoder_model_type"], checkpoint)
    cfg = merged["pretrained_model_cfg"]
    if kind == "fairseq_roberta" and merged["pretrained_file"] and not \
            cli.get("pretrained_model_cfg") and not (cfg and Path(cfg).exists()):
        merged["pretrained_model_cfg"] = merged["pretrained_file"]
    merged["projection_dim"] = int(merged["projection_dim"] or 0)
    merged["sequence_length"] = int(merged["sequence_length"] or 512)
    merged["do_lower_case"] = bool(merged["do_lower_case"])
    merged["shared_encoder"] = bool(merged["shared_encoder"])
    return merged, overrides


def encoder_params_of(values: Mapping[str, Any], *, reranker: bool = False) -> dict[str, Any]:
    """What a checkpoint stores as `encoder_params`: DPR's six entries, plus the recipe
    entries that differ from DPR's recipe (none for DPR's own command), plus
    `"reranker": true` for a reranker."""
    return {k: values.get(k) for k in ENCODER_PARAM_KEYS} | Recipe.from_params(values).stored() \
        | ({RERANKER_KEY: True} if reranker else {})
