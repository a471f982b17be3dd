"""Searching an index (`FaissIndex`), a folder written by `dpr.index.build` or one built in
memory. Usage, search settings, re-ranking and score conventions: docs/SCALE.md, "Searching,
from the command line and from code"."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import faiss
import numpy as np

from dpr.index.build import (
    INDEX_FILE,
    SETTINGS_FILE,
    BuildOptions,
    faiss_reason,
    fill_index,
    make_index,
)
from dpr.index.idmap import IdList, IdMap, lookup
from dpr.index.rerank import ShardVectors, open_shard_vectors, rerank
from dpr.index.shards import Shard
from dpr.utils.errors import InputError, UsageError

logger = logging.getLogger(__name__)

DEFAULT_NPROBE = 32
DEFAULT_EF_SEARCH = 128


def hnsw_parameter(index: faiss.Index) -> str | None:
    """The ParameterSpace name of efSearch for this index, or None without HNSW."""
    inner = faiss.downcast_index(index)
    while isinstance(inner, faiss.IndexPreTransform):  # OPQ, PCA
        inner = faiss.downcast_index(inner.index)
    if isinstance(inner, faiss.IndexHNSW):
        return "efSearch"
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None and isinstance(faiss.downcast_index(ivf.quantizer), faiss.IndexHNSW):
        return "quantizer_efSearch"
    return None


class FaissIndex:
    """An index, the passage id of each row and its build settings (`build.json`).

    Args:
        ids: Passage ids of its rows (an `IdMap` of a folder, or a list in memory).
        folder: The index folder (to find the shards when re-ranking); None in memory.
        embeddings: Glob of the shards for re-ranking, when they moved since the build.
        name: What errors and logs call it (default: the folder).
    """

    def __init__(self, index: faiss.Index, ids: Sequence[str], settings: dict, *,
                 folder: str | os.PathLike[str] | None = None, embeddings: str | None = None,
                 name: str | None = None) -> None:
        self.index, self.ids, self.settings = index, ids, settings
        self.metric = settings.get("metric", "ip")
        ivf = faiss.try_extract_index_ivf(index)
        self.nlist: int | None = None if ivf is None else int(ivf.nlist)
        self.ef_parameter = hnsw_parameter(index)
        top = faiss.downcast_index(index)
        self.refine = top if isinstance(top, faiss.IndexRefine) else None
        self.rerank: int | None = None
        self._folder, self._embeddings = folder, embeddings
        self.name = name or (os.fspath(folder) if folder is not None else "index in memory")
        self._shards: ShardVectors | None = None
        self._direct_map = False

    @property
    def dim(self) -> int:
        return int(self.index.d)

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def configure(self, *, nprobe: int | None = None, ef_search: int | None = None,
                  rerank: int | None = None) -> None:
        """Sets the search effort; None keeps the current value (`rerank=0` turns re-ranking
        off).

        Raises:
            UsageError: For a value < 1, an nprobe larger than the list count, or a setting
                the index does not have (nprobe without IVF, ef_search without HNSW).
            InputError: When re-ranking needs shards that are missing or changed.
        """
        if rerank is not None:
            if rerank < 0:
                raise UsageError(f"--rerank must be >= 0 (0: off), got {rerank}")
            if rerank and self.refine is None and self._shards is None:
                self._shards = open_shard_vectors(self.settings, self._folder or ".",
                                                  embeddings=self._embeddings)
            self.rerank = rerank or None
        space = faiss.ParameterSpace()
        if nprobe is not None:
            if self.nlist is None:
                raise UsageError(f"--nprobe: the index ({self.settings.get('factory')}) has no "
                                 "inverted lists")
            if not 1 <= nprobe <= self.nlist:
                raise UsageError(f"--nprobe must be in [1, {self.nlist}] (the index's inverted "
                                 f"list count), got {nprobe}")
            space.set_index_parameter(self.index, "nprobe", nprobe)
        if ef_search is not None:
            if self.ef_parameter is None:
                raise UsageError(f"--ef_search: the index ({self.settings.get('factory')}) has "
                                 "no HNSW graph")
            if ef_search < 1:
                raise UsageError(f"--ef_search must be >= 1, got {ef_search}")
            space.set_index_parameter(self.index, self.ef_parameter, ef_search)

    def search_rows(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k index rows of queries [Q × dim] (float32 or float16): scores float32
        [Q × k] (larger is better, -inf for missing results) and rows int64 [Q × k] (-1)."""
        if k < 1:
            raise UsageError(f"--n_docs must be >= 1, got {k}")
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise InputError(f"queries of shape {vectors.shape}: the index holds vectors of "
                             f"size {self.dim}")
        queries = np.ascontiguousarray(vectors, dtype=np.float32)  # [Q × D]
        fetch = k if self.rerank is None else max(k, self.rerank)
        if self.refine is not None:
            self.refine.k_factor = fetch / k
        elif self.rerank is not None:
            _, candidates = self.index.search(queries, fetch)  # [Q × K]
            return rerank(queries, candidates, self._shards, k, metric=self.metric)
        distances, rows = self.index.search(queries, k)
        scores = -distances if self.metric == "l2" else distances
        scores[rows < 0] = -np.inf
        return scores, rows

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, list[list[str]]]:
        """Top-k passages per query: scores [Q × k] and, per query, the valid results' ids."""
        scores, rows = self.search_rows(vectors, k)
        return scores, lookup(self.ids, rows)

    def vectors(self, rows: np.ndarray) -> np.ndarray:
        """The stored (for compressed indexes, decoded) vectors of index rows, float32;
        InputError naming the factory when the index cannot return them."""
        if not self._direct_map:
            ivf = faiss.try_extract_index_ivf(self.index)
            if ivf is not None:
                ivf.make_direct_map()
            self._direct_map = True
        try:
            return self.index.reconstruct_batch(np.asarray(rows, dtype=np.int64))
        except RuntimeError as err:
            raise InputError(f"{self.name}: this index ({self.settings.get('factory')}) cannot "
                             f"return its stored vectors: {faiss_reason(err)}") from err

    def check_encoder(self, model: Mapping[str, object] | None, *, dim: int | None) -> None:
        """Refuses a model other than the one whose vectors the index holds.

        Args:
            model: The searching model's `dpr.inference.chunks.model_identity`; None: the
                size alone is checked.
            dim: The size of the model's vectors (None: not known).

        Raises:
            InputError: For vectors of another size, or another model fingerprint than the
                build's manifest records. Without a manifest (DPR's or hand-made shards), or
                for another precision (the same model's vectors), a warning.
        """
        if dim is not None and dim != self.dim:
            raise InputError(f"{self.name}: vectors of size {self.dim}, but the model encodes "
                             f"vectors of size {dim} (an index of another model?)")
        built = self.settings.get("encoder")
        if model is None:
            return
        if built is None:
            logger.warning("%s: no manifest recorded which model encoded these vectors (DPR's "
                           "or hand-made shards): only their size is checked against %s",
                           self.name, model["model"])
            return
        if built.get("model_fingerprint") != model["model_fingerprint"]:
            raise InputError(
                f"{self.name}: its vectors were encoded by {built.get('model')} (fingerprint "
                f"{built.get('model_fingerprint')}), not by {model['model']} (fingerprint "
                f"{model['model_fingerprint']}): another model's vectors rank nonsense; "
                "re-encode the passages with this model and index them again")
        if built.get("precision") not in (None, model["precision"]):
            logger.warning("%s: passages encoded in %s, questions now in %s (--fp16, "
                           "--amp_dtype)", self.name, built["precision"], model["precision"])


def read_settings(folder: str | os.PathLike[str]) -> dict:
    """The build settings of an index folder (InputError when `build.json` is unreadable)."""
    path = Path(folder) / SETTINGS_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise InputError(f"{path}: cannot read the build settings of an index folder: {err}"
                         ) from err


def load_index(folder: str | os.PathLike[str], *, nprobe: int | None = None,
               ef_search: int | None = None, rerank: int | None = None,
               embeddings: str | None = None, mmap: bool = False) -> FaissIndex:
    """Opens an index folder written by `dpr.index.build`, ready to search.

    Args:
        nprobe: IVF lists visited per query (None: min(32, list count)).
        ef_search: HNSW candidate list size (None: 128).
        rerank: Candidates fetched and re-scored exactly per query (None or 0: no re-ranking).
        embeddings: Glob of the shards the index was built from, for re-ranking when they
            are no longer where `build.json` says.
        mmap: Memory-map what faiss can instead of reading it into memory.

    Raises:
        InputError: For a missing or unreadable file.
        UsageError: For search settings the index does not accept (see `configure`).
    """
    settings = read_settings(folder)
    path = Path(folder) / INDEX_FILE
    flags = faiss.IO_FLAG_ONDISK_SAME_DIR | (faiss.IO_FLAG_MMAP if mmap else 0)
    if not path.is_file():
        raise InputError(f"{path}: index file missing")
    try:
        index = faiss.read_index(str(path), flags)
    except RuntimeError as err:
        raise InputError(f"{path}: cannot read the index: {faiss_reason(err)}") from err
    ids = IdMap(folder)
    if index.ntotal != len(ids):
        raise InputError(f"{path}: {index.ntotal} vectors but {len(ids)} ids in its id map")
    return _ready(FaissIndex(index, ids, settings, folder=folder, embeddings=embeddings),
                  nprobe=nprobe, ef_search=ef_search, rerank=rerank)


def _ready(index: FaissIndex, *, nprobe: int | None = None, ef_search: int | None = None,
           rerank: int | None = None) -> FaissIndex:
    """The index configured with the given search effort or the defaults."""
    if nprobe is None and index.nlist is not None:
        nprobe = min(DEFAULT_NPROBE, index.nlist)
    if ef_search is None and index.ef_parameter is not None:
        ef_search = DEFAULT_EF_SEARCH
    index.configure(nprobe=nprobe, ef_search=ef_search, rerank=rerank)
    logger.info("%s: %s (%s, %d vectors of size %d); nprobe %s, efSearch %s, re-rank %s",
                index.name, index.settings.get("factory"), index.settings.get("metric"),
                len(index), index.dim, nprobe, ef_search, rerank)
    return index


def index_vectors(vectors: np.ndarray, ids: Sequence[str]) -> FaissIndex:
    """An exact inner-product index ("Flat") of vectors held in memory [N × D] (rows: `ids`'
    order)."""
    index = make_index(BuildOptions(factory="Flat"), vectors.shape[1])
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    settings = {"factory": "Flat", "metric": "ip", "dim": index.d, "count": int(index.ntotal),
                "encoder": None}
    return _ready(FaissIndex(index, list(ids), settings))


def index_shards(shards: list[Shard], options: BuildOptions) -> FaissIndex:
    """An index of embedding shards built in memory, the shards read one at a time (the
    steps of `dpr.index.build.build_index` without a folder: see `fill_index`)."""
    index, settings = fill_index(shards, options, ids := IdList())
    more = f" and {len(shards) - 1} other shard(s)" if len(shards) > 1 else ""
    return _ready(FaissIndex(index, ids, settings, name=f"{shards[0].path}{more}"))
