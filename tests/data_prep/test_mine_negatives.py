"""End-to-end tests of ``python -m data_prep.mine_negatives`` on tiny checkpoints."""

from __future__ import annotations

import csv
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import ROOT, free_port

from data_prep import mine_negatives
from dpr.data.answers import has_answer
from dpr.data.records import Passage
from dpr.inference import load_encoder
from dpr.retrieval.mining import EncodedCorpus

SAMPLE_SQUAD = ROOT / "examples" / "data" / "fr_sample_squad.json"
COMMON = ["--batch_size", "4", "--no_cuda", "--quiet"]


@pytest.fixture(autouse=True)
def _restore_root_logger():
    """The CLI's setup_logging binds a handler to this test's (captured) stderr; later tests
    must not log into that closed stream."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def _corpus_rows(passages: Path) -> list[list[str]]:
    with passages.open(encoding="utf-8", newline="") as handle:
        return list(csv.reader(handle, delimiter="\t"))[1:]


@pytest.fixture(scope="module")
def records_file(tmp_path_factory: pytest.TempPathFactory, corpus) -> Path:
    """DPR records of every sample question: the positive is its paragraph (passage p<n> when
    in the 17-passage corpus, else without id), BM25-style negatives are other passages."""
    rows = _corpus_rows(corpus[0])
    by_text = {text: pid for pid, text, _ in rows}
    records = []
    for article in json.loads(SAMPLE_SQUAD.read_text(encoding="utf-8"))["data"]:
        for paragraph in article["paragraphs"]:
            positive = {"title": article["title"], "text": paragraph["context"]}
            if paragraph["context"] in by_text:
                positive["passage_id"] = by_text[paragraph["context"]]
            others = [{"title": t, "text": x, "passage_id": p, "score": 1.5}
                      for p, x, t in rows if x != paragraph["context"]][:4]
            for qa in paragraph["qas"]:
                records.append({"question": qa["question"], "id": qa["id"],
                                "answers": [a["text"] for a in qa["answers"]],
                                "positive_ctxs": [positive], "negative_ctxs": [],
                                "hard_negative_ctxs": others})
    records.append({"question": "Question de dev sans positif ?", "answers": ["Loire"],
                    "positive_ctxs": [], "negative_ctxs": [], "hard_negative_ctxs": []})
    path = tmp_path_factory.mktemp("mine") / "train.json"
    path.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    return path


def _mine(checkpoint: Path, records: Path, passages: Path, out: Path, *extra: str) -> int:
    return mine_negatives.main(["--model_file", str(checkpoint), "--train_file", str(records),
                                "--ctx_file", str(passages), "--out_file", str(out), *COMMON,
                                *extra])


def test_mined_negatives_are_never_gold_nor_contain_an_answer(
        tmp_path: Path, checkpoint: Path, corpus, records_file: Path) -> None:
    # Given every passage of the corpus retrieved (17 < --n_docs)
    out = tmp_path / "mined.json"
    # When mining with the tiny checkpoint
    assert _mine(checkpoint, records_file, corpus[0], out, "--num_negatives", "30") == 0
    # Then no kept negative is a positive or contains an answer, and all others are kept
    rows = {pid: (text, title) for pid, text, title in _corpus_rows(corpus[0])}
    inputs = json.loads(records_file.read_text(encoding="utf-8"))
    mined = json.loads(out.read_text(encoding="utf-8"))
    assert len(mined) == len(inputs)
    for record, source in zip(mined, inputs):
        negatives = record["hard_negative_ctxs"]
        gold_texts = {p["text"] for p in record["positive_ctxs"]}
        assert all(not has_answer(record["answers"], n["text"]) for n in negatives)
        assert all(n["text"] not in gold_texts for n in negatives)
        expected = {pid for pid, (text, _) in rows.items()
                    if text not in gold_texts and not has_answer(record["answers"], text)}
        assert {n["passage_id"] for n in negatives} == expected
        assert all(rows[n["passage_id"]] == (n["text"], n["title"]) for n in negatives)
        scores = [n["score"] for n in negatives]
        assert scores == sorted(scores, reverse=True)
        # the other fields are kept as they were
        assert {k: v for k, v in record.items() if k != "hard_negative_ctxs"} == \
            {k: v for k, v in source.items() if k != "hard_negative_ctxs"}


@pytest.fixture(scope="module")
def model_scores(spread: Path, corpus, records_file: Path):
    """(question × passage scores, positive score per record) computed here with the model."""
    model = load_encoder(str(spread), {}, device=torch.device("cpu"), batch_size=4)
    rows = _corpus_rows(corpus[0])
    records = json.loads(records_file.read_text(encoding="utf-8"))
    questions = model.encode_questions([r["question"] for r in records])
    passages = model.encode_passages([(r[2], r[1]) for r in rows])
    positives = [float(q @ model.encode_passages([(r["positive_ctxs"][0]["title"],
                                                   r["positive_ctxs"][0]["text"])])[0])
                 if r["positive_ctxs"] else None for q, r in zip(questions, records)]
    return questions @ passages.T, positives


def test_num_negatives_skip_top_and_mix_bm25_shape_the_lists(
        tmp_path: Path, spread: Path, corpus, records_file: Path, model_scores) -> None:
    # Given a full mining run and one keeping 3 after skipping 2 ranks, plus 2 BM25 ones
    full, small = tmp_path / "full.json", tmp_path / "small.json"
    assert _mine(spread, records_file, corpus[0], full) == 0
    assert _mine(spread, records_file, corpus[0], small, "--num_negatives", "3",
                 "--skip_top", "2", "--mix_bm25", "2") == 0
    ids = [r[0] for r in _corpus_rows(corpus[0])]
    inputs = json.loads(records_file.read_text(encoding="utf-8"))
    pairs = zip(json.loads(full.read_text(encoding="utf-8")),
                json.loads(small.read_text(encoding="utf-8")), inputs, model_scores[0])
    for f, s, source, scores in pairs:
        top2 = {ids[i] for i in sorted(range(len(ids)), key=lambda i: -scores[i])[:2]}
        full_ids = [n["passage_id"] for n in f["hard_negative_ctxs"]]
        got = [n["passage_id"] for n in s["hard_negative_ctxs"]]
        # Then the mined part is the full run's list without the top 2 ranks, cut at 3
        mined = [pid for pid in full_ids if pid not in top2][:3]
        assert got[:len(mined)] == mined
        # followed by the first 2 existing negatives that are not already there
        fresh = [n["passage_id"] for n in source["hard_negative_ctxs"]
                 if n["passage_id"] not in mined]
        assert got[len(mined):] == fresh[:2]
        assert len(set(got)) == len(got)


def test_n_retrieved_limits_candidates_to_the_model_top(
        tmp_path: Path, spread: Path, corpus, records_file: Path, model_scores) -> None:
    out = tmp_path / "top4.json"
    assert _mine(spread, records_file, corpus[0], out, "--n_docs", "4") == 0
    ids = [r[0] for r in _corpus_rows(corpus[0])]
    records = json.loads(out.read_text(encoding="utf-8"))
    for record, scores in zip(records, model_scores[0]):
        top4 = {ids[i] for i in sorted(range(len(ids)), key=lambda i: -scores[i])[:4]}
        got = {n["passage_id"] for n in record["hard_negative_ctxs"]}
        assert got <= top4 and len(got) <= 4
    assert any(len(r["hard_negative_ctxs"]) == 4 for r in records)


def test_margins_keep_negatives_scored_below_the_positive(
        tmp_path: Path, spread: Path, corpus, records_file: Path, model_scores) -> None:
    # Given a full run and runs with margins (absolute 0.05, relative 0.001)
    full, margin, relative = (tmp_path / f"{n}.json" for n in ("full", "margin", "relative"))
    assert _mine(spread, records_file, corpus[0], full) == 0
    assert _mine(spread, records_file, corpus[0], margin, "--margin", "0.05") == 0
    assert _mine(spread, records_file, corpus[0], relative, "--relative_margin",
                 "0.001") == 0
    read = [json.loads(p.read_text(encoding="utf-8")) for p in (full, margin, relative)]
    filtered = 0
    for f, m, r, positive in zip(*read, model_scores[1]):
        # Then each keeps exactly the full run's negatives under its ceiling
        every = f["hard_negative_ctxs"]
        if positive is None:  # no positive: no margin
            assert m["hard_negative_ctxs"] == r["hard_negative_ctxs"] == every
            continue
        assert m["hard_negative_ctxs"] == [n for n in every if n["score"] <= positive - 0.05]
        assert r["hard_negative_ctxs"] == [n for n in every
                                           if n["score"] <= positive * (1 - 0.001)]
        filtered += len(every) - len(m["hard_negative_ctxs"])
    assert filtered > 0  # the margin did remove something in this data


def test_output_is_deterministic_and_byte_identical_with_two_processes(
        tmp_path: Path, spread: Path, corpus, records_file: Path) -> None:
    # Given the same mining run with 1 process and with 2 (gloo on CPU), single-threaded
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(ROOT)}
    args = ["--model_file", str(spread), "--train_file", str(records_file), "--ctx_file",
            str(corpus[0]), *COMMON, "--mix_bm25", "2", "--skip_top", "1", "--chunk_size", "5"]
    one, two = tmp_path / "one.json", tmp_path / "two.json"
    runs = [
        [sys.executable, "-m", "data_prep.mine_negatives", *args, "--out_file", str(one)],
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
         f"--master_port={free_port()}", "-m", "data_prep.mine_negatives", *args,
         "--out_file", str(two)],
    ]
    for cmd in runs:
        result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                                timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
    # Then both files are byte-identical (17 passages: chunks 0 and 2 encoded by one process,
    # 1 and 3 by the other), and the chunk folders are gone
    assert one.read_bytes() == two.read_bytes()
    assert "Mined 38 questions" in result.stderr and "2 process(es)" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.json", "two.json"]


def test_killed_run_resumes_its_encoding_and_other_leftovers_are_discarded(
        tmp_path: Path, spread: Path, checkpoint: Path, corpus, records_file: Path,
        monkeypatch, capsys) -> None:
    reference = tmp_path / "reference.json"
    assert _mine(spread, records_file, corpus[0], reference, "--chunk_size", "5") == 0
    # Given a run killed after encoding, whose chunks 2 and 3 (of 4) were not written yet
    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    out, chunks = tmp_path / "out.json", tmp_path / "out.json.vectors"
    with monkeypatch.context() as patch:
        patch.setattr(mine_negatives, "mine", killed)
        with pytest.raises(KeyboardInterrupt):
            _mine(spread, records_file, corpus[0], out, "--chunk_size", "5")
    for name in ("passages_2.npy", "passages_3.ids.json"):
        (chunks / name).unlink()
    # When the same command runs again, Then it encodes the two missing chunks only, writes
    # what an uninterrupted run writes and removes the chunks
    capsys.readouterr()
    assert _mine(spread, records_file, corpus[0], out, "--chunk_size", "5") == 0
    log = capsys.readouterr().err
    assert "Chunk 1 (5 passages): complete, skipped" in log
    assert "Chunk 2 (passages 10..15): encoding (missing)" in log and "Chunk 3 (passages" in log
    assert out.read_bytes() == reference.read_bytes() and not chunks.exists()
    # And the chunks a run of another model left are removed, not mixed in
    with monkeypatch.context() as patch:
        patch.setattr(mine_negatives, "mine", killed)
        with pytest.raises(KeyboardInterrupt):
            _mine(checkpoint, records_file, corpus[0], out, "--chunk_size", "5")
    assert _mine(spread, records_file, corpus[0], out, "--chunk_size", "5") == 0
    assert out.read_bytes() == reference.read_bytes() and not chunks.exists()


def _error_lines(stderr: str) -> list[str]:
    """The error lines of a run's log; a traceback would fail the test."""
    assert "Traceback" not in stderr
    return [line for line in stderr.splitlines() if "[ERROR]" in line]


def test_bad_inputs_exit_1_with_one_line_and_write_nothing(
        tmp_path: Path, spread: Path, corpus, records_file: Path, capsys) -> None:
    bad_record = tmp_path / "bad.json"
    bad_record.write_text(json.dumps([{"question": "q?", "positive_ctxs": [{"title": "t"}]}]),
                          encoding="utf-8")
    no_ids = tmp_path / "noids.tsv"
    no_ids.write_text("text only\tTitle\n", encoding="utf-8")
    empty = tmp_path / "empty.tsv"
    empty.write_text("id\ttext\ttitle\n", encoding="utf-8")
    cases = [
        (records_file, corpus[0], tmp_path / "absent.pt", "absent.pt"),
        (tmp_path / "absent.json", corpus[0], spread, "absent.json"),
        (bad_record, corpus[0], spread, "record 0"),
        (records_file, no_ids, spread, "noids.tsv:1"),
        (records_file, empty, spread, "no passages"),
    ]
    for records, passages, model, named in cases:
        out = tmp_path / "out.json"
        capsys.readouterr()
        assert _mine(model, records, passages, out) == 1, named
        err = _error_lines(capsys.readouterr().err)
        assert len(err) == 1 and named in err[0], err
        assert not out.exists()
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".out")) == []


@pytest.mark.parametrize("flag, value", [("--num_negatives", "-1"), ("--skip_top", "-1"),
                                         ("--mix_bm25", "-3"), ("--relative_margin", "1.5"),
                                         ("--margin", "-1"), ("--n_docs", "0"),
                                         ("--batch_size", "0"), ("--out_file", "x.json.gz")])
def test_bad_option_values_exit_2_naming_the_flag(tmp_path: Path, spread: Path, corpus,
                                                  records_file: Path, capsys, flag,
                                                  value) -> None:
    out = tmp_path / "out.json"
    assert _mine(spread, records_file, corpus[0], out, flag, value) == 2
    assert not (tmp_path / value).exists()
    err = _error_lines(capsys.readouterr().err)
    assert len(err) == 1 and flag in err[0], err
    assert not out.exists()


def test_help_exits_0(capsys) -> None:
    assert mine_negatives.main(["--help"]) == 0
    text = capsys.readouterr().out
    for flag in ("--skip_top", "--margin", "--relative_margin", "--num_negatives",
                 "--mix_bm25", "--n_docs"):
        assert flag in text


def test_exclude_articles_of_keeps_other_split_passages_out(
        tmp_path: Path, spread: Path, corpus, records_file: Path, capsys) -> None:
    # Given a "dev" file whose records come from two articles of the corpus
    titles = sorted({row[2] for row in _corpus_rows(corpus[0])})
    dev = tmp_path / "dev.json"
    dev.write_text(json.dumps([
        {"question": "q1", "answers": [], "positive_ctxs": [{"title": titles[0].upper(),
                                                            "text": "x"}]},
        {"question": "q2", "answers": [], "positive_ctxs": [],
         "hard_negative_ctxs": [{"title": titles[1], "text": "y"}]}]), encoding="utf-8")
    out = tmp_path / "mined.json"
    # When mining while excluding its articles
    assert _mine(spread, records_file, corpus[0], out, "--exclude_articles_of", str(dev)) == 0
    # Then no mined negative comes from those articles (titles compared case-folded)
    mined = [n for r in json.loads(out.read_text(encoding="utf-8"))
             for n in r["hard_negative_ctxs"]]
    assert mined and not {n["title"] for n in mined} & set(titles[:2])
    # and excluding every article is an input error
    everything = tmp_path / "all.json"
    everything.write_text(json.dumps([{"question": "q", "positive_ctxs": [
        {"title": t, "text": "z"} for t in titles]}]), encoding="utf-8")
    capsys.readouterr()
    assert _mine(spread, records_file, corpus[0], out, "--exclude_articles_of",
                 str(everything)) == 1
    assert "no passage left" in _error_lines(capsys.readouterr().err)[0]


def test_dpr2hf_folder_mines_the_same_negatives_as_its_checkpoint(
        tmp_path: Path, spread: Path, corpus, records_file: Path) -> None:
    # Given the checkpoint exported by dpr2hf
    from dpr2hf.cli import main as dpr2hf_main

    folder = tmp_path / "hf"
    assert dpr2hf_main([str(spread), "--output_dir", str(folder)]) == 0
    # When mining with the checkpoint and with the folder
    from_ckpt, from_hf = tmp_path / "ckpt.json", tmp_path / "hf.json"
    assert _mine(spread, records_file, corpus[0], from_ckpt) == 0
    assert _mine(folder, records_file, corpus[0], from_hf) == 0
    # Then the same passages are kept in the same order, with the same scores
    for a, b in zip(*(json.loads(p.read_text(encoding="utf-8")) for p in (from_ckpt, from_hf))):
        assert [n["passage_id"] for n in a["hard_negative_ctxs"]] == \
            [n["passage_id"] for n in b["hard_negative_ctxs"]]
        assert [n["score"] for n in a["hard_negative_ctxs"]] == pytest.approx(
            [n["score"] for n in b["hard_negative_ctxs"]], abs=1e-3)


def test_model_folder_that_is_no_export_and_bad_device_are_one_line_errors(
        tmp_path: Path, spread: Path, corpus, records_file: Path, capsys) -> None:
    out = tmp_path / "out.json"
    assert _mine(tmp_path, records_file, corpus[0], out) == 1
    err = _error_lines(capsys.readouterr().err)
    assert len(err) == 1 and "question_encoder/config.json" in err[0]
    assert mine_negatives.main(["--model_file", str(spread), "--train_file", str(records_file),
                                "--ctx_file", str(corpus[0]), "--out_file", str(out),
                                "--device", "nonsense", "--quiet"]) == 2
    err = _error_lines(capsys.readouterr().err)
    assert len(err) == 1 and "--device 'nonsense'" in err[0]
    assert not out.exists()


def test_corpus_gold_rows_match_by_id_or_stripped_text() -> None:
    passages = [Passage("T", "Un texte.", "a"), Passage("T", "Autre texte.", "b"),
                Passage("T2", " Un texte. ", "c")]
    corpus = EncodedCorpus(passages, np.zeros((3, 2), np.float32))
    assert corpus.gold_rows([{"text": "Un texte."}]) == {0, 2}
    assert corpus.gold_rows([{"text": "ailleurs", "passage_id": "b"}]) == {1}
    assert corpus.gold_rows([{"text": "ailleurs", "passage_id": "zz"}]) == set()
    # a passage with the same id but another text is not the corpus passage
    assert corpus.row_for({"text": "Autre texte.", "passage_id": "b"}) == 1
    assert corpus.row_for({"text": "changé", "passage_id": "b"}) is None


@pytest.mark.parametrize("error", [RuntimeError, ValueError])
def test_internal_error_is_not_reported_as_a_user_error(
        tmp_path: Path, spread: Path, corpus, records_file: Path, monkeypatch,
        error: type[Exception]) -> None:
    # Given a bug inside mining (a bare exception from the library, not a user error)
    def broken(*args, **kwargs):
        raise error("internal failure")

    monkeypatch.setattr(mine_negatives, "mine", broken)
    # Then main does not turn it into a one-line exit 1: it escapes with its traceback
    with pytest.raises(error, match="internal failure"):
        _mine(spread, records_file, corpus[0], tmp_path / "out.json")
    assert not (tmp_path / "out.json").exists()


CITIES = [("Tours", "Centre", "136000"), ("Lyon", "Rhône", "522000"),
          ("Nantes", "Loire", "320000"), ("Rennes", "Bretagne", "222000"),
          ("Dijon", "Bourgogne", "159000"), ("Lille", "Nord", "236000")]


def _untitled_squad(path: Path) -> dict[str, int]:
    """A SQuAD file of six untitled articles (an FAQ export); returns question -> article."""
    data, article_of = [], {}
    for index, (city, region, people) in enumerate(CITIES):
        first = f"{city} est une ville de la région {region}. Elle compte {people} habitants."
        question = f"Combien d'habitants compte {city} ?"
        article_of[question] = index
        data.append({"paragraphs": [
            {"context": first, "qas": [{"question": question, "answers": [
                {"text": people, "answer_start": first.index(people)}]}]},
            {"context": f"Le marché de {city} ouvre chaque samedi matin.", "qas": []}]})
    path.write_text(json.dumps({"data": data}, ensure_ascii=False), encoding="utf-8")
    return article_of


def test_exclude_articles_of_on_untitled_squad_never_returns_an_excluded_passage(
        tmp_path: Path, checkpoint: Path) -> None:
    # Given data_prep's output for a SQuAD file without titles (2 of 6 articles in dev)
    from data_prep import squad2dpr

    article_of = _untitled_squad(tmp_path / "faq.json")
    data = tmp_path / "data"
    assert squad2dpr.main([str(tmp_path / "faq.json"), "--output_dir", str(data),
                           "--dev_ratio", "0.34", "--sentence_splitter", "regex",
                           "--bm25_top_k", "5", "--quiet"]) == 0
    dev_records = json.loads((data / "DPR_FR_dev.json").read_text(encoding="utf-8"))
    dev_cities = {CITIES[article_of[r["question"]]][0] for r in dev_records}
    passages = data / "passages.tsv"
    dev_texts = {text for _, text, _ in _corpus_rows(passages)
                 if any(f"{city} " in text for city in dev_cities)}
    assert len(dev_cities) == 2 and len(dev_texts) == 4
    # and train records whose existing negatives start with a dev passage (mixed in below)
    train = json.loads((data / "DPR_FR_train.json").read_text(encoding="utf-8"))
    dev_ctx = next(c for r in dev_records for c in r["positive_ctxs"])
    for record in train:
        record["hard_negative_ctxs"].insert(0, dict(dev_ctx))
    records = tmp_path / "train.json"
    records.write_text(json.dumps(train, ensure_ascii=False), encoding="utf-8")
    wide = ["--num_negatives", "50", "--n_docs", "50", "--mix_bm25", "5"]
    # When mining every passage, with and without --exclude_articles_of the dev file
    kept, control = tmp_path / "kept.json", tmp_path / "control.json"
    assert _mine(checkpoint, records, passages, kept, *wide,
                 "--exclude_articles_of", str(data / "DPR_FR_dev.json")) == 0
    assert _mine(checkpoint, records, passages, control, *wide) == 0
    # Then no mined or mixed-in negative is a dev passage (as before, without the flag, many are)
    def negatives(path: Path) -> list[str]:
        return [n["text"] for r in json.loads(path.read_text(encoding="utf-8"))
                for n in r["hard_negative_ctxs"]]

    assert negatives(kept) and not set(negatives(kept)) & dev_texts
    assert set(negatives(control)) & dev_texts
