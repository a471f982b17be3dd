from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import pytest
import torch

from dpr import tiny
from dpr.data.tensorizer import build_tokenizer
from dpr.models.checkpoint import from_dpr_layout, load_model_state, to_dpr_layout
from dpr.models.factory import build_biencoder
from dpr.models.fairseq import (
    FairseqFormatError,
    check_dictionary,
    fairseq_to_hf_name,
    hf_to_fairseq_name,
    load_fairseq_folder,
    read_dictionary,
)


@pytest.mark.parametrize("fs,hf", [
    ("embed_tokens.weight", "embeddings.word_embeddings.weight"),
    ("embed_positions.weight", "embeddings.position_embeddings.weight"),
    ("emb_layer_norm.bias", "embeddings.LayerNorm.bias"),
    ("layers.3.self_attn.k_proj.weight", "encoder.layer.3.attention.self.key.weight"),
    ("layers.0.self_attn.out_proj.bias", "encoder.layer.0.attention.output.dense.bias"),
    ("layers.11.self_attn_layer_norm.weight", "encoder.layer.11.attention.output.LayerNorm.weight"),
    ("layers.2.fc1.weight", "encoder.layer.2.intermediate.dense.weight"),
    ("layers.2.fc2.bias", "encoder.layer.2.output.dense.bias"),
    ("layers.1.final_layer_norm.bias", "encoder.layer.1.output.LayerNorm.bias"),
])
def test_fairseq_names_map_both_ways(fs: str, hf: str) -> None:
    assert fairseq_to_hf_name(fs) == hf
    assert hf_to_fairseq_name(hf) == fs


def test_fairseq_012_spelling_and_buffers() -> None:
    assert fairseq_to_hf_name("layernorm_embedding.weight") == "embeddings.LayerNorm.weight"
    assert fairseq_to_hf_name("version") is None
    assert hf_to_fairseq_name("embeddings.token_type_embeddings.weight") is None
    with pytest.raises(FairseqFormatError, match="unknown"):
        fairseq_to_hf_name("layers.0.adapter.weight")


def _outputs(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval().encode_questions(ids, ids != 1)


IDS = torch.tensor([[5, 40, 77, 123, 9, 6, 1, 1], [5, 300, 12, 6, 1, 1, 1, 1]])


@pytest.mark.parametrize("layout,infix", [("args", "encoder"), ("cfg", "decoder")])
def test_folder_layouts_load_to_the_same_model(tmp_path: Path, sample_texts, fairseq_camembert,
                                               layout: str, infix: str) -> None:
    # Given the same seed written with fairseq <= 0.10 `args` / 0.9 `decoder.` names
    other = tiny.make_tiny_fairseq_camembert(tmp_path / "camembert", sample_texts, layout=layout,
                                             infix=infix)
    # When loading both folders
    a = build_biencoder("fairseq_roberta", None, pretrained_file=str(fairseq_camembert))
    b = build_biencoder("fairseq_roberta", None, pretrained_file=str(other))
    # Then weights and outputs are identical
    assert torch.equal(_outputs(a, IDS), _outputs(b, IDS))
    assert load_fairseq_folder(other).config_kwargs == \
        load_fairseq_folder(fairseq_camembert).config_kwargs


def test_folder_with_namespace_args_loads_weights_only(tmp_path: Path, sample_texts) -> None:
    folder = tiny.make_tiny_fairseq_camembert(tmp_path / "c", sample_texts, layout="args")
    raw = torch.load(folder / "model.pt", weights_only=False)
    assert isinstance(raw["args"], argparse.Namespace)
    assert load_fairseq_folder(folder).config_kwargs["num_attention_heads"] == 2


def test_folder_weights_are_mapped_onto_the_hf_module(fairseq_camembert: Path) -> None:
    raw = torch.load(fairseq_camembert / "model.pt", weights_only=True)["model"]
    model = build_biencoder("fairseq_roberta", None, pretrained_file=str(fairseq_camembert))
    hf = model.question_model.model.state_dict()
    assert torch.equal(hf["encoder.layer.1.attention.self.query.weight"],
                       raw["encoder.sentence_encoder.layers.1.self_attn.q_proj.weight"])
    assert torch.equal(hf["embeddings.position_embeddings.weight"],
                       raw["encoder.sentence_encoder.embed_positions.weight"])
    assert not hf["embeddings.token_type_embeddings.weight"].any()
    assert model.question_model.model.config.layer_norm_eps == 1e-5
    assert torch.equal(model.question_model.lm_head.bias, raw["encoder.lm_head.bias"])


def test_checkpoint_keys_round_trip_to_the_original_layout(fairseq_camembert: Path) -> None:
    model = build_biencoder("fairseq_roberta", None, pretrained_file=str(fairseq_camembert))
    dpr = to_dpr_layout(model.state_dict())
    raw = torch.load(fairseq_camembert / "model.pt", weights_only=True)["model"]
    expected = {f"{side}.fairseq_roberta.model.{k}" for side in ("question_model", "ctx_model")
                for k in raw} | {f"{s}.fairseq_roberta._float_tensor"
                                 for s in ("question_model", "ctx_model")}
    assert set(dpr) == expected
    assert set(from_dpr_layout(dpr)) == set(model.state_dict())


def test_dictionary_matches_tokenizer_ids(fairseq_camembert: Path) -> None:
    tok = build_tokenizer("fairseq_roberta", str(fairseq_camembert))
    tokens = read_dictionary(fairseq_camembert / "dict.txt")
    assert tokens[:3] == ["<unk>", "<s>", "</s>"]
    check_dictionary(tokens, tok.convert_tokens_to_ids, unk_token=tok.unk_token, source="x")
    assert tok.convert_tokens_to_ids("<s>") == 5 and tok.convert_tokens_to_ids("</s>") == 6


def test_dictionary_of_another_model_is_refused_naming_the_piece(
        tmp_path: Path, fairseq_camembert: Path) -> None:
    # Given a folder whose dict.txt comes from a SentencePiece model trained on other text
    folder = tmp_path / "camembert-mixed"
    shutil.copytree(fairseq_camembert, folder)
    other = tiny.train_sentencepiece(["zèbre xylophone quartz"] * 50 + ["wagon"] * 20,
                                     tmp_path / "other", vocab_size=60)
    tiny.write_fairseq_dictionary(other, folder / "dict.txt")
    tok = build_tokenizer("fairseq_roberta", str(folder))
    with pytest.raises(FairseqFormatError, match=r"dict.txt does not match the tokenizer: piece "):
        check_dictionary(read_dictionary(folder / "dict.txt"), tok.convert_tokens_to_ids,
                         unk_token=tok.unk_token, source=str(folder))


def test_projection_dropout_and_fixed_ctx_work_for_fairseq(fairseq_camembert: Path) -> None:
    model = build_biencoder("fairseq_roberta", None, pretrained_file=str(fairseq_camembert),
                            projection_dim=8, dropout=0.25, fix_ctx_encoder=True)
    assert model.question_model.out_size == 8
    assert model.question_model.model.config.hidden_dropout_prob == 0.25
    keys = to_dpr_layout(model.state_dict())
    assert "question_model.encode_proj.weight" in keys
    q, c = model.train()(IDS, IDS != 1, IDS, IDS != 1)
    (q @ c.T).sum().backward()
    assert all(p.grad is None for p in model.ctx_model.parameters())
    token_types = model.question_model.model.embeddings.token_type_embeddings.weight
    assert token_types.grad is None and not token_types.requires_grad


def test_original_layout_checkpoint_loads_into_a_fresh_model(fairseq_camembert: Path) -> None:
    # Given DPR tensors built from the fairseq state dict itself (not by our writer)
    raw = torch.load(fairseq_camembert / "model.pt", weights_only=True)["model"]
    dpr = {f"{side}.fairseq_roberta.model.{k}": v.clone() for side in ("question_model",
                                                                      "ctx_model")
           for k, v in raw.items()}
    dpr |= {f"{s}.fairseq_roberta._float_tensor": torch.zeros(1)
            for s in ("question_model", "ctx_model")}
    fresh = build_biencoder("fairseq_roberta", None, pretrained_file=str(fairseq_camembert),
                            load_weights=False)
    load_model_state(fresh, dpr)
    reference = build_biencoder("fairseq_roberta", None, pretrained_file=str(fairseq_camembert))
    assert torch.equal(_outputs(fresh, IDS), _outputs(reference, IDS))
