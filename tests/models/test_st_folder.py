"""dpr.models.st_folder: a recipe written as a sentence-transformers folder through
sentence-transformers' own API, and read back from one (DPR's defaults, and mean pooling with
normalisation and prompts as E5-style models need)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from sentence_transformers import SentenceTransformer
from transformers import AutoModel, AutoTokenizer

from dpr.models.st_folder import folder_recipe, save_sentence_transformer
from dpr.recipe import Recipe
from dpr.utils.errors import UsageError

TEXTS = ["Où se trouve l'Élysée ?", "Le mont Blanc culmine à 4 805 mètres, en été comme en hiver."]


def _modules(model: SentenceTransformer) -> list[str]:
    return [type(m).__name__ for m in model]


def test_dprs_recipe_writes_cls_pooling_without_normalisation(tmp_path: Path,
                                                              tiny_bert: Path) -> None:
    # When writing DPR's recipe (with its length)
    save_sentence_transformer(tiny_bert, tmp_path / "st", Recipe(sequence_length=64))
    # Then sentence-transformers reads it as DPR's: CLS pooling, no Normalize, dot product,
    # no prompt, 64 tokens; and so does the project's reader
    model = SentenceTransformer(str(tmp_path / "st"), device="cpu")
    assert _modules(model) == ["Transformer", "Pooling"] and model[1].pooling_mode == "cls"
    assert model.similarity_fn_name == "dot" and model.default_prompt_name is None
    assert not any(model.prompts.values()) and model.max_seq_length == 64
    assert folder_recipe(tmp_path / "st") == {"pooling": "cls", "similarity": "dot"}


def test_normalize_follows_dense_and_makes_cosine(tmp_path: Path, tiny_bert: Path) -> None:
    # When writing a projecting, normalising recipe
    projection = torch.nn.Linear(32, 8)
    save_sentence_transformer(tiny_bert, tmp_path / "st", Recipe(similarity="cosine"),
                              projection=projection)
    # Then Normalize comes after Dense (holding the projection) and similarity is cosine
    model = SentenceTransformer(str(tmp_path / "st"), device="cpu")
    assert _modules(model) == ["Transformer", "Pooling", "Dense", "Normalize"]
    assert torch.equal(model[2].linear.weight, projection.weight)
    assert model.similarity_fn_name == "cosine"
    assert folder_recipe(tmp_path / "st")["similarity"] == "cosine"


def test_unknown_pooling_is_refused_naming_the_flag() -> None:
    with pytest.raises(UsageError, match="--pooling"):
        Recipe(pooling="max")


def test_mean_pooling_prompts_and_normalize_give_the_manual_recipe(
        tmp_path: Path, tiny_bert: Path) -> None:
    # Given a tiny BERT written for mean pooling, normalisation and prompts, "query" by default
    recipe = Recipe(pooling="mean", similarity="cosine", query_prefix="query: ",
                    passage_prefix="passage: ")
    save_sentence_transformer(tiny_bert, tmp_path / "st", recipe, default_prompt="query")
    model = SentenceTransformer(str(tmp_path / "st"), device="cpu")
    # When encoding with sentence-transformers, without naming a prompt
    got = model.encode(TEXTS, convert_to_tensor=True)
    # Then the vectors are the mean over the mask of "query: " + text, L2-normalised
    tokenizer, bert = AutoTokenizer.from_pretrained(tiny_bert), AutoModel.from_pretrained(tiny_bert)
    batch = tokenizer(["query: " + t for t in TEXTS], padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = bert(**batch).last_hidden_state  # [N × L × H]
    mask = batch["attention_mask"].unsqueeze(-1).float()
    want = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
    assert torch.allclose(got, want, atol=1e-5), (got - want).abs().max()
    # And the folder's recipe reads back as written
    assert folder_recipe(tmp_path / "st") == {"pooling": "mean", "similarity": "cosine",
                                              "query_prefix": "query: ",
                                              "passage_prefix": "passage: "}


def test_lower_casing_covers_the_prompt_and_the_text(tmp_path: Path,
                                                     tiny_cased_bert: Path) -> None:
    # Given a cased vocabulary written with do_lower_case and a capitalised default prompt
    recipe = Recipe(do_lower_case=True, query_prefix="Question : ")
    save_sentence_transformer(tiny_cased_bert, tmp_path / "st", recipe, default_prompt="query")
    model = SentenceTransformer(str(tmp_path / "st"), device="cpu")
    # Then encoding "Où est l'ÉCOLE" is encoding "question : où est l'école" without lowering
    plain = SentenceTransformer(str(tiny_cased_bert), device="cpu")
    plain[1].pooling_mode = "cls"
    assert torch.allclose(model.encode(["Où est l'ÉCOLE"], convert_to_tensor=True),
                          plain.encode(["question : où est l'école"], convert_to_tensor=True),
                          atol=1e-6)


def test_folder_recipe_reads_older_folders_without_loading_weights(tmp_path: Path,
                                                                   tiny_e5: Path) -> None:
    # Given an E5-shaped folder as older sentence-transformers wrote it (`models.*` module
    # paths, one boolean per pooling mode, no config_sentence_transformers.json), whose
    # weights are unreadable
    import json
    import shutil

    folder = tmp_path / "old"
    shutil.copytree(tiny_e5, folder)
    modules = json.loads((folder / "modules.json").read_text())
    for module in modules:
        module["type"] = "sentence_transformers.models." + module["type"].rsplit(".", 1)[-1]
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(
        {"word_embedding_dimension": 32, "pooling_mode_cls_token": False,
         "pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": False}))
    (folder / "config_sentence_transformers.json").unlink()
    (folder / "model.safetensors").write_bytes(b"not weights")
    # Then its recipe still reads: mean pooling and cosine (Normalize), no prompt
    assert folder_recipe(folder) == {"pooling": "mean", "similarity": "cosine"}
