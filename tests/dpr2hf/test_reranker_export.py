"""dpr2hf on a reranker checkpoint: a sentence-transformers `CrossEncoder` folder whose
`predict` gives the checkpoint's raw scores, whose card snippets compute them, and which
`load_reranker` reads as it reads the checkpoint; each kind refused where the other is
expected, in one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import exported_reranker, reranker_checkpoint, snippets

import generate_dense_embeddings
from dpr import evaluate
from dpr.inference import load_encoder, load_reranker
from dpr.recipe import Recipe
from dpr.utils.errors import InputError
from dpr.utils.logging import setup_logging
from dpr2hf.card import PASSAGE, QUESTION
from dpr2hf.cli import main
from dpr2hf.verify import cross_encoder_pair

# (question, (title, text)): accents, capitals, an untitled passage, spaces to strip, and a
# pair longer than the 32 tokens of the tiny recipes (truncated longest_first).
PAIRS = [("Où coule la Loire ?", ("Loire", "La Loire coule en France, de l'Ardèche à l'océan.")),
         ("QUI A ÉCRIT LES MISÉRABLES ?", ("", "  Victor Hugo, en 1862.  ")),
         ("  Où coule la Loire ?", ("Seine", "La Seine traverse Paris.")),
         ("Pourquoi la cathédrale " * 6, ("Notre-Dame de Paris", "Incendiée en 2019. " * 8)),
         (QUESTION, PASSAGE)]
# fixture, encoder type, pooling: a BERT-like reranker (cls) and an e5-like one (mean)
KINDS = {"bert": ("tiny_cased_bert", "hf_bert", "cls"), "e5": ("tiny_e5", "hf_bert", "mean")}


@pytest.fixture(scope="module")
def bert_export(tmp_path_factory: pytest.TempPathFactory, tiny_cased_bert: Path
                ) -> tuple[Path, Path]:
    """(checkpoint, CrossEncoder folder) of a tiny cased BERT reranker (cls pooling)."""
    return exported_reranker(tmp_path_factory.mktemp("rerank_export"), tiny_cased_bert,
                             "hf_bert", sequence_length=32)


@pytest.mark.parametrize("lower", [False, True], ids=["cased", "lower"])
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_cross_encoder_predict_and_card_snippets_give_the_checkpoints_scores(
        tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch,
        kind: str, lower: bool) -> None:
    from sentence_transformers import CrossEncoder

    # Given a reranker checkpoint of a BERT-like (cls) or e5-like (mean) model, with or
    # without --do_lower_case, exported with dpr2hf (--model_file form)
    fixture, encoder_type, pooling = KINDS[kind]
    recipe = Recipe(pooling=pooling, do_lower_case=lower, sequence_length=32)
    ckpt = reranker_checkpoint(tmp_path / "reranker.1.10", request.getfixturevalue(fixture),
                               encoder_type, recipe)
    assert main(["--model_file", str(ckpt), "--output_dir", str(tmp_path / "ce")]) == 0
    want = load_reranker(ckpt).score_pairs(PAIRS)
    assert len(set(np.round(want, 4))) == len(PAIRS)  # scores that tell the pairs apart
    # When sentence-transformers predicts on (question, f"{title} {text}") pairs
    got = CrossEncoder(str(tmp_path / "ce")).predict(
        [cross_encoder_pair(q, p) for q, p in PAIRS])
    # Then it gives the checkpoint's raw scores (no sigmoid)
    assert got.dtype == np.float32 and np.abs(got - want).max() <= 1e-4
    # And so does the folder read by the project's loader, with the checkpoint's recipe
    folder = load_reranker(tmp_path / "ce", batch_size=2)
    assert np.abs(folder.score_pairs(PAIRS) - want).max() <= 1e-4
    stored = Recipe.from_params(folder.params)
    assert (stored.pooling, folder.encoder.pooling, stored.do_lower_case,
            stored.sequence_length) == (pooling, pooling, lower, 32)
    assert folder.state is None and folder.description.startswith(f"reranker {tmp_path / 'ce'}")
    # And every snippet of the card, run as written beside the folder, computes them
    card = (tmp_path / "ce" / "README.md").read_text(encoding="utf-8")
    codes = snippets(card)
    assert len(codes) == 2 and f'"{tmp_path.joinpath("ce").name}"' in codes[0]
    monkeypatch.chdir(tmp_path)
    for code in codes:
        namespace: dict = {}
        exec(compile(code, "ce/README.md", "exec"), namespace)
        score = np.asarray(namespace["scores"], dtype=np.float32)
        assert score.shape == (1,) and abs(score[0] - want[-1]) <= 1e-4, code
    assert ("mean of the last hidden states" in card) == (pooling == "mean")
    assert ("lower-cases every text itself" in card) == lower


def test_folder_layout_and_card(bert_export: tuple[Path, Path]) -> None:
    import json

    # Given the export of a reranker checkpoint (positional form)
    ckpt, folder = bert_export
    # Then it is one CrossEncoder folder: transformer, pooling, a one-score Dense, identity
    modules = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
    assert [m["path"] for m in modules] == ["", "1_Pooling", "2_Dense"]
    settings = json.loads((folder / "config_sentence_transformers.json").read_text("utf-8"))
    assert settings["model_type"] == "CrossEncoder"
    assert settings["activation_fn"] == "torch.nn.modules.linear.Identity"
    dense = json.loads((folder / "2_Dense" / "config.json").read_text(encoding="utf-8"))
    assert (dense["out_features"], dense["module_output_name"]) == (1, "scores")
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    assert config["dpr"]["reranker"] is True and config["dpr"]["sequence_length"] == 32
    # And its card names the checkpoint and the raw score
    card = (folder / "README.md").read_text(encoding="utf-8")
    assert f"reranker checkpoint `{ckpt.name}`" in card and "raw score" in card
    assert not list(folder.parent.glob(".*staging*"))


def test_failed_verification_leaves_nothing(bert_export: tuple[Path, Path], tmp_path: Path,
                                            capsys) -> None:
    # Given a tolerance no export can meet
    ckpt, _ = bert_export
    # When exporting, Then exit 1, the scores' difference named, and nothing left behind
    assert main([str(ckpt), "--output_dir", str(tmp_path / "ce"), "--tolerance", "-1"]) == 1
    assert "scores differ from the checkpoint's" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_a_bi_encoder_export_or_another_folder_is_no_reranker(
        checkpoint: Path, tiny_cased_bert: Path, tmp_path: Path) -> None:
    # Given a bi-encoder's dpr2hf export, one of its towers, and a plain model folder
    assert main([str(checkpoint), "--output_dir", str(tmp_path / "hf")]) == 0
    for folder, what in ((tmp_path / "hf", "a dpr2hf bi-encoder export"),
                         (tmp_path / "hf" / "ctx_encoder",
                          "one tower of a dpr2hf bi-encoder export"),
                         (tiny_cased_bert, "no reranker folder"), (tmp_path, "no reranker")):
        # When one is given as a reranker, Then one error names it and what it is
        with pytest.raises(InputError, match=f"{folder}: {what}") as err:
            load_reranker(folder)
        assert len(str(err.value).splitlines()) == 1


def test_a_reranker_folder_is_no_bi_encoder(bert_export: tuple[Path, Path]) -> None:
    _, folder = bert_export
    with pytest.raises(InputError, match=f"{folder}: a reranker's CrossEncoder folder "
                       r"\(dpr2hf\), not a bi-encoder"):
        load_encoder(folder)


@pytest.mark.parametrize("tool", ["dpr2hf", "generate_dense_embeddings.py", "dpr.evaluate"])
def test_a_reranker_folder_given_to_a_bi_encoder_tool_is_one_error_line(
        tool: str, bert_export: tuple[Path, Path], corpus, tmp_path: Path, capsys,
        restore_root_logging) -> None:
    _, folder = bert_export
    argv = {"dpr2hf": (main, [str(folder), "--output_dir", str(tmp_path / "o")]),
            "generate_dense_embeddings.py": (generate_dense_embeddings.main, [
                "--model_file", str(folder), "--ctx_file", str(corpus[0]),
                "--out_file", str(tmp_path / "o"), "--no_cuda", "--quiet"]),
            "dpr.evaluate": (evaluate.main, [
                "--ctx_file", str(corpus[0]), "--qa_file", str(corpus[1]), "--retrievers",
                "dpr", "--dpr_model", str(folder), "--output_dir", str(tmp_path / "o"),
                "--quiet"])}
    run, args = argv[tool]
    setup_logging()
    # When the tool is given the reranker's folder as its model
    status = run(args)
    err = capsys.readouterr().err
    # Then it exits 1 with one error line naming the folder and what it is
    errors = [line for line in err.splitlines()
              if "[ERROR]" in line and "Nothing was written" not in line]
    assert status == 1, err
    assert len(errors) == 1 and f"{folder}: a reranker's CrossEncoder folder" in errors[0], \
        errors
    assert "Traceback" not in err
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]
