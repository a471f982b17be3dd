"""Which retrieved passages are relevant to a question, judged on the retrieved lists only
(the pool of the runs, never a scan of the corpus): ``answer`` mode matches the answers in each
pooled passage, prepared once; ``id`` mode knows the gold paragraphs. What R (recall, MAP) is in
each mode: docs/EVALUATION.md, "Metrics".

:class:`Qrels` are immutable: judging more pairs returns new qrels holding the old judgments
too, so a fusion's lists re-use those of BM25 and DPR and each pair is matched once.
"""

from __future__ import annotations

import functools
import logging
import multiprocessing
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from dpr.data.answers import contains_answer, prepare_answers, prepare_text
from dpr.evaluation.inputs import QuestionSet
from dpr.evaluation.metrics import CUTOFF, first_hit_rank, mrr, top_k_accuracy
from dpr.utils.errors import InputError

logger = logging.getLogger(__name__)

RELEVANCE_MODES = ("answer", "id")
AMONG_RETRIEVED = "relevant among retrieved"
GOLD_PASSAGES = "gold passages"
TEXTS_PER_WORKER = 4096  # fewer passages per process cost more to ship than to prepare
DEFAULT_WORKERS = min(16, os.cpu_count() or 1)


@dataclass(frozen=True)
class Qrels:
    """The judged (question, passage row) pairs of one question set.

    Attributes:
        relevant: Per question, the rows judged relevant.
        judged: Per question, every row judged; None when relevance is known for every row
            (gold passages: a row outside ``relevant`` is not relevant).
        definition: What R, the count recall and MAP divide by, is: ``gold passages`` or
            ``relevant among retrieved``.
    """

    relevant: tuple[frozenset[int], ...]
    judged: tuple[frozenset[int], ...] | None
    definition: str

    @property
    def num_relevant(self) -> list[int]:
        """R per question."""
        return [len(rows) for rows in self.relevant]

    def flags(self, question: int, rows: Sequence[int]) -> list[bool]:
        """Whether each of a question's ranked rows is relevant (ValueError for a row that was
        not judged: a run left out of the pool)."""
        rows = [int(r) for r in rows]
        if self.judged is not None and not self.judged[question].issuperset(rows):
            raise ValueError(f"question {question}: rows not judged (judge the run's pool)")
        return [r in self.relevant[question] for r in rows]

    def unjudged(self, pool: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Per question, the pooled rows not judged yet."""
        if self.judged is None:
            return [np.zeros(0, np.int64) for _ in pool]
        return [np.asarray([r for r in rows.tolist() if r not in done], dtype=np.int64)
                for rows, done in zip(pool, self.judged, strict=True)]


def prepare_texts(texts: Sequence[str], *, match: str, workers: int = 1,
                  quiet: bool = True) -> list[str]:
    """:func:`~dpr.data.answers.prepare_text` of each text, in ``workers`` processes when
    there are at least ``TEXTS_PER_WORKER`` texts per process."""
    workers = min(workers, len(texts) // TEXTS_PER_WORKER)
    prepare = functools.partial(prepare_text, match=match)
    if workers <= 1:
        return [prepare(text) for text in tqdm(texts, desc="Judging passages", unit=" passages",
                                               disable=quiet)]
    logger.info("Preparing %d retrieved passages for answer matching in %d processes",
                len(texts), workers)
    with multiprocessing.Pool(workers) as pool:
        return pool.map(prepare, texts, chunksize=max(1, len(texts) // (4 * workers)))


class Judge:
    """Judges pooled (question, passage row) pairs of a corpus.

    Args:
        texts: Passage texts by corpus row (any sequence: only pooled rows are read; matched
            without titles, as in DPR).
        mode: ``answer`` or ``id`` (`RELEVANCE_MODES`).
        match: ``string`` or ``regex`` answer matching.
        workers: Processes preparing passages for matching (``--validation_workers``).
    """

    def __init__(self, texts: Sequence[str], *, mode: str, match: str = "string",
                 workers: int = 1, quiet: bool = True) -> None:
        self.texts, self.mode, self.match = texts, mode, match
        self.workers, self.quiet = workers, quiet

    def judge(self, qset: QuestionSet, pool: Sequence[np.ndarray],
              known: Qrels | None = None) -> Qrels:
        """The qrels of ``qset`` covering every pooled row.

        Args:
            pool: Per question, the rows to judge (e.g. :func:`dpr.retrieval.run.pool`).
            known: Judgments already made for ``qset`` (kept, not redone).

        Raises:
            InputError: In ``id`` mode, for a question set without gold passages.
        """
        if self.mode == "id":
            if qset.gold is None:
                raise InputError(f"{qset.source}: relevance by paragraph needs SQuAD input")
            return Qrels(tuple(frozenset(g) for g in qset.gold), None, GOLD_PASSAGES)
        nothing = tuple(frozenset() for _ in qset.questions)
        known = known or Qrels(nothing, nothing, AMONG_RETRIEVED)
        todo = known.unjudged(pool)
        unique = np.unique(np.concatenate(todo)) if todo else np.zeros(0, np.int64)
        if not len(unique):
            return known
        texts = prepare_texts([self.texts[int(r)] for r in unique], match=self.match,
                              workers=self.workers, quiet=self.quiet)
        prepared = dict(zip(unique.tolist(), texts))
        relevant, judged = [], []
        for q, rows in enumerate(todo):
            answers = prepare_answers(qset.answers[q], self.match)
            found = {r for r in rows.tolist()
                     if contains_answer(answers, prepared[r], self.match)}
            relevant.append(known.relevant[q] | found)
            judged.append(known.judged[q] | frozenset(rows.tolist()))
        return Qrels(tuple(relevant), tuple(judged), AMONG_RETRIEVED)


def warn_unanswered(qrels: Qrels, qset: QuestionSet) -> int:
    """Logs how many questions have no relevant passage judged; returns that number."""
    missing = sum(1 for n in qrels.num_relevant if n == 0)
    if missing:
        where = "among the retrieved passages" if qrels.judged is not None else "(no gold)"
        logger.warning("%s: %d of %d questions have no relevant passage %s (they count as "
                       "misses for every retriever)", qset.source, missing,
                       len(qset.questions), where)
    return missing


def metric_depth(metric: str) -> int:
    """How many ranks a tuning metric reads: k of ``top<k>``, the report's cut-off for
    ``mrr10``."""
    return CUTOFF if metric == "mrr10" else int(metric[3:])


def tuning_metric(qrels: Qrels, rankings: Sequence[np.ndarray], metric: str) -> float:
    """A tuning objective of per-question rankings: ``top<k>`` accuracy or ``mrr10``."""
    depth = metric_depth(metric)
    ranks = [first_hit_rank(qrels.flags(q, rows[:depth])) for q, rows in enumerate(rankings)]
    if metric == "mrr10":
        return mrr(ranks, cutoff=depth)
    return top_k_accuracy(ranks, [depth])[depth]
