"""Exception type for user-facing data preparation errors."""

from __future__ import annotations

from dpr.utils.errors import InputError


class DataPrepError(InputError):
    """Invalid input or options; the message names the file and record and is shown as is.

    The command line catches it, logs the message without a traceback and exits non-zero.
    """
