"""Stopping a run whose training loss is no longer finite (it diverged).

A NaN or infinite loss back-propagates NaN gradients, and in float32 or bfloat16 the optimizer
step that follows writes NaN into every weight: nothing useful is trained after it. Training
therefore stops at the first such step with `NonFiniteLossError` (exit status 1, one line
naming the epoch, the step and the optimizer update), as fairseq's `FloatingPointError` does.

Under float16 with loss scaling the `GradScaler` skips every update whose gradients overflow
and lowers its scale, so an occasional non-finite step leaves the weights intact; training
then stops only after `SCALER_TOLERANCE` non-finite steps in a row.

The losses are read from the device in step order (`dpr.training.step_log`), so a stop comes
at the next read after the step, which never lies past a validation or a checkpoint: no
checkpoint is written from diverged weights.
"""

from __future__ import annotations

import logging
import math

from dpr.training.progress import update_number
from dpr.utils.errors import RunFailure

logger = logging.getLogger(__name__)

SCALER_TOLERANCE = 5


class NonFiniteLossError(RunFailure):
    """The training loss is no longer finite; the message names where it happened."""


class LossGuard:
    """Watches the training losses of a run, step by step in order.

    Args:
        batches: Batches per epoch (per process).
        accumulation: `--gradient_accumulation_steps`, to name the optimizer update.
        scaled: Whether a float16 loss scaler skips the updates of non-finite steps: then up
            to `SCALER_TOLERANCE - 1` of them in a row are tolerated, with a warning.
    """

    def __init__(self, *, batches: int, accumulation: int, scaled: bool) -> None:
        self.batches, self.accumulation = batches, accumulation
        self.limit = SCALER_TOLERANCE if scaled else 1
        self.in_a_row = 0
        self.first: tuple[int, int, float] | None = None  # of the current run of bad steps

    def _where(self, epoch: int, iteration: int) -> str:
        update = update_number(epoch, iteration, batches=self.batches,
                               accumulation=self.accumulation)
        return f"epoch {epoch}, step {iteration}/{self.batches} (update {update})"

    def observe(self, epoch: int, iteration: int, loss: float) -> None:
        """Records one step's loss; resets the count on a finite one."""
        if math.isfinite(loss):
            self.in_a_row, self.first = 0, None
            return
        self.in_a_row += 1
        if self.first is None:
            self.first = (epoch, iteration, loss)
        if self.in_a_row < self.limit:
            logger.warning("Training loss is %s at %s: the float16 loss scaler skips this "
                           "update (%d of %d non-finite steps in a row allowed)", loss,
                           self._where(epoch, iteration), self.in_a_row, self.limit - 1)

    def check(self) -> None:
        """Raises once the run of non-finite steps is too long.

        Raises:
            NonFiniteLossError: Naming the first step of the run of non-finite losses.
        """
        if self.in_a_row < self.limit or self.first is None:
            return
        epoch, iteration, loss = self.first
        if self.limit == 1:
            raise NonFiniteLossError(
                f"training loss is {loss} at {self._where(epoch, iteration)}: the run "
                "diverged (try a lower --learning_rate or more --warmup_steps); no checkpoint "
                "was written after it")
        raise NonFiniteLossError(
            f"training loss not finite for {self.in_a_row} steps in a row from "
            f"{self._where(epoch, iteration)} despite float16 loss scaling: the run diverged "
            "(try a lower --learning_rate, more --warmup_steps or --amp_dtype bfloat16); no "
            "checkpoint was written after it")
