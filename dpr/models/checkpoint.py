"""The DPR checkpoint schema, shared by the trainer, the evaluator and `dpr2hf`.

A checkpoint is a plain dict with exactly DPR's six keys (`model_dict`, `optimizer_dict`,
`scheduler_dict`, `offset`, `epoch`, `encoder_params`), saved with `torch.save` and loadable
with `torch.load(..., weights_only=True)`. `model_dict` uses DPR's key layout:
`question_model.` / `ctx_model.` followed by the Hugging Face model's own parameter names,
and `encode_proj.*` for the optional projection. Inside this package each tower keeps its
transformer under `.model.`; `to_dpr_layout` / `from_dpr_layout` translate.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dpr.models import fairseq
from dpr.utils.errors import InputError
from dpr.utils.io import atomic_write

logger = logging.getLogger(__name__)

CHECKPOINT_KEYS = ("model_dict", "optimizer_dict", "scheduler_dict", "offset", "epoch",
                   "encoder_params")
ENCODER_PARAM_KEYS = ("do_lower_case", "pretrained_model_cfg", "encoder_model_type",
                      "pretrained_file", "projection_dim", "sequence_length")
SIDES = ("question_model", "ctx_model")
# Buffers that some transformers versions save and others recompute; never an error.
OPTIONAL_BUFFERS = re.compile(r"(^|\.)embeddings\.(position_ids|token_type_ids)$")


class CheckpointError(InputError):
    """A checkpoint file that cannot be used; the message names the file."""


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


def find_latest_checkpoint(output_dir: str | os.PathLike[str], prefix: str) -> Path | None:
    """Finds the checkpoint to resume from in `output_dir`.

    The most advanced one by (epoch, offset) in its name wins; files with other names that
    start with the prefix rank below those, newest first (DPR picked the newest ctime).
    """
    folder = Path(output_dir)
    if not folder.is_dir():
        return None
    candidates = [p for p in folder.glob(f"{prefix}*") if p.is_file() and not
                  p.name.endswith((".json", ".tmp"))]
    if not candidates:
        return None

    def rank(path: Path) -> tuple[int, int, float]:
        parsed = parse_checkpoint_name(path.name, prefix) or (-1, -1)
        return parsed[0], parsed[1], path.stat().st_mtime

    return max(candidates, key=rank)


FAIRSEQ_PREFIX = "fairseq_roberta."
FAIRSEQ_ENCODER = "fairseq_roberta.model.encoder."


def _is_fairseq_side(state: Mapping[str, torch.Tensor], side: str) -> bool:
    return f"{side}.lm_head.dense.weight" in state


def to_dpr_layout(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our state dict → DPR key layout.

    hf types: `question_model.model.X` → `question_model.X`. fairseq_roberta (towers with an
    LM head): `question_model.fairseq_roberta.model.encoder.sentence_encoder.<fairseq name>`,
    `...encoder.lm_head.*` (with the tied `lm_head.weight`) and `...fairseq_roberta._float_tensor`,
    exactly the keys the original writes; `encode_proj.*` stays under the side prefix.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        side, _, rest = key.partition(".")
        if side in SIDES and _is_fairseq_side(state, side):
            if rest.startswith("model."):
                name = fairseq.hf_to_fairseq_name(rest[len("model."):])
                if name == "embed_tokens.weight":
                    out[f"{side}.{FAIRSEQ_ENCODER}lm_head.weight"] = value
                if name is None:
                    if rest.endswith(fairseq.TOKEN_TYPE) and bool(value.abs().max() > 0):
                        raise CheckpointError("token-type embeddings of a fairseq_roberta model "
                                              "are not zero")
                    continue
                out[f"{side}.{FAIRSEQ_ENCODER}sentence_encoder.{name}"] = value
            elif rest.startswith("lm_head."):
                out[f"{side}.{FAIRSEQ_ENCODER}{rest}"] = value
            elif rest == "_float_tensor":
                out[f"{side}.{FAIRSEQ_PREFIX}_float_tensor"] = value
            else:
                out[key] = value
            continue
        if side in SIDES and rest.startswith("model."):
            rest = rest[len("model."):]
        out[f"{side}.{rest}"] = value
    return out


def _from_fairseq_key(side: str, rest: str, value: torch.Tensor,
                      out: dict[str, torch.Tensor]) -> None:
    name = rest[len(FAIRSEQ_PREFIX):]
    if name == "_float_tensor":
        out[f"{side}._float_tensor"] = value
        return
    for infix in ("model.encoder.", "model.decoder."):
        if name.startswith(infix + "sentence_encoder."):
            hf = fairseq.fairseq_to_hf_name(name[len(infix) + len("sentence_encoder."):])
            if hf is not None:
                out[f"{side}.model.{hf}"] = value
            if hf == "embeddings.word_embeddings.weight":
                out[f"{side}.model.{fairseq.TOKEN_TYPE}"] = value.new_zeros(1, value.shape[1])
            return
        if name.startswith(infix + "lm_head."):
            head = name[len(infix) + len("lm_head."):]
            if head != "weight":  # tied to embed_tokens
                out[f"{side}.lm_head.{head}"] = value
            return
    if not fairseq.IGNORED.search(name):
        raise CheckpointError(f"unexpected fairseq_roberta key {side}.{rest!r}")


def from_dpr_layout(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """DPR key layout (hf or fairseq_roberta, fairseq 0.9's `decoder.` infix too) → ours."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        side, _, rest = key.partition(".")
        if side not in SIDES:
            raise CheckpointError(f"unexpected key {key!r}: expected a question_model. or "
                                  "ctx_model. prefix")
        if rest.startswith(FAIRSEQ_PREFIX):
            _from_fairseq_key(side, rest, value, out)
            continue
        if not rest.startswith("encode_proj."):
            rest = f"model.{rest}"
        out[f"{side}.{rest}"] = value
    return out


def load_model_state(model: nn.Module, dpr_state: Mapping[str, torch.Tensor], *,
                     source: str = "checkpoint") -> None:
    """Loads a DPR-layout state dict into a `BiEncoder` (or one side with a single prefix).

    Every parameter must be present and every stored tensor must be used, except buffers that
    differ between transformers versions (`embeddings.position_ids`, `token_type_ids`).

    Raises:
        CheckpointError: Listing missing or unexpected keys.
    """
    state = {k: v for k, v in from_dpr_layout(dpr_state).items() if not OPTIONAL_BUFFERS.search(k)}
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not OPTIONAL_BUFFERS.search(k)]
    unexpected = list(result.unexpected_keys)
    if missing or unexpected:
        raise CheckpointError(
            f"{source}: weights do not match the model: missing {missing[:5]}"
            f"{'...' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}"
            f"{'...' if len(unexpected) > 5 else ''} (was it trained with another "
            "--encoder_model_type, --pretrained_model_cfg or --projection_dim?)"
        )


def save_checkpoint(state: CheckpointState, path: str | os.PathLike[str]) -> None:
    """Writes a checkpoint atomically: a crash never leaves a truncated file under `path`."""
    with atomic_write(path, "wb") as handle:
        torch.save(asdict(state), handle)


def _looks_like_torch_file(path: str) -> bool:
    """torch.save writes a zip archive (torch >= 1.6) or a pickle (protocol >= 2, older)."""
    if zipfile.is_zipfile(path):
        return True
    with open(path, "rb") as handle:
        return handle.read(1) == b"\x80"


def load_checkpoint(path: str | os.PathLike[str], *, allow_pickle: bool = False) -> CheckpointState:
    """Reads a DPR checkpoint (ours or the original's) onto the CPU.

    Args:
        path: Checkpoint file.
        allow_pickle: Fall back to full unpickling (arbitrary code execution on a malicious
            file) when the file holds more than plain tensors and containers.

    Raises:
        CheckpointError: If the file is missing, unreadable or lacks DPR's keys.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: checkpoint file does not exist")
    if not _looks_like_torch_file(path):
        raise CheckpointError(f"{path}: not a torch checkpoint (corrupted or truncated file?)")
    unreadable = (pickle.UnpicklingError, RuntimeError, EOFError, OSError, AttributeError,
                  ImportError, ValueError)
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if not allow_pickle:
            raise CheckpointError(
                f"{path}: holds objects other than tensors and plain containers, so it was "
                "not loaded (unpickling can run arbitrary code). If you trust the file, pass "
                f"--allow_unsafe_pickle. Detail: {str(err).splitlines()[0]}"
            ) from err
        warnings.warn(f"{path}: loading with full unpickling (trusted file)", stacklevel=2)
        try:
            raw = torch.load(path, map_location="cpu", weights_only=False)
        except unreadable as err2:
            raise CheckpointError(f"{path}: cannot be read (corrupted or truncated?): "
                                  f"{str(err2).splitlines()[0]}") from err2
    except unreadable as err:
        raise CheckpointError(f"{path}: cannot be read (corrupted or truncated?): "
                              f"{str(err).splitlines()[0] if str(err) else type(err).__name__}"
                              ) from err
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
    return state


def merge_encoder_params(
    cli: Mapping[str, Any], stored: Mapping[str, Any]
) -> tuple[dict[str, Any], list[str]]:
    """Combines command-line encoder parameters with a checkpoint's `encoder_params`.

    What defines the trained model comes from the checkpoint (`encoder_model_type`,
    `do_lower_case`, `projection_dim`, `sequence_length`); paths (`pretrained_model_cfg`,
    `pretrained_file`) come from the command line when given there, as stored relative
    paths often no longer resolve, and from the checkpoint otherwise.

    Returns:
        The merged values of the six keys, and one message per value that differs from the
        command line.
    """
    merged = {k: cli.get(k) for k in ENCODER_PARAM_KEYS}
    messages = []
    for key in ENCODER_PARAM_KEYS:
        if key not in stored or stored[key] is None:
            continue
        if key in ("pretrained_model_cfg", "pretrained_file") and cli.get(key):
            continue
        if stored[key] != cli.get(key):
            messages.append(f"{key}: {cli.get(key)!r} -> {stored[key]!r} (from checkpoint)")
        merged[key] = stored[key]
    return merged, messages


def encoder_params_of(values: Mapping[str, Any]) -> dict[str, Any]:
    """The six `encoder_params` entries of a flag mapping, as plain values."""
    return {k: values.get(k) for k in ENCODER_PARAM_KEYS}
