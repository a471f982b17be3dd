"""Builds a bi-encoder from encoder parameters (CLI flags or a checkpoint's `encoder_params`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from dpr.models.biencoder import BiEncoder
from dpr.models.checkpoint import load_model_state
from dpr.models.encoder import build_fairseq_encoder, build_hf_encoder
from dpr.models.fairseq import load_fairseq_folder
from dpr.utils.errors import UsageError


def build_biencoder(
    encoder_model_type: str,
    pretrained_model_cfg: str | None,
    *,
    pretrained_file: str | None = None,
    dropout: float = 0.1,
    projection_dim: int = 0,
    fix_ctx_encoder: bool = False,
    load_weights: bool = True,
    allow_pickle: bool = False,
) -> BiEncoder:
    """Two independent towers initialised from the same pretrained model.

    Args:
        encoder_model_type: `hf_bert`, `hf_roberta` or `fairseq_roberta`.
        pretrained_model_cfg: Hugging Face model folder.
        pretrained_file: fairseq model folder (fairseq_roberta only).
        dropout: DPR's `--dropout`.
        projection_dim: DPR's `--projection_dim`.
        fix_ctx_encoder: Freeze the passage tower.
        load_weights: Load pretrained weights (False when a checkpoint overwrites them).
        allow_pickle: Allow a fairseq `model.pt` that needs full unpickling (trusted files).
    """
    if encoder_model_type == "fairseq_roberta":
        if not pretrained_file:
            raise UsageError("--pretrained_file (the fairseq model folder) is required for "
                             "fairseq_roberta")
        folder = load_fairseq_folder(pretrained_file, allow_pickle=allow_pickle)
        towers = [build_fairseq_encoder(folder, dropout=dropout, projection_dim=projection_dim,
                                        load_weights=load_weights) for _ in range(2)]
        return BiEncoder(towers[0], towers[1], fix_ctx_encoder=fix_ctx_encoder)
    if not pretrained_model_cfg:
        raise UsageError(f"--pretrained_model_cfg is required for {encoder_model_type}")
    towers = [
        build_hf_encoder(encoder_model_type, pretrained_model_cfg, dropout=dropout,
                         projection_dim=projection_dim, load_weights=load_weights)
        for _ in range(2)
    ]
    return BiEncoder(towers[0], towers[1], fix_ctx_encoder=fix_ctx_encoder)


def build_trained_biencoder(params: Mapping[str, Any], model_dict: Mapping[str, torch.Tensor], *,
                            source: str, allow_pickle: bool = False) -> BiEncoder:
    """A bi-encoder carrying a checkpoint's weights, in eval mode, for inference and export.

    Args:
        params: Resolved encoder parameters (`encoder_model_type`, `pretrained_model_cfg`,
            `pretrained_file`, `projection_dim`).
        model_dict: The checkpoint's DPR-layout weights.
        source: Checkpoint name for error messages.
        allow_pickle: Allow a fairseq `model.pt` that needs full unpickling.

    Raises:
        CheckpointError: If the weights do not fit the model the parameters describe.
    """
    biencoder = build_biencoder(
        params["encoder_model_type"], params["pretrained_model_cfg"],
        pretrained_file=params.get("pretrained_file"), dropout=0.0,
        projection_dim=params.get("projection_dim") or 0, load_weights=False,
        allow_pickle=allow_pickle)
    load_model_state(biencoder, model_dict, source=source)
    return biencoder.eval()
