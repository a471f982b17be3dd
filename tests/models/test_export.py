"""The dpr2hf folder layout: projection file, tower folders, reloading a tower as an Encoder."""

from __future__ import annotations

from pathlib import Path

import torch

from dpr.models.encoder import represent
from dpr.models.export import (
    TOWER_FOLDERS,
    is_hf_export,
    load_exported_encoder,
    load_projection,
    save_projection,
)
from dpr.models.factory import build_biencoder


def test_represent_is_first_token_then_projection() -> None:
    hidden = torch.randn(2, 5, 4)
    proj = torch.nn.Linear(4, 3)
    assert torch.equal(represent(hidden), hidden[:, 0])
    assert torch.allclose(represent(hidden, proj), proj(hidden[:, 0]))


def test_exported_tower_reloads_as_the_same_encoder(tmp_path: Path, tiny_bert: Path) -> None:
    # Given a projecting BERT tower saved in the export layout
    tower = build_biencoder("hf_bert", str(tiny_bert), projection_dim=6).eval().ctx_model
    folder = tmp_path / TOWER_FOLDERS["ctx"]
    tower.model.save_pretrained(folder)
    save_projection(tower.encode_proj, folder)
    assert not is_hf_export(tmp_path)
    tower.model.save_pretrained(tmp_path / TOWER_FOLDERS["question"])
    assert is_hf_export(tmp_path)
    # When it is reloaded
    reloaded = load_exported_encoder(folder)
    ids = torch.tensor([[2, 10, 11, 3, 0]])
    # Then the projection round-trips and the vectors are the tower's
    assert torch.equal(load_projection(folder).weight, tower.encode_proj.weight)
    assert load_projection(tmp_path / TOWER_FOLDERS["question"]) is None
    with torch.no_grad():
        assert torch.allclose(reloaded(ids, ids != 0), tower(ids, ids != 0), atol=1e-6)
    assert reloaded.out_size == 6
