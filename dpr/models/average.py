"""Weight averaging of a fine-tuned checkpoint with the weights it started from (WiSE-FT,
Wortsman et al. 2022; the README says why). The start is the pretrained folder the
checkpoint's `encoder_params` name (or the paths given anew), built as training built it;
what training created (the projection, a BERT pooler absent from the folder) has no
pretrained value and keeps the fine-tuned one.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from collections.abc import Mapping
from typing import Any

import torch

from dpr.models.checkpoint import CheckpointError, CheckpointState, save_checkpoint, to_dpr_layout
from dpr.models.encoder import quiet_from_pretrained
from dpr.models.factory import build_biencoder, load_trained_biencoder
from dpr.recipe import Recipe
from dpr.utils.errors import UsageError

logger = logging.getLogger(__name__)


def interpolate(tuned: Mapping[str, torch.Tensor], start: Mapping[str, torch.Tensor], *,
                alpha: float, keep: set[str] = frozenset()) -> dict[str, torch.Tensor]:
    """`(1 - alpha) * start + alpha * tuned` for every floating-point tensor but those of
    `keep` (no pretrained value exists: the fine-tuned one is kept). Entries that are one
    tensor in both inputs (a shared encoder's two prefixes) are one tensor in the result too,
    so that it is saved once.

    Raises:
        UsageError: `alpha` outside [0, 1].
        CheckpointError: Keys or shapes that differ.
    """
    if not (math.isfinite(alpha) and 0.0 <= alpha <= 1.0):
        raise UsageError(f"--alpha must be in [0, 1], got {alpha}")
    missing = sorted(set(tuned) ^ set(start))
    if missing:
        raise CheckpointError(f"the start model's weights do not match the checkpoint's: "
                              f"{missing[:5]}")
    out: dict[str, torch.Tensor] = {}
    done: dict[tuple, torch.Tensor] = {}  # a shared encoder's tensors, mixed once
    for key, value in tuned.items():
        base = start[key]
        if base.shape != value.shape:
            raise CheckpointError(f"{key}: shape {tuple(value.shape)} in the checkpoint, "
                                  f"{tuple(base.shape)} in the start model")
        pair = (_memory(value), _memory(base))
        if pair not in done:
            if key in keep or not value.is_floating_point():
                done[pair] = value.clone()
            else:
                mixed = (1.0 - alpha) * base.to(torch.float32) + alpha * value.to(torch.float32)
                done[pair] = mixed.to(value.dtype)
        out[key] = done[pair]
    return out


def _memory(tensor: torch.Tensor) -> tuple:
    """What two state-dict entries share when they are one tensor (a shared encoder's two
    prefixes): `state_dict()` gives a new tensor object per key, over the same memory."""
    return tensor.data_ptr(), tensor.dtype, tuple(tensor.shape), tensor.stride()


def _fresh_keys(params: Mapping[str, Any]) -> set[str]:
    """Our-layout keys that `from_pretrained` initialised at random (absent from the folder)."""
    fresh: set[str] = set()
    if params["encoder_model_type"] == "fairseq_roberta":
        return fresh
    from transformers import AutoModel, BertModel

    cls = BertModel if params["encoder_model_type"] == "hf_bert" else AutoModel
    _, info = quiet_from_pretrained(cls, params["pretrained_model_cfg"])
    for key in info.get("missing_keys", ()):
        fresh |= {f"{side}.model.{key}" for side in ("question_model", "ctx_model")}
    return fresh


def average_with_start(checkpoint: str | os.PathLike[str], output: str | os.PathLike[str], *,
                       alpha: float, cli: Mapping[str, Any] | None = None,
                       allow_pickle: bool = False) -> dict[str, Any]:
    """Writes `output` (atomically): the checkpoint's weights averaged with its pretrained
    start, with the same `encoder_params` (so every tool applies the same recipe), no optimizer
    or schedule, and epoch/offset 0.

    Args:
        alpha: Weight of the fine-tuned weights (see `interpolate`).
        cli: Path overrides (`pretrained_model_cfg`, `pretrained_file`).

    Returns:
        alpha, the start folder and the counts of averaged / kept tensors.
    """
    checkpoint = os.fspath(checkpoint)
    trained = load_trained_biencoder(checkpoint, dict(cli or {}), allow_pickle=allow_pickle)
    params = trained.params
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = build_biencoder(
            params["encoder_model_type"], params["pretrained_model_cfg"],
            pretrained_file=params.get("pretrained_file"), dropout=0.0,
            projection_dim=params["projection_dim"], allow_pickle=allow_pickle,
            recipe=Recipe.from_params(params))
    tuned_state = trained.biencoder.state_dict()
    keep = {k for k in tuned_state if ".encode_proj." in k} | _fresh_keys(params)
    mixed = interpolate(tuned_state, start.state_dict(), alpha=alpha, keep=keep)
    save_checkpoint(CheckpointState(model_dict=to_dpr_layout(mixed),
                                    encoder_params=dict(trained.state.encoder_params)), output)
    averaged = sum(1 for k, v in mixed.items() if k not in keep and v.is_floating_point())
    logger.info("Wrote %s: %.2f x %s + %.2f x %s (%d tensors averaged, %d kept)", output,
                alpha, checkpoint, 1 - alpha, params["pretrained_model_cfg"], averaged,
                len(mixed) - averaged)
    return {"alpha": alpha, "start": params["pretrained_model_cfg"],
            "averaged_tensors": averaged, "kept_tensors": len(mixed) - averaged}
