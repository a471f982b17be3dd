"""The entry points' error plumbing: user errors are one line, bugs keep their traceback."""

from __future__ import annotations

import argparse
import logging

import pytest

from dpr.cli.flags import add_debug_flag
from dpr.cli.main import run_main
from dpr.utils.errors import DprError, InputError, UsageError


def _run(body, *flags: str) -> int:
    """`body` (no arguments) run by `run_main` with a parser that has only `--debug`."""
    parser = argparse.ArgumentParser()
    add_debug_flag(parser)
    return run_main(parser, list(flags), lambda args: body(), prog="tool")


def test_run_main_user_error_is_one_logged_line(caplog: pytest.LogCaptureFixture) -> None:
    # Given a body that fails on bad input
    def body() -> int:
        raise InputError("data.json:3: missing field 'question'")

    # When it runs under run_main
    with caplog.at_level(logging.ERROR):
        code = _run(body)

    # Then the status is 1 and the message is logged once, without a traceback
    assert code == 1
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.getMessage() for r in errors] == ["data.json:3: missing field 'question'"]
    assert all(r.exc_info is None for r in errors)


def test_run_main_usage_error_exits_2_and_oserror_names_the_file(
        tmp_path, caplog: pytest.LogCaptureFixture) -> None:
    assert _run(lambda: (_ for _ in ()).throw(UsageError("--batch_size must be >= 1"))) == 2
    missing = tmp_path / "absent.tsv"
    with caplog.at_level(logging.ERROR):
        assert _run(lambda: open(missing).read()) == 1
    assert str(missing) in caplog.records[-1].getMessage()


def test_run_main_internal_bug_propagates_with_its_traceback() -> None:
    # Given a body with an internal bug (a bare ValueError is not a user error)
    def body() -> int:
        raise ValueError("shape mismatch inside a library")

    # Then it is not swallowed
    with pytest.raises(ValueError, match="shape mismatch"):
        _run(body)


def test_run_main_debug_reraises_user_errors() -> None:
    with pytest.raises(DprError):
        _run(lambda: (_ for _ in ()).throw(InputError("bad")), "--debug")


def test_run_main_returns_argparse_status_and_the_body_s() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int)
    add_debug_flag(parser)
    seen = []
    assert run_main(parser, ["--help"], seen.append, prog="t") == 0
    assert run_main(parser, ["--n", "x"], seen.append, prog="t") == 2 and seen == []
    assert run_main(parser, ["--n", "3", "--debug"], lambda args: args.n, prog="t") == 3
    assert run_main(parser, [], lambda args: "a result", prog="t") == 0


def test_taxonomy_keeps_valueerror_compatibility() -> None:
    assert issubclass(InputError, ValueError) and issubclass(UsageError, ValueError)
    assert UsageError.exit_code == 2 and InputError.exit_code == 1


def test_run_main_parses_sets_up_logging_and_maps_errors(capsys) -> None:
    # Given a parser with --debug and a body that fails on its input
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1)
    parser.add_argument("--quiet", action="store_true")
    add_debug_flag(parser)
    seen: list[int] = []

    def body(args: argparse.Namespace) -> int:
        seen.append(args.n)
        logging.getLogger("tool").info("progress %d", args.n)
        if args.n < 0:
            raise UsageError("--n must be >= 0")
        return 0

    # Then help and bad flags return argparse's status without running anything
    assert run_main(parser, ["--help"], body, prog="t") == 0
    assert run_main(parser, ["--n", "x"], body, prog="t") == 2 and seen == []
    capsys.readouterr()
    # And user errors map to their exit status, logged in the one format
    assert run_main(parser, ["--n", "-1"], body, prog="t") == 2
    err = capsys.readouterr().err
    assert "[INFO] [rank 0] tool: progress -1" in err
    assert "[ERROR] [rank 0] t: --n must be >= 0" in err
    assert run_main(parser, [], body, prog="t") == 0
    with pytest.raises(UsageError):
        run_main(parser, ["--n", "-1", "--debug"], body, prog="t")
    capsys.readouterr()
    # And quiet_logs makes --quiet hide the progress lines, not the errors
    assert run_main(parser, ["--n", "-1", "--quiet"], body, prog="t", quiet_logs=True) == 2
    err = capsys.readouterr().err
    assert "progress" not in err and "--n must be >= 0" in err
