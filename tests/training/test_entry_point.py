"""train_dense_encoder.main's error contract: user errors are one line, bugs keep their
traceback, bad flags exit 2, --help works."""

from __future__ import annotations

from pathlib import Path

import pytest

import train_dense_encoder
from dpr.data.records import DataFormatError


def _error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if "[ERROR]" in line]


def _argv(model: Path, train: Path, out: Path, *extra: str) -> list[str]:
    return ["--encoder_model_type", "hf_roberta", "--pretrained_model_cfg", str(model),
            "--train_file", str(train), "--output_dir", str(out), "--batch_size", "8",
            "--sequence_length", "32", "--num_train_epochs", "1", *extra]


def test_help_shows_every_flag_and_exits_0(capsys) -> None:
    # Given help texts containing a literal '%' (argparse %-formats them)
    assert train_dense_encoder.main(["--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert out.startswith("usage: train_dense_encoder.py")
    assert "(less memory, ~30% more compute)" in out
    for flag in ("--keep_duplicate_positives", "--local-rank", "--debug", "--fp16"):
        assert flag in out


@pytest.mark.parametrize("argv", [["--no_such_flag"], ["--batch_size", "x"]])
def test_bad_flag_exits_2(argv: list[str], capsys) -> None:
    assert train_dense_encoder.main(argv) == 2
    assert "error:" in capsys.readouterr().err


def test_invalid_flag_value_is_one_line_and_exits_2(capsys) -> None:
    rc = train_dense_encoder.main(["--encoder_model_type", "hf_bert", "--batch_size", "0"])
    err = capsys.readouterr().err
    assert rc == 2
    assert [line.split(": ", 1)[1] for line in _error_lines(err)] == [
        "--batch_size must be >= 1, got 0"]
    assert "Traceback" not in err


def test_bad_launcher_environment_is_a_usage_error(monkeypatch, capsys) -> None:
    monkeypatch.setenv("WORLD_SIZE", "two")
    assert train_dense_encoder.main(["--encoder_model_type", "hf_bert"]) == 2
    assert "WORLD_SIZE='two' is not an integer" in capsys.readouterr().err


def test_malformed_train_file_is_one_line_without_traceback(tmp_path: Path, tiny_camembert,
                                                            capsys) -> None:
    # Given a truncated JSON training file
    bad = tmp_path / "bad.json"
    bad.write_text('[{"question": "q", "positive_ctxs": [', encoding="utf-8")
    # When training on it
    rc = train_dense_encoder.main(_argv(tiny_camembert, bad, tmp_path / "out"))
    # Then one error line names the file, without traceback, exit status 1
    err = capsys.readouterr().err
    assert rc == 1
    (line,) = _error_lines(err)
    assert str(bad) in line and "invalid JSON" in line
    assert "Traceback" not in err


def test_debug_shows_the_traceback_of_a_user_error(tmp_path: Path, tiny_camembert) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("", encoding="utf-8")
    with pytest.raises(DataFormatError, match="file is empty"):
        train_dense_encoder.main(_argv(tiny_camembert, bad, tmp_path / "out", "--debug"))


@pytest.mark.parametrize("error", [ValueError, RuntimeError])
def test_internal_error_is_not_reported_as_a_user_error(
        tmp_path: Path, tiny_camembert, dpr_files, monkeypatch, error: type) -> None:
    # Given a bug deep inside the training step (a bare ValueError / RuntimeError)
    import dpr.training.tasks as tasks

    def broken(*args, **kwargs):
        raise error("shape mismatch inside the step")

    monkeypatch.setattr(tasks, "build_batch", broken)
    # When training, then the exception escapes main with its traceback (exit status != 0)
    with pytest.raises(error, match="shape mismatch inside the step"):
        train_dense_encoder.main(_argv(tiny_camembert, dpr_files[0], tmp_path / "out"))
