"""Rerankers in ``python -m dpr.evaluate``: ``--reranker``, ``--reranker_depth``,
``--rerank_on`` and the retriever ``rerank`` (parsing, the report's row, sign tests and TREC
run, one first stage computed once, one-line errors)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from dpr import evaluate
from dpr.evaluation import pipeline
from dpr.evaluation.inputs import read_questions
from dpr.evaluation.options import (
    RerankerSpec,
    first_stage,
    parse_models,
    resolve_retrievers,
)
from dpr.inference import load_reranker
from dpr.retrieval.corpus import read_tsv_corpus
from dpr.utils.errors import UsageError

# ------------------------------------------------------------------------- flag parsing


def test_rerank_in_retrievers_stands_for_every_reranker() -> None:
    models = parse_models(["m"])
    rerankers = parse_models(["a=r1", "b=r2"], RerankerSpec)
    assert [r.name for r in rerankers] == ["rerank:a", "rerank:b"]
    assert resolve_retrievers("bm25,rerank", models, rerankers) == ("bm25", "rerank:a",
                                                                   "rerank:b")
    assert resolve_retrievers("rerank:b", models, rerankers) == ("rerank:b",)
    assert resolve_retrievers("rerank", (), parse_models(["r"], RerankerSpec)) == ("rerank",)
    with pytest.raises(UsageError, match="--reranker: give every model a label"):
        parse_models(["r1", "r2"], RerankerSpec)


@pytest.mark.parametrize("retrievers, rerankers, message", [
    ("bm25,rerank", [], "--retrievers rerank needs --reranker"),
    ("bm25", ["r"], "--reranker: add rerank to --retrievers"),
    ("rerank:c", ["a=r1"], "unknown ['rerank:c']"),
])
def test_rerank_and_reranker_go_together(retrievers: str, rerankers: list[str],
                                         message: str) -> None:
    with pytest.raises(UsageError, match=message.replace("[", r"\[").replace("]", r"\]")):
        resolve_retrievers(retrievers, (), parse_models(rerankers, RerankerSpec))


def test_first_stage_defaults_to_fusion_and_names_the_retriever() -> None:
    one, two = parse_models(["m"]), parse_models(["x=a", "y=b"])
    assert first_stage(None, one) == "fusion"
    assert first_stage("dpr", one) == "dpr"
    assert first_stage("dpr:y", two) == "dpr:y"
    assert first_stage("bm25", ()) == "bm25"
    with pytest.raises(UsageError, match=r"--rerank_on fusion \(the default\) needs "
                       "--dpr_model; give --rerank_on bm25"):
        first_stage(None, ())
    with pytest.raises(UsageError, match="--rerank_on dpr needs --dpr_model"):
        first_stage("dpr", ())
    with pytest.raises(UsageError, match="--rerank_on dpr: not a first stage"):
        first_stage("dpr", two)
    with pytest.raises(UsageError, match="--rerank_on rerank: not a first stage"):
        first_stage("rerank", one)


@pytest.mark.parametrize("extra, message", [
    (["--retrievers", "bm25,rerank"], "--retrievers rerank needs --reranker"),
    (["--retrievers", "bm25", "--reranker", "r"], "--reranker: add rerank to --retrievers"),
    (["--retrievers", "bm25,rerank", "--reranker", "r"], "--rerank_on fusion (the default) "
     "needs --dpr_model"),
    (["--retrievers", "bm25,rerank", "--reranker", "r", "--rerank_on", "bm25",
      "--reranker_depth", "0"], "--reranker_depth must be >= 1, got 0"),
    (["--retrievers", "bm25", "--rerank_on", "bm25"], "--rerank_on needs --reranker"),
])
def test_bad_rerank_flags_are_one_line_exit_2(extra: list[str], message: str,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert evaluate.main(["--ctx_file", "p.tsv", "--qa_file", "q.tsv", *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert len([line for line in err.splitlines() if line.strip()]) == 1


# ------------------------------------------------------------------------------ the CLI


def test_rerank_on_bm25_reports_its_row_sign_test_and_trec_run(
        tmp_path: Path, corpus: tuple[Path, Path], reranker_checkpoint: Path,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    # Given BM25, counted each time it ranks the questions
    calls = []

    class Counted(pipeline.BM25Retriever):
        def run(self, *args, **kwargs):
            calls.append(args)
            return super().run(*args, **kwargs)

    monkeypatch.setattr(pipeline, "BM25Retriever", Counted)
    passages, qas = corpus
    # When evaluating bm25 and the reranker over BM25's top 5
    assert evaluate.main([
        "--quiet", "--ctx_file", str(passages), "--qa_file", str(qas), "--retrievers",
        "bm25,rerank", "--rerank_on", "bm25", "--reranker", str(reranker_checkpoint),
        "--reranker_depth", "5", "--output_dir", str(tmp_path / "eval"),
        "--trec_dir", str(tmp_path / "trec")]) == 0
    out = capsys.readouterr().out
    report = json.loads((tmp_path / "eval" / "results.json").read_text(encoding="utf-8"))
    # Then rerank is a row of the table, of results.json and of the sign tests, Holm-adjusted
    assert [line.split("|")[1].strip() for line in out.splitlines()[2:4]] == ["bm25", "rerank"]
    assert set(report["results"]) == {"bm25", "rerank"}
    (test,) = report["comparison"]["pairs"].values()
    assert {test["first"], test["retriever"]} == {"bm25", "rerank"} and "p_holm" in test
    # And what was re-ranked, and how fast, is in the report
    info = report["rerank"]["rerank"]
    assert (info["first_stage"], info["depth"]) == ("bm25", 5)
    assert info["reranker"].startswith(f"reranker {reranker_checkpoint}")
    assert report["models"]["rerankers"] == {"rerank": str(reranker_checkpoint)}
    assert "rerank: the top 5 of bm25 re-ranked by reranker" in out and \
        "ms per question" in out
    assert report["results"]["rerank"]["seconds"] >= report["results"]["bm25"]["seconds"]
    # And BM25 ranked the questions once, for its own row and the reranker's
    assert len(calls) == 1
    # And the TREC run of rerank holds BM25's top 5, scored and ordered by the reranker
    runs = {name: _trec(tmp_path / "trec" / f"run.{name}.txt") for name in ("bm25", "rerank")}
    reranker = load_reranker(reranker_checkpoint)
    texts = read_tsv_corpus(str(passages))
    by_id = dict(zip(texts.ids, zip(texts.titles, texts.texts)))
    questions = read_questions(str(qas)).questions
    reordered = 0
    for qid, ranked in runs["rerank"].items():
        ids = [pid for pid, _ in ranked]
        assert sorted(ids) == sorted(pid for pid, _ in runs["bm25"][qid][:5])
        expected = reranker.score_pairs([(questions[int(qid)], by_id[p]) for p in ids])
        assert [s for _, s in ranked] == pytest.approx(expected.tolist(), abs=1e-5)
        assert [s for _, s in ranked] == sorted((s for _, s in ranked), reverse=True)
        reordered += ids != [pid for pid, _ in runs["bm25"][qid][:5]]
    assert reordered > 0


def _trec(path: Path) -> dict[str, list[tuple[str, float]]]:
    """A TREC run file as {qid: [(passage id, score)] in rank order}."""
    ranked: dict[str, list[tuple[str, float]]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        qid, _, pid, _, score, _ = line.split()
        ranked.setdefault(qid, []).append((pid, float(score)))
    return ranked


def test_a_bi_encoder_checkpoint_as_reranker_is_one_error_line(
        tmp_path: Path, corpus: tuple[Path, Path], checkpoint: Path,
        caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> None:
    # Given the tiny bi-encoder checkpoint given as --reranker
    with caplog.at_level(logging.ERROR):
        code = evaluate.main(["--quiet", "--ctx_file", str(corpus[0]), "--qa_file",
                              str(corpus[1]), "--retrievers", "rerank", "--rerank_on", "bm25",
                              "--reranker", str(checkpoint), "--output_dir",
                              str(tmp_path / "o")])
    # Then it exits 1 with one error line naming the file and what it is, and writes nothing
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert code == 1
    assert len(errors) == 1 and f"{checkpoint}: a bi-encoder checkpoint, not a reranker" in \
        errors[0].getMessage()
    assert "Traceback" not in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_a_missing_reranker_file_names_its_flag(tmp_path: Path, corpus: tuple[Path, Path],
                                                caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR):
        assert evaluate.main(["--quiet", "--ctx_file", str(corpus[0]), "--qa_file",
                              str(corpus[1]), "--retrievers", "rerank", "--rerank_on", "bm25",
                              "--reranker", str(tmp_path / "absent")]) == 1
    assert "--reranker" in caplog.text and "absent" in caplog.text


def test_rerank_on_the_default_fusion_unreported_and_two_labelled_rerankers(
        tmp_path: Path, corpus: tuple[Path, Path], checkpoint: Path, reranker_checkpoint: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    # Given a DPR model and the same reranker twice under two labels, the fusion not listed
    passages, qas = corpus
    assert evaluate.main([
        "--quiet", "--ctx_file", str(passages), "--qa_file", str(qas), "--retrievers",
        "bm25,rerank", "--dpr_model", str(checkpoint), "--reranker",
        f"a={reranker_checkpoint},b={reranker_checkpoint}", "--reranker_depth", "3",
        "--output_dir", str(tmp_path / "eval")]) == 0
    report = json.loads((tmp_path / "eval" / "results.json").read_text(encoding="utf-8"))
    # Then both rerankers re-rank the fusion, which is not reported itself
    assert list(report["results"]) == ["bm25", "rerank:a", "rerank:b"]
    assert {name: info["first_stage"] for name, info in report["rerank"].items()} == {
        "rerank:a": "fusion", "rerank:b": "fusion"}
    # And the fusion settings they re-ranked are in the report; the same model gives the same
    # ranking under both labels
    assert report["fusion"]["dpr"] == "dpr"
    assert report["results"]["rerank:a"]["first_hit_rank"] == \
        report["results"]["rerank:b"]["first_hit_rank"]
    assert all(r is None or r < 3 for r in report["results"]["rerank:a"]["first_hit_rank"])
    assert "rerank:b: the top 3 of fusion re-ranked" in capsys.readouterr().out


def test_an_exported_cross_encoder_folder_reranks_as_its_checkpoint(
        tmp_path: Path, corpus: tuple[Path, Path], reranker_checkpoint: Path) -> None:
    # Given the trained tiny reranker exported by dpr2hf as a CrossEncoder folder
    from dpr2hf.cli import main as dpr2hf

    assert dpr2hf([str(reranker_checkpoint), "--output_dir", str(tmp_path / "ce")]) == 0
    passages, qas = corpus
    common = ["--quiet", "--ctx_file", str(passages), "--qa_file", str(qas), "--retrievers",
              "rerank", "--rerank_on", "bm25", "--reranker_depth", "5"]
    # When dpr.evaluate re-ranks BM25 with the checkpoint, then with the folder
    reports = []
    for name, model in (("ckpt", reranker_checkpoint), ("folder", tmp_path / "ce")):
        assert evaluate.main([*common, "--reranker", str(model), "--output_dir",
                              str(tmp_path / name), "--trec_dir", str(tmp_path / f"t{name}")]) \
            == 0
        reports.append(_trec(tmp_path / f"t{name}" / "run.rerank.txt"))
    # Then both rank every question's passages alike, with the same scores (within 1e-4)
    checkpoint_run, folder_run = reports
    assert checkpoint_run.keys() == folder_run.keys()
    for qid, ranked in checkpoint_run.items():
        assert [p for p, _ in folder_run[qid]] == [p for p, _ in ranked]
        assert [s for _, s in folder_run[qid]] == pytest.approx([s for _, s in ranked],
                                                                abs=1e-4)
