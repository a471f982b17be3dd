"""Answer matching with DPR semantics: whether a passage contains an answer.

All functions are pure. ``has_answer`` decides whether a passage "contains" an answer the way
DPR's retrieval evaluation does:

* ``match="string"``: the text and every answer are NFD-normalised, tokenised by
  :class:`SimpleTokenizer` (maximal runs of letters/digits/marks, or any single character that
  is neither a separator nor a control character; whitespace dropped; lowercased) and a hit is
  any contiguous token sub-sequence of the text equal to the token sequence of an answer.
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

_ALPHA_NUM = r"[\p{L}\p{N}\p{M}]+"
_NON_WS = r"[^\p{Z}\p{C}]"
_TOKEN_RE = regex.compile(
    f"({_ALPHA_NUM})|({_NON_WS})", flags=regex.IGNORECASE | regex.UNICODE | regex.MULTILINE
)
_REGEX_FLAGS = regex.IGNORECASE | regex.UNICODE | regex.MULTILINE
# the same tokens as _TOKEN_RE, as whole matches (findall returns strings, no match objects)
_TOKEN_TEXT_RE = regex.compile(f"{_ALPHA_NUM}|{_NON_WS}", flags=_REGEX_FLAGS)


def normalize(text: str) -> str:
    """Returns the NFD (canonical decomposition) form of ``text``."""
    return unicodedata.normalize("NFD", text)


class SimpleTokenizer:
    """Regex tokenizer: words are maximal letter/digit/mark runs, punctuation is one token each.

    Whitespace, separators and control characters are dropped. Tokens are lowercased when
    ``uncased`` is true (the default, as used for answer matching).
    """

    def __init__(self, uncased: bool = True) -> None:
        """Creates the tokenizer.

        Args:
            uncased: Lowercase the returned tokens.
        """
        self.uncased = uncased

    def tokenize(self, text: str) -> list[str]:
        """Splits ``text`` into tokens.

        Args:
            text: Input text (not normalised by this method).

        Returns:
            The list of tokens, lowercased if ``uncased``.
        """
        tokens = [match.group() for match in _TOKEN_RE.finditer(text)]
        if self.uncased:
            return [token.lower() for token in tokens]
        return tokens


_TOKENIZER = SimpleTokenizer(uncased=True)


def _contains_sequence(haystack: Sequence[str], needle: Sequence[str]) -> bool:
    """Returns True when ``needle`` is a non-empty contiguous sub-sequence of ``haystack``."""
    size = len(needle)
    if size == 0 or size > len(haystack):
        return False
    first = needle[0]
    for i in range(len(haystack) - size + 1):
        if haystack[i] == first and list(haystack[i : i + size]) == list(needle):
            return True
    return False


def _regex_search(pattern: str, text: str) -> bool:
    """Searches an answer pattern in ``text``; invalid patterns are no match."""
    try:
        compiled = regex.compile(pattern, flags=_REGEX_FLAGS)
    except (regex.error, TypeError, ValueError):
        logger.debug("Invalid answer pattern %r treated as no match", pattern)
        return False
    return compiled.search(text) is not None


def match_tokens(text: str) -> list[str]:
    """NFD-normalises and tokenises ``text`` (uncased) as ``has_answer`` does in string mode.

    Useful to tokenise passages once when testing many answers against them.
    """
    return _TOKENIZER.tokenize(normalize(text))


def has_answer_tokens(answers_tokens: Iterable[Sequence[str]], text_tokens: Sequence[str]) -> bool:
    """String-mode ``has_answer`` on pre-tokenised input (see :func:`match_tokens`).

    Args:
        answers_tokens: Token sequence of each answer.
        text_tokens: Token sequence of the text.

    Returns:
        True if a non-empty answer sequence occurs contiguously in the text.
    """
    return any(_contains_sequence(text_tokens, tokens) for tokens in answers_tokens)


def has_answer(answers: Iterable[str], text: str, match: str = "string") -> bool:
    """Checks whether ``text`` contains any of ``answers`` with DPR's matching rules.

    Args:
        answers: Answer strings (``string`` mode) or regular expressions (``regex`` mode).
        text: Passage text.
        match: ``"string"`` for token sub-sequence matching, ``"regex"`` for pattern search.

    Returns:
        True if at least one answer matches. Answers with no tokens never match.

    Raises:
        ValueError: If ``match`` is not ``"string"`` or ``"regex"``.
    """
    if match == "string":
        return has_answer_tokens((match_tokens(answer) for answer in answers), match_tokens(text))
    if match == "regex":
        text = normalize(text)
        return any(_regex_search(normalize(answer), text) for answer in answers)
    raise ValueError(f"match must be 'string' or 'regex', got {match!r}")


def _joined(tokens: Sequence[str]) -> str:
    """Tokens joined with single spaces and padded with one space on each side.

    Match tokens never contain whitespace, so a token sequence occurs contiguously in another
    exactly when its joined form is a substring of the other's joined form.
    """
    return f" {' '.join(tokens)} "


def prepare_answers(answers: Iterable[str], match: str = "string") -> list[str]:
    """Answers in the form :func:`contains_answer` takes (joined tokens, or NFD patterns)."""
    if match == "regex":
        return [normalize(answer) for answer in answers]
    return [_joined(tokens) for tokens in (match_tokens(a) for a in answers) if tokens]


def prepare_text(text: str, match: str = "string") -> str:
    """A passage text in the form :func:`contains_answer` takes (the costly half of matching:
    normalising and tokenising; done once per passage).

    String mode equals ``_joined(match_tokens(text))``, computed with one ``findall`` and one
    ``lower()`` of the joined tokens (tokens are separated by spaces, which no lower-casing
    rule looks across, so lower-casing them joined equals lower-casing each).
    """
    if match == "regex":
        return normalize(text)
    return f" {' '.join(_TOKEN_TEXT_RE.findall(normalize(text)))} ".lower()


def contains_answer(prepared_answers: Sequence[str], prepared_text: str,
                    match: str = "string") -> bool:
    """``has_answer`` on prepared answers and text (:func:`prepare_answers`,
    :func:`prepare_text`): a substring test of space-joined tokens in string mode, equivalent to
    the token sub-sequence test."""
    if match == "regex":
        return any(_regex_search(pattern, prepared_text) for pattern in prepared_answers)
    return any(answer in prepared_text for answer in prepared_answers)


class AnswerMatcher:
    """``has_answer`` against a fixed corpus, preparing each passage once.

    Args:
        texts: Passage texts in corpus order (matched without their titles, as in DPR).
        match: ``"string"`` or ``"regex"``.
    """

    def __init__(self, texts: Sequence[str], match: str = "string") -> None:
        if match not in ("string", "regex"):
            raise ValueError(f"match must be 'string' or 'regex', got {match!r}")
        self.texts = texts
        self.match = match
        self._prepared: dict[int, str] = {}

    def prepare(self, answers: Iterable[str]) -> list[str]:
        """Answers in the form :meth:`contains` takes."""
        return prepare_answers(answers, self.match)

    def _passage(self, index: int) -> str:
        prepared = self._prepared.get(index)
        if prepared is None:
            prepared = self._prepared[index] = prepare_text(self.texts[index], self.match)
        return prepared

    def contains(self, prepared: Sequence[str], index: int) -> bool:
        """True when passage ``index`` contains one of the prepared answers."""
        return contains_answer(prepared, self._passage(index), self.match)

    def matching(self, prepared: Sequence[str]) -> list[int]:
        """Indices of the corpus passages containing one of the prepared answers (a scan of
        the whole corpus: for tests and small corpora; the evaluation judges retrieved lists)."""
        return [i for i in range(len(self.texts)) if self.contains(prepared, i)]

    def count(self, prepared: Sequence[str]) -> int:
        """Number of corpus passages containing one of the prepared answers."""
        return len(self.matching(prepared))
