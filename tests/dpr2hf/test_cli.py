"""Error handling of `python -m dpr2hf`: user errors are one line and exit 1, bugs keep their
traceback, --help exits 0."""

from __future__ import annotations

from pathlib import Path

import pytest

from dpr.models.checkpoint import CheckpointError
from dpr2hf import verify
from dpr2hf.cli import main


def test_dpr2hf_help_exits_0_and_documents_debug(capsys) -> None:
    assert main(["--help"]) == 0
    assert "--debug" in capsys.readouterr().out


@pytest.mark.parametrize("error", [RuntimeError, ValueError])
def test_dpr2hf_internal_error_keeps_its_traceback(monkeypatch, tmp_path: Path,
                                                   checkpoint: Path, error) -> None:
    # Given a bug inside the conversion (while the staging folder exists)
    def broken(*args, **kwargs):
        raise error("internal failure")

    monkeypatch.setattr(verify, "reference", broken)
    # When converting, Then the exception escapes main and nothing is left behind
    with pytest.raises(error, match="internal failure"):
        main([str(checkpoint), "--output_dir", str(tmp_path / "hf")])
    assert not list(tmp_path.iterdir())


def test_dpr2hf_user_error_is_one_line_and_debug_shows_traceback(tmp_path: Path,
                                                                 capsys) -> None:
    # Given a checkpoint that does not exist
    args = [str(tmp_path / "nope.0"), "--output_dir", str(tmp_path / "hf")]
    # When converting, Then exit 1: one line naming the file, one saying nothing was written
    assert main(args) == 1
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "[ERROR]" in line]
    assert len(errors) == 2 and "nope.0" in errors[0] and "Nothing was written" in errors[1]
    assert "Traceback" not in err
    # And with --debug the error escapes with its traceback
    with pytest.raises(CheckpointError, match="nope.0"):
        main([*args, "--debug"])
