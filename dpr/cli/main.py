"""The one shape of every entry point's `main(argv) -> int`: `run_main`.

`run_main` parses the flags (argparse's own status for `--help` and bad flags), sets up the one
log format (`dpr.utils.logging.setup_logging`, rank 0 until a tool knows its rank), runs the
command and turns the project's user-facing errors (`dpr.utils.errors.DprError`, and `OSError`
for files that cannot be read or written) into one logged line and an exit status; anything
else is a bug and propagates with its traceback (Python then exits 1). `--debug` shows
tracebacks for user errors too.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Sequence

from dpr.utils.errors import DprError
from dpr.utils.logging import setup_logging


def parse_args(parser: argparse.ArgumentParser,
               argv: Sequence[str] | None) -> argparse.Namespace | int:
    """`parser.parse_args`, returning argparse's exit status instead of raising SystemExit.

    Returns:
        The namespace, or an int (0 after `--help`, 2 for bad flags) to return from `main`.
    """
    try:
        return parser.parse_args(None if argv is None else list(argv))
    except SystemExit as exit_:
        return int(exit_.code or 0)


def report_error(err: BaseException, *, prog: str) -> None:
    """Logs one line for a user-facing error, under the logger named `prog`."""
    message = str(err) or type(err).__name__
    if isinstance(err, OSError) and err.filename and str(err.filename) not in message:
        message = f"{err.filename}: {message}"
    logging.getLogger(prog).error("%s", message.replace("\n", " "))


def run_cli(body: Callable[[], int | None], *, prog: str, debug: bool = False,
            on_error: Callable[[], None] | None = None) -> int:
    """Runs a command body and maps user-facing errors to an exit status.

    Args:
        body: The command; returns an exit status (None means 0).
        prog: Name of the logger the line goes to (the program name).
        debug: Re-raise user errors too, so their traceback shows.
        on_error: Called after a user error is reported (e.g. to say nothing was written).

    Returns:
        The body's status, `DprError.exit_code` (1, or 2 for bad flags) or 1 for `OSError`.
    """
    try:
        status = body()
    except (DprError, OSError) as err:
        if debug:
            raise
        report_error(err, prog=prog)
        if on_error is not None:
            on_error()
        return err.exit_code if isinstance(err, DprError) else 1
    return 0 if status is None else int(status)


def run_main(parser: argparse.ArgumentParser, argv: Sequence[str] | None,
             body: Callable[[argparse.Namespace], object], *, prog: str,
             quiet_logs: bool = False,
             on_error: Callable[[argparse.Namespace], None] | None = None) -> int:
    """The whole `main(argv)` of an entry point: parse, set up logging, run, map errors.

    Args:
        parser: The entry point's parser (with `--debug`, see `dpr.cli.flags.add_debug_flag`).
        argv: Arguments without the program name (None: `sys.argv[1:]`).
        body: The command, given the parsed flags; an int it returns is the exit status,
            anything else (e.g. a result for in-process callers) means success. A tool that
            runs as several processes calls `setup_logging(rank)` again once it knows its rank.
        prog: Name of the logger user errors go to.
        quiet_logs: `--quiet` also hides the progress lines (warnings and errors only).
        on_error: Called with the flags after a user error was reported.

    Returns:
        The exit status (see `parse_args` and `run_cli`).
    """
    args = parse_args(parser, argv)
    if isinstance(args, int):
        return args
    quiet = quiet_logs and getattr(args, "quiet", False)
    setup_logging(0, level=logging.WARNING if quiet else logging.INFO)

    def command() -> int:
        status = body(args)
        return status if isinstance(status, int) else 0

    return run_cli(command, prog=prog, debug=getattr(args, "debug", False),
                   on_error=None if on_error is None else lambda: on_error(args))
