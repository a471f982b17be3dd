"""Exact re-ranking of a compressed index's candidates from the shards it was built from, and
faiss' own refinement (a `Refine(...)` factory) behind the same `rerank` setting."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from dpr.index import BuildOptions, build_from_glob, load_index
from dpr.index.cli import main as index_main
from dpr.index.rerank import ShardVectors, rerank
from dpr.utils.errors import InputError

COARSE = "IVF16,PQ4x4"  # 2 bytes a vector: its own ranking is poor


def _exact(corpus: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-(queries @ corpus.T), axis=1, kind="stable")[:, :k]


def _recall(rows: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(r) & set(e)) / len(e) for r, e in zip(rows, exact)]))


def _build(tmp_path: Path, shards_of, corpus: np.ndarray, factory: str, *,
           dtype: str = "float32", metric: str = "ip") -> Path:
    pattern = shards_of(tmp_path / "emb", corpus, 3, dtype=dtype)
    build_from_glob(pattern, tmp_path / "idx",
                    BuildOptions(factory=factory, metric=metric, train_sample=3000, quiet=True))
    return tmp_path / "idx"


def test_rerank_recovers_the_exact_top_10_from_coarse_candidates(
        tmp_path: Path, shards_of, corpus: np.ndarray, queries: np.ndarray) -> None:
    # Given a coarse IVF-PQ index over 3 shards, all lists searched
    index = load_index(_build(tmp_path, shards_of, corpus, COARSE), nprobe=16)
    exact = _exact(corpus, queries, 10)
    plain = _recall(index.search_rows(queries, 10)[1], exact)
    # When re-ranking its top 300 with the stored vectors
    index.configure(rerank=300)
    scores, rows = index.search_rows(queries, 10)
    # Then the top 10 are (almost all) the exact ones, with exact scores, best first
    assert plain < 0.8 and _recall(rows, exact) >= 0.98
    np.testing.assert_allclose(scores, np.take_along_axis(queries @ corpus.T, rows, 1),
                               rtol=1e-5, atol=1e-6)
    assert (np.diff(scores, axis=1) <= 0).all()
    # And rerank 0 turns it off again
    index.configure(rerank=0)
    assert _recall(index.search_rows(queries, 10)[1], exact) == plain


def test_rerank_scores_float16_shards_as_stored(tmp_path: Path, shards_of, corpus: np.ndarray,
                                                queries: np.ndarray) -> None:
    index = load_index(_build(tmp_path, shards_of, corpus, COARSE, dtype="float16"),
                       nprobe=16, rerank=100)
    scores, rows = index.search_rows(queries, 5)
    stored = corpus.astype(np.float16).astype(np.float32)
    np.testing.assert_allclose(scores, np.take_along_axis(queries @ stored.T, rows, 1),
                               rtol=1e-5, atol=1e-6)


def test_rerank_l2_scores_are_negated_squared_distances(tmp_path: Path, shards_of,
                                                        corpus: np.ndarray,
                                                        queries: np.ndarray) -> None:
    index = load_index(_build(tmp_path, shards_of, corpus, COARSE, metric="l2"), nprobe=16,
                       rerank=200)
    scores, rows = index.search_rows(queries[:5], 5)
    distances = ((queries[:5, None, :] - corpus[rows]) ** 2).sum(-1)
    np.testing.assert_allclose(scores, -distances, rtol=1e-4, atol=1e-5)
    exact_l2 = np.argsort(((queries[:5, None, :] - corpus[None]) ** 2).sum(-1), axis=1)[:, :5]
    assert _recall(rows, exact_l2) >= 0.96


def test_rerank_gather_and_missing_candidates() -> None:
    # Given 2 in-memory "shards" of 3 and 2 rows
    first, second = np.arange(12, dtype=np.float32).reshape(3, 4), -np.ones((2, 4), np.float32)
    vectors = ShardVectors.__new__(ShardVectors)
    vectors.arrays, vectors.starts = [first, second], np.array([0, 3, 5])
    # Then rows map across shards, and a query with one valid candidate keeps -1 after it
    np.testing.assert_array_equal(vectors.gather(np.array([4, 0, 2, 0])),
                                  np.vstack([second[1], first[0], first[2], first[0]]))
    scores, rows = rerank(np.ones((1, 4), np.float32), np.array([[2, -1, -1]]), vectors, 2)
    assert rows.tolist() == [[2, -1]] and scores[0, 0] == 38 and scores[0, 1] == -np.inf


def test_rerank_finds_moved_shards_by_glob_and_refuses_changed_ones(
        tmp_path: Path, shards_of, corpus: np.ndarray, queries: np.ndarray) -> None:
    folder = _build(tmp_path, shards_of, corpus, COARSE)
    reference = load_index(folder, nprobe=16, rerank=100).search(queries, 5)
    # Given the shards moved elsewhere
    shutil.move(tmp_path / "emb", tmp_path / "moved")
    with pytest.raises(InputError, match="not found for re-ranking .*--encoded_ctx_file"):
        load_index(folder, rerank=100)
    # Then a glob says where they are, with the same results
    moved = load_index(folder, nprobe=16, rerank=100, embeddings=str(tmp_path / "moved" / "p*"))
    assert moved.search(queries, 5)[1] == reference[1]
    # And a shard re-encoded with another row count is refused
    np.save(tmp_path / "moved" / "passages_1.npy", corpus[:10])
    with pytest.raises(InputError, match=r"passages_1.npy: \(10, 32\) vectors, but the index"):
        load_index(folder, rerank=100, embeddings=str(tmp_path / "moved" / "p*"))


def test_rerank_refine_factory_needs_no_shards(tmp_path: Path, shards_of, corpus: np.ndarray,
                                               queries: np.ndarray) -> None:
    # Given faiss' refinement inside the index (float16 copies), and the shards deleted
    folder = _build(tmp_path, shards_of, corpus, f"{COARSE},Refine(SQfp16)")
    shutil.rmtree(tmp_path / "emb")
    index = load_index(folder, nprobe=16)
    exact = _exact(corpus, queries, 10)
    plain = _recall(index.search_rows(queries, 10)[1], exact)
    # When re-ranking 300 candidates, Then recall rises as with the shards
    index.configure(rerank=300)
    assert plain < 0.8 and _recall(index.search_rows(queries, 10)[1], exact) >= 0.98
    index.configure(rerank=0)
    assert _recall(index.search_rows(queries, 10)[1], exact) == plain


def test_cli_search_rerank_writes_the_reranked_run(tmp_path: Path, shards_of,
                                                   corpus: np.ndarray,
                                                   queries: np.ndarray) -> None:
    folder = _build(tmp_path, shards_of, corpus, COARSE)
    np.save(tmp_path / "q.npy", queries)
    assert index_main(["search", "--index", str(folder), "--queries", str(tmp_path / "q.npy"),
                       "--n_docs", "3", "--nprobe", "16", "--rerank", "100", "--out_file",
                       str(tmp_path / "run.tsv"), "--quiet"]) == 0
    lines = (tmp_path / "run.tsv").read_text().splitlines()[1:]
    expected = load_index(folder, nprobe=16, rerank=100).search(queries, 3)[1]
    assert [line.split("\t")[1] for line in lines] == [i for ids in expected for i in ids]
    assert index_main(["search", "--index", str(folder), "--queries", str(tmp_path / "q.npy"),
                       "--rerank", "-1", "--out_file", str(tmp_path / "r.tsv"), "--quiet"]) == 2
