"""Index builds from shards: equal to one build at once, every index kind, on-disk merge,
float16 shards, build settings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dpr.index import BuildOptions, build_from_glob, load_index


def _exact(corpus: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Rows of the exact top-k by inner product [Q × k]."""
    return np.argsort(-(queries @ corpus.T), axis=1, kind="stable")[:, :k]


def _recall(found: list[list[str]], exact: np.ndarray) -> float:
    """Mean share of the exact top-k ids (rows of `exact`) found in the returned lists."""
    hits = [len(set(ids) & {f"p{r}" for r in row}) / len(row) for ids, row in zip(found, exact)]
    return float(np.mean(hits))


@pytest.fixture
def build(tmp_path: Path, shards_of):
    """`build(corpus, factory, parts=3, name="idx", dtype="float32", **options)` -> folder."""

    def _build(corpus: np.ndarray, factory: str, *, parts: int = 3, name: str = "idx",
               dtype: str = "float32", **options) -> Path:
        pattern = shards_of(tmp_path / f"emb_{name}", corpus, parts, dtype=dtype)
        build_from_glob(pattern, tmp_path / name,
                        BuildOptions(factory=factory, quiet=True, **options))
        return tmp_path / name

    return _build


def test_build_flat_from_three_shards_equals_one_build_at_once(
        tmp_path: Path, build, corpus: np.ndarray, queries: np.ndarray) -> None:
    # Given the same vectors as 3 shards and as 1
    sharded = load_index(build(corpus, "Flat", parts=3, name="three"))
    whole = load_index(build(corpus, "Flat", parts=1, name="one"))
    # When both are searched
    scores3, ids3 = sharded.search(queries, 10)
    scores1, ids1 = whole.search(queries, 10)
    # Then the results are the same exactly, and those of exact search
    assert ids3 == ids1
    np.testing.assert_array_equal(scores3, scores1)
    assert ids1 == [[f"p{r}" for r in row] for row in _exact(corpus, queries, 10)]


def test_build_ivfpq_and_opq_recall_on_clustered_data(
        tmp_path: Path, build, corpus: np.ndarray, queries: np.ndarray) -> None:
    # Given IVF-PQ and OPQ+IVF-PQ indexes: 16 lists, 16 codes of 4 bits (8 bytes a vector,
    # a sixteenth of float32), on clusters whose points are spread at random around the centres
    exact = _exact(corpus, queries, 10)
    for name, factory, sample in (("ivfpq", "IVF16,PQ16x4", 3000),
                                  ("opq", "OPQ4,IVF16,PQ16x4", 1000)):
        index = load_index(build(corpus, factory, name=name, train_sample=sample), nprobe=16)
        # When searched over every list
        _, top50 = index.search(queries, 50)
        # Then the exact top 10 is mostly in the top 50 (chance: 50 / 3000 = 0.017), and
        # the top 10 holds far more of it than chance
        assert _recall(top50, exact) >= 0.6, factory
        assert _recall([ids[:10] for ids in top50], exact) >= 0.15, factory
        assert index.nlist == 16


@pytest.mark.parametrize("factory,minimum", [("HNSW32", 0.95), ("HNSW32_SQ8", 0.9)])
def test_build_hnsw_and_sq8_search_close_to_exact(
        tmp_path: Path, build, corpus: np.ndarray, queries: np.ndarray, factory: str,
        minimum: float) -> None:
    # Given an HNSW index, with full or 8-bit vectors, built from 3 shards
    index = load_index(build(corpus, factory), ef_search=64)
    # When searched
    _, found = index.search(queries, 10)
    # Then it finds (nearly) the exact neighbours and takes efSearch
    assert _recall(found, _exact(corpus, queries, 10)) >= minimum
    assert index.ef_parameter == "efSearch"


def test_build_on_disk_merge_equals_in_memory_ivf(
        tmp_path: Path, build, corpus: np.ndarray, queries: np.ndarray) -> None:
    # Given the same IVF index built in memory and with on-disk inverted lists
    memory = load_index(build(corpus, "IVF16,Flat", name="memory"), nprobe=4)
    folder = build(corpus, "IVF16,Flat", name="disk", on_disk=True)
    # When the on-disk folder is moved (the lists file is found beside the index)
    moved = folder.rename(tmp_path / "moved")
    disk = load_index(moved, nprobe=4)
    # Then both return the same results, and the lists live in index.ivfdata
    assert disk.search(queries, 10)[1] == memory.search(queries, 10)[1]
    np.testing.assert_array_equal(disk.search(queries, 10)[0], memory.search(queries, 10)[0])
    assert sorted(p.name for p in moved.iterdir()) == [
        "build.json", "ids.offsets.npy", "ids.txt", "index.faiss", "index.ivfdata"]


def test_build_float16_shards_cast_per_shard(
        tmp_path: Path, build, corpus: np.ndarray, queries: np.ndarray) -> None:
    # Given float16 shards
    folder = build(corpus, "Flat", dtype="float16")
    # When searched
    scores, ids = load_index(folder).search(queries, 10)
    # Then results are exact search over the float16 values, read as float32
    stored = corpus.astype(np.float16).astype(np.float32)
    assert ids == [[f"p{r}" for r in row] for row in _exact(stored, queries, 10)]
    settings = json.loads((folder / "build.json").read_text())
    assert {s["dtype"] for s in settings["shards"]} == {"float16"}


def test_build_settings_describe_the_build(
        tmp_path: Path, build, corpus: np.ndarray) -> None:
    # Given an IVF-PQ build trained on a 1,000-vector sample
    folder = build(corpus, "IVF16,PQ8x4", train_sample=1000, seed=3)
    settings = json.loads((folder / "build.json").read_text())
    # Then build.json records what is needed to rebuild and check it
    assert settings["factory"] == "IVF16,PQ8x4" and settings["metric"] == "ip"
    assert (settings["dim"], settings["count"], settings["nlist"]) == (32, 3000, 16)
    assert settings["train"]["rows"] == 1000 and settings["train"]["seed"] == 3
    assert [s["rows"] for s in settings["shards"]] == [1000, 1000, 1000]
    assert all(len(s["sha256"]) == 64 * 2 + 1 and s["bytes"] > 0 for s in settings["shards"])
    assert settings["faiss_version"] and settings["seconds"]["total"] > 0


def test_build_l2_metric_scores_are_negated_distances(
        tmp_path: Path, build, corpus: np.ndarray, queries: np.ndarray) -> None:
    # Given an exact L2 index
    scores, ids = load_index(build(corpus, "Flat", metric="l2")).search(queries, 5)
    # Then it ranks by L2 distance and its scores (larger is better) are -distance²
    distances = ((queries[:, None, :] - corpus[None, :, :]) ** 2).sum(-1)  # [Q × N]
    best = np.argsort(distances, axis=1, kind="stable")[:, :5]
    assert ids == [[f"p{r}" for r in row] for row in best]
    np.testing.assert_allclose(scores, -np.take_along_axis(distances, best, 1), atol=1e-4)
