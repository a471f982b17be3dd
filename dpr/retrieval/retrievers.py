"""The retrievers of an evaluation, each returning a :class:`~dpr.retrieval.run.Run`.

* BM25 (:func:`bm25_run`);
* a dense model (:class:`DenseRetriever`) searching the corpus it encoded, exactly
  (:class:`ExactSearcher`, a faiss inner-product flat index), or a saved index folder built by
  ``python -m dpr.index build`` from its passage embeddings (:class:`SavedIndexSearcher`, whose
  id map must hold the passage ids of the corpus);
* an off-the-shelf sentence-transformers model (the same dense retriever, another encoder).

A searcher also scores any corpus row for a question vector (:meth:`ExactSearcher.scores`),
which the fusions use to score both sides of the union of two lists exactly.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import faiss
import numpy as np

from dpr.retrieval.bm25 import BM25Retriever
from dpr.retrieval.corpus import Corpus
from dpr.retrieval.run import Run
from dpr.utils.errors import InputError

logger = logging.getLogger(__name__)


def bm25_run(bm25: BM25Retriever, questions: Sequence[str], k: int, *, name: str = "bm25",
             seconds: float = 0.0) -> Run:
    """BM25's top ``k`` of every question (``seconds``: time already spent, e.g. indexing)."""
    start = time.perf_counter()
    rows, scores = bm25.search(questions, k)
    return Run(name, tuple(rows), tuple(scores), seconds + time.perf_counter() - start,
               {"bm25": bm25.settings.describe()})


def by_score_then_row(rows: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each question's results ordered by decreasing score, ties by corpus row (missing
    results, -1 with score -inf, last)."""
    order = np.lexsort((rows, -scores))  # [Q × k], along each row
    return np.take_along_axis(rows, order, 1), np.take_along_axis(scores, order, 1)


class Searcher(Protocol):
    """Searches passage vectors of the corpus; rows are corpus rows."""

    description: dict[str, Any]

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Corpus rows [Q × k] (-1: no result) and scores [Q × k], best first."""

    def scores(self, vector: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """The score of each corpus row for one question vector [D], float64 [len(rows)]."""


class ExactSearcher:
    """Exact inner-product search over vectors held in memory (faiss ``IndexFlatIP``).

    Args:
        passages: Passage vectors by corpus row [N × D].
    """

    def __init__(self, passages: np.ndarray) -> None:
        self.passages = np.ascontiguousarray(passages, dtype=np.float32)  # [N × D]
        self.index = faiss.IndexFlatIP(self.passages.shape[1])
        self.index.add(self.passages)
        self.description = {"search": "exact", "index": "IndexFlatIP (in memory)"}

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        k = min(k, len(self.passages))
        scores, rows = self.index.search(np.ascontiguousarray(vectors, dtype=np.float32), k)
        return by_score_then_row(rows.astype(np.int64), scores)

    def scores(self, vector: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return self.passages[rows].astype(np.float64) @ vector.astype(np.float64)


class SavedIndexSearcher:
    """A saved index folder (`dpr.index.load_index`) whose rows map to corpus rows.

    Args:
        index: The loaded index (``dpr.index.FaissIndex``).
        to_corpus: Corpus row of each index row; None when they are equal.
        folder: The index folder (named in errors and reports).
    """

    def __init__(self, index: Any, to_corpus: np.ndarray | None, folder: str) -> None:
        self.index, self.folder = index, folder
        self.to_corpus = to_corpus
        self.to_index = None if to_corpus is None else np.argsort(to_corpus)
        self.description = {"search": "saved index", "index": folder,
                            "factory": index.settings.get("factory"), "metric": index.metric}
        self._reconstructable = False

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores, rows = self.index.search_rows(vectors, min(k, len(self.index)))
        if self.to_corpus is not None:
            rows = np.where(rows >= 0, self.to_corpus[np.maximum(rows, 0)], -1)
        return by_score_then_row(rows, scores)

    def scores(self, vector: np.ndarray, rows: np.ndarray) -> np.ndarray:
        index_rows = rows if self.to_index is None else self.to_index[rows]
        vectors = self._reconstruct(np.asarray(index_rows, dtype=np.int64)).astype(np.float64)
        if self.index.metric == "l2":
            return -((vectors - vector.astype(np.float64)) ** 2).sum(axis=1)
        return vectors @ vector.astype(np.float64)

    def _reconstruct(self, rows: np.ndarray) -> np.ndarray:
        """The stored (for compressed indexes, decoded) vectors of index rows."""
        if not self._reconstructable:
            ivf = faiss.try_extract_index_ivf(self.index.index)
            if ivf is not None:
                ivf.make_direct_map()
            self._reconstructable = True
        try:
            return self.index.index.reconstruct_batch(rows)
        except RuntimeError as err:
            raise InputError(f"--index {self.folder}: the fusions score the union of two "
                                  "lists with the passage vectors, which this index "
                                  f"({self.description['factory']}) cannot return") from err


def open_saved_index(folder: str, corpus: Corpus, *, nprobe: int | None = None,
                     ef_search: int | None = None) -> SavedIndexSearcher:
    """Loads an index folder and maps its rows to the corpus rows by passage id.

    Raises:
        InputError: When the index's ids are not the corpus's passage ids (naming both
            files).
        InputError, UsageError: From `dpr.index.load_index` (missing files, bad settings).
    """
    from dpr.index import load_index

    index = load_index(folder, nprobe=nprobe, ef_search=ef_search)
    ids = index.ids.to_list()
    if ids == corpus.ids:
        return SavedIndexSearcher(index, None, folder)
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
    return SavedIndexSearcher(index, np.asarray([row_of[i] for i in ids], np.int64), folder)


@dataclass(frozen=True)
class DenseRetriever:
    """A dense encoder with a searcher over the corpus it encoded.

    Attributes:
        name: Retriever name (``dpr``, ``dpr:LABEL``, ``sbert``).
        model: Encodes questions (``encode_questions``).
        searcher: Searches the passage vectors.
        seconds: Time spent encoding and indexing the corpus (or loading the index).
        metadata: The model and how it searches, for the runs it makes.
    """

    name: str
    model: Any
    searcher: Searcher
    seconds: float
    metadata: dict[str, Any] = field(default_factory=dict)

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
                    metadata: dict[str, Any] | None = None) -> DenseRetriever:
    """A model's retriever: encodes the corpus and indexes it exactly, or opens ``index``."""
    start = time.perf_counter()
    if index is None:
        searcher: Searcher = ExactSearcher(model.encode_passages(
            list(zip(corpus.titles, corpus.texts))))
    else:
        searcher = open_saved_index(os.fspath(Path(index)), corpus, nprobe=nprobe,
                                    ef_search=ef_search)
        dim = getattr(model, "dim", None)
        if dim is not None and dim != searcher.index.dim:
            raise InputError(f"--index {index}: vectors of size {searcher.index.dim}, but "
                                  f"{model.description} encodes vectors of size {dim} (an "
                                  "index of another model?)")
    return DenseRetriever(name, model, searcher, time.perf_counter() - start,
                          {**(metadata or {}), "description": model.description,
                           **searcher.description})
