"""The project's error taxonomy: every error a user can cause (a bad file, record, flag or
checkpoint) derives from `DprError`; entry points print its one line and exit with its
`exit_code` (`dpr.cli.main.run_main`), any other exception is a bug and keeps its traceback.
`InputError` and `UsageError` also derive from `ValueError`, for library callers that caught
`ValueError` before the taxonomy existed.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sized
from typing import TypeVar

ItemsT = TypeVar("ItemsT", bound=Sized)


class DprError(Exception):
    """A user-facing error; its message names the file, record or flag at fault."""

    exit_code = 1  # the process exit status an entry point returns for it


class InputError(DprError, ValueError):
    """Unusable input data: a file, a record in it, or a field of a record (exit status 1)."""


class UsageError(DprError, ValueError):
    """A flag or configuration value that is invalid or inconsistent (exit status 2)."""

    exit_code = 2


class RunFailure(DprError):
    """A run that cannot go on, through no bug (exit status 1), e.g. a training loss that is no
    longer finite: its message says what happened and where."""


class DiskFullError(RunFailure):
    """A file could not be written for lack of space (or quota); the message names the file."""


@contextlib.contextmanager
def naming_flag(flag: str) -> Iterator[None]:
    """Puts `flag` (the flag that named the file read in the block) before the message of an
    `InputError` raised in the block, unless it already starts with a flag: readers name the
    file and the record, `--qa_file data/qas.tsv: ...` says where the file came from."""
    try:
        yield
    except InputError as err:
        message = str(err)
        if not message.startswith("-"):
            err.args = (f"{flag} {message}", *err.args[1:])
        raise


def require_items(items: Sized, *, path: str | os.PathLike[str], what: str) -> None:
    """Refuses an input file that yielded no `items`: `InputError` `<path>: no <what> (is the
    file empty?)`, `what` being what it should hold, plural (e.g. "questions")."""
    if len(items) == 0:
        raise InputError(f"{os.fspath(path)}: no {what} (is the file empty?)")


def read_input(read: Callable[[str], ItemsT], path: str | os.PathLike[str], *, flag: str,
               what: str) -> ItemsT:
    """`read(path)` (e.g. `dpr.data.tsv.read_qas`), refusing a file that yields nothing
    (`require_items`); its `InputError`s are prefixed with `flag` (`naming_flag`)."""
    with naming_flag(flag):
        items = read(os.fspath(path))
        require_items(items, path=path, what=what)
    return items
