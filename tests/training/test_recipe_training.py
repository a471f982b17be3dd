"""Training with a model's own recipe: folder defaults, flags, storage, shared encoder, and every
tool applying the stored prefixes, pooling and normalisation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import dense_retriever
import generate_dense_embeddings
import train_dense_encoder
from dpr.data import batch
from dpr.data.recipe import passage_items, question_items
from dpr.data.tensorizer import Tensorizer, build_tokenizer
from dpr.data.tsv import read_passages
from dpr.index.shards import read_shard
from dpr.inference import load_encoder
from dpr.models.checkpoint import ENCODER_PARAM_KEYS, load_checkpoint
from dpr.recipe import Recipe

COSINE = ["--temperature", "0.05"]
E5_FLAGS = ["--encoder_model_type", "hf_bert", "--batch_size", "8", "--sequence_length", "64",
            "--warmup_steps", "0", "--learning_rate", "1e-3"]


def _train(model: Path, train: Path, out: Path, *extra: str) -> int:
    return train_dense_encoder.main([*E5_FLAGS, "--pretrained_model_cfg", str(model),
                                     "--train_file", str(train), "--output_dir", str(out),
                                     *extra])


@pytest.fixture(scope="module")
def e5_run(tmp_path_factory: pytest.TempPathFactory, tiny_e5: Path, dpr_files) -> Path:
    """A tiny e5-shaped model trained one epoch by its folder's recipe, shared encoder."""
    out = tmp_path_factory.mktemp("e5run") / "out"
    assert _train(tiny_e5, dpr_files[0], out, "--num_train_epochs", "1", "--temperature",
                  "0.05", "--shared_encoder") == 0
    return out


def test_folder_recipe_is_the_default_logged_and_stored(e5_run: Path) -> None:
    (ckpt,) = e5_run.glob("dpr_biencoder.*")
    state = load_checkpoint(ckpt)
    # The checkpoint stores DPR's six entries and the recipe that differs from DPR's
    assert state.encoder_params == {**{k: state.encoder_params[k] for k in ENCODER_PARAM_KEYS},
                                    "pooling": "mean", "similarity": "cosine",
                                    "temperature": 0.05, "query_prefix": "query: ",
                                    "passage_prefix": "passage: ", "shared_encoder": True}
    # Its two towers are the same weights, stored once (one storage for both keys)
    weights = torch.load(ckpt, weights_only=True)["model_dict"]
    for key, value in weights.items():
        if key.startswith("question_model."):
            twin = weights["ctx_model." + key[len("question_model."):]]
            assert twin.data_ptr() == value.data_ptr()
    config = json.loads((e5_run / "training_config.json").read_text(encoding="utf-8"))
    assert (config["pooling"], config["similarity"], config["query_prefix"]) == \
        ("mean", "cosine", "query: ")


def test_dpr_command_on_a_sentence_transformers_folder_trains_at_the_default_temperature(
        tmp_path: Path, tiny_e5: Path, dpr_files, capsys: pytest.CaptureFixture[str]) -> None:
    # Given DPR's command line (no recipe flag) on a folder whose sentence-transformers files
    # normalise (cosine), without --temperature
    status = _train(tiny_e5, dpr_files[0], tmp_path / "out", "--num_train_epochs", "1")
    err = capsys.readouterr().err
    # Then it trains, with the folder's recipe and temperature 0.05, both said in the log
    assert status == 0
    assert "Recipe from the sentence-transformers files of" in err and "--pooling 'mean'" in err
    assert "Cosine similarity without --temperature: temperature 0.05" in err
    (ckpt,) = (tmp_path / "out").glob("dpr_biencoder.*")
    stored = load_checkpoint(ckpt).encoder_params
    assert (stored["pooling"], stored["similarity"], stored["temperature"]) == \
        ("mean", "cosine", 0.05)
    # And --help says so
    assert train_dense_encoder.main(["--help"]) == 0
    assert "0.05 with cosine" in " ".join(capsys.readouterr().out.split())


def test_flags_override_the_folder_recipe(tmp_path: Path, tiny_e5: Path, dpr_files) -> None:
    # Given DPR's recipe asked for explicitly on an e5-shaped folder
    out = tmp_path / "out"
    assert _train(tiny_e5, dpr_files[0], out, "--num_train_epochs", "1", "--pooling", "cls",
                  "--similarity", "dot", "--query_prefix", "", "--passage_prefix", "") == 0
    # Then the checkpoint stores no recipe entry: it is DPR's
    (ckpt,) = out.glob("dpr_biencoder.*")
    assert list(load_checkpoint(ckpt).encoder_params) == list(ENCODER_PARAM_KEYS)


def test_shared_encoder_resumes_as_shared(tmp_path: Path, tiny_e5: Path, dpr_files,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    # Given a shared-encoder run of one epoch, then the same command for two epochs
    out = tmp_path / "out"
    flags = ["--temperature", "0.05", "--shared_encoder"]
    assert _train(tiny_e5, dpr_files[0], out, "--num_train_epochs", "1", *flags) == 0
    capsys.readouterr()
    assert _train(tiny_e5, dpr_files[0], out, "--num_train_epochs", "2", *flags) == 0
    # Then the second run resumed from the first's checkpoint and stayed one encoder
    assert "Resuming this run from its checkpoint" in capsys.readouterr().err
    last = sorted(out.glob("dpr_biencoder.1*"))[-1]
    weights = torch.load(last, weights_only=True)["model_dict"]
    first = torch.load(sorted(out.glob("dpr_biencoder.0*"))[-1], weights_only=True)
    key = "question_model.encoder.layer.0.attention.self.query.weight"
    assert weights["ctx_model" + key[len("question_model"):]].data_ptr() == \
        weights[key].data_ptr()
    assert not torch.equal(weights[key], first["model_dict"][key])
    model = load_encoder(last)
    assert model.question is model.ctx and model.recipe.shared_encoder


def test_frozen_embeddings_are_stored_and_a_resumed_run_stays_frozen(
        tmp_path: Path, tiny_e5: Path, dpr_files, capsys: pytest.CaptureFixture[str]) -> None:
    # Given a run of one epoch with --freeze_embeddings
    out = tmp_path / "frozen"
    assert _train(tiny_e5, dpr_files[0], out, "--num_train_epochs", "1", *COSINE,
                  "--freeze_embeddings") == 0
    first = sorted(out.glob("dpr_biencoder.0*"))[-1]
    assert load_checkpoint(first).encoder_params["freeze_embeddings"] is True
    # When the same run continues for a second epoch without the flag
    assert _train(tiny_e5, dpr_files[0], out, "--num_train_epochs", "2", *COSINE) == 0
    # Then the word embeddings are still those of the start, the rest trained on
    before = torch.load(first, weights_only=True)["model_dict"]
    after = torch.load(sorted(out.glob("dpr_biencoder.1*"))[-1], weights_only=True)["model_dict"]
    assert torch.equal(after["question_model.embeddings.word_embeddings.weight"],
                       before["question_model.embeddings.word_embeddings.weight"])
    key = "question_model.encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(after[key], before[key])
    # And asking to freeze a run that was trained unfrozen is an error naming the flag
    other = tmp_path / "unfrozen"
    assert _train(tiny_e5, dpr_files[0], other, "--num_train_epochs", "1", *COSINE) == 0
    capsys.readouterr()
    assert _train(tiny_e5, dpr_files[0], other, "--num_train_epochs", "2", *COSINE,
                  "--freeze_embeddings") == 2
    assert "--freeze_embeddings True disagrees with False stored" in capsys.readouterr().err


def test_joined_passages_are_trained_on_stored_and_applied(
        tmp_path: Path, tiny_e5: Path, dpr_files, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a run with --passage_format joined, the passages of its batches recorded
    seen: list = []

    def recorded(passages, recipe):
        seen.extend(passage_items(passages, recipe))
        return passage_items(passages, recipe)

    monkeypatch.setattr(batch, "passage_items", recorded)
    out = tmp_path / "out"
    assert _train(tiny_e5, dpr_files[0], out, "--num_train_epochs", "1", *COSINE,
                  "--passage_format", "joined") == 0
    # Then training saw each passage as one string, the folder's prefix before the title
    assert seen and all(isinstance(item, str) and item.startswith("passage: ") for item in seen)
    # And the checkpoint stores the format, which the one loader applies
    (ckpt,) = out.glob("dpr_biencoder.*")
    assert load_checkpoint(ckpt).encoder_params["passage_format"] == "joined"
    assert load_encoder(ckpt).ctx.tensorizer.recipe.passage_format == "joined"


def _by_hand(model: Path, ckpt: Path) -> tuple[Tensorizer, object]:
    """A prefix-less tensorizer of the folder and the trained (shared) tower."""
    tensorizer = Tensorizer(build_tokenizer("hf_bert", str(model)), max_length=64,
                            pad_to_max=False)
    return tensorizer, load_encoder(ckpt).question.encoder


def test_every_tool_applies_the_stored_prefixes_pooling_and_normalisation(
        tmp_path: Path, e5_run: Path, tiny_e5: Path, corpus: tuple[Path, Path]) -> None:
    (ckpt,) = e5_run.glob("dpr_biencoder.*")
    passages = list(read_passages(corpus[0]).values())
    questions = [line.split("\t")[0] for line in
                 corpus[1].read_text(encoding="utf-8").splitlines()]
    # Given vectors computed by hand: prefixes written out, the tower's mean pooling
    tensorizer, tower = _by_hand(tiny_e5, ckpt)
    plain = Recipe()
    with torch.no_grad():
        want_p = tower(*tensorizer.tensorize(passage_items(
            [(f"passage: {p.title}" if p.title else "", p.text if p.title
              else f"passage: {p.text}") for p in passages], plain))).numpy()
        want_q = tower(*tensorizer.tensorize(
            [f"query: {q}" for q in question_items(questions, plain)])).numpy()
    assert np.allclose(np.linalg.norm(want_p, axis=1), 1.0, atol=1e-5)
    # When generate_dense_embeddings encodes the passages
    prefix = tmp_path / "emb" / "p"
    assert generate_dense_embeddings.main(["--model_file", str(ckpt), "--ctx_file",
                                           str(corpus[0]), "--out_file", str(prefix),
                                           "--quiet"]) == 0
    # Then its vectors are the hand-computed ones (and not those without the prefix)
    got = read_shard(f"{prefix}_0.npy")[1]
    np.testing.assert_allclose(got, want_p, atol=1e-5)
    model = load_encoder(ckpt)
    np.testing.assert_allclose(model.encode_questions(questions), want_q, atol=1e-5)
    # And dense_retriever ranks with the prefixed questions against those vectors
    out = tmp_path / "r.json"
    assert dense_retriever.main(["--model_file", str(ckpt), "--qa_file", str(corpus[1]),
                                 "--ctx_file", str(corpus[0]), "--encoded_ctx_file",
                                 f"{prefix}_*.npy", "--out_file", str(out), "--n-docs", "3",
                                 "--quiet"]) == 0
    ids = [p.passage_id for p in passages]
    want_top = [[ids[i] for i in np.argsort(-(want_p @ q), kind="stable")[:3]] for q in want_q]
    got_top = [[c["id"] for c in r["ctxs"]] for r in json.loads(out.read_text())]
    assert got_top == want_top
