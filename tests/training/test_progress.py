"""Progress of a training run: speed and ETAs, validation progress, training curves."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest
from matplotlib.image import imread

import train_dense_encoder
from dpr.training import progress
from dpr.training.curves import CURVES_FILE, CURVES_SIZE, read_curves
from dpr.training.progress import EpochView, format_duration, tracked


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def no_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress, "on_terminal", lambda: False)


def test_format_duration_hours_minutes_seconds() -> None:
    assert format_duration(3725.4) == "1:02:05"
    assert format_duration(float("inf")) == "?"


def test_epoch_view_rate_and_etas_leave_validation_time_out(no_terminal) -> None:
    # Given epoch 1 of 3, 10 batches per epoch, resumed after 2 batches
    clock = FakeClock()
    view = EpochView(epoch=1, epochs=3, start=2, batches=10, enabled=True, clock=clock)
    assert view.bar is None
    # When 4 batches of 8 questions take 2 s each, with a 50 s validation in the middle
    for i in range(4):
        clock.now += 2
        view.step(8, loss=1.0)
        if i == 1:
            with view.paused():
                clock.now += 50
    # Then 4 questions/s, 4 batches left in the epoch (8 s) and 4 + 10 in the run (28 s)
    assert view.questions_per_second() == pytest.approx(4.0)
    assert view.epoch_eta() == pytest.approx(8.0)
    assert view.run_eta() == pytest.approx(28.0)
    assert view.rate_text() == ", 4.0 questions/s, epoch ETA 0:00:08, run ETA 0:00:28"


def test_epoch_view_shows_nothing_off_the_main_process() -> None:
    view = EpochView(epoch=0, epochs=1, start=0, batches=4, enabled=False, bar=True)
    view.step(4, loss=1.0)
    assert view.bar is None and view.rate_text() == ""


def test_epoch_view_on_a_terminal_draws_a_bar_with_speed_loss_and_eta(capsys) -> None:
    # Given a terminal
    view = EpochView(epoch=0, epochs=2, start=0, batches=5, enabled=True, bar=True)
    # When two batches pass through the view
    for _ in view.wrap(range(2)):
        view.step(4, loss=0.25)
        shown = str(view.bar)
    # Then the bar shows progress, loss, speed and ETA, and the log line adds nothing
    assert "2/5" in shown and "loss 0.2500" in shown and "questions/s" in shown
    assert "run ETA" in shown and "<" in shown  # tqdm's elapsed<remaining
    assert view.rate_text() == ""


def test_tracked_logs_a_line_every_tenth_with_eta(no_terminal, caplog) -> None:
    clock = FakeClock()

    def items():
        for i in range(20):
            clock.now += 1
            yield i

    with caplog.at_level(logging.INFO, logger="dpr.training.progress"):
        got = list(tracked(items(), total=20, desc="Average-rank validation", enabled=True,
                           clock=clock))
    assert got == list(range(20))
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 10
    assert lines[0] == "Average-rank validation: batch 2/20, 2.0 s, ETA 0:00:18"
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
    assert re.search(r"step 4/8, .*, [0-9.]+ questions/s, epoch ETA \d+:\d\d:\d\d, run ETA "
                     r"\d+:\d\d:\d\d", err)
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
