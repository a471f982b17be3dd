"""dense_retriever.py searching an index folder built by `python -m dpr.index build` (re-ranked
from shards that moved, refused to another model than the one that encoded it), and the one
shard discovery both use (natural order)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

import dense_retriever
import generate_dense_embeddings
from dpr.index import BuildOptions, build_from_glob
from dpr.index.shards import find_shards
from dpr.inference.chunks import fingerprint
from dpr.utils.io import write_vectors


def _retrieve(model: Path, corpus, out: Path, *source: str) -> int:
    return dense_retriever.main(["--model_file", str(model), "--qa_file", str(corpus[1]),
                                 "--ctx_file", str(corpus[0]), "--out_file", str(out),
                                 "--n-docs", "5", "--no_cuda", "--quiet", *source])


@pytest.fixture(scope="module")
def one_passage_shards(tmp_path_factory, tiny_camembert: Path, corpus) -> Path:
    """The 17 passages encoded one per file: emb_0 ... emb_16 (so _2 sorts before _10 only in
    natural order)."""
    prefix = tmp_path_factory.mktemp("retriever_index") / "emb"
    assert generate_dense_embeddings.main([
        "--model_file", str(tiny_camembert), "--ctx_file", str(corpus[0]), "--out_file",
        str(prefix), "--chunk_size", "1", "--no_cuda", "--quiet"]) == 0
    return prefix


def test_find_shards_sorts_naturally(one_passage_shards: Path) -> None:
    files = find_shards(f"{one_passage_shards}_*")
    assert [Path(f).name for f in files] == [f"emb_{k}.npy" for k in range(17)]


def test_retriever_flat_index_equals_in_memory_search(tmp_path: Path, tiny_camembert: Path,
                                                      corpus, one_passage_shards: Path) -> None:
    # Given a Flat index folder built from the same shards
    pattern = f"{one_passage_shards}_*"
    build_from_glob(pattern, tmp_path / "idx", BuildOptions(factory="Flat", quiet=True))
    # When retrieving from the shards in memory and from the index folder
    assert _retrieve(tiny_camembert, corpus, tmp_path / "mem.json",
                     "--encoded_ctx_file", pattern) == 0
    assert _retrieve(tiny_camembert, corpus, tmp_path / "idx.json",
                     "--index", str(tmp_path / "idx")) == 0
    # Then the results are the same passages, answers and scores
    memory = json.loads((tmp_path / "mem.json").read_text())
    saved = json.loads((tmp_path / "idx.json").read_text())
    assert len(memory) == len(saved) == 8
    for a, b in zip(memory, saved):
        assert [c["id"] for c in a["ctxs"]] == [c["id"] for c in b["ctxs"]]
        assert [c["has_answer"] for c in a["ctxs"]] == [c["has_answer"] for c in b["ctxs"]]
        np.testing.assert_allclose([float(c["score"]) for c in a["ctxs"]],
                                   [float(c["score"]) for c in b["ctxs"]], rtol=1e-5)


@pytest.mark.parametrize(("flags", "message"), [
    ([], "give either --encoded_ctx_file"),
    (["--encoded_ctx_file", "x_*", "--index", "idx"], "give --rerank too, or only --index"),
    (["--encoded_ctx_file", "x_*", "--nprobe", "8"], "--nprobe needs --index"),
    (["--index", "idx", "--hnsw_index"], "--hnsw_index builds an index in memory")])
def test_retriever_index_flags_are_checked_with_exit_2(tmp_path: Path, tiny_camembert: Path,
                                                       corpus, capsys, flags: list[str],
                                                       message: str) -> None:
    assert _retrieve(tiny_camembert, corpus, tmp_path / "r.json", *flags) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()


def _errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


def _results(path: Path) -> list[tuple[list[str], list[float]]]:
    return [([c["id"] for c in r["ctxs"]], [float(c["score"]) for c in r["ctxs"]])
            for r in json.loads(path.read_text())]


def test_retriever_index_reranks_from_shards_given_after_they_moved(
        tmp_path: Path, spread: Path, corpus, caplog: pytest.LogCaptureFixture) -> None:
    # Given an index built from shards in a/ (of a model whose scores do not tie), then a/
    # moved to b/
    built = tmp_path / "a"
    assert generate_dense_embeddings.main([
        "--model_file", str(spread), "--ctx_file", str(corpus[0]), "--out_file",
        str(built / "emb"), "--chunk_size", "6", "--no_cuda", "--quiet"]) == 0
    build_from_glob(str(built / "emb_*"), tmp_path / "idx", BuildOptions(factory="Flat",
                                                                         quiet=True))
    built.rename(tmp_path / "b")
    # When re-ranking without saying where the shards are, Then one error line asks for them
    with caplog.at_level(logging.ERROR):
        assert _retrieve(spread, corpus, tmp_path / "lost.json", "--index",
                         str(tmp_path / "idx"), "--rerank", "10") == 1
    assert len(_errors(caplog)) == 1 and "--encoded_ctx_file" in _errors(caplog)[0]
    # When --encoded_ctx_file says where they are now
    assert _retrieve(spread, corpus, tmp_path / "reranked.json", "--index",
                     str(tmp_path / "idx"), "--rerank", "10", "--encoded_ctx_file",
                     str(tmp_path / "b" / "emb_*")) == 0
    # Then the re-ranked results are those of exact search over the moved shards
    assert _retrieve(spread, corpus, tmp_path / "exact.json", "--encoded_ctx_file",
                     str(tmp_path / "b" / "emb_*")) == 0
    reranked, exact = _results(tmp_path / "reranked.json"), _results(tmp_path / "exact.json")
    assert [ids for ids, _ in reranked] == [ids for ids, _ in exact]
    np.testing.assert_allclose([s for _, s in reranked], [s for _, s in exact], rtol=1e-5)


@pytest.mark.parametrize("source", ["index", "shards"])
def test_retriever_with_another_model_than_the_encoder_is_one_error(
        tmp_path: Path, tiny_camembert: Path, checkpoint: Path, corpus,
        one_passage_shards: Path, caplog: pytest.LogCaptureFixture, source: str) -> None:
    # Given an index (or the shards) of the passages encoded by the untrained folder, whose
    # build settings keep the manifest's model and precision
    pattern = f"{one_passage_shards}_*"
    settings = build_from_glob(pattern, tmp_path / "idx", BuildOptions(factory="Flat",
                                                                       quiet=True))
    flags = (["--index", str(tmp_path / "idx")] if source == "index"
             else ["--encoded_ctx_file", pattern])
    # When the trained checkpoint (vectors of the same size) searches them
    with caplog.at_level(logging.ERROR):
        code = _retrieve(checkpoint, corpus, tmp_path / "r.json", *flags)
    # Then it exits 1 with one line naming both models, and writes nothing
    errors = _errors(caplog)
    assert code == 1 and len(errors) == 1, errors
    assert str(tiny_camembert) in errors[0] and str(checkpoint) in errors[0]
    assert "re-encode the passages with this model" in errors[0]
    assert not (tmp_path / "r.json").exists()
    assert settings["encoder"]["model_fingerprint"] == fingerprint(tiny_camembert)
    assert settings["encoder"]["precision"] == "float32"


def test_retriever_index_of_shards_without_manifest_warns_and_works(
        tmp_path: Path, tiny_camembert: Path, corpus, one_passage_shards: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    # Given hand-made shards of the same vectors (no manifest beside them)
    for k in range(17):
        ids = json.loads(Path(f"{one_passage_shards}_{k}.ids.json").read_text())
        write_vectors(tmp_path / "hand" / f"emb_{k}", ids,
                      np.load(f"{one_passage_shards}_{k}.npy"))
    settings = build_from_glob(str(tmp_path / "hand" / "emb_*"), tmp_path / "idx",
                               BuildOptions(factory="Flat", quiet=True))
    # When searching them, Then it works, with a warning that no model could be checked
    assert settings["encoder"] is None
    with caplog.at_level(logging.WARNING):
        assert _retrieve(tiny_camembert, corpus, tmp_path / "r.json", "--index",
                         str(tmp_path / "idx")) == 0
    assert "no manifest recorded which model encoded these vectors" in caplog.text
