"""The model cards tell the truth: every Python snippet of every exported folder's card, run as
written, computes the model's own vectors, for every pooling x similarity x prefix x passage
format recipe."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import snippets, spread_weights

from dpr.inference import load_encoder
from dpr.models.checkpoint import (
    CheckpointState,
    encoder_params_of,
    save_checkpoint,
    to_dpr_layout,
)
from dpr.models.factory import build_biencoder
from dpr.recipe import Recipe
from dpr2hf.card import PASSAGE, QUESTION
from dpr2hf.convert import convert

PREFIXES = {"none": ("", ""), "e5": ("query: ", "passage: ")}


def _checkpoint(tmp_path: Path, folder: Path, recipe: Recipe, kind: str = "hf_bert") -> Path:
    """A random tiny bi-encoder (two towers, projecting to 8) trained by `recipe`, with large
    weights so that its vectors differ by more than rounding."""
    torch.manual_seed(0)
    model = spread_weights(build_biencoder(kind, str(folder), projection_dim=8, recipe=recipe))
    params = encoder_params_of({"encoder_model_type": kind,
                                "pretrained_model_cfg": str(folder), "pretrained_file": None,
                                "projection_dim": 8, **vars(recipe)})
    path = tmp_path / "dpr_biencoder.0"
    save_checkpoint(CheckpointState(model_dict=to_dpr_layout(model.state_dict()),
                                    encoder_params=params), path)
    return path


def _run_card_snippets(tmp_path: Path, base: Path, recipe: Recipe,
                       monkeypatch: pytest.MonkeyPatch, kind: str = "hf_bert") -> int:
    """Exports a checkpoint trained by `recipe`, runs every snippet of every card as written
    (from the export's folder) and checks its vectors against the model's; returns the number
    of folders."""
    ckpt = _checkpoint(tmp_path, base, recipe, kind)
    convert(ckpt, tmp_path / "hf", tolerance=1e-5)
    model = load_encoder(ckpt)
    want = {"question": model.encode_questions([QUESTION]),
            "ctx": model.encode_passages([PASSAGE])}
    folders = sorted(p.parent for p in (tmp_path / "hf").glob("*/README.md"))
    monkeypatch.chdir(tmp_path / "hf")
    for folder in folders:
        side = "question" if "question" in folder.name else "ctx"
        codes = snippets((folder / "README.md").read_text(encoding="utf-8"))
        assert len(codes) == (1 if folder.name.startswith("dpr_") else 2), folder.name
        for code in codes:
            namespace: dict = {}
            exec(compile(code, f"{folder.name}/README.md", "exec"), namespace)
            got = np.asarray(namespace["vectors"], dtype=np.float32)
            assert np.abs(got - want[side]).max() <= 1e-5, (folder.name, code)
    return len(folders)


@pytest.mark.parametrize("passage_format", ["pair", "joined"])
@pytest.mark.parametrize("prefix", sorted(PREFIXES))
@pytest.mark.parametrize("similarity", ["dot", "cosine"])
@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_card_snippets_reproduce_the_models_vectors(
        tmp_path: Path, tiny_cased_bert: Path, monkeypatch: pytest.MonkeyPatch, pooling: str,
        similarity: str, prefix: str, passage_format: str) -> None:
    # Given a checkpoint trained by this recipe, exported with dpr2hf
    query, passage = PREFIXES[prefix]
    recipe = Recipe(pooling=pooling, similarity=similarity, query_prefix=query,
                    passage_prefix=passage, passage_format=passage_format, sequence_length=32)
    # When every snippet of every card runs as written, Then it gives the model's vectors
    # (and DPR's recipe also has Hugging Face's DPR-class folders)
    folders = _run_card_snippets(tmp_path, tiny_cased_bert, recipe, monkeypatch)
    assert folders == (4 if (pooling, similarity) == ("cls", "dot") else 2)


@pytest.mark.parametrize("kind,fixture,folders", [("hf_roberta", "tiny_camembert", 2),
                                                   ("hf_bert", "tiny_cased_bert", 4)])
def test_lower_cased_model_with_a_capitalised_prefix_exports_and_its_cards_agree(
        tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch,
        kind: str, fixture: str, folders: int) -> None:
    # Given cased vocabularies (CamemBERT's SentencePiece: lower-cased by str.lower() only; a
    # cased BERT's: by its tokenizer too) trained with --do_lower_case and capitalised
    # prefixes: training, inference and sentence-transformers lower-case prefix and text alike
    recipe = Recipe(do_lower_case=True, query_prefix="Question : ",
                    passage_prefix="Passage : ", sequence_length=32)
    # Then the export passes its verification (at 1e-5) and every card snippet agrees
    base = request.getfixturevalue(fixture)
    assert _run_card_snippets(tmp_path, base, recipe, monkeypatch, kind) == folders


def test_card_says_the_recipe(tmp_path: Path, tiny_cased_bert: Path) -> None:
    # Given an E5-style model exported
    recipe = Recipe(pooling="mean", similarity="cosine", query_prefix="query: ",
                    passage_prefix="passage: ", sequence_length=32)
    convert(_checkpoint(tmp_path, tiny_cased_bert, recipe), tmp_path / "hf")
    card = (tmp_path / "hf" / "question_encoder" / "README.md").read_text(encoding="utf-8")
    # Then its card says mean pooling, normalisation, cosine and the prefix, not DPR's recipe
    assert "the mean of the last hidden states" in card and "L2-normalised" in card
    assert "score with the cosine" in card and "`query: ` before every question" in card
    assert "first token" not in card and "no normalisation" not in card
    assert "default prompt `query`" in card
