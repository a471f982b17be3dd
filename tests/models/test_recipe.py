"""The encoder recipe: pooling, cosine with temperature, shared encoder, folder defaults
(sentence-transformers folders read and written through sentence-transformers)."""

from __future__ import annotations

import logging
import math
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from dpr.models.checkpoint import CheckpointError, load_model_state, to_dpr_layout
from dpr.models.encoder import pool_mean, represent
from dpr.models.factory import build_biencoder
from dpr.models.loss import nll_loss, scaled_scores
from dpr.models.st_folder import folder_recipe, save_sentence_transformer
from dpr.recipe import COSINE_TEMPERATURE, Recipe
from dpr.utils.errors import UsageError


def test_pool_mean_by_hand() -> None:
    # Given two sequences of 3 positions, the second with one padding position
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]],
                           [[2.0, 0.0], [4.0, 2.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    # Then the mean covers the real tokens only
    assert torch.equal(pool_mean(hidden, mask), torch.tensor([[3.0, 4.0], [3.0, 1.0]]))
    # And represent normalises after pooling when asked
    normed = represent(hidden, attention_mask=mask, pooling="mean", normalize=True)
    assert torch.allclose(normed[1], torch.tensor([3.0, 1.0]) / math.sqrt(10.0))


def test_mean_pooling_ignores_padding(tiny_e5: Path) -> None:
    # Given a mean-pooled tower and a batch padded to its longest sequence
    biencoder = build_biencoder("hf_bert", str(tiny_e5), dropout=0.0,
                                recipe=Recipe(pooling="mean")).eval()
    ids = torch.tensor([[0, 17, 25, 33, 2], [0, 40, 2, 1, 1]])
    mask = ids != 1
    # When the same batch gets 7 more padding columns
    wide = torch.cat([ids, torch.ones(2, 7, dtype=torch.long)], dim=1)
    with torch.no_grad():
        narrow_vectors = biencoder.encode_questions(ids, mask)
        wide_vectors = biencoder.encode_questions(wide, wide != 1)
        # Then the vectors are the same, and differ from first-token pooling
        first = build_biencoder("hf_bert", str(tiny_e5), dropout=0.0).eval()
        first.load_state_dict(biencoder.state_dict())
        cls_vectors = first.encode_questions(ids, mask)
    assert torch.allclose(narrow_vectors, wide_vectors, atol=1e-6)
    assert not torch.allclose(narrow_vectors, cls_vectors, atol=1e-3)


def test_cosine_loss_with_temperature_equals_hand_computation() -> None:
    # Given 2 questions and 3 passages, L2-normalised (what a cosine encoder returns)
    q = F.normalize(torch.tensor([[1.0, 0.0], [1.0, 1.0]]), dim=1)
    c = F.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]), dim=1)
    positive = torch.tensor([0, 2])
    temperature = 0.05
    # When the loss is computed on scores divided by the temperature
    loss = nll_loss(scaled_scores(q, c, temperature), positive)
    # Then it is the mean of -log softmax(cos / T) at each positive, computed by hand
    cos = [[1.0, 0.0, 1 / math.sqrt(2)], [1 / math.sqrt(2), 1 / math.sqrt(2), 1.0]]
    expected = 0.0
    for row, pos in zip(cos, (0, 2)):
        logits = [x / temperature for x in row]
        expected += -(logits[pos] - math.log(sum(math.exp(x) for x in logits)))
    assert loss.item() == pytest.approx(expected / 2, rel=1e-5)
    # And temperature 1 is DPR's raw dot product
    assert torch.equal(scaled_scores(q, c), q @ c.T)


def test_recipe_checks_name_the_flag() -> None:
    with pytest.raises(UsageError, match="--pooling must be one of cls, mean"):
        Recipe(pooling="max")
    with pytest.raises(UsageError, match="--temperature must be a positive"):
        Recipe(temperature=0.0)
    with pytest.raises(UsageError, match="--sequence_length must be >= 4"):
        Recipe.from_params({"sequence_length": 3})
    with pytest.raises(UsageError, match="--query_prefix must be a string"):
        Recipe(query_prefix=1)


def test_cosine_without_temperature_trains_at_sentence_transformers_default() -> None:
    # Given cosine recipes with and without a temperature, and DPR's
    assert Recipe(similarity="cosine").score_temperature == COSINE_TEMPERATURE == 0.05
    assert Recipe(similarity="cosine", temperature=0.01).score_temperature == 0.01
    assert Recipe().score_temperature == 1.0


def test_recipe_stores_only_what_differs_from_dprs() -> None:
    assert Recipe().stored() == {}
    e5 = Recipe.from_params({"pooling": "mean", "similarity": "cosine", "temperature": 0.01,
                    "query_prefix": "query: ", "passage_prefix": "passage: ",
                    "shared_encoder": True})
    assert e5.stored() == {"pooling": "mean", "similarity": "cosine", "temperature": 0.01,
                           "query_prefix": "query: ", "passage_prefix": "passage: ",
                           "shared_encoder": True}
    assert e5.normalize and e5.score_temperature == 0.01
    assert Recipe.from_params({}).score_temperature == 1.0
    assert not Recipe.from_params({"pooling": None}).normalize


def test_folder_recipe_reads_sentence_transformers_files(tiny_e5: Path, tiny_bert: Path,
                                                         tmp_path: Path) -> None:
    assert folder_recipe(str(tiny_e5)) == {"pooling": "mean", "similarity": "cosine",
                                           "query_prefix": "query: ",
                                           "passage_prefix": "passage: "}
    assert folder_recipe(str(tiny_bert)) == {}  # no sentence-transformers files
    assert folder_recipe(None) == {}
    (tmp_path / "modules.json").write_text("not json")
    assert folder_recipe(str(tmp_path)) == {}


def test_shared_biencoder_holds_one_encoder_in_dprs_layout(tiny_e5: Path) -> None:
    # Given a shared-encoder bi-encoder
    shared = build_biencoder("hf_bert", str(tiny_e5),
                             recipe=Recipe(shared_encoder=True))
    two = build_biencoder("hf_bert", str(tiny_e5))
    # Then its parameters exist once, but its state keeps both DPR prefixes
    assert shared.shared and not two.shared
    n_shared = sum(p.numel() for p in shared.parameters())
    assert 2 * n_shared == sum(p.numel() for p in two.parameters())
    state = to_dpr_layout(shared.state_dict())
    assert set(state) == set(to_dpr_layout(two.state_dict()))
    # And it loads a checkpoint whose towers are equal, not one whose towers differ
    load_model_state(shared, state)
    with torch.no_grad():
        two.ctx_model.model.embeddings.word_embeddings.weight.add_(1.0)
    with pytest.raises(CheckpointError, match="question and passage towers differ"):
        load_model_state(shared, to_dpr_layout(two.state_dict()))
    with pytest.raises(UsageError, match="--fix_ctx_encoder cannot be used"):
        build_biencoder("hf_bert", str(tiny_e5), fix_ctx_encoder=True,
                        recipe=Recipe(shared_encoder=True))


def test_hub_copy_of_e5_without_prompts_gets_its_prefixes_and_tokenizer(
        tiny_e5: Path, tmp_path: Path) -> None:
    # Given a copy shaped like the hub's intfloat/multilingual-e5-small: mean pooling and
    # Normalize, no prompts, its tokenizer class named in config.json only
    import json

    from dpr.data.tensorizer import build_tokenizer

    folder = tmp_path / "multilingual-e5-small"
    save_sentence_transformer(tiny_e5, folder, Recipe(pooling="mean", similarity="cosine"))
    tok_config = json.loads((folder / "tokenizer_config.json").read_text())
    tok_config.pop("tokenizer_class", None)
    (folder / "tokenizer_config.json").write_text(json.dumps(tok_config))
    config = json.loads((folder / "config.json").read_text())
    config.update(tokenizer_class="XLMRobertaTokenizer", _name_or_path="intfloat/x")
    (folder / "config.json").write_text(json.dumps(config))
    # Then the recipe is E5's, prefixes included, and the tokenizer XLM-R's
    assert folder_recipe(str(folder)) == {"pooling": "mean", "similarity": "cosine",
                                          "query_prefix": "query: ",
                                          "passage_prefix": "passage: "}
    assert type(build_tokenizer("hf_bert", str(folder))).__name__ == "XLMRobertaTokenizerFast"
    # And another model without prompts gets none
    other = tmp_path / "paraphrase-minilm"
    shutil.copytree(folder, other)
    assert "query_prefix" not in folder_recipe(str(other))


def test_e5_copy_without_sentence_transformers_files_gets_dprs_recipe_and_a_warning(
        tiny_e5: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # Given a copy of an E5 model holding only the transformers files (config.json names it)
    folder = tmp_path / "e5-base-v2"
    shutil.copytree(tiny_e5, folder, ignore=shutil.ignore_patterns(
        "modules.json", "config_sentence_transformers.json", "sentence_bert_config.json",
        "1_Pooling", "2_Normalize"))
    # When its recipe is read
    with caplog.at_level(logging.WARNING, logger="dpr.models.st_folder"):
        declared = folder_recipe(str(folder))
    # Then it declares nothing (DPR's recipe), and a warning says so and how to ask for E5's
    assert declared == {}
    assert "looks like an E5 model but has no sentence-transformers files" in caplog.text
    assert "--pooling mean --similarity cosine --query_prefix 'query: '" in caplog.text
