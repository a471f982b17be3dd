"""The one reader of passage TSV files and of question/answer TSV files (formats:
docs/EVALUATION.md, "Formats"); answer lists in DPR's Python-literal form are parsed with
`ast.literal_eval`, never evaluated."""

from __future__ import annotations

import ast
import csv
import json
import logging
import os
from collections.abc import Iterator

import numpy as np

from dpr.data.records import DataFormatError, Passage
from dpr.utils.io import open_text

logger = logging.getLogger(__name__)

InputFormatError = DataFormatError
"""An input file that cannot be read; the message names the file and line (the data layer's
one error class for bad data files, also raised by the JSON and SQuAD readers)."""


def iter_passages(path: str | os.PathLike[str]) -> Iterator[Passage]:
    """The passages of a passage TSV file in file order (`InputFormatError` on a row
    without 3 fields, an empty id or a missing file)."""
    path = os.fspath(path)
    try:
        with open_text(path) as handle:
            reader = csv.reader(handle, delimiter="\t")
            for row in reader:
                if row and row[0] == "id":
                    continue
                if len(row) != 3 or not row[0]:
                    raise InputFormatError(
                        f"{path}:{reader.line_num}: expected 3 tab-separated fields id, text, "
                        f"title, got {len(row)} field(s)" + ("" if row else " (empty line)"))
                yield Passage(title=row[2], text=row[1], passage_id=row[0])
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise InputFormatError(f"{path}: cannot read passages: {err}") from err


def read_passages(path: str | os.PathLike[str]) -> dict[str, Passage]:
    """A passage TSV file's passages by id, in file order (`InputFormatError` on a malformed
    row or a duplicate id)."""
    passages: dict[str, Passage] = {}
    for passage in iter_passages(path):
        if passage.passage_id in passages:
            raise InputFormatError(f"{os.fspath(path)}: duplicate passage id "
                                   f"{passage.passage_id!r}")
        passages[passage.passage_id] = passage
    logger.info("Read %d passages from %s", len(passages), os.fspath(path))
    return passages


def count_passages(path: str | os.PathLike[str]) -> int:
    """Counts the passages of a TSV file in one streaming pass, refusing a duplicate id.

    Memory is 8 bytes per passage (a hash of each id; a clash is confirmed on the strings in
    a second pass), so it suits corpora too large to hold as `read_passages` does.
    InputFormatError on a malformed row or a duplicate id.
    """
    hashes = np.fromiter((hash(p.passage_id) for p in iter_passages(path)), dtype=np.int64)
    ordered = np.sort(hashes)
    clashes = set(ordered[1:][ordered[1:] == ordered[:-1]].tolist())
    if clashes:
        seen: set[str] = set()
        for passage in iter_passages(path):
            if hash(passage.passage_id) in clashes:
                if passage.passage_id in seen:
                    raise InputFormatError(f"{os.fspath(path)}: duplicate passage id "
                                           f"{passage.passage_id!r}")
                seen.add(passage.passage_id)
    return len(hashes)


def parse_answers(field: str) -> list[str]:
    """An answer list written as JSON or as a Python literal (ValueError unless it is a list
    of strings)."""
    try:
        answers = json.loads(field)
    except json.JSONDecodeError:
        try:
            answers = ast.literal_eval(field)
        except (ValueError, SyntaxError, MemoryError, RecursionError) as err:
            raise ValueError("answers are neither a JSON list nor a Python literal list") \
                from err
    if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
        raise ValueError("answers must be a list of strings")
    return answers


def read_qas(path: str | os.PathLike[str]) -> list[tuple[str, list[str]]]:
    """A QA TSV file's (question, answers) pairs (`InputFormatError` on a line without a TAB
    or with unreadable answers)."""
    path = os.fspath(path)
    rows: list[tuple[str, list[str]]] = []
    try:
        with open_text(path) as handle:
            for number, line in enumerate(handle, start=1):
                line = line.rstrip("\r\n")
                if not line.strip():
                    continue
                question, sep, field = line.partition("\t")
                if not sep:
                    raise InputFormatError(f"{path}:{number}: expected question<TAB>answers")
                try:
                    rows.append((question, parse_answers(field.strip())))
                except ValueError as err:
                    raise InputFormatError(f"{path}:{number}: {err}") from err
    except (OSError, UnicodeDecodeError) as err:
        raise InputFormatError(f"{path}: cannot read questions: {err}") from err
    logger.info("Read %d questions from %s", len(rows), path)
    return rows
