"""Error handling of generate_dense_embeddings.py and dense_retriever.py: user errors are one
line and exit 1 (2 for bad flags), bugs keep their traceback, --help exits 0; and
dense_retriever.py's results re-ranked by --reranker."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import dense_retriever
import generate_dense_embeddings
from dpr.index.shards import ShardError, open_shard, read_shard
from dpr.inference import DenseEncoder, load_encoder, load_reranker
from dpr.utils.errors import InputError
from dpr.utils.io import write_vectors
from dpr2hf.cli import main as dpr2hf_main


def _generate_args(checkpoint: Path, passages: Path, prefix: Path, *extra: str) -> list[str]:
    return ["--model_file", str(checkpoint), "--ctx_file", str(passages), "--out_file",
            str(prefix), "--batch_size", "4", "--no_cuda", "--quiet", *extra]


def _retrieve_args(checkpoint: Path, corpus: tuple[Path, Path], pattern: str, out: Path,
                   *extra: str) -> list[str]:
    return ["--model_file", str(checkpoint), "--qa_file", str(corpus[1]), "--ctx_file",
            str(corpus[0]), "--encoded_ctx_file", pattern, "--out_file", str(out),
            "--n-docs", "3", "--no_cuda", "--quiet", *extra]


def _error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if "[ERROR]" in line]


@pytest.fixture(scope="module")
def shard(tmp_path_factory: pytest.TempPathFactory, checkpoint: Path, corpus) -> Path:
    prefix = tmp_path_factory.mktemp("cli_emb") / "p"
    assert generate_dense_embeddings.main(_generate_args(checkpoint, corpus[0], prefix)) == 0
    return prefix


@pytest.mark.parametrize("main", [generate_dense_embeddings.main, dense_retriever.main])
def test_tool_help_exits_0(main, capsys) -> None:
    # When asking for help, Then exit 0 and --debug is documented
    assert main(["--help"]) == 0
    assert "--debug" in capsys.readouterr().out


@pytest.mark.parametrize("error", [RuntimeError, ValueError])
def test_generate_internal_error_keeps_its_traceback(monkeypatch, tmp_path: Path,
                                                     checkpoint: Path, corpus, error) -> None:
    # Given a bug inside the encoding (a bare RuntimeError/ValueError, not a user error)
    def broken(*args, **kwargs):
        raise error("internal failure")

    monkeypatch.setattr(DenseEncoder, "encode_passages", broken)
    # When running the tool, Then the exception escapes main (Python prints its traceback)
    with pytest.raises(error, match="internal failure"):
        generate_dense_embeddings.main(_generate_args(checkpoint, corpus[0], tmp_path / "e"))
    assert not list(tmp_path.iterdir())


def test_generate_user_error_is_one_line_and_debug_shows_traceback(tmp_path: Path,
                                                                   corpus, capsys) -> None:
    # Given a checkpoint that does not exist
    args = _generate_args(tmp_path / "nope.0", corpus[0], tmp_path / "e")
    # When running the tool, Then exit 1 with one error line naming the file, no traceback
    assert generate_dense_embeddings.main(args) == 1
    err = capsys.readouterr().err
    assert len(_error_lines(err)) == 1 and "nope.0" in _error_lines(err)[0]
    assert "Traceback" not in err
    # And with --debug the error escapes with its traceback
    with pytest.raises(InputError, match="nope.0"):
        generate_dense_embeddings.main([*args, "--debug"])


def test_generate_bad_shard_flags_exit_2(tmp_path: Path, checkpoint: Path, corpus,
                                         capsys) -> None:
    args = _generate_args(checkpoint, corpus[0], tmp_path / "e", "--num_shards", "0")
    assert generate_dense_embeddings.main(args) == 2
    assert "--num_shards must be >= 1" in capsys.readouterr().err


@pytest.mark.parametrize("error", [RuntimeError, ValueError])
def test_retriever_internal_error_keeps_its_traceback(monkeypatch, tmp_path: Path,
                                                      checkpoint: Path, corpus, shard: Path,
                                                      error) -> None:
    # Given a bug inside the question encoding
    def broken(*args, **kwargs):
        raise error("internal failure")

    monkeypatch.setattr(DenseEncoder, "encode_questions", broken)
    out = tmp_path / "results.json"
    # When retrieving, Then the exception escapes main and nothing is written
    with pytest.raises(error, match="internal failure"):
        dense_retriever.main(_retrieve_args(checkpoint, corpus, f"{shard}_*.npy", out))
    assert not out.exists()


def test_retriever_user_errors_are_one_line(tmp_path: Path, checkpoint: Path, corpus,
                                            shard: Path, capsys) -> None:
    out = tmp_path / "results.json"
    # Given embeddings that match no file, then embeddings of passages not in --ctx_file
    ids, vectors = read_shard(f"{shard}_0.npy")
    foreign = tmp_path / "foreign_0"
    write_vectors(foreign, [f"x{i}" for i in ids], vectors)
    for pattern, message in ((str(tmp_path / "none_*.npy"), "matches no embedding file"),
                             (f"{foreign}.npy", "passage ids of the embeddings missing")):
        # When retrieving, Then exit 1, one error line, no traceback, nothing written
        assert dense_retriever.main(_retrieve_args(checkpoint, corpus, pattern, out)) == 1
        err = capsys.readouterr().err
        assert len(_error_lines(err)) == 1 and message in err, err
        assert "Traceback" not in err and not out.exists()


def test_retriever_bad_n_docs_exits_2(tmp_path: Path, checkpoint: Path, corpus, shard: Path,
                                      capsys) -> None:
    args = _retrieve_args(checkpoint, corpus, f"{shard}_*.npy", tmp_path / "r.json")
    assert dense_retriever.main([*args, "--n-docs", "0"]) == 2
    assert "--n-docs must be >= 1" in capsys.readouterr().err


def test_retriever_mixed_vector_sizes_are_a_user_error(tmp_path: Path, checkpoint: Path,
                                                       corpus, shard: Path) -> None:
    # Given two embedding files of different vector sizes (numpy would fail with ValueError)
    ids, vectors = read_shard(f"{shard}_0.npy")
    write_vectors(tmp_path / "mixed_0", ids[:2], vectors[:2])
    write_vectors(tmp_path / "mixed_1", ids[2:4], np.zeros((2, 3), np.float32))
    args = _retrieve_args(checkpoint, corpus, str(tmp_path / "mixed_*.npy"),
                          tmp_path / "r.json")
    # Then it is reported as bad input
    assert dense_retriever.main(args) == 1
    with pytest.raises(ShardError, match="vectors of size 3, but .*mixed_0.npy has size"):
        dense_retriever.main([*args, "--debug"])


def test_open_shard_bad_file_is_an_input_error(tmp_path: Path) -> None:
    bad = tmp_path / "v.npy"
    bad.write_bytes(b"not numpy")
    (tmp_path / "v.ids.json").write_text(json.dumps(["a"]))
    with pytest.raises(InputError, match="cannot read vectors"):
        open_shard(str(bad))
    with pytest.raises(InputError, match="expected a .npy"):
        open_shard(str(tmp_path / "v.txt"))


def test_every_tool_finds_stored_relative_paths_beside_the_checkpoint(
        tmp_path: Path, monkeypatch, checkpoint: Path, tiny_camembert: Path, corpus,
        shard: Path) -> None:
    # Given the checkpoint moved with its model folder, its stored path made relative to it,
    # and the tools run from another directory (where the relative path does not exist)
    run = tmp_path / "run"
    shutil.copytree(tiny_camembert, run / "camembert-tiny")
    state = torch.load(checkpoint, weights_only=True)
    state["encoder_params"]["pretrained_model_cfg"] = "camembert-tiny"
    moved = run / "dpr_biencoder.0"
    torch.save(state, moved)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    # When embedding, retrieving, loading for dpr.evaluate and converting with dpr2hf
    prefix = tmp_path / "emb" / "p"
    assert generate_dense_embeddings.main(_generate_args(moved, corpus[0], prefix)) == 0
    assert dense_retriever.main(_retrieve_args(moved, corpus, f"{prefix}_*.npy",
                                               tmp_path / "r.json")) == 0
    model = load_encoder(str(moved), {}, device=torch.device("cpu"), batch_size=4)
    assert dpr2hf_main([str(moved), "--output_dir", str(tmp_path / "hf")]) == 0
    # Then they all used the model folder beside the checkpoint: same vectors as before
    np.testing.assert_allclose(read_shard(f"{prefix}_0.npy")[1],
                               read_shard(f"{shard}_0.npy")[1], atol=1e-6)
    assert model.params["pretrained_model_cfg"] == str(run / "camembert-tiny")


def test_retriever_with_reranker_keeps_the_top_depth_in_the_rerankers_order(
        tmp_path: Path, checkpoint: Path, reranker_checkpoint: Path, corpus,
        shard: Path) -> None:
    # Given the dense top 6 of each question
    plain, reranked = tmp_path / "plain.json", tmp_path / "reranked.json"
    args = _retrieve_args(checkpoint, corpus, f"{shard}_*.npy", plain, "--n-docs", "6")
    assert dense_retriever.main(args) == 0
    # When re-ranking the top 4 with the tiny reranker
    assert dense_retriever.main(_retrieve_args(
        checkpoint, corpus, f"{shard}_*.npy", reranked, "--n-docs", "6", "--reranker",
        str(reranker_checkpoint), "--reranker_depth", "4")) == 0
    before = json.loads(plain.read_text(encoding="utf-8"))
    after = json.loads(reranked.read_text(encoding="utf-8"))
    # Then each question holds the same 4 passages, ordered and scored by the reranker
    reranker = load_reranker(reranker_checkpoint)
    reordered = 0
    for first, second in zip(before, after, strict=True):
        ids = [c["id"] for c in second["ctxs"]]
        assert sorted(ids) == sorted(c["id"] for c in first["ctxs"][:4])
        scores = [float(c["score"]) for c in second["ctxs"]]
        expected = reranker.score_pairs([(second["question"], (c["title"], c["text"]))
                                         for c in second["ctxs"]])
        assert scores == pytest.approx(expected.tolist(), abs=1e-5)
        assert scores == sorted(scores, reverse=True)
        reordered += ids != [c["id"] for c in first["ctxs"][:4]]
    assert reordered > 0


def test_retriever_reranker_errors(tmp_path: Path, checkpoint: Path, corpus, shard: Path,
                                   capsys) -> None:
    out = tmp_path / "r.json"
    args = _retrieve_args(checkpoint, corpus, f"{shard}_*.npy", out)
    # A bi-encoder checkpoint as --reranker: exit 1, one line naming the file and its kind
    assert dense_retriever.main([*args, "--reranker", str(checkpoint)]) == 1
    err = capsys.readouterr().err
    assert len(_error_lines(err)) == 1 and "Traceback" not in err
    assert f"{checkpoint}: a bi-encoder checkpoint, not a reranker" in err
    assert not out.exists()
    # A depth below 1: exit 2 naming the flag
    assert dense_retriever.main([*args, "--reranker", str(checkpoint),
                                 "--reranker_depth", "0"]) == 2
    assert "--reranker_depth must be >= 1" in capsys.readouterr().err
    # A depth without a reranker would be silently unused: exit 2 naming both flags
    assert dense_retriever.main([*args, "--reranker_depth", "5"]) == 2
    assert "--reranker_depth needs --reranker" in capsys.readouterr().err
