"""End-to-end tests of generate_dense_embeddings.py and dense_retriever.py, and of the index."""

from __future__ import annotations

import csv
import gzip
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import NUM_PASSAGES

import dense_retriever
import generate_dense_embeddings
from dpr.data.answers import has_answer
from dpr.data.recipe import passage_items
from dpr.data.records import Passage
from dpr.data.tensorizer import build_tensorizer
from dpr.data.tsv import iter_passages, read_qas
from dpr.evaluation import relevance
from dpr.index import BuildOptions, build_index, index_shards, load_index
from dpr.index.shards import open_shards, read_shard
from dpr.inference import load_encoder
from dpr.models.checkpoint import CheckpointState, save_checkpoint, to_dpr_layout
from dpr.models.factory import build_biencoder
from dpr.utils.io import write_vectors


def _generate(checkpoint: Path, passages: Path, prefix: Path, shard: int, *extra: str) -> int:
    return generate_dense_embeddings.main([
        "--model_file", str(checkpoint), "--ctx_file", str(passages), "--out_file", str(prefix),
        "--shard_id", str(shard), "--num_shards", "2", "--batch_size", "4", "--no_cuda",
        "--quiet", *extra])


@pytest.fixture(scope="module")
def embeddings(tmp_path_factory: pytest.TempPathFactory, checkpoint: Path,
               corpus: tuple[Path, Path]) -> Path:
    prefix = tmp_path_factory.mktemp("emb") / "passages"
    for shard in (0, 1):
        assert _generate(checkpoint, corpus[0], prefix, shard) == 0
    return prefix


def test_generate_two_shards_over_odd_count_encode_every_passage_once(
        embeddings: Path, corpus: tuple[Path, Path]) -> None:
    # Given 17 passages encoded in 2 shards
    shards = [read_shard(f"{embeddings}_{k}.npy") for k in (0, 1)]
    # Then the shards hold 9 and 8 passages, every id exactly once, in file order
    assert [len(ids) for ids, _ in shards] == [9, 8]
    all_ids = shards[0][0] + shards[1][0]
    assert all_ids == [f"p{i}" for i in range(NUM_PASSAGES)]
    assert all(v.dtype == np.float32 and v.ndim == 2 for _, v in shards)


def test_generate_vectors_equal_biencoder_encode_contexts(
        embeddings: Path, checkpoint: Path, corpus: tuple[Path, Path],
        tiny_camembert: Path) -> None:
    # Given the checkpoint loaded by hand and DPR's fixed-length padding
    model = load_encoder(str(checkpoint), {}, device=torch.device("cpu"))
    tensorizer = build_tensorizer("hf_roberta", str(tiny_camembert), sequence_length=64,
                                  do_lower_case=False, pad_to_max=True)
    with corpus[0].open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle, delimiter="\t"))[1:]
    ids, mask = tensorizer.tensorize(passage_items([(r[2], r[1]) for r in rows],
                                                   tensorizer.recipe))
    # When encoding every passage in one batch
    with torch.no_grad():
        expected = model.ctx.encoder(ids, mask).numpy()
    # Then the shard vectors are the same within 1e-5
    got = np.concatenate([read_shard(f"{embeddings}_{k}.npy")[1] for k in (0, 1)])
    np.testing.assert_allclose(got, expected, atol=1e-5)


def _retrieve(checkpoint: Path, corpus: tuple[Path, Path], embeddings: Path, out: Path,
              *extra: str) -> int:
    return dense_retriever.main([
        "--model_file", str(checkpoint), "--qa_file", str(corpus[1]),
        "--ctx_file", str(corpus[0]), "--encoded_ctx_file", f"{embeddings}_*.npy",
        "--out_file", str(out), "--n-docs", "5", "--no_cuda", "--quiet", *extra])


def test_retriever_writes_dpr_results_json(tmp_path: Path, checkpoint: Path, corpus,
                                           embeddings: Path) -> None:
    # When retrieving the top 5 of 17 passages for 8 questions
    out = tmp_path / "results.json"
    assert _retrieve(checkpoint, corpus, embeddings, out) == 0
    results = json.loads(out.read_text(encoding="utf-8"))
    # Then the JSON has DPR's structure, sorted scores and has_answer as recomputed
    assert len(results) == 8
    for record in results:
        assert set(record) == {"question", "answers", "ctxs"}
        assert len(record["ctxs"]) == 5
        scores = [float(c["score"]) for c in record["ctxs"]]
        assert all(isinstance(c["score"], str) for c in record["ctxs"])
        assert scores == sorted(scores, reverse=True)
        for ctx in record["ctxs"]:
            assert set(ctx) == {"id", "title", "text", "score", "has_answer"}
            assert ctx["has_answer"] == has_answer(record["answers"], ctx["text"])
    assert out.read_text(encoding="utf-8").startswith("[\n    {")


def test_retriever_hnsw_and_saved_index_give_flat_ranking(tmp_path: Path, spread: Path,
                                                          corpus) -> None:
    # Given embeddings of a model whose scores differ by whole units (the trained tiny model's
    # vectors are nearly parallel: its scores tie to 6 digits, its rankings are noise)
    prefix = tmp_path / "emb" / "passages"
    for shard in (0, 1):
        assert _generate(spread, corpus[0], prefix, shard) == 0
    # and the flat results
    flat, hnsw, reloaded = (tmp_path / f"{n}.json" for n in ("flat", "hnsw", "reloaded"))
    assert _retrieve(spread, corpus, prefix, flat) == 0
    # When using HNSW, saving the index, then loading it
    assert _retrieve(spread, corpus, prefix, hnsw, "--hnsw_index", "--save_or_load_index") == 0
    assert (prefix.parent / "passages.HNSW512" / "build.json").is_file()
    assert _retrieve(spread, corpus, prefix, reloaded, "--hnsw_index",
                     "--save_or_load_index") == 0

    def load(path: Path) -> tuple[list[list[str]], np.ndarray]:
        records = json.loads(path.read_text("utf-8"))
        return ([[c["id"] for c in r["ctxs"]] for r in records],
                np.array([[float(c["score"]) for c in r["ctxs"]] for r in records]))
    # Then no two flat scores of a question tie, so the rankings below are decided
    assert np.diff(load(flat)[1], axis=1).max() < -1e-3
    # and HNSW and its saved index give exactly the flat ranking, with the flat scores
    assert load(hnsw)[0] == load(flat)[0] == load(reloaded)[0]
    np.testing.assert_allclose(load(hnsw)[1], load(flat)[1], rtol=1e-5)


def test_index_flat_and_hnsw_rank_alike_and_survive_save_load(tmp_path: Path) -> None:
    # Given random vectors of varied norms in two shards, added in several buffers
    rng = np.random.default_rng(0)
    vectors = (rng.normal(size=(400, 24)) * rng.uniform(0.2, 3, size=(400, 1))).astype("f4")
    queries = rng.normal(size=(10, 24)).astype("f4")
    ids = [f"d{i}" for i in range(400)]
    for k, part in enumerate((slice(0, 250), slice(250, 400))):
        write_vectors(tmp_path / f"emb_{k}", ids[part], vectors[part])
    shards = open_shards([str(tmp_path / f"emb_{k}.npy") for k in (0, 1)])
    options = {"Flat": BuildOptions(factory="Flat", chunk_rows=150, quiet=True),
               "HNSW512": BuildOptions(factory="HNSW512", chunk_rows=150, ef_construction=200,
                                       quiet=True)}
    flat, hnsw = (index_shards(shards, options[name]) for name in ("Flat", "HNSW512"))
    # When searching both
    flat_scores, flat_ids = flat.search(queries, 10)
    hnsw_scores, hnsw_ids = hnsw.search(queries, 10)
    # Then the rankings and inner-product scores agree with the exact computation
    assert flat_ids == hnsw_ids
    np.testing.assert_allclose(hnsw_scores, flat_scores, rtol=1e-4, atol=1e-4)
    exact = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
    assert flat_ids == [[ids[j] for j in row] for row in exact]
    # And save -> load gives the same results, without pickle
    for name, index in (("Flat", flat), ("HNSW512", hnsw)):
        build_index(shards, tmp_path / name, options[name])
        loaded = load_index(tmp_path / name)
        again_scores, again_ids = loaded.search(queries, 10)
        assert again_ids == index.search(queries, 10)[1]
        np.testing.assert_allclose(again_scores, index.search(queries, 10)[0], atol=1e-5)


def test_question_trailing_mark_stripped_as_in_training(checkpoint: Path) -> None:
    # Given the inference model
    model = load_encoder(str(checkpoint), {}, device=torch.device("cpu"))
    # When encoding questions with and without one trailing '?'
    with_mark, without, double, raw = model.encode_questions(
        ["Où la Loire prend-elle sa source?", "Où la Loire prend-elle sa source",
         "Où la Loire prend-elle sa source??", "Où la Loire prend-elle sa source?"])
    ids, mask = model.question.tensorizer.tensorize(["Où la Loire prend-elle sa source?"])
    with torch.no_grad():
        kept = model.question.encoder(ids, mask)[0].numpy()
    # Then one '?' is removed (as training does), only one
    np.testing.assert_allclose(with_mark, without, atol=1e-6)
    assert not np.allclose(with_mark, kept, atol=1e-4)
    np.testing.assert_allclose(double, kept, atol=1e-5)
    assert np.array_equal(with_mark, raw)


def test_generate_malformed_row_exits_1_without_output(tmp_path: Path, checkpoint: Path,
                                                       capsys) -> None:
    # Given a passage file whose third row lacks the title column
    bad = tmp_path / "bad.tsv"
    bad.write_text("id\ttext\ttitle\np0\tun texte\tT\np1\tsans titre\n", encoding="utf-8")
    prefix = tmp_path / "out" / "emb"
    # When encoding it
    code = _generate(checkpoint, bad, prefix, 0)
    # Then the run fails with a message naming the file and line, and writes nothing
    assert code == 1
    assert f"{bad}:3" in capsys.readouterr().err
    assert not prefix.parent.exists() or not any(prefix.parent.iterdir())


def test_missing_checkpoint_exits_1_without_output(tmp_path: Path, corpus, embeddings) -> None:
    out = tmp_path / "results.json"
    assert _retrieve(tmp_path / "nope.0", corpus, embeddings, out) == 1
    assert not out.exists()
    assert _generate(tmp_path / "nope.0", corpus[0], tmp_path / "emb", 0) == 1
    assert not list(tmp_path.glob("emb*"))


def test_retriever_bad_qa_row_names_file_and_line(tmp_path: Path, checkpoint: Path, corpus,
                                                  embeddings, capsys) -> None:
    qa = tmp_path / "qas.tsv"
    qa.write_text("Qui ?\t[\"Jean\"]\nQuoi ?\t__import__('os')\n", encoding="utf-8")
    out = tmp_path / "results.json"
    assert _retrieve(checkpoint, (corpus[0], qa), embeddings, out) == 1
    assert f"{qa}:2" in capsys.readouterr().err and not out.exists()


def test_dpr_pickle_refused_without_opt_in(tmp_path: Path, checkpoint: Path, corpus,
                                           embeddings: Path, capsys) -> None:
    # Given DPR's pickled embeddings of the same passages
    ids, vectors = zip(*(read_shard(f"{embeddings}_{k}.npy") for k in (0, 1)))
    rows = [(i, v) for part_ids, part in zip(ids, vectors) for i, v in zip(part_ids, part)]
    pkl = tmp_path / "dpr_0.pkl"
    pkl.write_bytes(pickle.dumps(rows))
    out = tmp_path / "results.json"
    args = ["--model_file", str(checkpoint), "--qa_file", str(corpus[1]),
            "--ctx_file", str(corpus[0]), "--encoded_ctx_file", str(pkl),
            "--out_file", str(out), "--n-docs", "3", "--no_cuda", "--quiet"]
    # When reading them without the opt-in, then they are refused
    assert dense_retriever.main(args) == 1
    assert "--allow_unsafe_pickle" in capsys.readouterr().err and not out.exists()
    # And with it they are read (with a warning)
    assert dense_retriever.main([*args, "--allow_unsafe_pickle"]) == 0
    assert "unpickling" in capsys.readouterr().err and out.exists()


def test_qa_reader_accepts_dpr_literal_lists(tmp_path: Path) -> None:
    qa = tmp_path / "qas.csv"
    qa.write_text("qui a écrit ?\t['Victor Hugo', \"l'auteur\"]\nquand ?\t[\"1802\"]\n",
                  encoding="utf-8")
    assert read_qas(qa) == [("qui a écrit ?", ["Victor Hugo", "l'auteur"]),
                            ("quand ?", ["1802"])]


def test_bad_flags_exit_2() -> None:
    assert generate_dense_embeddings.main(["--model_file", "x", "--ctx_file", "y",
                                           "--out_file", "z", "--shard_id", "2",
                                           "--num_shards", "2"]) == 2
    assert dense_retriever.main(["--model_file", "x"]) == 2


@pytest.mark.parametrize("encoder_model_type", ["hf_bert", "fairseq_roberta"])
def test_tools_work_for_other_encoder_types(tmp_path: Path, corpus, encoder_model_type: str,
                                            request: pytest.FixtureRequest) -> None:
    # Given an untrained checkpoint of the type (fairseq: the folder is both model and tokenizer)
    folder = request.getfixturevalue("tiny_bert" if encoder_model_type == "hf_bert"
                                     else "fairseq_camembert")
    pretrained_file = str(folder) if encoder_model_type == "fairseq_roberta" else None
    model = build_biencoder(encoder_model_type, str(folder), pretrained_file=pretrained_file)
    params = {"encoder_model_type": encoder_model_type, "pretrained_model_cfg": str(folder),
              "pretrained_file": pretrained_file, "do_lower_case": True, "projection_dim": 0,
              "sequence_length": 32}
    ckpt = tmp_path / "dpr_biencoder.0"
    save_checkpoint(CheckpointState(model_dict=to_dpr_layout(model.state_dict()),
                                    encoder_params=params), ckpt)
    prefix, out = tmp_path / "emb" / "p", tmp_path / "results.json"
    # When encoding all passages in one shard and retrieving
    assert generate_dense_embeddings.main([
        "--model_file", str(ckpt), "--ctx_file", str(corpus[0]), "--out_file", str(prefix),
        "--no_cuda", "--quiet"]) == 0
    assert dense_retriever.main([
        "--model_file", str(ckpt), "--qa_file", str(corpus[1]), "--ctx_file", str(corpus[0]),
        "--encoded_ctx_file", f"{prefix}_*.npy", "--out_file", str(out), "--n-docs", "3",
        "--no_cuda", "--quiet"]) == 0
    # Then vectors have the tower's size and every question gets 3 passages
    ids, vectors = read_shard(f"{prefix}_0.npy")
    assert vectors.shape == (NUM_PASSAGES, model.question_model.out_size)
    assert all(len(r["ctxs"]) == 3 for r in json.loads(out.read_text(encoding="utf-8")))


def test_passage_reader_accepts_gz_and_csv_quoting(tmp_path: Path) -> None:
    path = tmp_path / "p.tsv.gz"
    with gzip.open(path, "wt", encoding="utf-8", newline="") as out:
        csv.writer(out, delimiter="\t", lineterminator="\n").writerows(
            [["id", "text", "title"], ["1", 'un "texte"\tavec tab', "Titre"]])
    assert [(p.passage_id, p.text, p.title) for p in iter_passages(path)] == [
        ("1", 'un "texte"\tavec tab', "Titre")]


@pytest.mark.usefixtures("restore_root_logging")
def test_retriever_takes_dpr_style_glob_and_skips_ids_json(tmp_path: Path, checkpoint: Path,
                                                           corpus, embeddings: Path,
                                                           capsys) -> None:
    # Given DPR's pattern "passages_*", which also matches the .ids.json beside each .npy
    assert len(list(embeddings.parent.glob(f"{embeddings.name}_*.ids.json"))) == 2
    out, reference = tmp_path / "dpr_glob.json", tmp_path / "npy_glob.json"
    args = ["--model_file", str(checkpoint), "--qa_file", str(corpus[1]), "--ctx_file",
            str(corpus[0]), "--out_file", str(out), "--n-docs", "5", "--no_cuda", "--quiet"]
    # When retrieving with it
    assert dense_retriever.main([*args, "--encoded_ctx_file", f"{embeddings}_*"]) == 0
    # Then only the 2 .npy files are read: the results equal those of "passages_*.npy"
    assert "2 embedding file(s), 2 other file(s) skipped" in capsys.readouterr().err
    assert _retrieve(checkpoint, corpus, embeddings, reference) == 0
    assert json.loads(out.read_text()) == json.loads(reference.read_text())


@pytest.mark.usefixtures("restore_root_logging")
def test_retriever_glob_matching_no_embedding_file_is_an_input_error(
        tmp_path: Path, checkpoint: Path, corpus, embeddings: Path, capsys) -> None:
    args = ["--model_file", str(checkpoint), "--qa_file", str(corpus[1]), "--ctx_file",
            str(corpus[0]), "--encoded_ctx_file", f"{embeddings}_*.json", "--no_cuda"]
    assert dense_retriever.main(args) == 1
    assert "matches no embedding file (.npy, .pkl)" in capsys.readouterr().err


def test_score_results_in_worker_processes_equals_in_process(monkeypatch, caplog) -> None:
    # Given 120 questions with 3 retrieved passages each (241 distinct passages), and the
    # passages a process must have to be worth starting lowered to 100
    monkeypatch.setattr(relevance, "TEXTS_PER_WORKER", 100)
    passages = {"rien": Passage("T", "rien", "rien")}
    passages |= {f"a{i}": Passage("T", f"un mot{i} ici", f"a{i}") for i in range(120)}
    passages |= {f"b{i}": Passage("T", f"mot{i}", f"b{i}") for i in range(1, 121)}
    questions = [(f"q{i}", [f"mot{i}"]) for i in range(120)]
    hits = [[f"a{i}", "rien", f"b{i + 1}"] for i in range(120)]
    scores = np.zeros((120, 3), np.float32)
    # When matching in this process and with --validation_workers 2
    with caplog.at_level("INFO", logger="dpr.evaluation.relevance"):
        alone = dense_retriever.score_results(questions, hits, passages, match="string",
                                              scores=scores, workers=1)
        pooled = dense_retriever.score_results(questions, hits, passages, match="string",
                                               scores=scores, workers=2)
    # Then two processes did the work and the matches are the same
    assert "Preparing 241 retrieved passages for answer matching in 2 processes" in caplog.text
    assert pooled == alone
    assert [[c["has_answer"] for c in r["ctxs"]] for r in pooled] == [[True, False, False]] * 120


@pytest.mark.usefixtures("restore_root_logging")
def test_retriever_validation_workers_below_1_exits_2(tmp_path: Path, checkpoint: Path,
                                                      corpus, embeddings: Path, capsys) -> None:
    assert _retrieve(checkpoint, corpus, embeddings, tmp_path / "r.json",
                     "--validation_workers", "0") == 2
    assert "--validation_workers must be >= 1" in capsys.readouterr().err
