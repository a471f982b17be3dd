"""The input recipe: text preparation, tokenization and batched encoding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from dpr.data import recipe
from dpr.data.recipe import (
    encode_in_batches,
    pair_items,
    passage_items,
    prepare_passage,
    prepare_question,
    question_items,
)
from dpr.data.tensorizer import Tensorizer, build_tokenizer
from dpr.recipe import Recipe
from dpr.utils.errors import UsageError


def test_prepare_question_strips_one_mark_then_spaces_and_lowercases() -> None:
    lower, cased = Recipe(do_lower_case=True), Recipe()
    assert prepare_question("  Où est l'ÉCOLE ?", lower) == "où est l'école"
    assert prepare_question("Qui??", cased) == "Qui?"
    # the mark is removed before the spaces, as in training: a '?' followed by a space stays
    assert prepare_question("Qui ? ", cased) == "Qui ?"


def test_prepare_passage_keeps_title_and_pairs_only_with_a_title() -> None:
    lower = Recipe(do_lower_case=True)
    assert prepare_passage(("Île-de-France", "  Paris. "), lower) == ("île-de-france", "paris.")
    assert passage_items([("Titre", " a "), ("", " b ")], Recipe()) == [("Titre", "a"), "b"]
    assert question_items(["Quoi ?"], lower) == ["quoi"]


def test_prefixes_go_before_the_question_and_before_the_title_or_untitled_text() -> None:
    # Given a recipe with E5's prefixes and lower-casing
    recipe = Recipe(do_lower_case=True, query_prefix="query: ", passage_prefix="passage: ")
    # Then the prefix goes in front ('?' rule first), the title's or the untitled text's
    assert question_items(["Où est la LOIRE ?"], recipe) == ["query: où est la loire"]
    assert passage_items([("Loire", " Un FLEUVE. "), ("", "Sans titre")], recipe) == \
        [("passage: loire", "un fleuve."), "passage: sans titre"]
    # And a capitalised prefix is lower-cased with its text, as a lower-casing
    # sentence-transformers tokenizer does with a prompt (so that exports agree)
    capital = Recipe(do_lower_case=True, query_prefix="Question : ", passage_prefix="Passage : ")
    assert question_items(["Où ?"], capital) == ["question : où"]
    assert passage_items([("Loire", "X"), ("", "Y")], capital) == [("passage : loire", "x"),
                                                                   "passage : y"]
    # And without lower-casing the prefix stays as written
    assert question_items(["Où ?"], Recipe(query_prefix="Question : ")) == ["Question : Où"]


def test_pair_items_keep_the_question_mark_and_join_title_and_text_without_prefix() -> None:
    # Given a recipe with prefixes (a reranker never uses them) and lower-casing
    recipe = Recipe(do_lower_case=True, query_prefix="query: ", passage_prefix="passage: ")
    # Then the question is only stripped and the passage is one string "title text"
    assert pair_items([(" Où est la LOIRE ? ", ("Loire", " Un FLEUVE. ")),
                       ("Quoi ?", ("", " Sans titre "))], recipe) == \
        [("où est la loire ?", "loire un fleuve."), ("quoi ?", "sans titre")]
    assert pair_items([("Qui ?", ("Titre", "Texte"))], Recipe()) == [("Qui ?", "Titre Texte")]


def test_joined_passages_are_one_string_prefix_title_space_text() -> None:
    # Given E5's pretraining format: one string, the prefix before the title
    recipe = Recipe(do_lower_case=True, passage_prefix="passage: ", passage_format="joined")
    # Then a titled passage is 'prefix title text', an untitled one 'prefix text'
    assert passage_items([("Loire", " Un FLEUVE. "), ("", " Sans titre ")], recipe) == \
        ["passage: loire un fleuve.", "passage: sans titre"]
    assert prepare_passage(("Titre", " a "), Recipe(passage_format="joined")) == "Titre a"
    # And questions are as in the pair format; an unknown format names the flag
    assert question_items(["Où ?"], recipe) == question_items(["Où ?"], Recipe(do_lower_case=True))
    with pytest.raises(UsageError, match="--passage_format must be one of pair, joined"):
        Recipe(passage_format="concatenated")


@pytest.mark.parametrize("fixture", ["tiny_camembert", "tiny_bert"])
@pytest.mark.parametrize("use_fast", [True, False])
def test_tokenize_of_mixed_texts_and_pairs_equals_each_item_tokenized_alone(
        request: pytest.FixtureRequest, fixture: str, use_fast: bool) -> None:
    # Given a batch mixing texts and (title, text) pairs, some truncated
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(request.getfixturevalue(fixture),
                                              use_fast=use_fast)
    long = "La Loire est le plus long fleuve de France, il traverse Orléans et Tours. " * 3
    items = [("Loire", long), "Où coule la Loire", ("", ""), long, ("Un titre assez long", "x")]
    # When tokenizing it in one call
    ids = recipe.tokenize(tokenizer, items, max_length=16)
    # Then each item has the ids of its own call: the text alone, or the pair (an empty text
    # too) truncated longest first
    for item, got in zip(items, ids):
        texts = ([item],) if isinstance(item, str) else ([item[0]], [item[1]])
        want = tokenizer(*texts, truncation="longest_first", max_length=16)["input_ids"][0]
        assert got == want
    assert recipe.tokenize(tokenizer, [], max_length=16) == []


@pytest.fixture(scope="module")
def tensorizer(tiny_camembert: Path) -> Tensorizer:
    return Tensorizer(build_tokenizer("hf_roberta", str(tiny_camembert)), max_length=32,
                      pad_to_max=False)


def _fake_encoder(calls: list[int]):
    """Vectors that identify the input: [number of real tokens, sum of ids]; records widths."""
    def encode(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        calls.append(ids.shape[1])
        return torch.stack([mask.sum(1).float(), (ids * mask).sum(1).float()], dim=1)
    return encode


def test_encode_in_batches_sorted_gives_the_input_order_with_less_padding(
        tensorizer: Tensorizer) -> None:
    # Given texts of very different lengths, long and short alternating
    texts = [("un texte assez long sur la Loire et ses châteaux " * 3) if i % 2 else "court"
             for i in range(10)]
    items = passage_items([("", t) for t in texts], tensorizer.recipe)
    plain_widths, sorted_widths = [], []
    # When encoding them in batches of 2, in order and sorted by length
    plain = encode_in_batches(_fake_encoder(plain_widths), tensorizer, items, dim=2,
                              batch_size=2, sort_by_length=False)
    by_length = encode_in_batches(_fake_encoder(sorted_widths), tensorizer, items, dim=2,
                                  batch_size=2)
    # Then row i is item i's vector either way, and sorting pads less
    ids = tensorizer.encode_items(items)
    expected = np.array([[len(s), sum(s)] for s in ids], dtype=np.float32)
    np.testing.assert_array_equal(plain, expected)
    np.testing.assert_array_equal(by_length, expected)
    assert plain.dtype == np.float32 and len(plain_widths) == len(sorted_widths) == 5
    assert sum(sorted_widths) < sum(plain_widths)


@pytest.mark.parametrize("prefetch", [True, False])
def test_encode_in_batches_windows_prefetched_or_not_give_the_same_rows(
        tensorizer: Tensorizer, monkeypatch: pytest.MonkeyPatch, prefetch: bool) -> None:
    # Given more items than one sorting window (windows of 3 batches of 2 here)
    monkeypatch.setattr(recipe, "SORT_WINDOW_BATCHES", 3)
    texts = [("mot " * (i % 7 + 1)).strip() for i in range(23)]
    items = passage_items([("", t) for t in texts], tensorizer.recipe)
    widths: list[int] = []
    # When encoding them with and without tokenizing the next window in a thread
    out = encode_in_batches(_fake_encoder(widths), tensorizer, items, dim=2, batch_size=2,
                            prefetch=prefetch)
    # Then every row is its own item's, and batches never mix two windows
    ids = tensorizer.encode_items(items)
    np.testing.assert_array_equal(out, np.array([[len(s), sum(s)] for s in ids],
                                                dtype=np.float32))
    assert len(widths) == 4 * 3  # 23 items: windows of 6, 6, 6, 5 -> 3 batches each


def test_encode_in_batches_autocast_runs_the_encoder_in_that_dtype(
        tensorizer: Tensorizer) -> None:
    seen: list[torch.dtype] = []
    weight = torch.ones(1, 2)

    def encode(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        vectors = mask.float().sum(1, keepdim=True) @ weight  # a matmul: autocast applies
        seen.append(vectors.dtype)
        return vectors

    items = passage_items([("", "un"), ("", "deux mots")], tensorizer.recipe)
    out = encode_in_batches(encode, tensorizer, items, dim=2, batch_size=1,
                            amp_dtype=torch.bfloat16)
    assert seen == [torch.bfloat16, torch.bfloat16] and out.dtype == np.float32
    encode_in_batches(encode, tensorizer, items, dim=2, batch_size=2)
    assert seen[-1] == torch.float32


def test_encode_in_batches_empty_input_has_the_vector_size(tensorizer: Tensorizer) -> None:
    out = encode_in_batches(_fake_encoder([]), tensorizer, [], dim=7, batch_size=4)
    assert out.shape == (0, 7) and out.dtype == np.float32
