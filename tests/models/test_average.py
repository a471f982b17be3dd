"""WiSE-FT weight averaging (`python -m dpr.average`): the interpolated values, and a shared
encoder written once."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import train_e5_checkpoint

from dpr import average as average_cli
from dpr.models.checkpoint import CheckpointState, save_checkpoint
from dpr.models.factory import build_biencoder, load_trained_biencoder
from dpr.recipe import Recipe

QUESTION, CTX = "question_model.", "ctx_model."


@pytest.fixture(scope="module")
def shared_checkpoint(tmp_path_factory: pytest.TempPathFactory, tiny_e5: Path,
                      dpr_files) -> Path:
    """A tiny e5-shaped shared-encoder checkpoint, trained one epoch."""
    return train_e5_checkpoint(tmp_path_factory.mktemp("shared"), tiny_e5, dpr_files[0],
                               "--temperature", "0.05", "--shared_encoder", records=8)


def _storages(weights: dict[str, torch.Tensor]) -> int:
    return len({v.untyped_storage().data_ptr() for v in weights.values()})


def test_averaging_a_shared_encoder_writes_it_once_and_loads_as_shared(
        shared_checkpoint: Path, tmp_path: Path) -> None:
    # Given a shared-encoder checkpoint, and its weights alone saved as a checkpoint
    tuned = torch.load(shared_checkpoint, weights_only=True)
    weights_only = tmp_path / "weights_only"
    save_checkpoint(CheckpointState(model_dict=tuned["model_dict"],
                                    encoder_params=tuned["encoder_params"]), weights_only)
    # When it is averaged with its pretrained start
    out = tmp_path / "wise50"
    assert average_cli.main([str(shared_checkpoint), "--alpha", "0.5", "--out_file",
                             str(out)]) == 0
    # Then the file is the size of the weights it averaged (the encoder stored once)
    mixed = torch.load(out, weights_only=True)["model_dict"]
    assert out.stat().st_size <= 1.02 * weights_only.stat().st_size
    assert _storages(mixed) == _storages(tuned["model_dict"])
    # And both prefixes hold the same tensors, so the shared loader accepts the file
    for key, value in mixed.items():
        if key.startswith(QUESTION):
            assert mixed[CTX + key[len(QUESTION):]].data_ptr() == value.data_ptr(), key
    loaded = load_trained_biencoder(out, {})
    assert loaded.biencoder.shared
    # And each weight is the mean of the fine-tuned one and the pretrained start's
    params = loaded.params
    start = build_biencoder(params["encoder_model_type"], params["pretrained_model_cfg"],
                            dropout=0.0, recipe=Recipe.from_params(params)).state_dict()
    key = "question_model.model.embeddings.word_embeddings.weight"
    tuned_value = tuned["model_dict"]["question_model.embeddings.word_embeddings.weight"]
    assert not torch.equal(tuned_value, start[key])  # training moved it
    assert torch.allclose(loaded.biencoder.state_dict()[key], (tuned_value + start[key]) / 2,
                          atol=1e-6)
