"""data_prep's output files (formats: docs/DATA_PREP.md, "Outputs"), each written atomically
with :func:`dpr.utils.io.atomic_write`."""

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
    """Writes ``question<TAB>answers`` lines: the question with its whitespace collapsed (no
    TAB or newline), the answers a JSON list (never read back with ``eval``)."""
    with atomic_write(path) as out:
        for question, answers in rows:
            out.write(f"{clean_text(question)}\t{json.dumps(answers, ensure_ascii=False)}\n")


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Writes a small JSON document (pretty-printed, UTF-8, keys in insertion order)."""
    with atomic_write(path) as out:
        json.dump(payload, out, ensure_ascii=False, indent=2)
        out.write("\n")
