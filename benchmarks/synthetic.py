"""Synthetic retrieval vectors for the index benchmark, and exact neighbours in chunks.

The mixture (documented so that results can be compared and reproduced):

* an orthonormal basis Q (QR of a Gaussian matrix) and a decaying spectrum
  s_j = (1 + j) ** -DECAY, j = 0..D-1, scaled so that E‖s ⊙ z‖² = 1 for z ~ N(0, I):
  variance concentrates in few directions, as in trained embeddings;
* a shared direction μ (unit norm) with weight SHARED: every vector leans the same way, the
  anisotropy that makes raw cosines of unrelated passages positive in trained encoders;
* K centres c_k = normalise(Q (s ⊙ g_k)), g_k ~ N(0, I), with Zipf-like weights
  p_k ∝ (k + 1) ** -ZIPF (uneven topic sizes) and per-centre spreads σ_k ~ U(SPREAD);
* a vector: x = normalise(SHARED · μ + c_k + σ_k · Q (s ⊙ z)), k ~ p, z ~ N(0, I).

Queries come from the same mixture with another seed stream (held out: not in the corpus).
Chunks are generated from `numpy.random.default_rng([seed, chunk])`, so a corpus is the same
whatever the chunking of the work, and is written as `.npy` + `.ids.json` shards (float16 or
float32), the layout `python -m dpr.index build` reads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

DECAY = 0.5
SHARED = 0.5
ZIPF = 0.5
SPREAD = (0.6, 1.0)
GENERATION_CHUNK = 100_000
QUERY_STREAM = 1_000_003  # chunk index of the query stream (never a corpus chunk)


@dataclass(frozen=True)
class Mixture:
    """The parameters of the clustered mixture (see the module)."""

    basis: np.ndarray  # [D × D] orthonormal
    spectrum: np.ndarray  # [D]
    shared: np.ndarray  # [D] unit norm
    centres: np.ndarray  # [K × D] unit norm
    weights: np.ndarray  # [K], sums to 1
    spreads: np.ndarray  # [K]

    @classmethod
    def make(cls, dim: int, centres: int, seed: int) -> Mixture:
        rng = np.random.default_rng([seed, 0xC0FFEE])
        basis, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
        spectrum = (1.0 + np.arange(dim)) ** -DECAY
        spectrum /= np.sqrt((spectrum ** 2).sum())
        shared = rng.standard_normal(dim)
        means = (rng.standard_normal((centres, dim)) * spectrum) @ basis.T
        weights = rng.permutation((1.0 + np.arange(centres)) ** -ZIPF)
        return cls(basis=basis, spectrum=spectrum, shared=shared / np.linalg.norm(shared),
                   centres=means / np.linalg.norm(means, axis=1, keepdims=True),
                   weights=weights / weights.sum(), spreads=rng.uniform(*SPREAD, centres))

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n vectors, float32 [n × D], unit norm."""
        k = rng.choice(len(self.weights), size=n, p=self.weights)
        noise = (rng.standard_normal((n, len(self.spectrum))) * self.spectrum) @ self.basis.T
        x = SHARED * self.shared + self.centres[k] + self.spreads[k, None] * noise  # [n × D]
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        return x.astype(np.float32)


def write_corpus(folder: Path, mixture: Mixture, *, n: int, shard_rows: int, seed: int,
                 dtype: str) -> list[Path]:
    """Writes n vectors as shards `passages_<k>.npy` + `.ids.json` (ids `s<row>`)."""
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for shard, start in enumerate(range(0, n, shard_rows)):
        rows = min(shard_rows, n - start)
        out = np.lib.format.open_memmap(folder / f"passages_{shard}.npy", mode="w+",
                                        dtype=dtype, shape=(rows, len(mixture.spectrum)))
        for offset in range(0, rows, GENERATION_CHUNK):
            chunk = (start + offset) // GENERATION_CHUNK
            size = min(GENERATION_CHUNK, rows - offset)
            out[offset:offset + size] = mixture.sample(size, np.random.default_rng([seed, chunk]))
        out.flush()
        del out
        ids = [f"s{i}" for i in range(start, start + rows)]
        (folder / f"passages_{shard}.ids.json").write_text(json.dumps(ids), encoding="utf-8")
        files.append(folder / f"passages_{shard}.npy")
    return files


def queries(mixture: Mixture, count: int, seed: int) -> np.ndarray:
    """Held-out queries from the same mixture [count × D]."""
    return mixture.sample(count, np.random.default_rng([seed, QUERY_STREAM]))


def exact_neighbours(files: list[Path], queries: np.ndarray, k: int, *,
                     chunk_rows: int = 250_000) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k by inner product over shards read in chunks (never all vectors at once).

    Returns:
        Scores float32 [Q × k] and global rows int64 [Q × k], best first.
    """
    best_scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
    best_rows = np.full((len(queries), k), -1, dtype=np.int64)
    offset = 0
    for path in files:
        array = np.load(path, mmap_mode="r")
        for start in range(0, len(array), chunk_rows):
            chunk = np.ascontiguousarray(array[start:start + chunk_rows], dtype=np.float32)
            flat = faiss.IndexFlatIP(chunk.shape[1])
            flat.add(chunk)
            scores, rows = flat.search(queries, min(k, len(chunk)))
            merged_scores = np.hstack([best_scores, scores])
            merged_rows = np.hstack([best_rows, rows + offset + start])
            order = np.argsort(-merged_scores, axis=1, kind="stable")[:, :k]
            best_scores = np.take_along_axis(merged_scores, order, 1)
            best_rows = np.take_along_axis(merged_rows, order, 1)
        offset += len(array)
    return best_scores, best_rows


def recall(found: np.ndarray, exact: np.ndarray, k: int) -> float:
    """Mean |found top-k ∩ exact top-k| / k over the queries."""
    hits = [len(np.intersect1d(f[:k], e[:k])) for f, e in zip(found, exact)]
    return float(np.mean(hits) / k)
