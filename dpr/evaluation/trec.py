"""TREC run and qrels files of an evaluation (``--trec_dir``), for trec_eval, ir-measures, ranx
or pyserini. Formats and differences of convention with trec_eval: docs/EVALUATION.md, "TREC
files for other evaluation tools".
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence

import numpy as np

from dpr.evaluation.relevance import Qrels
from dpr.index.runs import write_run
from dpr.retrieval.corpus import Corpus
from dpr.retrieval.run import Run
from dpr.utils.errors import InputError
from dpr.utils.io import atomic_write

logger = logging.getLogger(__name__)

_WHITESPACE = re.compile(r"\s")


def run_file_name(retriever: str) -> str:
    """File name of a retriever's run (``dpr:round1`` → ``run.dpr_round1.txt``)."""
    return f"run.{retriever.replace(':', '_')}.txt"


def _check_ids(corpus: Corpus, rows: Sequence[np.ndarray]) -> None:
    """Refuses an id TREC files cannot hold among the passages written (not the whole corpus:
    the cost of the files does not grow with it)."""
    written = np.unique(np.concatenate(rows)) if rows else np.zeros(0, np.int64)
    bad = next((corpus.ids[r] for r in written.tolist()
                if not corpus.ids[r] or _WHITESPACE.search(corpus.ids[r])), None)
    if bad is not None:
        raise InputError(f"{corpus.source}: passage id {bad!r} is empty or contains "
                              "whitespace, which TREC files cannot hold")


def write_trec(folder: str, *, corpus: Corpus, runs: Sequence[Run], qrels: Qrels
               ) -> dict[str, object]:
    """The qrels (``qid 0 docid 1`` per relevant passage, ``qid`` the question's 0-based
    position) and one run file per run in ``folder``.

    Returns:
        ``{"dir": folder, "qrels": path, "runs": {retriever: path}}`` (for the report).

    Raises:
        InputError: If a passage id cannot be written in a TREC file.
    """
    _check_ids(corpus, [rows for run in runs for rows in run.rows] +
               [np.asarray(sorted(rows), dtype=np.int64) for rows in qrels.relevant])
    os.makedirs(folder, exist_ok=True)
    qrels_path = os.path.join(folder, "qrels.txt")
    with atomic_write(qrels_path) as handle:
        for qid, rows in enumerate(qrels.relevant):
            handle.writelines(f"{qid} 0 {corpus.ids[row]} 1\n" for row in sorted(rows))
    paths = {}
    for run in runs:
        paths[run.name] = os.path.join(folder, run_file_name(run.name))
        write_run(paths[run.name], [str(q) for q in range(len(run))],
                  [[corpus.ids[r] for r in rows.tolist()] for rows in run.rows], run.scores,
                  name=run.name)
    logger.info("TREC qrels and %d runs written to %s", len(paths), folder)
    return {"dir": folder, "qrels": qrels_path, "runs": paths}
