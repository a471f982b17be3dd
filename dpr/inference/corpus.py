"""The one corpus encoder (`generate_dense_embeddings.py`, `data_prep.mine_negatives`): chunk
files written resumably by independent processes (docs/SCALE.md, section 1). A chunk of
`batch_size` × 64 passages (one length-sorted window of `encode_passages`) is encoded in the
batches of one call over the whole corpus, so N processes write what one would.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm import tqdm

from dpr.data.recipe import SORT_WINDOW_BATCHES
from dpr.data.records import Passage
from dpr.data.tsv import InputFormatError, iter_passages
from dpr.inference.chunks import (
    Chunk,
    Layout,
    chunk_files,
    chunk_prefix,
    incomplete_reason,
    owned_chunks,
    write_manifest,
)
from dpr.inference.loader import DenseEncoder
from dpr.utils.io import remove_stale_temp_files, write_vectors

logger = logging.getLogger(__name__)


@dataclass
class EncodingReport:
    """What one worker did: the indexes of the chunks it encoded and of those it found
    complete, and the passages it encoded, in `seconds` (encoding and writing)."""

    encoded: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    passages: int = 0
    seconds: float = 0.0


def _owned_rows(passages: Iterable[Passage], chunks: Sequence[Chunk],
                source: str) -> Iterator[tuple[Chunk, list[Passage]]]:
    """The passages of each of `chunks` (sorted by index), read from one pass of the stream;
    rows of other chunks are skipped without being kept."""
    stream = iter(passages)
    row = 0
    for chunk in chunks:
        for _ in range(chunk.start - row):
            next(stream, None)
        rows = [p for _, p in zip(range(chunk.size), stream)]
        row = chunk.start + len(rows)
        if len(rows) != chunk.size:
            raise InputFormatError(f"{source}: {row} passages, fewer than counted before "
                                   "(the file changed while encoding?)")
        yield chunk, rows


def _encode_rows(model: DenseEncoder, rows: Sequence[Passage], bar: tqdm) -> np.ndarray:
    """Vectors of one chunk, encoded in windows of length-sorted batches (what one call to
    `encode_passages` does) so that the progress bar moves within a chunk."""
    window = model.batch_size * SORT_WINDOW_BATCHES
    parts = [np.zeros((0, model.dim), np.float32)]
    for start in range(0, len(rows), window):
        piece = rows[start:start + window]
        parts.append(model.encode_passages([(p.title, p.text) for p in piece]))
        bar.update(len(piece))
    return np.concatenate(parts)  # [n × D]


def _clean_temp_files(prefix: str, chunks: Sequence[Chunk]) -> None:
    """Removes temporary files a killed run left for this worker's chunks (only its own: the
    others may be writing theirs right now)."""
    names = {os.path.basename(f) for c in chunks for f in chunk_files(prefix, c)}
    removed = remove_stale_temp_files(os.path.dirname(prefix) or ".", names.__contains__)
    if removed:
        logger.info("Removed %d temporary file(s) of a killed run", len(removed))


def encode_corpus(model: DenseEncoder, passages: str | os.PathLike[str] | Sequence[Passage],
                  prefix: str, layout: Layout, *,
                  manifest: dict[str, Any], worker: int = 0, workers: int = 1,
                  vector_dtype: str = "float32", progress: bool = True) -> EncodingReport:
    """Encodes this worker's incomplete chunks of a passage TSV and writes them.

    Args:
        passages: Passage TSV file (streamed, never more than one chunk in memory), or the
            passages (`layout.total` passages, ids unique).
        prefix: Output prefix: chunk k is written as `<prefix>_<k>.npy` + `.ids.json`.
        manifest: What produces the chunks (`dpr.inference.chunks.make_manifest`), checked
            beforehand with `check_output`; written before the first chunk.
        worker: This worker's number in [0, workers).
        progress: Show a progress bar (passages/s).
    """
    mine = owned_chunks(layout.chunks(), worker, workers)
    _clean_temp_files(prefix, mine)
    report = EncodingReport()
    with tqdm(total=sum(c.size for c in mine), desc="Encoding passages", unit=" passages",
              unit_scale=True, disable=not progress) as bar:
        in_file = isinstance(passages, (str, os.PathLike))
        stream = iter_passages(passages) if in_file else passages
        for chunk, rows in _owned_rows(stream, mine, str(passages) if in_file else "passages"):
            ids = [p.passage_id for p in rows]
            reason = incomplete_reason(prefix, chunk, ids, dim=model.dim, dtype=vector_dtype)
            if reason is None:
                logger.info("Chunk %d (%d passages): complete, skipped", chunk.index, chunk.size)
                report.skipped.append(chunk.index)
                bar.total -= chunk.size
                bar.refresh()
                continue
            logger.info("Chunk %d (passages %d..%d): encoding (%s)", chunk.index, chunk.start,
                        chunk.end, reason)
            start = time.perf_counter()
            vectors = _encode_rows(model, rows, bar)
            write_manifest(prefix, manifest)
            npy, _ = write_vectors(chunk_prefix(prefix, chunk), ids, vectors, dtype=vector_dtype)
            seconds = time.perf_counter() - start
            report.encoded.append(chunk.index)
            report.passages += len(rows)
            report.seconds += seconds
            logger.info("Chunk %d: %d passages in %.1f s (%.1f passages/s), wrote %s",
                        chunk.index, len(rows), seconds, len(rows) / max(seconds, 1e-9), npy)
    return report


def read_chunks(prefix: str | os.PathLike[str], layout: Layout) -> np.ndarray:
    """The vectors of every chunk written by `encode_corpus`, in corpus order, float32
    [N × D] (each chunk memory-mapped while it is copied)."""
    parts = [np.load(chunk_files(prefix, chunk)[0], mmap_mode="r") for chunk in layout.chunks()]
    return np.concatenate(parts).astype(np.float32, copy=False)
