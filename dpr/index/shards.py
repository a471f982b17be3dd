"""Embedding files, the one reader of them: shards (`<prefix>_<k>.npy` + `.ids.json`, or DPR's
pickled `.pkl`), their manifest, and query vectors. Formats and checks: docs/SCALE.md, sections
1 and 2."""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import logging
import os
import pickle
import re
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from dpr.utils.errors import InputError

logger = logging.getLogger(__name__)

VECTOR_SUFFIXES = (".npy", ".pkl")
IDS_SUFFIX = ".ids.json"
MANIFEST_SUFFIX = ".manifest.json"
# What an index keeps of a manifest: the model that encoded the vectors and how.
ENCODING_KEYS = ("model", "model_description", "model_fingerprint", "recipe", "precision")
_SHARD_NAME = re.compile(r"^(.*)_\d+\.(?:npy|pkl)$")
FLOAT_DTYPES = ("float32", "float16")


class ShardError(InputError):
    """An embedding shard that cannot be used; the message names the file."""


@dataclass(frozen=True)
class Shard:
    """One checked embedding shard (`ids_path`: None for a `.pkl`, which holds its ids;
    `sha256`: see `with_checksum`, "" when not computed)."""

    path: str
    ids_path: str | None
    rows: int
    dim: int
    dtype: str
    bytes: int
    sha256: str = ""


def _natural_key(path: str) -> list[object]:
    """Sort key that orders `passages_2` before `passages_10`."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path)]


def find_shards(pattern: str) -> list[str]:
    """The vector files (`.npy`, `.pkl`) a glob matches, in natural order (`_2` before `_10`);
    other matches (the `.ids.json` beside each `.npy`) are skipped. ShardError when none."""
    matched = glob.glob(pattern)
    files = sorted((f for f in matched if f.endswith(VECTOR_SUFFIXES)), key=_natural_key)
    if not files:
        found = f" (only e.g. {sorted(matched)[0]})" if matched else ""
        raise ShardError(f"--encoded_ctx_file {pattern}: matches no embedding file "
                         f"({', '.join(VECTOR_SUFFIXES)}){found}")
    if len(matched) > len(files):
        logger.info("--encoded_ctx_file %s: %d embedding file(s), %d other file(s) skipped "
                    "(.ids.json companions...)", pattern, len(files), len(matched) - len(files))
    return files


def ids_path_of(path: str) -> str:
    """The id file of a `.npy` shard: `x.npy` → `x.ids.json`."""
    return path[: -len(".npy")] + IDS_SUFFIX


def read_ids(shard: Shard | str) -> list[str]:
    """The passage ids of a shard, in row order (ShardError for a missing, unreadable or
    non-list id file)."""
    path = shard if isinstance(shard, str) else shard.ids_path
    if path is None:
        return read_dpr_pickle(shard.path)[0]
    try:
        with open(path, encoding="utf-8") as handle:
            ids = json.load(handle)
    except FileNotFoundError as err:
        raise ShardError(f"{path}: id file missing (every .npy shard needs its {IDS_SUFFIX})"
                         ) from err
    except (OSError, ValueError) as err:
        raise ShardError(f"{path}: cannot read passage ids: {err}") from err
    if not isinstance(ids, list):
        raise ShardError(f"{path}: expected a JSON list of passage ids")
    return [str(i) for i in ids]


def vectors(shard: Shard) -> np.ndarray:
    """The shard's vectors [rows × dim] as stored: memory-mapped for `.npy` (no copy)."""
    if shard.ids_path is None:
        return read_dpr_pickle(shard.path)[1]
    return map_vectors(shard.path)


def map_vectors(path: str) -> np.ndarray:
    """A `.npy` vector file, memory-mapped (no pickle); ShardError when unreadable."""
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as err:
        raise ShardError(f"{path}: cannot read vectors: {err}") from err


def read_shard(path: str, *, allow_pickle: bool = False) -> tuple[list[str], np.ndarray]:
    """A whole checked shard (`open_shard`) in memory: its ids and float32 vectors [n × D]."""
    shard = open_shard(path, allow_pickle=allow_pickle)
    return read_ids(shard), np.asarray(vectors(shard), dtype=np.float32)


def read_dpr_pickle(path: str) -> tuple[list[str], np.ndarray]:
    """DPR's embedding file, a pickled list of (id, vector) tuples, as ids and float32
    vectors [N × D] (ShardError when it is not such a list). Unpickling can run arbitrary
    code: callers ask the user to opt in first."""
    try:
        with open(path, "rb") as handle:
            rows = pickle.load(handle)
        ids = [str(row[0]) for row in rows]
        array = np.stack([np.asarray(row[1], dtype=np.float32) for row in rows])
    except Exception as err:  # any failure of a foreign pickle is bad input
        raise ShardError(f"{path}: cannot read DPR embeddings: {err}") from err
    return ids, array


def open_shard(path: str, *, allow_pickle: bool = False) -> Shard:
    """Checks one shard without loading its vectors; ShardError naming the file when it is
    unreadable, not [n × D] floats, a refused pickle, or lacks one id per vector."""
    if not path.endswith(VECTOR_SUFFIXES):
        raise ShardError(f"{path}: expected a .npy embedding file (or DPR's .pkl)")
    if path.endswith(".pkl"):
        if not allow_pickle:
            raise ShardError(f"{path}: DPR .pkl shards are pickles, which can run arbitrary code "
                             "when read; pass --allow_unsafe_pickle if you trust the file")
        logger.warning("%s: unpickling a DPR embedding file (only safe for trusted files)", path)
        ids, array = read_dpr_pickle(path)
        ids_path = None
    else:
        array = map_vectors(path)
        ids_path = ids_path_of(path)
        ids = read_ids(ids_path)
    if array.ndim != 2 or array.dtype.name not in FLOAT_DTYPES:
        raise ShardError(f"{path}: expected a 2-d float32 or float16 array, got shape "
                         f"{array.shape} of {array.dtype}")
    if len(ids) != len(array):
        raise ShardError(f"{ids_path or path}: {len(ids)} ids for {len(array)} vectors in {path}")
    return Shard(path=path, ids_path=ids_path, rows=len(array), dim=int(array.shape[1]),
                 dtype=array.dtype.name, bytes=os.path.getsize(path))


def _sha256(path: str) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def with_checksum(shard: Shard) -> Shard:
    """The shard with the SHA-256 of its vector file (and of its id file, after a "+")."""
    digest = _sha256(shard.path)
    if shard.ids_path is not None:
        digest += "+" + _sha256(shard.ids_path)
    return dataclasses.replace(shard, sha256=digest)


def open_shards(files: list[str], *, allow_pickle: bool = False) -> list[Shard]:
    """Checks every shard (`open_shard`), one at a time, and that they share one vector
    size (ShardError naming the first that does not)."""
    shards: list[Shard] = []
    for path in files:
        shard = open_shard(path, allow_pickle=allow_pickle)
        if shards and shard.dim != shards[0].dim:
            raise ShardError(f"{path}: vectors of size {shard.dim}, but {shards[0].path} has "
                             f"size {shards[0].dim}")
        shards.append(shard)
    logger.info("%d shard(s), %d vectors of size %d", len(shards),
                sum(s.rows for s in shards), shards[0].dim if shards else 0)
    return shards


def iter_chunks(shard: Shard, chunk_rows: int) -> Iterator[np.ndarray]:
    """The shard's vectors as float32 C-contiguous chunks of at most `chunk_rows` rows."""
    array = vectors(shard)
    for start in range(0, shard.rows, chunk_rows):
        yield np.ascontiguousarray(array[start:start + chunk_rows], dtype=np.float32)


def sample_rows(shards: list[Shard], size: int, *, seed: int) -> np.ndarray:
    """A seeded uniform sample of `size` rows over all shards (all when there are fewer),
    read shard by shard: float32 [min(size, total) × dim], rows in shard order."""
    total = sum(s.rows for s in shards)
    size = min(size, total)
    chosen = np.sort(np.random.default_rng(seed).choice(total, size=size, replace=False))
    out = np.empty((size, shards[0].dim), dtype=np.float32)
    done, offset = 0, 0
    for shard in shards:
        mine = chosen[(chosen >= offset) & (chosen < offset + shard.rows)] - offset
        if len(mine):
            out[done:done + len(mine)] = vectors(shard)[mine]
            done += len(mine)
        offset += shard.rows
    return out


def manifest_path(prefix: str | os.PathLike[str]) -> str:
    """`<prefix>.manifest.json`: what encoded the shards `<prefix>_<k>.npy`."""
    return os.fspath(prefix) + MANIFEST_SUFFIX


def read_manifest(path: str) -> dict:
    """A shards' manifest (`dpr.inference.chunks.make_manifest`); ShardError when
    unreadable."""
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError) as err:
        raise ShardError(f"{path}: cannot read the manifest of the shards: {err}") from err


def encoding_of(paths: list[str]) -> dict | None:
    """The model and precision that encoded the shards: their manifest's `ENCODING_KEYS` and
    its path, or None when a shard has no manifest beside it (DPR's or hand-made shards).

    Raises:
        ShardError: For an unreadable manifest, or shards of two encodings.
    """
    manifests = []
    for path in paths:
        match = _SHARD_NAME.match(path)
        manifest = manifest_path(match.group(1)) if match else ""
        if not os.path.isfile(manifest):
            logger.info("%s: no manifest beside it: nothing records which model encoded it",
                        path)
            return None
        if manifest not in manifests:
            manifests.append(manifest)
    found = []
    for manifest in manifests:
        content = read_manifest(manifest)
        found.append({key: content.get(key) for key in ENCODING_KEYS})
        if found[-1] != found[0]:
            raise ShardError(f"{manifests[0]} and {manifest}: shards encoded by two models or "
                             "precisions; index the shards of one encoding")
    return {**found[0], "manifest": os.path.abspath(manifests[0])}


def read_queries(path: str | os.PathLike[str]) -> tuple[list[str], np.ndarray]:
    """Query ids and vectors [Q × D] from a `.npy` (ids from its `.ids.json` when present,
    else the 0-based row numbers); InputError naming the file when it is unreadable, not a 2-d
    float array, or its ids do not match the vectors."""
    path = os.fspath(path)
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise InputError(f"{path}: cannot read query vectors: {err}") from err
    if array.ndim != 2 or array.dtype.kind != "f":
        raise InputError(f"{path}: expected a 2-d float array, got shape {array.shape} of "
                         f"{array.dtype}")
    ids_file = ids_path_of(path) if path.endswith(".npy") else None
    if ids_file is None or not os.path.isfile(ids_file):
        return [str(i) for i in range(len(array))], array
    ids = read_ids(ids_file)
    if len(ids) != len(array):
        raise InputError(f"{ids_file}: {len(ids)} ids for {len(array)} query vectors")
    return ids, array
