"""Stopping a training run cleanly on SIGTERM, SIGINT (Ctrl-C) or SIGUSR1 (SLURM `--signal`):
a signal records a request, which the loop checks at optimizer-update boundaries; exit status
128 + the signal number, and what happens then: docs/RELIABILITY.md.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from types import FrameType

from dpr.utils.dist import DistContext, max_over_processes
from dpr.utils.errors import DprError

logger = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)


class TrainingInterrupted(DprError):
    """Training stopped on a signal after writing a resumable checkpoint."""

    def __init__(self, signum: int, checkpoint: str | None) -> None:
        name = signal.Signals(signum).name
        where = f"checkpoint {checkpoint} written" if checkpoint else "no --output_dir, " \
            "nothing written"
        super().__init__(f"training interrupted by {name} ({where}); run the same command "
                         "again to resume")
        self.exit_code = 128 + signum


class StopRequest:
    """Records the first stop signal while active (a context manager around training)."""

    def __init__(self) -> None:
        self.signum = 0
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():  # signals need it
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum:  # a second signal: stop now
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self.signum = signum

    def agreed(self, dctx: DistContext) -> int:
        """The signal number any process received (0 = none); a collective at step boundaries."""
        signum = max_over_processes(self.signum, dctx)
        if signum and not self.signum:
            logger.warning("Another process received %s: stopping too",
                           signal.Signals(signum).name)
        if signum:
            self.signum = signum
        return signum
