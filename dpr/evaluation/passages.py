"""The passage and QA TSV readers, now in :mod:`dpr.data.tsv` (re-exported for old imports)."""

from __future__ import annotations

from dpr.data.tsv import (
    InputFormatError,
    TsvPassage,
    iter_passages,
    parse_answers,
    read_passages,
    read_qas,
)

__all__ = ["InputFormatError", "TsvPassage", "iter_passages", "parse_answers", "read_passages",
           "read_qas"]
