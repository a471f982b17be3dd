"""Per-step training numbers kept on the device until a person or a file needs them.

Reading a loss (`.item()`) makes the host wait for the device to finish all the work queued so
far, so that, read every step, the GPU runs dry at every step while Python prepares the next
batch. The loop therefore queues each step's results here and reads them in one copy
(`StepRecords.drain`) only where a number is shown or written: at a log line, a rolling-loss
line, a validation point, a stop, the end of an epoch, or when `flush_seconds` have passed
since the last read (so that the progress bar and `training_log.jsonl` stay at most that
late). The numbers, and so every log record, are the same as when read step by step.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple

import torch

from dpr.training.step import InBatchLoss


class StepNumbers(NamedTuple):
    """One training step's numbers, read from the device."""

    iteration: int
    lr: float
    loss: float
    correct: int
    questions: int
    masked: int


class StepRecords:
    """Step results waiting to be read.

    Args:
        flush_seconds: `due` turns true this long after the last `drain`.
        clock: Seconds, monotonic (tests pass a fake one).
    """

    def __init__(self, flush_seconds: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.flush_seconds, self.clock = flush_seconds, clock
        self.pending: list[tuple[int, float, InBatchLoss]] = []
        self.last = clock()

    def add(self, iteration: int, lr: float, result: InBatchLoss) -> None:
        """Queues one step's (detached) result; reads nothing from the device."""
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
        losses = _read([r.loss for _, _, r in pending])
        counts = _read([value for _, _, r in pending for value in (r.correct, r.masked)])
        return [StepNumbers(iteration, lr, float(loss), int(counts[2 * i]), r.questions,
                            int(counts[2 * i + 1]))
                for i, ((iteration, lr, r), loss) in enumerate(zip(pending, losses))]


def _read(values: list[torch.Tensor | int | float]) -> list[int | float]:
    """Python numbers of `values`; the tensors among them travel in one stacked copy."""
    tensors = [v.detach().reshape(()) for v in values if isinstance(v, torch.Tensor)]
    if not tensors:
        return list(values)
    read = iter(torch.stack(tensors).tolist())
    return [next(read) if isinstance(v, torch.Tensor) else v for v in values]
