"""Fixtures of the training tests."""

from __future__ import annotations

from pathlib import Path

import pytest

import train_dense_encoder


@pytest.fixture(scope="session")
def straight_run(tmp_path_factory, tiny_camembert: Path, dpr_files):
    """Two epochs without interruption, 2 checkpoints per epoch (8 batches per epoch)."""
    train, dev = dpr_files
    out = tmp_path_factory.mktemp("straight")
    args = ["--encoder_model_type", "hf_roberta", "--pretrained_model_cfg", str(tiny_camembert),
            "--train_file", str(train), "--dev_file", str(dev), "--batch_size", "4",
            "--sequence_length", "48", "--num_train_epochs", "2", "--eval_per_epoch", "2",
            "--learning_rate", "1e-3", "--warmup_steps", "3", "--seed", "11",
            "--hard_negatives", "2", "--shuffle_positive_ctx"]
    assert train_dense_encoder.main([*args, "--output_dir", str(out)]) == 0
    return out, args
