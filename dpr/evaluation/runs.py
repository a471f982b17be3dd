"""One evaluation: read the inputs, run every retriever asked for, score them, build the report.

Retrievers: ``bm25``, ``dpr`` (a checkpoint or a dpr2hf folder), the fusions ``hybrid``
(``bm25 + λ·dpr``) and ``rrf`` over the union of both top ``fusion_depth`` lists, and
``sbert`` (an off-the-shelf sentence-transformers model).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from dpr.evaluation.bm25 import BM25Retriever, BM25Settings, top_k_of
from dpr.evaluation.fusion import (
    DEFAULT_LAMBDA_GRID,
    Candidates,
    candidates_from_vectors,
    linear_fusion,
    rrf_fusion,
    tune_lambda,
)
from dpr.evaluation.index import DenseIndex
from dpr.evaluation.inputs import (
    Corpus,
    QuestionSet,
    read_questions,
    read_squad,
    read_tsv_corpus,
)
from dpr.evaluation.relevance import Judge, tune_metric_fn
from dpr.evaluation.report import compare, hits_at, score_rankings, versions

logger = logging.getLogger(__name__)

RETRIEVERS = ("bm25", "dpr", "hybrid", "rrf", "sbert")
FUSIONS = ("hybrid", "rrf")
NEEDS_BM25 = {"bm25", *FUSIONS}
NEEDS_DPR = {"dpr", *FUSIONS}
TOP_KS = (1, 5, 10, 20, 50, 100)
TUNE_METRICS = tuple(f"top{k}" for k in TOP_KS) + ("mrr10",)


@dataclass(frozen=True)
class EvalOptions:
    """What to evaluate and how (the flags of ``python -m dpr.evaluate``)."""

    retrievers: tuple[str, ...]
    passages: str | None = None
    qa: str | None = None
    squad: str | None = None
    relevance: str | None = None
    match: str = "string"
    dpr_model: str | None = None
    pretrained_model_cfg: str | None = None
    pretrained_file: str | None = None
    sbert_model: str | None = None
    batch_size: int = 32
    no_cuda: bool = False
    allow_unsafe_pickle: bool = False
    hybrid_lambda: float = 1.1
    tune_lambda_on: str | None = None
    tune_metric: str = "top20"
    fusion_depth: int = 2000
    rrf_k: int = 60
    bm25: BM25Settings = field(default_factory=BM25Settings)
    n_docs: int = 100
    quiet: bool = False
    command: str = ""

    @property
    def mode(self) -> str:
        """Relevance mode: ``id`` by default with ``squad``, ``answer`` otherwise."""
        return self.relevance or ("id" if self.squad else "answer")


@dataclass
class DenseRun:
    """A dense model's vectors over the corpus and its ranking of one question set."""

    passages: np.ndarray
    questions: np.ndarray
    top: np.ndarray  # [Q × depth] corpus indices
    seconds: float


@dataclass
class Evaluation:
    """The state shared by the retrievers of one evaluation."""

    options: EvalOptions
    corpus: Corpus
    qset: QuestionSet
    judge: Judge
    n_docs: int
    depth: int
    device: Any
    rankings: dict[str, list[np.ndarray]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    fusion: dict[str, Any] = field(default_factory=dict)

    @property
    def ks(self) -> list[int]:
        """The top-k cut-offs reported: those up to the ranking length."""
        return [k for k in TOP_KS if k <= self.n_docs] or [self.n_docs]

    def wants(self, *names: str) -> bool:
        """Whether any retriever of ``names`` was asked for."""
        return any(name in self.options.retrievers for name in names)


def dense_search(model: Any, corpus: Corpus, qset: QuestionSet, depth: int, *,
                 passages: np.ndarray | None = None) -> DenseRun:
    """Encodes (unless ``passages`` are given) and searches a flat inner-product index."""
    start = time.perf_counter()
    if passages is None:
        passages = model.encode_passages(corpus.titles, corpus.texts)
    questions = model.encode_questions(qset.questions)
    index = DenseIndex(passages.shape[1])
    index.add([str(i) for i in range(len(passages))], passages)
    ids, _ = index.search(questions, depth)
    top = np.asarray([[int(i) for i in row] for row in ids], dtype=np.int64).reshape(
        len(questions), -1)
    return DenseRun(passages, questions, top, time.perf_counter() - start)


def fusion_candidates(bm25: BM25Retriever, dense: DenseRun, qset: QuestionSet,
                      depth: int) -> tuple[list[Candidates], list[np.ndarray]]:
    """The union candidates of every question, and the BM25 top-``depth`` lists."""
    candidates, bm25_top = [], []
    tokens_per_question = bm25.query_tokens(qset.questions)
    for q, tokens in enumerate(tqdm(tokens_per_question, desc="Fusion candidates",
                                    unit=" questions", disable=not bm25.show_progress)):
        scores = bm25.scores(tokens)
        top, _ = top_k_of(scores, depth)
        bm25_top.append(top)
        candidates.append(candidates_from_vectors(top, dense.top[q], scores, dense.questions[q],
                                                  dense.passages))
    return candidates, bm25_top


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
    top, _ = bm25.search(ev.qset.questions, ev.n_docs)
    ev.rankings["bm25"] = list(top)
    ev.seconds["bm25"] = time.perf_counter() - start
    return bm25


def _run_dpr(ev: Evaluation) -> tuple[Any, DenseRun]:
    from dpr.evaluation.dense_models import load_dpr_model

    options = ev.options
    cli = {"pretrained_model_cfg": options.pretrained_model_cfg,
           "pretrained_file": options.pretrained_file}
    model = load_dpr_model(options.dpr_model, cli, device=ev.device,
                           batch_size=options.batch_size, quiet=options.quiet,
                           allow_pickle=options.allow_unsafe_pickle)
    logger.info("DPR: %s", model.description)
    dense = dense_search(model, ev.corpus, ev.qset, ev.depth)
    ev.rankings["dpr"] = [row[:ev.n_docs] for row in dense.top]
    ev.seconds["dpr"] = dense.seconds
    return model, dense


def _tune_hybrid(ev: Evaluation, bm25: BM25Retriever, model: Any, dense: DenseRun) -> float:
    """λ maximising ``tune_metric`` on ``tune_lambda_on`` (relevance by answer matching)."""
    options = ev.options
    tune = read_questions(options.tune_lambda_on)
    # tuning questions carry answers, not gold paragraphs: matched by answer
    judge = ev.judge if ev.judge.mode == "answer" else Judge(
        ev.corpus, mode="answer", match=options.match, quiet=options.quiet)
    judge.prepare(tune)
    tune_dense = dense_search(model, ev.corpus, tune, ev.depth, passages=dense.passages)
    candidates, _ = fusion_candidates(bm25, tune_dense, tune, ev.depth)
    lam, grid = tune_lambda(candidates, tune_metric_fn(judge, tune, options.tune_metric),
                            DEFAULT_LAMBDA_GRID, ev.n_docs)
    logger.info("λ = %g maximises %s on %s (%d questions)", lam, options.tune_metric,
                tune.source, len(tune.questions))
    ev.fusion["tuning"] = {"file": tune.source, "questions": len(tune.questions),
                           "metric": options.tune_metric,
                           "grid": {f"{k:g}": v for k, v in grid.items()}}
    return lam


def _run_fusions(ev: Evaluation, bm25: BM25Retriever, model: Any, dense: DenseRun) -> None:
    options = ev.options
    start = time.perf_counter()
    candidates, _ = fusion_candidates(bm25, dense, ev.qset, ev.depth)
    lam = options.hybrid_lambda
    if options.tune_lambda_on and ev.wants("hybrid"):
        lam = _tune_hybrid(ev, bm25, model, dense)
    ev.fusion.update({"lambda": lam, "depth": ev.depth, "rrf_k": options.rrf_k})
    if ev.wants("hybrid"):
        ev.rankings["hybrid"] = [linear_fusion(c, lam, ev.n_docs)[0] for c in candidates]
    if ev.wants("rrf"):
        ev.rankings["rrf"] = [rrf_fusion(c, ev.n_docs, options.rrf_k)[0] for c in candidates]
    for name in FUSIONS:
        if ev.wants(name):
            ev.seconds[name] = ev.seconds["bm25"] + ev.seconds["dpr"] + \
                time.perf_counter() - start


def _run_sbert(ev: Evaluation) -> None:
    from dpr.evaluation.dense_models import SentenceTransformerModel

    options = ev.options
    sbert = SentenceTransformerModel(options.sbert_model, device=ev.device,
                                     batch_size=options.batch_size, quiet=options.quiet)
    logger.info("sbert: %s", sbert.description)
    run = dense_search(sbert, ev.corpus, ev.qset, ev.n_docs)
    ev.rankings["sbert"] = list(run.top)
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
    bm25 = _run_bm25(ev) if ev.wants(*NEEDS_BM25) else None
    if ev.wants(*NEEDS_DPR):
        model, dense = _run_dpr(ev)
        if ev.wants(*FUSIONS):
            _run_fusions(ev, bm25, model, dense)
    if ev.wants("sbert"):
        _run_sbert(ev)
    return _report(ev)


def _report(ev: Evaluation) -> dict[str, Any]:
    options, ks = ev.options, ev.ks
    rankings = {name: ev.rankings[name] for name in options.retrievers}
    results = score_rankings(ev.judge, ev.qset, rankings, ev.seconds, ks=ks, n_docs=ev.n_docs)
    compare_k = 20 if 20 in ks else ks[-1]
    comparison = (compare(results, hits_at(results, compare_k), compare_k)
                  if len(results) > 1 else None)
    return {
        "command": options.command,
        "versions": versions(), "device": str(ev.device),
        "corpus": {"source": ev.corpus.source, "passages": len(ev.corpus.ids)},
        "questions": {"source": ev.qset.source, "count": len(ev.qset.questions),
                      "without_relevant_passage": sum(1 for n in ev.qset.num_relevant
                                                      if n == 0)},
        "relevance": options.mode, "match": options.match, "ks": ks,
        "models": {"dpr": options.dpr_model,
                   "sbert": options.sbert_model if "sbert" in options.retrievers else None},
        "bm25": options.bm25.describe() if ev.wants(*NEEDS_BM25) else None,
        "fusion": ev.fusion or None,
        "results": results, "comparison": comparison,
    }
