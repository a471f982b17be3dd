"""The layout of a folder written by `dpr2hf` (docs/DPR2HF.md, "Output layout"; a reranker's:
"A reranker"), shared by the exporter and the tools that load it."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from dpr.models.checkpoint import RERANKER_KEY
from dpr.models.encoder import Encoder, quiet_from_pretrained
from dpr.recipe import Recipe

PROJECTION_FILE = "encode_proj.safetensors"
# Tower side (see `checkpoint.SIDE_NAMES`) -> folder.
TOWER_FOLDERS = {"question": "question_encoder", "ctx": "ctx_encoder"}
QUESTION_FOLDER, CTX_FOLDER = TOWER_FOLDERS["question"], TOWER_FOLDERS["ctx"]


def export_entry(params: dict[str, Any]) -> dict[str, Any]:
    """The `dpr` entry of an exported tower's config.json for resolved encoder parameters:
    the encoder type, lower-casing, length and projection, and the recipe entries that differ
    from DPR's (`Recipe.stored`; absent = DPR's value)."""
    recipe = Recipe.from_params(params)
    return {"encoder_model_type": params["encoder_model_type"],
            "do_lower_case": recipe.do_lower_case, "sequence_length": recipe.sequence_length,
            "projection_dim": params["projection_dim"]} | recipe.stored()


def is_hf_export(path: str | os.PathLike[str]) -> bool:
    """True for a folder written by `dpr2hf` (both tower sub-folders present)."""
    folder = Path(path)
    return all((folder / name / "config.json").is_file() for name in TOWER_FOLDERS.values())


def is_reranker_export(path: str | os.PathLike[str]) -> bool:
    """True for a reranker's `CrossEncoder` folder written by `dpr2hf` (its config.json's
    `dpr` entry has `"reranker": true`)."""
    config = Path(path) / "config.json"
    return config.is_file() and exported_params(path).get(RERANKER_KEY) is True


def exported_params(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """The `dpr` entry of a tower folder's config.json (empty when absent)."""
    config = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    return dict(config.get("dpr") or {})


def save_projection(projection: nn.Linear, folder: str | os.PathLike[str]) -> None:
    """Writes a tower's `encode_proj` as `encode_proj.safetensors` (weight, bias)."""
    save_file({"weight": projection.weight.detach().contiguous().clone(),
               "bias": projection.bias.detach().contiguous().clone()},
              str(Path(folder) / PROJECTION_FILE))


def load_projection(folder: str | os.PathLike[str]) -> nn.Linear | None:
    """The projection of an exported tower, or None when it has none."""
    path = Path(folder) / PROJECTION_FILE
    if not path.is_file():
        return None
    tensors = load_file(str(path))
    out_size, in_size = tensors["weight"].shape
    projection = nn.Linear(in_size, out_size)
    projection.load_state_dict(tensors)
    return projection


def load_auto_model(folder: str | os.PathLike[str]) -> nn.Module:
    """`AutoModel.from_pretrained(folder)` in eval mode, without the warning about the unused
    (randomly initialised) pooler of RoBERTa-type exports."""
    from transformers import AutoModel

    return quiet_from_pretrained(AutoModel, folder)[0].eval()


def load_exported_encoder(folder: str | os.PathLike[str],
                          device: torch.device | str = "cpu") -> Encoder:
    """An exported tower as an `Encoder` (same forward as the trained tower, with the pooling
    and normalisation of its `dpr` entry), in eval mode."""
    recipe = Recipe.from_params(exported_params(folder))
    encoder = Encoder(load_auto_model(folder), pooling=recipe.pooling, normalize=recipe.normalize)
    encoder.encode_proj = load_projection(folder)
    return encoder.to(device).eval()
