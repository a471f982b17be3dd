"""Builds a bi-encoder from encoder parameters (CLI flags or a checkpoint's `encoder_params`)."""

from __future__ import annotations

from dpr.models.biencoder import BiEncoder
from dpr.models.encoder import build_hf_encoder


def build_biencoder(
    encoder_model_type: str,
    pretrained_model_cfg: str | None,
    *,
    pretrained_file: str | None = None,
    dropout: float = 0.1,
    projection_dim: int = 0,
    fix_ctx_encoder: bool = False,
    load_weights: bool = True,
) -> BiEncoder:
    """Two independent towers initialised from the same pretrained model.

    Args:
        encoder_model_type: `hf_bert` or `hf_roberta`.
        pretrained_model_cfg: Hugging Face model folder.
        pretrained_file: fairseq model folder (fairseq_roberta only).
        dropout: DPR's `--dropout`.
        projection_dim: DPR's `--projection_dim`.
        fix_ctx_encoder: Freeze the passage tower.
        load_weights: Load pretrained weights (False when a checkpoint overwrites them).
    """
    if encoder_model_type == "fairseq_roberta":
        raise ValueError("--encoder_model_type fairseq_roberta is not available yet in this "
                         "version; convert the model to a Hugging Face folder and use hf_roberta")
    if not pretrained_model_cfg:
        raise ValueError(f"--pretrained_model_cfg is required for {encoder_model_type}")
    towers = [
        build_hf_encoder(encoder_model_type, pretrained_model_cfg, dropout=dropout,
                         projection_dim=projection_dim, load_weights=load_weights)
        for _ in range(2)
    ]
    return BiEncoder(towers[0], towers[1], fix_ctx_encoder=fix_ctx_encoder)
