"""Fusion as functions of runs: ``fuse(bm25 run, dense run, setting) -> run``, their tuning,
and the fusion retrievers of an evaluation (``hybrid``, ``rrf``, ``fusion``).

Every fusion reranks, per question, the union of the BM25 and the dense top ``depth`` lists
(:mod:`dpr.retrieval.fusion` holds the pure per-question functions). Given
:class:`ExactScores`, both scores of every member of the union are exact (the DPR paper's
hybrid); without, a passage missing from a list takes that list's lowest score (Pyserini's
rule). With ``--tune_lambda_on``, λ of ``hybrid`` and the normalisation and dense weight of
``fusion`` are chosen on that file's questions (searched in the same corpus, relevance by
answer matching of the grid's rankings) and replace the flag values.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dpr.evaluation.inputs import QuestionSet, read_questions
from dpr.evaluation.options import EvalOptions
from dpr.evaluation.relevance import Judge, Qrels, metric_depth, tuning_metric
from dpr.retrieval.bm25 import BM25Retriever
from dpr.retrieval.corpus import Corpus
from dpr.retrieval.dense import DenseRetriever
from dpr.retrieval.fusion import (
    Candidates,
    FusionSetting,
    Linear,
    Normalised,
    Reciprocal,
    best_of,
    fused_ranking,
    lambda_settings,
    normalised_settings,
    union_candidates,
)
from dpr.retrieval.run import Run, bm25_run, pool_rows

logger = logging.getLogger(__name__)

RowScores = Callable[[int, np.ndarray], np.ndarray]  # (question, corpus rows) -> scores


@dataclass(frozen=True)
class ExactScores:
    """The score of any corpus row for a question, on each side of a fusion."""

    sparse: RowScores
    dense: RowScores


def _list_scores(union: np.ndarray, rows: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Scores of the union members from one list; absent members take its lowest score."""
    out = np.full(len(union), float(scores.min()) if len(scores) else 0.0)
    out[np.searchsorted(union, rows)] = scores
    return out


def candidates(sparse: Run, dense: Run, exact: ExactScores | None = None) -> list[Candidates]:
    """Per question, the union of both runs' lists with both scores of every member."""
    out = []
    for q, (s_rows, d_rows) in enumerate(zip(sparse.rows, dense.rows, strict=True)):
        union = np.union1d(s_rows, d_rows).astype(np.int64)
        if exact is None:
            s_union = _list_scores(union, s_rows, sparse.scores[q])
            d_union = _list_scores(union, d_rows, dense.scores[q])
        else:
            s_union, d_union = exact.sparse(q, union), exact.dense(q, union)
        out.append(union_candidates(s_rows, d_rows, s_union, d_union))
    return out


def fuse_candidates(union: Sequence[Candidates], setting: FusionSetting, *, k: int, name: str,
                    seconds: float = 0.0, metadata: dict[str, Any] | None = None) -> Run:
    """The run of one fusion setting over prepared candidates (top ``k`` per question)."""
    ranked = [fused_ranking(c, setting, k) for c in union]
    return Run(name, tuple(r for r, _ in ranked), tuple(s for _, s in ranked), seconds,
               {"setting": describe(setting), **(metadata or {})})


def fuse(sparse: Run, dense: Run, setting: FusionSetting, *, k: int, name: str = "fusion",
         exact: ExactScores | None = None) -> Run:
    """Fuses a BM25 run and a dense run of the same questions into a new run."""
    start = time.perf_counter()
    union = candidates(sparse, dense, exact)
    return fuse_candidates(union, setting, k=k, name=name, seconds=sparse.seconds +
                           dense.seconds + time.perf_counter() - start)


def describe(setting: FusionSetting) -> dict[str, Any]:
    """A fusion setting as plain data."""
    if isinstance(setting, Linear):
        return {"kind": "linear", "lambda": setting.lam}
    if isinstance(setting, Reciprocal):
        return {"kind": "rrf", "k": setting.k}
    return {"kind": "normalised", "method": setting.method, "dense_weight": setting.weight}


def tune(union: Sequence[Candidates], settings: Sequence[FusionSetting], *, judge: Judge,
         qset: QuestionSet, metric: str, known: Qrels | None = None
         ) -> tuple[FusionSetting, dict[FusionSetting, float], Qrels]:
    """The setting whose rankings maximise ``metric`` on ``qset`` (the first of equals).

    The rankings of every setting are judged together (one pool), re-using ``known``.

    Returns:
        The best setting, the metric of every setting, and the qrels (for the next grid).
    """
    depth = metric_depth(metric)
    rankings = {s: [fused_ranking(c, s, depth)[0] for c in union] for s in settings}
    qrels = judge.judge(qset, pool_rows(rankings.values(), len(union)), known)
    grid = {s: tuning_metric(qrels, ranked, metric) for s, ranked in rankings.items()}
    return best_of(grid, settings), grid, qrels


@dataclass(frozen=True)
class Sides:
    """BM25 and a dense retriever, with their runs on one question set (to fuse them)."""

    bm25: BM25Retriever
    dense: DenseRetriever
    questions: Sequence[str]
    sparse_run: Run
    dense_run: Run
    vectors: np.ndarray  # [Q × D] question vectors of the dense side

    @classmethod
    def search(cls, bm25: BM25Retriever, dense: DenseRetriever, questions: Sequence[str],
               depth: int) -> Sides:
        """Both retrievers' top ``depth`` of ``questions``."""
        return cls(bm25, dense, questions, bm25_run(bm25, questions, depth),
                   *dense.run(questions, depth))

    def candidates(self) -> list[Candidates]:
        """The union of both lists per question, both scores exact."""
        tokens = self.bm25.query_tokens(self.questions)
        exact = ExactScores(
            sparse=lambda q, rows: self.bm25.scores(tokens[q])[rows],
            dense=lambda q, rows: self.dense.searcher.scores(self.vectors[q], rows))
        return candidates(self.sparse_run, self.dense_run, exact)


def _tuned(options: EvalOptions, sides: Sides, corpus: Corpus, depth: int
           ) -> tuple[dict[str, Any] | None, Linear, Normalised, str]:
    """The report's tuning entry, λ, and the normalised setting with where it comes from."""
    method, weight, source = options.fusion_setting
    lam, normalised = Linear(options.hybrid_lambda), Normalised(method, weight)
    if not options.tune_lambda_on or not options.wants("hybrid", "fusion"):
        return None, lam, normalised, source
    tune_set = read_questions(options.tune_lambda_on, flag="--tune_lambda_on")
    union = Sides.search(sides.bm25, sides.dense, tune_set.questions, depth).candidates()
    # tuning questions carry answers, not gold paragraphs: matched by answer
    judge = Judge(corpus.texts, mode="answer", match=options.match,
                  workers=options.validation_workers, quiet=options.quiet)
    info: dict[str, Any] = {"file": tune_set.source, "questions": len(tune_set.questions),
                            "metric": options.tune_metric,
                            "applied_to": [n for n in options.tune if options.wants(n)]}
    qrels = None
    if options.wants("hybrid"):
        best, grid, qrels = tune(union, lambda_settings(), judge=judge, qset=tune_set,
                                 metric=options.tune_metric)
        info["grid"] = {f"{s.lam:g}": v for s, v in grid.items()}
        info["best_lambda"] = best.lam
        logger.info("λ = %g maximises %s on %s (%d questions)%s", best.lam,
                    options.tune_metric, info["file"], info["questions"],
                    "" if "hybrid" in options.tune else " (not applied: --tune)")
        lam = best if "hybrid" in options.tune else lam
    if options.wants("fusion"):
        best, grid, qrels = tune(union, normalised_settings(), judge=judge, qset=tune_set,
                                 metric=options.tune_metric, known=qrels)
        info["fusion_grid"] = {f"{s.method}:{s.weight:g}": v for s, v in grid.items()}
        info["best_fusion"] = {"method": best.method, "dense_weight": best.weight}
        logger.info("fusion %s with dense weight %g maximises %s on %s%s", best.method,
                    best.weight, options.tune_metric, info["file"],
                    "" if "fusion" in options.tune else " (not applied: --tune)")
        if "fusion" in options.tune:
            normalised, source = best, "tuned"
    return info, lam, normalised, source


def fusion_runs(options: EvalOptions, sides: Sides, corpus: Corpus, *, n_docs: int,
                depth: int) -> list[Run]:
    """The runs of every fusion asked for, with their settings (tuned when asked).

    Args:
        options: The evaluation's options (fusions wanted, flags, tuning file).
        sides: BM25 and the fusions' dense model with their top ``depth`` runs.
        corpus: The corpus (the tuning file's questions are searched in it).
        n_docs: Passages ranked per question.
        depth: Length of each side's list whose union is reranked.

    Returns:
        One run per fusion asked for; each run's metadata holds its setting and, under
        ``fusion``, the report's fusion entry (dense side, λ, depth, RRF k, normalisation,
        tuning grids).
    """
    start = time.perf_counter()
    union = sides.candidates()
    tuning, lam, normalised, source = _tuned(options, sides, corpus, depth)
    info: dict[str, Any] = {"dpr": sides.dense.name, "lambda": lam.lam, "depth": depth,
                            "rrf_k": options.rrf_k}
    if options.wants("fusion"):
        info["normalised"] = {"method": normalised.method,
                              "dense_weight": normalised.weight, "source": source}
    if tuning is not None:
        info["tuning"] = tuning
    settings = {"hybrid": lam, "rrf": Reciprocal(options.rrf_k), "fusion": normalised}
    runs = [fuse_candidates(union, setting, k=n_docs, name=name, metadata={"fusion": info})
            for name, setting in settings.items() if options.wants(name)]
    seconds = sides.sparse_run.seconds + sides.dense_run.seconds + time.perf_counter() - start
    return [run.replace(seconds=seconds) for run in runs]
