"""The encoder recipe: pooling, cosine with temperature, shared encoder, folder defaults."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from dpr.models.checkpoint import CheckpointError, load_model_state, to_dpr_layout
from dpr.models.encoder import pool_mean, represent
from dpr.models.factory import build_biencoder
from dpr.models.loss import nll_loss, scaled_scores
from dpr.models.recipe import EncoderRecipe, check_recipe, folder_recipe, recipe_of
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
                                recipe=EncoderRecipe(pooling="mean")).eval()
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
        check_recipe({"pooling": "max"})
    with pytest.raises(UsageError, match="--temperature must be a positive"):
        check_recipe({"temperature": 0.0})
    with pytest.raises(UsageError, match="needs --temperature"):
        check_recipe({"similarity": "cosine"}, training=True)
    check_recipe({"similarity": "cosine"})  # applying a model needs no temperature


def test_recipe_stores_only_what_differs_from_dprs() -> None:
    assert EncoderRecipe().stored() == {}
    e5 = recipe_of({"pooling": "mean", "similarity": "cosine", "temperature": 0.01,
                    "query_prefix": "query: ", "passage_prefix": "passage: ",
                    "shared_encoder": True})
    assert e5.stored() == {"pooling": "mean", "similarity": "cosine", "temperature": 0.01,
                           "query_prefix": "query: ", "passage_prefix": "passage: ",
                           "shared_encoder": True}
    assert e5.normalize and e5.score_temperature == 0.01
    assert recipe_of({}).score_temperature == 1.0 and not recipe_of({}).normalize


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
                             recipe=EncoderRecipe(shared_encoder=True))
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
                        recipe=EncoderRecipe(shared_encoder=True))


def test_hub_copy_of_e5_without_prompts_gets_its_prefixes_and_tokenizer(
        tiny_e5: Path, tmp_path: Path) -> None:
    # Given a copy shaped like the hub's intfloat/multilingual-e5-small: mean pooling and
    # Normalize, no prompts, its tokenizer class named in config.json only
    import json
    import shutil

    from dpr.data.tensorizer import tokenizer_family
    from dpr.tiny import write_st_recipe

    folder = tmp_path / "multilingual-e5-small"
    shutil.copytree(tiny_e5, folder)
    write_st_recipe(folder, hidden=32, prompts={})
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
    assert tokenizer_family(str(folder), "bert") == "xlm-roberta"
    # And another model without prompts gets none
    other = tmp_path / "paraphrase-minilm"
    shutil.copytree(folder, other)
    assert "query_prefix" not in folder_recipe(str(other))
