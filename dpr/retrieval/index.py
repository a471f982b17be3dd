"""FAISS inner-product indexes over passage vectors: exact (flat) and HNSW.

HNSW searches by L2 distance, so inner-product ranking is obtained with DPR's extra-dimension
trick: with φ = max ‖v‖² over the corpus, each passage v is stored as [v, sqrt(φ − ‖v‖²)] and
each query q searched as [q, 0]; then ‖q' − v'‖² = ‖q‖² + φ − 2·q·v, which orders passages
exactly as −q·v. Both index kinds return inner products (larger is better): for HNSW the
score is recovered as q·v = (‖q‖² + φ − distance) / 2, so scores mean the same for both kinds
(DPR returned the raw HNSW distances).

Persistence is safe: ``<prefix>.index`` (``faiss.write_index``) and ``<prefix>.meta.json``
(passage ids in FAISS row order, index kind and φ). No pickle.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence

import faiss
import numpy as np
from tqdm import tqdm

from dpr.utils.errors import InputError
from dpr.utils.io import atomic_write, read_dpr_pickle, write_vectors

logger = logging.getLogger(__name__)

HNSW_M = 512
HNSW_EF_SEARCH = 128
HNSW_EF_CONSTRUCTION = 200


class EmbeddingFileError(InputError):
    """An embedding or saved-index file that cannot be used; the message names it."""


def index_paths(prefix: str | os.PathLike[str]) -> tuple[str, str]:
    """The two files of a saved index: (faiss index, JSON metadata)."""
    prefix = os.fspath(prefix)
    return f"{prefix}.index", f"{prefix}.meta.json"


class DenseIndex:
    """Passage ids plus a FAISS index searched by inner product.

    Args:
        dim: Vector size.
        hnsw: Use ``IndexHNSWFlat(dim + 1, 512)`` with the extra-dimension trick instead of
            an exact ``IndexFlatIP``.
        phi: Maximum squared norm for HNSW; must be known before the first ``add`` (set it
            with :meth:`set_phi` or pass all vectors to a single ``add``).
    """

    def __init__(self, dim: int, *, hnsw: bool = False, phi: float | None = None) -> None:
        self.dim = dim
        self.hnsw = hnsw
        self.phi = phi
        self.ids: list[str] = []
        if hnsw:
            self.index = faiss.IndexHNSWFlat(dim + 1, HNSW_M)
            self.index.hnsw.efSearch = HNSW_EF_SEARCH
            self.index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        else:
            self.index = faiss.IndexFlatIP(dim)

    def set_phi(self, phi: float) -> None:
        """Sets φ (max ‖v‖² over every vector that will be added); HNSW only, before adding."""
        if self.ids:
            raise ValueError("phi must be set before vectors are added")
        self.phi = float(phi)

    def _augment(self, vectors: np.ndarray) -> np.ndarray:
        norms = (vectors.astype(np.float64) ** 2).sum(axis=1)  # [N]
        if self.phi is None:
            if self.ids:
                raise ValueError("HNSW index: phi unknown; call set_phi before adding in parts")
            self.phi = float(norms.max(initial=0.0))
        if norms.size and norms.max() > self.phi * (1 + 1e-6) + 1e-12:
            raise ValueError(f"HNSW index: a vector's squared norm {norms.max():.6g} exceeds "
                             f"phi {self.phi:.6g}")
        extra = np.sqrt(np.clip(self.phi - norms, 0.0, None))[:, None]
        return np.hstack([vectors, extra]).astype(np.float32)

    def add(self, ids: Sequence[str], vectors: np.ndarray, *, buffer_size: int = 50000,
            quiet: bool = True) -> None:
        """Adds vectors [N × dim] with their passage ids, ``buffer_size`` rows at a time
        (with a progress bar unless ``quiet``)."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim or len(ids) != len(vectors):
            raise ValueError(f"expected {len(ids)} vectors of size {self.dim}, got shape "
                             f"{vectors.shape}")
        if self.hnsw and self.phi is None:
            self.phi = float((vectors.astype(np.float64) ** 2).sum(axis=1).max(initial=0.0))
        with tqdm(total=len(vectors), desc="Indexing", unit=" vectors", disable=quiet) as bar:
            for start in range(0, len(vectors), max(1, buffer_size)):
                chunk = vectors[start:start + buffer_size]
                self.index.add(self._augment(chunk) if self.hnsw else chunk)
                self.ids.extend(ids[start:start + buffer_size])
                bar.update(len(chunk))

    def search(self, queries: np.ndarray, top_k: int) -> tuple[list[list[str]], np.ndarray]:
        """Top-k passages per query.

        Returns:
            Passage ids per query (best first) and their scores [Q × k'] with
            k' = min(top_k, size): inner products, best first.
        """
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        k = min(top_k, len(self.ids))
        if k <= 0:
            return [[] for _ in range(len(queries))], np.zeros((len(queries), 0), np.float32)
        if self.hnsw:
            augmented = np.hstack([queries, np.zeros((len(queries), 1), np.float32)])
            distances, rows = self.index.search(augmented, k)
            q_norms = (queries.astype(np.float64) ** 2).sum(axis=1)[:, None]  # [Q × 1]
            scores = ((q_norms + (self.phi or 0.0) - distances) / 2).astype(np.float32)
        else:
            scores, rows = self.index.search(queries, k)
        ids = [[self.ids[r] for r in row if r >= 0] for row in rows]
        return ids, scores

    def save(self, prefix: str | os.PathLike[str]) -> None:
        """Writes ``<prefix>.index`` and ``<prefix>.meta.json`` (each atomically)."""
        index_file, meta_file = index_paths(prefix)
        with atomic_write(index_file, "wb") as handle:
            handle.write(faiss.serialize_index(self.index).tobytes())
        meta = {"kind": "hnsw" if self.hnsw else "flat", "dim": self.dim, "phi": self.phi,
                "ids": self.ids}
        with atomic_write(meta_file) as handle:
            json.dump(meta, handle)
        logger.info("Saved %d vectors to %s", len(self.ids), index_file)

    @classmethod
    def load(cls, prefix: str | os.PathLike[str]) -> DenseIndex:
        """Reads an index written by :meth:`save`.

        Raises:
            EmbeddingFileError: If a file is missing or the two files do not agree.
        """
        index_file, meta_file = index_paths(prefix)
        try:
            with open(meta_file, encoding="utf-8") as handle:
                meta = json.load(handle)
            index = faiss.read_index(index_file)
        except (OSError, json.JSONDecodeError, RuntimeError) as err:
            raise EmbeddingFileError(f"{prefix}: cannot load index: {err}") from err
        out = cls(int(meta["dim"]), hnsw=meta["kind"] == "hnsw", phi=meta.get("phi"))
        if index.ntotal != len(meta["ids"]):
            raise EmbeddingFileError(f"{index_file}: {index.ntotal} vectors but "
                                     f"{len(meta['ids'])} ids in {meta_file}")
        if out.hnsw:
            index.hnsw.efSearch = HNSW_EF_SEARCH
        out.index, out.ids = index, list(meta["ids"])
        return out

    @staticmethod
    def exists(prefix: str | os.PathLike[str]) -> bool:
        """True when both files of a saved index exist."""
        return all(os.path.isfile(p) for p in index_paths(prefix))


def write_embeddings(prefix: str | os.PathLike[str], ids: Sequence[str],
                     vectors: np.ndarray) -> tuple[str, str]:
    """Writes ``<prefix>.npy`` (float32 [N × D]) and ``<prefix>.ids.json`` atomically.

    Returns:
        The two file names. On error neither file is left behind.
    """
    return write_vectors(prefix, ids, vectors)


def read_embeddings(path: str | os.PathLike[str], *,
                    allow_pickle: bool = False) -> tuple[list[str], np.ndarray]:
    """Reads an embedding file: ours (``.npy`` + ``.ids.json``) or DPR's ``.pkl``.

    DPR's ``.pkl`` (a pickled list of (id, vector) tuples) can run arbitrary code when
    unpickled, so it is read only with ``allow_pickle`` and a warning.

    Returns:
        Passage ids and float32 vectors [N × D].

    Raises:
        EmbeddingFileError: Naming the file when it is unreadable, inconsistent or a refused
            pickle.
    """
    path = os.fspath(path)
    if path.endswith(".pkl"):
        return _read_dpr_pickle(path, allow_pickle=allow_pickle)
    if not path.endswith(".npy"):
        raise EmbeddingFileError(f"{path}: expected a .npy embedding file (or DPR's .pkl)")
    ids_file = path[: -len(".npy")] + ".ids.json"
    try:
        vectors = np.load(path, allow_pickle=False)
        with open(ids_file, encoding="utf-8") as handle:
            ids = [str(i) for i in json.load(handle)]
    except (OSError, ValueError) as err:
        raise EmbeddingFileError(f"{path}: cannot read embeddings: {err}") from err
    if vectors.ndim != 2 or len(ids) != len(vectors):
        raise EmbeddingFileError(f"{path}: {vectors.shape} vectors do not match {len(ids)} ids "
                                 f"in {ids_file}")
    return ids, vectors.astype(np.float32, copy=False)


def _read_dpr_pickle(path: str, *, allow_pickle: bool) -> tuple[list[str], np.ndarray]:
    """Reads DPR's pickled list of (id, vector) tuples (trusted files only)."""
    if not allow_pickle:
        raise EmbeddingFileError(
            f"{path}: DPR .pkl embedding files are pickles, which can run arbitrary code when "
            "read; pass --allow_unsafe_pickle if you trust the file, or re-encode with "
            "generate_dense_embeddings.py")
    logger.warning("%s: unpickling a DPR embedding file (only safe for trusted files)", path)
    try:
        return read_dpr_pickle(path)
    except InputError as err:
        raise EmbeddingFileError(str(err)) from err
