"""Fusion of a sparse (BM25) and a dense ranking: ``fuse(bm25 run, dense run, setting) -> run``.

Per question, the union of the two top-``depth`` lists is reranked by a setting's score
(``hybrid``, ``rrf`` or ``fusion``, as docs/EVALUATION.md, "Retrievers", defines them), ties by
corpus index; both scores of every member are exact with :class:`ExactScores` (the DPR paper's
hybrid), else a passage missing from a list takes that list's lowest score (Pyserini's rule).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dpr.retrieval.bm25 import BM25Retriever
from dpr.retrieval.dense import DenseRetriever
from dpr.retrieval.run import Run

FUSION_METHODS = ("minmax", "zscore")
DEFAULT_LAMBDA_GRID: tuple[float, ...] = tuple(sorted(
    {round(float(x), 6) for x in np.geomspace(2.0 ** -6, 2.0 ** 6, 25)} | {1.1}))
DEFAULT_FUSION_WEIGHT = 0.5
DEFAULT_WEIGHT_GRID: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(21))
RowScores = Callable[[int, np.ndarray], np.ndarray]  # (question, corpus rows) -> scores


@dataclass
class Candidates:
    """The union of one question's two top lists with both scores and both ranks."""

    index: np.ndarray  # [U] corpus indices of the union, ascending
    sparse: np.ndarray  # [U] BM25 score of each
    dense: np.ndarray  # [U] dense similarity of each
    sparse_rank: np.ndarray  # [U] 1-based rank in the BM25 top list, 0 when absent
    dense_rank: np.ndarray  # [U] 1-based rank in the dense top list, 0 when absent


def union_candidates(sparse_top: np.ndarray, dense_top: np.ndarray, sparse_union: np.ndarray,
                     dense_union: np.ndarray) -> Candidates:
    """The union of two top lists (corpus indices, best first) from both scores of each
    member of the union [U], in ascending corpus index order
    (``np.union1d(sparse_top, dense_top)``)."""
    union = np.union1d(sparse_top, dense_top).astype(np.int64)

    def ranks_in(top: np.ndarray) -> np.ndarray:
        ranks = np.zeros(len(union), dtype=np.int64)
        ranks[np.searchsorted(union, top)] = np.arange(1, len(top) + 1)  # top ⊂ sorted union
        return ranks

    return Candidates(union, np.asarray(sparse_union, dtype=np.float64),
                      np.asarray(dense_union, dtype=np.float64), ranks_in(sparse_top),
                      ranks_in(dense_top))


def normalise(scores: np.ndarray, method: str) -> np.ndarray:
    """Per-question score normalisation over the candidates, ``minmax`` or ``zscore`` (else
    ValueError); a list whose scores are all equal normalises to zeros (it ranks nothing)."""
    scores = np.asarray(scores, dtype=np.float64)
    if method == "minmax":
        spread = scores.max() - scores.min() if len(scores) else 0.0
        return (scores - scores.min()) / spread if spread > 0 else np.zeros_like(scores)
    if method == "zscore":
        std = scores.std() if len(scores) else 0.0
        return (scores - scores.mean()) / std if std > 0 else np.zeros_like(scores)
    raise ValueError(f"unknown normalisation {method!r} (choose among {FUSION_METHODS})")


@dataclass(frozen=True)
class Linear:
    """The linear fusion ``bm25 + lam · dense`` (``hybrid``)."""

    lam: float

    def scores(self, c: Candidates) -> np.ndarray:
        return c.sparse + self.lam * c.dense

    def describe(self) -> dict[str, Any]:
        return {"kind": "linear", "lambda": self.lam}


@dataclass(frozen=True)
class Reciprocal:
    """Reciprocal rank fusion with constant ``k`` (``rrf``)."""

    k: int = 60

    def scores(self, c: Candidates) -> np.ndarray:
        total = np.zeros(len(c.index), dtype=np.float64)
        for ranks in (c.sparse_rank, c.dense_rank):
            present = ranks > 0
            total[present] += 1.0 / (self.k + ranks[present])
        return total

    def describe(self) -> dict[str, Any]:
        return {"kind": "rrf", "k": self.k}


@dataclass(frozen=True)
class Normalised:
    """Normalised-score fusion (``fusion``): ``method`` and the dense side's ``weight``."""

    method: str = "minmax"
    weight: float = DEFAULT_FUSION_WEIGHT

    def scores(self, c: Candidates) -> np.ndarray:
        return ((1.0 - self.weight) * normalise(c.sparse, self.method)
                + self.weight * normalise(c.dense, self.method))

    def describe(self) -> dict[str, Any]:
        return {"kind": "normalised", "method": self.method, "dense_weight": self.weight}


FusionSetting = Linear | Reciprocal | Normalised


def fused_ranking(candidates: Candidates, setting: FusionSetting, top_k: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Top-k of one question's candidates under a fusion setting: (corpus indices, scores),
    best first, ties by corpus index."""
    scores = setting.scores(candidates)
    order = np.lexsort((candidates.index, -scores))[:top_k]
    return candidates.index[order], scores[order]


def lambda_settings(grid: Sequence[float] = DEFAULT_LAMBDA_GRID) -> list[Linear]:
    """The linear settings of a λ grid, smallest first (the first of equals wins)."""
    return [Linear(lam) for lam in sorted(float(x) for x in grid)]


def normalised_settings(methods: Sequence[str] = FUSION_METHODS,
                        weights: Sequence[float] = DEFAULT_WEIGHT_GRID) -> list[Normalised]:
    """The normalised settings of a grid: ``methods`` order, then increasing weight."""
    return [Normalised(m, float(w)) for m in methods for w in sorted(weights)]


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
               {"setting": setting.describe(), **(metadata or {})})


def fuse(sparse: Run, dense: Run, setting: FusionSetting, *, k: int, name: str = "fusion",
         exact: ExactScores | None = None) -> Run:
    """Fuses a BM25 run and a dense run of the same questions into a new run."""
    start = time.perf_counter()
    union = candidates(sparse, dense, exact)
    return fuse_candidates(union, setting, k=k, name=name, seconds=sparse.seconds +
                           dense.seconds + time.perf_counter() - start)


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
        return cls(bm25, dense, questions, bm25.run(questions, depth),
                   *dense.run(questions, depth))

    def candidates(self) -> list[Candidates]:
        """The union of both lists per question, both scores exact."""
        tokens = self.bm25.query_tokens(self.questions)
        exact = ExactScores(
            sparse=lambda q, rows: self.bm25.scores(tokens[q])[rows],
            dense=lambda q, rows: self.dense.searcher.scores(self.vectors[q], rows))
        return candidates(self.sparse_run, self.dense_run, exact)
