"""Exact re-scoring of a compressed index's candidates from the memory-mapped embedding shards
it was built from. Why and at what cost: docs/SCALE.md, "Exact re-ranking of compressed
candidates"."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dpr.index.shards import find_shards, map_vectors
from dpr.utils.errors import InputError

logger = logging.getLogger(__name__)

CANDIDATES_PER_BLOCK = 8_192  # candidate vectors gathered at once (12 MiB at D = 384)


class ShardVectors:
    """The rows of an index's `.npy` shards (in its row order), memory-mapped: index row r →
    (shard, offset); InputError naming a shard that cannot be read or does not match the
    `rows` and `dim` that `build.json` expects."""

    def __init__(self, paths: Sequence[str], rows: Sequence[int], dim: int) -> None:
        self.paths = list(paths)
        self.arrays: list[np.ndarray] = []
        for path, count in zip(self.paths, rows):
            if not path.endswith(".npy"):
                raise InputError(f"{path}: re-ranking reads .npy shards only")
            array = map_vectors(path)
            if array.shape != (count, dim):
                raise InputError(f"{path}: {array.shape} vectors, but the index was built from "
                                 f"({count}, {dim}) (re-encoded since?)")
            self.arrays.append(array)
        self.starts = np.zeros(len(self.arrays) + 1, dtype=np.int64)
        np.cumsum([len(a) for a in self.arrays], out=self.starts[1:])

    def __len__(self) -> int:
        return int(self.starts[-1])

    def gather(self, rows: np.ndarray) -> np.ndarray:
        """float32 [n × D] vectors of index rows [n] (all >= 0), read shard by shard in
        ascending row order (sequential pages, each row read once)."""
        out = np.empty((len(rows), self.arrays[0].shape[1]), dtype=np.float32)
        shard_of = np.searchsorted(self.starts, rows, side="right") - 1
        for s in np.unique(shard_of):
            mine = np.flatnonzero(shard_of == s)
            local, inverse = np.unique(rows[mine] - self.starts[s], return_inverse=True)
            out[mine] = self.arrays[s][local][inverse]  # cast to float32 on assignment
        return out


def _stored_paths(settings: dict, folder: str | os.PathLike[str]) -> list[str]:
    """Where the build's shards are now: as recorded (relative to the working folder), else
    their absolute path at build time, else beside the index folder."""
    found = []
    for shard in settings["shards"]:
        candidates = [shard["path"], shard.get("abspath") or "",
                      str(Path(folder).parent / shard["path"])]
        path = next((c for c in candidates if c and os.path.isfile(c)), None)
        if path is None:
            raise InputError(f"{shard['path']}: shard of the index {folder} not found for "
                             "re-ranking (pass --encoded_ctx_file to say where the shards are)")
        found.append(path)
    return found


def open_shard_vectors(settings: dict, folder: str | os.PathLike[str], *,
                       embeddings: str | None = None) -> ShardVectors:
    """The vectors an index folder (`settings`: its `build.json`) was built from, found where
    the build says or by `embeddings`, the glob of the shards when they moved; InputError
    when a shard is missing, or differs in count, rows or size."""
    recorded = settings.get("shards") or []
    paths = (find_shards(embeddings) if embeddings is not None
             else _stored_paths(settings, folder))
    if len(paths) != len(recorded):
        raise InputError(f"--encoded_ctx_file {embeddings}: {len(paths)} shard(s), but the "
                         f"index was built from {len(recorded)}")
    vectors = ShardVectors(paths, [s["rows"] for s in recorded], int(settings["dim"]))
    logger.info("Re-ranking from %d shard(s) (%d vectors)", len(paths), len(vectors))
    return vectors


def rerank(queries: np.ndarray, rows: np.ndarray, vectors: ShardVectors, k: int, *,
           metric: str = "ip") -> tuple[np.ndarray, np.ndarray]:
    """Re-scores candidates exactly and keeps the best k (<= K) per query.

    Args:
        queries: float32 [Q × D].
        rows: int64 [Q × K] candidate index rows (-1: none).
        metric: "ip" (inner product) or "l2" (scores are negated squared distances).

    Returns:
        Exact scores float32 [Q × k] (best first, -inf where fewer candidates) and rows
        int64 [Q × k] (-1 there).
    """
    scores = np.full(rows.shape, -np.inf, dtype=np.float32)
    block = max(1, CANDIDATES_PER_BLOCK // max(1, rows.shape[1]))
    for first in range(0, len(rows), block):
        part = rows[first:first + block]  # [b × K]
        valid = part >= 0
        if not valid.any():
            continue
        safe = np.where(valid, part, part[valid][0])  # a real row where none was found
        candidates = vectors.gather(safe.ravel()).reshape(*part.shape, -1)  # [b × K × D]
        q = queries[first:first + block]  # [b × D]
        exact = np.matmul(candidates, q[:, :, None])[..., 0]  # [b × K]
        if metric == "l2":
            exact = 2 * exact - (candidates ** 2).sum(-1) - (q ** 2).sum(-1, keepdims=True)
        scores[first:first + block] = np.where(valid, exact, -np.inf)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    best = np.take_along_axis(scores, order, 1)
    return best, np.where(np.isfinite(best), np.take_along_axis(rows, order, 1), -1)
