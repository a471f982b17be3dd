"""From validated paragraphs to DPR examples: passages, positives, de-duplication, random
negatives."""

from __future__ import annotations

import logging
import random
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tqdm.auto import tqdm

from data_prep.passages import (
    PassageSpan,
    SentenceSplitter,
    Span,
    answer_window,
    clean_text,
    make_passages,
    sentence_units,
)
from dpr.data.answers import contains_answer, prepare_answers, prepare_text
from dpr.data.records import Passage
from dpr.data.squad import Paragraph, Question

logger = logging.getLogger(__name__)

SPLIT_BATCH = 128


@dataclass
class ParagraphPassages:
    """All passages plus, per paragraph key, its sentence units and passage indices."""

    passages: list[PassageSpan] = field(default_factory=list)
    units: dict[str, list[Span]] = field(default_factory=dict)
    members: dict[str, list[int]] = field(default_factory=dict)


@dataclass
class Example:
    """A question ready for output (negatives are added later)."""

    question: Question
    paragraph: Paragraph
    answers: list[str]
    positives: list[dict[str, str]]


def build_corpus(paragraphs: Sequence[Paragraph], splitter: SentenceSplitter, *, max_chars: int,
                 show_progress: bool) -> ParagraphPassages:
    """Splits every paragraph into sentence units and packs them into passages of at most
    ``max_chars`` characters, in paragraph order."""
    corpus = ParagraphPassages()
    with tqdm(total=len(paragraphs), desc="split passages", unit="par",
              disable=not show_progress) as bar:
        for offset in range(0, len(paragraphs), SPLIT_BATCH):
            batch = paragraphs[offset : offset + SPLIT_BATCH]
            for paragraph, sentences in zip(batch, splitter([p.context for p in batch])):
                units = sentence_units(paragraph.context, sentences, max_chars)
                new = make_passages(paragraph.context, units, paragraph_key=paragraph.key,
                                    title=paragraph.title, max_chars=max_chars)
                start = len(corpus.passages)
                corpus.passages.extend(new)
                corpus.units[paragraph.key] = units
                corpus.members[paragraph.key] = list(range(start, start + len(new)))
            bar.update(len(batch))
    return corpus


def positive_contexts(paragraph: Paragraph, question: Question, corpus: ParagraphPassages, *,
                      max_chars: int, counters: Counter[str]) -> list[dict[str, str]]:
    """Passages containing a whole answer span, or answer-centred windows when none does.

    Passages come first in paragraph order, then windows by start offset. A window has id
    ``<paragraph key>:w<start>-<end>`` and is not part of passages.tsv.
    """
    inside: set[int] = set()
    windows: set[Span] = set()
    for answer in question.answers:
        hits = [
            i for i in corpus.members[paragraph.key]
            if corpus.passages[i].start <= answer.start <= answer.end <= corpus.passages[i].end
        ]
        if hits:
            inside.update(hits)
        else:
            windows.add(answer_window(corpus.units[paragraph.key], (answer.start, answer.end),
                                      max_chars))
    counters["positives_in_passage"] += len(inside)
    counters["positives_answer_window"] += len(windows)
    return [*(context(corpus.passages[i]) for i in sorted(inside)),
            *(context(Passage(paragraph.title, clean_text(paragraph.context[s:e]),
                              f"{paragraph.key}:w{s}-{e}")) for s, e in sorted(windows))]


def context(passage: Passage, score: float | None = None) -> dict[str, Any]:
    """A passage as a DPR JSON context ``{"title", "text", "passage_id"}`` (+ ``score``,
    4 decimals)."""
    ctx = {"title": passage.title, "text": passage.text, "passage_id": passage.passage_id}
    return ctx if score is None else {**ctx, "score": round(score, 4)}


def normalise_question(text: str) -> str:
    """Key for duplicate detection: NFC, case-folded, single spaces, no trailing '?'."""
    text = " ".join(unicodedata.normalize("NFC", text).casefold().split())
    return text.rstrip("? ").strip()


def build_examples(paragraphs: Sequence[Paragraph], corpus: ParagraphPassages, *, max_chars: int,
                   counters: Counter[str]) -> list[Example]:
    """Builds one example per answerable question, dropping (and counting) duplicates: a
    question whose normalised text and paragraph context equal those of an earlier question
    (across all input files)."""
    seen: set[tuple[str, str]] = set()
    examples = []
    for paragraph in paragraphs:
        for question in paragraph.questions:
            key = (normalise_question(question.question), paragraph.context)
            if key in seen:
                counters["dropped_duplicate_question"] += 1
                logger.debug("%s: duplicate question dropped", question.location)
                continue
            seen.add(key)
            answers = list(dict.fromkeys(a.text for a in question.answers))
            positives = positive_contexts(paragraph, question, corpus, max_chars=max_chars,
                                          counters=counters)
            examples.append(Example(question, paragraph, answers, positives))
    return examples


def random_negatives(examples: Sequence[Example], candidates: dict[str, list[int]],
                     corpus: ParagraphPassages, *, num: int, seed: int) -> list[list[int]]:
    """Samples up to ``num`` answer-free passages per example from its split, other paragraphs.

    Args:
        candidates: Passage indices allowed for each example's split, keyed by the example's
            paragraph key (all paragraphs of a split share one list).

    Returns:
        Passage indices per example (no repeats).
    """
    rng = random.Random(f"{seed}-random-negatives")
    result = []
    for example in examples:
        pool = candidates[example.paragraph.key]
        answers = prepare_answers(example.answers)
        chosen: list[int] = []
        for _ in range(20 * num):
            if len(chosen) == num or not pool:
                break
            index = pool[rng.randrange(len(pool))]
            passage = corpus.passages[index]
            if index in chosen or passage.paragraph_key == example.paragraph.key:
                continue
            if not contains_answer(answers, prepare_text(passage.text)):
                chosen.append(index)
        result.append(chosen)
    return result
