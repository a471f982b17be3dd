"""A first-stage run re-ranked by a cross-encoder: ``rerank(run, reranker, ...) -> run``.

Each question's top ``depth`` rows are scored by the reranker, every pair of every question in
one ``score_pairs`` call (it batches, sorts by length and shows its progress bar), and put in
the order of those scores, ties kept in the first stage's order. The re-ranked run holds
exactly those rows: none added, none of the top ``depth`` dropped, and the rows beyond
``depth`` left out (a top-k beyond ``depth`` counts the top ``depth``).

The reranker is anything with ``score_pairs`` and ``description``
(`dpr.inference.Reranker`, loaded by `dpr.inference.load_reranker`); this package does not
load models.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from dpr.retrieval.corpus import Corpus
from dpr.retrieval.run import Run
from dpr.utils.errors import UsageError

logger = logging.getLogger(__name__)

PassageText = tuple[str, str]  # (title, text)
DEFAULT_RERANK_DEPTH = 20  # passages re-ranked per question unless --reranker_depth says


class PairScorer(Protocol):
    """What re-ranking needs of a reranker (`dpr.inference.Reranker` is one)."""

    description: str

    def score_pairs(self, pairs: Sequence[tuple[str, PassageText]]) -> np.ndarray:
        """One score per (question, (title, text)) pair, in the input order; higher is
        better."""
        ...


def check_depth(depth: int) -> None:
    """Refuses (UsageError naming ``--reranker_depth``) a depth below 1."""
    if depth < 1:
        raise UsageError(f"--reranker_depth must be >= 1, got {depth}")


def rerank(run: Run, reranker: PairScorer, questions: Sequence[str], corpus: Corpus, *,
           depth: int, name: str = "rerank") -> Run:
    """``run``'s top ``depth`` rows per question in the order of the reranker's scores.

    Args:
        run: The first stage, its rows indexing ``corpus``.
        questions: The questions of ``run``, in its order, as written.
        depth: Rows re-ranked per question (fewer where the first stage has fewer; an empty
            list stays empty); the rows beyond are left out of the result.
        name: The returned run's name.

    Returns:
        A run named ``name`` whose scores are the reranker's, ties in the first stage's order;
        its seconds are the first stage's plus the re-ranking's; its metadata are the first
        stage's plus ``rerank``: the reranker's description, the depth, the first stage's name,
        the pairs scored and the seconds per question of the re-ranking alone.

    Raises:
        UsageError: For ``depth`` below 1.
        ValueError: If ``questions`` is not one per question of ``run``, or the reranker does
            not give one score per pair.
    """
    check_depth(depth)
    if len(questions) != len(run):
        raise ValueError(f"run {run.name}: {len(run)} questions, {len(questions)} given")
    start = time.perf_counter()
    candidates = [rows[:depth] for rows in run.rows]
    pairs = [(question, (corpus.titles[row], corpus.texts[row]))
             for question, rows in zip(questions, candidates) for row in rows.tolist()]
    scores = np.asarray(reranker.score_pairs(pairs), dtype=np.float32)
    if scores.shape != (len(pairs),):
        raise ValueError(f"the reranker gave {scores.shape} scores for {len(pairs)} pairs")
    per_question = np.split(scores, np.cumsum([len(rows) for rows in candidates])[:-1]) \
        if candidates else []
    orders = [np.argsort(-s, kind="stable") for s in per_question]  # ties: first-stage order
    seconds = time.perf_counter() - start
    if any(len(rows) > depth for rows in run.rows):
        logger.info("%s: the top %d of %s re-ranked, the rows below them left out", name,
                    depth, run.name)
    info = {"reranker": reranker.description, "depth": depth, "first_stage": run.name,
            "pairs": len(pairs), "seconds": round(seconds, 3),
            "seconds_per_question": seconds / max(len(run), 1)}
    return Run(name, tuple(rows[order] for rows, order in zip(candidates, orders)),
               tuple(s[order] for s, order in zip(per_question, orders)),
               run.seconds + seconds, {**run.metadata, "rerank": info})
