"""End-to-end tests of train_dense_encoder.py: launchers, the blog command, resume, bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from helpers import blog_args, load_weights, read_log, reference_batch, run_launcher, tiny_run_args
from helpers import checkpoint_names as _checkpoints

import train_dense_encoder
from dpr.data.records import load_samples
from dpr.data.tensorizer import build_tensorizer
from dpr.models.checkpoint import to_dpr_layout
from dpr.models.factory import build_biencoder
from dpr.training.optim import build_optimizer
from dpr.training.step import inbatch_loss
from dpr.utils.dist import DistContext

# DPR's --dropout 0 means "keep the model config's dropout"; a negligible value turns it off
# so that runs can be compared with a hand computation.
NO_DROPOUT = "1e-12"


@pytest.mark.parametrize("launcher", ["launch", "torchrun"])
def test_two_processes_first_step_loss_equals_one_process_on_concatenated_batches(
        tmp_path: Path, nodrop_camembert: Path, dpr_files, launcher: str) -> None:
    # Given a 2-process gloo run on CPU
    train, _ = dpr_files
    out = tmp_path / "out"
    args = tiny_run_args(nodrop_camembert, train, out, "--batch_size", "3",
            "--hard_negatives", "2", "--other_negatives", "1", "--sequence_length", "48",
            "--num_train_epochs", "1", "--seed", "5", "--learning_rate", "1e-3",
            "--warmup_steps", "0", "--log_batch_step", "1", "--dropout", NO_DROPOUT)
    # When training for one epoch
    result = run_launcher(launcher, args)
    assert result.returncode == 0, result.stderr[-3000:]
    # Then a checkpoint is written and the logged global loss of step 1 equals the loss of a
    # single process that sees both processes' batches concatenated
    assert _checkpoints(out) == ["dpr_biencoder.0.5"]
    first = read_log(out)[0]
    assert (first["epoch"], first["iteration"], first["questions"]) == (0, 1, 6)
    samples = load_samples(str(train))
    tensorizer = build_tensorizer("hf_roberta", str(nodrop_camembert), sequence_length=48,
                                  do_lower_case=False)
    batch = reference_batch(samples, tensorizer, seed=5, epoch=0, iteration=1, world_size=2,
                            batch_size=3, num_hard=2, num_other=1)
    model = build_biencoder("hf_roberta", str(nodrop_camembert),
                            dropout=float(NO_DROPOUT)).train()
    q, c = model(batch.question_ids, batch.question_mask, batch.ctx_ids, batch.ctx_mask)
    loss, correct, n, _ = inbatch_loss(q, c, batch.positive_idx, DistContext(),
                                       ctx_keys=batch.ctx_keys,
                                       positive_keys=batch.positive_keys)
    assert n == 6 and c.shape[0] == 6 * 4
    assert abs(first["loss"] - loss.item()) < 1e-5
    assert first["correct"] == int(correct)


def test_blog_command_runs_under_distributed_launch_through_both_validations(
        tmp_path: Path, tiny_camembert: Path, dpr_files) -> None:
    train, dev = dpr_files
    out = tmp_path / "output"
    result = run_launcher("launch", blog_args("hf_roberta", tiny_camembert, train, dev, out))
    assert result.returncode == 0, result.stderr[-3000:]
    # 29 questions over 2 processes of batch 4: 4 batches per epoch, one checkpoint per epoch
    assert _checkpoints(out) == ["dpr_biencoder.0.4", "dpr_biencoder.1.4", "dpr_biencoder.2.4"]
    validations = read_log(out, "validation")
    assert [(v["epoch"], v["metric"]) for v in validations] == [
        (0, "nll_loss"), (1, "nll_loss"), (2, "average_rank")]
    params = torch.load(out / "dpr_biencoder.2.4", weights_only=True)["encoder_params"]
    assert params["do_lower_case"] is True and params["sequence_length"] == 64
    assert params["encoder_model_type"] == "hf_roberta"
    assert "Best validation checkpoint" in result.stderr
    config = json.loads((out / "training_config.json").read_text())
    assert config["warmup_steps"] == 4 and config["max_grad_norm"] == 2.0


def test_straight_run_writes_dpr_checkpoint_names(straight_run) -> None:
    out, _ = straight_run
    assert _checkpoints(out) == ["dpr_biencoder.0.4", "dpr_biencoder.0.8", "dpr_biencoder.1.4",
                                 "dpr_biencoder.1.8"]


@pytest.mark.parametrize("stop_at,via_model_file", [("dpr_biencoder.0.8", False),
                                                     ("dpr_biencoder.0.4", True)])
def test_resume_matches_uninterrupted_run(tmp_path: Path, straight_run, stop_at: str,
                                          via_model_file: bool) -> None:
    # Given the checkpoint a run stopped at (end of epoch 0, or mid-epoch 0)
    out, args = straight_run
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    if via_model_file:
        extra = ["--model_file", str(out / stop_at)]
    else:
        shutil.copy(out / stop_at, resumed / stop_at)
        extra = []
    # When training resumes with the same command
    assert train_dense_encoder.main([*args, "--output_dir", str(resumed), *extra]) == 0
    # Then the final weights equal the uninterrupted run's and so do the logged losses and lrs
    final = load_weights(resumed / "dpr_biencoder.1.8")
    reference = load_weights(out / "dpr_biencoder.1.8")
    for key, value in reference.items():
        assert torch.allclose(final[key], value, atol=1e-6), key
    done = int(stop_at.rsplit(".", 1)[1])
    expected = [r for r in read_log(out) if (r["epoch"], r["iteration"]) > (0, done)]
    got = read_log(resumed)
    assert [(r["epoch"], r["iteration"]) for r in got] == \
        [(r["epoch"], r["iteration"]) for r in expected]
    for a, b in zip(got, expected):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-6)
        assert a["lr"] == pytest.approx(b["lr"], rel=1e-9)


def test_validate_only_mode_reports_both_metrics(straight_run, dpr_files, capsys) -> None:
    out, _ = straight_run
    _, dev = dpr_files
    rc = train_dense_encoder.main(["--encoder_model_type", "hf_roberta", "--model_file",
                                   str(out / "dpr_biencoder.1.8"), "--dev_file", str(dev),
                                   "--dev_batch_size", "4"])
    assert rc == 0
    err = capsys.readouterr().err
    assert "NLL validation: loss" in err and "Average-rank validation" in err


def _four_questions(tmp_path: Path, train: Path) -> Path:
    """The first 4 training questions (2 paragraphs, each the positive of 2 questions)."""
    small = tmp_path / "small.json"
    small.write_text(json.dumps(json.loads(train.read_text())[:4]), encoding="utf-8")
    return small


def _reference(model_folder: Path, train: Path):
    """Samples, tensorizer (length 40) and a dropout-free model to reproduce a run by hand."""
    tensorizer = build_tensorizer("hf_roberta", str(model_folder), sequence_length=40,
                                  do_lower_case=False)
    model = build_biencoder("hf_roberta", str(model_folder), dropout=float(NO_DROPOUT)).train()
    return load_samples(str(train)), tensorizer, model


def test_gradient_accumulation_equals_mean_of_micro_batch_losses(
        tmp_path: Path, nodrop_camembert: Path, dpr_files) -> None:
    # Given 4 questions, batches of 2 and 2 accumulation steps: one optimizer update
    train, _ = dpr_files
    small = _four_questions(tmp_path, train)
    out = tmp_path / "out"
    rc = train_dense_encoder.main([
        "--encoder_model_type", "hf_roberta", "--pretrained_model_cfg", str(nodrop_camembert),
        "--train_file", str(small), "--output_dir", str(out), "--batch_size", "2",
        "--gradient_accumulation_steps", "2", "--sequence_length", "40", "--num_train_epochs",
        "1", "--warmup_steps", "0", "--max_grad_norm", "0", "--learning_rate", "1e-2",
        "--seed", "3", "--dropout", NO_DROPOUT])
    assert rc == 0
    # When reproducing it by hand: mean of the two micro-batch losses, one AdamW step
    samples, tensorizer, model = _reference(nodrop_camembert, small)
    optimizer = build_optimizer(model, learning_rate=1e-2, weight_decay=0.0, eps=1e-8,
                                betas=(0.9, 0.999))
    for iteration in (1, 2):
        batch = reference_batch(samples, tensorizer, seed=3, epoch=0, iteration=iteration,
                                world_size=1, batch_size=2, num_hard=1, num_other=0)
        q, c = model(batch.question_ids, batch.question_mask, batch.ctx_ids, batch.ctx_mask)
        (inbatch_loss(q, c, batch.positive_idx, DistContext(), ctx_keys=batch.ctx_keys,
                      positive_keys=batch.positive_keys)[0] / 2).backward()
    optimizer.step()
    # Then the trained weights are the same
    trained = load_weights(out / "dpr_biencoder.0.2")
    for key, value in to_dpr_layout(model.state_dict()).items():
        assert torch.allclose(trained[key], value, atol=1e-6), key
    assert len(read_log(out)) == 2


BAD_RECORDS = {
    "malformed.json": ('[{"question": "q", "positive_ctxs": [', "invalid JSON at line 1"),
    "nopos.json": ('[{"question": "a", "positive_ctxs": [{"title": "", "text": "t"}]}, '
                   '{"question": "b", "hard_negative_ctxs": []}]',
                   "record 1 (question 'b'): missing 'positive_ctxs'"),
    "empty.json": ("", "file is empty"),
}


@pytest.mark.parametrize("name", sorted(BAD_RECORDS))
def test_bad_training_file_fails_with_clear_error_and_no_checkpoint(
        tmp_path: Path, tiny_camembert: Path, capsys, name: str) -> None:
    content, message = BAD_RECORDS[name]
    bad = tmp_path / name
    bad.write_text(content, encoding="utf-8")
    out = tmp_path / "out"
    rc = train_dense_encoder.main(["--encoder_model_type", "hf_roberta", "--pretrained_model_cfg",
                                   str(tiny_camembert), "--train_file", str(bad),
                                   "--output_dir", str(out)])
    err = capsys.readouterr().err
    assert rc == 1
    assert f"{bad}" in err and message in err
    assert "Traceback" not in err
    assert _checkpoints(out) == []


@pytest.mark.parametrize("extra,message,code", [
    (["--train_file", "{tmp}/nothing*.json"], "no file matches", 1),
    (["--train_file", "{train}", "--train_files_upsample_rates", "[1, 2]"],
     "has 2 rates but the train files expand to 1", 1),
    (["--train_file", "{train}", "--encoder_model_type", "hf_gpt"], "unsupported model type", 2),
    (["--train_file", "{train}", "--gradient_accumulation_steps", "0"],
     "--gradient_accumulation_steps must be >= 1", 2),
    (["--train_file", "{train}", "--model_file", "{tmp}/missing_ckpt"], "does not exist", 1),
])
def test_bad_arguments_fail_with_clear_error_and_no_checkpoint(
        tmp_path: Path, tiny_camembert: Path, dpr_files, capsys, extra, message, code) -> None:
    train, _ = dpr_files
    out = tmp_path / "out"
    argv = ["--encoder_model_type", "hf_roberta", "--pretrained_model_cfg", str(tiny_camembert),
            "--output_dir", str(out)]
    argv += [a.format(tmp=tmp_path, train=train) for a in extra]
    assert train_dense_encoder.main(argv) == code
    assert message in capsys.readouterr().err
    assert _checkpoints(out) == []


@pytest.mark.parametrize("keep", [False, True])
def test_duplicate_positives_are_masked_unless_keep_duplicate_positives(
        tmp_path: Path, nodrop_camembert: Path, dpr_files, keep: bool) -> None:
    # Given 4 questions on 2 paragraphs (two questions share each positive), one batch
    train, _ = dpr_files
    small = _four_questions(tmp_path, train)
    out = tmp_path / "out"
    flag = ["--keep_duplicate_positives"] if keep else []
    # When training one step, with or without the flag
    rc = train_dense_encoder.main([
        "--encoder_model_type", "hf_roberta", "--pretrained_model_cfg", str(nodrop_camembert),
        "--train_file", str(small), "--output_dir", str(out), "--batch_size", "4",
        "--sequence_length", "40", "--num_train_epochs", "1", "--seed", "3",
        "--dropout", NO_DROPOUT, *flag])
    assert rc == 0
    # Then the logged loss is the masked loss by default, DPR's exact loss with the flag
    samples, tensorizer, model = _reference(nodrop_camembert, small)
    batch = reference_batch(samples, tensorizer, seed=3, epoch=0, iteration=1, world_size=1,
                            batch_size=4, num_hard=1, num_other=0)
    q, c = model(batch.question_ids, batch.question_mask, batch.ctx_ids, batch.ctx_mask)
    dpr = inbatch_loss(q, c, batch.positive_idx, DistContext())
    masked = inbatch_loss(q, c, batch.positive_idx, DistContext(), ctx_keys=batch.ctx_keys,
                          positive_keys=batch.positive_keys)
    assert masked.masked >= 2 and abs(masked.loss.item() - dpr.loss.item()) > 1e-4
    (step,) = read_log(out)
    expected = dpr if keep else masked
    assert step["loss"] == pytest.approx(expected.loss.item(), abs=1e-6)
    assert (step["correct"], step["masked"]) == (int(expected.correct), expected.masked)


def test_ignore_checkpoint_flags_start_a_new_run_from_the_checkpoint_weights(
        tmp_path: Path, straight_run) -> None:
    # Given a finished two-epoch run
    out, args = straight_run
    finished = out / "dpr_biencoder.1.8"
    # When a new run starts from its weights without its progress, optimizer and schedule
    second = tmp_path / "second"
    assert train_dense_encoder.main([
        *args, "--output_dir", str(second), "--model_file", str(finished),
        "--ignore_checkpoint_offset", "--ignore_checkpoint_optimizer",
        "--ignore_checkpoint_lr"]) == 0
    # Then it trains the full number of epochs again, with the schedule of a fresh run
    assert _checkpoints(second) == _checkpoints(out)
    fresh, again = read_log(out), read_log(second)
    assert [(r["epoch"], r["iteration"]) for r in again] == \
        [(r["epoch"], r["iteration"]) for r in fresh]
    assert [r["lr"] for r in again] == pytest.approx([r["lr"] for r in fresh])
    # And it started from the finished weights, not from the pretrained model
    assert again[0]["loss"] != pytest.approx(fresh[0]["loss"], abs=1e-6)
    start, end = load_weights(finished), load_weights(second / "dpr_biencoder.1.8")
    assert any(not torch.allclose(start[k], end[k]) for k in start)


def test_without_ignore_flags_a_finished_checkpoint_has_nothing_left_to_train(
        tmp_path: Path, straight_run) -> None:
    out, args = straight_run
    second = tmp_path / "second"
    assert train_dense_encoder.main([*args, "--output_dir", str(second), "--model_file",
                                     str(out / "dpr_biencoder.1.8")]) == 0
    assert _checkpoints(second) == []


def test_the_seed_makes_a_fresh_model_repeatable(tmp_path: Path, tiny_camembert: Path,
                                                 dpr_files) -> None:
    # Given one-update runs of a model with a projection layer (initialised at random), twice
    # with --seed 3 and once with --seed 4, in this one process (global generators moved on)
    train, _ = dpr_files

    def trained(seed: str, name: str) -> dict[str, torch.Tensor]:
        out = tmp_path / name
        assert train_dense_encoder.main(tiny_run_args(
            tiny_camembert, train, out, "--batch_size", "32", "--sequence_length", "32",
            "--num_train_epochs", "1", "--projection_dim", "8", "--seed", seed)) == 0
        (checkpoint,) = out.glob("dpr_biencoder.*")
        return torch.load(checkpoint, weights_only=True)["model_dict"]

    first, again, other = trained("3", "a"), trained("3", "b"), trained("4", "c")
    # Then the same seed gives the same weights, another seed other ones
    key = "question_model.encode_proj.weight"
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not torch.equal(first[key], other[key])
