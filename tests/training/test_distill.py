"""Distillation (issue 26, item 4): data_prep.score_candidates writes a reranker's scores of
every training passage, train_dense_encoder.py --distill_scores adds their KL term."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import read_log

import train_dense_encoder
import train_reranker
from data_prep import score_candidates
from dpr.data.records import load_samples
from dpr.data.teacher import (
    check_teacher_scores,
    read_teacher_scores,
    sample_passages,
    teacher_column,
    teacher_summary,
    write_teacher_scores,
)
from dpr.inference import load_reranker
from dpr.utils.errors import InputError

NO_DROPOUT = "1e-12"


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory, dpr_files) -> Path:
    """8 training questions (3 hard + 1 other negative each)."""
    path = tmp_path_factory.mktemp("distill") / "train.json"
    records = json.loads(dpr_files[0].read_text(encoding="utf-8"))[:8]
    path.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def teacher_file(tmp_path_factory: pytest.TempPathFactory, toy: Path,
                 reranker_checkpoint: Path) -> Path:
    out = tmp_path_factory.mktemp("teacher") / "teacher.jsonl"
    assert score_candidates.main(["--reranker", str(reranker_checkpoint), "--train_file",
                                  str(toy), "--out_file", str(out), "--quiet"]) == 0
    return out


def test_every_passage_of_every_question_is_scored_as_the_reranker_scores_it(
        toy: Path, teacher_file: Path, reranker_checkpoint: Path) -> None:
    # Given the teacher file of 8 questions x (1 positive + 3 hard + 1 other negative)
    samples = load_samples(str(toy))
    lines = teacher_file.read_text(encoding="utf-8").splitlines()
    table = read_teacher_scores(str(teacher_file))
    # Then it has one line per question and a score per passage key of each
    assert len(lines) == len({s.question for s in samples}) == len(table)
    check_teacher_scores(table, samples, str(teacher_file))
    # And each score is the reranker's own score of that (question, passage) pair
    reranker = load_reranker(reranker_checkpoint)
    for sample in samples[:3]:
        passages = sample_passages(sample)
        assert len(passages) == 5
        expected = reranker.score_pairs([(sample.question, (p.title, p.text))
                                         for p in passages])
        got = [table[sample.question][p.key] for p in passages]
        assert got == pytest.approx(expected.tolist(), abs=1e-5)
        assert len(set(got)) > 1  # the random head tells passages apart


def test_teacher_column_gives_each_batch_column_its_own_questions_score() -> None:
    # Given two questions whose blocks (columns 0-1 and 2-4) share passage key 7
    table = {"q1": {7: 1.0, 8: 2.0}, "q2": {7: -1.0, 9: 3.0, 10: 4.0}}
    column = teacher_column(table, ["q1", "q2"], torch.tensor([7, 8, 9, 7, 10]),
                            torch.tensor([0, 2]))
    # Then the shared passage has each question's own score
    assert column.tolist() == [1.0, 2.0, 3.0, -1.0, 4.0]


def test_teacher_summary_counts_questions_ranked_right_and_negatives_above_the_positive(
        toy: Path, sharp_teacher: Path) -> None:
    # Given the sharp teacher (positive 4, negatives -2..1), then one negative raised to 5
    samples = load_samples(str(toy))
    table = read_teacher_scores(str(sharp_teacher))
    assert teacher_summary(table, samples) == (
        "the positive scored above every negative for 8 of 8 questions (100.0 %); 0 of 32 "
        "negatives (0.00 %) scored above their question's positive")
    table[samples[0].question][sample_passages(samples[0])[2].key] = 5.0
    assert teacher_summary(table, samples).startswith("the positive scored above every "
                                                      "negative for 7 of 8 questions (87.5 %); "
                                                      "1 of 32 negatives (3.12 %)")


def _run(model: Path, train: Path, out: Path, *extra: str) -> int:
    """One step of 8 questions x (1 positive + 2 hard negatives), no dropout, no update."""
    return train_dense_encoder.main([
        "--encoder_model_type", "hf_roberta", "--pretrained_model_cfg", str(model),
        "--train_file", str(train), "--output_dir", str(out), "--batch_size", "8",
        "--hard_negatives", "2", "--sequence_length", "48", "--num_train_epochs", "1",
        "--warmup_steps", "0", "--dropout", NO_DROPOUT, "--seed", "3", *extra])


@pytest.fixture(scope="module")
def sharp_teacher(tmp_path_factory: pytest.TempPathFactory, toy: Path) -> Path:
    """A teacher file for `toy` whose scores differ by units (the tiny reranker's differ by
    1e-4: a uniform teacher, next to which the tiny bi-encoder's KL is 1e-9): the positive
    4, the negatives -2, -1, 0, 1 in file order."""
    path = tmp_path_factory.mktemp("sharp") / "teacher.jsonl"
    write_teacher_scores(path, [
        (s.question, {p.key: 4.0 if i == 0 else float(i - 3)
                      for i, p in enumerate(sample_passages(s))})
        for s in load_samples(str(toy))])
    return path


def test_the_distillation_term_is_added_with_its_weight_on_both_step_paths(
        tmp_path: Path, nodrop_camembert: Path, toy: Path, sharp_teacher: Path) -> None:
    # Given the first step's loss without the teacher and with weights 0, 1 and 3
    teacher_file, losses = sharp_teacher, {}
    for name, extra in {"none": [], "w0": ["--distill_weight", "0"], "w1": [],
                        "w3": ["--distill_weight", "3"],
                        "w3_cached": ["--distill_weight", "3", "--grad_cache_chunk_size", "4"]
                        }.items():
        flags = [] if name == "none" else ["--distill_scores", str(teacher_file), *extra]
        assert _run(nodrop_camembert, toy, tmp_path / name, *flags) == 0
        losses[name] = read_log(tmp_path / name)[0]["loss"]
    # Then weight 0 is the plain loss, and the term grows linearly with the weight
    term = losses["w1"] - losses["none"]
    assert losses["w0"] == pytest.approx(losses["none"], abs=1e-6)
    assert term > 1e-4
    assert losses["w3"] - losses["none"] == pytest.approx(3 * term, rel=1e-3)
    # And gradient caching computes the same loss
    assert losses["w3_cached"] == pytest.approx(losses["w3"], rel=1e-5)
    # And the run's config records the teacher, read back by --config
    config = json.loads((tmp_path / "w3" / "training_config.json").read_text(encoding="utf-8"))
    assert config["distill_scores"] == str(teacher_file) and config["distill_weight"] == 3


def test_a_teacher_file_of_other_training_data_is_a_one_line_error_before_any_checkpoint(
        tmp_path: Path, nodrop_camembert: Path, toy: Path, teacher_file: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    # Given the teacher file without its last question
    partial = tmp_path / "partial.jsonl"
    lines = teacher_file.read_text(encoding="utf-8").splitlines()
    partial.write_text("\n".join(lines[:-1]) + "\n", encoding="utf-8")
    # When training with it
    status = _run(nodrop_camembert, toy, tmp_path / "out", "--distill_scores", str(partial))
    # Then it fails with status 1, naming the flag, the file and the question, and
    # says how to make the right file; nothing was written
    assert status == 1
    message = caplog.records[-1].getMessage()
    assert message.startswith(f"--distill_scores {partial}: no line for question ")
    assert "python -m data_prep.score_candidates" in message
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("line, expected", [
    ("not json", "line 1: invalid JSON Lines record"),
    ('{"question": "q", "scores": [1, 2]}', "line 1: expected {\"question\""),
    ('{"question": "q", "scores": {"abc": 1}}', "passage key 'abc' with score 1"),
    ('{"question": "q", "scores": {"12": NaN}}', "passage key 12: score nan is not finite"),
])
def test_malformed_teacher_files_name_the_line(tmp_path: Path, line: str, expected: str) -> None:
    path = tmp_path / "teacher.jsonl"
    path.write_text(line + "\n", encoding="utf-8")
    with pytest.raises(InputError, match=r".*") as err:
        read_teacher_scores(str(path))
    assert str(err.value).startswith(f"{path}: ") and expected in str(err.value)


def test_scoring_with_a_bi_encoder_or_into_a_folder_is_a_one_line_error(
        tmp_path: Path, toy: Path, checkpoint: Path, reranker_checkpoint: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    # A bi-encoder checkpoint is not a reranker: status 1, nothing written
    out = tmp_path / "teacher.jsonl"
    assert score_candidates.main(["--reranker", str(checkpoint), "--train_file", str(toy),
                                  "--out_file", str(out), "--quiet"]) == 1
    assert "reranker" in caplog.records[-1].getMessage() and not out.exists()
    # An output path that is a folder is refused before any work: status 2
    assert score_candidates.main(["--reranker", str(reranker_checkpoint), "--train_file",
                                  str(toy), "--out_file", str(tmp_path), "--quiet"]) == 2
    assert "--out_file" in caplog.records[-1].getMessage()


def test_the_reranker_has_no_distillation_flags(capsys: pytest.CaptureFixture) -> None:
    assert train_reranker.main(["--distill_scores", "x.jsonl"]) == 2
    assert "unrecognized arguments: --distill_scores" in capsys.readouterr().err
