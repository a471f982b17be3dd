"""The project's error taxonomy.

Every error a user can cause (a bad file, record, flag or checkpoint) derives from `DprError`.
The entry points catch `DprError` and `OSError`, print one line and exit with `exit_code`
(see `dpr.utils.cli.run_cli`); any other exception is a bug and keeps its traceback.

The subclasses also derive from `ValueError` so that library callers that caught
`ValueError` before the taxonomy existed keep working.
"""

from __future__ import annotations


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
