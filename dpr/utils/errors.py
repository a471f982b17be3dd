"""The project's error taxonomy.

Every error a user can cause (a bad file, record, flag or checkpoint) derives from `DprError`.
The entry points catch `DprError` and `OSError`, print one line and exit with `exit_code`
(see `dpr.cli.main.run_cli`); any other exception is a bug and keeps its traceback.

- `InputError` (exit 1): unusable input data.
- `UsageError` (exit 2): a bad flag or configuration value.
- `RunFailure` (exit 1): a run stopped by its data or its environment rather than by a bug,
  e.g. a training loss that is no longer finite, or `DiskFullError`.

`InputError` and `UsageError` also derive from `ValueError` so that library callers that caught
`ValueError` before the taxonomy existed keep working.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sized
from typing import TypeVar

ItemsT = TypeVar("ItemsT", bound=Sized)


class DprError(Exception):
    """A user-facing error; its message names the file, record or flag at fault.

    Attributes:
        exit_code: The process exit status an entry point returns for it.
    """

    exit_code = 1


class InputError(DprError, ValueError):
    """Unusable input data: a file, a record in it, or a field of a record."""


class UsageError(DprError, ValueError):
    """A flag or configuration value that is invalid or inconsistent (exit status 2)."""

    exit_code = 2


class RunFailure(DprError):
    """A run that cannot go on, through no bug: its message says what happened and where."""


class DiskFullError(RunFailure):
    """A file could not be written for lack of space (or quota); the message names the file."""


@contextlib.contextmanager
def naming_flag(flag: str) -> Iterator[None]:
    """Puts `flag` before the message of an `InputError` raised in the block.

    Readers name the file and the record; the tool that called them knows which flag gave the
    file. The message becomes `--qa_file data/qas.tsv: ...` (left alone when it already starts with
    a flag).

    Args:
        flag: The flag (or argument) that named the file read in the block, e.g. "--qa_file".
    """
    try:
        yield
    except InputError as err:
        message = str(err)
        if not message.startswith("-"):
            err.args = (f"{flag} {message}", *err.args[1:])
        raise


def require_items(items: Sized, *, path: str | os.PathLike[str], what: str) -> None:
    """Refuses an input file that yielded nothing to work on.

    Args:
        items: What was read from the file.
        path: The file.
        what: What it should hold, plural (e.g. "questions").

    Raises:
        InputError: `<path>: no <what> (is the file empty?)` when `items` is empty.
    """
    if len(items) == 0:
        raise InputError(f"{os.fspath(path)}: no {what} (is the file empty?)")


def read_input(read: Callable[[str], ItemsT], path: str | os.PathLike[str], *, flag: str,
               what: str) -> ItemsT:
    """`read(path)`, refusing a file that yields nothing; its errors name `flag`.

    Args:
        read: The reader, e.g. `dpr.data.tsv.read_qas`.
        path: The file.
        flag: The flag that gave it (see `naming_flag`).
        what: What it should hold, plural (see `require_items`).

    Raises:
        InputError: From the reader, or for an empty file, prefixed with `flag`.
    """
    with naming_flag(flag):
        items = read(os.fspath(path))
        require_items(items, path=path, what=what)
    return items
