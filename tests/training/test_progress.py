"""Progress of a training run: step numbers read from the device in groups (the same numbers,
the same log files), speed and ETAs, validation progress, training curves."""

from __future__ import annotations

import functools
import json
import logging
import math
import re
from pathlib import Path

import pytest
import torch
from helpers import read_curves, tiny_run_args
from matplotlib.image import imread
from tqdm import std as tqdm_std

import train_dense_encoder
from dpr.training import progress
from dpr.training.config import TrainConfig
from dpr.training.curves import CURVES_FILE, CURVES_SIZE
from dpr.training.progress import EpochReport, StepRecords, tracked
from dpr.training.run_dir import RunDir
from dpr.training.step import InBatchLoss, LossGuard


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def no_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress, "on_terminal", lambda: False)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """The clock of the tqdm bars created in the test."""
    fake = FakeClock()
    monkeypatch.setattr(tqdm_std, "time", fake)
    return fake


def _result(loss: float, correct: int, masked: int, questions: int = 4) -> InBatchLoss:
    return InBatchLoss(torch.tensor(loss, dtype=torch.float32), torch.tensor(correct),
                       questions, torch.tensor(masked))


def _report(*, epoch: int, epochs: int, start: int, batches: int, enabled: bool,
            bar: bool | None = None) -> EpochReport:
    """An epoch's report writing no file."""
    return EpochReport(TrainConfig(num_train_epochs=epochs), RunDir(None, prefix="ck",
                                                                    is_main=True),
                       LossGuard(batches=batches, accumulation=1, scaled=False), epoch=epoch,
                       start=start, batches=batches, enabled=enabled, bar=bar)


def test_drain_reads_each_step_as_item_would_in_step_order() -> None:
    # Given three queued steps, one without a mask (a masked count of 0)
    records = StepRecords(flush_seconds=math.inf)
    results = [_result(1.2345678, 3, 2), _result(0.1 / 3, 4, 0), _result(7.0, 0, 5)]
    for i, r in enumerate(results, start=1):
        records.add(i, 0.5 * i, r)
    # When they are drained
    numbers = records.drain()
    # Then each number is what .item() / int() gives, in order, and nothing is left queued
    assert [(n.iteration, n.lr, n.loss, n.correct, n.questions, n.masked) for n in numbers] == [
        (i, 0.5 * i, r.loss.item(), int(r.correct), 4, int(r.masked))
        for i, r in enumerate(results, start=1)]
    assert all(type(n.loss) is float and type(n.correct) is int and type(n.masked) is int
               for n in numbers)
    assert records.drain() == []


def test_due_after_flush_seconds_since_the_last_read_and_only_with_something_queued() -> None:
    now = [0.0]
    records = StepRecords(flush_seconds=2.0, clock=lambda: now[0])
    now[0] = 5.0
    assert not records.due()  # nothing queued
    records.add(1, 0.1, _result(1.0, 1, 0))
    assert records.due()
    records.drain()
    records.add(2, 0.1, _result(1.0, 1, 0))
    now[0] = 6.9
    assert not records.due()
    now[0] = 7.0
    assert records.due()


def test_epoch_report_rate_and_etas_leave_validation_time_out(no_terminal, clock) -> None:
    # Given epoch 1 of 3, 10 batches per epoch, resumed after 2 batches
    report = _report(epoch=1, epochs=3, start=2, batches=10, enabled=True)
    assert not report.drawn
    # When 4 batches of 8 questions take 2 s each, with a 50 s validation in the middle
    for i in range(4):
        clock.now += 2
        report.add(3 + i, 0.1, _result(1.0, 1, 0, questions=8))
        if i == 1:
            with report.paused():
                clock.now += 50
    # Then 4 questions/s, 4 batches left in the epoch (8 s) and 4 + 10 in the run (28 s)
    speed, epoch_left, run_left = report.pace()
    assert speed == pytest.approx(4.0)
    assert epoch_left == pytest.approx(8.0)
    assert run_left == pytest.approx(28.0)
    assert report.rate_text() == ", 4.0 questions/s, epoch ETA 00:08, run ETA 00:28"


def test_epoch_report_shows_nothing_off_the_main_process() -> None:
    report = _report(epoch=0, epochs=1, start=0, batches=4, enabled=False, bar=True)
    report.add(1, 0.1, _result(1.0, 1, 0))
    assert not report.drawn and report.rate_text() == ""


def test_epoch_report_on_a_terminal_draws_a_bar_with_speed_loss_and_eta(capsys) -> None:
    # Given a terminal
    report = _report(epoch=0, epochs=2, start=0, batches=5, enabled=True, bar=True)
    # When two batches pass through the report, the first one's loss read in between
    for iteration in report.wrap(range(1, 3)):
        report.add(iteration, 0.1, _result(0.25, 1, 0))
        report.flush()
        shown = str(report.bar)
    # Then the bar shows progress, loss, speed and ETA, and the log line adds nothing
    assert "2/5" in shown and "loss 0.2500" in shown and "questions/s" in shown
    assert "run ETA" in shown and "<" in shown  # tqdm's elapsed<remaining
    assert report.rate_text() == ""


def test_tracked_logs_a_line_every_tenth_with_eta(no_terminal, clock, caplog) -> None:
    def items():
        for i in range(20):
            clock.now += 1
            yield i

    with caplog.at_level(logging.INFO, logger="dpr.training.progress"):
        got = list(tracked(items(), total=20, desc="Average-rank validation", enabled=True))
    assert got == list(range(20))
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 10
    assert lines[0] == "Average-rank validation: batch 2/20 [00:02<00:18,  1.00 batch/s]"
    assert lines[-1].startswith("Average-rank validation: batch 20/20")


def test_read_curves_counts_updates_and_keeps_the_last_record_of_a_batch(tmp_path) -> None:
    # Given 3 batches per epoch, 2 per update, and batch (0, 3) logged twice (resumed run)
    records = [{"event": "train", "epoch": e, "iteration": i, "loss": float(i), "correct": 1,
                "questions": 4} for e, i in ((0, 1), (0, 2), (0, 3), (0, 3), (1, 1))]
    records[3]["loss"] = 9.0
    records.insert(3, {"event": "validation", "epoch": 0, "iteration": 3, "metric": "nll_loss",
                       "value": 0.5, "checkpoint": "c"})
    log = tmp_path / "training_log.jsonl"
    log.write_text("".join(json.dumps(r) + "\n" for r in records))
    # When reading the curves
    curves = read_curves(log, batches=3, accumulation=2)
    # Then updates are 1, 1, 2 in epoch 0 and 3 in epoch 1
    assert curves["train"] == [(1, 1.0, 0.25), (1, 2.0, 0.25), (2, 9.0, 0.25), (3, 1.0, 0.25)]
    assert curves["validation"] == {"nll_loss": [(2, 0.5)]}


@pytest.mark.usefixtures("restore_root_logging")
def test_training_writes_curves_and_logs_speed_and_eta(tmp_path: Path, tiny_camembert: Path,
                                                       dpr_files, capsys) -> None:
    # Given a short training run (2 epochs of 8 batches), stderr not a terminal
    train, dev = dpr_files
    out = tmp_path / "out"
    args = ["--encoder_model_type", "hf_roberta", "--pretrained_model_cfg", str(tiny_camembert),
            "--train_file", str(train), "--dev_file", str(dev), "--batch_size", "4",
            "--sequence_length", "32", "--num_train_epochs", "2", "--learning_rate", "1e-3",
            "--log_batch_step", "3", "--val_av_rank_start_epoch", "1", "--output_dir", str(out)]
    # When training
    assert train_dense_encoder.main(args) == 0
    # Then the periodic log line gives questions/s and the ETAs of the epoch and of the run
    err = capsys.readouterr().err
    assert re.search(r"step 4/8, .*, [0-9.]+ questions/s, epoch ETA (\d+:)?\d\d:\d\d, run ETA "
                     r"(\d+:)?\d\d:\d\d", err)
    # and both validations report progress
    assert "NLL validation: batch" in err and "Average-rank validation: batch" in err
    # and training_curves.png is an image of the documented size with both validations on it
    image = imread(out / CURVES_FILE)
    assert image.shape[:2] == (CURVES_SIZE[1], CURVES_SIZE[0])
    assert image[..., :3].std() > 0.05  # not a blank canvas
    curves = read_curves(out / "training_log.jsonl", batches=8, accumulation=1)
    assert [u for u, _, _ in curves["train"]] == list(range(1, 17))
    assert curves["validation"].keys() == {"nll_loss", "average_rank"}
    assert not list(out.glob(".*.tmp"))  # the atomic write left no temporary file


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

        patch.setattr(progress, "StepRecords", functools.partial(Counting, seconds))
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
