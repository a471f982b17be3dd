"""TREC run and qrels files of an evaluation, for trec_eval, ir-measures, ranx or pyserini.

* ``run.<retriever>.txt``: ``qid Q0 docid rank score run_name``, the top ``--n_docs`` of each
  question in our ranking order (rank 1 first), with the retriever's own score (BM25, inner
  product or fused score, written with full precision).
* ``qrels.txt``: ``qid 0 docid 1`` for every passage our relevance judging found relevant: the
  retrieved passages containing an answer (``--relevance answer``: judged on the union of the
  runs, not on the whole corpus) or the gold paragraph (``--relevance id``), i.e. exactly the
  set recall and MAP are computed with.

``qid`` is the question's 0-based position in the question file (the order of
``first_hit_rank`` in results.json); ``docid`` is the passage id of the TSV (or the SQuAD
paragraph key). Questions without a relevant passage have no qrels line; our means still count
them (as misses), while trec_eval averages over the questions of the qrels only.

trec_eval sorts a run by score and breaks ties by docid, not by the rank column: where scores
tie (BM25 on a small corpus, RRF), read the rank column to get our order (ir-measures and
ranx can be given scores ``-rank``); see docs/EVALUATION.md. Run files are written by the
one run writer, :func:`dpr.index.runs.write_run`.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence

import numpy as np

from dpr.evaluation.inputs import EvaluationError
from dpr.evaluation.relevance import Qrels
from dpr.index.runs import write_run
from dpr.retrieval.corpus import Corpus
from dpr.retrieval.run import Run
from dpr.utils.io import atomic_write

logger = logging.getLogger(__name__)

QRELS_FILE = "qrels.txt"
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
        raise EvaluationError(f"{corpus.source}: passage id {bad!r} is empty or contains "
                              "whitespace, which TREC files cannot hold")


def write_qrels(path: str, *, doc_ids: Sequence[str], relevant: Sequence[Sequence[int]]) -> None:
    """The qrels file: ``qid 0 docid 1`` per relevant passage of each question."""
    with atomic_write(path) as handle:
        for qid, indices in enumerate(relevant):
            for index in indices:
                handle.write(f"{qid} 0 {doc_ids[int(index)]} 1\n")


def write_trec(folder: str, *, corpus: Corpus, runs: Sequence[Run], qrels: Qrels
               ) -> dict[str, object]:
    """The qrels and one run file per run in ``folder``.

    Returns:
        ``{"dir": folder, "qrels": path, "runs": {retriever: path}}`` (for the report).

    Raises:
        EvaluationError: If a passage id cannot be written in a TREC file.
    """
    _check_ids(corpus, [rows for run in runs for rows in run.rows] +
               [np.asarray(sorted(rows), dtype=np.int64) for rows in qrels.relevant])
    os.makedirs(folder, exist_ok=True)
    qrels_path = os.path.join(folder, QRELS_FILE)
    write_qrels(qrels_path, doc_ids=corpus.ids,
                relevant=[sorted(rows) for rows in qrels.relevant])
    paths = {}
    for run in runs:
        paths[run.name] = os.path.join(folder, run_file_name(run.name))
        write_run(paths[run.name], [str(q) for q in range(len(run))],
                  [[corpus.ids[r] for r in rows.tolist()] for rows in run.rows], run.scores,
                  name=run.name)
    logger.info("TREC qrels and %d runs written to %s", len(paths), folder)
    return {"dir": folder, "qrels": qrels_path, "runs": paths}
