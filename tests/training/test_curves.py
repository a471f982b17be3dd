"""training_curves.png is drawn from points kept in memory, never by re-reading the log."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from helpers import dev_run_args, read_curves

import train_dense_encoder
from dpr.models.checkpoint import CheckpointState
from dpr.training import curves as curves_module
from dpr.training.curves import CURVES_FILE, TrainingCurves
from dpr.training.resume import Resume
from dpr.training.run_dir import LOG_FILE, RunDir

_LOG_OPENS: list[str] | None = None  # modes of the opens of training_log.jsonl, while counting


def _audit(event: str, args: tuple) -> None:
    if _LOG_OPENS is not None and event == "open" and str(args[0]).endswith(LOG_FILE):
        _LOG_OPENS.append(str(args[1]))


sys.addaudithook(_audit)


@pytest.fixture
def log_opens():
    """The modes `training_log.jsonl` is opened with during the test."""
    global _LOG_OPENS
    _LOG_OPENS = []
    yield _LOG_OPENS
    _LOG_OPENS = None


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _train(epoch: int, iteration: int, loss: float) -> dict:
    return {"event": "train", "epoch": epoch, "iteration": iteration, "loss": loss,
            "correct": 1, "questions": 4}


def test_curves_kept_in_memory_equal_those_read_from_the_log(tmp_path: Path) -> None:
    # Given a run folder that logs 2 epochs of 3 batches and a validation
    run_dir = RunDir(str(tmp_path), prefix="ck", is_main=True)
    run_dir.curves = TrainingCurves(batches=3, accumulation=2)
    run_dir.prepare(None)
    for epoch, iteration in ((0, 1), (0, 2), (0, 3), (1, 1)):
        run_dir.log_event(**_train(epoch, iteration, float(iteration)))
    run_dir.log_event(event="validation", epoch=1, iteration=1, metric="nll_loss", value=0.5,
                      checkpoint="ck.1.1")
    # Then the points in memory are those of the log file
    assert run_dir.curves.points() == read_curves(tmp_path / LOG_FILE, batches=3,
                                                  accumulation=2)
    assert run_dir.curves.points()["validation"] == {"nll_loss": [(3, 0.5)]}


def test_resumed_run_dir_starts_its_curves_from_the_kept_records(tmp_path: Path,
                                                                  log_opens) -> None:
    # Given a log of 4 steps, and a run folder whose curves are fed by it
    (tmp_path / LOG_FILE).write_text("".join(
        json.dumps(_train(0, i, float(i))) + "\n" for i in range(1, 5)), encoding="utf-8")
    run_dir = RunDir(str(tmp_path), prefix="ck", is_main=True)
    run_dir.curves = TrainingCurves(batches=4, accumulation=1)
    log_opens.clear()
    # When a run resumes from the checkpoint of step 2
    run_dir.prepare(Resume("ck", CheckpointState({}, epoch=0, offset=2), own=True))
    # Then the curves start with the records kept, read from the log once
    assert run_dir.curves.points()["train"] == [(1, 1.0, 0.25), (2, 2.0, 0.25)]
    assert log_opens == ["r"]


def test_maybe_draw_draws_at_most_once_per_interval_without_reading_the_log(
        tmp_path: Path, log_opens) -> None:
    # Given curves of a long run held in memory and no log file at all
    clock = FakeClock()
    curves = TrainingCurves(batches=1000, accumulation=1, clock=clock)
    for iteration in range(1, 1001):
        curves.add(_train(0, iteration, 1.0 / iteration))
    # When validations come 10 s apart
    drawn = []
    for _ in range(13):
        drawn.append(curves.maybe_draw(tmp_path) is not None)
        clock.now += 10.0
    # Then the first draws, then one in every 6 (60 s), and the log was never opened
    assert drawn == [True, False, False, False, False, False] * 2 + [True]
    assert (tmp_path / CURVES_FILE).is_file()
    assert log_opens == []


@pytest.mark.usefixtures("restore_root_logging")
def test_training_draws_its_curves_without_reading_its_log(
        tmp_path: Path, tiny_camembert: Path, dpr_files, monkeypatch, log_opens) -> None:
    # Given drawing at every validation (no minimum interval), 8 validations in a run
    monkeypatch.setattr(curves_module, "DRAW_INTERVAL_S", 0.0)
    draws = []
    real_draw = curves_module.draw_curves
    monkeypatch.setattr(curves_module, "draw_curves",
                        lambda points, path: draws.append(len(points["train"])) or
                        real_draw(points, path))
    out = tmp_path / "out"
    args = dev_run_args(tiny_camembert, dpr_files, out, "--num_train_epochs", "2",
                        "--eval_per_epoch", "4")
    # When training
    assert train_dense_encoder.main(args) == 0
    # Then each validation and the end drew the curves with the points up to then
    assert draws == [2, 4, 6, 8, 10, 12, 14, 16, 16]
    assert (out / CURVES_FILE).is_file()
    # and the log was only ever appended to, never read
    assert log_opens and set(log_opens) == {"a"}
