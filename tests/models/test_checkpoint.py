from __future__ import annotations

import argparse
import collections
import dataclasses
from pathlib import Path

import pytest
import torch

from dpr.models.checkpoint import (
    CHECKPOINT_KEYS,
    ENCODER_PARAM_KEYS,
    CheckpointError,
    CheckpointState,
    checkpoint_candidates,
    encoder_params_of,
    from_dpr_layout,
    load_checkpoint,
    load_model_state,
    parse_checkpoint_name,
    resolve_encoder_params,
    save_checkpoint,
    to_dpr_layout,
)
from dpr.models.factory import build_biencoder
from dpr.recipe import Recipe


@pytest.fixture(scope="module")
def bert_biencoder(tiny_bert: Path):
    return build_biencoder("hf_bert", str(tiny_bert), projection_dim=8)


def test_dpr_layout_of_hf_bert_matches_the_original_key_names(bert_biencoder) -> None:
    keys = set(to_dpr_layout(bert_biencoder.state_dict()))
    for side in ("question_model", "ctx_model"):
        assert f"{side}.embeddings.word_embeddings.weight" in keys
        assert f"{side}.encoder.layer.1.attention.self.query.weight" in keys
        assert f"{side}.encoder.layer.0.output.LayerNorm.bias" in keys
        assert f"{side}.pooler.dense.weight" in keys
        assert f"{side}.encode_proj.weight" in keys and f"{side}.encode_proj.bias" in keys
    assert not any(".model." in k for k in keys)
    assert not any(k.endswith("position_ids") for k in keys)


def test_layout_round_trip_is_identity(bert_biencoder) -> None:
    state = bert_biencoder.state_dict()
    assert list(from_dpr_layout(to_dpr_layout(state))) == list(state)


def _original_style_file(model, path: Path, *, with_position_ids: bool) -> dict:
    """An hf_bert checkpoint as the original writes it (OrderedDict, six keys)."""
    weights = collections.OrderedDict(to_dpr_layout(model.state_dict()))
    if with_position_ids:
        for side in ("question_model", "ctx_model"):
            weights[f"{side}.embeddings.position_ids"] = torch.arange(512)[None]
    raw = collections.OrderedDict(
        model_dict=weights, optimizer_dict={}, scheduler_dict={}, offset=708, epoch=34,
        encoder_params={"do_lower_case": True, "pretrained_model_cfg": "bert-base-uncased",
                        "encoder_model_type": "hf_bert", "pretrained_file": None,
                        "projection_dim": 8, "sequence_length": 256})
    torch.save(raw, path)
    return weights


@pytest.mark.parametrize("with_position_ids", [True, False])
def test_original_hf_bert_checkpoint_loads_with_or_without_position_ids(
        tmp_path: Path, tiny_bert: Path, bert_biencoder, with_position_ids: bool) -> None:
    # Given an original-format file written from a model with known weights
    path = tmp_path / "dpr_biencoder.34.708"
    _original_style_file(bert_biencoder, path, with_position_ids=with_position_ids)
    # When loading it into a freshly initialised model
    fresh = build_biencoder("hf_bert", str(tiny_bert), projection_dim=8, load_weights=False)
    state = load_checkpoint(path)
    load_model_state(fresh, state.model_dict)
    # Then every weight equals the source's and the metadata is read back
    for (name, a), b in zip(bert_biencoder.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), name
    assert (state.epoch, state.offset) == (34, 708)
    assert state.encoder_params["sequence_length"] == 256


def test_saved_checkpoint_has_six_keys_and_loads_weights_only(tmp_path: Path,
                                                              bert_biencoder) -> None:
    path = tmp_path / "ckpt"
    save_checkpoint(CheckpointState(model_dict=to_dpr_layout(bert_biencoder.state_dict()),
                                    offset=3, epoch=1, encoder_params={"do_lower_case": False}),
                    path)
    raw = torch.load(path, weights_only=True)
    assert tuple(raw) == CHECKPOINT_KEYS


def test_save_checkpoint_is_atomic_on_crash(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "dpr_biencoder.0.5"
    save_checkpoint(CheckpointState(model_dict={"question_model.w": torch.ones(2)}), path)
    before = path.read_bytes()

    def crash(obj, handle):
        handle.write(b"partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        save_checkpoint(CheckpointState(model_dict={"question_model.w": torch.zeros(2)}), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_load_checkpoint_refuses_pickled_objects_unless_allowed(tmp_path: Path) -> None:
    path = tmp_path / "ckpt"
    torch.save({k: {} for k in CHECKPOINT_KEYS} | {"encoder_params": argparse.Namespace(a=1)},
               path)
    with pytest.raises(CheckpointError, match="--allow_unsafe_pickle"):
        load_checkpoint(path)
    with pytest.warns(UserWarning, match="full unpickling"):
        with pytest.raises(TypeError):  # a Namespace is not a dict of encoder params
            load_checkpoint(path, allow_pickle=True)


def test_load_checkpoint_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope")
    (tmp_path / "junk").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk"):
        load_checkpoint(tmp_path / "junk")
    torch.save({"model": {}}, tmp_path / "other")
    with pytest.raises(CheckpointError, match="missing keys"):
        load_checkpoint(tmp_path / "other")


def test_load_model_state_reports_mismatched_keys(tiny_bert: Path, bert_biencoder) -> None:
    no_proj = build_biencoder("hf_bert", str(tiny_bert), load_weights=False)
    with pytest.raises(CheckpointError, match="encode_proj"):
        load_model_state(no_proj, to_dpr_layout(bert_biencoder.state_dict()))


def test_checkpoint_candidates_order_by_epoch_and_offset(tmp_path: Path) -> None:
    for name in ["dpr_biencoder.2.10", "dpr_biencoder.10.5", "dpr_biencoder.10", "x.99",
                 "dpr_biencoder.3.700"]:
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in checkpoint_candidates(tmp_path, "dpr_biencoder")] == [
        "dpr_biencoder.10.5", "dpr_biencoder.10", "dpr_biencoder.3.700", "dpr_biencoder.2.10"]
    assert parse_checkpoint_name("dpr_biencoder.34.708", "dpr_biencoder") == (34, 708)
    assert parse_checkpoint_name("dpr_biencoder.34", "dpr_biencoder") == (34, 0)
    assert checkpoint_candidates(tmp_path / "missing", "dpr_biencoder") == []


def test_resolve_encoder_params_model_values_from_checkpoint_paths_from_cli() -> None:
    cli = {"do_lower_case": False, "pretrained_model_cfg": "new/path", "encoder_model_type":
           "hf_roberta", "pretrained_file": None, "projection_dim": 0, "sequence_length": 128}
    stored = {"do_lower_case": True, "pretrained_model_cfg": "old/path", "encoder_model_type":
              "hf_roberta", "pretrained_file": "old/file", "projection_dim": 0,
              "sequence_length": 256}
    merged, overrides = resolve_encoder_params(cli, stored)
    assert merged == {**dataclasses.asdict(Recipe()), "do_lower_case": True,
                      "pretrained_model_cfg": "new/path", "encoder_model_type": "hf_roberta",
                      "pretrained_file": "old/file", "projection_dim": 0, "sequence_length": 256}
    # And the values that differ from the command line are said, as data
    assert [(o.key, o.given, o.stored) for o in overrides] == [
        ("do_lower_case", False, True), ("pretrained_file", None, "old/file"),
        ("sequence_length", 128, 256)]


def test_resolve_encoder_params_recipe_from_checkpoint_absent_entries_are_dprs() -> None:
    # Given a checkpoint storing a mean-pooled cosine recipe, and a command line asking cls
    stored = {"encoder_model_type": "hf_bert", "pretrained_model_cfg": "m",
              "pooling": "mean", "similarity": "cosine", "temperature": 0.01,
              "query_prefix": "query: "}
    merged, overrides = resolve_encoder_params({"pooling": "cls"}, stored)
    # Then the stored recipe wins (said in a message), absent entries are DPR's defaults
    assert (merged["pooling"], merged["similarity"], merged["temperature"]) == \
        ("mean", "cosine", 0.01)
    assert merged["query_prefix"] == "query: " and merged["passage_prefix"] == ""
    assert merged["shared_encoder"] is False
    assert [str(o) for o in overrides if o.key == "pooling"] == [
        "pooling: 'cls' -> 'mean' (from checkpoint)"]


def test_encoder_params_of_stores_only_the_recipe_that_differs_from_dprs() -> None:
    dpr_values = {"encoder_model_type": "hf_bert", "pooling": "cls", "similarity": "dot",
                  "temperature": None, "query_prefix": "", "shared_encoder": False}
    assert list(encoder_params_of(dpr_values)) == list(ENCODER_PARAM_KEYS)
    e5 = encoder_params_of({**dpr_values, "pooling": "mean", "similarity": "cosine",
                            "temperature": 0.01, "shared_encoder": True})
    assert {k: e5[k] for k in ("pooling", "similarity", "temperature", "shared_encoder")} == \
        {"pooling": "mean", "similarity": "cosine", "temperature": 0.01, "shared_encoder": True}
    assert "query_prefix" not in e5


def test_resolve_encoder_params_finds_stored_relative_paths_beside_the_checkpoint(
        tmp_path: Path, monkeypatch) -> None:
    # Given a checkpoint whose stored paths are relative to its own folder, read from elsewhere
    (tmp_path / "run" / "camembert").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    stored = {"encoder_model_type": "hf_roberta", "pretrained_model_cfg": "camembert",
              "pretrained_file": "missing", "do_lower_case": None, "projection_dim": None,
              "sequence_length": None}
    # When resolving without command-line paths
    params, _ = resolve_encoder_params({}, stored, checkpoint=tmp_path / "run" / "dpr.0")
    # Then the existing one is found beside the checkpoint, the other kept (a hub name?),
    # and unset values get their defaults
    assert params["pretrained_model_cfg"] == str(tmp_path / "run" / "camembert")
    assert params["pretrained_file"] == "missing"
    assert (params["do_lower_case"], params["projection_dim"], params["sequence_length"]) == (
        False, 0, 512)
    # And command-line paths win over stored ones
    params, _ = resolve_encoder_params({"pretrained_model_cfg": "given"}, stored,
                                       checkpoint=tmp_path / "run" / "dpr.0")
    assert params["pretrained_model_cfg"] == "given"


def test_resolve_encoder_params_fairseq_tokenizer_falls_back_to_the_fairseq_folder(
        tmp_path: Path) -> None:
    # Given a fairseq_roberta checkpoint whose tokenizer folder no longer exists
    (tmp_path / "camembert-base").mkdir()
    stored = {"encoder_model_type": "fairseq_roberta", "pretrained_model_cfg": "data/gone/",
              "pretrained_file": "camembert-base"}
    params, _ = resolve_encoder_params({}, stored, checkpoint=tmp_path / "dpr.0")
    # Then the tokenizer comes from the fairseq folder (as training does)
    assert params["pretrained_model_cfg"] == params["pretrained_file"] == str(
        tmp_path / "camembert-base")
    # But a folder given on the command line is used as given
    params, _ = resolve_encoder_params({"pretrained_model_cfg": "data/gone/"}, stored,
                                       checkpoint=tmp_path / "dpr.0")
    assert params["pretrained_model_cfg"] == "data/gone/"


@pytest.mark.parametrize("kind,message", [(None, "no encoder_model_type stored"),
                                          ("pytext_bert", "unknown encoder_model_type")])
def test_resolve_encoder_params_rejects_missing_or_unknown_types(kind, message) -> None:
    with pytest.raises(CheckpointError, match=message):
        resolve_encoder_params({}, {"encoder_model_type": kind}, checkpoint="ck/dpr.3")
