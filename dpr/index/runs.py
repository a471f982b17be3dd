"""Run files: the one writer of ranked results (`dpr.index` searches, `dpr.evaluate --trec_dir`),
in the format of the file's suffix (docs/SCALE.md, "Searching, from the command line and from
code")."""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dpr.utils.errors import InputError, UsageError
from dpr.utils.io import atomic_write

logger = logging.getLogger(__name__)

RUN_SUFFIXES = (".tsv", ".json", ".txt", ".trec")
_SPACE = re.compile(r"\s")
_TAB = re.compile(r"[\t\n\r]")


def check_run_path(path: str | os.PathLike[str]) -> None:
    """Refuses (UsageError naming `--out_file`) an output name whose suffix is not a run
    format, before any work."""
    if Path(path).suffix not in RUN_SUFFIXES:
        raise UsageError(f"--out_file {path}: expected a name ending in "
                         f"{', '.join(RUN_SUFFIXES)}")


def _lines(path: str | os.PathLike[str], query_ids: Sequence[str], ids: Sequence[Sequence[str]],
           scores: Sequence[np.ndarray], *, trec: bool, name: str) -> list[str]:
    lines = [] if trec else ["query_id\tpassage_id\trank\tscore\n"]
    separator = _SPACE if trec else _TAB
    for qid, passages, row in zip(query_ids, ids, scores):
        bad = next((i for i in (qid, *passages) if separator.search(i)), None)
        if bad is not None:
            raise InputError(f"{path}: id {bad!r} holds a separator of this run format; "
                             "write a .json run instead")
        for rank, (pid, score) in enumerate(zip(passages, row.tolist()), start=1):
            lines.append(f"{qid} Q0 {pid} {rank} {score!r} {name}\n" if trec
                         else f"{qid}\t{pid}\t{rank}\t{score!r}\n")
    return lines


def write_run(path: str | os.PathLike[str], query_ids: Sequence[str],
              ids: Sequence[Sequence[str]], scores: Sequence[np.ndarray], *,
              name: str = "dpr.index") -> None:
    """Writes search results atomically in the format of the file's suffix (see the module).

    Args:
        ids: Per query, the passage ids found, best first.
        scores: Per query, the scores (an array [Q × k] or one array per query; the first
            len(ids[q]) of query q are written), with full precision.
        name: Run name of the TREC format.

    Raises:
        InputError: For an id holding a separator of the format (whitespace in TREC).
    """
    check_run_path(path)
    with atomic_write(path) as handle:
        if Path(path).suffix == ".json":
            json.dump([{"query_id": q, "passage_ids": list(p),
                        "scores": np.asarray(row[:len(p)]).tolist()}
                       for q, p, row in zip(query_ids, ids, scores)], handle, ensure_ascii=False)
        else:
            trec = Path(path).suffix in (".txt", ".trec")
            handle.writelines(_lines(path, query_ids, ids, scores, trec=trec, name=name))
    logger.info("Wrote the results of %d queries to %s", len(query_ids), path)
