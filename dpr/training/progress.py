"""What a person watching a training run sees: progress, speed, ETA and training curves.

On the main process only:
- during an epoch, a tqdm bar (batches, loss, questions/s, ETA) when stderr is a terminal,
  otherwise the same facts appended to the periodic log line (`EpochView.rate_text`);
- during validation, a bar on a terminal, otherwise a line every tenth of the batches
  (`tracked`);
- `training_curves.png` in `--output_dir` (`dpr.training.curves`).

Speeds and ETAs count training time only: the time spent validating and checkpointing is
left out (`EpochView.paused`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

logger = logging.getLogger(__name__)

T = TypeVar("T")


def on_terminal() -> bool:
    """Whether stderr (where tqdm and the logs go) is a terminal."""
    return sys.stderr.isatty()


def format_duration(seconds: float) -> str:
    """`H:MM:SS` (or `?` while unknown)."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


class EpochView:
    """Speed and ETAs of one training epoch, shown as a bar on a terminal or in log lines.

    Args:
        epoch: The epoch (0-based).
        epochs: Epochs in the run.
        start: Batches of this epoch already done before (resume).
        batches: Batches per epoch.
        enabled: False off the main process: nothing is shown.
        bar: Draw a tqdm bar (default: when stderr is a terminal).
        clock: Seconds, monotonic (tests pass a fake one).
    """

    def __init__(self, *, epoch: int, epochs: int, start: int, batches: int, enabled: bool,
                 bar: bool | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.epoch, self.epochs, self.batches = epoch, epochs, batches
        self.position, self.clock = start, clock
        self.steps, self.questions, self.idle = 0, 0, 0.0
        self.loss: float | None = None
        self.begin = clock()
        self.enabled = enabled
        self.bar = (tqdm(total=batches, initial=start, desc=f"Epoch {epoch}", unit=" batch",
                         dynamic_ncols=True, leave=False)
                    if enabled and (on_terminal() if bar is None else bar) else None)

    def wrap(self, batches: Iterable[T]) -> Iterator[T]:
        """Yields `batches`, with log records routed around the bar while it is drawn."""
        redirect = logging_redirect_tqdm() if self.bar is not None else contextlib.nullcontext()
        try:
            with redirect:
                yield from batches
        finally:
            if self.bar is not None:
                self.bar.close()

    def step(self, questions: int, loss: float | None = None) -> None:
        """Records one finished batch of `questions` questions (over all processes).

        Args:
            loss: The batch's loss, or None: the bar keeps the last one given (`show_loss`),
                for a loop that reads losses from the device only now and then.
        """
        self.steps += 1
        self.position += 1
        self.questions += questions
        if loss is not None:
            self.loss = loss
        if self.bar is not None:
            shown = "loss ?, " if self.loss is None else f"loss {self.loss:.4f}, "
            self.bar.set_postfix_str(f"{shown}{self.questions_per_second():.1f} "
                                     f"questions/s, run ETA {format_duration(self.run_eta())}",
                                     refresh=False)
            self.bar.update(1)

    def show_loss(self, loss: float) -> None:
        """The loss the bar shows from the next `step` on (the latest one read)."""
        self.loss = loss

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Leaves the time spent in the block (validation, checkpoint) out of speed and ETA."""
        began = self.clock()
        try:
            yield
        finally:
            self.idle += self.clock() - began

    def _seconds(self) -> float:
        return max(self.clock() - self.begin - self.idle, 1e-9)

    def questions_per_second(self) -> float:
        """Training questions per second so far in this epoch."""
        return self.questions / self._seconds()

    def epoch_eta(self) -> float:
        """Seconds left in this epoch (inf before the first batch)."""
        if not self.steps:
            return math.inf
        return (self.batches - self.position) * self._seconds() / self.steps

    def run_eta(self) -> float:
        """Seconds left in the run: this epoch and the ones after it."""
        if not self.steps:
            return math.inf
        left = self.batches - self.position + (self.epochs - self.epoch - 1) * self.batches
        return left * self._seconds() / self.steps

    def rate_text(self) -> str:
        """`, 12.3 questions/s, epoch ETA 0:01:02, run ETA 0:10:00` for the log line; empty
        when the bar shows it or off the main process."""
        if self.bar is not None or not self.enabled:
            return ""
        return (f", {self.questions_per_second():.1f} questions/s, epoch ETA "
                f"{format_duration(self.epoch_eta())}, run ETA {format_duration(self.run_eta())}")


def tracked(items: Iterable[T], *, total: int, desc: str, enabled: bool,
            clock: Callable[[], float] = time.monotonic) -> Iterator[T]:
    """Yields `items` with a bar on a terminal, else a log line every tenth of `total`.

    Args:
        total: How many items are expected (the bar's length and the ETA's).
        desc: What is being done, e.g. "Average-rank validation".
        enabled: False off the main process: nothing is shown.
    """
    if enabled and on_terminal():
        with logging_redirect_tqdm(), tqdm(items, total=total, desc=desc, unit=" batch",
                                           dynamic_ncols=True, leave=False) as bar:
            yield from bar
        return
    every = max(1, math.ceil(total / 10))
    begin = clock()
    for done, item in enumerate(items, start=1):
        yield item
        if enabled and (done % every == 0 or done == total):
            seconds = clock() - begin
            logger.info("%s: batch %d/%d, %.1f s, ETA %s", desc, done, total, seconds,
                        format_duration((total - done) * seconds / done))


def update_number(epoch: int, iteration: int, *, batches: int, accumulation: int) -> int:
    """The 1-based optimizer update that batch `iteration` (1-based) of `epoch` belongs to.

    Args:
        batches: Batches per epoch (per process).
        accumulation: `--gradient_accumulation_steps`.
    """
    return epoch * math.ceil(batches / accumulation) + math.ceil(iteration / accumulation)
