"""Dense retrieval: a model's encoder (a DPR model, or the ``sbert`` baseline) with a
:class:`Searcher` over a ``dpr.index`` index of the corpus (built in memory, exact, or a saved
``--index`` folder of the same passages and model), which also scores any corpus row for the
fusions' exact scores.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dpr.index import FaissIndex, index_vectors, load_index
from dpr.retrieval.corpus import Corpus
from dpr.retrieval.run import Run
from dpr.utils.errors import InputError

logger = logging.getLogger(__name__)


def by_score_then_row(rows: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each question's results ordered by decreasing score, ties by corpus row (missing
    results, -1 with score -inf, last)."""
    order = np.lexsort((rows, -scores))  # [Q × k], along each row
    return np.take_along_axis(rows, order, 1), np.take_along_axis(scores, order, 1)


class Searcher:
    """Searches an index of the corpus's passage vectors; rows are corpus rows.

    Args:
        to_corpus: Corpus row of each index row; None when they are equal.
        description: How it searches, for the runs it makes.
    """

    def __init__(self, index: FaissIndex, to_corpus: np.ndarray | None,
                 description: dict[str, Any]) -> None:
        self.index, self.to_corpus, self.description = index, to_corpus, description
        self.to_index = None if to_corpus is None else np.argsort(to_corpus)

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Corpus rows [Q × k] (-1: no result) and scores [Q × k], best first."""
        scores, rows = self.index.search_rows(vectors, min(k, len(self.index)))
        if self.to_corpus is not None:
            rows = np.where(rows >= 0, self.to_corpus[np.maximum(rows, 0)], -1)
        return by_score_then_row(rows, scores)

    def scores(self, vector: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """The score of each corpus row for one question vector [D], float64 [len(rows)]."""
        index_rows = rows if self.to_index is None else self.to_index[rows]
        vectors = self.index.vectors(index_rows).astype(np.float64)
        if self.index.metric == "l2":
            return -((vectors - vector.astype(np.float64)) ** 2).sum(axis=1)
        return vectors @ vector.astype(np.float64)


def open_saved_index(folder: str, corpus: Corpus, *, nprobe: int | None = None,
                     ef_search: int | None = None) -> Searcher:
    """Loads an index folder (`dpr.index.load_index`) and maps its rows to the corpus rows by
    passage id; InputError naming both files when its ids are not the corpus's passage ids."""
    index = load_index(folder, nprobe=nprobe, ef_search=ef_search)
    index.name = f"--index {folder}"
    description = {"search": "saved index", "index": folder,
                   "factory": index.settings.get("factory"), "metric": index.metric}
    ids = list(index.ids)
    if ids == corpus.ids:
        return Searcher(index, None, description)
    row_of = {passage_id: row for row, passage_id in enumerate(corpus.ids)}
    missing = next((i for i in ids if i not in row_of), None)
    if missing is not None or len(ids) != len(corpus.ids):
        ids_file = os.path.join(folder, "ids.txt")
        detail = (f"passage id {missing!r} of the index is not in the passages"
                  if missing is not None else "some passages are not in the index")
        raise InputError(f"--index {ids_file} does not match --ctx_file {corpus.source}: "
                         f"{len(ids)} ids in the index, {len(corpus.ids)} passages; "
                         f"{detail} (build the index from embeddings of these passages)")
    logger.info("%s: index rows mapped to the passages' order by id", folder)
    return Searcher(index, np.asarray([row_of[i] for i in ids], np.int64), description)


@dataclass(frozen=True)
class DenseRetriever:
    """A dense encoder with a searcher over the corpus it encoded."""

    name: str  # dpr, dpr:LABEL, sbert
    model: Any
    searcher: Searcher
    seconds: float  # spent encoding and indexing the corpus (or loading the index)
    metadata: dict[str, Any] = field(default_factory=dict)  # the model, how it searches

    def run(self, questions: Sequence[str], k: int) -> tuple[Run, np.ndarray]:
        """The top ``k`` of every question, and the question vectors [Q × D]."""
        start = time.perf_counter()
        vectors = np.asarray(self.model.encode_questions(list(questions)), dtype=np.float32)
        rows, scores = self.searcher.search(vectors, k)
        run = Run.from_arrays(self.name, rows, scores,
                              seconds=self.seconds + time.perf_counter() - start,
                              metadata=self.metadata)
        return run, vectors


def dense_retriever(name: str, model: Any, corpus: Corpus, *, index: str | None = None,
                    nprobe: int | None = None, ef_search: int | None = None,
                    identity: Mapping[str, object] | None = None,
                    metadata: dict[str, Any] | None = None) -> DenseRetriever:
    """A model's retriever: encodes the corpus and indexes it exactly, or opens ``index`` and
    checks ``identity`` (``dpr.inference.chunks.model_identity``) against the model it records
    (InputError for a saved index of other passages, of another vector size or model)."""
    start = time.perf_counter()
    if index is None:
        vectors = model.encode_passages(list(zip(corpus.titles, corpus.texts)))
        searcher = Searcher(index_vectors(vectors, corpus.ids), None,
                            {"search": "exact", "index": "Flat (in memory)"})
    else:
        searcher = open_saved_index(os.fspath(index), corpus, nprobe=nprobe,
                                    ef_search=ef_search)
        searcher.index.check_encoder(identity, dim=getattr(model, "dim", None))
    return DenseRetriever(name, model, searcher, time.perf_counter() - start,
                          {**(metadata or {}), "description": model.description,
                           **searcher.description})
