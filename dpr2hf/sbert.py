"""sentence-transformers configuration for an exported encoder folder.

Written by hand in the long-standing format (modules.json with `sentence_transformers.models.*`
types, `sentence_bert_config.json`, `1_Pooling/config.json`, `2_Dense/`, `Normalize`), which
sentence-transformers 2.x to 5.x all read, so that writing it needs no sentence-transformers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from safetensors.torch import save_file
from torch import nn

POOLING_MODES = ("cls", "mean")
_MODULE_TYPE = "sentence_transformers.models.{}"


def _write_json(path: Path, value: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")


def _module(idx: int, path: str, kind: str) -> dict[str, object]:
    return {"idx": idx, "name": str(idx), "path": path, "type": _MODULE_TYPE.format(kind)}


def _write_dense(folder: Path, projection: nn.Linear) -> None:
    """A `Dense` module with identity activation holding `projection`'s weights."""
    _write_json(folder / "config.json", {
        "in_features": projection.in_features, "out_features": projection.out_features,
        "bias": projection.bias is not None,
        "activation_function": "torch.nn.modules.linear.Identity"})
    tensors = {"linear.weight": projection.weight.detach().contiguous().clone()}
    if projection.bias is not None:
        tensors["linear.bias"] = projection.bias.detach().contiguous().clone()
    save_file(tensors, str(folder / "model.safetensors"))


def write_sentence_transformers_config(folder: Path, *, hidden_size: int, max_seq_length: int,
                                       do_lower_case: bool,
                                       projection: nn.Linear | None = None,
                                       pooling: str = "cls", normalize: bool = False,
                                       prompts: Mapping[str, str] | None = None) -> None:
    """Makes `folder` (a transformers model folder) loadable with `SentenceTransformer`.

    Modules: the transformer, pooling, a `Dense` layer with identity activation when the model
    projects, then `Normalize` when asked. The defaults are DPR's: CLS-token pooling (the
    first-token representation), no normalisation (scores are raw dot products), no prompts.

    Args:
        folder: Folder already holding config, weights and tokenizer.
        hidden_size: Transformer hidden size.
        max_seq_length: Longest input in tokens (DPR's `--sequence_length`).
        do_lower_case: Whether sentence-transformers must lower-case input (DPR's flag).
        projection: The tower's `encode_proj`, if any.
        pooling: "cls" (first token) or "mean" (average over non-padding tokens, prompt
            included).
        normalize: Add a `Normalize` module (unit-length vectors, cosine similarity).
        prompts: Named text prefixes, e.g. {"query": "query: "}, for `encode(prompt_name=...)`.

    Raises:
        ValueError: Unknown `pooling`.
    """
    if pooling not in POOLING_MODES:
        raise ValueError(f"pooling must be one of {POOLING_MODES}, got {pooling!r}")
    modules = [_module(0, "", "Transformer"), _module(1, "1_Pooling", "Pooling")]
    _write_json(folder / "sentence_bert_config.json",
                {"max_seq_length": max_seq_length, "do_lower_case": do_lower_case})
    _write_json(folder / "1_Pooling" / "config.json", {
        "word_embedding_dimension": hidden_size, "pooling_mode_cls_token": pooling == "cls",
        "pooling_mode_mean_tokens": pooling == "mean", "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False, "pooling_mode_weightedmean_tokens": False,
        "pooling_mode_lasttoken": False, "include_prompt": True})
    if projection is not None:
        modules.append(_module(len(modules), f"{len(modules)}_Dense", "Dense"))
        _write_dense(folder / modules[-1]["path"], projection)
    if normalize:
        # Normalize has no files; its folder name is the convention of published models.
        modules.append(_module(len(modules), f"{len(modules)}_Normalize", "Normalize"))
    _write_json(folder / "modules.json", modules)
    _write_json(folder / "config_sentence_transformers.json", {
        "prompts": dict(prompts or {}), "default_prompt_name": None,
        "similarity_fn_name": "cosine" if normalize else "dot"})
