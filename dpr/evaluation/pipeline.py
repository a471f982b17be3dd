"""One evaluation, top to bottom: read the inputs, make one run per retriever (BM25, the DPR
models, their fusions, sbert, the rerankers over one of them), judge the pooled runs once,
score them and build the report (docs/EVALUATION.md).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from dpr.evaluation.inputs import QuestionSet, read_questions, read_squad
from dpr.evaluation.options import (
    FUSIONS,
    NEEDS_BM25,
    TOP_KS,
    DprModelSpec,
    EvalOptions,
    RerankerSpec,
)
from dpr.evaluation.relevance import GOLD_PASSAGES, Judge, Qrels, warn_unanswered
from dpr.evaluation.report import (
    adjust_sign_tests,
    compare,
    hits_at,
    paired_tests,
    score_runs,
    versions,
)
from dpr.evaluation.trec import write_trec
from dpr.evaluation.tuning import tuned_settings
from dpr.retrieval.bm25 import BM25Retriever
from dpr.retrieval.corpus import Corpus, read_tsv_corpus
from dpr.retrieval.dense import DenseRetriever, dense_retriever
from dpr.retrieval.fusion import Reciprocal, Sides, fuse_candidates
from dpr.retrieval.rerank import PairScorer, rerank
from dpr.retrieval.run import Run, pool
from dpr.utils.device import autocast_dtype, select_device

logger = logging.getLogger(__name__)


def evaluate(options: EvalOptions) -> dict[str, Any]:
    """The report of one evaluation (``results.json``); InputError on unreadable or malformed
    input files."""
    corpus, qset = read_inputs(options)
    device = select_device(options.device)
    rerankers = {spec: open_reranker(options, spec, device) for spec in options.rerankers}
    n_docs = min(options.n_docs, len(corpus.ids))
    depth = max(n_docs, min(options.fusion_depth, len(corpus.ids)))  # lists the fusions rerank
    fused = options.fusion_model if options.wants(*FUSIONS) else None
    runs: dict[str, Run] = {}
    bm25 = sparse = None
    if options.wants(*NEEDS_BM25):
        start = time.perf_counter()
        bm25 = BM25Retriever(corpus.titles, corpus.texts, settings=options.bm25,
                             show_progress=not options.quiet)
        sparse = bm25.run(qset.questions, depth if fused else n_docs,
                          seconds=time.perf_counter() - start)
        runs["bm25"] = sparse.top(n_docs)
    for spec in options.dpr_models:
        if options.wants(spec.name) or spec == fused:
            dense = open_dpr(options, spec, corpus, device)
            deep, vectors = dense.run(qset.questions, depth)
            runs[spec.name] = deep.top(n_docs)
            if spec == fused:
                sides = Sides(bm25, dense, qset.questions, sparse, deep, vectors)
                runs.update((run.name, run) for run in fusion_runs(
                    options, sides, corpus, n_docs=n_docs, depth=depth))
    if options.wants("sbert"):
        runs["sbert"] = sbert_run(options, corpus, qset, n_docs, device)
    for spec, reranker in rerankers.items():  # the first stage, computed above, re-ranked
        runs[spec.name] = rerank(runs[options.rerank_on], reranker, qset.questions, corpus,
                                 depth=options.reranker_depth, name=spec.name)
    reported = [runs[name] for name in options.retrievers]
    judge = Judge(corpus.texts, mode=options.mode, match=options.match,
                  workers=options.validation_workers, quiet=options.quiet)
    qrels = judge.judge(qset, pool(reported, len(qset.questions)))
    report = build_report(options, corpus=corpus, qset=qset, runs=reported, qrels=qrels,
                          device=str(device), n_docs=n_docs)
    if options.trec_dir:
        report["trec"] = write_trec(options.trec_dir, corpus=corpus, runs=reported,
                                    qrels=qrels)
    return report


def read_inputs(options: EvalOptions) -> tuple[Corpus, QuestionSet]:
    """The corpus and the questions (``--squad``, or ``--ctx_file`` and ``--qa_file``);
    InputError on unreadable or malformed files."""
    if options.squad:
        corpus, qset = read_squad(options.squad)
    else:
        corpus, qset = read_tsv_corpus(options.ctx_file), read_questions(options.qa_file)
    logger.info("%d passages, %d questions, relevance by %s", len(corpus.ids),
                len(qset.questions),
                "gold paragraph" if options.mode == "id" else "answer match")
    return corpus, qset


def fusion_runs(options: EvalOptions, sides: Sides, corpus: Corpus, *, n_docs: int,
                depth: int) -> list[Run]:
    """The top ``n_docs`` of every fusion asked for, over the union of both sides' top
    ``depth`` (settings tuned when asked); each run's metadata holds, under ``fusion``, the
    report's fusion entry (dense side, λ, depth, RRF k, normalisation, tuning grids).
    """
    start = time.perf_counter()
    union = sides.candidates()
    tuning, lam, normalised, source = tuned_settings(options, sides, corpus, depth)
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


def open_dpr(options: EvalOptions, spec: DprModelSpec, corpus: Corpus,
             device: Any) -> DenseRetriever:
    """A DPR model (`dpr.inference.load_encoder`) over the corpus or its saved index (which
    must hold this model's vectors: `dpr.inference.chunks.model_identity`)."""
    from dpr.inference import load_encoder
    from dpr.inference.chunks import model_identity

    model = load_encoder(spec.path, options.encoder_cli, device=device,
                         batch_size=options.batch_size, quiet=options.quiet,
                         allow_pickle=options.allow_unsafe_pickle,
                         amp_dtype=autocast_dtype(options.fp16, options.amp_dtype, device))
    logger.info("%s: %s", spec.name, model.description)
    index = dict(options.indexes).get(spec.name)  # None: encode the corpus
    if index is not None:
        logger.info("%s: searching the saved index %s", spec.name, index)
    identity = None if index is None else model_identity(spec.path, model.amp_dtype)
    return dense_retriever(spec.name, model, corpus, index=index, nprobe=options.nprobe,
                           ef_search=options.ef_search, identity=identity,
                           metadata={"model": spec.path})


def open_reranker(options: EvalOptions, spec: RerankerSpec, device: Any) -> PairScorer:
    """A reranker (`dpr.inference.load_reranker`) with its checkpoint's own parameters (the
    model flags of the command line are the DPR models'), the batch size, device and
    precision of the DPR models."""
    from dpr.inference import load_reranker

    reranker = load_reranker(spec.path, device=device, batch_size=options.batch_size,
                             quiet=options.quiet, allow_pickle=options.allow_unsafe_pickle,
                             amp_dtype=autocast_dtype(options.fp16, options.amp_dtype, device))
    logger.info("%s: %s", spec.name, reranker.description)
    return reranker


def sbert_run(options: EvalOptions, corpus: Corpus, qset: QuestionSet, k: int,
              device: Any) -> Run:
    """The off-the-shelf sentence-transformers model's run (exact search)."""
    from dpr.retrieval.dense_models import SentenceTransformerModel

    sbert = SentenceTransformerModel(options.sbert_model, device=device,
                                     batch_size=options.batch_size, quiet=options.quiet)
    logger.info("sbert: %s", sbert.description)
    retriever = dense_retriever("sbert", sbert, corpus, metadata={"model": options.sbert_model})
    return retriever.run(qset.questions, k)[0]


def build_report(options: EvalOptions, *, corpus: Corpus, qset: QuestionSet,
                 runs: Sequence[Run], qrels: Qrels, device: str, n_docs: int
                 ) -> dict[str, Any]:
    """The report of judged runs: metrics, comparison, sign tests, settings (results.json)."""
    ks = [k for k in TOP_KS if k <= n_docs] or [n_docs]  # the cut-offs up to the list length
    k = 20 if 20 in ks else ks[-1]  # the k of the ranking and of the sign tests
    results = score_runs(runs, qrels, ks=ks, n_docs=n_docs)
    comparison = compare(results, hits_at(results, k), k) if len(results) > 1 else None
    pairs = paired_tests(results, options.pairs, sorted({1, k}))
    sign_tests = adjust_sign_tests(comparison, pairs, k)
    fused = options.fusion_model
    fusion = next((dict(run.metadata["fusion"]) for run in runs if "fusion" in run.metadata),
                  None)
    reranked = {run.name: dict(run.metadata["rerank"]) for run in runs
                if "rerank" in run.metadata}
    return {
        "command": options.command,
        "versions": versions(), "device": device,
        "corpus": {"source": corpus.source, "passages": len(corpus.ids)},
        "questions": {"source": qset.source, "count": len(qset.questions),
                      "without_relevant_passage": warn_unanswered(qrels, qset)},
        "relevance": options.mode, "match": options.match, "ks": ks,
        "num_relevant": {"definition": qrels.definition,
                         "pool": None if qrels.definition == GOLD_PASSAGES
                         else [run.name for run in runs], "depth": n_docs},
        "models": {"dpr": fused.path if fused else None,
                   "dpr_models": {m.name: m.path for m in options.dpr_models},
                   "dpr_indexes": dict(options.indexes) or None,
                   "sbert": options.sbert_model if options.wants("sbert") else None,
                   "rerankers": {m.name: m.path for m in options.rerankers} or None},
        "bm25": options.bm25.describe() if options.wants(*NEEDS_BM25) else None,
        "fusion": fusion, "rerank": reranked or None,
        "results": results, "comparison": comparison, "pairs": pairs,
        "sign_tests": sign_tests,
    }
