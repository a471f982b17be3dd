"""Logging set-up shared by every entry point."""

from __future__ import annotations

import logging
import sys

_FORMAT = "%(asctime)s [%(levelname)s] [rank %(rank)s] %(name)s: %(message)s"


class _RankFilter(logging.Filter):
    def __init__(self, rank: int) -> None:
        super().__init__()
        self.rank = rank

    def filter(self, record: logging.LogRecord) -> bool:
        record.rank = self.rank
        return True


def setup_logging(rank: int = 0, *, level: int = logging.INFO) -> None:
    """Configures the root logger once per process.

    Rank 0 logs at `level`; other ranks log warnings and errors only, so a multi-process run
    prints one copy of the progress lines.

    Args:
        rank: Global rank of this process.
        level: Level for rank 0.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(_FORMAT))
    handler.addFilter(_RankFilter(rank))
    root.addHandler(handler)
    root.setLevel(level if rank == 0 else logging.WARNING)
