"""Answer matching with DPR semantics: whether a passage contains an answer.

One API, in two steps so that a passage judged against many answers is prepared once:
:func:`prepare_answers` and :func:`prepare_text` put answers and a passage into a comparable
form, :func:`contains_answer` compares them; :func:`has_answer` does all three for one pair.
All functions are pure.

* ``match="string"`` (DPR's ``has_answer``): the text and every answer are NFD-normalised and
  split into tokens (maximal runs of letters/digits/marks, or any single character that is
  neither a separator nor a control character; whitespace dropped; lowercased, as DPR's
  ``SimpleTokenizer``); a hit is any contiguous token sub-sequence of the text equal to the
  token sequence of an answer. Answers without tokens never match. The prepared form joins
  the tokens with single spaces and pads them with one space on each side: tokens never hold
  whitespace, so a token sequence occurs contiguously in another exactly when its joined form
  is a substring of the other's.
* ``match="regex"``: every answer is an NFD-normalised regular expression compiled with
  ``IGNORECASE | UNICODE | MULTILINE`` and searched in the NFD-normalised text; an invalid
  pattern counts as no match.
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Iterable, Sequence

import regex

logger = logging.getLogger(__name__)

MATCH_MODES = ("string", "regex")
_REGEX_FLAGS = regex.IGNORECASE | regex.UNICODE | regex.MULTILINE
_TOKEN_RE = regex.compile(r"[\p{L}\p{N}\p{M}]+|[^\p{Z}\p{C}]", flags=_REGEX_FLAGS)


def _regex_search(pattern: str, text: str) -> bool:
    """Searches an answer pattern in ``text``; invalid patterns are no match."""
    try:
        compiled = regex.compile(pattern, flags=_REGEX_FLAGS)
    except (regex.error, TypeError, ValueError):
        logger.debug("Invalid answer pattern %r treated as no match", pattern)
        return False
    return compiled.search(text) is not None


def prepare_text(text: str, match: str = "string") -> str:
    """A passage text in the form :func:`contains_answer` takes (the costly half of matching,
    done once per passage). String mode lower-cases the joined tokens at once: no lower-casing
    rule looks across the spaces that separate them, so it equals lower-casing each."""
    text = unicodedata.normalize("NFD", text)
    if match == "regex":
        return text
    return f" {' '.join(_TOKEN_RE.findall(text))} ".lower()


def prepare_answers(answers: Iterable[str], match: str = "string") -> list[str]:
    """Answers in the form :func:`contains_answer` takes (joined tokens, or NFD patterns);
    string-mode answers without tokens are left out (they never match)."""
    prepared = [prepare_text(answer, match) for answer in answers]
    return prepared if match == "regex" else [a for a in prepared if a.strip()]


def contains_answer(prepared_answers: Sequence[str], prepared_text: str,
                    match: str = "string") -> bool:
    """Whether a prepared passage contains one of the prepared answers: a substring test of
    space-joined tokens in string mode (the token sub-sequence test), a pattern search in
    regex mode."""
    if match == "regex":
        return any(_regex_search(pattern, prepared_text) for pattern in prepared_answers)
    return any(answer in prepared_text for answer in prepared_answers)


def has_answer(answers: Iterable[str], text: str, match: str = "string") -> bool:
    """Whether ``text`` contains one of ``answers`` (strings, or patterns with
    ``match="regex"``) by DPR's rules (module docstring); ValueError for another ``match``."""
    if match not in MATCH_MODES:
        raise ValueError(f"match must be 'string' or 'regex', got {match!r}")
    return contains_answer(prepare_answers(answers, match), prepare_text(text, match), match)
