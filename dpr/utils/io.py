"""File helpers: gzip-aware text reading (a byte-order mark skipped), atomic writes of files
and of whole folders, full disks named as such, embedding files (`.npy` + `.ids.json`)."""

from __future__ import annotations

import contextlib
import errno
import gzip
import io
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO

import numpy as np

from dpr.utils.errors import DiskFullError, InputError, UsageError

# UTF-8, with the byte-order mark Windows editors and spreadsheet exports put first skipped.
READ_ENCODING = "utf-8-sig"


def open_text(path: str | os.PathLike[str]) -> IO[str]:
    """Opens a UTF-8 text file for reading (`.gz` decompressed, a byte-order mark skipped)."""
    path = os.fspath(path)
    if path.endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding=READ_ENCODING)
    return open(path, encoding=READ_ENCODING)


TEMP_SUFFIX = ".tmp"
# mkstemp's names: "." + the final name + "." + 8 random characters + ".tmp".
_TEMP_NAME = re.compile(r"\.(?P<target>.+)\.[A-Za-z0-9_]{8}" + re.escape(TEMP_SUFFIX))


def temp_file_target(name: str) -> str | None:
    """The final file name an `atomic_write` temporary file `name` was for, or None."""
    match = _TEMP_NAME.fullmatch(name)
    return match.group("target") if match else None


def remove_stale_temp_files(folder: str | os.PathLike[str],
                            belongs: Callable[[str], bool]) -> list[Path]:
    """Removes (and returns) the `atomic_write` temporary files a killed process left in
    `folder` for the final names `belongs` accepts (the caller's files); others are left."""
    removed = []
    root = Path(folder)
    if not root.is_dir():
        return removed
    for path in sorted(root.iterdir()):
        target = temp_file_target(path.name)
        if target is not None and belongs(target) and path.is_file():
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed.append(path)
    return removed


NO_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
# Below this much free space, a failed write is taken for a full disk (see `is_disk_full`).
NEARLY_FULL_BYTES = 1 << 20


def free_bytes(folder: str | os.PathLike[str]) -> int:
    """Bytes an unprivileged process may still write in `folder`'s file system."""
    stats = os.statvfs(folder)
    return stats.f_bavail * stats.f_frsize


def is_disk_full(err: BaseException, folder: str | os.PathLike[str]) -> bool:
    """Whether a failed write is the disk (or the quota) being full (docs/RELIABILITY.md):
    ENOSPC or EDQUOT on `err` or its causes, or torch's `unexpected pos` while `folder` has
    (nearly) no free space left, so ask before the partial file is removed."""
    seen: set[int] = set()
    link: BaseException | None = err
    while link is not None and id(link) not in seen:
        if isinstance(link, OSError) and link.errno in NO_SPACE_ERRNOS:
            return True
        seen.add(id(link))
        link = link.__cause__ or link.__context__
    if isinstance(err, RuntimeError) and "unexpected pos" in str(err):
        with contextlib.suppress(OSError):
            return free_bytes(folder) < NEARLY_FULL_BYTES
    return False


def _disk_full(path: Path) -> DiskFullError:
    return DiskFullError(f"{path}: not written, no space left on the device (files written "
                         "before are intact); free some space and run the same command again")


@contextlib.contextmanager
def naming_full_disk(path: str | os.PathLike[str]) -> Iterator[None]:
    """Turns a write in the block that fails for lack of space into `DiskFullError` naming
    `path` (a one-line error); other errors pass unchanged."""
    try:
        yield
    except (OSError, RuntimeError) as err:
        if is_disk_full(err, Path(path).parent):
            raise _disk_full(Path(path)) from err
        raise


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "w") -> Iterator[IO]:
    """Yields a temporary file (`mode` "w": UTF-8 text, "wb": bytes) beside `path`, synced and
    renamed over `path` when the block exits without an exception, removed otherwise: readers
    see the old or the complete new content. A full disk is `DiskFullError` naming `path`.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write mode must be 'w' or 'wb', got {mode!r}")
    target = Path(path)
    with naming_full_disk(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=TEMP_SUFFIX,
                                   dir=target.parent)
    umask = os.umask(0o022)  # read by setting it, then restored
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the usual mode
    try:
        kwargs = {"encoding": "utf-8", "newline": ""} if mode == "w" else {}
        with os.fdopen(fd, mode, **kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException as err:
        full = isinstance(err, (OSError, RuntimeError)) and is_disk_full(err, target.parent)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if full:
            raise _disk_full(target) from err
        raise


STAGING_MARK = ".staging-"


@contextlib.contextmanager
def staged_folder(path: str | os.PathLike[str], *, overwrite: bool = False) -> Iterator[Path]:
    """Yields a sibling staging folder (`.<name>.staging-XXXX`), renamed to `path` when the
    block exits without an exception and removed otherwise, so that `path` only ever holds a
    complete folder; with `overwrite`, an existing one is replaced once the new one is complete,
    without it `FileExistsError` is raised before anything is written."""
    target = Path(path)
    if target.exists() and not overwrite:
        raise FileExistsError(errno.EEXIST, "exists (choose another folder or overwrite it)",
                              str(target))
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}{STAGING_MARK}", dir=target.parent))
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _swap_in(staging, target)


def _swap_in(staging: Path, target: Path) -> None:
    """Renames `staging` to `target`, replacing an existing `target` (restored on failure)."""
    old = None
    if target.exists():
        old = target.with_name(f"{staging.name}.old")
        os.replace(target, old)
    try:
        os.replace(staging, target)
    except BaseException:
        if old is not None:
            os.replace(old, target)
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _first_existing(path: Path) -> Path:
    """`path` or its nearest ancestor that exists."""
    return next((p for p in (path, *path.parents) if p.exists()), Path("."))


def check_output_dir(path: str | os.PathLike[str], *, flag: str) -> None:
    """Refuses a folder to write in that cannot be one, before any work is done: `UsageError`
    `<flag> <path>: exists and is not a folder` (or naming the file on its way)."""
    folder = Path(path)
    existing = _first_existing(folder)
    if existing.is_dir():
        return
    if existing == folder:
        raise UsageError(f"{flag} {path}: exists and is not a folder")
    raise UsageError(f"{flag} {path}: {existing} is a file, not a folder")


def check_output_file(path: str | os.PathLike[str], *, flag: str) -> None:
    """Refuses a file to write that cannot be one (a folder, or under a file), before any
    work is done: `UsageError` naming `flag`, `path` and the problem."""
    target = Path(path)
    if target.is_dir():
        raise UsageError(f"{flag} {path}: is a folder; give a file name")
    existing = _first_existing(target.parent)
    if not existing.is_dir():
        raise UsageError(f"{flag} {path}: {existing} is a file, not a folder")


def check_input_path(path: str | os.PathLike[str], *, flag: str) -> None:
    """Refuses a path to read that does not exist: `InputError` `<flag> <path>: does not
    exist`."""
    if not Path(path).exists():
        raise InputError(f"{flag} {path}: does not exist")


def write_vectors(stem: str | os.PathLike[str], ids: Sequence[str], vectors: np.ndarray, *,
                  dtype: str = "float32") -> tuple[str, str]:
    """Writes `<stem>.ids.json` (one passage id per vector) then `<stem>.npy` (vectors [N × D]
    stored as `dtype`, "float32" or "float16"), each atomically; returns both paths. On error
    neither is left half-written and the id file written by this call is removed. A vector
    that does not fit in float16 is a `UsageError`."""
    stem = os.fspath(stem)
    npy, ids_file = f"{stem}.npy", f"{stem}.ids.json"
    with np.errstate(over="ignore"):
        stored = np.ascontiguousarray(vectors, dtype=dtype)
    if not np.isfinite(stored).all() and np.isfinite(vectors).all():
        raise UsageError(f"--vector_dtype {dtype}: vectors of {stem} exceed its range "
                         f"(largest |x| = {np.abs(vectors).max():.4g}); store float32")
    with atomic_write(ids_file) as handle:
        json.dump(list(ids), handle, ensure_ascii=False)
    try:
        with atomic_write(npy, "wb") as handle:
            np.save(handle, stored)
    except BaseException:
        Path(ids_file).unlink(missing_ok=True)
        raise
    return npy, ids_file
