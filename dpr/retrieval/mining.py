"""Hard-negative mining with a trained dense model (DPR's second, "adv-hn" round): the whole
selection, from a corpus with its vectors and the records to the mined records
(:func:`mine`); ``data_prep.mine_negatives`` is its command line and file I/O.

Pure selection logic first: given one question's ranking of corpus rows (best first), the rows
that are its gold passages and a test for "contains an answer", :func:`select_negatives`
returns the rows kept as hard negatives, with RocketQA-style false-negative filtering and the
options of sentence-transformers' ``mine_hard_negatives`` (skip the top ranks, absolute or
relative margin to the positive's score). :func:`mix_existing` appends some of a record's
previous (BM25) hard negatives, which pass the same answer filter and exclusion as mined ones.
:class:`ArticleExclusion` keeps the articles of another split (``--exclude_articles_of``) out,
keyed as data_prep keys them. The corpus searched, encoded over the processes of a job, is
:mod:`dpr.retrieval.mining_corpus`'s.

A candidate at rank ``r`` (0-based) is judged in this order, the first failing test naming
why it is dropped: ``r < skip_top`` (skipped), a gold passage, a passage containing an answer,
then the margins (only when the question has a positive score). Scanning stops once
``num_negatives`` candidates are kept, so the drop counts cover the ranks scanned.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dpr.data.answers import has_answer, prepare_answers
from dpr.data.records import Passage
from dpr.data.squad import passage_article_key
from dpr.retrieval.mining_corpus import MiningCorpus
from dpr.utils.errors import UsageError

logger = logging.getLogger(__name__)

SCORE_DECIMALS = 4


@dataclass(frozen=True)
class MiningOptions:
    """What :func:`select_negatives` keeps.

    Attributes:
        num_negatives: Mined negatives kept per question (``--num_negatives``).
        skip_top: Ranks ignored at the top of every ranking (``--skip_top``).
        margin: Keep only scores <= positive score - margin (``--margin``); None: off.
        relative_margin: Keep only scores <= positive score * (1 - relative_margin)
            (``--relative_margin``); None: off.
        mix_existing: Existing hard negatives of the record appended (``--mix_bm25``).
    """

    num_negatives: int = 30
    skip_top: int = 0
    margin: float | None = None
    relative_margin: float | None = None
    mix_existing: int = 0

    def __post_init__(self) -> None:
        for flag, value in (("--num_negatives", self.num_negatives),
                            ("--skip_top", self.skip_top), ("--mix_bm25", self.mix_existing)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise UsageError(f"{flag} must be an integer >= 0, got {value!r}")
        if self.margin is not None and not (math.isfinite(self.margin) and self.margin >= 0):
            raise UsageError(f"--margin must be a finite number >= 0, got {self.margin!r}")
        if self.relative_margin is not None and not 0 <= self.relative_margin < 1:
            raise UsageError(f"--relative_margin must be in [0, 1), got "
                             f"{self.relative_margin!r}")


def score_ceiling(positive_score: float | None, options: MiningOptions) -> float | None:
    """Highest score a negative may have given the margins (None: no limit).

    Both margins may be set; the stricter (lower) ceiling wins. Without a positive score
    there is no ceiling.
    """
    if positive_score is None:
        return None
    ceilings = []
    if options.margin is not None:
        ceilings.append(positive_score - options.margin)
    if options.relative_margin is not None:
        ceilings.append(positive_score * (1 - options.relative_margin))
    return min(ceilings) if ceilings else None


@dataclass
class MiningStats:
    """Counts over every mined question (logged as the run's summary)."""

    questions: int = 0
    without_positive: int = 0
    mined: int = 0
    mixed: int = 0
    short: int = 0
    skipped_top: int = 0
    dropped_gold: int = 0
    dropped_answer: int = 0
    dropped_margin: int = 0
    existing_dropped_answer: int = 0
    existing_dropped_excluded: int = 0
    kept_per_question: list[int] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The counts and the mean numbers kept, as a plain dict."""
        count = max(self.questions, 1)
        return {"questions": self.questions, "without_positive": self.without_positive,
                "mean_mined": round(self.mined / count, 2),
                "mean_mixed": round(self.mixed / count, 2),
                "short_of_num_negatives": self.short, "skipped_top": self.skipped_top,
                "dropped_gold": self.dropped_gold, "dropped_answer": self.dropped_answer,
                "dropped_margin": self.dropped_margin,
                "existing_dropped_answer": self.existing_dropped_answer,
                "existing_dropped_excluded": self.existing_dropped_excluded}


def select_negatives(rows: Sequence[int], scores: Sequence[float], *, gold: Collection[int],
                     contains_answer: Callable[[int], bool], positive_score: float | None,
                     options: MiningOptions, stats: MiningStats | None = None
                     ) -> list[tuple[int, float]]:
    """The hard negatives of one question among its ranked candidates.

    Args:
        rows: Corpus rows, best first.
        scores: Their scores (same length).
        gold: Rows that are the question's positives (by passage id or identical text).
        contains_answer: Whether a row's passage contains one of the question's answers.
        positive_score: The question's score with its first positive; None disables margins.
        options: Counts and margins.
        stats: Updated in place when given.

    Returns:
        ``(row, score)`` of the kept negatives in ranking order, at most
        ``options.num_negatives``.
    """
    if len(rows) != len(scores):
        raise ValueError(f"{len(rows)} rows but {len(scores)} scores")
    stats = stats if stats is not None else MiningStats()
    ceiling = score_ceiling(positive_score, options)
    kept: list[tuple[int, float]] = []
    for rank, (row, score) in enumerate(zip(rows, scores)):
        if len(kept) >= options.num_negatives:
            break
        if rank < options.skip_top:
            stats.skipped_top += 1
        elif row in gold:
            stats.dropped_gold += 1
        elif contains_answer(row):
            stats.dropped_answer += 1
        elif ceiling is not None and score > ceiling:
            stats.dropped_margin += 1
        else:
            kept.append((row, float(score)))
    stats.questions += 1
    stats.mined += len(kept)
    stats.short += len(kept) < options.num_negatives
    stats.without_positive += positive_score is None
    return kept


def ctx_keys(ctx: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Identity keys of a passage dict: its passage id (when present) and its stripped text."""
    keys = [("text", str(ctx.get("text", "")).strip())]
    if ctx.get("passage_id") not in (None, ""):
        keys.append(("id", str(ctx["passage_id"])))
    return keys


def mix_existing(mined: Sequence[Mapping[str, Any]], existing: Sequence[Mapping[str, Any]], *,
                 count: int, exclude: Collection[tuple[str, str]] = (),
                 keep: Callable[[Mapping[str, Any]], bool] | None = None
                 ) -> list[dict[str, Any]]:
    """The first ``count`` existing hard negatives that duplicate nothing before them.

    A passage is a duplicate when its id or stripped text equals that of a mined negative, of
    an existing one already taken, or a key in ``exclude`` (e.g. the positives).

    Args:
        keep: Whether an existing passage may be a negative at all (e.g. it contains no
            answer and is not of an excluded article); None: all may.

    Returns:
        Copies of the chosen existing passages, in their original order.
    """
    seen = set(exclude)
    for ctx in mined:
        seen.update(ctx_keys(ctx))
    chosen: list[dict[str, Any]] = []
    for ctx in existing:
        if len(chosen) >= count:
            break
        keys = ctx_keys(ctx)
        if any(key in seen for key in keys) or (keep is not None and not keep(ctx)):
            continue
        seen.update(keys)
        chosen.append(dict(ctx))
    return chosen


@dataclass(frozen=True)
class ArticleExclusion:
    """The passages of articles kept out of mining (``--exclude_articles_of``).

    Articles are keyed as data_prep keys them for its split
    (:func:`dpr.data.squad.passage_article_key`): a titled article by its case-folded title, an
    untitled one by its position, read back from data_prep's passage ids, so that untitled
    articles (FAQ exports) are excluded too. Every excluded passage is also excluded by its id
    and text, which covers untitled passages whose ids data_prep did not write.

    Attributes:
        articles: Article keys.
        passages: `ctx_keys` of the passages themselves.
    """

    articles: frozenset[str] = frozenset()
    passages: frozenset[tuple[str, str]] = frozenset()

    @classmethod
    def of(cls, ctxs: Iterable[Mapping[str, Any]]) -> ArticleExclusion:
        """The exclusion of the articles of `ctxs` (passage dicts of the other split)."""
        articles: set[str] = set()
        passages: set[tuple[str, str]] = set()
        for ctx in ctxs:
            key = passage_article_key(ctx.get("title"), ctx.get("passage_id"))
            if key is not None:
                articles.add(key)
            passages.update(ctx_keys(ctx))
        return cls(frozenset(articles), frozenset(passages))

    def excludes(self, ctx: Mapping[str, Any]) -> bool:
        """Whether a passage dict (title, text, passage_id) is of an excluded article."""
        key = passage_article_key(ctx.get("title"), ctx.get("passage_id"))
        return (key is not None and key in self.articles) or \
            any(k in self.passages for k in ctx_keys(ctx))


def existing_filter(answers: Sequence[str], *, match: str,
                    exclusion: ArticleExclusion | None,
                    stats: MiningStats) -> Callable[[Mapping[str, Any]], bool]:
    """The `keep` test of :func:`mix_existing`: the mined negatives' answer filter
    (``has_answer`` with `match`) and exclusion, drops counted in `stats`."""
    def keep(ctx: Mapping[str, Any]) -> bool:
        if has_answer(answers, str(ctx.get("text", "")), match=match):
            stats.existing_dropped_answer += 1
            return False
        if exclusion is not None and exclusion.excludes(ctx):
            stats.existing_dropped_excluded += 1
            return False
        return True

    return keep


def _ranked(ids: Sequence[str], scores: np.ndarray, corpus: MiningCorpus) -> tuple[list[int], list]:
    """Rows and scores of one search result, ties broken by corpus order."""
    pairs = sorted(((corpus.row_of_id[i], float(s)) for i, s in zip(ids, scores)),
                   key=lambda pair: (-pair[1], pair[0]))
    return [row for row, _ in pairs], [score for _, score in pairs]


def _passage_dict(passage: Passage, score: float) -> dict[str, Any]:
    return {"title": passage.title, "text": passage.text, "passage_id": passage.passage_id,
            "score": round(score, SCORE_DECIMALS)}


def mine(records: Sequence[dict[str, Any]], corpus: MiningCorpus, model: Any, *,
         options: MiningOptions, n_retrieved: int, match: str, quiet: bool,
         exclusion: ArticleExclusion | None = None
         ) -> tuple[list[dict[str, Any]], MiningStats]:
    """Mines every record: searches the corpus with each question, keeps its negatives
    (:func:`select_negatives`) and mixes in its existing ones (:func:`mix_existing`).

    Args:
        records: DPR training records (raw dicts, every field kept in the output).
        corpus: The passages mined from, with the model's vectors.
        model: The encoder (``encode_questions``, ``encode_passages``).
        options: Counts and margins.
        n_retrieved: Passages retrieved per question.
        match: Answer matching (``string`` or ``regex``).
        quiet: No progress bar.
        exclusion: The articles mixed-in existing negatives must not come from (the corpus
            is already without them).

    Returns:
        The output records (``hard_negative_ctxs`` replaced) and the counts.
    """
    from dpr.retrieval.index import DenseIndex

    q_vectors = model.encode_questions([r["question"] for r in records])  # [Q × D]
    with_pos = [i for i, r in enumerate(records) if r.get("positive_ctxs")]
    pos_vectors = corpus.vectors_for([records[i]["positive_ctxs"][0] for i in with_pos], model)
    positive_scores: list[float | None] = [None] * len(records)
    for i, vector in zip(with_pos, pos_vectors):
        positive_scores[i] = float(q_vectors[i] @ vector)
    index = DenseIndex(corpus.vectors.shape[1])
    index.add([p.passage_id for p in corpus.passages], corpus.vectors, quiet=quiet)
    hits, hit_scores = index.search(q_vectors, n_retrieved)
    _check_positives_in_corpus(records, corpus)
    stats = MiningStats()
    mined_all, mixed_all = [], []
    for i, record in enumerate(records):
        positives = record.get("positive_ctxs") or []
        answers = prepare_answers(record.get("answers") or [], match)
        rows, scores = _ranked(hits[i], hit_scores[i], corpus)
        kept = select_negatives(
            rows, scores, gold=corpus.gold_rows(positives),
            contains_answer=lambda row, answers=answers: corpus.contains(row, answers, match),
            positive_score=positive_scores[i], options=options, stats=stats)
        mined = [_passage_dict(corpus.passages[row], score) for row, score in kept]
        exclude = {key for ctx in positives for key in ctx_keys(ctx)}
        keep = existing_filter(record.get("answers") or [], match=match, exclusion=exclusion,
                               stats=stats)
        mixed = mix_existing(mined, record.get("hard_negative_ctxs") or [],
                             count=options.mix_existing, exclude=exclude, keep=keep)
        stats.mixed += len(mixed)
        mined_all.append(mined)
        mixed_all.append(mixed)
    _score_mixed(mixed_all, q_vectors, corpus, model)
    out = [{**record, "hard_negative_ctxs": mined + mixed}
           for record, mined, mixed in zip(records, mined_all, mixed_all)]
    return out, stats


def _check_positives_in_corpus(records: Sequence[Mapping[str, Any]], corpus: MiningCorpus) -> None:
    """Logs how many positives are corpus passages; warns when none is (wrong file?)."""
    positives = [ctx for r in records for ctx in r.get("positive_ctxs") or []]
    found = sum(bool(corpus.gold_rows([ctx])) for ctx in positives)
    logger.info("%d of %d positive passages found in the corpus (by passage_id or text)",
                found, len(positives))
    if positives and not found:
        logger.warning("No positive passage of the records is in the passage file: gold "
                       "passages cannot be recognised by id or text (another corpus?); only "
                       "the answer filter guards against false negatives")


def _score_mixed(mixed_all: Sequence[list[dict[str, Any]]], q_vectors: np.ndarray,
                 corpus: MiningCorpus, model: Any) -> None:
    """Gives each kept existing negative the model's score (replacing e.g. its BM25 score)."""
    flat = [(i, ctx) for i, mixed in enumerate(mixed_all) for ctx in mixed]
    if not flat:
        return
    vectors = corpus.vectors_for([ctx for _, ctx in flat], model)
    for (i, ctx), vector in zip(flat, vectors):
        ctx["score"] = round(float(q_vectors[i] @ vector), SCORE_DECIMALS)
