"""Reading and validating SQuAD v1/v2-format files, for data_prep and `dpr.evaluate --squad`.
What is accepted, skipped (with a warning and a counter) or refused is docs/DATA_PREP.md's
step 1; the whole input is validated before anything is written.
"""

from __future__ import annotations

import json
import logging
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dpr.data.records import DataFormatError
from dpr.utils.io import open_text

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Answer:
    """A verified answer span: ``context[start:start + len(text)] == text``, no outer spaces."""

    text: str
    start: int

    @property
    def end(self) -> int:
        """Exclusive end offset of the answer in the paragraph context."""
        return self.start + len(self.text)


@dataclass
class Question:
    """An answerable question with at least one verified answer."""

    qid: str
    question: str
    answers: list[Answer]
    location: str


@dataclass
class Paragraph:
    """A paragraph of an article with its answerable questions."""

    key: str
    article_key: str
    title: str
    context: str
    questions: list[Question]
    article_fields: dict[str, Any] = field(default_factory=dict)
    """The article's fields other than ``title`` and ``paragraphs`` (e.g. PIAF's
    ``categorie``), shared by all paragraphs of the article."""


@dataclass
class SquadFile:
    """A validated input file."""

    path: Path
    source: str
    paragraphs: list[Paragraph]
    stats: Counter[str] = field(default_factory=Counter)


def _require(obj: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    """Returns ``obj[key]`` after checking presence and type, else raises DataFormatError."""
    if not isinstance(obj, dict):
        raise DataFormatError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    if key not in obj:
        raise DataFormatError(f"{where}: missing field {key!r}")
    value = obj[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        expected = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise DataFormatError(f"{where}: field {key!r} must be {expected}, got "
                              f"{type(value).__name__}")
    return value


def _read_json(path: Path) -> Any:
    """Parses ``path`` (optionally gzipped) and reports syntax errors with their position."""
    if not path.is_file():
        raise DataFormatError(f"{path}: file not found")
    try:
        with open_text(path) as handle:
            raw = handle.read()
    except (OSError, UnicodeDecodeError, EOFError) as err:
        raise DataFormatError(f"{path}: cannot read file: {err}") from err
    if not raw.strip():
        raise DataFormatError(f"{path}: file is empty")
    try:
        return json.loads(raw)
    except json.JSONDecodeError as err:
        raise DataFormatError(f"{path}: malformed JSON at line {err.lineno} column "
                              f"{err.colno}: {err.msg}") from err


def _is_word_char(char: str) -> bool:
    """Letter, digit or combining mark: the characters of a has_answer word token."""
    return char.isalnum() or unicodedata.category(char).startswith("M")


def _align_to_words(context: str, start: int, end: int) -> Answer:
    """Strips outer whitespace and extends a span cut inside a word to the whole word.

    Annotators sometimes select ``e groupe`` for ``le groupe``; such answers never match with
    DPR's token-level ``has_answer``, so the span is widened to word boundaries.
    """
    while start < end and context[start].isspace():
        start += 1
    while end > start and context[end - 1].isspace():
        end -= 1
    while start > 0 and _is_word_char(context[start - 1]) and _is_word_char(context[start]):
        start -= 1
    while end < len(context) and _is_word_char(context[end]) and _is_word_char(context[end - 1]):
        end += 1
    return Answer(text=context[start:end], start=start)


def _parse_answers(qa: dict[str, Any], context: str, *, where: str, strict: bool,
                   stats: Counter[str]) -> list[Answer]:
    """Validates the answers of one question and keeps those whose offsets match.

    An answer without ``answer_start`` (or a null one) is located at the first occurrence of
    its text in the context (counted as ``answers_located_by_text``).
    """
    answers = _require(qa, "answers", list, where)
    kept: list[Answer] = []
    for a_idx, raw in enumerate(answers):
        a_where = f"{where} answers[{a_idx}]"
        text = _require(raw, "text", str, a_where)
        start = _optional(raw, "answer_start", int, a_where)
        if start is None and text.strip() and text in context:
            start = context.index(text)
            stats["answers_located_by_text"] += 1
        found = context[start : start + len(text)] if start is not None and start >= 0 else ""
        if not text.strip() or found != text:
            message = (f"{a_where}: answer_start {start} does not match the context (answer "
                       f"{text!r}, context has {found!r})" if start is not None else
                       f"{a_where}: no answer_start and the answer {text!r} is not in the context")
            if strict:
                raise DataFormatError(message)
            logger.warning("%s; answer skipped", message)
            stats["answers_offset_mismatch"] += 1
            continue
        answer = _align_to_words(context, start, start + len(text))
        if answer.text != text.strip():
            stats["answers_expanded_to_word_boundary"] += 1
            logger.debug("%s: answer %r expanded to %r", a_where, text, answer.text)
        if answer not in kept:
            kept.append(answer)
    return kept


def _optional(obj: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    """``obj[key]`` checked as `_require` does, or None when absent, null or blank."""
    if isinstance(obj, dict) and obj.get(key) is None:
        return None
    value = _require(obj, key, kind, where)
    return None if isinstance(value, str) and not value.strip() else value


def _parse_question(qa: Any, context: str, *, where: str, default_id: str, strict: bool,
                    stats: Counter[str]) -> Question | None:
    """Parses one ``qas`` entry; returns None (and counts why) when it is skipped."""
    qid = _optional(qa, "id", (str, int), where)
    if qid is None:
        qid = default_id
        stats["questions_given_positional_id"] += 1
    where = f"{where} (id={qid})"
    question = _require(qa, "question", str, where)
    stats["questions"] += 1
    if qa.get("is_impossible") is True or qa.get("answers") == []:
        stats["dropped_unanswerable"] += 1
        return None
    if not question.strip():
        if strict:
            raise DataFormatError(f"{where}: empty question")
        logger.warning("%s: empty question; skipped", where)
        stats["dropped_empty_question"] += 1
        return None
    answers = _parse_answers(qa, context, where=where, strict=strict, stats=stats)
    if not answers:
        stats["dropped_no_valid_answer"] += 1
        return None
    return Question(qid=str(qid), question=" ".join(question.split()), answers=answers,
                    location=where)


def _parse_paragraph(raw: Any, *, where: str, key: str, article: tuple[str, str],
                     fields: dict[str, Any], strict: bool, stats: Counter[str]) -> Paragraph | None:
    """Parses one paragraph and its questions; None when its context is blank (no text).

    A paragraph without ``qas`` (missing, null or empty) is a corpus-only document.
    """
    context = _require(raw, "context", str, where)
    qas = _optional(raw, "qas", list, where) or []
    questions = []
    id_prefix = key.replace(":", "-")
    for q_idx, qa in enumerate(qas):
        parsed = _parse_question(qa, context, where=f"{where}.qas[{q_idx}]",
                                 default_id=f"{id_prefix}-{q_idx}", strict=strict, stats=stats)
        if parsed is not None:
            questions.append(parsed)
    stats["paragraphs"] += 1
    if not context.strip():
        stats["paragraphs_empty_context"] += 1
        return None
    stats["paragraphs_without_questions"] += int(not qas)
    return Paragraph(key=key, article_key=article[0], title=article[1], context=context,
                     questions=questions, article_fields=fields)


def article_key(title: str) -> str:
    """Key grouping articles for the train/dev split: same (case-folded) title, same group."""
    return " ".join(title.casefold().split())


def untitled_article_key(source: str, index: int) -> str:
    """Key of an untitled article: its position, ``#<source>:<article index>``."""
    return f"#{source}:{index}"


# Ids of the passages data_prep writes: <source>:<article>:<paragraph>:<n> (or :w<start>-<end>).
_PASSAGE_ID = re.compile(r"(?P<source>[^:]+):(?P<article>\d+):\d+:[^:]+")


def passage_article_key(title: str | None, passage_id: str | int | None) -> str | None:
    """The article key (as :func:`load_squad_file` gives it) of a passage data_prep wrote.

    A titled passage's key is its case-folded title; an untitled one's is its article's
    position, read back from its passage id. None for an untitled passage whose id data_prep
    did not write (its article cannot be known).
    """
    title = (title or "").strip()
    if title:
        return article_key(title)
    match = _PASSAGE_ID.fullmatch(str(passage_id)) if passage_id is not None else None
    return untitled_article_key(match["source"], int(match["article"])) if match else None


def load_squad_file(path: str | Path, *, source: str, strict: bool = False) -> SquadFile:
    """Reads and validates one SQuAD v1/v2-format file (``.gz`` accepted), with its counters.

    Args:
        source: Short stable label used as the prefix of paragraph and passage ids.
        strict: Raise on answer offset mismatches and empty questions instead of skipping.

    Raises:
        DataFormatError: On unreadable, malformed, empty or structurally invalid input; the
            message names the file and the record (e.g. ``data[3].paragraphs[1].qas[0]``).
    """
    path = Path(path)
    payload = _read_json(path)
    name = path.name
    data = _require(payload, "data", list, name)
    if not data:
        raise DataFormatError(f"{path}: 'data' is empty, no articles to convert")
    stats: Counter[str] = Counter()
    paragraphs: list[Paragraph] = []
    for a_idx, article in enumerate(data):
        where = f"{name}: data[{a_idx}]"
        title = (_optional(article, "title", str, where) or "").strip()
        if not title:
            stats["articles_without_title"] += 1
        a_key = article_key(title) if title else untitled_article_key(source, a_idx)
        raw_paragraphs = _require(article, "paragraphs", list, where)
        fields = {k: v for k, v in article.items() if k not in ("title", "paragraphs")}
        stats["articles"] += 1
        for p_idx, raw in enumerate(raw_paragraphs):
            paragraph = _parse_paragraph(
                raw, where=f"{where}.paragraphs[{p_idx}]", key=f"{source}:{a_idx}:{p_idx}",
                article=(a_key, title), fields=fields, strict=strict, stats=stats)
            paragraphs += [paragraph] if paragraph else []
    if stats["questions"] == 0:
        raise DataFormatError(f"{path}: no questions found in any paragraph")
    stats["answerable_kept"] = sum(len(p.questions) for p in paragraphs)
    return SquadFile(path=path, source=source, paragraphs=paragraphs, stats=stats)


def source_labels(paths: list[Path]) -> list[str]:
    """Stable, unique id prefixes for input files in command line order: the file stem,
    de-duplicated by position (``piaf-v1.0``; ``train``, ``train~2`` for repeated stems)."""
    seen: Counter[str] = Counter()
    labels = []
    for path in paths:
        stem = path.name.removesuffix(".gz").removesuffix(".json").replace(":", "_") or "input"
        seen[stem] += 1
        labels.append(stem if seen[stem] == 1 else f"{stem}~{seen[stem]}")
    return labels
