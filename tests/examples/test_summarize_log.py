"""examples/summarize_log.py: what the demo prints is computed from the run's files."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[2] / "examples" / "summarize_log.py"
_SPEC = importlib.util.spec_from_file_location("summarize_log", _PATH)
summarize_log = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(summarize_log)


def _log(tmp_path: Path, values: list[float]) -> Path:
    path = tmp_path / "training_log.jsonl"
    records = [{"event": "validation", "epoch": e, "iteration": 4, "metric": "nll_loss",
                "value": v, "checkpoint": f"c.{e}"} for e, v in enumerate(values)]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.mark.parametrize("values,status,word", [([2.0, 1.5], 0, "falls"),
                                                ([1.5, 2.0], 1, "does not fall")])
def test_learned_says_whether_validation_fell(tmp_path, capsys, values, status, word) -> None:
    assert summarize_log.main([str(_log(tmp_path, values)), "--learned"]) == status
    out = capsys.readouterr().out
    assert f"{values[0]:.4f} after the first epoch, {values[1]:.4f} after the last" in out
    assert f": {word}" in out


@pytest.mark.parametrize("tuned,status,verdict", [
    ((0.9, 0.95), 0, "dpr beats sbert"),
    ((0.8, 0.9), 1, "dpr ties with sbert"),
    ((0.8, 0.85), 1, "dpr does not beat sbert: sbert is ahead"),
    ((0.9, 0.9), 0, "dpr beats sbert")])  # same MRR, better top-1
def test_compare_prints_both_numbers_and_a_computed_verdict(tmp_path, capsys, tuned, status,
                                                            verdict) -> None:
    def metrics(top1: float, mrr: float) -> dict:
        return {"questions": 10, "top_k": {"1": top1}, "mrr@10": mrr}

    results = tmp_path / "results.json"
    results.write_text(json.dumps({"results": {"dpr": metrics(*tuned),
                                               "sbert": metrics(0.8, 0.9)}}))
    assert summarize_log.main([str(results), "--compare", "dpr", "sbert"]) == status
    out = capsys.readouterr().out
    assert f"dpr            top-1 {100 * tuned[0]:5.1f}   MRR@10 {100 * tuned[1]:5.1f}" in out
    assert "sbert          top-1  80.0   MRR@10  90.0" in out
    assert out.rstrip().endswith(f"Verdict (MRR@10, then top-1): {verdict}")


def test_compare_says_when_both_are_at_the_ceiling(tmp_path, capsys) -> None:
    perfect = {"questions": 10, "top_k": {"1": 1.0}, "mrr@10": 1.0}
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"results": {"dpr": perfect, "sbert": perfect}}))
    assert summarize_log.main([str(results), "--compare", "dpr", "sbert"]) == 1
    assert "dpr ties with sbert: both rank an answer first for every question" in \
        capsys.readouterr().out
