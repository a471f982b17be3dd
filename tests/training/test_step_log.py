"""Step numbers read from the device in groups: the same numbers, the same log files."""

from __future__ import annotations

import functools
import math
from pathlib import Path

import pytest
import torch
from helpers import tiny_run_args

import train_dense_encoder
from dpr.training import trainer
from dpr.training.step import InBatchLoss
from dpr.training.step_log import StepRecords


def _result(loss: float, correct: int, masked: int | None) -> InBatchLoss:
    return InBatchLoss(torch.tensor(loss, dtype=torch.float32), torch.tensor(correct), 4,
                       0 if masked is None else torch.tensor(masked))


def test_drain_reads_each_step_as_item_would_in_step_order() -> None:
    # Given three queued steps, one without a mask (its masked count is a plain 0)
    records = StepRecords(flush_seconds=math.inf)
    results = [_result(1.2345678, 3, 2), _result(0.1 / 3, 4, None), _result(7.0, 0, 5)]
    for i, r in enumerate(results, start=1):
        records.add(i, 0.5 * i, r)
    # When they are drained
    numbers = records.drain()
    # Then each number is what .item() / int() gives, in order, and nothing is left queued
    assert [(n.iteration, n.lr, n.loss, n.correct, n.questions, n.masked) for n in numbers] == [
        (i, 0.5 * i, r.loss.item(), int(r.correct), 4, int(r.masked))
        for i, r in enumerate(results, start=1)]
    assert all(type(n.loss) is float and type(n.correct) is int for n in numbers)
    assert records.drain() == []


def test_due_after_flush_seconds_since_the_last_read_and_only_with_something_queued() -> None:
    now = [0.0]
    records = StepRecords(flush_seconds=2.0, clock=lambda: now[0])
    now[0] = 5.0
    assert not records.due()  # nothing queued
    records.add(1, 0.1, _result(1.0, 1, None))
    assert records.due()
    records.drain()
    records.add(2, 0.1, _result(1.0, 1, None))
    now[0] = 6.9
    assert not records.due()
    now[0] = 7.0
    assert records.due()


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, tiny_camembert: Path, dpr_files):
    """The same run read every step (flush_seconds 0) and only where a number is logged."""
    train, dev = dpr_files
    outs, drains = {}, {}
    patch = pytest.MonkeyPatch()
    for name, seconds in (("every_step", 0.0), ("grouped", math.inf)):
        counts: list[int] = []

        class Counting(StepRecords):
            def drain(self, counts=counts):
                numbers = super().drain()
                counts.append(len(numbers))
                return numbers

        patch.setattr(trainer, "StepRecords", functools.partial(Counting, seconds))
        outs[name] = tmp_path_factory.mktemp(name)
        args = tiny_run_args(tiny_camembert, train, outs[name], "--dev_file", str(dev),
                             "--batch_size", "4", "--sequence_length", "32",
                             "--num_train_epochs", "1", "--eval_per_epoch", "2",
                             "--learning_rate", "1e-3", "--log_batch_step", "3",
                             "--train_rolling_loss_step", "100", "--hard_negatives", "1")
        assert train_dense_encoder.main(args) == 0
        drains[name] = [c for c in counts if c]
    patch.undo()
    return outs, drains


def test_grouped_reads_write_the_log_of_reading_every_step(two_runs) -> None:
    outs, drains = two_runs
    every, grouped = ((outs[name] / "training_log.jsonl").read_text(encoding="utf-8")
                      .replace(str(outs[name]), "OUT") for name in ("every_step", "grouped"))
    # Then the log files are identical (but for the folder), record for record
    assert grouped == every and '"event": "train"' in every
    # And the grouped run read the device only at log lines (steps 1, 4, 7) and at the two
    # validation points (4 and 8): 1 | 2-4 | 5-7 | 8, against once per step
    assert drains["every_step"] == [1] * 8
    assert drains["grouped"] == [1, 3, 3, 1]
