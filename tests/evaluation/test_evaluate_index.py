"""``dpr.evaluate --index``: the dense retriever searches an index folder built by
``python -m dpr.index build`` instead of encoding the corpus, with the same results for a Flat
index, its rows mapped to the passages by id, and one-line errors for a foreign index."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

import generate_dense_embeddings
from dpr import evaluate
from dpr.data.tsv import read_passages
from dpr.index import BuildOptions, build_from_glob
from dpr.inference import load_encoder
from dpr.utils.io import write_vectors

RETRIEVERS = "bm25,dpr,hybrid,rrf,fusion"


def _build(folder: Path, ids: list[str], vectors, *, shards: int = 2) -> Path:
    """Writes the vectors as embedding shards and builds a Flat index of them."""
    size = -(-len(ids) // shards)
    for k in range(shards):
        write_vectors(folder / "emb" / f"passages_{k}", ids[k * size:(k + 1) * size],
                         vectors[k * size:(k + 1) * size])
    build_from_glob(str(folder / "emb" / "passages_*"), folder / "idx",
                    BuildOptions(factory="Flat", quiet=True))
    return folder / "idx"


@pytest.fixture(scope="module")
def encoded(corpus: tuple[Path, Path], checkpoint: Path) -> tuple[list[str], object]:
    """The passage ids and the vectors the evaluation computes for them (batch size 32)."""
    passages = list(read_passages(corpus[0]).values())
    model = load_encoder(str(checkpoint), {}, device=torch.device("cpu"), batch_size=32)
    return ([p.passage_id for p in passages],
            model.encode_passages([(p.title, p.text) for p in passages]))


def _evaluate(out: Path, corpus: tuple[Path, Path], checkpoint: Path, *extra: str) -> int:
    (out / "trec").mkdir(parents=True, exist_ok=True)
    return evaluate.main(["--quiet", "--no_cuda", "--ctx_file", str(corpus[0]), "--qa_file",
                          str(corpus[1]), "--dpr_model", str(checkpoint), "--retrievers",
                          RETRIEVERS, "--output_dir", str(out), "--trec_dir",
                          str(out / "trec"), *extra])


def _without_timings(report: dict) -> dict:
    return {name: {k: v for k, v in metrics.items() if k != "seconds"}
            for name, metrics in report["results"].items()}


@pytest.mark.parametrize("order", ["same", "reversed"])
def test_evaluate_with_a_saved_flat_index_equals_encoding_the_corpus(
        tmp_path: Path, corpus: tuple[Path, Path], checkpoint: Path, encoded, order: str) -> None:
    # Given a Flat index of the model's passage vectors, in the file's order or reversed
    ids, vectors = encoded
    if order == "reversed":
        ids, vectors = ids[::-1], vectors[::-1]
    index = _build(tmp_path / "built", ids, vectors)
    # When evaluating DPR and the fusions with the index, and by encoding the corpus
    assert _evaluate(tmp_path / "with", corpus, checkpoint, "--index", str(index)) == 0
    assert _evaluate(tmp_path / "without", corpus, checkpoint) == 0
    with_index, encoding = (json.loads((tmp_path / name / "results.json").read_text())
                            for name in ("with", "without"))
    # Then every retriever ranks every question the same way, with the same scores
    assert _without_timings(with_index) == _without_timings(encoding)
    for name in ("dpr", "hybrid", "rrf", "fusion"):
        file = f"run.{name}.txt"
        a = (tmp_path / "with" / "trec" / file).read_text().split()
        b = (tmp_path / "without" / "trec" / file).read_text().split()
        assert a[2::6] == b[2::6]  # passage ids, in rank order
        assert [float(x) for x in a[4::6]] == pytest.approx([float(x) for x in b[4::6]],
                                                            abs=1e-5)
    assert with_index["models"]["dpr_indexes"] == {"dpr": str(index)}


def test_saved_index_of_other_passages_is_one_error_naming_both_files(
        tmp_path: Path, corpus: tuple[Path, Path], checkpoint: Path, encoded,
        caplog: pytest.LogCaptureFixture) -> None:
    # Given an index that lacks the last passage of the file
    ids, vectors = encoded
    index = _build(tmp_path / "built", ids[:-1], vectors[:-1])
    # When evaluating with it
    with caplog.at_level(logging.ERROR):
        code = _evaluate(tmp_path / "out", corpus, checkpoint, "--index", str(index))
    # Then it exits 1 with one line naming the id file and the passage file, writing nothing
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert code == 1 and len(errors) == 1
    assert str(index / "ids.txt") in errors[0] and str(corpus[0]) in errors[0]
    assert not (tmp_path / "out" / "results.json").exists()


def test_saved_index_of_another_model_is_one_error_naming_the_sizes(
        tmp_path: Path, corpus: tuple[Path, Path], checkpoint: Path, encoded,
        caplog: pytest.LogCaptureFixture) -> None:
    # Given an index of the same passages with vectors of another size
    ids, vectors = encoded
    index = _build(tmp_path / "built", ids, np.ones((len(ids), 7), np.float32))
    # When evaluating the model with it, then one line names the index and both sizes
    with caplog.at_level(logging.ERROR):
        assert _evaluate(tmp_path / "out", corpus, checkpoint, "--index", str(index)) == 1
    assert f"--index {index}: vectors of size 7" in caplog.text
    assert f"vectors of size {vectors.shape[1]}" in caplog.text


@pytest.mark.parametrize("extra, code, message", [
    (["--nprobe", "4"], 2, "needs --index"),
    (["--index", "r9=idx"], 2, "no --dpr_model has the label 'r9'"),
])
def test_index_flags_refused_with_exit_2(tmp_path: Path, corpus: tuple[Path, Path],
                                         checkpoint: Path, extra: list[str], code: int,
                                         message: str, capsys: pytest.CaptureFixture[str]
                                         ) -> None:
    assert _evaluate(tmp_path, corpus, checkpoint, *extra) == code
    assert message in capsys.readouterr().err


def test_nprobe_on_a_flat_index_is_a_usage_error(
        tmp_path: Path, corpus: tuple[Path, Path], checkpoint: Path, encoded,
        caplog: pytest.LogCaptureFixture) -> None:
    index = _build(tmp_path / "built", *encoded, shards=1)
    with caplog.at_level(logging.ERROR):
        assert _evaluate(tmp_path / "out", corpus, checkpoint, "--index", str(index),
                         "--nprobe", "2") == 2
    assert "has no inverted lists" in caplog.text


def test_saved_index_encoded_by_another_model_of_the_same_size_is_one_error(
        tmp_path: Path, corpus: tuple[Path, Path], checkpoint: Path, spread: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    # Given an index of the passages encoded by another model with vectors of the same size
    # (generate_dense_embeddings.py's manifest records which)
    assert generate_dense_embeddings.main([
        "--model_file", str(spread), "--ctx_file", str(corpus[0]), "--out_file",
        str(tmp_path / "emb" / "passages"), "--no_cuda", "--quiet"]) == 0
    build_from_glob(str(tmp_path / "emb" / "passages_*"), tmp_path / "idx",
                    BuildOptions(factory="Flat", quiet=True))
    # When the checkpoint is evaluated with it
    with caplog.at_level(logging.ERROR):
        code = _evaluate(tmp_path / "out", corpus, checkpoint, "--index", str(tmp_path / "idx"))
    # Then it exits 1 with one line naming both models, writing nothing
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert code == 1 and len(errors) == 1, errors
    assert str(spread) in errors[0] and str(checkpoint) in errors[0]
    assert not (tmp_path / "out" / "results.json").exists()
    # And the model that encoded the passages is evaluated with the same index
    assert _evaluate(tmp_path / "own", corpus, spread, "--index", str(tmp_path / "idx")) == 0
