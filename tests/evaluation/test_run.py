"""Runs as immutable values (dpr.retrieval.run) and fusion as a function of two runs
(dpr.retrieval.fusion.fuse), on hand-computed cases."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from dpr.retrieval.fusion import ExactScores, Linear, Normalised, Reciprocal, fuse
from dpr.retrieval.run import Run, pool


def _run(name: str, rows: list[list[int]], scores: list[list[float]], seconds: float = 1.0
         ) -> Run:
    return Run(name, tuple(np.array(r) for r in rows), tuple(np.array(s) for s in scores),
               seconds, {"note": name})


def test_run_cannot_be_changed_once_made() -> None:
    # Given a run built from arrays the caller keeps
    rows = np.array([3, 1])
    run = Run("bm25", (rows,), (np.array([2.0, 1.0]),), 0.5, {"k1": 1.5})
    rows[0] = 9
    # Then the caller's later writes do not reach it, and nothing of it can be written
    assert run.rows[0].tolist() == [3, 1]
    with pytest.raises(ValueError):
        run.rows[0][0] = 7
    with pytest.raises(dataclasses.FrozenInstanceError):
        run.name = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        run.metadata["k1"] = 2.0  # type: ignore[index]


def test_run_top_and_from_arrays_keep_rank_order() -> None:
    # Given search results where question 1 got one result fewer (-1)
    run = Run.from_arrays("dpr", np.array([[4, 2, 0], [1, 3, -1]]),
                          np.array([[0.9, 0.5, 0.1], [0.8, 0.2, -np.inf]]))
    # Then the missing result is left out, and top(2) keeps the two best of each question
    assert [r.tolist() for r in run.rows] == [[4, 2, 0], [1, 3]]
    top = run.top(2)
    assert [r.tolist() for r in top.rows] == [[4, 2], [1, 3]]
    assert [s.tolist() for s in top.scores] == [[0.9, 0.5], [0.8, 0.2]]
    assert top.name == "dpr" and len(top) == 2


def test_run_refuses_rows_and_scores_of_different_lengths() -> None:
    with pytest.raises(ValueError, match="differ in shape"):
        Run("x", (np.array([1, 2]),), (np.array([1.0]),))


def test_pool_is_each_question_union_of_every_run() -> None:
    a = _run("a", [[3, 1], [0]], [[2.0, 1.0], [1.0]])
    b = _run("b", [[1, 5], [2, 0]], [[2.0, 1.0], [2.0, 1.0]])
    assert [p.tolist() for p in pool([a, b], 2)] == [[1, 3, 5], [0, 2]]
    with pytest.raises(ValueError, match="questions"):
        pool([a], 3)


def test_fuse_rrf_of_two_runs_is_a_new_run() -> None:
    # Given BM25 ranking [3, 1] and dense ranking [1, 4] for one question
    sparse = _run("bm25", [[3, 1]], [[5.0, 4.0]], seconds=1.0)
    dense = _run("dpr", [[1, 4]], [[0.9, 0.3]], seconds=2.0)
    # When fused by RRF (k = 60)
    fused = fuse(sparse, dense, Reciprocal(60), k=3, name="rrf")
    # Then 1 (ranks 2 and 1) leads, then 3 (rank 1 in BM25), then 4 (rank 2 in dense)
    assert fused.name == "rrf" and fused.rows[0].tolist() == [1, 3, 4]
    assert fused.scores[0].tolist() == pytest.approx([1 / 62 + 1 / 61, 1 / 61, 1 / 62])
    assert fused.metadata["setting"] == {"kind": "rrf", "k": 60}
    assert fused.seconds >= 3.0
    # And the inputs are unchanged
    assert sparse.rows[0].tolist() == [3, 1] and dense.rows[0].tolist() == [1, 4]


def test_fuse_linear_scores_missing_members_exactly_or_with_the_list_minimum() -> None:
    sparse = _run("bm25", [[3, 1]], [[5.0, 4.0]])
    dense = _run("dpr", [[1, 4]], [[0.9, 0.3]])
    # Without exact scores: 4 takes BM25's lowest (4.0), 3 takes dense's lowest (0.3)
    # λ = 10: 1 -> 4 + 9 = 13; 3 -> 5 + 3 = 8; 4 -> 4 + 3 = 7
    fused = fuse(sparse, dense, Linear(10.0), k=3, name="hybrid")
    assert fused.rows[0].tolist() == [1, 3, 4]
    assert fused.scores[0].tolist() == pytest.approx([13.0, 8.0, 7.0])
    # With exact scores: BM25 of 4 is 0, dense of 3 is 0.8 -> 3: 5 + 8 = 13 ties 1 (13),
    # broken by corpus row; 4 -> 0 + 3 = 3
    exact = ExactScores(sparse=lambda q, rows: np.array([{1: 4.0, 3: 5.0, 4: 0.0}[r]
                                                         for r in rows]),
                        dense=lambda q, rows: np.array([{1: 0.9, 3: 0.8, 4: 0.3}[r]
                                                        for r in rows]))
    fused = fuse(sparse, dense, Linear(10.0), k=3, name="hybrid", exact=exact)
    assert fused.rows[0].tolist() == [1, 3, 4]
    assert fused.scores[0].tolist() == pytest.approx([13.0, 13.0, 3.0])


def test_fuse_normalised_with_dense_weight_zero_ranks_as_bm25() -> None:
    sparse = _run("bm25", [[3, 1, 2]], [[5.0, 4.0, 1.0]])
    dense = _run("dpr", [[2, 1, 3]], [[0.9, 0.5, 0.1]])
    fused = fuse(sparse, dense, Normalised("minmax", 0.0), k=3)
    assert fused.rows[0].tolist() == [3, 1, 2]
    assert fused.metadata["setting"] == {"kind": "normalised", "method": "minmax",
                                         "dense_weight": 0.0}
