from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import parse_config

from dpr.training.config import parse_adam_betas

# Every flag of DPR's train_dense_encoder.py with its default (UPSTREAM_CONTRACT.md §2).
DPR_FLAGS = {
    "pretrained_model_cfg": None, "encoder_model_type": "hf_bert", "pretrained_file": None,
    "model_file": None, "projection_dim": 0, "sequence_length": 512, "no_cuda": False,
    "local_rank": -1, "fp16": False, "fp16_opt_level": "O1", "train_file": None,
    "dev_file": None, "batch_size": 2, "dev_batch_size": 4, "seed": 0, "adam_eps": 1e-8,
    "adam_betas": "(0.9, 0.999)", "max_grad_norm": 1.0, "log_batch_step": 100,
    "train_rolling_loss_step": 100, "weight_decay": 0.0, "learning_rate": 1e-5,
    "warmup_steps": 100, "dropout": 0.1, "gradient_accumulation_steps": 1,
    "num_train_epochs": 3.0, "do_lower_case": False, "eval_per_epoch": 1,
    "global_loss_buf_sz": 150000, "fix_ctx_encoder": False, "shuffle_positive_ctx": False,
    "output_dir": None, "hard_negatives": 1, "other_negatives": 0,
    "train_files_upsample_rates": None, "val_av_rank_start_epoch": 10000,
    "val_av_rank_hard_neg": 30, "val_av_rank_other_neg": 30, "val_av_rank_bsz": 128,
    "val_av_rank_max_qs": 10000, "checkpoint_file_name": "dpr_biencoder",
}


def test_config_has_every_dpr_flag_with_its_default() -> None:
    values = parse_config(["--encoder_model_type", "hf_bert"]).to_dict()
    for name, default in DPR_FLAGS.items():
        assert values[name] == default, name
        assert type(values[name]) is type(default), name
    assert set(values) - set(DPR_FLAGS) == {
        "allow_unsafe_pickle", "pad_to_max", "pad_to_multiple_of", "amp_dtype",
        "gradient_checkpointing", "grad_cache_chunk_size", "length_bucket_size", "compile",
        "keep_duplicate_positives", "ignore_checkpoint_offset", "ignore_checkpoint_optimizer",
        "ignore_checkpoint_lr", "keep_last_checkpoints", "distributed_timeout_minutes",
        "pooling", "similarity", "temperature", "query_prefix", "passage_prefix",
        "passage_format", "shared_encoder", "freeze_embeddings", "distill_scores",
        "distill_weight"}


@pytest.mark.parametrize("flags,message", [
    (["--similarity", "cosine", "--temperature", "0"], "--temperature must be a positive"),
    (["--temperature", "-1"], "--temperature must be a positive"),
    (["--pooling", "max"], "--pooling: invalid choice: 'max' (choose from 'cls', 'mean')"),
    (["--similarity", "l2"], "--similarity: invalid choice: 'l2' (choose from 'dot', 'cosine')"),
    (["--passage_format", "text"], "--passage_format: invalid choice: 'text' (choose from "
     "'pair', 'joined')"),
    (["--shared_encoder", "--fix_ctx_encoder"], "cannot be used with --shared_encoder"),
])
def test_recipe_flags_refuse_bad_values(flags: list[str], message: str, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        parse_config(["--encoder_model_type", "hf_bert", *flags])
    assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_recipe_flags_are_the_recipes_and_cosine_needs_no_temperature() -> None:
    # Given the training parser and the one declaration of the recipe
    import dataclasses

    from dpr.recipe import RECIPE_KEYS, Recipe
    from dpr.training.command_line import build_parser

    options = build_parser()._option_string_actions
    # Then every recipe field is a flag with the recipe's default and help
    for f in dataclasses.fields(Recipe):
        assert options[f"--{f.name}"].default == f.default, f.name
        assert options[f"--{f.name}"].help == f.metadata["help"].replace("%", "%%")
    assert set(RECIPE_KEYS) == {f.name for f in dataclasses.fields(Recipe)}
    # And --similarity cosine alone parses: the temperature defaults when training starts
    cfg = parse_config(["--encoder_model_type", "hf_bert", "--similarity", "cosine"])
    assert cfg.model.temperature is None and cfg.model.score_temperature == 0.05


def test_num_train_epochs_is_a_float_flag_and_epochs_truncate() -> None:
    cfg = parse_config(["--encoder_model_type", "hf_bert", "--num_train_epochs", "2.7"])
    assert cfg.train.num_train_epochs == 2.7 and cfg.train.epochs == 2


@pytest.mark.parametrize("flag", ["--local_rank=1", "--local-rank=1"])
def test_local_rank_accepts_both_spellings(flag: str) -> None:
    assert parse_config(["--encoder_model_type", "hf_bert", flag]).train.local_rank == 1


def test_config_file_then_command_line_overrides(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"encoder_model_type": "hf_roberta", "batch_size": 8,
                                "do_lower_case": True}))
    cfg = parse_config(["--config", str(path), "--batch_size", "16"])
    assert cfg.model.encoder_model_type == "hf_roberta"
    assert cfg.data.batch_size == 16 and cfg.model.do_lower_case is True


def test_config_file_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    # Given a --config file saved with a UTF-8 byte-order mark
    path = tmp_path / "c.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"encoder_model_type": "hf_roberta",
                                                      "batch_size": 8}).encode())
    # When parsing it
    cfg = parse_config(["--config", str(path)])
    # Then its values apply
    assert cfg.model.encoder_model_type == "hf_roberta" and cfg.data.batch_size == 8


def test_config_file_that_is_not_utf8_is_a_usage_error(tmp_path: Path, capsys) -> None:
    # Given a --config file in Latin-1
    path = tmp_path / "c.json"
    path.write_bytes('{"output_dir": "d\xe9j\xe0"}'.encode("latin-1"))
    # Then parsing stops naming the flag and the file (it was a UnicodeDecodeError traceback)
    with pytest.raises(SystemExit):
        parse_config(["--config", str(path)])
    assert f"--config {path}" in capsys.readouterr().err


def test_config_file_with_unknown_key_is_refused(tmp_path: Path, capsys) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"batch_sz": 8}))
    with pytest.raises(SystemExit):
        parse_config(["--config", str(path)])
    assert "unknown keys ['batch_sz']" in capsys.readouterr().err


@pytest.mark.parametrize("argv,message", [
    (["--encoder_model_type", "pytext_bert"], "pytext_bert is not supported"),
    ([], "--encoder_model_type is required"),
    (["--encoder_model_type", "hf_bert", "--adam_betas", "__import__('os')"], "--adam_betas"),
    (["--encoder_model_type", "hf_bert", "--batch_size", "0"], "--batch_size must be >= 1"),
    (["--encoder_model_type", "hf_bert", "--fp16_opt_level", "O7"], "--fp16_opt_level"),
])
def test_invalid_flags_name_the_flag(argv: list[str], message: str, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        parse_config(argv)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_adam_betas_is_parsed_as_a_literal() -> None:
    assert parse_adam_betas("(0.9, 0.98)") == (0.9, 0.98)
    with pytest.raises(ValueError):
        parse_adam_betas("(0.9,)")


@pytest.mark.parametrize("values,message", [
    ({"batch_size": None}, "--batch_size: expected int, got null"),
    ({"hard_negatives": 1.5}, "--hard_negatives: expected int, got 1.5"),
    ({"do_lower_case": "yes"}, "--do_lower_case: expected bool, got \"yes\""),
    ({"sequence_length": True}, "--sequence_length: expected int, got true"),
    ({"learning_rate": [1e-5]}, "--learning_rate: expected int or float, got [1e-05]"),
    ({"pretrained_model_cfg": 3}, "--pretrained_model_cfg: expected str or null, got 3"),
    ({"val_av_rank_other_neg": -1}, "--val_av_rank_other_neg must be >= 0"),
])
def test_config_file_values_are_checked_by_type(tmp_path: Path, capsys, values: dict,
                                                message: str) -> None:
    # Given a --config file with a value of the wrong type (argparse does not convert it)
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"encoder_model_type": "hf_bert", **values}))
    # Then parsing ends with exit 2 and one message naming the flag
    with pytest.raises(SystemExit) as exit_:
        parse_config(["--config", str(path)])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("flag,value", [("--learning_rate", "inf"), ("--dropout", "nan"),
                                        ("--num_train_epochs", "nan"), ("--adam_eps", "-1"),
                                        ("--val_av_rank_start_epoch", "-1")])
def test_non_finite_or_negative_numbers_are_refused(flag: str, value: str, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        parse_config(["--encoder_model_type", "hf_bert", flag, value])
    assert exit_.value.code == 2
    assert flag in capsys.readouterr().err
