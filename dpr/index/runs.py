"""Query vectors in, run files out, for `python -m dpr.index search`.

Queries: a `.npy` [Q × D] (float32 or float16); query ids come from the `.ids.json` beside it
when there is one (the layout `generate_dense_embeddings.py` writes), else they are the 0-based
row numbers.

Run files, chosen by the output's suffix:

* `.tsv`: a header `query_id  passage_id  rank  score`, then one line per result (rank 1
  first);
* `.json`: a list of `{"query_id", "passage_ids", "scores"}` per query;
* `.txt` or `.trec`: a TREC run, `qid Q0 docid rank score run_name` (trec_eval, ir-measures).
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dpr.index.shards import IDS_SUFFIX, read_ids
from dpr.utils.errors import InputError, UsageError
from dpr.utils.io import atomic_write

logger = logging.getLogger(__name__)

RUN_SUFFIXES = (".tsv", ".json", ".txt", ".trec")
_SPACE = re.compile(r"\s")
_TAB = re.compile(r"[\t\n\r]")


def read_queries(path: str | os.PathLike[str]) -> tuple[list[str], np.ndarray]:
    """Query ids and vectors [Q × D] from a `.npy` (ids from its `.ids.json` when present).

    Raises:
        InputError: Naming the file when it is unreadable, not a 2-d float array, or its ids
            do not match the vectors.
    """
    path = os.fspath(path)
    try:
        vectors = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise InputError(f"{path}: cannot read query vectors: {err}") from err
    if vectors.ndim != 2 or vectors.dtype.kind != "f":
        raise InputError(f"{path}: expected a 2-d float array, got shape {vectors.shape} of "
                         f"{vectors.dtype}")
    ids_file = path[: -len(".npy")] + IDS_SUFFIX if path.endswith(".npy") else None
    if ids_file is None or not os.path.isfile(ids_file):
        return [str(i) for i in range(len(vectors))], vectors
    ids = read_ids(ids_file)
    if len(ids) != len(vectors):
        raise InputError(f"{ids_file}: {len(ids)} ids for {len(vectors)} query vectors")
    return ids, vectors


def check_run_path(path: str | os.PathLike[str]) -> None:
    """Refuses an output name whose suffix is not a run format (before any work).

    Raises:
        UsageError: Naming `--out_file`.
    """
    if Path(path).suffix not in RUN_SUFFIXES:
        raise UsageError(f"--out_file {path}: expected a name ending in "
                         f"{', '.join(RUN_SUFFIXES)}")


def _lines(path: str | os.PathLike[str], query_ids: Sequence[str], ids: list[list[str]],
           scores: np.ndarray, *, trec: bool, name: str) -> list[str]:
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


def write_run(path: str | os.PathLike[str], query_ids: Sequence[str], ids: list[list[str]],
              scores: np.ndarray, *, name: str = "dpr.index") -> None:
    """Writes search results atomically in the format of the file's suffix (see the module).

    Args:
        path: Output file (`.tsv`, `.json`, `.txt` or `.trec`).
        query_ids: One id per query.
        ids: Per query, the passage ids found, best first.
        scores: [Q × k] scores (the first len(ids[q]) of row q are valid).
        name: Run name of the TREC format.
    """
    check_run_path(path)
    with atomic_write(path) as handle:
        if Path(path).suffix == ".json":
            json.dump([{"query_id": q, "passage_ids": p, "scores": row[:len(p)].tolist()}
                       for q, p, row in zip(query_ids, ids, scores)], handle, ensure_ascii=False)
        else:
            trec = Path(path).suffix in (".txt", ".trec")
            handle.writelines(_lines(path, query_ids, ids, scores, trec=trec, name=name))
    logger.info("Wrote the results of %d queries to %s", len(query_ids), path)
