"""Error plumbing of ``python -m data_prep.squad2dpr`` and ``python -m data_prep``."""

from __future__ import annotations

import logging
import runpy
import sys
from pathlib import Path

import pytest

from data_prep import squad2dpr
from dpr.data.records import DataFormatError

FAST = ["--sentence_splitter", "regex", "--quiet", "--bm25_top_k", "5"]


def run_package(monkeypatch: pytest.MonkeyPatch, *argv: str) -> int:
    """Runs ``python -m data_prep ARGV`` in-process; returns its exit status."""
    monkeypatch.setattr(sys, "argv", ["data_prep", *argv])
    with pytest.raises(SystemExit) as exc:
        runpy.run_module("data_prep", run_name="__main__")
    return int(exc.value.code or 0)


def test_package_help_exits_0(monkeypatch: pytest.MonkeyPatch,
                              capsys: pytest.CaptureFixture[str]) -> None:
    # Given `python -m data_prep --help`, then it exits 0 and shows the squad2dpr flags
    assert run_package(monkeypatch, "--help") == 0
    out = capsys.readouterr().out
    assert "--output_dir" in out and "--debug" in out


def test_package_user_error_is_one_line_exit_1(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        capsys: pytest.CaptureFixture[str]) -> None:
    # Given an input file that does not exist
    with caplog.at_level(logging.ERROR):
        code = run_package(monkeypatch, str(tmp_path / "absent.json"), "--output_dir",
                           str(tmp_path / "out"), *FAST)
    # Then the status is 1, with one error line naming the file and no traceback
    assert code == 1
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.getMessage() for r in errors] == [f"{tmp_path / 'absent.json'}: file not found"]
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize("error", [RuntimeError, ValueError])
def test_internal_error_escapes_both_entry_points(
        error: type[Exception], tmp_path: Path, small_fixture: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a bug inside the pipeline (not a user error)
    def broken(*_args: object, **_kwargs: object) -> None:
        raise error("internal bug")

    monkeypatch.setattr(squad2dpr, "run", broken)
    argv = [str(small_fixture), "--output_dir", str(tmp_path / "out"), *FAST]
    # When running either entry point, then the exception propagates with its traceback
    with pytest.raises(error, match="internal bug"):
        squad2dpr.main(argv)
    with pytest.raises(error, match="internal bug"):
        run_package(monkeypatch, *argv)


def test_debug_reraises_user_errors(tmp_path: Path) -> None:
    # Given a missing input and --debug, then the DataFormatError itself propagates
    with pytest.raises(DataFormatError, match="file not found"):
        squad2dpr.main([str(tmp_path / "absent.json"), "--output_dir", str(tmp_path / "o"),
                        "--debug", *FAST])
