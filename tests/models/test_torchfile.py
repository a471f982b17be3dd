"""The one weights-only torch loader (checkpoints and fairseq model.pt)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch

from dpr.models.fairseq import FairseqFormatError, load_fairseq_folder
from dpr.models.torchfile import load_torch_file
from dpr.utils.errors import InputError


class _Custom:
    """A class the weights-only loader refuses to rebuild."""


def test_load_torch_file_refuses_objects_unless_allowed_and_allowed_globals_pass(
        tmp_path: Path) -> None:
    # Given a file with a custom object and one with an argparse namespace
    custom, namespace = tmp_path / "custom.pt", tmp_path / "ns.pt"
    torch.save({"x": _Custom()}, custom)
    torch.save({"args": argparse.Namespace(lr=1.0)}, namespace)
    # Then the custom object needs the opt-in (with a warning), and names the flag otherwise
    with pytest.raises(InputError, match="--allow_unsafe_pickle"):
        load_torch_file(custom, allow_pickle=False, error=InputError)
    with pytest.warns(UserWarning, match="full unpickling"):
        assert isinstance(load_torch_file(custom, allow_pickle=True, error=InputError)["x"],
                          _Custom)
    # And classes passed as safe globals load without it
    loaded = load_torch_file(namespace, allow_pickle=False, error=InputError,
                             safe_globals=[argparse.Namespace])
    assert loaded["args"].lr == 1.0


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_fairseq_folder_with_corrupted_model_pt_is_a_format_error(tmp_path: Path) -> None:
    (tmp_path / "model.pt").write_bytes(b"\x80garbage")
    with pytest.raises(FairseqFormatError, match="model.pt: cannot be read"):
        load_fairseq_folder(tmp_path)
    (tmp_path / "model.pt").write_bytes(b"text")
    with pytest.raises(FairseqFormatError, match="not a torch file"):
        load_fairseq_folder(tmp_path)
