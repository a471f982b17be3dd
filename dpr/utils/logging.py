"""The one log format of every entry point (`setup_logging`, called by `dpr.cli.main.run_main`)."""

from __future__ import annotations

import logging
import sys
from typing import TextIO

FORMAT = "%(asctime)s [%(levelname)s] [rank %(rank)s] %(name)s: %(message)s"
# Libraries whose INFO lines repeat what the tools say (or log every loader attempt).
QUIET_LIBRARIES = ("bm25s", "faiss", "matplotlib", "sentence_transformers", "haystack", "httpx")


class _ToolHandler(logging.StreamHandler):
    """The handler `setup_logging` installs (a later call replaces it, and only it); it writes
    to the `sys.stderr` of the moment, as Python's last-resort handler does, so that a stream
    replaced since (a test's capture, then closed) is never written to."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        """Ignored: `StreamHandler.__init__` sets it."""


def setup_logging(rank: int = 0, *, level: int = logging.INFO) -> None:
    """Configures the root logger of this process: one stderr handler in `FORMAT`. Rank 0
    (global) logs at `level`, other ranks warnings and errors only, so a multi-process run
    prints one copy of the progress lines. A second call (once a tool knows its rank) replaces
    the handler of the first; handlers installed by others are kept."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _ToolHandler)]:
        root.removeHandler(handler)
    handler = _ToolHandler()
    handler.setFormatter(logging.Formatter(FORMAT.replace("%(rank)s", str(rank))))
    root.addHandler(handler)
    root.setLevel(level if rank == 0 else logging.WARNING)
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(logging.WARNING)
