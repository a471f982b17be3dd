"""Fusion of a sparse (BM25) and a dense ranking, per question.

Both fusions rerank the union of the two top-``depth`` lists:

* linear (DPR paper, §5.1 "BM25 + DPR"): ``score = bm25(q, p) + λ · sim(q, p)``, with both
  scores computed exactly for every passage of the union (the paper used λ = 1.1 and depth
  2000);
* reciprocal rank fusion (Cormack et al. 2009): ``score = Σ 1 / (k + rank)`` over the lists
  that contain the passage, ranks starting at 1, k = 60 by default.
* normalised-score fusion (as Pyserini's ``--normalization``): each retriever's scores are
  normalised per question over the union (``minmax``: ``(s - min) / (max - min)``; ``zscore``:
  ``(s - mean) / std``, population std; a constant score list becomes all zeros), then
  ``score = (1 - w) · bm25' + w · dense'`` with ``w`` the weight of the dense side.

Ties are broken by corpus index, so results are deterministic.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

Setting = TypeVar("Setting", bound=Hashable)
FUSION_METHODS = ("minmax", "zscore")


@dataclass
class Candidates:
    """The union of one question's two top lists with both scores and both ranks.

    Attributes:
        index: Corpus indices of the union, ascending [U].
        sparse: BM25 score of each [U].
        dense: Dense similarity of each [U].
        sparse_rank: 1-based rank in the BM25 top list, 0 when absent [U].
        dense_rank: 1-based rank in the dense top list, 0 when absent [U].
    """

    index: np.ndarray
    sparse: np.ndarray
    dense: np.ndarray
    sparse_rank: np.ndarray
    dense_rank: np.ndarray


def make_candidates(sparse_top: np.ndarray, dense_top: np.ndarray, sparse_scores: np.ndarray,
                    dense_union_scores: np.ndarray) -> Candidates:
    """Builds the union of two top lists.

    Args:
        sparse_top: Corpus indices of the BM25 top list, best first.
        dense_top: Corpus indices of the dense top list, best first.
        sparse_scores: BM25 score of every corpus passage [N].
        dense_union_scores: Dense similarity of each member of the union, in ascending corpus
            index order (``np.union1d(sparse_top, dense_top)``) [U].
    """
    union = np.union1d(sparse_top, dense_top).astype(np.int64)
    return union_candidates(sparse_top, dense_top, sparse_scores[union], dense_union_scores)


def union_candidates(sparse_top: np.ndarray, dense_top: np.ndarray, sparse_union: np.ndarray,
                     dense_union: np.ndarray) -> Candidates:
    """Builds the union of two top lists from both scores of each member of the union.

    Args:
        sparse_top: Corpus indices of the BM25 top list, best first.
        dense_top: Corpus indices of the dense top list, best first.
        sparse_union: BM25 score of each member of the union, in ascending corpus index
            order (``np.union1d(sparse_top, dense_top)``) [U].
        dense_union: Dense similarity of each member of the union, same order [U].
    """
    union = np.union1d(sparse_top, dense_top).astype(np.int64)
    if len(dense_union) != len(union) or len(sparse_union) != len(union):
        raise ValueError(f"{len(sparse_union)} sparse and {len(dense_union)} dense scores for "
                         f"a union of {len(union)}")
    return Candidates(union, np.asarray(sparse_union, dtype=np.float64),
                      np.asarray(dense_union, dtype=np.float64),
                      _ranks_in(union, sparse_top), _ranks_in(union, dense_top))


def _ranks_in(union: np.ndarray, top: np.ndarray) -> np.ndarray:
    ranks = np.zeros(len(union), dtype=np.int64)
    if len(top):
        positions = np.searchsorted(union, top)  # union is sorted and contains every top item
        ranks[positions] = np.arange(1, len(top) + 1)
    return ranks


def candidates_from_vectors(sparse_top: np.ndarray, dense_top: np.ndarray,
                            sparse_scores: np.ndarray, question: np.ndarray,
                            passages: np.ndarray) -> Candidates:
    """:func:`make_candidates` with the dense similarity computed as ``question · passage``
    for the union only (passages [N × D], question [D])."""
    union = np.union1d(sparse_top, dense_top).astype(np.int64)
    dense = passages[union].astype(np.float64) @ question.astype(np.float64)
    return make_candidates(sparse_top, dense_top, sparse_scores, dense)


def _ranked(candidates: Candidates, scores: np.ndarray, top_k: int) -> tuple[np.ndarray,
                                                                           np.ndarray]:
    order = np.lexsort((candidates.index, -scores))[:top_k]
    return candidates.index[order], scores[order]


def linear_fusion(candidates: Candidates, lam: float, top_k: int) -> tuple[np.ndarray,
                                                                          np.ndarray]:
    """Top-k of ``bm25 + lam · dense`` over the union: (corpus indices, scores), best first."""
    return _ranked(candidates, candidates.sparse + lam * candidates.dense, top_k)


def rrf_scores(candidates: Candidates, k: int = 60) -> np.ndarray:
    """Reciprocal rank fusion score of each union member."""
    total = np.zeros(len(candidates.index), dtype=np.float64)
    for ranks in (candidates.sparse_rank, candidates.dense_rank):
        present = ranks > 0
        total[present] += 1.0 / (k + ranks[present])
    return total


def rrf_fusion(candidates: Candidates, top_k: int, k: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """Top-k by reciprocal rank fusion: (corpus indices, scores), best first."""
    return _ranked(candidates, rrf_scores(candidates, k), top_k)


DEFAULT_LAMBDA_GRID: tuple[float, ...] = tuple(sorted(
    {round(float(x), 6) for x in np.geomspace(2.0 ** -6, 2.0 ** 6, 25)} | {1.1}))


def tune_lambda(candidates: Sequence[Candidates], score_fn: Callable[[list[np.ndarray]], float],
                grid: Sequence[float] = DEFAULT_LAMBDA_GRID, top_k: int = 100
                ) -> tuple[float, dict[float, float]]:
    """Chooses λ of the linear fusion maximising ``score_fn`` on a tuning set.

    Args:
        candidates: One :class:`Candidates` per tuning question.
        score_fn: Called with the list of per-question rankings (corpus indices, best first)
            for one λ; returns the metric to maximise.
        grid: λ values tried.
        top_k: Length of the rankings given to ``score_fn``.

    Returns:
        The best λ (the smallest among equals) and the metric for every λ of the grid.
    """
    settings = sorted(float(lam) for lam in grid)
    return grid_search(candidates, score_fn, settings,
                       lambda c, lam: linear_fusion(c, lam, top_k)[0])


def grid_search(candidates: Sequence[Candidates], score_fn: Callable[[list[np.ndarray]], float],
                settings: Sequence[Setting], rank: Callable[[Candidates, Setting], np.ndarray]
                ) -> tuple[Setting, dict[Setting, float]]:
    """The setting whose rankings maximise ``score_fn``; the first of equals wins.

    Args:
        candidates: One :class:`Candidates` per tuning question.
        score_fn: Metric of a list of per-question rankings (corpus indices, best first).
        settings: The values tried, in order of preference among equals.
        rank: The ranking of one question's candidates under one setting.

    Returns:
        The best setting and the metric of every setting.
    """
    results = {s: float(score_fn([rank(c, s) for c in candidates])) for s in settings}
    return best_of(results, settings), results


def best_of(results: Mapping[Setting, float], settings: Sequence[Setting]) -> Setting:
    """The first setting (in ``settings`` order) with the best metric in ``results``."""
    best = max(results[s] for s in settings)
    return next(s for s in settings if results[s] == best)


def normalise(scores: np.ndarray, method: str) -> np.ndarray:
    """Per-question score normalisation over the candidates: ``minmax`` or ``zscore``.

    A list whose scores are all equal normalises to zeros (it then ranks nothing).

    Raises:
        ValueError: For an unknown method (the command line only offers the known ones).
    """
    scores = np.asarray(scores, dtype=np.float64)
    if method == "minmax":
        spread = scores.max() - scores.min() if len(scores) else 0.0
        return (scores - scores.min()) / spread if spread > 0 else np.zeros_like(scores)
    if method == "zscore":
        std = scores.std() if len(scores) else 0.0
        return (scores - scores.mean()) / std if std > 0 else np.zeros_like(scores)
    raise ValueError(f"unknown normalisation {method!r} (choose among {FUSION_METHODS})")


def normalised_scores(candidates: Candidates, method: str, weight: float) -> np.ndarray:
    """``(1 - weight) · norm(bm25) + weight · norm(dense)`` of each union member."""
    return ((1.0 - weight) * normalise(candidates.sparse, method)
            + weight * normalise(candidates.dense, method))


def normalised_fusion(candidates: Candidates, method: str, weight: float, top_k: int
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Top-k by normalised-score fusion: (corpus indices, scores), best first."""
    return _ranked(candidates, normalised_scores(candidates, method, weight), top_k)


DEFAULT_FUSION_WEIGHT = 0.5
DEFAULT_WEIGHT_GRID: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(21))


def tune_normalised_fusion(candidates: Sequence[Candidates],
                           score_fn: Callable[[list[np.ndarray]], float], *,
                           methods: Sequence[str] = FUSION_METHODS,
                           weights: Sequence[float] = DEFAULT_WEIGHT_GRID, top_k: int = 100
                           ) -> tuple[tuple[str, float], dict[tuple[str, float], float]]:
    """Chooses the normalisation and the dense weight maximising ``score_fn``.

    Returns:
        The best ``(method, weight)`` (the first of equals in ``methods`` order, then by
        increasing weight) and the metric of every pair.
    """
    settings = [(m, float(w)) for m in methods for w in sorted(weights)]
    return grid_search(candidates, score_fn, settings,
                       lambda c, s: normalised_fusion(c, s[0], s[1], top_k)[0])


@dataclass(frozen=True)
class Linear:
    """The linear fusion ``bm25 + lam · dense`` (``hybrid``)."""

    lam: float


@dataclass(frozen=True)
class Reciprocal:
    """Reciprocal rank fusion with constant ``k`` (``rrf``)."""

    k: int = 60


@dataclass(frozen=True)
class Normalised:
    """Normalised-score fusion (``fusion``): ``method`` and the dense side's ``weight``."""

    method: str = "minmax"
    weight: float = DEFAULT_FUSION_WEIGHT


FusionSetting = Linear | Reciprocal | Normalised


def fused_ranking(candidates: Candidates, setting: FusionSetting, top_k: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Top-k of one question's candidates under a fusion setting: (corpus indices, scores)."""
    if isinstance(setting, Linear):
        return linear_fusion(candidates, setting.lam, top_k)
    if isinstance(setting, Reciprocal):
        return rrf_fusion(candidates, top_k, setting.k)
    return normalised_fusion(candidates, setting.method, setting.weight, top_k)


def lambda_settings(grid: Sequence[float] = DEFAULT_LAMBDA_GRID) -> list[Linear]:
    """The linear settings of a λ grid, smallest first (the first of equals wins)."""
    return [Linear(lam) for lam in sorted(float(x) for x in grid)]


def normalised_settings(methods: Sequence[str] = FUSION_METHODS,
                        weights: Sequence[float] = DEFAULT_WEIGHT_GRID) -> list[Normalised]:
    """The normalised settings of a grid: ``methods`` order, then increasing weight."""
    return [Normalised(m, float(w)) for m in methods for w in sorted(weights)]
