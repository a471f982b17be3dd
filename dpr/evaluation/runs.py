"""One evaluation: read the inputs, run every retriever asked for, score them, build the report.

Retrievers: ``bm25``; one or more DPR models (``dpr``, or ``dpr:<label>`` each: a checkpoint
or a dpr2hf folder); the fusions ``hybrid`` (``bm25 + λ·dpr``), ``rrf`` and ``fusion``
(normalised scores, weighted sum) of BM25 with one of the DPR models (see
:mod:`dpr.evaluation.fusion_runs`); ``sbert`` (an off-the-shelf sentence-transformers model).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from dpr.evaluation.bm25 import BM25Retriever
from dpr.evaluation.fusion_runs import run_fusions
from dpr.evaluation.inputs import read_questions, read_squad, read_tsv_corpus
from dpr.evaluation.options import FUSIONS, NEEDS_BM25, DprModelSpec, EvalOptions
from dpr.evaluation.relevance import Judge
from dpr.evaluation.report import compare, hits_at, paired_tests, score_rankings, versions
from dpr.evaluation.search import DenseRun, Evaluation, dense_search
from dpr.evaluation.trec import write_trec

logger = logging.getLogger(__name__)


def _setup(options: EvalOptions) -> Evaluation:
    """Reads the inputs and prepares relevance judging."""
    from dpr.evaluation.encode import pick_device

    if options.squad:
        corpus, qset = read_squad(options.squad)
    else:
        corpus, qset = read_tsv_corpus(options.passages), read_questions(options.qa)
    logger.info("%d passages, %d questions, relevance by %s", len(corpus.ids),
                len(qset.questions),
                "gold paragraph" if options.mode == "id" else "answer match")
    judge = Judge(corpus, mode=options.mode, match=options.match, quiet=options.quiet)
    judge.prepare(qset)
    n_docs = min(options.n_docs, len(corpus.ids))
    depth = max(n_docs, min(options.fusion_depth, len(corpus.ids)))
    return Evaluation(options, corpus, qset, judge, n_docs, depth,
                      pick_device(options.no_cuda))


def _run_bm25(ev: Evaluation) -> BM25Retriever:
    start = time.perf_counter()
    bm25 = BM25Retriever(ev.corpus.titles, ev.corpus.texts, settings=ev.options.bm25,
                         show_progress=not ev.options.quiet)
    top, scores = bm25.search(ev.qset.questions, ev.n_docs)
    ev.rankings["bm25"], ev.scores["bm25"] = list(top), list(scores)
    ev.seconds["bm25"] = time.perf_counter() - start
    return bm25


def _run_dpr(ev: Evaluation, spec: DprModelSpec) -> tuple[Any, DenseRun]:
    from dpr.inference import load_encoder
    from dpr.utils.dist import autocast_dtype

    options = ev.options
    model = load_encoder(spec.path, options.encoder_cli, device=ev.device,
                         batch_size=options.batch_size, quiet=options.quiet,
                         allow_pickle=options.allow_unsafe_pickle,
                         amp_dtype=autocast_dtype(options.fp16, options.amp_dtype, ev.device))
    logger.info("%s: %s", spec.name, model.description)
    dense = dense_search(model, ev.corpus, ev.qset, ev.depth)
    ev.rankings[spec.name] = [row[:ev.n_docs] for row in dense.top]
    ev.scores[spec.name] = [row[:ev.n_docs] for row in dense.scores]
    ev.seconds[spec.name] = dense.seconds
    return model, dense


def _run_sbert(ev: Evaluation) -> None:
    from dpr.evaluation.dense_models import SentenceTransformerModel

    options = ev.options
    sbert = SentenceTransformerModel(options.sbert_model, device=ev.device,
                                     batch_size=options.batch_size, quiet=options.quiet)
    logger.info("sbert: %s", sbert.description)
    run = dense_search(sbert, ev.corpus, ev.qset, ev.n_docs)
    ev.rankings["sbert"], ev.scores["sbert"] = list(run.top), list(run.scores)
    ev.seconds["sbert"] = run.seconds


def evaluate(options: EvalOptions) -> dict[str, Any]:
    """Runs the evaluation.

    Args:
        options: Inputs, retrievers and their settings.

    Returns:
        The report (see docs/EVALUATION.md, ``results.json``).

    Raises:
        InputError: On unreadable or malformed input files.
    """
    ev = _setup(options)
    bm25 = _run_bm25(ev) if options.wants(*NEEDS_BM25) else None
    fused = options.fusion_model if options.wants(*FUSIONS) else None
    for spec in options.dpr_models:
        if spec.name in options.retrievers or spec == fused:
            model, dense = _run_dpr(ev, spec)
            if spec == fused:
                run_fusions(ev, bm25, model, dense, spec.name)
    if options.wants("sbert"):
        _run_sbert(ev)
    report = _report(ev)
    if options.trec_dir:
        report["trec"] = write_trec(
            options.trec_dir, corpus=ev.corpus, qset=ev.qset,
            rankings={name: ev.rankings[name] for name in options.retrievers},
            scores=ev.scores)
    return report


def _report(ev: Evaluation) -> dict[str, Any]:
    options, ks, k = ev.options, ev.ks, ev.compare_k
    rankings = {name: ev.rankings[name] for name in options.retrievers}
    results = score_rankings(ev.judge, ev.qset, rankings, ev.seconds, ks=ks, n_docs=ev.n_docs)
    comparison = compare(results, hits_at(results, k), k) if len(results) > 1 else None
    fused = options.fusion_model
    return {
        "command": options.command,
        "versions": versions(), "device": str(ev.device),
        "corpus": {"source": ev.corpus.source, "passages": len(ev.corpus.ids)},
        "questions": {"source": ev.qset.source, "count": len(ev.qset.questions),
                      "without_relevant_passage": sum(1 for n in ev.qset.num_relevant
                                                      if n == 0)},
        "relevance": options.mode, "match": options.match, "ks": ks,
        "models": {"dpr": fused.path if fused else None,
                   "dpr_models": {m.name: m.path for m in options.dpr_models},
                   "sbert": options.sbert_model if "sbert" in options.retrievers else None},
        "bm25": options.bm25.describe() if options.wants(*NEEDS_BM25) else None,
        "fusion": ev.fusion or None,
        "results": results, "comparison": comparison,
        "pairs": paired_tests(results, options.pairs, sorted({1, k})),
    }
