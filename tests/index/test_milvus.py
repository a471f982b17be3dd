"""The Milvus store through Milvus Lite (a local file): load shards and passages, search, and
agree with faiss exact search; a clear error when pymilvus is missing."""

from __future__ import annotations

import builtins
import csv
import json
from pathlib import Path

import numpy as np
import pytest

from dpr.index.cli import main
from dpr.index.milvus import MissingDependencyError, import_pymilvus
from dpr.index.search import load_index

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "data" / "fr_sample_squad.json"
N = 600


def _passages(path: Path) -> list[tuple[str, str, str]]:
    """N passages (id, title, text) made of the French sample's paragraphs, as a TSV."""
    paragraphs = [(a["title"], p["context"]) for a in json.loads(SAMPLE.read_text())["data"]
                  for p in a["paragraphs"]]
    rows = [(f"p{i}", paragraphs[i % len(paragraphs)][0],
             f"{paragraphs[i % len(paragraphs)][1]} ({i})") for i in range(N)]
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t")
        writer.writerow(["id", "text", "title"])
        writer.writerows((pid, text, title) for pid, title, text in rows)
    return rows


def test_milvus_lite_round_trip_matches_faiss_exact_search(
        tmp_path: Path, corpus: np.ndarray, queries: np.ndarray, shards_of) -> None:
    pymilvus = pytest.importorskip("pymilvus")
    # Given 600 passages of French text with clustered vectors in 3 shards, and 50 queries
    pattern = shards_of(tmp_path / "emb", corpus[:N], 3)
    rows = _passages(tmp_path / "passages.tsv")
    np.save(tmp_path / "q.npy", queries)
    uri = str(tmp_path / "milvus.db")
    # When they are loaded into Milvus Lite and searched, and a faiss Flat index is searched
    assert main(["milvus-load", "--uri", uri, "--encoded_ctx_file", pattern, "--ctx_file",
                 str(tmp_path / "passages.tsv"), "--batch_size", "250", "--quiet"]) == 0
    assert main(["milvus-search", "--uri", uri, "--queries", str(tmp_path / "q.npy"),
                 "--n_docs", "10", "--out_file", str(tmp_path / "milvus.json")]) == 0
    assert main(["build", "--encoded_ctx_file", pattern, "--factory", "Flat", "--output_dir",
                 str(tmp_path / "flat"), "--quiet"]) == 0
    _, exact = load_index(tmp_path / "flat").search(queries, 10)
    found = [r["passage_ids"] for r in json.loads((tmp_path / "milvus.json").read_text())]
    # Then the top 10 of at least 95% of the queries are the same ids in the same order
    same = np.mean([a == b for a, b in zip(found, exact)])
    assert same >= 0.95
    # And the collection holds every passage with its title and text
    client = pymilvus.MilvusClient(uri)
    stored = client.query("passages", filter='id in ["p0", "p599"]',
                          output_fields=["id", "title", "text"])
    client.close()
    assert sorted((r["id"], r["title"], r["text"]) for r in stored) == [rows[0], rows[-1]]


def test_milvus_load_refuses_passages_in_another_order(
        tmp_path: Path, corpus: np.ndarray, shards_of, capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("pymilvus")
    # Given shards whose ids are in another order than the passage file
    pattern = shards_of(tmp_path / "emb", corpus[:N][::-1].copy(), 1)
    ids = [f"p{i}" for i in reversed(range(N))]
    (tmp_path / "emb" / "passages_0.ids.json").write_text(json.dumps(ids))
    _passages(tmp_path / "passages.tsv")
    # Then the load stops with one line naming the passage file and the first mismatch
    assert main(["milvus-load", "--uri", str(tmp_path / "m.db"), "--encoded_ctx_file", pattern,
                 "--ctx_file", str(tmp_path / "passages.tsv"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "passages.tsv: passage 'p0' where" in err and "row 0 is 'p599'" in err


def test_milvus_missing_pymilvus_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given an environment where pymilvus cannot be imported
    real_import = builtins.__import__

    def no_pymilvus(name: str, *args, **kwargs):
        if name.split(".")[0] == "pymilvus":
            raise ImportError("No module named 'pymilvus'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pymilvus)
    # Then the store's error says what to install, and is a user error (exit 1)
    with pytest.raises(MissingDependencyError, match="pip install pymilvus==") as caught:
        import_pymilvus()
    assert caught.value.exit_code == 1


def test_milvus_refusal_is_one_error_line(
        tmp_path: Path, corpus: np.ndarray, shard_file, capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("pymilvus")
    # Given a passage id longer than the collection's id field (512 characters)
    pattern = shard_file(tmp_path / "emb" / "passages_0", ["x" * 600], corpus[:1])
    # Then Milvus' refusal is reported on one line naming the collection, exit 1
    assert main(["milvus-load", "--uri", str(tmp_path / "m.db"), "--encoded_ctx_file", str(pattern),
                 "--quiet"]) == 1
    lines = [line for line in capsys.readouterr().err.splitlines() if "ERROR" in line]
    assert len(lines) == 1 and "collection 'passages': Milvus:" in lines[0]
    assert "exceeds max_length" in lines[0]
