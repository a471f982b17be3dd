"""Unit tests for dpr.evaluation.metrics (hand-made cases)."""

from __future__ import annotations

import unicodedata

import pytest

from dpr.data.answers import SimpleTokenizer, has_answer, has_answer_tokens, match_tokens
from dpr.evaluation.metrics import mrr, top_k_accuracy


def test_tokenize_splits_punctuation_and_drops_whitespace() -> None:
    # Given a French sentence with an apostrophe, a comma and a non-breaking space
    text = "L'été,\u00a0à Paris !"
    # When it is tokenised
    tokens = SimpleTokenizer().tokenize(text)
    # Then words are lowercased, punctuation marks are single tokens and spaces are gone
    assert tokens == ["l", "'", "été", ",", "à", "paris", "!"]


def test_tokenize_cased_keeps_case() -> None:
    # Given a cased tokenizer
    tokenizer = SimpleTokenizer(uncased=False)
    # When a capitalised word is tokenised
    tokens = tokenizer.tokenize("Élysée 2024")
    # Then case is preserved and the number is its own token
    assert tokens == ["Élysée", "2024"]


def test_has_answer_composed_and_decomposed_accents_match() -> None:
    # Given an answer written with a composed "é" and a text with a decomposed one
    composed = "Québec"
    decomposed = unicodedata.normalize("NFD", "La ville de Québec est ancienne.")
    assert composed not in decomposed
    # When matching in string mode, in both directions
    # Then both match after NFD normalisation
    assert has_answer([composed], decomposed)
    assert has_answer([unicodedata.normalize("NFD", composed)], "à Québec.")


def test_has_answer_is_case_insensitive_and_token_aligned() -> None:
    # Given a text where "Paris" only appears inside a longer word or capitalised
    text = "Les Parisiens aiment PARIS."
    # When matching
    # Then a whole-token match succeeds regardless of case, a partial word does not
    assert has_answer(["paris"], text)
    assert not has_answer(["parisi"], text)
    assert not has_answer(["Paris aiment"], text)


def test_has_answer_punctuation_tokens_must_match() -> None:
    # Given answers differing only by punctuation and spacing
    text = "Il est né le 3 mai 1900 (à Lyon)."
    # When matching
    # Then spacing is irrelevant but punctuation tokens count
    assert has_answer(["3  mai\n1900"], text)
    assert has_answer(["(à Lyon)"], text)
    assert not has_answer(["3 mai, 1900"], text)


def test_has_answer_any_of_several_answers_and_empty_answer() -> None:
    # Given one non-matching, one empty and one matching answer
    text = "Le ministère emploie 100 000 personnes."
    # When matching
    # Then the matching one decides, and the empty answer alone never matches
    assert has_answer(["Rome", "", "100 000"], text)
    assert not has_answer(["", "  "], text)
    assert not has_answer([], text)


def test_has_answer_regex_mode_ignores_case_and_invalid_patterns() -> None:
    # Given a regex answer, an accented answer and an invalid pattern
    text = "La Révolution française débute en 1789."
    # When matching in regex mode
    # Then patterns are searched case-insensitively, invalid patterns are a miss
    assert has_answer([r"\b17\d\d\b"], text, match="regex")
    assert has_answer(["révolution"], text, match="regex")
    assert not has_answer(["(unclosed"], text, match="regex")
    assert has_answer(["(unclosed", "FRANÇAISE"], text, match="regex")


def test_has_answer_rejects_unknown_match_mode() -> None:
    # Given an unknown match mode
    # When calling has_answer
    # Then a ValueError is raised
    with pytest.raises(ValueError, match="match must be"):
        has_answer(["x"], "x", match="fuzzy")


def test_top_k_accuracy_counts_ranks_below_k() -> None:
    # Given first-hit ranks 0, 2, miss, 9
    ranks = [0, 2, None, 9]
    # When computing top-k accuracy
    result = top_k_accuracy(ranks, [1, 3, 10, 20])
    # Then each k counts ranks strictly below it
    assert result == {1: 0.25, 3: 0.5, 10: 0.75, 20: 0.75}
    assert top_k_accuracy([], [5]) == {5: 0.0}
    with pytest.raises(ValueError):
        top_k_accuracy([0], [0])


def test_mrr_averages_reciprocal_ranks_with_cutoff() -> None:
    # Given first-hit ranks 0, 1, miss, 3
    ranks = [0, 1, None, 3]
    # When computing MRR with and without cut-off
    # Then misses contribute 0 and the cut-off removes late hits
    assert mrr(ranks) == pytest.approx((1 + 0.5 + 0 + 0.25) / 4)
    assert mrr(ranks, cutoff=2) == pytest.approx((1 + 0.5) / 4)
    assert mrr([]) == 0.0


def test_has_answer_tokens_agrees_with_has_answer() -> None:
    # Given texts and answers tokenised once with match_tokens
    text = "L’Hôtel-Dieu de Lyon, fondé au XIIe siècle."
    cases = [["Hôtel-Dieu"], ["hotel-dieu"], ["xiie siècle"], ["Lyon ,"], ["Lyon fondé"]]
    # When comparing the pre-tokenised and the plain function
    # Then they give the same answers (accented vs unaccented differ: no accent stripping)
    for answers in cases:
        expected = has_answer(answers, text)
        assert has_answer_tokens([match_tokens(a) for a in answers], match_tokens(text)) == expected
    assert has_answer(["Hôtel-Dieu"], text) and not has_answer(["hotel-dieu"], text)
