"""Relevance judged on the retrieved lists (dpr.evaluation.relevance): equal to a scan of the
whole corpus for top-k accuracy and MRR, R = relevant among retrieved for recall and MAP, only
pooled passages read, judgments re-used, the same in worker processes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from dpr.data.answers import has_answer
from dpr.evaluation import relevance
from dpr.evaluation.inputs import QuestionSet
from dpr.evaluation.metrics import retrieval_metrics
from dpr.evaluation.relevance import AMONG_RETRIEVED, Judge, tuning_metric
from dpr.evaluation.report import score_runs
from dpr.retrieval.run import Run, pool

CITIES = ["Lyon", "Brest", "Nantes", "Lille", "Rennes", "Dijon", "Nancy"]
TEXTS = [f"En {1900 + i}, {CITIES[i % 7]} comptait {1000 + 37 * i} habitants."
         for i in range(60)]
QSET = QuestionSet("qas", ["Où ?", "Combien ?", "Quand ?", "Qui ?"],
                   [["Lyon"], ["1037"], ["Nantes", "1905"], ["Paris"]])


class CountingTexts(Sequence[str]):
    """Texts that count which rows were read."""

    def __init__(self, texts: list[str]) -> None:
        self.texts, self.read = texts, []

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, row):  # type: ignore[override]
        self.read.append(row)
        return self.texts[row]


def _random_run(name: str, seed: int, k: int = 10) -> Run:
    rng = np.random.default_rng(seed)
    rows = tuple(rng.permutation(len(TEXTS))[:k] for _ in QSET.questions)
    return Run(name, rows, tuple(np.linspace(1.0, 0.1, k) for _ in rows))


def _full_scan_relevance(run: Run) -> tuple[list[list[bool]], list[set[int]]]:
    relevant = [{row for row, text in enumerate(TEXTS) if has_answer(a, text)}
                for a in QSET.answers]
    return [[int(r) in rel for r in rows] for rows, rel in zip(run.rows, relevant)], relevant


def test_judging_retrieved_lists_equals_the_full_scan_for_top_k_and_mrr() -> None:
    # Given two random runs of 10 among 60 passages (many relevant passages left out)
    runs = [_random_run("a", 1), _random_run("b", 2)]
    qrels = Judge(TEXTS, mode="answer").judge(QSET, pool(runs, 4))
    results = score_runs(runs, qrels, ks=[1, 5, 10], n_docs=10)
    for run in runs:
        # When the same run is scored against a scan of the whole corpus
        flags, everywhere = _full_scan_relevance(run)
        full = retrieval_metrics(flags, [len(r) for r in everywhere], ks=[1, 5, 10],
                                 curve_to=10)
        # Then top-k accuracy, MRR and the curve are the full scan's
        ours = results[run.name]
        assert ours["top_k"] == full["top_k"] and ours["mrr@10"] == full["mrr@10"]
        assert ours["curve"] == full["curve"]
        # And recall and MAP divide by the relevant passages among the pooled lists
        pooled = [rel & set(p.tolist()) for rel, p in zip(everywhere, pool(runs, 4))]
        assert qrels.num_relevant == [len(p) for p in pooled]
        documented = retrieval_metrics(flags, [len(p) for p in pooled], ks=[1, 5, 10],
                                       curve_to=10)
        assert ours["recall"] == documented["recall"]
        assert ours["map@10"] == documented["map@10"]
    assert qrels.definition == AMONG_RETRIEVED
    assert any(len(p) < len(e) for p, e in zip(pooled, everywhere))  # the pool misses some


def test_judge_reads_only_pooled_passages_and_reuses_judgments() -> None:
    # Given a corpus whose reads are counted
    texts = CountingTexts(TEXTS)
    judge = Judge(texts, mode="answer")
    first = _random_run("a", 3, k=5)
    qrels = judge.judge(QSET, pool([first], 4))
    # Then only the pooled passages were read, each once
    assert sorted(texts.read) == sorted(set(np.concatenate(first.rows).tolist()))
    # When a second run is judged with the first judgments
    texts.read.clear()
    second = _random_run("b", 4, k=5)
    both = judge.judge(QSET, pool([first, second], 4), qrels)
    # Then only passages new to some question are read, and the old judgments are kept
    new = {r for q in range(4) for r in set(second.rows[q].tolist()) -
           set(first.rows[q].tolist())}
    assert set(texts.read) == new
    for q in range(4):
        assert qrels.relevant[q] <= both.relevant[q]
        assert both.flags(q, first.rows[q]) == qrels.flags(q, first.rows[q])
    # And judging the same pool again reads nothing
    texts.read.clear()
    assert judge.judge(QSET, pool([second], 4), both) is both and texts.read == []


def test_judge_in_worker_processes_equals_in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a pool large enough for two processes (the threshold lowered for the test)
    monkeypatch.setattr(relevance, "TEXTS_PER_WORKER", 8)
    runs = [_random_run("a", 5, k=30), _random_run("b", 6, k=30)]
    serial = Judge(TEXTS, mode="answer", workers=1).judge(QSET, pool(runs, 4))
    parallel = Judge(TEXTS, mode="answer", workers=2).judge(QSET, pool(runs, 4))
    assert parallel == serial


def test_qrels_refuse_rows_that_were_not_judged() -> None:
    run = _random_run("a", 7, k=3)
    qrels = Judge(TEXTS, mode="answer").judge(QSET, pool([run], 4))
    unseen = next(r for r in range(60) if r not in run.rows[0])
    with pytest.raises(ValueError, match="not judged"):
        qrels.flags(0, [unseen])


def test_id_mode_takes_the_gold_passages_without_reading_texts() -> None:
    qset = QuestionSet("squad", ["a ?", "b ?"], [["x"], ["y"]], gold=[{2}, {0, 5}])
    texts = CountingTexts(TEXTS)
    qrels = Judge(texts, mode="id").judge(qset, [np.array([1, 2]), np.array([3])])
    assert qrels.num_relevant == [1, 2] and texts.read == []
    assert qrels.flags(1, [5, 9, 0]) == [True, False, True]  # any row: gold is complete


def test_tuning_metric_reads_only_its_depth() -> None:
    # Given one question whose first relevant passage is at rank 10 (0-based)
    qset = QuestionSet("q", ["Où ?"], [["Lyon"]])
    ranking = np.array([1, 2, 3, 4, 5, 8, 9, 10, 11, 12, 0])  # TEXTS[0] names Lyon
    qrels = Judge(TEXTS, mode="answer").judge(qset, [ranking])
    assert tuning_metric(qrels, [ranking], "mrr10") == 0.0
    assert tuning_metric(qrels, [ranking], "top20") == 1.0
    assert tuning_metric(qrels, [ranking[::-1]], "mrr10") == 1.0


