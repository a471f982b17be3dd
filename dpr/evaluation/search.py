"""Search primitives and the state one evaluation shares between its retrievers."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from dpr.evaluation.bm25 import BM25Retriever, top_k_of
from dpr.evaluation.fusion import Candidates, candidates_from_vectors
from dpr.evaluation.index import DenseIndex
from dpr.evaluation.inputs import Corpus, QuestionSet
from dpr.evaluation.options import TOP_KS, EvalOptions
from dpr.evaluation.relevance import Judge


@dataclass
class DenseRun:
    """A dense model's vectors over the corpus and its ranking of one question set."""

    passages: np.ndarray  # [N × D]
    questions: np.ndarray  # [Q × D]
    top: np.ndarray  # [Q × depth] corpus indices
    seconds: float
    scores: np.ndarray  # [Q × depth] inner products of ``top``


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
    scores: dict[str, list[np.ndarray]] = field(default_factory=dict)  # of each ranking
    seconds: dict[str, float] = field(default_factory=dict)
    fusion: dict[str, Any] = field(default_factory=dict)

    @property
    def ks(self) -> list[int]:
        """The top-k cut-offs reported: those up to the ranking length."""
        return [k for k in TOP_KS if k <= self.n_docs] or [self.n_docs]

    @property
    def compare_k(self) -> int:
        """The k of the ranking and of the sign tests: 20, or the largest k when smaller."""
        return 20 if 20 in self.ks else self.ks[-1]


def dense_search(model: Any, corpus: Corpus, qset: QuestionSet, depth: int, *,
                 passages: np.ndarray | None = None) -> DenseRun:
    """Encodes (unless ``passages`` are given) and searches a flat inner-product index."""
    start = time.perf_counter()
    if passages is None:
        passages = model.encode_passages(list(zip(corpus.titles, corpus.texts)))
    questions = model.encode_questions(qset.questions)
    index = DenseIndex(passages.shape[1])
    index.add([str(i) for i in range(len(passages))], passages)
    ids, scores = index.search(questions, depth)
    top = np.asarray([[int(i) for i in row] for row in ids], dtype=np.int64).reshape(
        len(questions), -1)
    return DenseRun(passages, questions, top, time.perf_counter() - start,
                    scores[:, :top.shape[1]])


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
