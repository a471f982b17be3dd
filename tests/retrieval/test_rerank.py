"""Re-ranking a first-stage run (`dpr.retrieval.rerank.rerank`): the same passages in the top
``depth``, in the reranker's order, with a scorer whose order differs from the first stage's,
and with the tiny reranker checkpoint."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from dpr.inference import load_reranker
from dpr.retrieval.corpus import Corpus
from dpr.retrieval.rerank import rerank
from dpr.retrieval.run import Run
from dpr.utils.errors import UsageError

CORPUS = Corpus([f"p{i}" for i in range(30)], [f"titre {i}" for i in range(30)],
                [f"texte {i}" for i in range(30)], "memory")


class TableScorer:
    """Scores a pair by a fixed random value of its (question, passage), recording the calls."""

    description = "table scorer"

    def __init__(self, seed: int = 0, ties: bool = False) -> None:
        self.rng, self.ties, self.calls = np.random.default_rng(seed), ties, []
        self.table: dict[tuple[str, str], float] = {}

    def score_pairs(self, pairs: Sequence[tuple[str, tuple[str, str]]]) -> np.ndarray:
        self.calls.append(len(pairs))
        for question, (_, text) in pairs:
            value = float(self.rng.integers(0, 3)) if self.ties else float(self.rng.normal())
            self.table.setdefault((question, text), value)
        return np.array([self.table[(q, text)] for q, (_, text) in pairs], dtype=np.float32)


def random_run(seed: int, questions: int, *, k: int) -> Run:
    """A first stage over CORPUS: per question k distinct rows, scores descending."""
    rng = np.random.default_rng(seed)
    rows = [rng.permutation(len(CORPUS.ids))[:k] for _ in range(questions)]
    scores = [np.sort(rng.normal(size=k))[::-1] for _ in range(questions)]
    return Run("bm25", tuple(rows), tuple(scores), 2.0, {"note": "first"})


@pytest.mark.parametrize("seed", range(5))
def test_rerank_keeps_the_top_depth_passages_and_orders_them_by_the_reranker(
        seed: int) -> None:
    # Given a first stage of 6 questions × 12 rows and a scorer unrelated to it
    run, scorer = random_run(seed, 6, k=12), TableScorer(seed)
    questions = [f"question {q}" for q in range(6)]
    # When re-ranking the top 8
    out = rerank(run, scorer, questions, CORPUS, depth=8)
    # Then each question holds exactly its first 8 rows, ordered by the reranker's scores
    changed = 0
    for q, (rows, scores) in enumerate(zip(out.rows, out.scores)):
        assert sorted(rows.tolist()) == sorted(run.rows[q][:8].tolist())
        expected = [scorer.table[(questions[q], CORPUS.texts[r])] for r in rows.tolist()]
        assert scores.tolist() == pytest.approx(expected)
        assert np.all(np.diff(scores) <= 0)
        changed += rows.tolist() != run.rows[q][:8].tolist()
    assert changed > 0  # the order really changed
    # And every pair was scored in one call
    assert scorer.calls == [6 * 8]


def test_rerank_breaks_ties_by_the_first_stage_rank() -> None:
    # Given a scorer giving only the values 0, 1 and 2 (many ties)
    run = random_run(3, 4, k=10)
    out = rerank(run, TableScorer(1, ties=True), ["a", "b", "c", "d"], CORPUS, depth=10)
    # Then within equal scores the first stage's order is kept
    for rows, scores, first in zip(out.rows, out.scores, run.rows):
        rank = {row: i for i, row in enumerate(first.tolist())}
        for value in set(scores.tolist()):
            tied = [rank[r] for r, s in zip(rows.tolist(), scores.tolist()) if s == value]
            assert tied == sorted(tied)
        assert len(set(scores.tolist())) < len(scores)  # there were ties


def test_rerank_records_time_metadata_and_leaves_out_rows_beyond_depth(
        caplog: pytest.LogCaptureFixture) -> None:
    run = random_run(0, 3, k=5)
    with caplog.at_level("INFO"):
        out = rerank(run, TableScorer(), ["a", "b", "c"], CORPUS, depth=2, name="rerank:x")
    assert out.name == "rerank:x" and [len(r) for r in out.rows] == [2, 2, 2]
    assert out.seconds >= run.seconds
    info = out.metadata["rerank"]
    assert (info["reranker"], info["depth"], info["first_stage"], info["pairs"]) == (
        "table scorer", 2, "bm25", 6)
    assert info["seconds_per_question"] >= 0 and out.metadata["note"] == "first"
    assert "the top 2 of bm25 re-ranked, the rows below them left out" in caplog.text


def test_rerank_of_empty_candidate_lists() -> None:
    # Given a question with no candidate between two with candidates, and a run of none
    run = Run("dpr", (np.array([4, 7]), np.array([], dtype=np.int64), np.array([1])),
              (np.array([2.0, 1.0]), np.array([]), np.array([0.5])))
    scorer = TableScorer()
    out = rerank(run, scorer, ["a", "b", "c"], CORPUS, depth=20)
    # Then the empty list stays empty and the others keep their passages
    assert [sorted(r.tolist()) for r in out.rows] == [[4, 7], [], [1]]
    assert [len(s) for s in out.scores] == [2, 0, 1]
    empty = rerank(Run("dpr", (), ()), scorer, [], CORPUS, depth=20)
    assert len(empty) == 0


def test_rerank_refuses_a_depth_below_1_and_mismatched_questions() -> None:
    run = random_run(0, 2, k=3)
    with pytest.raises(UsageError, match="--reranker_depth must be >= 1, got 0"):
        rerank(run, TableScorer(), ["a", "b"], CORPUS, depth=0)
    with pytest.raises(ValueError, match="2 questions, 1 given"):
        rerank(run, TableScorer(), ["a"], CORPUS, depth=3)


def test_rerank_with_the_tiny_reranker_follows_its_pair_scores(
        reranker_checkpoint: Path) -> None:
    # Given the tiny trained reranker (random head) and a first stage over three passages
    reranker = load_reranker(reranker_checkpoint)
    corpus = Corpus(["a", "b", "c"], ["Loire", "Seine", ""],
                    ["La Loire coule en France.", "La Seine traverse Paris.", "Victor Hugo."],
                    "memory")
    question = "Où coule la Loire ?"
    run = Run("bm25", (np.array([2, 1, 0]),), (np.array([3.0, 2.0, 1.0]),))
    # When re-ranking
    out = rerank(run, reranker, [question], corpus, depth=3)
    # Then the order and the scores are those of score_pairs on each pair
    alone = reranker.score_pairs([(question, (corpus.titles[r], corpus.texts[r]))
                                  for r in range(3)])
    assert out.rows[0].tolist() == np.argsort(-alone, kind="stable").tolist()
    assert out.scores[0].tolist() == pytest.approx(np.sort(alone)[::-1].tolist(), abs=1e-5)
    assert out.metadata["rerank"]["reranker"] == reranker.description
