"""The one shape of every entry point's `main(argv) -> int`: `run_main`."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Sequence

from dpr.utils.errors import DprError
from dpr.utils.logging import setup_logging


def run_main(parser: argparse.ArgumentParser, argv: Sequence[str] | None,
             body: Callable[[argparse.Namespace], object], *, prog: str,
             quiet_logs: bool = False,
             on_error: Callable[[argparse.Namespace], None] | None = None) -> int:
    """The whole `main(argv)` of an entry point: parses the flags (argparse's status returned
    instead of raising SystemExit), sets up the one log format (rank 0: a tool that runs as
    several processes calls `setup_logging` again once it knows its rank), runs `body` and
    turns user errors (`dpr.utils.errors`, and `OSError`: 1) into one line logged under `prog`
    and their exit status; other exceptions are bugs and keep their traceback, as user errors
    do with `--debug`.

    Args:
        argv: Arguments without the program name (None: `sys.argv[1:]`).
        body: The command, given the parsed flags; an int it returns is the exit status,
            anything else (e.g. a result for in-process callers) means success.
        quiet_logs: `--quiet` also hides the progress lines (warnings and errors only).
        on_error: Called with the flags after a user error was reported (e.g. to say that
            nothing was written).
    """
    try:
        args = parser.parse_args(None if argv is None else list(argv))
    except SystemExit as exit_:
        return int(exit_.code or 0)
    quiet = quiet_logs and getattr(args, "quiet", False)
    setup_logging(0, level=logging.WARNING if quiet else logging.INFO)
    try:
        status = body(args)
    except (DprError, OSError) as err:
        if getattr(args, "debug", False):
            raise
        message = str(err) or type(err).__name__
        if isinstance(err, OSError) and err.filename and str(err.filename) not in message:
            message = f"{err.filename}: {message}"
        logging.getLogger(prog).error("%s", message.replace("\n", " "))
        if on_error is not None:
            on_error(args)
        return err.exit_code if isinstance(err, DprError) else 1
    return int(status) if isinstance(status, int) else 0
