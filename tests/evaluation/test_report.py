"""Honest reporting (dpr.evaluation.report): Holm-adjusted sign tests counted over the whole
report, the tuning metric's default, and what R of recall and MAP is."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dpr import evaluate
from dpr.evaluation.report import adjust_sign_tests, compare, hits_at, holm, paired_tests


def test_holm_adjusts_a_hand_computed_case() -> None:
    # Given four p-values; sorted: 0.005 (x4 = 0.02), 0.01 (x3 = 0.03), 0.03 (x2 = 0.06),
    # 0.04 (x1 = 0.04, raised to the running maximum 0.06)
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # And adjusted values are capped at 1, equal p-values share their adjustment
    assert holm([0.5, 0.5]) == [1.0, 1.0]
    assert holm([0.02]) == [0.02] and holm([]) == []


def _results(hits: dict[str, list[int]]) -> dict[str, dict]:
    """Results where question q is answered at rank 0 when hits[name][q], else never."""
    out = {}
    for name, flags in hits.items():
        ranks = [0 if f else None for f in flags]
        top = sum(flags) / len(flags)
        out[name] = {"first_hit_rank": ranks, "top_k": {1: top, 20: top}, "mrr@10": top}
    return out


def test_adjust_sign_tests_counts_each_distinct_test_once() -> None:
    # Given three retrievers (three pairs at top-20) and two requested pairs at top-1 and
    # top-20, of which "c > a" at top-20 is already one of the three pairs
    results = _results({"a": [1] * 12 + [0] * 8, "b": [1] * 10 + [0] * 10,
                        "c": [0] * 6 + [1] * 14})
    comparison = compare(results, hits_at(results, 20), 20)
    pairs = paired_tests(results, [("c", "a"), ("b", "a")], [1, 20])
    # When adjusting
    tests = adjust_sign_tests(comparison, pairs, 20)
    # Then 3 + 2 (top-1) = 5 distinct tests are counted, and each row has its Holm value
    assert tests["count"] == 5 and tests["correction"] == "holm"
    rows = {(p["first"], p["second"], at): row for p in pairs for at, row in p["at"].items()}
    family = [row["p_value"] for row in comparison["pairs"].values()] + \
        [rows[("c", "a", "top-1")]["p_value"], rows[("b", "a", "top-1")]["p_value"]]
    expected = dict(zip(family, holm(family)))  # equal p-values get equal adjustments
    for row in [*comparison["pairs"].values(), *comparison["against"], *rows.values()]:
        assert row["p_holm"] == pytest.approx(expected[row["p_value"]])
        assert row["p_holm"] >= row["p_value"]


def test_tune_metric_defaults_to_mrr_at_10() -> None:
    args = evaluate.build_parser().parse_args(["--squad", "s.json"])
    assert args.tune_metric == "mrr10"


def test_report_counts_sign_tests_and_prints_holm_p_values(
        tmp_path: Path, corpus: tuple[Path, Path], checkpoint: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    # Given BM25, DPR and RRF with one requested pair
    assert evaluate.main(["--quiet", "--no_cuda", "--ctx_file", str(corpus[0]), "--qa_file",
                          str(corpus[1]), "--dpr_model", str(checkpoint), "--retrievers",
                          "bm25,dpr,rrf", "--pairs", "rrf>bm25",
                          "--output_dir", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    report = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    # Then 3 pairs at top-10 and rrf>bm25 at top-1 make 4 tests, each with its Holm p-value
    assert report["sign_tests"]["count"] == 4
    assert all("p_holm" in row for row in report["comparison"]["against"])
    assert all("p_holm" in row for row in report["pairs"][0]["at"].values())
    assert "4 sign tests in this report" in printed and "Holm p = " in printed
    # And recall and MAP say what they divide by
    assert report["num_relevant"]["definition"] == "relevant among retrieved"
    assert "relevant among retrieved" in printed
