"""File helpers: gzip-aware text reading and atomic writes."""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

# UTF-8, with the byte-order mark Windows editors and spreadsheet exports put first skipped.
READ_ENCODING = "utf-8-sig"


def open_text(path: str | os.PathLike[str]) -> IO[str]:
    """Opens a UTF-8 text file for reading, transparently decompressing `.gz` files.

    A leading UTF-8 byte-order mark is skipped, so that JSON and TSV readers see the same
    text with or without one.
    """
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
    """Removes the `atomic_write` temporary files left in `folder` by a killed process.

    Args:
        folder: Folder to clean (nothing happens if it does not exist).
        belongs: Whether a final file name is one this caller writes; temporary files for
            other names are left alone.

    Returns:
        The removed files.
    """
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


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "w") -> Iterator[IO]:
    """Writes a file so that readers only ever see the old or the complete new content.

    The content goes to a temporary file in the destination folder, which is flushed, synced
    and renamed over `path` only when the block exits without an exception; on error the
    temporary file is removed and `path` is left untouched.

    Args:
        path: Final file name.
        mode: "w" (UTF-8 text) or "wb" (bytes).

    Yields:
        The open temporary file.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write mode must be 'w' or 'wb', got {mode!r}")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=TEMP_SUFFIX, dir=target.parent)
    os.chmod(tmp, 0o666 & ~_current_umask())  # mkstemp makes 0600; give the usual mode
    try:
        kwargs = {"encoding": "utf-8", "newline": ""} if mode == "w" else {}
        with os.fdopen(fd, mode, **kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
