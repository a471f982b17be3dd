"""Output files, all written atomically with :func:`dpr.utils.io.atomic_write`.

* ``DPR_FR_{train,dev}.json``: a JSON array (UTF-8, not ASCII-escaped), one record per line.
* ``passages.tsv``: DPR's passage TSV, header ``id<TAB>text<TAB>title``, written by
  ``csv.writer(delimiter="\\t", lineterminator="\\n")`` with the default (minimal) quoting.
* ``qas_dev.tsv``: no header; one line per dev question: the question (whitespace collapsed,
  so it has no TAB or newline), a TAB, and the answers as a JSON list (``json.dumps``, so it
  has no raw TAB or newline either). Read it with :func:`dpr.data.tsv.read_qas`, i.e.
  ``question, answers = line.rstrip("\\n").split("\\t", 1); answers = json.loads(answers)``;
  never ``eval`` it.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from data_prep.passages import clean_text
from dpr.data.records import Passage
from dpr.utils.io import atomic_write

logger = logging.getLogger(__name__)


def write_records(path: Path, records: Iterable[dict[str, Any]]) -> None:
    """Writes DPR training records as a JSON array with one record per line."""
    with atomic_write(path) as out:
        out.write("[")
        for i, record in enumerate(records):
            out.write(",\n" if i else "\n")
            out.write(json.dumps(record, ensure_ascii=False))
        out.write("\n]\n")


def write_passages_tsv(path: Path, passages: Sequence[Passage]) -> None:
    """Writes ``id, text, title`` rows after a header, tab separated, csv default quoting."""
    with atomic_write(path) as out:
        writer = csv.writer(out, delimiter="\t", lineterminator="\n")
        writer.writerow(["id", "text", "title"])
        for passage in passages:
            writer.writerow([passage.passage_id, passage.text, passage.title])


def write_qas_tsv(path: Path, rows: Iterable[tuple[str, list[str]]]) -> None:
    """Writes ``question<TAB>json answers`` lines (see module docstring)."""
    with atomic_write(path) as out:
        for question, answers in rows:
            out.write(f"{clean_text(question)}\t{json.dumps(answers, ensure_ascii=False)}\n")


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Writes a small JSON document (pretty-printed, UTF-8, keys in insertion order)."""
    with atomic_write(path) as out:
        json.dump(payload, out, ensure_ascii=False, indent=2)
        out.write("\n")
