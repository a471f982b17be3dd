"""The fusion retrievers of an evaluation (``hybrid``, ``rrf``, ``fusion``) and their tuning.

Every fusion reranks, per question, the union of the BM25 and the dense top ``depth`` lists
of the chosen DPR model (``--fusion_dpr``). With ``--tune_lambda_on``, λ of ``hybrid`` and the
normalisation and dense weight of ``fusion`` are chosen on that file's questions (searched in
the same corpus, relevance by answer matching) and replace the flag values.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from dpr.evaluation.bm25 import BM25Retriever
from dpr.evaluation.fusion import (
    DEFAULT_LAMBDA_GRID,
    Candidates,
    linear_fusion,
    normalised_fusion,
    rrf_fusion,
    tune_lambda,
    tune_normalised_fusion,
)
from dpr.evaluation.inputs import read_questions
from dpr.evaluation.relevance import Judge, tune_metric_fn
from dpr.evaluation.search import DenseRun, Evaluation, dense_search, fusion_candidates

logger = logging.getLogger(__name__)


def _tuning_candidates(ev: Evaluation, bm25: BM25Retriever, model: Any, dense: DenseRun
                       ) -> tuple[list[Candidates], Any, dict[str, Any]]:
    """The tuning file's fusion candidates, its objective, and the report's tuning entry."""
    options = ev.options
    tune = read_questions(options.tune_lambda_on, flag="--tune_lambda_on")
    # tuning questions carry answers, not gold paragraphs: matched by answer
    judge = ev.judge if ev.judge.mode == "answer" else Judge(
        ev.corpus, mode="answer", match=options.match, quiet=options.quiet)
    judge.prepare(tune)
    tune_dense = dense_search(model, ev.corpus, tune, ev.depth, passages=dense.passages)
    candidates, _ = fusion_candidates(bm25, tune_dense, tune, ev.depth)
    info = {"file": tune.source, "questions": len(tune.questions),
            "metric": options.tune_metric}
    return candidates, tune_metric_fn(judge, tune, options.tune_metric), info


def _tune(ev: Evaluation, bm25: BM25Retriever, model: Any, dense: DenseRun
          ) -> tuple[float, tuple[str, float, str]]:
    """λ and (method, weight, source) of the fusions, tuned when ``tune_lambda_on`` is set."""
    options = ev.options
    lam, setting = options.hybrid_lambda, options.fusion_setting
    if not options.tune_lambda_on or not options.wants("hybrid", "fusion"):
        return lam, setting
    candidates, objective, info = _tuning_candidates(ev, bm25, model, dense)
    info["applied_to"] = [name for name in options.tune if options.wants(name)]
    if options.wants("hybrid"):
        best, grid = tune_lambda(candidates, objective, DEFAULT_LAMBDA_GRID, ev.n_docs)
        info["grid"] = {f"{k:g}": v for k, v in grid.items()}
        info["best_lambda"] = best
        logger.info("λ = %g maximises %s on %s (%d questions)%s", best, options.tune_metric,
                    info["file"], info["questions"],
                    "" if "hybrid" in options.tune else " (not applied: --tune)")
        if "hybrid" in options.tune:
            lam = best
    if options.wants("fusion"):
        (method, weight), grid = tune_normalised_fusion(candidates, objective, top_k=ev.n_docs)
        info["fusion_grid"] = {f"{m}:{w:g}": v for (m, w), v in grid.items()}
        info["best_fusion"] = {"method": method, "dense_weight": weight}
        logger.info("fusion %s with dense weight %g maximises %s on %s%s", method, weight,
                    options.tune_metric, info["file"],
                    "" if "fusion" in options.tune else " (not applied: --tune)")
        if "fusion" in options.tune:
            setting = (method, weight, "tuned")
    ev.fusion["tuning"] = info
    return lam, setting


def run_fusions(ev: Evaluation, bm25: BM25Retriever, model: Any, dense: DenseRun,
                dense_name: str) -> None:
    """Ranks the questions with every fusion asked for; records settings and seconds.

    Args:
        ev: The evaluation (rankings, seconds and fusion settings are added to it).
        bm25: The BM25 retriever over the corpus.
        model: The DPR model of the dense side (to encode tuning questions).
        dense: Its run over the evaluation questions.
        dense_name: Its retriever name (``dpr`` or ``dpr:<label>``).
    """
    options = ev.options
    start = time.perf_counter()
    candidates, _ = fusion_candidates(bm25, dense, ev.qset, ev.depth)
    lam, (method, weight, source) = _tune(ev, bm25, model, dense)
    ev.fusion.update({"dpr": dense_name, "lambda": lam, "depth": ev.depth,
                      "rrf_k": options.rrf_k})
    if options.wants("fusion"):
        ev.fusion["normalised"] = {"method": method, "dense_weight": weight, "source": source}
    fusers = {
        "hybrid": lambda c: linear_fusion(c, lam, ev.n_docs),
        "rrf": lambda c: rrf_fusion(c, ev.n_docs, options.rrf_k),
        "fusion": lambda c: normalised_fusion(c, method, weight, ev.n_docs),
    }
    for name, fuse in fusers.items():
        if options.wants(name):
            ranked = [fuse(c) for c in candidates]
            ev.rankings[name] = [top for top, _ in ranked]
            ev.scores[name] = [scores for _, scores in ranked]
    for name in fusers:
        if options.wants(name):
            ev.seconds[name] = ev.seconds["bm25"] + ev.seconds[dense_name] + \
                time.perf_counter() - start
