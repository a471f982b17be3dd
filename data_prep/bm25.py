"""BM25 index (bm25s, Snowball stemming, built-in stop words) and hard-negative mining.

The index is saved in ``<output_dir>/bm25_index`` together with ``manifest.json`` holding a
SHA-256 fingerprint of the indexed passages and of the BM25/tokenisation settings; a later run
with the same fingerprint loads it instead of rebuilding. Index files are published with
:func:`dpr.utils.io.atomic_write` and the manifest is written last, so an interrupted save is
never mistaken for a valid index.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import bm25s
import numpy as np

from dpr.data.answers import contains_answer, prepare_text
from dpr.data.records import Passage
from dpr.retrieval.bm25 import LANGUAGES, BM25Settings, BM25Tokenizer, passage_text
from dpr.utils.io import atomic_write

logger = logging.getLogger(__name__)

INDEX_DIRNAME = "bm25_index"
MANIFEST_NAME = "manifest.json"
__all__ = ["LANGUAGES", "BM25Settings", "BM25Tokenizer", "indexed_text", "load_or_build_index",
           "MiningQuery", "NegativeFilter", "mine_hard_negatives"]


def indexed_text(passage: Passage) -> str:
    """The text indexed for a passage: its title and its text."""
    return passage_text(passage.title, passage.text)


def fingerprint(passages: Sequence[Passage], settings: BM25Settings) -> str:
    """SHA-256 of the settings and of every passage id, title and text, in order."""
    digest = hashlib.sha256(json.dumps(settings.describe(), sort_keys=True).encode("utf-8"))
    for passage in passages:
        digest.update(f"{passage.passage_id}\t{passage.title}\t{passage.text}\n".encode())
    return digest.hexdigest()


def _read_manifest(index_dir: Path) -> dict[str, object]:
    try:
        return json.loads((index_dir / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _publish(retriever: bm25s.BM25, index_dir: Path, manifest: dict[str, object]) -> None:
    """Saves the index via a scratch folder, then publishes each file atomically."""
    index_dir.mkdir(parents=True, exist_ok=True)
    (index_dir / MANIFEST_NAME).unlink(missing_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".bm25_scratch.", dir=index_dir.parent))
    try:
        retriever.save(scratch, show_progress=False)
        for source in sorted(scratch.iterdir()):
            with atomic_write(index_dir / source.name, "wb") as out, source.open("rb") as inp:
                shutil.copyfileobj(inp, out)
        with atomic_write(index_dir / MANIFEST_NAME) as out:
            json.dump(manifest, out, indent=2, sort_keys=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def load_or_build_index(
    passages: Sequence[Passage], *, index_dir: Path, settings: BM25Settings, show_progress: bool
) -> tuple[bm25s.BM25, bool]:
    """Loads the saved index when its fingerprint matches the passages, else builds and saves.

    Args:
        passages: All passages, in index order.
        index_dir: Folder of the saved index.
        settings: BM25 parameters and language.
        show_progress: Show bm25s progress bars.

    Returns:
        The retriever and whether it was reused from disk.
    """
    expected = fingerprint(passages, settings)
    manifest = _read_manifest(index_dir)
    if manifest.get("fingerprint") == expected:
        try:
            retriever = bm25s.BM25.load(index_dir)
            if retriever.scores["num_docs"] == len(passages):
                logger.info("Reusing BM25 index in %s (passages unchanged)", index_dir)
                return retriever, True
        except (OSError, ValueError, KeyError) as err:
            logger.warning("Saved BM25 index in %s unusable (%s); rebuilding", index_dir, err)
    logger.info(
        "Building BM25 index over %d passages (method=%s, k1=%s, b=%s)",
        len(passages), settings.method, settings.k1, settings.b,
    )
    tokens = BM25Tokenizer(settings.language).corpus(
        [indexed_text(p) for p in passages], show_progress=show_progress
    )
    retriever = bm25s.BM25(k1=settings.k1, b=settings.b, method=settings.method)
    retriever.index(tokens, show_progress=show_progress)
    _publish(retriever, index_dir, {"fingerprint": expected, "num_docs": len(passages),
                                    "settings": settings.describe()})
    return retriever, False


@dataclass
class MiningQuery:
    """One question to mine negatives for."""

    tokens: list[str]
    answers: list[str]  # prepared (dpr.data.answers.prepare_answers)
    paragraph_key: str


class NegativeFilter:
    """Tells whether a passage may be a negative for a query (answer-free, other paragraph)."""

    def __init__(self, passages: Sequence[Passage]) -> None:
        """Wraps the passages; each is prepared for answer matching once, when first judged."""
        self.passages = passages
        self._prepared: dict[int, str] = {}

    def accepts(self, index: int, query: MiningQuery) -> bool:
        """True if passage ``index`` is not from the query's paragraph and has no answer."""
        passage = self.passages[index]
        if passage.paragraph_key == query.paragraph_key:
            return False
        if index not in self._prepared:
            self._prepared[index] = prepare_text(passage.text)
        return not contains_answer(query.answers, self._prepared[index])


def _select(
    docs: np.ndarray, scores: np.ndarray, *, query: MiningQuery, allowed: np.ndarray,
    negative_filter: NegativeFilter, top_k: int,
) -> tuple[list[tuple[int, float]], bool]:
    """Filters one ranked row; returns the kept negatives and whether the row ran dry."""
    kept: list[tuple[int, float]] = []
    ranked = sorted(zip(docs.tolist(), scores.tolist()), key=lambda item: (-item[1], item[0]))
    for doc, score in ranked:
        if score <= 0:
            return kept, True
        if allowed[doc] and negative_filter.accepts(doc, query):
            kept.append((doc, score))
            if len(kept) == top_k:
                return kept, True
    return kept, False


def mine_hard_negatives(
    retriever: bm25s.BM25, queries: Sequence[MiningQuery], *, allowed: np.ndarray,
    negative_filter: NegativeFilter, top_k: int, n_threads: int = 0, show_progress: bool = True,
) -> list[list[tuple[int, float]]]:
    """Top-``top_k`` BM25 passages per query that pass the negative filter.

    Retrieval is batched (one bm25s call for all pending queries) with a weight mask limiting
    results to ``allowed`` passages; queries left short after filtering are retried with a
    four times larger depth until satisfied or the allowed passages are exhausted.

    Args:
        retriever: Indexed bm25s retriever.
        queries: Queries (stemmed tokens, answer tokens, own paragraph).
        allowed: Boolean mask over passages (e.g. the passages of the query's split).
        negative_filter: Answer and same-paragraph filter.
        top_k: Negatives wanted per query.
        n_threads: bm25s retrieval threads (0: in the calling thread).
        show_progress: Show the bm25s progress bar.

    Returns:
        For each query, ``(passage_index, score)`` pairs by decreasing score (ties by index).
    """
    results: list[list[tuple[int, float]]] = [[] for _ in queries]
    num_allowed = int(allowed.sum())
    vocab = retriever.vocab_dict
    tokens = [[t for t in query.tokens if t in vocab] for query in queries]
    pending = [i for i, toks in enumerate(tokens) if toks]
    depth = min(num_allowed, 2 * top_k + 10)
    # an all-ones mask would cost one extra pass over every passage score per query
    mask = None if num_allowed == len(allowed) else allowed.astype(np.float32)
    while pending and depth > 0 and top_k > 0:
        docs, scores = retriever.retrieve(
            [tokens[i] for i in pending], k=depth, weight_mask=mask, n_threads=n_threads,
            show_progress=show_progress,
        )
        retry = []
        for row, qi in enumerate(pending):
            kept, done = _select(docs[row], scores[row], query=queries[qi], allowed=allowed,
                                 negative_filter=negative_filter, top_k=top_k)
            results[qi] = kept
            if not done and depth < num_allowed:
                retry.append(qi)
        if retry:
            logger.debug("%d queries short of negatives; retrying deeper", len(retry))
        pending, depth = retry, min(num_allowed, depth * 4)
    return results
