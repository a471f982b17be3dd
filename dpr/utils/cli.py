"""Plumbing shared by every entry point's `main(argv) -> int`.

`run_cli` runs the body of a command and turns the project's user-facing errors
(`dpr.utils.errors.DprError`, and `OSError` for files that cannot be read or written) into one
logged line (stderr once `setup_logging` ran, Python's last-resort handler otherwise) and an
exit status; anything else is a bug and propagates with its traceback
(Python then exits 1). `--debug` shows tracebacks for user errors too.
"""

from __future__ import annotations

import argparse
import logging
import math
from collections.abc import Callable, Sequence

from dpr.utils.errors import DprError, UsageError

DEBUG_HELP = "show the full traceback of errors caused by the input too (for bug reports)"


def add_debug_flag(parser: argparse.ArgumentParser) -> None:
    """Adds `--debug` (tracebacks for user errors as well) to a parser."""
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)


def add_output_flags(parser: argparse.ArgumentParser, *, quiet_help: str) -> None:
    """Adds the flags of what a tool prints: `--quiet` (described by `quiet_help`), `--debug`."""
    parser.add_argument("--quiet", action="store_true", help=quiet_help)
    add_debug_flag(parser)


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


def check_finite_floats(args: argparse.Namespace) -> None:
    """Refuses a float flag given as `nan` or `inf` (argparse's `float` accepts both).

    Raises:
        UsageError: Naming the first such flag.
    """
    for name, value in vars(args).items():
        if isinstance(value, float) and not math.isfinite(value):
            raise UsageError(f"--{name} must be a finite number, got {value}")


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
             setup: Callable[[argparse.Namespace], None] | None = None,
             on_error: Callable[[argparse.Namespace], None] | None = None) -> int:
    """The whole `main(argv)` of an entry point: parse, set up logging, run, map errors.

    Args:
        parser: The entry point's parser (it must have `--debug`, see `add_debug_flag`).
        argv: Arguments without the program name (None: `sys.argv[1:]`).
        body: The command, given the parsed flags; an int it returns is the exit status,
            anything else (e.g. a result for in-process callers) means success.
        prog: Name of the logger user errors go to.
        setup: Called with the flags before the body (e.g. logging set-up).
        on_error: Called with the flags after a user error was reported.

    Returns:
        The exit status (see `parse_args` and `run_cli`).
    """
    args = parse_args(parser, argv)
    if isinstance(args, int):
        return args
    if setup is not None:
        setup(args)
    def command() -> int:
        status = body(args)
        return status if isinstance(status, int) else 0

    return run_cli(command, prog=prog, debug=getattr(args, "debug", False),
                   on_error=None if on_error is None else lambda: on_error(args))


def add_precision_flags(group: argparse._ActionsContainer) -> None:
    """`--fp16` and `--amp_dtype` of the encoding tools (read by `encoding_dtype`)."""
    group.add_argument("--fp16", action="store_true",
                       help="Encode under mixed precision: bfloat16 on GPUs that support it, "
                       "else float16; on a CPU only where it has bfloat16 instructions "
                       "(otherwise float32, with a warning). Vectors are written in float32.")
    group.add_argument("--amp_dtype", choices=("auto", "bfloat16", "float16"), default="auto",
                       help="With --fp16: the autocast type (auto: as described there).")
