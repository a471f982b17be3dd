"""``python -m dpr.evaluate`` error plumbing: user errors are one line, bugs keep a traceback."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from dpr import evaluate
from dpr.evaluation import pipeline
from dpr.utils.errors import InputError


def test_help_exits_0_and_lists_debug(capsys: pytest.CaptureFixture[str]) -> None:
    # Given the CLI, when asking for help, then it returns 0 and documents --debug
    assert evaluate.main(["--help"]) == 0
    assert "--debug" in capsys.readouterr().out


def test_missing_passage_file_is_one_line_exit_1(
        tmp_path: Path, corpus: tuple[Path, Path], caplog: pytest.LogCaptureFixture,
        capsys: pytest.CaptureFixture[str]) -> None:
    # Given a passage file that does not exist
    missing = tmp_path / "absent.tsv"
    # When evaluating BM25 on it
    with caplog.at_level(logging.ERROR):
        code = evaluate.main(["--quiet", "--ctx_file", str(missing), "--qa_file", str(corpus[1]),
                              "--retrievers", "bm25"])
    # Then it exits 1 with one error line naming the file and no traceback
    assert code == 1
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and str(missing) in errors[0].getMessage()
    assert errors[0].exc_info is None
    assert "Traceback" not in capsys.readouterr().err


def test_debug_shows_user_errors_with_their_traceback(tmp_path: Path,
                                                      corpus: tuple[Path, Path]) -> None:
    # Given the same missing file and --debug, then the InputError propagates
    with pytest.raises(InputError, match="absent.tsv"):
        evaluate.main(["--quiet", "--debug", "--ctx_file", str(tmp_path / "absent.tsv"),
                       "--qa_file", str(corpus[1]), "--retrievers", "bm25"])


@pytest.mark.parametrize("error", [ValueError, RuntimeError])
def test_internal_error_is_not_reported_as_user_error(
        error: type[Exception], corpus: tuple[Path, Path],
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a bug inside the evaluation (a bare ValueError/RuntimeError from BM25 scoring)
    def broken(*_args: object, **_kwargs: object) -> None:
        raise error("internal bug")

    monkeypatch.setattr(pipeline, "BM25Retriever", broken)
    # When evaluating, then the exception escapes with its traceback (no exit status 1)
    with pytest.raises(error, match="internal bug"):
        evaluate.main(["--quiet", "--ctx_file", str(corpus[0]), "--qa_file", str(corpus[1]),
                       "--retrievers", "bm25"])


def test_squad_documents_without_qas_are_searched(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # Given a SQuAD export: one question, a document without qas that matches it better, a
    # document with "qas": null and a blank paragraph
    squad = tmp_path / "export.json"
    squad.write_text(json.dumps({"data": [{"title": "Loire", "paragraphs": [
        {"context": "La Loire coule en France.", "qas": [{"id": "q", "question": "Où coule la "
         "Loire ?", "answers": [{"text": "France", "answer_start": 18}]}]},
        {"context": "Où coule la Loire ? La Loire coule, la Loire coule."},
        {"context": "Le Rhône est un fleuve.", "qas": None}, {"context": "  "}]}]}),
        encoding="utf-8")
    # When evaluating BM25 on it
    with caplog.at_level(logging.INFO):
        assert evaluate.main(["--squad", str(squad), "--retrievers", "bm25",
                              "--output_dir", str(tmp_path / "out")]) == 0
    # Then the corpus holds the three paragraphs with text, and the document outranks the gold
    report = json.loads((tmp_path / "out" / "results.json").read_text(encoding="utf-8"))
    assert report["corpus"]["passages"] == 3
    assert report["results"]["bm25"]["first_hit_rank"] == [1]
    assert "3 paragraphs searched; 2 have no questions (corpus only)" in caplog.text
