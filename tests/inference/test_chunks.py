"""The chunk layout, the completeness check and the manifest of an encoded corpus."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from dpr.data.tsv import InputFormatError, count_passages
from dpr.inference.chunks import (
    Chunk,
    Layout,
    check_output,
    chunk_files,
    incomplete_reason,
    manifest_path,
    owned_chunks,
    write_manifest,
)
from dpr.utils.errors import InputError, UsageError
from dpr.utils.io import write_vectors

IDS = [f"p{i}" for i in range(5)]


def _manifest(**changes) -> dict:
    base = {"model_fingerprint": "abc", "recipe": {"pooling": "cls"}, "dim": 4,
            "passages": {"bytes": 10, "mtime_ns": 1, "count": 5}, "layout": {"chunk_size": 2},
            "vector_dtype": "float32", "model": "/somewhere/model"}
    return {**base, **changes}


def test_layout_chunks_cover_every_row_once() -> None:
    # Given 17 passages in chunks of 5, and in DPR's 3 shards
    chunks = Layout(17, chunk_size=5).chunks()
    shards = Layout(17, num_shards=3).chunks()
    # Then the chunks are consecutive, of 5 rows but the last, and DPR's shards use ceil(17/3)
    assert [(c.start, c.end) for c in chunks] == [(0, 5), (5, 10), (10, 15), (15, 17)]
    assert [(c.start, c.end) for c in shards] == [(0, 6), (6, 12), (12, 17)]
    # And an empty corpus still has one (empty) file, as DPR's tool wrote
    assert [(c.start, c.end) for c in Layout(0, chunk_size=5).chunks()] == [(0, 0)]


def test_layout_bad_sizes_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="--chunk_size must be >= 1"):
        Layout(3, chunk_size=0)
    with pytest.raises(UsageError, match="--num_shards must be >= 1"):
        Layout(3, num_shards=0)


def test_owned_chunks_split_round_robin_and_cover_all() -> None:
    chunks = Layout(23, chunk_size=5).chunks()  # 5 chunks
    parts = [[c.index for c in owned_chunks(chunks, w, 2)] for w in range(2)]
    assert parts == [[0, 2, 4], [1, 3]]
    assert [c.index for c in owned_chunks(chunks, 0, 1)] == [0, 1, 2, 3, 4]


def test_incomplete_reason_accepts_only_a_complete_chunk(tmp_path: Path) -> None:
    # Given a chunk written with its 5 ids and vectors of size 4
    chunk = Chunk(0, 0, 5)
    prefix = tmp_path / "emb"
    vectors = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    write_vectors(f"{prefix}_0", IDS, vectors)
    npy, ids_file = chunk_files(prefix, chunk)
    # Then it is complete for the same ids, size and type only
    assert incomplete_reason(prefix, chunk, IDS, dim=4, dtype="float32") is None
    assert "float16" in incomplete_reason(prefix, chunk, IDS, dim=4, dtype="float16")
    assert "(5, 8)" in incomplete_reason(prefix, chunk, IDS, dim=8, dtype="float32")
    assert "ids differ" in incomplete_reason(prefix, chunk, [*IDS[:4], "x"], dim=4,
                                             dtype="float32")
    # When the vector file is truncated (a copy cut short), Then it is unreadable
    data = Path(npy).read_bytes()
    Path(npy).write_bytes(data[:-8])
    assert incomplete_reason(prefix, chunk, IDS, dim=4, dtype="float32").startswith("unreadable")
    # When it holds a NaN, Then it is refused too
    bad = vectors.copy()
    bad[3, 1] = np.nan
    np.save(npy, bad)
    assert incomplete_reason(prefix, chunk, IDS, dim=4, dtype="float32") == \
        "holds non-finite values"
    # When the id file is gone, Then the chunk is missing
    os.unlink(ids_file)
    assert incomplete_reason(prefix, chunk, IDS, dim=4, dtype="float32") == "missing"


def test_write_vectors_float16_and_its_range(tmp_path: Path) -> None:
    vectors = np.array([[0.5, -1.25], [3.0, 0.001]], dtype=np.float32)
    npy, _ = write_vectors(tmp_path / "v", ["a", "b"], vectors, dtype="float16")
    stored = np.load(npy)
    assert stored.dtype == np.float16
    np.testing.assert_allclose(stored, vectors, rtol=1e-3)
    # A vector beyond float16's range is refused, and nothing is left behind
    with pytest.raises(UsageError, match="exceed its range"):
        write_vectors(tmp_path / "w", ["a"], np.array([[1e6]], np.float32), dtype="float16")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.ids.json", "v.npy"]


def test_check_output_accepts_the_same_run_and_refuses_another(tmp_path: Path) -> None:
    prefix = tmp_path / "emb"
    chunks = Layout(5, chunk_size=2).chunks()
    # Given a first run's manifest, Then the same run again is accepted (even moved)
    check_output(prefix, _manifest(), chunks)
    write_manifest(prefix, _manifest())
    assert json.loads(Path(manifest_path(prefix)).read_text())["dim"] == 4
    check_output(prefix, _manifest(model="/moved/model"), chunks)
    # When another model, passage file or vector type runs on the same prefix, Then refused
    for change, words in (({"model_fingerprint": "xyz"}, "another model"),
                          ({"passages": {"bytes": 11, "mtime_ns": 1, "count": 5}},
                           "another passage file"),
                          ({"vector_dtype": "float16"}, "another vector type"),
                          ({"layout": {"chunk_size": 3}}, "another chunk layout")):
        with pytest.raises(InputError, match=words):
            check_output(prefix, _manifest(**change), chunks)


def test_check_output_refuses_chunks_without_a_manifest(tmp_path: Path) -> None:
    # Given a chunk file of unknown origin where this run writes
    write_vectors(tmp_path / "emb_1", ["a"], np.zeros((1, 4), np.float32))
    # Then the run refuses to mix with it
    with pytest.raises(InputError, match="emb_1.npy: exists without emb.manifest.json"):
        check_output(tmp_path / "emb", _manifest(), Layout(5, chunk_size=2).chunks())
    assert not Path(manifest_path(tmp_path / "emb")).exists()


def test_count_passages_counts_and_refuses_duplicates(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.tsv", tmp_path / "bad.tsv"
    good.write_text("id\ttext\ttitle\na\tx\tt\nb\ty\tt\nc\tz\tt\n", encoding="utf-8")
    bad.write_text("id\ttext\ttitle\na\tx\tt\nb\ty\tt\na\tz\tt\n", encoding="utf-8")
    assert count_passages(good) == 3
    with pytest.raises(InputFormatError, match="duplicate passage id 'a'"):
        count_passages(bad)
