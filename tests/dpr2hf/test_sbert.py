"""dpr2hf.sbert: the hand-written sentence-transformers configuration (DPR's defaults, and mean
pooling with normalisation and prompts as E5-style models need)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from sentence_transformers import SentenceTransformer
from transformers import AutoModel, AutoTokenizer

from dpr2hf.sbert import write_sentence_transformers_config

TEXTS = ["Où se trouve l'Élysée ?", "Le mont Blanc culmine à 4 805 mètres, en été comme en hiver."]


def _read(folder: Path, name: str) -> object:
    return json.loads((folder / name).read_text(encoding="utf-8"))


def test_sbert_defaults_write_dpr_cls_pooling_without_normalisation(tmp_path: Path) -> None:
    # When writing the configuration with the default options
    write_sentence_transformers_config(tmp_path, hidden_size=32, max_seq_length=64,
                                       do_lower_case=True)
    # Then it is DPR's: CLS pooling, no Normalize, dot product, no prompts
    assert [m["type"].rsplit(".", 1)[1] for m in _read(tmp_path, "modules.json")] == [
        "Transformer", "Pooling"]
    pooling = _read(tmp_path, "1_Pooling/config.json")
    assert pooling["pooling_mode_cls_token"] is True
    assert pooling["pooling_mode_mean_tokens"] is False
    assert _read(tmp_path, "config_sentence_transformers.json") == {
        "prompts": {}, "default_prompt_name": None, "similarity_fn_name": "dot"}
    assert _read(tmp_path, "sentence_bert_config.json") == {"max_seq_length": 64,
                                                            "do_lower_case": True}


def test_sbert_normalize_follows_dense(tmp_path: Path) -> None:
    # When writing a projecting, normalising configuration
    write_sentence_transformers_config(tmp_path, hidden_size=32, max_seq_length=64,
                                       do_lower_case=False, projection=torch.nn.Linear(32, 8),
                                       normalize=True)
    # Then Normalize comes after Dense and similarity is cosine
    modules = _read(tmp_path, "modules.json")
    assert [(m["idx"], m["path"]) for m in modules] == [(0, ""), (1, "1_Pooling"),
                                                        (2, "2_Dense"), (3, "3_Normalize")]
    assert modules[3]["type"] == "sentence_transformers.models.Normalize"
    assert _read(tmp_path, "config_sentence_transformers.json")["similarity_fn_name"] == "cosine"


def test_sbert_unknown_pooling_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="pooling"):
        write_sentence_transformers_config(tmp_path, hidden_size=32, max_seq_length=64,
                                           do_lower_case=False, pooling="max")


def test_sbert_mean_pooling_prompts_and_normalize_give_the_manual_recipe(
        tmp_path: Path, tiny_bert: Path) -> None:
    # Given a tiny BERT folder configured for mean pooling, normalisation and a query prompt
    folder = tmp_path / "model"
    shutil.copytree(tiny_bert, folder)
    write_sentence_transformers_config(folder, hidden_size=32, max_seq_length=128,
                                       do_lower_case=False, pooling="mean", normalize=True,
                                       prompts={"query": "query: ", "passage": "passage: "})
    # When encoding with sentence-transformers and the "query" prompt
    got = SentenceTransformer(str(folder), device="cpu").encode(
        TEXTS, prompt_name="query", convert_to_tensor=True)
    # Then the vectors are the mean over the mask of "query: " + text, L2-normalised
    tokenizer, model = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder)
    batch = tokenizer(["query: " + t for t in TEXTS], padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state  # [N × L × H]
    mask = batch["attention_mask"].unsqueeze(-1).float()
    want = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
    assert torch.allclose(got, want, atol=1e-5), (got - want).abs().max()
