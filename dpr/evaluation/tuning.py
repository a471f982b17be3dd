"""Fusion settings chosen on a tuning set (``--tune_lambda_on``): λ of ``hybrid``, the
normalisation and dense weight of ``fusion``. The rankings of every setting of a grid are
judged together by answer matching (one pool); the best replaces the flag value when
``--tune`` names its fusion.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from dpr.evaluation.inputs import QuestionSet, read_questions
from dpr.evaluation.options import EvalOptions
from dpr.evaluation.relevance import Judge, Qrels, metric_depth, tuning_metric
from dpr.retrieval.corpus import Corpus
from dpr.retrieval.fusion import (
    Candidates,
    FusionSetting,
    Linear,
    Normalised,
    Sides,
    fused_ranking,
    lambda_settings,
    normalised_settings,
)
from dpr.retrieval.run import pool_rows

logger = logging.getLogger(__name__)

def tune(union: Sequence[Candidates], settings: Sequence[FusionSetting], *, judge: Judge,
         qset: QuestionSet, metric: str, known: Qrels | None = None
         ) -> tuple[FusionSetting, dict[FusionSetting, float], Qrels]:
    """The setting whose rankings maximise ``metric`` on ``qset`` (the first of equals), the
    metric of every setting, and the qrels (``known`` re-used; for the next grid)."""
    depth = metric_depth(metric)
    rankings = {s: [fused_ranking(c, s, depth)[0] for c in union] for s in settings}
    qrels = judge.judge(qset, pool_rows(rankings.values(), len(union)), known)
    grid = {s: tuning_metric(qrels, ranked, metric) for s, ranked in rankings.items()}
    return max(settings, key=grid.__getitem__), grid, qrels  # max keeps the first of equals


def tuned_settings(options: EvalOptions, sides: Sides, corpus: Corpus, depth: int
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
