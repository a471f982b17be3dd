"""generate_dense_embeddings.py: chunked, resumable encoding, split over the processes of a
launcher, float16 vectors, DPR's shards, and the manifest that refuses to mix two runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import NUM_PASSAGES, ROOT, free_port, training_env

import generate_dense_embeddings
from dpr.inference import corpus as corpus_module
from dpr.utils.io import write_vectors

CHUNK = 5  # 17 passages: chunks of 5, 5, 5 and 2
LAUNCHER_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "SLURM_PROCID", "SLURM_NTASKS",
                 "SLURM_STEP_NUM_TASKS", "SLURM_LOCALID")


@pytest.fixture(autouse=True)
def single_process(monkeypatch) -> None:
    """No launcher variables inherited from the test's own environment."""
    for name in LAUNCHER_VARS:
        monkeypatch.delenv(name, raising=False)


def _args(model: Path, passages: Path, prefix: Path, *extra: str) -> list[str]:
    return ["--model_file", str(model), "--ctx_file", str(passages), "--out_file", str(prefix),
            "--chunk_size", str(CHUNK), "--batch_size", "4", "--no_cuda", "--quiet", *extra]


def _generate(*args: str) -> int:
    return generate_dense_embeddings.main(list(args))


def _chunks(prefix: Path) -> dict[int, tuple[list[str], np.ndarray]]:
    out = {}
    for npy in prefix.parent.glob(f"{prefix.name}_*.npy"):
        k = int(npy.stem.rsplit("_", 1)[1])
        ids = json.loads(Path(str(npy)[: -len(".npy")] + ".ids.json").read_text())
        out[k] = (ids, np.load(npy))
    return out


def _mtimes(prefix: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in prefix.parent.glob(f"{prefix.name}_*")}


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_camembert: Path, corpus) -> Path:
    """The corpus encoded by one process in chunks of 5 (float32)."""
    prefix = tmp_path_factory.mktemp("reference") / "emb"
    assert _generate(*_args(tiny_camembert, corpus[0], prefix)) == 0
    return prefix


def test_generate_writes_chunks_covering_the_corpus_in_order(reference: Path) -> None:
    chunks = _chunks(reference)
    assert sorted(chunks) == [0, 1, 2, 3]
    ids = [i for k in sorted(chunks) for i in chunks[k][0]]
    assert ids == [f"p{i}" for i in range(NUM_PASSAGES)]
    assert [len(chunks[k][1]) for k in sorted(chunks)] == [5, 5, 5, 2]
    manifest = json.loads(Path(f"{reference}.manifest.json").read_text())
    assert manifest["layout"] == {"chunk_size": CHUNK} and manifest["vector_dtype"] == "float32"


def test_generate_rerun_encodes_only_the_missing_chunk(tmp_path: Path, tiny_camembert: Path,
                                                       corpus, reference: Path,
                                                       capsys) -> None:
    # Given a complete output whose chunk 2 was deleted
    prefix = tmp_path / "emb"
    assert _generate(*_args(tiny_camembert, corpus[0], prefix)) == 0
    os.unlink(f"{prefix}_2.npy")
    before = _mtimes(prefix)
    # When running the same command again
    capsys.readouterr()
    assert _generate(*_args(tiny_camembert, corpus[0], prefix)) == 0
    log = capsys.readouterr().err
    # Then only chunk 2 is encoded, the other files are untouched, the result is complete
    assert "Chunk 2 (passages 10..15): encoding (missing)" in log
    assert "encoded 1 chunk(s) (5 passages" in log
    assert {n: t for n, t in _mtimes(prefix).items() if not n.startswith("emb_2.")} == \
        {n: t for n, t in before.items() if not n.startswith("emb_2.")}
    np.testing.assert_allclose(_chunks(prefix)[2][1], _chunks(reference)[2][1], atol=1e-6)


def test_generate_resumes_after_a_crash_after_the_first_chunk(tmp_path: Path, monkeypatch,
                                                              tiny_camembert: Path, corpus,
                                                              reference: Path, capsys) -> None:
    # Given a run that dies while writing its second chunk (after chunk 0 was written)
    written = []

    def dying(stem, ids, vectors, **kwargs):
        if written:
            raise KeyboardInterrupt
        written.append(stem)
        return write_vectors(stem, ids, vectors, **kwargs)

    monkeypatch.setattr(corpus_module, "write_vectors", dying)
    prefix = tmp_path / "emb"
    with pytest.raises(KeyboardInterrupt):
        _generate(*_args(tiny_camembert, corpus[0], prefix))
    assert sorted(_chunks(prefix)) == [0]
    monkeypatch.setattr(corpus_module, "write_vectors", write_vectors)
    # When rerunning, Then chunk 0 is skipped and chunks 1-3 encoded: the output equals one run's
    capsys.readouterr()
    assert _generate(*_args(tiny_camembert, corpus[0], prefix)) == 0
    log = capsys.readouterr().err
    assert "Chunk 0 (5 passages): complete, skipped" in log
    assert "encoded 3 chunk(s) (12 passages" in log
    done, ref = _chunks(prefix), _chunks(reference)
    for k in ref:
        assert done[k][0] == ref[k][0]
        np.testing.assert_allclose(done[k][1], ref[k][1], atol=1e-6)


def test_generate_redoes_a_truncated_chunk(tmp_path: Path, tiny_camembert: Path, corpus,
                                           capsys) -> None:
    # Given an output whose chunk 1 was cut short (a copy interrupted, a full disk)
    prefix = tmp_path / "emb"
    assert _generate(*_args(tiny_camembert, corpus[0], prefix)) == 0
    npy = Path(f"{prefix}_1.npy")
    npy.write_bytes(npy.read_bytes()[:-40])
    # When rerunning, Then that chunk alone is encoded again and is whole
    capsys.readouterr()
    assert _generate(*_args(tiny_camembert, corpus[0], prefix)) == 0
    log = capsys.readouterr().err
    assert "Chunk 1 (passages 5..10): encoding (unreadable" in log
    assert "encoded 1 chunk(s)" in log
    assert np.load(npy).shape == (5, 32)


def test_generate_slurm_task_encodes_its_share(tmp_path: Path, monkeypatch,
                                               tiny_camembert: Path, corpus,
                                               reference: Path) -> None:
    # Given task 1 of a 2-task SLURM step
    monkeypatch.setenv("SLURM_PROCID", "1")
    monkeypatch.setenv("SLURM_NTASKS", "2")
    prefix = tmp_path / "emb"
    # When it runs, Then it writes chunks 1 and 3 only, equal to one process's
    assert _generate(*_args(tiny_camembert, corpus[0], prefix)) == 0
    done, ref = _chunks(prefix), _chunks(reference)
    assert sorted(done) == [1, 3]
    for k in done:
        np.testing.assert_allclose(done[k][1], ref[k][1], atol=1e-6)


def test_generate_two_processes_equal_one(tmp_path: Path, tiny_camembert: Path, corpus,
                                          reference: Path) -> None:
    # Given 2 processes started by torchrun
    prefix = tmp_path / "emb"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
           f"--master_port={free_port()}", "generate_dense_embeddings.py",
           *_args(tiny_camembert, corpus[0], prefix)]
    done = subprocess.run(cmd, cwd=ROOT, env=training_env(), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    # Then each chunk was written once, with the ids and vectors one process writes
    assert "worker 0 of 2" in done.stderr
    two, one = _chunks(prefix), _chunks(reference)
    assert sorted(two) == sorted(one)
    for k in one:
        assert two[k][0] == one[k][0]
        np.testing.assert_allclose(two[k][1], one[k][1], atol=1e-5)


def test_generate_float16_vectors(tmp_path: Path, tiny_camembert: Path, corpus,
                                  reference: Path) -> None:
    prefix = tmp_path / "emb"
    assert _generate(*_args(tiny_camembert, corpus[0], prefix, "--vector_dtype",
                            "float16")) == 0
    half, full = _chunks(prefix), _chunks(reference)
    for k in full:
        assert half[k][1].dtype == np.float16 and half[k][0] == full[k][0]
        np.testing.assert_allclose(half[k][1].astype(np.float32), full[k][1], rtol=2e-3,
                                   atol=2e-3)


def test_generate_dpr_shards_keep_their_names_and_rows(tmp_path: Path, tiny_camembert: Path,
                                                       corpus, reference: Path) -> None:
    # Given DPR's flags: shard 1 of 3 (rows 6..12 of 17, s = ceil(17/3) = 6)
    prefix = tmp_path / "emb"
    assert _generate(*_args(tiny_camembert, corpus[0], prefix, "--shard_id", "1",
                            "--num_shards", "3")) == 0
    # Then one file named for the shard holds exactly those rows, as DPR's tool wrote
    done = _chunks(prefix)
    assert list(done) == [1] and done[1][0] == [f"p{i}" for i in range(6, 12)]
    rows = np.vstack([_chunks(reference)[k][1] for k in range(4)])
    np.testing.assert_allclose(done[1][1], rows[6:12], atol=1e-5)
    # And shard 0 of the same layout can be added later by another job
    assert _generate(*_args(tiny_camembert, corpus[0], prefix, "--shard_id", "0",
                            "--num_shards", "3")) == 0
    assert sorted(_chunks(prefix)) == [0, 1]


def test_generate_manifest_mismatch_is_one_line_exit_1(tmp_path: Path, tiny_camembert: Path,
                                                       corpus, capsys) -> None:
    # Given chunks encoded with the model's CLS pooling
    prefix = tmp_path / "emb"
    assert _generate(*_args(tiny_camembert, corpus[0], prefix)) == 0
    before = _mtimes(prefix)
    capsys.readouterr()
    # When rerunning with mean pooling into the same prefix
    assert _generate(*_args(tiny_camembert, corpus[0], prefix, "--pooling", "mean")) == 1
    # Then one error line names the manifest and the difference, and nothing was touched
    errors = [line for line in capsys.readouterr().err.splitlines() if "[ERROR]" in line]
    assert len(errors) == 1 and "emb.manifest.json" in errors[0]
    assert "another model recipe" in errors[0]
    assert _mtimes(prefix) == before


def test_generate_rerun_in_another_precision_is_refused_naming_the_flag(
        tmp_path: Path, tiny_camembert: Path, corpus, capsys) -> None:
    # Given chunks encoded in float32, chunk 2 of which was lost
    prefix = tmp_path / "emb"
    assert _generate(*_args(tiny_camembert, corpus[0], prefix)) == 0
    os.unlink(f"{prefix}_2.npy")
    before = _mtimes(prefix)
    capsys.readouterr()
    # When rerunning under bfloat16 autocast into the same prefix
    assert _generate(*_args(tiny_camembert, corpus[0], prefix, "--fp16", "--amp_dtype",
                            "bfloat16")) == 1
    # Then one error line names the precision flags and both types, and no chunk of the
    # other precision was written beside the float32 ones
    errors = [line for line in capsys.readouterr().err.splitlines() if "[ERROR]" in line]
    assert len(errors) == 1 and "emb.manifest.json" in errors[0]
    assert "another precision (--fp16, --amp_dtype): float32 there, bfloat16 now" in errors[0]
    assert _mtimes(prefix) == before
    assert json.loads(Path(f"{prefix}.manifest.json").read_text())["precision"] == "float32"


def test_generate_dpr_shards_under_a_launcher_are_a_usage_error(monkeypatch, tmp_path: Path,
                                                                tiny_camembert: Path, corpus,
                                                                capsys) -> None:
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    args = _args(tiny_camembert, corpus[0], tmp_path / "emb", "--num_shards", "2")
    assert _generate(*args) == 2
    assert "use --chunk_size" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
