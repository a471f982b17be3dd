"""data_prep's BM25 hard negatives: for each question, the best BM25 passages of its own split
that are neither of its paragraph nor contain an answer (docs/DATA_PREP.md, "Pipeline", steps
6 and 7).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import islice

import numpy as np

from data_prep.passages import PassageSpan
from dpr.data.answers import contains_answer, prepare_text
from dpr.retrieval.bm25 import BM25Retriever

logger = logging.getLogger(__name__)

INDEX_DIRNAME = "bm25_index"


@dataclass
class NegativeQuery:
    """One question: its BM25 tokens (``BM25Retriever.query_tokens``), its prepared answers
    (:func:`dpr.data.answers.prepare_answers`) and its paragraph (never a negative)."""

    tokens: list[str]
    answers: list[str]
    paragraph_key: str


def bm25_negatives(retriever: BM25Retriever, queries: Sequence[NegativeQuery],
                   passages: Sequence[PassageSpan], *, allowed: np.ndarray, top_k: int,
                   n_threads: int = 0) -> list[list[tuple[int, float]]]:
    """The best ``top_k`` BM25 passages of each query that are allowed, not of its paragraph
    and contain none of its answers.

    Questions are searched in one batch (``retriever``, the BM25 index of ``passages``, in
    index order); those left short once filtered are searched again four times deeper.

    Args:
        allowed: Boolean mask over passages (e.g. the passages of the queries' split).
        n_threads: Threads scoring queries at once (0: in the calling thread).

    Returns:
        For each query, ``(passage_index, score)`` pairs by decreasing score (ties by index).
    """
    prepared: dict[int, str] = {}  # passages prepared for answer matching once, when judged

    def negative(row: int, query: NegativeQuery) -> bool:
        if not allowed[row] or passages[row].paragraph_key == query.paragraph_key:
            return False
        if row not in prepared:
            prepared[row] = prepare_text(passages[row].text)
        return not contains_answer(query.answers, prepared[row])

    results: list[list[tuple[int, float]]] = [[] for _ in queries]
    num_allowed = int(allowed.sum())
    pending = [i for i, query in enumerate(queries) if query.tokens]
    depth = min(num_allowed, 2 * top_k + 10)
    # an all-ones mask would cost one extra pass over every passage score per query
    mask = None if num_allowed == len(allowed) else allowed.astype(np.float32)
    while pending and depth > 0 and top_k > 0:
        rows, scores = retriever.top_k([queries[i].tokens for i in pending], depth,
                                       weight_mask=mask, n_threads=n_threads)
        retry = []
        for qi, ranked, ranked_scores in zip(pending, rows.tolist(), scores.tolist()):
            # passages below score 0 are outside the split or share no word: the list ran dry
            kept = list(islice(((row, score) for row, score in zip(ranked, ranked_scores)
                                if score > 0 and negative(row, queries[qi])), top_k))
            results[qi] = kept
            if len(kept) < top_k and ranked_scores[-1] > 0 and depth < num_allowed:
                retry.append(qi)
        if retry:
            logger.debug("%d queries short of negatives; retrying deeper", len(retry))
        pending, depth = retry, min(num_allowed, depth * 4)
    return results
