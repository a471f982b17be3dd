"""Exception type for user-facing data preparation errors."""

from __future__ import annotations

from dpr.data.records import DataFormatError

DataPrepError = DataFormatError
"""Invalid input or options; the message names the file and record and is shown as is.

The same class as :class:`dpr.data.records.DataFormatError` (an :class:`InputError`), which
the SQuAD reader :mod:`dpr.data.squad` raises: one class for a bad data file, whoever reads
it. The command line reports it in one line without a traceback and exits 1.
"""
