"""The id map of an index: the passage id of every index row, written and read in bounded memory.

`ids.txt` holds one passage id per line in add order (UTF-8) and `ids.offsets.npy` the int64
[n + 1] byte offsets of the lines (row r is `ids.txt[offsets[r]:offsets[r + 1] - 1]`); both are
memory-mapped when read (a Python list of 20M ids would take GBs).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from dpr.utils.errors import InputError

logger = logging.getLogger(__name__)

IDS_FILE = "ids.txt"
OFFSETS_FILE = "ids.offsets.npy"


class IdMapWriter:
    """Appends passage ids to `<folder>/ids.txt` and writes the offsets on `finish`; a context
    manager that closes the file (the caller removes a folder left unfinished by an error).

    Duplicate ids are detected with 64-bit hashes (8 bytes per id, not a set of strings);
    candidates are confirmed on the strings before an error is raised.
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self._handle = open(self.folder / IDS_FILE, "wb")
        self._lengths: list[np.ndarray] = []
        self._hashes: list[np.ndarray] = []
        self.count = 0

    def add(self, ids: Sequence[str], *, source: str) -> None:
        """Appends ids in index row order; InputError naming `source` (their file) for an id
        that is empty or holds a line break."""
        encoded = [i.encode("utf-8") for i in ids]
        bad = next((i for i, e in zip(ids, encoded) if not e or b"\n" in e or b"\r" in e), None)
        if bad is not None:
            raise InputError(f"{source}: passage id {bad!r} is empty or holds a line break")
        self._handle.write(b"".join(e + b"\n" for e in encoded))
        self._lengths.append(np.fromiter((len(e) + 1 for e in encoded), np.int64, len(ids)))
        self._hashes.append(np.fromiter((hash(i) for i in ids), np.int64, len(ids)))
        self.count += len(ids)

    def __enter__(self) -> IdMapWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self._handle.close()

    def finish(self) -> None:
        """Writes the offsets after checking that no id occurs twice (`unique_or_error`)."""
        self._handle.close()
        self._check_unique()
        lengths = np.concatenate(self._lengths) if self._lengths else np.zeros(0, np.int64)
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        np.save(self.folder / OFFSETS_FILE, offsets)

    def _check_unique(self) -> None:
        hashes = np.sort(np.concatenate(self._hashes)) if self._hashes else np.zeros(0)
        clashes = set(hashes[1:][hashes[1:] == hashes[:-1]].tolist())
        if clashes:
            with open(self.folder / IDS_FILE, encoding="utf-8") as handle:
                unique_or_error(passage_id for line in handle
                                if hash(passage_id := line.rstrip("\n")) in clashes)


class IdList(list[str]):
    """The passage ids of an index built in memory, added as to an `IdMapWriter`."""

    @property
    def count(self) -> int:
        return len(self)

    def add(self, ids: Sequence[str], *, source: str) -> None:
        self.extend(ids)

    def finish(self) -> None:
        unique_or_error(self)


def unique_or_error(ids: Iterable[str]) -> None:
    """Raises InputError naming the first id that occurs twice."""
    seen: set[str] = set()
    for passage_id in ids:
        if passage_id in seen:
            raise InputError(f"passage id {passage_id!r} occurs in several shards or rows (ids "
                             "must be unique)")
        seen.add(passage_id)


def lookup(ids: Sequence[str], rows: np.ndarray) -> list[list[str]]:
    """Per query, the passage ids of search results' index rows [Q × k], in order; rows < 0
    (no result) are left out."""
    return [[ids[r] for r in row.tolist() if r >= 0] for row in rows]


class IdMap(Sequence[str]):
    """Passage ids of an index folder's rows, memory-mapped (a read-only sequence);
    InputError when a file is missing or the two files disagree."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        folder = Path(folder)
        try:
            self.offsets = np.load(folder / OFFSETS_FILE, mmap_mode="r", allow_pickle=False)
            size = os.path.getsize(folder / IDS_FILE)
            self._data = (np.memmap(folder / IDS_FILE, dtype=np.uint8, mode="r") if size
                          else np.zeros(0, np.uint8))
        except (OSError, ValueError) as err:
            raise InputError(f"{folder}: cannot read the id map: {err}") from err
        if self.offsets.ndim != 1 or len(self.offsets) < 1 or int(self.offsets[-1]) != size:
            raise InputError(f"{folder / OFFSETS_FILE}: offsets do not match {IDS_FILE} "
                             f"({size} bytes)")

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, row: int) -> str:  # type: ignore[override]
        start, end = int(self.offsets[row]), int(self.offsets[row + 1]) - 1
        return self._data[start:end].tobytes().decode("utf-8")
