"""Reading `torch.save` files safely: weights only, full unpickling only on explicit opt-in."""

from __future__ import annotations

import os
import pickle
import struct
import warnings
import zipfile
from collections.abc import Sequence
from typing import Any

import torch

from dpr.utils.errors import DprError

# What a corrupted, truncated or foreign file makes `torch.load` raise (the weights-only
# unpickler fails with IndexError/KeyError/TypeError on garbage opcodes).
UNREADABLE = (pickle.UnpicklingError, RuntimeError, EOFError, OSError, AttributeError,
              ImportError, ValueError, IndexError, KeyError, TypeError, struct.error)


def looks_like_torch_file(path: str) -> bool:
    """torch.save writes a zip archive (torch >= 1.6) or a pickle (protocol >= 2, older)."""
    if zipfile.is_zipfile(path):
        return True
    with open(path, "rb") as handle:
        return handle.read(1) == b"\x80"


def _first_line(err: BaseException) -> str:
    return str(err).splitlines()[0] if str(err) else type(err).__name__


def load_torch_file(path: str | os.PathLike[str], *, allow_pickle: bool, error: type[DprError],
                    allowed: str = "tensors and plain containers",
                    safe_globals: Sequence[Any] = ()) -> Any:
    """`torch.load` onto the CPU with `weights_only=True`; full unpickling only if allowed.

    Args:
        allow_pickle: On a file holding other objects, unpickle it fully (it can run arbitrary
            code: trusted files only), with a warning. Otherwise it is refused.
        error: The error class raised (its message names the file).
        allowed: What the weights-only loader accepts, for the refusal message.
        safe_globals: Extra classes the weights-only loader may rebuild.

    Raises:
        error: If the file is not a torch file, cannot be read, or needs unpickling that was
            not allowed (the message then names `--allow_unsafe_pickle`).
    """
    path = os.fspath(path)
    if not looks_like_torch_file(path):
        raise error(f"{path}: not a torch file (corrupted or truncated?)")
    try:
        with torch.serialization.safe_globals(list(safe_globals)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if not allow_pickle:
            raise error(
                f"{path}: holds objects other than {allowed}, so it was not loaded (unpickling "
                "can run arbitrary code). If you trust the file, pass --allow_unsafe_pickle. "
                f"Detail: {_first_line(err)}") from err
    except UNREADABLE as err:
        raise error(f"{path}: cannot be read (corrupted or truncated?): {_first_line(err)}"
                    ) from err
    warnings.warn(f"{path}: loading with full unpickling (trusted file)", stacklevel=2)
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except UNREADABLE as err:
        raise error(f"{path}: cannot be read (corrupted or truncated?): {_first_line(err)}"
                    ) from err
