"""What a training run shows and writes as it goes: per-step numbers queued on the device
(`StepRecords`) and read in one copy where a number is shown or written (docs/PERFORMANCE.md,
"No read-back per step"), then turned by `EpochReport` into the loss guard, the `train`
records, the log lines and tqdm's bar (docs/DIFFERENCES.md). Times and formats are tqdm's;
only what tqdm cannot know is computed here: questions per second (its bar counts batches, of
varying size) and the run's ETA (its bar is one epoch's).
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import NamedTuple, TypeVar

import torch
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from dpr.training.config import TrainConfig
from dpr.training.run_dir import RunDir
from dpr.training.step import InBatchLoss, LossGuard

logger = logging.getLogger(__name__)

T = TypeVar("T")
# The line `tracked` logs where no bar is drawn.
TRACKED_LINE = "{desc}: batch {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}]"


def on_terminal() -> bool:
    """Whether stderr (where tqdm and the logs go) is a terminal."""
    return sys.stderr.isatty()


class _Nowhere(io.TextIOBase):
    """Where a bar that is not drawn writes: its clock and counts still serve the log lines."""

    def write(self, text: str) -> int:
        return len(text)


def _bar(*, drawn: bool, enabled: bool, **options) -> tqdm:
    return tqdm(unit=" batch", dynamic_ncols=drawn, leave=False, disable=not enabled,
                file=None if drawn else _Nowhere(), **options)


class StepNumbers(NamedTuple):
    """One training step's numbers, read from the device."""

    iteration: int
    lr: float
    loss: float
    correct: int
    questions: int
    masked: int


class StepRecords:
    """Step results waiting to be read; `due` turns true `flush_seconds` after the last
    `drain` (`clock`: monotonic seconds, faked by tests)."""

    def __init__(self, flush_seconds: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.flush_seconds, self.clock = flush_seconds, clock
        self.pending: list[tuple[int, float, InBatchLoss]] = []
        self.last = clock()

    def add(self, iteration: int, lr: float, result: InBatchLoss) -> None:
        """Queues one step's detached result, counts as tensors (`sync=False`); reads nothing
        from the device."""
        self.pending.append((iteration, lr, result))

    def due(self) -> bool:
        """Whether `flush_seconds` have passed since the last read (with something queued)."""
        return bool(self.pending) and self.clock() - self.last >= self.flush_seconds

    def drain(self) -> list[StepNumbers]:
        """Reads every queued step (one device-to-host copy per kind of number), oldest first."""
        pending, self.pending = self.pending, []
        self.last = self.clock()
        if not pending:
            return []
        losses = torch.stack([r.loss for _, _, r in pending]).tolist()
        counts = torch.stack([torch.stack([r.correct, r.masked]) for _, _, r in pending]).tolist()
        return [StepNumbers(iteration, lr, loss, correct, r.questions, masked)
                for (iteration, lr, r), loss, (correct, masked) in zip(pending, losses, counts)]


class EpochReport:
    """What training `epoch` (0-based) shows and writes (module docstring), `start` batches of
    it done before (resume). Nothing is shown unless `enabled` (the main process); a bar is
    drawn when `bar` (default: when stderr is a terminal)."""

    def __init__(self, t: TrainConfig, run_dir: RunDir, guard: LossGuard, *, epoch: int,
                 start: int, batches: int, enabled: bool, bar: bool | None = None) -> None:
        self.t, self.run_dir, self.guard = t, run_dir, guard
        self.epoch, self.batches, self.enabled = epoch, batches, enabled
        self.records = StepRecords()
        self.due = self.records.due
        self.rolling: deque[float] = deque(maxlen=t.train_rolling_loss_step)
        self.totals = {"loss": 0.0, "correct": 0, "masked": 0, "batches": 0}
        self.questions, self.loss = 0, None
        self.drawn = enabled and (on_terminal() if bar is None else bar)
        self.bar = _bar(drawn=self.drawn, enabled=enabled, total=batches, initial=start,
                        desc=f"Epoch {epoch}", smoothing=0)

    def wrap(self, batches: Iterable[T]) -> Iterator[T]:
        """Yields `batches`, with log records routed around the bar while it is drawn."""
        with logging_redirect_tqdm() if self.drawn else contextlib.nullcontext(), self.bar:
            yield from batches

    def add(self, iteration: int, lr: float, result: InBatchLoss) -> None:
        """Queues one finished step (`result` over all processes); reads nothing."""
        self.records.add(iteration, lr, result)
        self.questions += result.questions
        self.bar.update(1)
        if self.drawn:  # shown from the bar's next refresh
            speed, _, run_left = self.pace()
            shown = "?" if self.loss is None else f"{self.loss:.4f}"
            self.bar.set_postfix_str(f"loss {shown}, {speed:.1f} questions/s, run ETA "
                                     f"{tqdm.format_interval(run_left)}", refresh=False)

    def pace(self) -> tuple[float, float, float]:
        """(Questions per second, seconds left in the epoch, in the run), by the bar's clock."""
        info = self.bar.format_dict
        elapsed = max(info["elapsed"], 1e-9)
        per_batch = elapsed / max(info["n"] - info["initial"], 1)
        left = self.batches - info["n"]
        later = (self.t.epochs - self.epoch - 1) * self.batches
        return self.questions / elapsed, left * per_batch, (left + later) * per_batch

    def rate_text(self) -> str:
        """`, 12.3 questions/s, epoch ETA 01:02, run ETA 10:00` for the log line; empty when
        the bar shows it or off the main process."""
        if self.drawn or not self.enabled:
            return ""
        speed, epoch_left, run_left = self.pace()
        return (f", {speed:.1f} questions/s, epoch ETA {tqdm.format_interval(epoch_left)}, "
                f"run ETA {tqdm.format_interval(run_left)}")

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Leaves the time spent in the block (validation, checkpoint) out of speed and ETA."""
        try:
            yield
        finally:
            self.bar.unpause()

    def flush(self, check: bool = True) -> None:
        """Reads the queued steps and writes what each of them logs; with `check`, stops on a
        diverged loss now (`LossGuard.check`), which a time-based read must not do: the
        processes of a job may not all be at this step."""
        t, epoch = self.t, self.epoch
        for n in self.records.drain():
            self.guard.observe(epoch, n.iteration, n.loss)
            self.rolling.append(n.loss)
            self.loss = n.loss
            for key, amount in (("loss", n.loss), ("correct", n.correct),
                                ("masked", n.masked), ("batches", 1)):
                self.totals[key] += amount
            self.run_dir.log_event(event="train", epoch=epoch, iteration=n.iteration,
                                   loss=n.loss, correct=n.correct, questions=n.questions,
                                   lr=n.lr, masked=n.masked)
            if (n.iteration - 1) % t.log_batch_step == 0:
                logger.info("Epoch %d: step %d/%d, loss %.5f, lr %.3g, in-batch accuracy %d/%d, "
                            "%d masked%s", epoch, n.iteration, self.batches, n.loss, n.lr,
                            n.correct, n.questions, n.masked, self.rate_text())
            if n.iteration % t.train_rolling_loss_step == 0:
                logger.info("Epoch %d: rolling loss over %d batches: %.5f", epoch,
                            len(self.rolling), sum(self.rolling) / len(self.rolling))
        if check:
            self.guard.check()

    def finish(self) -> None:
        """Flushes, then logs the epoch's averages."""
        self.flush()
        totals = self.totals
        if totals["batches"]:
            logger.info("Epoch %d finished: average loss %.5f over %d batches, %d correct, %d "
                        "duplicate-positive column(s) masked", self.epoch,
                        totals["loss"] / totals["batches"], totals["batches"], totals["correct"],
                        totals["masked"])


def tracked(items: Iterable[T], *, total: int, desc: str, enabled: bool) -> Iterator[T]:
    """Yields `items` with a bar on a terminal, else logs tqdm's line (`TRACKED_LINE`) every
    tenth of the `total` items expected; nothing is shown unless `enabled` (the main process).
    """
    drawn = enabled and on_terminal()
    every = max(1, math.ceil(total / 10))
    with logging_redirect_tqdm() if drawn else contextlib.nullcontext(), _bar(
            drawn=drawn, enabled=enabled, total=total, desc=desc,
            bar_format=None if drawn else TRACKED_LINE) as bar:
        for done, item in enumerate(items, start=1):
            yield item
            bar.update(1)
            if enabled and not drawn and (done % every == 0 or done == total):
                logger.info("%s", str(bar))  # the line as it is now
