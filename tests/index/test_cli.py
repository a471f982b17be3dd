"""`python -m dpr.index build|search` in-process: run files, and one clear error line (exit 1
for bad input, 2 for bad flags) with nothing half-written for each bad input."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from dpr.index.cli import main


def _error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if "[ERROR]" in line]


def _build(pattern: str, out: Path, *extra: str) -> int:
    return main(["build", "--encoded_ctx_file", pattern, "--output_dir", str(out), "--quiet",
                 "--factory", "Flat", *extra])


@pytest.fixture
def emb(tmp_path: Path, corpus: np.ndarray, shards_of) -> str:
    """Glob of 3 float32 shards of the 3,000 clustered vectors."""
    return shards_of(tmp_path / "emb", corpus[:600], 3)


@pytest.fixture
def flat_index(tmp_path: Path, emb: str) -> Path:
    assert _build(emb, tmp_path / "idx") == 0
    return tmp_path / "idx"


@pytest.fixture
def query_file(tmp_path: Path, queries: np.ndarray) -> Path:
    """5 queries with ids q0..q4 beside them (the shards' layout)."""
    np.save(tmp_path / "q.npy", queries[:5])
    (tmp_path / "q.ids.json").write_text(json.dumps([f"q{i}" for i in range(5)]))
    return tmp_path / "q.npy"


def test_cli_build_then_search_writes_tsv_json_and_trec_runs(
        tmp_path: Path, flat_index: Path, query_file: Path, corpus: np.ndarray,
        queries: np.ndarray) -> None:
    # When searching the built index into the three run formats
    for name in ("run.tsv", "run.json", "run.trec"):
        assert main(["search", "--index", str(flat_index), "--queries", str(query_file),
                     "--n_docs", "3", "--out_file", str(tmp_path / name)]) == 0
    # Then each holds the exact top 3 of each query, under the query ids
    best = np.argsort(-(queries[:5] @ corpus[:600].T), axis=1)[:, :3]
    tsv = (tmp_path / "run.tsv").read_text().splitlines()
    assert tsv[0] == "query_id\tpassage_id\trank\tscore" and len(tsv) == 16
    assert tsv[1].split("\t")[:3] == ["q0", f"p{best[0, 0]}", "1"]
    runs = json.loads((tmp_path / "run.json").read_text())
    assert [r["passage_ids"] for r in runs] == [[f"p{i}" for i in row] for row in best]
    trec = (tmp_path / "run.trec").read_text().splitlines()
    assert trec[2].split()[:4] == ["q0", "Q0", f"p{best[0, 2]}", "3"]


def test_cli_build_refuses_a_shard_of_another_dimension(
        tmp_path: Path, emb: str, shard_file, capsys: pytest.CaptureFixture) -> None:
    # Given a fourth shard of vectors of size 16
    shard_file(tmp_path / "emb" / "passages_3", ["x0"], np.zeros((1, 16), np.float32))
    # Then the build exits 1 naming that shard, and writes nothing
    assert _build(emb, tmp_path / "idx") == 1
    [line] = _error_lines(capsys.readouterr().err)
    assert "passages_3.npy: vectors of size 16" in line and "size 32" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["emb"]


def test_cli_build_refuses_a_missing_id_file(
        tmp_path: Path, emb: str, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "emb" / "passages_1.ids.json").unlink()
    assert _build(emb, tmp_path / "idx") == 1
    [line] = _error_lines(capsys.readouterr().err)
    assert "passages_1.ids.json: id file missing" in line
    assert not (tmp_path / "idx").exists()


def test_cli_build_refuses_an_id_count_unlike_the_vectors(
        tmp_path: Path, emb: str, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "emb" / "passages_2.ids.json").write_text(json.dumps(["a", "b"]))
    assert _build(emb, tmp_path / "idx") == 1
    [line] = _error_lines(capsys.readouterr().err)
    assert "passages_2.ids.json: 2 ids for 200 vectors" in line


@pytest.mark.parametrize("factory,reason", [
    ("Bogus", "could not parse index string"), ("IVF16,PQ7", "multiple of the number")])
def test_cli_build_refuses_a_factory_faiss_refuses(
        tmp_path: Path, emb: str, capsys: pytest.CaptureFixture, factory: str,
        reason: str) -> None:
    # When faiss cannot parse the string, or refuses it for 32-dimensional vectors
    assert _build(emb, tmp_path / "idx", "--factory", factory) == 2
    # Then one line names the flag and faiss' reason
    [line] = _error_lines(capsys.readouterr().err)
    assert f"--factory '{factory}'" in line and reason in line
    assert not (tmp_path / "idx").exists()


@pytest.mark.parametrize("extra,message", [
    (["--factory", "IVF1024,Flat"], "cannot be trained on 600 vectors"),
    (["--on_disk"], "--on_disk needs an IVF index"),
    (["--metric", "cosine"], "invalid choice"),
    (["--train_sample", "0"], "--train_sample must be >= 1")])
def test_cli_build_refuses_inconsistent_flags_with_exit_2(
        tmp_path: Path, emb: str, capsys: pytest.CaptureFixture, extra: list[str],
        message: str) -> None:
    assert _build(emb, tmp_path / "idx", *extra) == 2
    assert message in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["emb"]


def test_cli_build_refuses_an_empty_glob(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert _build(str(tmp_path / "nothing_*"), tmp_path / "idx") == 1
    [line] = _error_lines(capsys.readouterr().err)
    assert "--encoded_ctx_file" in line and "nothing_*: matches no embedding file" in line


def test_cli_build_leaves_no_folder_when_a_late_check_fails(
        tmp_path: Path, emb: str, capsys: pytest.CaptureFixture) -> None:
    # Given a passage id repeated in the last shard (found only once every vector is added)
    ids = json.loads((tmp_path / "emb" / "passages_2.ids.json").read_text())
    (tmp_path / "emb" / "passages_2.ids.json").write_text(json.dumps(ids[:-1] + ["p0"]))
    # Then the build fails and neither the index folder nor its staging folder is left
    assert _build(emb, tmp_path / "idx") == 1
    assert "'p0' occurs in several" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["emb"]


def test_cli_build_refuses_an_existing_folder_unless_overwrite(
        tmp_path: Path, emb: str, flat_index: Path, capsys: pytest.CaptureFixture) -> None:
    assert _build(emb, flat_index) == 2
    assert "exists" in capsys.readouterr().err
    assert _build(emb, flat_index, "--overwrite") == 0


def test_cli_search_refuses_an_nprobe_above_the_list_count(
        tmp_path: Path, emb: str, query_file: Path, capsys: pytest.CaptureFixture) -> None:
    # Given an IVF index of 16 lists
    assert _build(emb, tmp_path / "ivf", "--factory", "IVF16,Flat") == 0
    # When searching with 17 lists, or with efSearch (it has no HNSW graph)
    for flag, value, message in (("--nprobe", "17", "--nprobe must be in [1, 16]"),
                                 ("--ef_search", "64", "--ef_search: the index")):
        assert main(["search", "--index", str(tmp_path / "ivf"), "--queries", str(query_file),
                     "--out_file", str(tmp_path / "run.tsv"), flag, value]) == 2
        # Then one line names the flag, and no run is written
        [line] = _error_lines(capsys.readouterr().err)
        assert message in line
    assert not (tmp_path / "run.tsv").exists()


def test_cli_search_refuses_queries_of_another_dimension(
        tmp_path: Path, flat_index: Path, capsys: pytest.CaptureFixture) -> None:
    np.save(tmp_path / "q16.npy", np.zeros((2, 16), np.float32))
    assert main(["search", "--index", str(flat_index), "--queries", str(tmp_path / "q16.npy"),
                 "--out_file", str(tmp_path / "run.json")]) == 1
    assert "index holds vectors of size 32" in capsys.readouterr().err


def test_cli_search_refuses_a_folder_without_index(
        tmp_path: Path, query_file: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["search", "--index", str(tmp_path / "none"), "--queries", str(query_file),
                 "--out_file", str(tmp_path / "run.tsv")]) == 1
    assert "build.json: cannot read the build settings" in capsys.readouterr().err


def test_cli_build_reads_dpr_pickles_only_when_allowed(
        tmp_path: Path, corpus: np.ndarray, query_file: Path,
        capsys: pytest.CaptureFixture) -> None:
    # Given DPR's pickled (id, vector) shard
    rows = [(f"p{i}", corpus[i]) for i in range(50)]
    (tmp_path / "dpr").mkdir()
    with open(tmp_path / "dpr" / "wiki_passages_0.pkl", "wb") as handle:
        pickle.dump(rows, handle)
    pattern = str(tmp_path / "dpr" / "wiki_passages_*")
    # Then it is refused by default, and indexed with --allow_unsafe_pickle
    assert _build(pattern, tmp_path / "idx") == 1
    assert "--allow_unsafe_pickle" in capsys.readouterr().err
    assert _build(pattern, tmp_path / "idx", "--allow_unsafe_pickle") == 0
    # And the index searches the same with its files memory-mapped
    for mmap in ([], ["--mmap"]):
        out = tmp_path / f"run{len(mmap)}.json"
        assert main(["search", "--index", str(tmp_path / "idx"), "--queries", str(query_file),
                     "--n_docs", "2", "--out_file", str(out), *mmap]) == 0
    assert (tmp_path / "run0.json").read_text() == (tmp_path / "run1.json").read_text()
