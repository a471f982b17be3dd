"""The files of an encoded corpus: how passages are cut into chunks, the manifest of what
produced them (its `model_identity` also checked against an index's `build.json`), and the
checks that make a rerun refuse another model, precision or corpus and skip only complete
chunks. Layout, manifest and resume: docs/SCALE.md, section 1.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dpr.index.shards import (
    IDS_SUFFIX,
    ShardError,
    manifest_path,
    open_shard,
    read_ids,
    read_manifest,
    vectors,
)
from dpr.utils.errors import InputError, UsageError
from dpr.utils.io import atomic_write

logger = logging.getLogger(__name__)

MANIFEST_FORMAT = 2  # 2: records the precision
_CHECK_ROWS = 65_536  # rows read at a time when checking that stored vectors are finite
# Manifest entries a rerun must match, with the words an error uses for each.
_COMPARED = {"model_fingerprint": "model (its files changed)", "recipe": "model recipe",
             "precision": "precision (--fp16, --amp_dtype)", "dim": "vector size",
             "passages": "passage file (size or modification time)", "layout": "chunk layout",
             "vector_dtype": "vector type"}
_PATH_KEYS = ("pretrained_model_cfg", "pretrained_file")  # where a model is, not what it is


@dataclass(frozen=True)
class Chunk:
    """One output file pair: passage rows [start, end) written as `<prefix>_<index>`."""

    index: int
    start: int
    end: int

    @property
    def size(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class Layout:
    """How `total` passages are cut into chunks of `chunk_size`, or into DPR's `num_shards`
    shards when `chunk_size` is None."""

    total: int
    chunk_size: int | None = None
    num_shards: int = 1

    def __post_init__(self) -> None:
        if self.chunk_size is not None and self.chunk_size < 1:
            raise UsageError(f"--chunk_size must be >= 1, got {self.chunk_size}")
        if self.num_shards < 1:
            raise UsageError(f"--num_shards must be >= 1, got {self.num_shards}")

    def chunks(self) -> list[Chunk]:
        """Every chunk in order (at least one, possibly empty, so that a corpus always has a
        `_0` file as DPR's tool wrote)."""
        if self.chunk_size is None:
            size, count = -(-self.total // self.num_shards), self.num_shards
        else:
            size, count = self.chunk_size, max(1, -(-self.total // self.chunk_size))
        return [Chunk(k, min(k * size, self.total), min((k + 1) * size, self.total))
                for k in range(count)]

    def describe(self) -> dict[str, int | None]:
        """The layout as stored in the manifest."""
        if self.chunk_size is None:
            return {"num_shards": self.num_shards}
        return {"chunk_size": self.chunk_size}


def owned_chunks(chunks: Sequence[Chunk], worker: int, workers: int) -> list[Chunk]:
    """The chunks worker `worker` of `workers` encodes: k ≡ worker (mod workers), so that the
    work is balanced and independent of any other process."""
    return [c for c in chunks if c.index % workers == worker]


def chunk_prefix(prefix: str | os.PathLike[str], chunk: Chunk) -> str:
    """`<prefix>_<index>`, the name of a chunk's two files without their suffixes."""
    return f"{os.fspath(prefix)}_{chunk.index}"


def chunk_files(prefix: str | os.PathLike[str], chunk: Chunk) -> tuple[str, str]:
    """The vector file and id file of a chunk."""
    stem = chunk_prefix(prefix, chunk)
    return f"{stem}.npy", f"{stem}{IDS_SUFFIX}"


def incomplete_reason(prefix: str | os.PathLike[str], chunk: Chunk, ids: Sequence[str], *,
                      dim: int, dtype: str) -> str | None:
    """Why a chunk's files are not a complete encoding of `ids`, or None when they are.

    Checked, not trusted by name: both files readable (`dpr.index.shards.open_shard`), vectors
    [len(ids) × dim] of `dtype`, all finite, and the id file equal to `ids`.
    """
    npy, ids_file = chunk_files(prefix, chunk)
    if not os.path.isfile(npy) or not os.path.isfile(ids_file):
        return "missing"
    try:
        shard = open_shard(npy)
    except ShardError as err:
        return f"unreadable: {err}"
    if (shard.rows, shard.dim, shard.dtype) != (len(ids), dim, dtype):
        return (f"holds {shard.dtype} ({shard.rows}, {shard.dim}), expected {dtype} "
                f"({len(ids)}, {dim})")
    if read_ids(shard) != list(ids):
        return "its ids differ from the passages'"
    array = vectors(shard)
    for start in range(0, len(array), _CHECK_ROWS):
        if not np.isfinite(array[start:start + _CHECK_ROWS]).all():
            return "holds non-finite values"
    return None


def fingerprint(path: str | os.PathLike[str]) -> str:
    """A short digest of a file's or folder's sizes and modification times (a retrained or
    replaced model at the same path gets another one)."""
    root = Path(path)
    files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
    digest = hashlib.sha256()
    for file in files:
        stat = file.stat()
        name = file.relative_to(root).as_posix() if root.is_dir() else file.name
        digest.update(f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def model_identity(model_path: str | os.PathLike[str], amp_dtype: Any) -> dict[str, str]:
    """What says which model encodes, and how: its absolute path, its `fingerprint` and its
    precision (the autocast type, e.g. `torch.bfloat16`; None: float32)."""
    return {"model": os.path.abspath(model_path), "model_fingerprint": fingerprint(model_path),
            "precision": "float32" if amp_dtype is None else str(amp_dtype).split(".")[-1]}


def make_manifest(*, model_path: str, model_description: str, params: dict[str, Any],
                  amp_dtype: Any, dim: int, passages: str, layout: Layout,
                  vector_dtype: str) -> dict[str, Any]:
    """What produced a set of chunks (`amp_dtype`: the autocast type the model encodes in,
    None for float32); `check_output` compares the entries of `_COMPARED`."""
    stat = os.stat(passages)
    return {"format": MANIFEST_FORMAT, **model_identity(model_path, amp_dtype),
            "model_description": model_description,
            "recipe": {k: v for k, v in sorted(params.items()) if k not in _PATH_KEYS},
            "dim": dim,
            "passages": {"bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                         "count": layout.total},
            "passages_path": os.path.abspath(passages), "layout": layout.describe(),
            "vector_dtype": vector_dtype}


def _first_difference(old: dict[str, Any], new: dict[str, Any]) -> str | None:
    for key, words in _COMPARED.items():
        if json.dumps(old.get(key), sort_keys=True) != json.dumps(new.get(key), sort_keys=True):
            there = old[key] if key in old else "not recorded (an earlier version)"
            return f"another {words}: {there} there, {new.get(key)} now"
    return None


def check_output(prefix: str | os.PathLike[str], manifest: dict[str, Any],
                 chunks: Sequence[Chunk]) -> None:
    """Refuses (InputError), before any work, to write where another run's chunks are: the
    existing manifest differs (`_COMPARED`), or chunk files exist without one."""
    path = manifest_path(prefix)
    if os.path.isfile(path):
        difference = _first_difference(read_manifest(path), manifest)
        if difference is not None:
            raise InputError(f"{path}: the chunks there were encoded with {difference}; delete "
                             "them or choose another --out_file")
        return
    stray = next((f for c in chunks for f in chunk_files(prefix, c) if os.path.exists(f)), None)
    if stray is not None and os.path.isfile(path):  # another process wrote both meanwhile
        check_output(prefix, manifest, chunks)
    elif stray is not None:
        raise InputError(f"{stray}: exists without {os.path.basename(path)} (written by another "
                         "tool or version); delete it or choose another --out_file")


def write_manifest(prefix: str | os.PathLike[str], manifest: dict[str, Any]) -> None:
    """Writes `<prefix>.manifest.json` unless it exists (called before the first chunk is
    written; processes writing it at once write the same content atomically)."""
    path = manifest_path(prefix)
    if not os.path.isfile(path):
        with atomic_write(path) as handle:
            json.dump(manifest, handle, indent=2, ensure_ascii=False)
            handle.write("\n")
