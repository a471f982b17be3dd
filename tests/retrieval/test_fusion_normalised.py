"""Normalised-score fusion (min-max / z-score, weighted sum) on hand-computed scores."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dpr.evaluation.inputs import QuestionSet
from dpr.evaluation.relevance import Judge
from dpr.evaluation.tuning import tune
from dpr.retrieval.fusion import (
    DEFAULT_WEIGHT_GRID,
    Normalised,
    fused_ranking,
    normalise,
    normalised_settings,
    union_candidates,
)


def three_candidates():
    # union [0, 1, 2]: BM25 5, 0, 3 (passage 3 scores 1, outside both lists); dense .5, 2, 1.5
    return union_candidates(np.array([0, 2]), np.array([1, 2]), np.array([5.0, 0.0, 3.0]),
                            np.array([0.5, 2.0, 1.5]))


def test_minmax_maps_each_list_to_0_1() -> None:
    assert normalise(np.array([5.0, 0.0, 3.0]), "minmax").tolist() == pytest.approx(
        [1.0, 0.0, 0.6])
    assert normalise(np.array([0.5, 2.0, 1.5]), "minmax").tolist() == pytest.approx(
        [0.0, 1.0, 2 / 3])


def test_zscore_uses_the_population_std() -> None:
    # BM25: mean 8/3, deviations 7/3, -8/3, 1/3, variance 38/9 -> z = (7, -8, 1) / sqrt(38)
    assert normalise(np.array([5.0, 0.0, 3.0]), "zscore").tolist() == pytest.approx(
        [7 / math.sqrt(38), -8 / math.sqrt(38), 1 / math.sqrt(38)])
    # dense: mean 4/3, deviations -5/6, 4/6, 1/6, variance 7/18 -> z = (-5, 4, 1) / sqrt(14)
    assert normalise(np.array([0.5, 2.0, 1.5]), "zscore").tolist() == pytest.approx(
        [-5 / math.sqrt(14), 4 / math.sqrt(14), 1 / math.sqrt(14)])


@pytest.mark.parametrize("method", ["minmax", "zscore"])
def test_constant_or_single_scores_normalise_to_zeros(method: str) -> None:
    assert normalise(np.array([3.0, 3.0, 3.0]), method).tolist() == [0.0, 0.0, 0.0]
    assert normalise(np.array([7.0]), method).tolist() == [0.0]


def test_unknown_method_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown normalisation"):
        normalise(np.array([1.0, 2.0]), "softmax")


@pytest.mark.parametrize("weight, expected_ids, expected_scores", [
    # 0.5: (1 + 0) / 2, (0 + 1) / 2, (0.6 + 2/3) / 2 -> 2 first, then the 0/1 tie by index
    (0.5, [2, 0, 1], [19 / 30, 0.5, 0.5]),
    # 0.2: 0.8 * (1, 0, 0.6) + 0.2 * (0, 1, 2/3)
    (0.2, [0, 2, 1], [0.8, 0.48 + 0.4 / 3, 0.2]),
    # 0.9: 0.1 * (1, 0, 0.6) + 0.9 * (0, 1, 2/3)
    (0.9, [1, 2, 0], [0.9, 0.66, 0.1]),
])
def test_minmax_fusion_is_the_weighted_sum(weight: float, expected_ids: list[int],
                                           expected_scores: list[float]) -> None:
    ids, scores = fused_ranking(three_candidates(), Normalised("minmax", weight), 3)
    assert ids.tolist() == expected_ids
    assert scores.tolist() == pytest.approx(expected_scores)


def test_zscore_fusion_weights_both_sides() -> None:
    scores = Normalised("zscore", 0.25).scores(three_candidates())
    sparse = np.array([7, -8, 1]) / math.sqrt(38)
    dense = np.array([-5, 4, 1]) / math.sqrt(14)
    assert scores.tolist() == pytest.approx((0.75 * sparse + 0.25 * dense).tolist())
    # weight 0 and 1 are BM25 alone and dense alone
    for weight, ranking in ((0.0, [0, 2, 1]), (1.0, [1, 2, 0])):
        assert fused_ranking(three_candidates(), Normalised("zscore", weight), 3)[0].tolist() \
            == ranking


def test_tuning_picks_the_first_weight_that_ranks_the_answer_first() -> None:
    # Given passage 1 is the answer: with minmax it ranks first when w > 1 - w (w > 0.5) and
    # w > 0.6 (1 - w) + (2/3) w, i.e. w > 9/14 = 0.643
    qset = QuestionSet("tune", ["q"], [["x"]], gold=[{1}])
    best, grid, _ = tune([three_candidates()], normalised_settings(),
                         judge=Judge(["a", "b", "c"], mode="id"), qset=qset, metric="top1")
    # Then the first grid weight above 9/14 with minmax (tried before zscore) wins
    assert best == Normalised("minmax", 0.65)
    assert len(grid) == 2 * len(DEFAULT_WEIGHT_GRID) == 42
    assert grid[Normalised("minmax", 0.6)] == 0.0 and grid[Normalised("minmax", 0.65)] == 1.0
