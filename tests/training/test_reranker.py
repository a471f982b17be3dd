"""train_reranker.py: the reranker trained by the bi-encoder's loop (checkpoint, resume,
torchrun, precision and length buckets, its flags, bad input, the loss going down)."""

from __future__ import annotations

import json
import math
import shutil
import signal
from pathlib import Path

import pytest
import torch
from helpers import (
    assert_same_run,
    checkpoint_names,
    read_log,
    run_launcher,
    start_training,
    wait_for_log_lines,
)

import train_reranker
from dpr.inference import load_reranker
from dpr.training.command_line import build_parser
from dpr.training.config import BIENCODER_ONLY, RerankConfig
from dpr.training.run_dir import BEST_FILE, HIGHER_IS_BETTER
from dpr.training.validation import MRR_METRIC

NO_DROPOUT = "1e-12"


def _args(model: Path, train: Path, out: Path | None, *extra: str) -> list[str]:
    """A tiny run: batch 4, 3 negatives, 48 tokens, no warm-up, then `extra`."""
    return ["--encoder_model_type", "hf_roberta", "--pretrained_model_cfg", str(model),
            "--train_file", str(train), *(["--output_dir", str(out)] if out else []),
            "--batch_size", "4", "--sequence_length", "48", "--negatives", "3",
            "--warmup_steps", "0", *extra]


def _subset(folder: Path, train: Path, count: int) -> Path:
    path = folder / f"first{count}.json"
    records = json.loads(train.read_text(encoding="utf-8"))[:count]
    path.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    return path


def test_two_steps_write_a_reranker_checkpoint_whose_first_loss_is_uniform(
        tmp_path: Path, tiny_camembert: Path, dpr_files) -> None:
    # Given 8 questions of 1 positive + 3 negatives, batch 4 (2 steps), a zero head
    out = tmp_path / "out"
    # When training one epoch
    assert train_reranker.main(_args(tiny_camembert, _subset(tmp_path, dpr_files[0], 8), out,
                                     "--num_train_epochs", "1")) == 0
    # Then the checkpoint has DPR's six keys, the reranker's prefix and entry
    assert checkpoint_names(out, "reranker") == ["reranker.0.2"]
    raw = torch.load(out / "reranker.0.2", weights_only=True)
    assert len(raw) == 6 and raw["encoder_params"]["reranker"] is True
    assert raw["encoder_params"]["projection_dim"] == 0
    assert {k.split(".")[1] for k in raw["model_dict"]} == {"model", "encode_proj"}
    # And the first step's loss is log 4: every candidate scored 0 by the zero head
    first = read_log(out)[0]
    assert first["loss"] == pytest.approx(math.log(4), abs=1e-6)
    assert first["correct"] == 0 and first["questions"] == 4
    # And the head and the encoder have their own learning rates (two groups each)
    groups = raw["optimizer_dict"]["param_groups"]
    assert [g["initial_lr"] for g in groups] == [1e-5, 1e-5, 3e-3, 3e-3]
    # And the run's flags are the reranker's, read back by --config
    config = json.loads((out / "training_config.json").read_text(encoding="utf-8"))
    assert config["checkpoint_file_name"] == "reranker" and config["negatives"] == 3
    assert not BIENCODER_ONLY & set(config)
    parser = build_parser(reranker=True)
    assert parser.parse_args(["--config", str(out / "training_config.json")]).config


def test_training_lowers_the_loss_and_the_best_checkpoint_has_the_highest_mrr(
        tmp_path: Path, nodrop_camembert: Path, dpr_files) -> None:
    # Given 8 questions, validated on themselves after each epoch, at a high learning rate
    toy, out = _subset(tmp_path, dpr_files[0], 8), tmp_path / "out"
    # When training 8 epochs
    assert train_reranker.main(_args(
        nodrop_camembert, toy, out, "--dev_file", str(toy), "--num_train_epochs", "8",
        "--learning_rate", "3e-3", "--head_learning_rate", "3e-2", "--seed", "3",
        "--dropout", NO_DROPOUT)) == 0
    # Then the last epoch's loss is far below the first one's (log 4)
    losses = [r["loss"] for r in read_log(out)]
    assert sum(losses[-2:]) / 2 < 0.75 * sum(losses[:2]) / 2
    # And the best checkpoint is the one of the highest MRR@10
    validations = read_log(out, "validation")
    assert {v["metric"] for v in validations} == {MRR_METRIC} <= HIGHER_IS_BETTER
    best = json.loads((out / BEST_FILE).read_text(encoding="utf-8"))
    top = max(validations, key=lambda v: v["value"])
    assert (best["metric"], best["value"], best["path"]) == (MRR_METRIC, top["value"],
                                                             top["checkpoint"])
    assert top["value"] > validations[0]["value"]


def _resume_at_step_4(straight: Path, resumed: Path) -> None:
    """Puts in `resumed` what a run of `straight` killed after its 6th step leaves: its
    step-4 checkpoint and its log up to step 6."""
    resumed.mkdir()
    shutil.copy(straight / "reranker.0.4", resumed)
    lines = (straight / "training_log.jsonl").read_text(encoding="utf-8").splitlines()
    (resumed / "training_log.jsonl").write_text("".join(f"{line}\n" for line in lines[:7]),
                                                encoding="utf-8")


@pytest.fixture(scope="module")
def straight_rerank(tmp_path_factory: pytest.TempPathFactory, tiny_camembert: Path,
                    dpr_files) -> tuple[Path, list[str]]:
    """Two epochs of 8 steps without interruption, validated and saved every 4 steps, dropout
    on, shuffled positives and negatives: (its folder, its flags but --output_dir)."""
    train, dev = dpr_files
    args = _args(tiny_camembert, train, None, "--dev_file", str(dev), "--num_train_epochs",
                 "2", "--eval_per_epoch", "2", "--learning_rate", "1e-3",
                 "--shuffle_positive_ctx", "--seed", "7")
    out = tmp_path_factory.mktemp("straight_rerank")
    assert train_reranker.main([*args, "--output_dir", str(out)]) == 0
    assert checkpoint_names(out, "reranker") == [f"reranker.{e}.{i}" for e in (0, 1)
                                                 for i in (4, 8)]
    return out, args


def test_a_resumed_run_ends_as_the_uninterrupted_one(tmp_path: Path, straight_rerank) -> None:
    # Given the folder a run killed after its 6th step leaves
    straight, args = straight_rerank
    _resume_at_step_4(straight, tmp_path / "out")
    # When the same command runs again, then it ends as the straight run
    assert train_reranker.main([*args, "--output_dir", str(tmp_path / "out")]) == 0
    assert_same_run(tmp_path / "out", straight, "reranker.1.8")


def test_sigterm_writes_a_checkpoint_and_the_rerun_ends_as_the_uninterrupted_one(
        tmp_path: Path, straight_rerank) -> None:
    # Given the straight run's command, sent SIGTERM after its 6th step
    straight, args = straight_rerank
    out, console = tmp_path / "out", tmp_path / "console.txt"
    proc = start_training([*args, "--output_dir", str(out)], console,
                          script="train_reranker.py")
    wait_for_log_lines(out, 7, proc, console)
    proc.send_signal(signal.SIGTERM)
    # Then it stops with status 143 and a checkpoint
    assert proc.wait(60) == 143, console.read_text()[-3000:]
    assert "training interrupted by SIGTERM" in console.read_text()
    # And the same command, run again, ends as the straight run
    assert train_reranker.main([*args, "--output_dir", str(out)]) == 0
    assert_same_run(out, straight, "reranker.1.8")


def test_torchrun_two_processes_resume_exactly_with_accumulation(
        tmp_path: Path, nodrop_camembert: Path, dpr_files) -> None:
    # Given 2 gloo processes of batch 2, 2 batches per update (8 steps), a random head
    train, dev = dpr_files
    args = ["--encoder_model_type", "hf_roberta", "--pretrained_model_cfg",
            str(nodrop_camembert), "--train_file", str(train), "--dev_file", str(dev),
            "--batch_size", "2", "--sequence_length", "40", "--negatives", "2",
            "--num_train_epochs", "1", "--eval_per_epoch", "2", "--learning_rate", "1e-3",
            "--warmup_steps", "2", "--gradient_accumulation_steps", "2", "--head_init",
            "random", "--dropout", NO_DROPOUT, "--seed", "4"]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    for out in (straight, resumed):
        if out == resumed:
            _resume_at_step_4(straight, resumed)
        result = run_launcher("torchrun", [*args, "--output_dir", str(out)],
                              script="train_reranker.py")
        assert result.returncode == 0, result.stderr[-3000:]
    # Then the resumed run equals the straight one, and the log counts both processes
    assert checkpoint_names(straight, "reranker") == ["reranker.0.4", "reranker.0.8"]
    assert_same_run(resumed, straight, "reranker.0.8")
    assert read_log(straight)[0]["questions"] == 4


def test_length_buckets_give_the_same_losses_and_fp16_trains(
        tmp_path: Path, nodrop_camembert: Path, dpr_files) -> None:
    # Given 2 steps with a random head, without and with length buckets of 3 pairs, and fp16
    train = _subset(tmp_path, dpr_files[0], 8)
    common = ["--num_train_epochs", "1", "--head_init", "random", "--learning_rate", "1e-3",
              "--dropout", NO_DROPOUT]
    runs = {name: tmp_path / name for name in ("plain", "buckets", "fp16")}
    assert train_reranker.main(_args(nodrop_camembert, train, runs["plain"], *common)) == 0
    assert train_reranker.main(_args(nodrop_camembert, train, runs["buckets"], *common,
                                     "--length_bucket_size", "3")) == 0
    assert train_reranker.main(_args(nodrop_camembert, train, runs["fp16"], *common,
                                     "--fp16")) == 0
    # Then the buckets change no loss, and fp16 losses are finite and close
    plain = [r["loss"] for r in read_log(runs["plain"])]
    assert [r["loss"] for r in read_log(runs["buckets"])] == pytest.approx(plain, abs=1e-5)
    assert [r["loss"] for r in read_log(runs["fp16"])] == pytest.approx(plain, abs=0.05)


@pytest.mark.parametrize("kind", ["hf_bert", "e5", "fairseq_roberta"])
def test_any_encoder_folder_trains_a_reranker_with_its_pooling(
        tmp_path: Path, kind: str, request: pytest.FixtureRequest, dpr_files) -> None:
    # Given a BERT folder, an e5-shaped sentence-transformers folder or a fairseq CamemBERT
    folder = request.getfixturevalue({"hf_bert": "tiny_bert", "e5": "tiny_e5",
                                      "fairseq_roberta": "fairseq_camembert"}[kind])
    flags = {"hf_bert": ["--encoder_model_type", "hf_bert"],
             "e5": ["--encoder_model_type", "hf_bert"],
             "fairseq_roberta": ["--encoder_model_type", "fairseq_roberta", "--pretrained_file",
                                 str(folder)]}[kind]
    out = tmp_path / "out"
    # When training 2 steps
    args = _args(folder, _subset(tmp_path, dpr_files[0], 8), out, "--num_train_epochs", "1",
                 "--head_init", "random")
    assert train_reranker.main([*args, *flags]) == 0
    # Then the checkpoint stores the folder's pooling (mean for e5) and no prefix, and loads
    params = torch.load(out / "reranker.0.2", weights_only=True)["encoder_params"]
    assert params.get("pooling", "cls") == ("mean" if kind == "e5" else "cls")
    assert "query_prefix" not in params and "similarity" not in params
    scores = load_reranker(out / "reranker.0.2").score_pairs([("Qui ?", ("T", "texte"))])
    assert scores.shape == (1,) and math.isfinite(float(scores[0]))


def test_flags_of_each_tool(capsys) -> None:
    # The reranker has none of the bi-encoder-only flags, the bi-encoder none of its own
    reranker = {a.dest for a in build_parser(reranker=True)._actions}
    biencoder = {a.dest for a in build_parser()._actions}
    rerank_flags = {"negatives", "head_learning_rate", "head_init", "val_candidates"}
    assert not BIENCODER_ONLY & reranker and rerank_flags <= reranker
    assert BIENCODER_ONLY <= biencoder and not rerank_flags & biencoder
    assert RerankConfig().negatives == 7


@pytest.mark.parametrize("extra,status,message", [
    (["--negatives", "0"], 2, "--negatives must be >= 1"),
    (["--hard_negatives", "2"], 2, "unrecognized arguments: --hard_negatives"),
    (["--val_candidates", "1"], 2, "--val_candidates must be >= 2"),
])
def test_bad_flags_are_one_error_line(tmp_path: Path, tiny_camembert: Path, dpr_files,
                                      capsys, extra: list[str], status: int,
                                      message: str) -> None:
    argv = _args(tiny_camembert, dpr_files[0], tmp_path / "out", *extra)
    assert train_reranker.main(argv) == status
    assert message in capsys.readouterr().err


def test_questions_without_negatives_are_left_out_and_none_at_all_is_an_error(
        tmp_path: Path, tiny_camembert: Path, dpr_files, caplog) -> None:
    # Given training records without any negative passage
    records = json.loads(dpr_files[0].read_text(encoding="utf-8"))[:4]
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps([{**r, "hard_negative_ctxs": [], "negative_ctxs": []}
                                for r in records], ensure_ascii=False), encoding="utf-8")
    # When training on them: one error line, nothing written
    assert train_reranker.main(_args(tiny_camembert, bare, tmp_path / "out")) == 1
    assert "--train_file: no question has a negative passage" in caplog.text
    assert not list((tmp_path / "out").glob("reranker*"))
