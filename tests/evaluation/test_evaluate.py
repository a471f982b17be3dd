"""Tests of the evaluation report: metrics on hand-checked cases, fusion scores, BM25 ranking,
and ``python -m dpr.evaluate`` end to end (TSV and SQuAD inputs, checkpoint and dpr2hf folder,
sentence-transformers baseline, λ tuning, errors)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import SAMPLE_SQUAD

from dpr import evaluate
from dpr.evaluation.inputs import QuestionSet
from dpr.evaluation.metrics import average_precision, recall_at, retrieval_metrics
from dpr.evaluation.relevance import Judge
from dpr.evaluation.report import sign_test
from dpr.evaluation.tuning import tune
from dpr.retrieval.fusion import (
    DEFAULT_LAMBDA_GRID,
    ExactScores,
    Linear,
    Reciprocal,
    candidates,
    fused_ranking,
    lambda_settings,
    union_candidates,
)
from dpr.retrieval.run import Run
from dpr2hf.convert import convert

# ------------------------------------------------------------------------- metric unit tests


def test_retrieval_metrics_on_hand_checked_rankings() -> None:
    # q0: first hit at rank 0 (and rank 2); q1: first hit at rank 3; q2: none in the list
    relevance = [[True, False, True, False, False],
                 [False, False, False, True, False],
                 [False, False, False, False, False]]
    num_relevant = [2, 1, 1]
    metrics = retrieval_metrics(relevance, num_relevant, ks=[1, 3, 4, 5], curve_to=5)
    assert metrics["top_k"] == {1: pytest.approx(1 / 3), 3: pytest.approx(1 / 3),
                                4: pytest.approx(2 / 3), 5: pytest.approx(2 / 3)}
    assert metrics["mrr@10"] == pytest.approx((1 + 1 / 4 + 0) / 3)
    # AP(q0) = (1/1 + 2/3) / 2; AP(q1) = (1/4) / 1; AP(q2) = 0
    assert metrics["map@10"] == pytest.approx(((1 + 2 / 3) / 2 + 1 / 4) / 3)
    # recall@1: q0 found 1 of 2; recall@5: q0 2/2, q1 1/1
    assert metrics["recall"][1] == pytest.approx((1 / 2) / 3)
    assert metrics["recall"][5] == pytest.approx(2 / 3)
    assert metrics["curve"] == pytest.approx([1 / 3, 1 / 3, 1 / 3, 2 / 3, 2 / 3])


def test_average_precision_with_one_relevant_is_reciprocal_rank_within_cutoff() -> None:
    assert average_precision([False, False, True], 1, 10) == pytest.approx(1 / 3)
    assert average_precision([False, False, True], 1, 2) == 0.0
    assert average_precision([True, True], 5, 2) == pytest.approx(1.0)  # min(R, k) = 2
    assert average_precision([True], 0, 10) == 0.0
    assert recall_at([True, False, True], 4, 3) == pytest.approx(0.5)
    assert recall_at([True], 0, 3) == 0.0


# ----------------------------------------------------------------------------------- fusion


def test_linear_fusion_scores_union_with_exact_scores() -> None:
    sparse_all = np.array([5.0, 0.0, 3.0, 1.0])        # BM25 over the 4-passage corpus
    vectors = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0], [0.0, 0.0]], dtype=np.float32)
    question = np.array([0.5, 1.0], dtype=np.float32)   # dense: 0.5, 2.0, 1.5, 0.0
    sparse = Run("bm25", (np.array([0, 2]),), (sparse_all[[0, 2]],))
    dense = Run("dpr", (np.array([1, 2]),), (vectors[[1, 2]] @ question,))
    exact = ExactScores(sparse=lambda q, rows: sparse_all[rows],
                        dense=lambda q, rows: vectors[rows].astype(np.float64) @ question)
    (union,) = candidates(sparse, dense, exact)
    assert union.index.tolist() == [0, 1, 2]
    assert union.sparse.tolist() == [5.0, 0.0, 3.0]
    assert union.dense.tolist() == pytest.approx([0.5, 2.0, 1.5])
    assert union.sparse_rank.tolist() == [1, 0, 2]
    assert union.dense_rank.tolist() == [0, 1, 2]
    # λ = 2: 5 + 1 = 6, 0 + 4 = 4, 3 + 3 = 6 -> tie 0/2 broken by corpus index
    ids, scores = fused_ranking(union, Linear(2.0), 3)
    assert ids.tolist() == [0, 2, 1]
    assert scores.tolist() == pytest.approx([6.0, 6.0, 4.0])
    ids, _ = fused_ranking(union, Linear(10.0), 2)
    assert ids.tolist() == [1, 2]


def test_rrf_scores_sum_reciprocal_ranks_of_present_lists() -> None:
    candidates = union_candidates(np.array([3, 1]), np.array([1, 4]), np.zeros(3),
                                  np.zeros(3))  # union [1, 3, 4]
    scores = Reciprocal(60).scores(candidates)
    assert scores.tolist() == pytest.approx([1 / 62 + 1 / 61, 1 / 61, 1 / 62])
    ids, _ = fused_ranking(candidates, Reciprocal(60), 3)
    assert ids.tolist() == [1, 3, 4]


def test_tune_lambda_picks_best_grid_value_smallest_among_ties() -> None:
    # passage 1 is right; BM25 prefers 0, dense prefers 1: only a large enough λ helps
    union = [union_candidates(np.array([0, 1]), np.array([1, 0]), np.array([2.0, 1.0]),
                              np.array([0.0, 1.0]))]
    qset = QuestionSet("tune", ["q"], [["x"]], gold=[{1}])
    best, grid, _ = tune(union, lambda_settings(DEFAULT_LAMBDA_GRID),
                         judge=Judge(["a", "b"], mode="id"), qset=qset, metric="top1")
    assert {s.lam for s in grid} == set(DEFAULT_LAMBDA_GRID) and Linear(1.1) in grid
    assert best == Linear(min(x for x in DEFAULT_LAMBDA_GRID if x > 1.0))


def test_sign_test_two_sided_exact() -> None:
    assert sign_test(5, 0) == pytest.approx(2 / 32)
    assert sign_test(3, 3) == 1.0
    assert sign_test(0, 0) == 1.0
    assert sign_test(9, 1) == pytest.approx(2 * 11 / 1024)


# ------------------------------------------------------------------------------------- CLI


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = evaluate.main(["--quiet", *argv])
    return code, capsys.readouterr().out


def test_bm25_report_table_json_and_plot(tmp_path: Path, corpus: tuple[Path, Path],
                                         capsys: pytest.CaptureFixture[str]) -> None:
    passages, qas = corpus
    code, out = _run(capsys, "--ctx_file", str(passages), "--qa_file", str(qas), "--retrievers",
                     "bm25", "--output_dir", str(tmp_path / "eval"))
    assert code == 0
    assert out.splitlines()[0].startswith("| Retriever | Top-1 | Top-5 | Top-10 |")
    report = json.loads((tmp_path / "eval" / "results.json").read_text(encoding="utf-8"))
    png = (tmp_path / "eval" / "topk_accuracy.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert report["command"].startswith("python -m dpr.evaluate --quiet --ctx_file")
    assert {"torch", "bm25s", "faiss", "python"} <= set(report["versions"])
    bm25 = report["results"]["bm25"]
    assert bm25["questions"] == 8 and report["corpus"]["passages"] == 17
    assert report["ks"] == [1, 5, 10]        # k above the corpus size is dropped
    # the questions were written about these very passages: BM25 must find most of them
    assert bm25["top_k"]["10"] >= bm25["top_k"]["1"] >= 0.5
    assert f"| bm25 | {100 * bm25['top_k']['1']:.1f} |" in out


def test_dpr_hybrid_rrf_from_checkpoint_and_dpr2hf_folder_agree(
        tmp_path: Path, corpus: tuple[Path, Path], checkpoint: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    passages, qas = corpus
    hf = tmp_path / "hf"
    convert(checkpoint, hf)
    reports = {}
    for name, model in (("ckpt", checkpoint), ("hf", hf)):
        code, out = _run(capsys, "--ctx_file", str(passages), "--qa_file", str(qas), "--retrievers",
                         "bm25,dpr,hybrid,rrf", "--dpr_model", str(model), "--no_cuda",
                         "--output_dir", str(tmp_path / name))
        assert code == 0, out
        reports[name] = json.loads((tmp_path / name / "results.json").read_text())
        assert "By top-10 accuracy (ties by MRR@10):" in out and "sign test" in out
    for retriever in ("dpr", "hybrid", "rrf"):
        a, b = reports["ckpt"]["results"][retriever], reports["hf"]["results"][retriever]
        assert a["curve"] == b["curve"] and a["map@10"] == b["map@10"]
    assert reports["ckpt"]["fusion"]["lambda"] == 1.1
    comparison = reports["ckpt"]["comparison"]
    assert len(comparison["pairs"]) == 6 and comparison["order"][0] == comparison["leader"]
    for metrics in reports["ckpt"]["results"].values():
        ranks = metrics["first_hit_rank"]
        assert len(ranks) == 8
        assert metrics["top_k"]["5"] == sum(r is not None and r < 5 for r in ranks) / 8
    assert list(reports["ckpt"]["results"]) == ["bm25", "dpr", "hybrid", "rrf"]


def test_hybrid_with_lambda_zero_ranks_as_bm25(tmp_path: Path, corpus: tuple[Path, Path],
                                               checkpoint: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    passages, qas = corpus
    code, _ = _run(capsys, "--ctx_file", str(passages), "--qa_file", str(qas), "--retrievers",
                   "bm25,hybrid", "--dpr_model", str(checkpoint), "--hybrid_lambda", "0",
                   "--output_dir", str(tmp_path))
    assert code == 0
    results = json.loads((tmp_path / "results.json").read_text())["results"]
    assert results["hybrid"]["curve"] == results["bm25"]["curve"]


def test_tune_lambda_on_training_json_and_sbert_baseline(
        tmp_path: Path, corpus: tuple[Path, Path], checkpoint: Path, dpr_files,
        capsys: pytest.CaptureFixture[str]) -> None:
    passages, qas = corpus
    hf = tmp_path / "hf"
    convert(checkpoint, hf)
    code, out = _run(capsys, "--ctx_file", str(passages), "--qa_file", str(qas), "--retrievers",
                     "bm25,dpr,hybrid,sbert", "--dpr_model", str(checkpoint),
                     "--tune_lambda_on", str(dpr_files[0]), "--tune_metric", "mrr10",
                     "--sbert_model", str(hf / "ctx_encoder"), "--output_dir", str(tmp_path))
    assert code == 0, out
    report = json.loads((tmp_path / "results.json").read_text())
    tuning = report["fusion"]["tuning"]
    assert tuning["questions"] == 29 and tuning["metric"] == "mrr10"
    best = max(tuning["grid"].values())
    assert tuning["grid"][f"{report['fusion']['lambda']:g}"] == best
    assert "tuned on" in out
    assert report["results"]["sbert"]["questions"] == 8


def test_squad_mode_relevance_by_paragraph(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _run(capsys, "--squad", str(SAMPLE_SQUAD), "--retrievers", "bm25",
                     "--output_dir", str(tmp_path))
    assert code == 0, out
    report = json.loads((tmp_path / "results.json").read_text())
    squad = json.loads(SAMPLE_SQUAD.read_text(encoding="utf-8"))
    paragraphs = sum(len(a["paragraphs"]) for a in squad["data"])
    questions = sum(len(p["qas"]) for a in squad["data"] for p in a["paragraphs"])
    assert report["relevance"] == "id"
    assert report["corpus"]["passages"] == paragraphs
    assert report["questions"]["count"] == questions
    bm25 = report["results"]["bm25"]
    # one gold paragraph per question: AP@10 is the reciprocal rank, so MAP@10 = MRR@10
    assert math.isclose(bm25["map@10"], bm25["mrr@10"])
    # and recall@k is top-k accuracy
    assert bm25["recall"]["5"] == pytest.approx(bm25["top_k"]["5"])
    code, _ = _run(capsys, "--squad", str(SAMPLE_SQUAD), "--retrievers", "bm25",
                   "--relevance", "answer", "--output_dir", str(tmp_path / "answer"))
    answer = json.loads((tmp_path / "answer" / "results.json").read_text())["results"]["bm25"]
    assert code == 0 and answer["top_k"]["1"] >= bm25["top_k"]["1"]


def test_squad_mode_tunes_lambda_by_answer_matching(tmp_path: Path, checkpoint: Path, dpr_files,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _run(capsys, "--squad", str(SAMPLE_SQUAD), "--retrievers", "bm25,hybrid",
                     "--dpr_model", str(checkpoint), "--tune_lambda_on", str(dpr_files[1]),
                     "--output_dir", str(tmp_path))
    assert code == 0, out
    report = json.loads((tmp_path / "results.json").read_text())
    assert report["relevance"] == "id" and report["fusion"]["tuning"]["questions"] == 8


@pytest.mark.parametrize("argv, message", [
    (["--retrievers", "bm25"], "give --ctx_file and --qa_file, or --squad"),
    (["--ctx_file", "p.tsv", "--qa_file", "q.tsv", "--retrievers", "dpr"], "need --dpr_model"),
    (["--ctx_file", "p.tsv", "--qa_file", "q.tsv", "--retrievers", "bm25,colbert"], "unknown"),
    (["--ctx_file", "p.tsv", "--qa_file", "q.tsv", "--relevance", "id"], "needs --squad"),
    (["--squad", "s.json", "--qa_file", "q.tsv"], "replaces"),
])
def test_bad_flags_exit_2(argv: list[str], message: str,
                          capsys: pytest.CaptureFixture[str]) -> None:
    assert evaluate.main(argv) == 2
    assert message in capsys.readouterr().err


def test_bad_qa_line_exits_1_naming_file_and_line(tmp_path: Path, corpus: tuple[Path, Path],
                                                  caplog: pytest.LogCaptureFixture) -> None:
    bad = tmp_path / "qas.tsv"
    bad.write_text("Qui ?\t[\"Paul\"]\nQuoi sans réponse\n", encoding="utf-8")
    out = tmp_path / "out"
    assert evaluate.main(["--quiet", "--ctx_file", str(corpus[0]), "--qa_file", str(bad),
                          "--retrievers", "bm25", "--output_dir", str(out)]) == 1
    assert f"{bad}:2" in caplog.text
    assert not out.exists()


def test_bad_passage_row_exits_1(tmp_path: Path, corpus: tuple[Path, Path],
                                 caplog: pytest.LogCaptureFixture) -> None:
    bad = tmp_path / "passages.tsv"
    with bad.open("w", encoding="utf-8", newline="") as handle:
        csv.writer(handle, delimiter="\t").writerows([["id", "text", "title"], ["p1", "x"]])
    assert evaluate.main(["--quiet", "--ctx_file", str(bad), "--qa_file", str(corpus[1]),
                          "--retrievers", "bm25"]) == 1
    assert f"{bad}:2" in caplog.text
