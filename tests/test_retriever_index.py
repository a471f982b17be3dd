"""dense_retriever.py searching an index folder built by `python -m dpr.index build`, and the one
shard discovery both use (natural order)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import dense_retriever
import generate_dense_embeddings
from dpr.index import BuildOptions, build_from_glob
from dpr.index.shards import find_shards


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
    (["--encoded_ctx_file", "x_*", "--index", "idx"], "give either --encoded_ctx_file"),
    (["--encoded_ctx_file", "x_*", "--nprobe", "8"], "--nprobe needs --index"),
    (["--index", "idx", "--hnsw_index"], "--hnsw_index builds an index in memory")])
def test_retriever_index_flags_are_checked_with_exit_2(tmp_path: Path, tiny_camembert: Path,
                                                       corpus, capsys, flags: list[str],
                                                       message: str) -> None:
    assert _retrieve(tiny_camembert, corpus, tmp_path / "r.json", *flags) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()
