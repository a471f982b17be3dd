"""Unit tests for dpr.evaluation.metrics (hand-made cases); answer matching is tested in
tests/data/test_answers.py."""

from __future__ import annotations

import pytest

from dpr.evaluation.metrics import mrr, top_k_accuracy


def test_top_k_accuracy_counts_ranks_below_k() -> None:
    # Given first-hit ranks 0, 2, miss, 9
    ranks = [0, 2, None, 9]
    # When computing top-k accuracy
    result = top_k_accuracy(ranks, [1, 3, 10, 20])
    # Then each k counts ranks strictly below it
    assert result == {1: 0.25, 3: 0.5, 10: 0.75, 20: 0.75}
    assert top_k_accuracy([], [5]) == {5: 0.0}
    with pytest.raises(ValueError):
        top_k_accuracy([0], [0])


def test_mrr_averages_reciprocal_ranks_with_cutoff() -> None:
    # Given first-hit ranks 0, 1, miss, 3
    ranks = [0, 1, None, 3]
    # When computing MRR with and without cut-off
    # Then misses contribute 0 and the cut-off removes late hits
    assert mrr(ranks) == pytest.approx((1 + 0.5 + 0 + 0.25) / 4)
    assert mrr(ranks, cutoff=2) == pytest.approx((1 + 0.5) / 4)
    assert mrr([]) == 0.0
