"""Answer matching (dpr.data.answers): DPR's has_answer semantics, hand-made cases, and the
prepared form checked against a reference written as DPR's token sub-sequence test."""

from __future__ import annotations

import unicodedata

import pytest
import regex

from dpr.data.answers import contains_answer, has_answer, prepare_answers, prepare_text

_DPR_TOKEN = regex.compile(r"([\p{L}\p{N}\p{M}]+)|([^\p{Z}\p{C}])",
                           flags=regex.IGNORECASE | regex.UNICODE | regex.MULTILINE)


def dpr_tokens(text: str) -> list[str]:
    """DPR's SimpleTokenizer on NFD text, uncased: the reference tokenisation."""
    return [m.group().lower() for m in _DPR_TOKEN.finditer(unicodedata.normalize("NFD", text))]


def dpr_has_answer(answers: list[str], text: str) -> bool:
    """DPR's string-mode has_answer: an answer's tokens occur contiguously in the text's."""
    tokens = dpr_tokens(text)
    for answer in map(dpr_tokens, answers):
        if answer and any(tokens[i:i + len(answer)] == answer
                          for i in range(len(tokens) - len(answer) + 1)):
            return True
    return False


def nfd(text: str) -> str:
    return unicodedata.normalize("NFD", text)


def test_prepare_text_splits_punctuation_and_drops_whitespace() -> None:
    # Given a French sentence with an apostrophe, a comma and a non-breaking space
    text = "L'été,\u00a0à Paris !"
    # When it is prepared
    prepared = prepare_text(text)
    # Then words are lowercased, punctuation marks are single tokens and spaces are gone
    assert prepared.split() == [nfd(t) for t in ["l", "'", "été", ",", "à", "paris", "!"]]
    assert prepare_text("Élysée 2024") == nfd(" élysée 2024 ")  # the number is its own token


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
    assert prepare_answers(["", "  ", "Rome"]) == [" rome "]


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


def test_has_answer_agrees_with_dpr_token_subsequence_matching() -> None:
    # Given a text and answers that differ by accents, case, punctuation and word order
    text = "L’Hôtel-Dieu de Lyon, fondé au XIIe siècle."
    cases = [["Hôtel-Dieu"], ["hotel-dieu"], ["xiie siècle"], ["Lyon ,"], ["Lyon fondé"]]
    # When comparing has_answer with DPR's token sub-sequence test
    # Then they agree (accented vs unaccented differ: no accent stripping)
    for answers in cases:
        assert has_answer(answers, text) == dpr_has_answer(answers, text), answers
    assert has_answer(["Hôtel-Dieu"], text) and not has_answer(["hotel-dieu"], text)


@pytest.mark.parametrize("text", [
    "En 1900, Lyon comptait 1000 habitants.",
    "Le président réside au palais de l'Élysée, rue du Faubourg-Saint-Honoré ; 1848.",
    "ΟΔΟΣ'Α Σ. ΣΑ όσος", "İstanbul ﬁnal Straße ǅemal", "naïve\u0301 x\u200bz\tœuvre",
])
def test_prepare_text_is_the_joined_form_of_dpr_tokens(text: str) -> None:
    # Given DPR's own tokens of the text, joined as contains_answer compares them
    expected = f" {' '.join(dpr_tokens(text))} "
    # Then the prepared passage is the same string (lower-casing joined equals each token's)
    assert prepare_text(text) == expected


FRENCH_TEXT = ("Le président de la République réside au palais de l'Élysée, rue du "
               "Faubourg-Saint-Honoré, depuis 1848 ; l'hôtel d'Évreux fut construit en 1720.")


@pytest.mark.parametrize("answers, expected", [
    (["palais de l'Élysée"], True),
    (["PALAIS DE L'ÉLYSÉE"], True),
    ([unicodedata.normalize("NFD", "l'Élysée")], True),   # decomposed accents
    (["l'Elysee"], False),                                # accents are not optional
    (["Faubourg-Saint-Honoré"], True),
    (["Saint"], True),                                     # hyphen splits tokens
    (["Élys"], False),                                     # no partial token
    (["1848 ;"], True),
    (["1848."], False),                                    # punctuation must match
    (["", "hôtel d'Évreux"], True),
    (["l'hôtel d'Évreux fut construit en 1720."], True),
])
def test_prepared_form_agrees_with_has_answer_on_french(answers: list[str],
                                                        expected: bool) -> None:
    assert has_answer(answers, FRENCH_TEXT) is expected
    assert dpr_has_answer(answers, FRENCH_TEXT) is expected
    prepared = prepare_answers(answers)
    assert contains_answer(prepared, prepare_text(FRENCH_TEXT)) is expected
    assert not contains_answer(prepared, prepare_text("autre chose"))


def test_prepared_form_regex_mode() -> None:
    texts = [prepare_text(t, "regex") for t in (FRENCH_TEXT, "en 1720", "rien")]
    hits = [contains_answer(prepare_answers([r"\b17\d\d\b"], "regex"), t, "regex") for t in texts]
    assert hits == [True, True, False]
    assert not any(contains_answer(prepare_answers(["[invalide"], "regex"), t, "regex")
                   for t in texts)
