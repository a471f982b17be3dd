"""Hard-negative mining with a trained dense model (DPR's second, "adv-hn" round), from the
encoded corpus and the records to the mined records; ``data_prep.mine_negatives`` is its
command line, file I/O and encoding. The rules (order of the tests, margins, mixing) are in
docs/DATA_PREP.md, "Mining negatives with a trained model".
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dpr.data.answers import contains_answer, has_answer, prepare_answers, prepare_text
from dpr.data.records import Passage
from dpr.data.squad import passage_article_key
from dpr.utils.errors import UsageError

logger = logging.getLogger(__name__)

SCORE_DECIMALS = 4


@dataclass(frozen=True)
class MiningOptions:
    """What :func:`select_negatives` keeps: the flags of the same names (``mix_existing``:
    ``--mix_bm25``); ``margin`` and ``relative_margin`` None: off."""

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

    def summary(self, num_negatives: int) -> str:
        """The counts as one line of the run's log."""
        count = max(self.questions, 1)
        return (f"{self.questions} questions: {self.mined / count:.2f} mined + "
                f"{self.mixed / count:.2f} existing negatives kept on average; {self.short} with "
                f"fewer than {num_negatives} mined; dropped {self.dropped_gold} gold, "
                f"{self.dropped_answer} containing an answer, {self.dropped_margin} by margin, "
                f"{self.skipped_top} skipped top ranks; {self.without_positive} without positive "
                f"(no margin); existing negatives dropped: {self.existing_dropped_answer} "
                f"containing an answer, {self.existing_dropped_excluded} of excluded articles")


def select_negatives(rows: Sequence[int], scores: Sequence[float], *, gold: Collection[int],
                     contains_answer: Callable[[int], bool], positive_score: float | None,
                     options: MiningOptions, stats: MiningStats | None = None
                     ) -> list[tuple[int, float]]:
    """The hard negatives of one question among its ranked candidates.

    Args:
        rows: Corpus rows, best first (``scores``: theirs).
        gold: Rows that are the question's positives (by passage id or identical text).
        contains_answer: Whether a row's passage contains one of the question's answers.
        positive_score: The question's score with its first positive; None disables margins.
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
    """Copies of the first ``count`` existing hard negatives, in their order, that duplicate
    nothing before them (by id or stripped text: a mined negative, an existing one already
    taken, or a key in ``exclude``, e.g. the positives) and pass ``keep`` (None: all do).
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
    """The passages of articles kept out of mining (``--exclude_articles_of``): their
    ``articles``, keyed as data_prep keys them (:func:`dpr.data.squad.passage_article_key`,
    untitled ones by position, read back from data_prep's passage ids), and the ``ctx_keys`` of
    the ``passages`` themselves, which covers untitled passages whose ids data_prep did not
    write."""

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


class EncodedCorpus:
    """The passages mined from, with the model's vectors [N × D] and lookups by id and by
    stripped text."""

    def __init__(self, passages: Sequence[Passage], vectors: np.ndarray) -> None:
        self.passages, self.vectors = passages, vectors
        self.row_of_id = {p.passage_id: row for row, p in enumerate(passages)}
        self.rows_of_text: dict[str, list[int]] = {}
        for row, passage in enumerate(passages):
            self.rows_of_text.setdefault(passage.text.strip(), []).append(row)
        self._prepared: dict[tuple[int, str], str] = {}

    def contains(self, row: int, answers: Sequence[str], match: str) -> bool:
        """Whether passage `row` contains one of the prepared answers
        (:func:`~dpr.data.answers.prepare_answers`); each passage is prepared once, when first
        judged."""
        if (row, match) not in self._prepared:
            self._prepared[row, match] = prepare_text(self.passages[row].text, match)
        return contains_answer(answers, self._prepared[row, match], match)

    def gold_rows(self, positives: Sequence[Mapping[str, Any]]) -> set[int]:
        """Rows that are one of the positives, by passage id or identical (stripped) text."""
        rows: set[int] = set()
        for ctx in positives:
            rows.update(self.rows_of_text.get(str(ctx.get("text", "")).strip(), ()))
            if str(ctx.get("passage_id")) in self.row_of_id:
                rows.add(self.row_of_id[str(ctx["passage_id"])])
        return rows

    def row_for(self, ctx: Mapping[str, Any]) -> int | None:
        """The corpus row of a passage dict with the same id and text, else None."""
        row = self.row_of_id.get(str(ctx.get("passage_id")))
        same = row is not None and self.passages[row].text.strip() == str(ctx["text"]).strip()
        return row if same else None

    def vectors_for(self, ctxs: Sequence[Mapping[str, Any]], model: Any) -> np.ndarray:
        """Model vectors of passage dicts: the corpus vector when the passage is in the
        corpus, else encoded now (in one call)."""
        rows = [self.row_for(ctx) for ctx in ctxs]
        out = np.zeros((len(ctxs), self.vectors.shape[1]), dtype=np.float32)
        missing = [i for i, row in enumerate(rows) if row is None]
        if missing:
            out[missing] = model.encode_passages([(ctxs[i].get("title") or "", ctxs[i]["text"])
                                                  for i in missing])
        for i, row in enumerate(rows):
            if row is not None:
                out[i] = self.vectors[row]
        return out


def _passage_dict(passage: Passage, score: float) -> dict[str, Any]:
    return {"title": passage.title, "text": passage.text, "passage_id": passage.passage_id,
            "score": round(score, SCORE_DECIMALS)}


def mine(records: Sequence[dict[str, Any]], corpus: EncodedCorpus, model: Any, *,
         options: MiningOptions, n_retrieved: int, match: str,
         exclusion: ArticleExclusion | None = None
         ) -> tuple[list[dict[str, Any]], MiningStats]:
    """Mines every record: searches the corpus with each question, keeps its negatives
    (:func:`select_negatives`) and mixes in its existing ones (:func:`mix_existing`).

    Args:
        records: DPR training records (raw dicts, every field kept in the output).
        model: The encoder (``encode_questions``, ``encode_passages``).
        match: Answer matching (``string`` or ``regex``).
        exclusion: The articles mixed-in existing negatives must not come from (the corpus
            is already without them).

    Returns:
        The output records (``hard_negative_ctxs`` replaced) and the counts.
    """
    from dpr.index import index_vectors
    from dpr.retrieval.dense import by_score_then_row

    q_vectors = model.encode_questions([r["question"] for r in records])  # [Q × D]
    firsts = [(i, r["positive_ctxs"][0]) for i, r in enumerate(records) if r.get("positive_ctxs")]
    positive_scores: list[float | None] = [None] * len(records)
    for (i, _), score in zip(firsts, _model_scores(firsts, q_vectors, corpus, model)):
        positive_scores[i] = score
    index = index_vectors(corpus.vectors, [p.passage_id for p in corpus.passages])
    hit_scores, hit_rows = index.search_rows(q_vectors, min(n_retrieved, len(index)))
    hit_rows, hit_scores = by_score_then_row(hit_rows, hit_scores)  # index rows: corpus rows
    _check_positives_in_corpus(records, corpus)
    stats = MiningStats()
    mined_all, mixed_all = [], []
    for i, record in enumerate(records):
        positives = record.get("positive_ctxs") or []
        answers = prepare_answers(record.get("answers") or [], match)
        kept = select_negatives(
            hit_rows[i].tolist(), hit_scores[i].tolist(), gold=corpus.gold_rows(positives),
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
    flat = [(i, ctx) for i, mixed in enumerate(mixed_all) for ctx in mixed]
    for (_, ctx), score in zip(flat, _model_scores(flat, q_vectors, corpus, model)):
        ctx["score"] = round(score, SCORE_DECIMALS)  # the model's, not e.g. BM25's
    out = [{**record, "hard_negative_ctxs": mined + mixed}
           for record, mined, mixed in zip(records, mined_all, mixed_all)]
    return out, stats


def _model_scores(pairs: Sequence[tuple[int, Mapping[str, Any]]], q_vectors: np.ndarray,
                  corpus: EncodedCorpus, model: Any) -> list[float]:
    """The model's score of each (question index, passage dict) pair."""
    vectors = corpus.vectors_for([ctx for _, ctx in pairs], model)
    return [float(q_vectors[i] @ vector) for (i, _), vector in zip(pairs, vectors)]


def _check_positives_in_corpus(records: Sequence[Mapping[str, Any]], corpus: EncodedCorpus) -> None:
    """Logs how many positives are corpus passages; warns when none is (wrong file?)."""
    positives = [ctx for r in records for ctx in r.get("positive_ctxs") or []]
    found = sum(bool(corpus.gold_rows([ctx])) for ctx in positives)
    logger.info("%d of %d positive passages found in the corpus (by passage_id or text)",
                found, len(positives))
    if positives and not found:
        logger.warning("No positive passage of the records is in the passage file: gold "
                       "passages cannot be recognised by id or text (another corpus?); only "
                       "the answer filter guards against false negatives")
