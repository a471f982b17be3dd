"""sentence-transformers configuration for an exported encoder folder.

Written by hand in the long-standing format (modules.json with `sentence_transformers.models.*`
types, `sentence_bert_config.json`, `1_Pooling/config.json`, `2_Dense/`), which
sentence-transformers 2.x to 5.x all read, so that writing it needs no sentence-transformers.
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import save_file
from torch import nn


def _write_json(path: Path, value: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")


def write_sentence_transformers_config(folder: Path, *, hidden_size: int, max_seq_length: int,
                                       do_lower_case: bool,
                                       projection: nn.Linear | None = None) -> None:
    """Makes `folder` (a transformers model folder) loadable with `SentenceTransformer`.

    Modules: the transformer, CLS-token pooling (DPR's first-token representation), and, when
    the model projects, a `Dense` layer with identity activation. No normalisation: DPR scores
    are raw dot products.

    Args:
        folder: Folder already holding config, weights and tokenizer.
        hidden_size: Transformer hidden size.
        max_seq_length: DPR's `--sequence_length`.
        do_lower_case: Whether sentence-transformers must lower-case input (DPR's flag).
        projection: The tower's `encode_proj`, if any.
    """
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling",
         "type": "sentence_transformers.models.Pooling"},
    ]
    _write_json(folder / "sentence_bert_config.json",
                {"max_seq_length": max_seq_length, "do_lower_case": do_lower_case})
    _write_json(folder / "1_Pooling" / "config.json", {
        "word_embedding_dimension": hidden_size, "pooling_mode_cls_token": True,
        "pooling_mode_mean_tokens": False, "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False, "pooling_mode_weightedmean_tokens": False,
        "pooling_mode_lasttoken": False, "include_prompt": True})
    if projection is not None:
        modules.append({"idx": 2, "name": "2", "path": "2_Dense",
                        "type": "sentence_transformers.models.Dense"})
        _write_json(folder / "2_Dense" / "config.json", {
            "in_features": projection.in_features, "out_features": projection.out_features,
            "bias": projection.bias is not None,
            "activation_function": "torch.nn.modules.linear.Identity"})
        tensors = {"linear.weight": projection.weight.detach().contiguous().clone()}
        if projection.bias is not None:
            tensors["linear.bias"] = projection.bias.detach().contiguous().clone()
        save_file(tensors, str(folder / "2_Dense" / "model.safetensors"))
    _write_json(folder / "modules.json", modules)
    _write_json(folder / "config_sentence_transformers.json", {
        "prompts": {}, "default_prompt_name": None, "similarity_fn_name": "dot"})
