"""train_dense_encoder.py with --encoder_model_type fairseq_roberta (no fairseq needed)."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from helpers import blog_args, read_log, run_launcher

import train_dense_encoder
from dpr import tiny
from dpr.models.checkpoint import load_checkpoint, load_model_state
from dpr.models.factory import build_biencoder

LAYER_KEYS = [f"self_attn.{p}_proj.{w}" for p in "qkv" for w in ("weight", "bias")] + [
    "self_attn.out_proj.weight", "self_attn.out_proj.bias", "self_attn_layer_norm.weight",
    "self_attn_layer_norm.bias", "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias",
    "final_layer_norm.weight", "final_layer_norm.bias"]


def original_fairseq_keys(layers: int) -> set[str]:
    """The keys the original DPR writes for a fairseq_roberta bi-encoder (fairseq 0.10)."""
    keys = set()
    for side in ("question_model", "ctx_model"):
        enc = f"{side}.fairseq_roberta.model.encoder"
        keys |= {f"{side}.fairseq_roberta._float_tensor",
                 f"{enc}.sentence_encoder.embed_tokens.weight",
                 f"{enc}.sentence_encoder.embed_positions.weight",
                 f"{enc}.sentence_encoder.emb_layer_norm.weight",
                 f"{enc}.sentence_encoder.emb_layer_norm.bias",
                 f"{enc}.lm_head.dense.weight", f"{enc}.lm_head.dense.bias",
                 f"{enc}.lm_head.layer_norm.weight", f"{enc}.lm_head.layer_norm.bias",
                 f"{enc}.lm_head.weight", f"{enc}.lm_head.bias"}
        keys |= {f"{enc}.sentence_encoder.layers.{i}.{k}" for i in range(layers)
                 for k in LAYER_KEYS}
    return keys


def blog_fairseq_args(folder: Path, train: Path, dev: Path, out: Path) -> list[str]:
    return blog_args("fairseq_roberta", folder, train, dev, out)


def test_blog_command_with_fairseq_roberta_writes_the_original_key_layout(
        tmp_path: Path, fairseq_camembert: Path, dpr_files) -> None:
    train, dev = dpr_files
    out = tmp_path / "output"
    result = run_launcher("launch", blog_fairseq_args(fairseq_camembert, train, dev, out))
    assert result.returncode == 0, result.stderr[-3000:]
    names = sorted(p.name for p in out.glob("dpr_biencoder*"))
    assert names == ["dpr_biencoder.0.4", "dpr_biencoder.1.4", "dpr_biencoder.2.4"]
    state = torch.load(out / "dpr_biencoder.2.4", weights_only=True)
    assert set(state["model_dict"]) == original_fairseq_keys(layers=2)
    enc = "question_model.fairseq_roberta.model.encoder."
    assert torch.equal(state["model_dict"][enc + "lm_head.weight"],
                       state["model_dict"][enc + "sentence_encoder.embed_tokens.weight"])
    assert state["encoder_params"]["encoder_model_type"] == "fairseq_roberta"
    assert state["encoder_params"]["pretrained_file"] == str(fairseq_camembert)
    assert [v["metric"] for v in read_log(out, "validation")] == [
        "nll_loss", "nll_loss", "average_rank"]
    assert "dict.txt agrees with the tokenizer" in result.stderr


def _original_checkpoint(folder: Path, path: Path) -> dict[str, torch.Tensor]:
    """A checkpoint as the original DPR code saves it, built from fairseq's own state dict."""
    raw = torch.load(folder / "model.pt", weights_only=True)["model"]
    weights = {}
    for side in ("question_model", "ctx_model"):
        weights[f"{side}.fairseq_roberta._float_tensor"] = torch.tensor([0.0])
        weights |= {f"{side}.fairseq_roberta.model.{k}": v.clone() for k, v in raw.items()}
    torch.save({"model_dict": weights, "optimizer_dict": {}, "scheduler_dict": {}, "offset": 0,
                "epoch": 0, "encoder_params": {
                    "do_lower_case": True, "pretrained_model_cfg": str(folder),
                    "encoder_model_type": "fairseq_roberta", "pretrained_file": str(folder),
                    "projection_dim": 0, "sequence_length": 64}}, path)
    return weights


def test_original_layout_checkpoint_resumes_and_matches_its_folder(
        tmp_path: Path, fairseq_camembert: Path, dpr_files) -> None:
    # Given an original-layout checkpoint (epoch 0 complete) built from the folder's tensors
    train, dev = dpr_files
    ckpt = tmp_path / "dpr_biencoder.0"
    _original_checkpoint(fairseq_camembert, ckpt)
    # Then it gives the folder's encoder outputs
    loaded = build_biencoder("fairseq_roberta", None, pretrained_file=str(fairseq_camembert),
                             load_weights=False)
    load_model_state(loaded, load_checkpoint(ckpt).model_dict)
    folder_model = build_biencoder("fairseq_roberta", None, pretrained_file=str(fairseq_camembert))
    ids = torch.tensor([[5, 31, 64, 99, 6, 1], [5, 17, 6, 1, 1, 1]])
    with torch.no_grad():
        for side in ("question_model", "ctx_model"):
            a = getattr(loaded.eval(), side)(ids, ids != 1)
            b = getattr(folder_model.eval(), side)(ids, ids != 1)
            assert torch.equal(a, b)
    # And training resumes from it (epoch 1 onwards) with the original key layout
    out = tmp_path / "out"
    args = blog_fairseq_args(fairseq_camembert, train, dev, out)
    assert train_dense_encoder.main([*args, "--model_file", str(ckpt)]) == 0
    assert sorted(p.name for p in out.glob("dpr_biencoder*")) == ["dpr_biencoder.1.8",
                                                                  "dpr_biencoder.2.8"]
    assert read_log(out)[0]["epoch"] == 1
    resumed = torch.load(out / "dpr_biencoder.2.8", weights_only=True)["model_dict"]
    assert set(resumed) == set(_original_checkpoint(fairseq_camembert, tmp_path / "again"))


def test_mismatched_dictionary_is_refused_with_a_clear_message(
        tmp_path: Path, fairseq_camembert: Path, dpr_files, capsys) -> None:
    folder = tmp_path / "camembert-base"
    shutil.copytree(fairseq_camembert, folder)
    other = tiny.train_sentencepiece(["zèbre xylophone quartz wagon"] * 40, tmp_path / "o",
                                     vocab_size=50)
    tiny.write_fairseq_dictionary(other, folder / "dict.txt")
    train, dev = dpr_files
    out = tmp_path / "out"
    rc = train_dense_encoder.main(blog_fairseq_args(folder, train, dev, out))
    err = capsys.readouterr().err
    assert rc == 1
    assert "dict.txt does not match the tokenizer: piece" in err and str(folder) in err
    assert not list(out.glob("dpr_biencoder*"))
