"""The reranker's loader (`dpr.inference.load_reranker`), and its checkpoints refused by the
bi-encoder tools (and the reverse) in one line."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

import dense_retriever
import generate_dense_embeddings
import train_dense_encoder
import train_reranker
from data_prep import mine_negatives
from dpr import average, evaluate
from dpr.data.recipe import pair_items
from dpr.data.tensorizer import tensorizer_for
from dpr.inference import load_encoder, load_reranker
from dpr.models.checkpoint import CheckpointKindError, is_reranker, load_checkpoint
from dpr.models.factory import load_trained_reranker
from dpr.utils.errors import InputError
from dpr.utils.logging import setup_logging

PAIRS = [("Où coule la Loire ?", ("Loire", "La Loire coule en France, de l'Ardèche à l'océan.")),
         ("Qui a écrit Les Misérables ?", ("", "Victor Hugo.")),
         ("Où coule la Loire ?", ("Seine", "La Seine traverse Paris."))]


def test_score_pairs_equals_the_head_of_each_pair_scored_alone(
        reranker_checkpoint: Path) -> None:
    # Given a reranker checkpoint and the model it holds
    trained = load_trained_reranker(reranker_checkpoint, {})
    tensorizer = tensorizer_for(trained.params)
    # When scoring three pairs at once (length-sorted batches)
    scores = load_reranker(reranker_checkpoint, batch_size=2).score_pairs(PAIRS)
    # Then each score is head(pool(encoder(pair))) of that pair alone, in the input order
    with torch.no_grad():
        alone = [trained.reranker(*tensorizer.tensorize(pair_items([pair], tensorizer.recipe))
                                  ).item() for pair in PAIRS]
    assert scores.dtype == np.float32 and scores.shape == (3,)
    assert np.allclose(scores, alone, atol=1e-5)
    assert len(set(np.round(scores, 6))) == 3  # a random head: the pairs differ


def test_score_pairs_under_autocast_and_of_no_pair(reranker_checkpoint: Path) -> None:
    reranker = load_reranker(reranker_checkpoint, amp_dtype=torch.bfloat16)
    assert np.allclose(reranker.score_pairs(PAIRS),
                       load_reranker(reranker_checkpoint).score_pairs(PAIRS), atol=0.05)
    assert reranker.score_pairs([]).shape == (0,)
    assert reranker.description.startswith(f"reranker {reranker_checkpoint} (cls pooling")


def test_checkpoint_layout_is_dprs_six_keys_with_the_reranker_entry(
        reranker_checkpoint: Path) -> None:
    raw = torch.load(reranker_checkpoint, weights_only=True)
    assert sorted(raw) == sorted(["model_dict", "optimizer_dict", "scheduler_dict", "offset",
                                  "epoch", "encoder_params"])
    assert (raw["epoch"], raw["offset"]) == (0, 2)
    assert raw["encoder_params"] == {
        "do_lower_case": False, "pretrained_model_cfg": raw["encoder_params"]
        ["pretrained_model_cfg"], "encoder_model_type": "hf_roberta", "pretrained_file": None,
        "projection_dim": 0, "sequence_length": 64, "reranker": True}
    assert all(k.startswith(("reranker.model.", "reranker.encode_proj.")) for k in
               raw["model_dict"])
    assert raw["model_dict"]["reranker.encode_proj.weight"].shape == (1, 32)
    assert is_reranker(load_checkpoint(reranker_checkpoint, reranker=None))


def test_a_bi_encoder_checkpoint_or_a_folder_is_no_reranker(checkpoint: Path,
                                                            tmp_path: Path) -> None:
    with pytest.raises(CheckpointKindError, match=f"{checkpoint}: a bi-encoder checkpoint, "
                       "not a reranker"):
        load_reranker(checkpoint)
    with pytest.raises(InputError, match=f"{tmp_path}: no reranker folder"):
        load_reranker(tmp_path)
    assert not is_reranker(load_checkpoint(checkpoint, reranker=None))


def test_a_reranker_checkpoint_is_no_bi_encoder(reranker_checkpoint: Path) -> None:
    with pytest.raises(CheckpointKindError, match=f"{reranker_checkpoint}: a reranker "
                       "checkpoint"):
        load_encoder(reranker_checkpoint)


# Each bi-encoder tool given the reranker checkpoint `r` (tmp: a scratch folder); dpr2hf
# takes both kinds (tests/dpr2hf/test_reranker_export.py).
BIENCODER_TOOLS: dict[str, tuple[Callable, Callable[..., list[str]]]] = {
    "train_dense_encoder.py": (train_dense_encoder.main, lambda r, tmp, c, train: [
        "--encoder_model_type", "hf_roberta", "--pretrained_model_cfg", str(c),
        "--train_file", str(train), "--model_file", str(r), "--output_dir", str(tmp / "o")]),
    "generate_dense_embeddings.py": (generate_dense_embeddings.main, lambda r, tmp, c, _: [
        "--model_file", str(r), "--ctx_file", str(c), "--out_file", str(tmp / "o"),
        "--no_cuda", "--quiet"]),
    "dense_retriever.py": (dense_retriever.main, lambda r, tmp, c, _: [
        "--model_file", str(r), "--qa_file", str(c.parent / "qas.tsv"), "--ctx_file", str(c),
        "--encoded_ctx_file", str(tmp / "emb" / "e_*.npy"), "--out_file", str(tmp / "o"),
        "--no_cuda", "--quiet"]),
    "dpr.evaluate": (evaluate.main, lambda r, tmp, c, _: [
        "--ctx_file", str(c), "--qa_file", str(c.parent / "qas.tsv"), "--retrievers", "dpr",
        "--dpr_model", str(r), "--output_dir", str(tmp / "o"), "--quiet"]),
    "data_prep.mine_negatives": (mine_negatives.main, lambda r, tmp, c, train: [
        "--model_file", str(r), "--train_file", str(train), "--ctx_file", str(c),
        "--out_file", str(tmp / "o"), "--no_cuda", "--quiet"]),
    "dpr.average": (average.main, lambda r, tmp, c, _: [
        "--model_file", str(r), "--alpha", "0.5", "--out_file", str(tmp / "o")]),
}


@pytest.mark.parametrize("tool", BIENCODER_TOOLS)
def test_a_reranker_checkpoint_given_to_a_bi_encoder_tool_is_one_error_line(
        tool: str, reranker_checkpoint: Path, tiny_camembert: Path, corpus, dpr_files,
        tmp_path: Path, capsys, restore_root_logging) -> None:
    main, argv = BIENCODER_TOOLS[tool]
    passages = corpus[0] if tool != "train_dense_encoder.py" else tiny_camembert
    (tmp_path / "emb").mkdir()
    np.save(tmp_path / "emb" / "e_0.npy", np.zeros((2, 32), dtype=np.float32))  # a shard
    setup_logging()
    # When the tool is given the reranker checkpoint as its model
    status = main(argv(reranker_checkpoint, tmp_path, passages, dpr_files[0]))
    err = capsys.readouterr().err
    # Then it exits 1 with one error line naming the file and what it is
    errors = [line for line in err.splitlines()
              if "[ERROR]" in line and "Nothing was written" not in line]
    assert status == 1, err
    assert len(errors) == 1 and f"{reranker_checkpoint}: a reranker checkpoint " \
        "(train_reranker.py), not a bi-encoder" in errors[0], errors
    assert "Traceback" not in err
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and p.parent.name != "emb"]


def test_a_bi_encoder_checkpoint_given_to_train_reranker_is_one_error_line(
        checkpoint: Path, tiny_camembert: Path, dpr_files, tmp_path: Path, capsys,
        restore_root_logging) -> None:
    setup_logging()
    status = train_reranker.main([
        "--encoder_model_type", "hf_roberta", "--pretrained_model_cfg", str(tiny_camembert),
        "--train_file", str(dpr_files[0]), "--model_file", str(checkpoint),
        "--output_dir", str(tmp_path / "o")])
    errors = [line for line in capsys.readouterr().err.splitlines() if "[ERROR]" in line]
    assert status == 1
    assert len(errors) == 1 and f"{checkpoint}: a bi-encoder checkpoint, not a reranker" in \
        errors[0]
