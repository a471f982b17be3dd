"""The run folder's crash safety, retention and best file (never a validation value that is not
finite); stop signals; scaler state."""

from __future__ import annotations

import json
import math
import os
import signal
from pathlib import Path

import pytest
import torch
from helpers import NoSpaceWriter, checkpoint_names, dev_run_args

import train_dense_encoder
from dpr.models.checkpoint import CheckpointState, load_checkpoint, save_checkpoint
from dpr.training import trainer as trainer_module
from dpr.training.interrupt import StopRequest, TrainingInterrupted
from dpr.training.resume import (
    SCALER_KEY,
    Resume,
    optimizer_state,
    restore_optimizer,
    restore_scaler,
)
from dpr.training.run_dir import BEST_FILE, LOG_FILE, Best, RunDir, new_best
from dpr.utils.dist import DistContext
from dpr.utils.errors import InputError

NAN = float("nan")


def _records(steps: list[tuple[int, int]], validations: dict[tuple[int, int], float]) -> str:
    lines = []
    for epoch, iteration in steps:
        lines.append({"event": "train", "epoch": epoch, "iteration": iteration, "loss": 1.0})
        if (epoch, iteration) in validations:
            lines.append({"event": "validation", "epoch": epoch, "iteration": iteration,
                          "metric": "nll_loss", "value": validations[(epoch, iteration)],
                          "checkpoint": f"out/ck.{epoch}.{iteration}"})
    return "".join(json.dumps(r) + "\n" for r in lines)


def _resume(epoch: int, offset: int, *, keep_progress: bool = True) -> Resume:
    return Resume("ck", CheckpointState({}, epoch=epoch, offset=offset),
                  keep_progress=keep_progress, own=True)


def _folder(tmp_path: Path, content: str) -> RunDir:
    (tmp_path / LOG_FILE).write_text(content, encoding="utf-8")
    return RunDir(str(tmp_path), prefix="ck", is_main=True)


def test_prepare_cuts_the_log_back_to_the_resume_point_and_drops_a_torn_line(
        tmp_path: Path, caplog) -> None:
    # Given a log of 2 epochs x 4 steps, validations at steps 2 and 4, killed while writing
    steps = [(e, i) for e in range(2) for i in range(1, 5)]
    full = _records(steps, {(0, 2): 0.5, (0, 4): 0.7, (1, 2): 0.1})
    run_dir = _folder(tmp_path, full + '{"event": "train", "epo')
    (tmp_path / ".ck.0.4.abcd1234.tmp").write_bytes(b"half a checkpoint")
    # When a run resumes from the checkpoint of epoch 0, step 4
    best = run_dir.prepare(_resume(0, 4))
    # Then the log holds exactly the records up to there, the best is recovered from them
    assert (tmp_path / LOG_FILE).read_text(encoding="utf-8") == \
        _records(steps[:4], {(0, 2): 0.5, (0, 4): 0.7})
    assert best == Best("nll_loss", 0.5, "out/ck.0.2")
    assert json.loads((tmp_path / BEST_FILE).read_text()) == {
        "path": "out/ck.0.2", "metric": "nll_loss", "value": 0.5}
    # And the torn line was named in a warning, the temporary file removed
    assert f"{tmp_path / LOG_FILE}: dropping its torn last line" in caplog.text
    assert not list(tmp_path.glob(".*.tmp"))


def test_prepare_for_a_fresh_start_empties_the_log_and_removes_the_best_file(
        tmp_path: Path) -> None:
    run_dir = _folder(tmp_path, _records([(0, 1), (0, 2)], {(0, 2): 0.3}))
    (tmp_path / BEST_FILE).write_text("{}")
    assert run_dir.prepare(None) is None
    assert (tmp_path / LOG_FILE).read_text() == ""
    assert not (tmp_path / BEST_FILE).exists()
    # The same for a checkpoint used without its progress
    run_dir = _folder(tmp_path, _records([(0, 1)], {}))
    run_dir.prepare(_resume(0, 1, keep_progress=False))
    assert (tmp_path / LOG_FILE).read_text() == ""


def test_a_bad_line_before_the_last_is_an_input_error(tmp_path: Path) -> None:
    run_dir = _folder(tmp_path, "not json\n" + _records([(0, 1)], {}))
    with pytest.raises(InputError, match=f"{LOG_FILE}: line 1 is not JSON"):
        run_dir.prepare(None)


def test_prune_keeps_the_last_checkpoints_and_the_best(tmp_path: Path) -> None:
    # Given 5 checkpoints of the run and a file of another prefix
    names = ["ck.0.2", "ck.0.4", "ck.1", "ck.1.2", "ck.2.4"]
    for name in [*names, "other.0.2"]:
        (tmp_path / name).write_bytes(b"x")
    run_dir = RunDir(str(tmp_path), prefix="ck", is_main=True)
    # When keeping the last 2 with the best at epoch 0, step 4
    deleted = run_dir.prune(2, Best("nll_loss", 0.1, str(tmp_path / "ck.0.4")))
    # Then the two most advanced by (epoch, offset) and the best are left
    assert sorted(p.name for p in deleted) == ["ck.0.2", "ck.1"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.0.4", "ck.1.2", "ck.2.4",
                                                         "other.0.2"]
    assert run_dir.prune(0, None) == []  # 0 keeps everything
    assert RunDir(str(tmp_path), prefix="ck", is_main=False).prune(1, None) == []


def test_grad_scaler_state_travels_in_optimizer_dict_and_dpr_keys_stay(tmp_path: Path) -> None:
    # Given a loss-scaling run whose scale moved away from the default
    weight = torch.nn.Parameter(torch.ones(2))
    optimizer = torch.optim.AdamW([weight], lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 10, growth_interval=1)
    for _ in range(3):
        scaler.scale(weight.sum()).backward()
        scaler.step(optimizer)
        scaler.update()
    assert scaler.get_scale() == 2.0 ** 13
    # When it is saved in a checkpoint and restored into a fresh scaler and optimizer
    path = tmp_path / "ck.0.1"
    save_checkpoint(CheckpointState({}, optimizer_dict=optimizer_state(optimizer, scaler)), path)
    state = load_checkpoint(path)
    fresh = torch.amp.GradScaler("cpu")
    restore_scaler(fresh, Resume(str(path), state))
    new_optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.ones(2))], lr=0.1)
    restore_optimizer(new_optimizer, Resume(str(path), state))
    # Then the scale is back, the optimizer state too, and the file has DPR's six keys
    assert fresh.get_scale() == 2.0 ** 13
    assert new_optimizer.state_dict()["state"][0]["step"] == 3
    assert sorted(torch.load(path, weights_only=True)) == sorted(
        ["model_dict", "optimizer_dict", "scheduler_dict", "offset", "epoch", "encoder_params"])
    # And torch's own loader (what original DPR calls) accepts the dict with the extra key
    torch.optim.AdamW([torch.nn.Parameter(torch.ones(2))]).load_state_dict(state.optimizer_dict)
    # And without loss scaling nothing is added
    assert SCALER_KEY not in optimizer_state(optimizer, torch.amp.GradScaler("cpu",
                                                                             enabled=False))


def test_stop_request_records_the_first_signal_and_restores_handlers() -> None:
    before = signal.getsignal(signal.SIGUSR1)
    with StopRequest() as stop:
        assert stop.agreed(DistContext()) == 0
        os.kill(os.getpid(), signal.SIGUSR1)
        assert stop.agreed(DistContext()) == signal.SIGUSR1
    assert signal.getsignal(signal.SIGUSR1) is before
    error = TrainingInterrupted(signal.SIGTERM, "out/ck.0.3")
    assert error.exit_code == 143
    assert "SIGTERM" in str(error) and "out/ck.0.3" in str(error)
    assert "same command" in str(error)


@pytest.mark.usefixtures("restore_root_logging")
def test_full_disk_at_the_second_checkpoint_is_one_line_and_keeps_the_first(
        tmp_path: Path, tiny_camembert: Path, dpr_files, monkeypatch, capsys) -> None:
    # Given a run of 2 checkpoints whose disk fills up while the second one is saved
    out = tmp_path / "out"
    real_save = torch.save

    def save_on_filling_disk(obj, handle, *args, **kwargs):
        if (out / "dpr_biencoder.0.4").exists():
            handle = NoSpaceWriter(handle, 64 * 1024)
        return real_save(obj, handle, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save_on_filling_disk)
    args = dev_run_args(tiny_camembert, dpr_files, out, "--num_train_epochs", "1",
                        "--eval_per_epoch", "2")
    # When training
    status = train_dense_encoder.main(args)
    # Then it exits 1 with one line naming the checkpoint and the full disk, no traceback
    err = capsys.readouterr().err
    assert status == 1, err
    errors = [line for line in err.splitlines() if "[ERROR]" in line]
    assert len(errors) == 1 and "Traceback" not in err
    assert f"{out / 'dpr_biencoder.0.8'}: not written, no space left on the device" in errors[0]
    # and the first checkpoint is intact, with no torn file or temporary file beside it
    assert checkpoint_names(out) == ["dpr_biencoder.0.4"]
    assert load_checkpoint(out / "dpr_biencoder.0.4").offset == 4
    assert not list(out.glob(".*.tmp"))


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
def test_a_nan_validation_is_never_recorded_as_the_best_checkpoint(
        tmp_path: Path, tiny_camembert: Path, dpr_files, monkeypatch, capsys) -> None:
    # Given a run whose first validation gives NaN (a monkeypatched NLL), the later ones not
    values = iter([NAN, 0.7, NAN, 0.9])
    monkeypatch.setattr(trainer_module.Trainer, "validate",
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
