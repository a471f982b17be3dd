"""Resume policy faults: an unreadable newest checkpoint of the run is skipped, and said so."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
import torch
from helpers import load_weights, parse_config, read_log

import train_dense_encoder
from dpr.models.checkpoint import CheckpointError
from dpr.training.resume import load_resume


def _truncate(path: Path) -> None:
    """Keeps the first half of a file, as a full disk or a partial copy leaves it."""
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def _copy_run(source: Path, target: Path, names: list[str]) -> Path:
    target.mkdir()
    for name in names:
        shutil.copy(source / name, target / name)
    shutil.copy(source / "training_log.jsonl", target / "training_log.jsonl")
    return target


def test_load_resume_skips_a_truncated_newest_checkpoint(tmp_path: Path, straight_run,
                                                         caplog) -> None:
    # Given a run folder whose newest checkpoint (epoch 0, step 8) was cut in half
    out, args = straight_run
    run = _copy_run(out, tmp_path / "run", ["dpr_biencoder.0.4", "dpr_biencoder.0.8"])
    _truncate(run / "dpr_biencoder.0.8")
    cfg = parse_config([*args, "--output_dir", str(run)])
    # When choosing where to resume from
    with caplog.at_level(logging.WARNING):
        resume = load_resume(cfg)
    # Then the older readable checkpoint is used, the skipped one named in warnings
    assert resume.path == str(run / "dpr_biencoder.0.4") and resume.own
    assert (resume.state.epoch, resume.state.offset) == (0, 4)
    assert "Skipping an unreadable checkpoint of this run" in caplog.text
    assert f"Resuming from {run / 'dpr_biencoder.0.4'}, the newest readable checkpoint of " \
        "this run (dpr_biencoder.0.8 skipped, left in place)" in caplog.text


def test_rerun_after_a_truncated_newest_checkpoint_equals_the_uninterrupted_run(
        tmp_path: Path, straight_run) -> None:
    # Given a 2-checkpoint run folder whose newest checkpoint is truncated
    out, args = straight_run
    run = _copy_run(out, tmp_path / "run", ["dpr_biencoder.0.4", "dpr_biencoder.0.8"])
    _truncate(run / "dpr_biencoder.0.8")
    # When the same command runs again
    assert train_dense_encoder.main([*args, "--output_dir", str(run)]) == 0
    # Then it trained from step 4 on (the truncated file rewritten), as the uninterrupted run
    final, reference = load_weights(run / "dpr_biencoder.1.8"), load_weights(
        out / "dpr_biencoder.1.8")
    for key, value in reference.items():
        assert torch.allclose(final[key], value, atol=1e-6), key
    assert torch.load(run / "dpr_biencoder.0.8", weights_only=True)["offset"] == 8
    assert [(r["epoch"], r["iteration"]) for r in read_log(run)] == \
        [(r["epoch"], r["iteration"]) for r in read_log(out)]


def test_no_readable_checkpoint_is_an_error_saying_so(tmp_path: Path, straight_run) -> None:
    # Given a run folder whose two checkpoints are both truncated
    out, args = straight_run
    run = _copy_run(out, tmp_path / "run", ["dpr_biencoder.0.4", "dpr_biencoder.0.8"])
    for name in ("dpr_biencoder.0.4", "dpr_biencoder.0.8"):
        _truncate(run / name)
    # Then choosing where to resume is an error naming the folder and both files
    with pytest.raises(CheckpointError, match=r"none of this run's 2 checkpoint\(s\) is "
                       r"readable \(dpr_biencoder\.0\.8, dpr_biencoder\.0\.4\)"):
        load_resume(parse_config([*args, "--output_dir", str(run)]))
