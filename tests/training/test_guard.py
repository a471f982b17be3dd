"""A training loss that is no longer finite stops the run, naming where (dpr.training.guard),
and a validation value that is not finite is never the best checkpoint."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from helpers import checkpoint_names, dev_run_args

import train_dense_encoder
from dpr.training import trainer as trainer_module
from dpr.training.guard import SCALER_TOLERANCE, LossGuard, NonFiniteLossError
from dpr.training.run_dir import BEST_FILE, Best, new_best
from dpr.utils.logging import setup_logging

NAN = float("nan")


def test_guard_without_loss_scaling_stops_at_the_first_non_finite_loss() -> None:
    # Given 8 batches per epoch, 2 per update, float32 training
    guard = LossGuard(batches=8, accumulation=2, scaled=False)
    # When step 3 of epoch 1 has an infinite loss, then the losses are NaN
    for iteration, loss in ((1, 0.9), (2, 0.8), (3, math.inf), (4, NAN)):
        guard.observe(1, iteration, loss)
    # Then the check stops the run naming the first bad step and its update (4 + 2)
    with pytest.raises(NonFiniteLossError, match=r"^training loss is inf at epoch 1, step 3/8 "
                       r"\(update 6\): the run diverged"):
        guard.check()


def test_guard_checks_nothing_while_every_loss_is_finite() -> None:
    guard = LossGuard(batches=4, accumulation=1, scaled=False)
    for iteration in range(1, 5):
        guard.observe(0, iteration, 1.0 / iteration)
    guard.check()


def test_guard_under_loss_scaling_tolerates_a_few_skipped_steps_in_a_row(caplog) -> None:
    # Given float16 training with a loss scaler (it skips the updates of such steps)
    guard = LossGuard(batches=100, accumulation=1, scaled=True)
    # When fewer than SCALER_TOLERANCE non-finite steps come in a row, twice
    for start in (1, 10):
        for iteration in range(start, start + SCALER_TOLERANCE - 1):
            guard.observe(0, iteration, NAN)
            guard.check()
        guard.observe(0, start + SCALER_TOLERANCE - 1, 2.0)  # a finite one resets the count
    # Then training goes on, each one warned about
    assert caplog.text.count("the float16 loss scaler skips this update") == \
        2 * (SCALER_TOLERANCE - 1)
    # But SCALER_TOLERANCE in a row stop it, naming the first of them
    for iteration in range(20, 20 + SCALER_TOLERANCE):
        guard.observe(0, iteration, NAN)
    with pytest.raises(NonFiniteLossError, match=rf"not finite for {SCALER_TOLERANCE} steps in "
                       r"a row from epoch 0, step 20/100 \(update 20\) despite float16"):
        guard.check()


def test_new_best_never_takes_a_value_that_is_not_finite() -> None:
    first = new_best(None, "nll_loss", NAN, "ck.0.2")
    assert first is None  # a NaN first validation is no best
    best = new_best(first, "nll_loss", 0.5, "ck.0.4")
    assert best == Best("nll_loss", 0.5, "ck.0.4")
    assert new_best(best, "nll_loss", NAN, "ck.0.6") is best
    assert new_best(best, "nll_loss", -math.inf, "ck.0.6") is best
    assert new_best(best, "average_rank", NAN, "ck.1") is best  # not even a new metric
    assert new_best(best, "average_rank", 3.0, "ck.1") == Best("average_rank", 3.0, "ck.1")


@pytest.mark.usefixtures("restore_root_logging")
def test_learning_rate_1e6_stops_training_with_one_error_naming_the_step(
        tmp_path: Path, tiny_camembert: Path, dpr_files, capsys) -> None:
    # Given a tiny run whose learning rate makes the loss NaN after the first update
    out = tmp_path / "out"
    args = dev_run_args(tiny_camembert, dpr_files, out, "--num_train_epochs", "2",
                        "--eval_per_epoch", "2", "--warmup_steps", "0", "--learning_rate", "1e6")
    setup_logging()
    # When training
    status = train_dense_encoder.main(args)
    # Then it exits 1 with one line naming the step, without a traceback
    err = capsys.readouterr().err
    assert status == 1, err
    errors = [line for line in err.splitlines() if "[ERROR]" in line]
    assert len(errors) == 1 and "Traceback" not in err
    assert "training loss is nan at epoch 0, step 2/8 (update 2): the run diverged" in errors[0]
    # and no checkpoint was written from the diverged weights, none named best
    assert checkpoint_names(out) == []
    assert not (out / BEST_FILE).exists()


@pytest.mark.usefixtures("restore_root_logging")
def test_a_nan_validation_is_never_recorded_as_the_best_checkpoint(
        tmp_path: Path, tiny_camembert: Path, dpr_files, monkeypatch, capsys) -> None:
    # Given a run whose first validation gives NaN (a monkeypatched NLL), the later ones not
    values = iter([NAN, 0.7, NAN, 0.9])
    monkeypatch.setattr(trainer_module.BiEncoderTrainer, "validate",
                        lambda self, epoch: ("nll_loss", next(values)))
    out = tmp_path / "out"
    args = dev_run_args(tiny_camembert, dpr_files, out, "--num_train_epochs", "2",
                        "--eval_per_epoch", "2")
    # When training
    assert train_dense_encoder.main(args) == 0
    # Then the best is the lowest finite value, and the NaN ones were warned about
    best = json.loads((out / BEST_FILE).read_text(encoding="utf-8"))
    assert best == {"path": str(out / "dpr_biencoder.0.8"), "metric": "nll_loss", "value": 0.7}
    assert capsys.readouterr().err.count("is not a best checkpoint candidate") == 2
