"""Several DPR models in one evaluation, normalised fusion and requested sign tests
(``dpr.evaluation.options`` and ``python -m dpr.evaluate`` with two tiny models)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import train_tiny_checkpoint

import train_dense_encoder
from dpr import evaluate
from dpr.evaluation.options import (
    DprModelSpec,
    fusion_model,
    parse_models,
    parse_pairs,
    resolve_retrievers,
)
from dpr.evaluation.report import sign_test
from dpr.inference import load_encoder
from dpr.utils.errors import InputError, UsageError

# ------------------------------------------------------------------------- flag parsing


def test_dpr_models_accept_labels_repeats_and_comma_lists() -> None:
    models = parse_models(["r1=a/ckpt.0", "r2=b/hf,r3=c=d"])
    assert [(m.name, m.path) for m in models] == [("dpr:r1", "a/ckpt.0"), ("dpr:r2", "b/hf"),
                                                  ("dpr:r3", "c=d")]
    # one unlabelled path keeps the historical retriever name "dpr"
    assert parse_models(["out/dpr_biencoder.0.3"]) == (DprModelSpec("out/dpr_biencoder.0.3"),)
    assert parse_models(None) == ()


@pytest.mark.parametrize("values, message", [
    (["a", "b"], "give every model a label"),
    (["x=a", "b"], "give every model a label"),
    (["x=a,x=b"], "used twice"),
])
def test_dpr_models_refuse_ambiguous_names(values: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_models(values)


def test_dpr_in_retrievers_stands_for_every_model() -> None:
    models = parse_models(["r1=a", "r2=b"])
    assert resolve_retrievers("bm25,dpr,fusion", models) == ("bm25", "dpr:r1", "dpr:r2",
                                                              "fusion")
    assert resolve_retrievers("dpr:r2,hybrid", models) == ("dpr:r2", "hybrid")
    with pytest.raises(UsageError, match="listed twice"):
        resolve_retrievers("dpr,dpr:r1", models)
    with pytest.raises(UsageError, match="unknown"):
        resolve_retrievers("dpr:r9", models)
    with pytest.raises(UsageError, match="need --dpr_model"):
        resolve_retrievers("bm25,fusion", ())


def test_fusion_model_defaults_to_the_last_and_accepts_label_or_name() -> None:
    models = parse_models(["r1=a", "r2=b"])
    assert fusion_model(models, None).label == "r2"
    assert fusion_model(models, "r1").label == "r1"
    assert fusion_model(models, "dpr:r1").label == "r1"
    with pytest.raises(UsageError, match="no --dpr_model has this label"):
        fusion_model(models, "r3")


def test_pairs_name_evaluated_retrievers() -> None:
    names = ("bm25", "dpr:r1", "dpr:r2", "fusion")
    assert parse_pairs("dpr:r2>dpr:r1, fusion > bm25", names) == (("dpr:r2", "dpr:r1"),
                                                                  ("fusion", "bm25"))
    assert parse_pairs(None, names) == ()
    for bad in ("fusion", "fusion>fusion", "hybrid>bm25"):
        with pytest.raises(UsageError, match="--pairs"):
            parse_pairs(bad, names)


# ------------------------------------------------------------------- CLI, two tiny models


@pytest.fixture(scope="module")
def bert_checkpoint(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path,
                    dpr_files) -> Path:
    """A second tiny model: a BERT bi-encoder trained for two steps."""
    return train_tiny_checkpoint(tmp_path_factory.mktemp("train_bert"), "hf_bert", tiny_bert,
                                 dpr_files[0], records=slice(8, 24))


def run(capsys: pytest.CaptureFixture[str], out: Path, corpus: tuple[Path, Path],
        *argv: str) -> tuple[dict[str, Any], str]:
    code = evaluate.main(["--quiet", "--no_cuda", "--ctx_file", str(corpus[0]), "--qa_file",
                          str(corpus[1]), "--output_dir", str(out), *argv])
    printed = capsys.readouterr().out
    assert code == 0, printed
    return json.loads((out / "results.json").read_text(encoding="utf-8")), printed


def test_two_models_fusions_and_requested_pairs(
        tmp_path: Path, corpus: tuple[Path, Path], checkpoint: Path, bert_checkpoint: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    # Given two tiny models labelled round1 and round2
    models = ["--dpr_model", f"round1={checkpoint}", "--dpr_model", f"round2={bert_checkpoint}"]
    # When evaluating both, the fusions (dense side: the last model) and three pairs
    report, printed = run(capsys, tmp_path / "both", corpus, *models, "--retrievers",
                          "bm25,dpr,hybrid,fusion", "--pairs",
                          "dpr:round2>dpr:round1,hybrid>bm25,fusion>bm25")
    # Then each model is a retriever of its own and the fusions use round2
    results = report["results"]
    assert list(results) == ["bm25", "dpr:round1", "dpr:round2", "hybrid", "fusion"]
    assert report["models"]["dpr_models"] == {"dpr:round1": str(checkpoint),
                                              "dpr:round2": str(bert_checkpoint)}
    assert report["fusion"]["dpr"] == "dpr:round2"
    assert report["fusion"]["normalised"] == {"method": "minmax", "dense_weight": 0.5,
                                              "source": "default"}
    # And each pair is sign-tested at top-1 and top-10 (the corpus has 17 passages)
    assert [(p["first"], p["second"]) for p in report["pairs"]] == [
        ("dpr:round2", "dpr:round1"), ("hybrid", "bm25"), ("fusion", "bm25")]
    for pair in report["pairs"]:
        assert set(pair["at"]) == {"top-1", "top-10"}
        for at, row in pair["at"].items():
            k = int(at.split("-")[1])
            first = [r is not None and r < k for r in results[pair["first"]]["first_hit_rank"]]
            second = [r is not None and r < k
                      for r in results[pair["second"]]["first_hit_rank"]]
            assert row["wins"] == sum(a and not b for a, b in zip(first, second))
            assert row["losses"] == sum(b and not a for a, b in zip(first, second))
            assert row["p_value"] == sign_test(row["wins"], row["losses"])
    assert "Requested pairs" in printed and "dpr:round2 > dpr:round1?  top-1" in printed
    assert "fusion: minmax normalisation, dense weight 0.5 (default, untuned)" in printed
    assert "dense side of the fusions: dpr:round2" in printed

    # And the single-model command line ranks round1 exactly as in the joint run
    single, _ = run(capsys, tmp_path / "single", corpus, "--dpr_model", str(checkpoint),
                    "--retrievers", "dpr,hybrid")
    assert single["results"]["dpr"]["first_hit_rank"] == results["dpr:round1"]["first_hit_rank"]
    # And --fusion_dpr round1 makes the fusions use round1 (as the single-model run does)
    chosen, _ = run(capsys, tmp_path / "chosen", corpus, "--dpr_model",
                    f"round1={checkpoint},round2={bert_checkpoint}", "--fusion_dpr", "round1",
                    "--retrievers", "hybrid")
    assert chosen["fusion"]["dpr"] == "dpr:round1"
    assert chosen["results"]["hybrid"]["first_hit_rank"] == \
        single["results"]["hybrid"]["first_hit_rank"]


def test_fusion_weight_zero_ranks_as_bm25(tmp_path: Path, corpus: tuple[Path, Path],
                                          checkpoint: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    # Given the dense side weighted 0 (for both normalisations)
    for method in ("minmax", "zscore"):
        report, printed = run(capsys, tmp_path / method, corpus, "--dpr_model",
                              str(checkpoint), "--retrievers", "bm25,fusion", "--fusion_weight",
                              "0", "--fusion_method", method)
        # Then fusion is BM25's ranking, and the report says the flags chose the setting
        results = report["results"]
        assert results["fusion"]["first_hit_rank"] == results["bm25"]["first_hit_rank"]
        assert report["fusion"]["normalised"] == {"method": method, "dense_weight": 0.0,
                                                  "source": "flags"}
        assert "(set by flags)" in printed


def test_fusion_tuned_on_a_tuning_file(tmp_path: Path, corpus: tuple[Path, Path],
                                       checkpoint: Path, dpr_files,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    # Given a tuning file (29 training questions) and both linear and normalised fusion
    report, printed = run(capsys, tmp_path, corpus, "--dpr_model", str(checkpoint),
                          "--retrievers", "bm25,hybrid,fusion", "--tune_lambda_on",
                          str(dpr_files[0]))
    # Then method and weight are the best of the 2 x 21 grid, and λ the best of its grid
    tuning, setting = report["fusion"]["tuning"], report["fusion"]["normalised"]
    assert tuning["questions"] == 29 and len(tuning["fusion_grid"]) == 42
    chosen = tuning["fusion_grid"][f"{setting['method']}:{setting['dense_weight']:g}"]
    assert setting["source"] == "tuned" and chosen == max(tuning["fusion_grid"].values())
    assert tuning["grid"][f"{report['fusion']['lambda']:g}"] == max(tuning["grid"].values())
    assert f"dense weight {setting['dense_weight']:g} (tuned on {dpr_files[0]})" in printed


def test_tune_hybrid_only_keeps_the_default_fusion_and_records_its_grid(
        tmp_path: Path, corpus: tuple[Path, Path], checkpoint: Path, dpr_files,
        capsys: pytest.CaptureFixture[str]) -> None:
    # Given tuning restricted to the hybrid
    report, _ = run(capsys, tmp_path, corpus, "--dpr_model", str(checkpoint),
                    "--retrievers", "bm25,hybrid,fusion", "--tune_lambda_on",
                    str(dpr_files[0]), "--tune", "hybrid")
    tuning = report["fusion"]["tuning"]
    # Then the hybrid takes the tuned λ, fusion keeps its default setting untuned
    assert report["fusion"]["lambda"] == tuning["best_lambda"]
    assert report["fusion"]["normalised"]["source"] == "default"
    assert report["fusion"]["normalised"]["dense_weight"] == 0.5
    # And the fusion grid measured on the tuning file is still recorded, with its best
    best = tuning["best_fusion"]
    assert tuning["fusion_grid"][f"{best['method']}:{best['dense_weight']:g}"] == \
        max(tuning["fusion_grid"].values())
    assert tuning["applied_to"] == ["hybrid"]


@pytest.mark.parametrize("extra, message", [
    (["--dpr_model", "a", "--dpr_model", "b"], "give every model a label"),
    (["--dpr_model", "r1=a", "--fusion_dpr", "r2"], "no --dpr_model has this label"),
    (["--dpr_model", "a", "--pairs", "sbert>bm25"], "not evaluated"),
    (["--dpr_model", "a", "--retrievers", "bm25,fusion", "--fusion_weight", "1.5"],
     "--fusion_weight must be in [0, 1]"),
    (["--dpr_model", "a", "--tune", "rrf"], "not tunable"),
])
def test_bad_model_and_pair_flags_exit_2(extra: list[str], message: str,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert evaluate.main(["--ctx_file", "p.tsv", "--qa_file", "q.tsv", *extra]) == 2
    assert message in capsys.readouterr().err


# ------------------------------------------- a plain encoder folder: the untrained baseline


def test_plain_encoder_folder_is_the_model_training_starts_from(
        tmp_path: Path, corpus: tuple[Path, Path], tiny_bert: Path, dpr_files,
        capsys: pytest.CaptureFixture[str]) -> None:
    # Given a checkpoint "trained" at learning rate 0: the pretrained weights, DPR's recipe
    out = tmp_path / "lr0"
    assert train_dense_encoder.main([
        "--encoder_model_type", "hf_bert", "--pretrained_model_cfg", str(tiny_bert),
        "--train_file", str(dpr_files[0]), "--output_dir", str(out), "--batch_size", "8",
        "--sequence_length", "64", "--num_train_epochs", "1", "--learning_rate", "0",
        "--do_lower_case", "--warmup_steps", "0"]) == 0
    (start,) = out.glob("dpr_biencoder.*")
    texts = ["Qui a écrit Les Misérables ?", "Où se jette la Loire ?"]
    cpu = torch.device("cpu")
    # When the plain folder is loaded with the same recipe
    plain = load_encoder(str(tiny_bert), {"do_lower_case": True, "sequence_length": 64},
                         device=cpu, batch_size=4)
    trained = load_encoder(str(start), {}, device=cpu, batch_size=4)
    # Then it encodes questions and passages as that checkpoint does
    np.testing.assert_allclose(plain.encode_questions(texts), trained.encode_questions(texts),
                               atol=1e-6)
    passages = list(zip(["Loire", ""], texts))
    np.testing.assert_allclose(plain.encode_passages(passages),
                               trained.encode_passages(passages), atol=1e-6)
    assert plain.description.startswith(f"untrained {tiny_bert} (cls pooling, dot")
    # And dpr.evaluate ranks both the same, the recipe coming from its flags
    report, _ = run(capsys, tmp_path / "eval", corpus, "--dpr_model", f"start={start}",
                    "--dpr_model", f"untuned={tiny_bert}", "--do_lower_case",
                    "--sequence_length", "64", "--retrievers", "dpr")
    results = report["results"]
    assert results["dpr:untuned"]["first_hit_rank"] == results["dpr:start"]["first_hit_rank"]
    # And without --do_lower_case the recipe differs (a cased text is encoded differently)
    cased = load_encoder(str(tiny_bert), {}, device=cpu, batch_size=4)
    assert not np.allclose(cased.encode_questions(["LOIRE"]), plain.encode_questions(["LOIRE"]))


def test_plain_folder_errors_name_the_folder(tmp_path: Path, tiny_bert: Path) -> None:
    tower = tmp_path / "question_encoder"
    shutil.copytree(tiny_bert, tower)
    config = json.loads((tower / "config.json").read_text(encoding="utf-8"))
    (tower / "config.json").write_text(json.dumps({**config, "dpr": {"do_lower_case": True}}))
    cpu = torch.device("cpu")
    with pytest.raises(InputError, match=r"question_encoder: one tower of a dpr2hf export"):
        load_encoder(str(tower), {}, device=cpu)
    gpt = tmp_path / "gpt"
    gpt.mkdir()
    (gpt / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(InputError, match=r"gpt: model_type 'gpt2' is not a DPR encoder"):
        load_encoder(str(gpt), {}, device=cpu)
    with pytest.raises(InputError, match=r"or a Hugging Face encoder folder \(config.json\)"):
        load_encoder(str(tmp_path), {}, device=cpu)
