"""End-to-end tests of ``python -m data_prep.squad2dpr`` on tiny hand-written fixtures."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest

from data_prep.squad2dpr import main
from dpr.data.answers import has_answer
from dpr.data.tsv import read_qas

FAST = ["--sentence_splitter", "regex", "--quiet", "--bm25_top_k", "5"]
DATA_FILES = ("DPR_FR_train.json", "DPR_FR_dev.json", "passages.tsv", "qas_dev.tsv")


def run_cli(*args: str | Path) -> int:
    return main([str(arg) for arg in args])


def load_records(out: Path) -> list[dict[str, Any]]:
    records = []
    for split in ("train", "dev"):
        records.extend(json.loads((out / f"DPR_FR_{split}.json").read_text(encoding="utf-8")))
    return records


def squad_questions(path: Path) -> dict[str, dict[str, Any]]:
    """Question id -> raw qa, read directly from the fixture."""
    data = json.loads(path.read_text(encoding="utf-8"))["data"]
    return {qa["id"]: qa for a in data for p in a["paragraphs"] for qa in p["qas"]}


def test_help_documents_every_flag(capsys: pytest.CaptureFixture[str]) -> None:
    # Given the CLI
    # When asking for help
    code = main(["--help"])
    # Then it exits 0 and every option has a help text
    assert code == 0
    text = capsys.readouterr().out
    for flag in ("--output_dir", "--max_chars", "--sentence_splitter", "--language",
                 "--dev_ratio", "--seed", "--bm25_top_k", "--num_random_negatives", "--strict",
                 "--quiet", "--bm25_k1", "--bm25_b", "--num_threads", "--tune_ratio",
                 "--holdout_field", "--holdout_values", "--debug"):
        assert flag in text
    assert "(default:" in text


def test_cli_converts_fixtures_with_split_counts_and_formats(
    tmp_path: Path, small_fixture: Path, v2_fixture: Path
) -> None:
    # Given two input files (v1 and v2) and 2 random negatives per question
    out = tmp_path / "out"
    # When converting them
    rc = run_cli(small_fixture, v2_fixture, "--output_dir", out, "--num_random_negatives", "2",
                 *FAST)
    # Then it succeeds and every output file exists
    assert rc == 0
    for name in (*DATA_FILES, "stats.json"):
        assert (out / name).is_file()
    stats = json.loads((out / "stats.json").read_text(encoding="utf-8"))
    raw = {**squad_questions(small_fixture), **squad_questions(v2_fixture)}
    q = stats["questions"]
    # And the two unanswerable v2 questions and the one duplicate are counted as dropped
    assert q["input"] == len(raw)
    assert q["dropped"] == {"unanswerable": 2, "duplicate_question": 1}
    assert q["train"] + q["dev"] + q["dropped_total"] == q["input"]
    records = load_records(out)
    assert len(records) == q["train"] + q["dev"]
    assert not any(r["question"].startswith("Combien de brocanteurs") for r in records)
    # And records have the DPR layout, answer-bearing positives, answer-free negatives
    for record in records:
        assert set(record) == {"question", "answers", "positive_ctxs", "negative_ctxs",
                               "hard_negative_ctxs"}
        assert all(has_answer(record["answers"], c["text"]) for c in record["positive_ctxs"])
        for ctx in record["hard_negative_ctxs"] + record["negative_ctxs"]:
            assert not has_answer(record["answers"], ctx["text"])
        assert all(set(c) == {"title", "text", "passage_id", "score"}
                   for c in record["hard_negative_ctxs"])
        assert len(record["negative_ctxs"]) <= 2
    # And qas_dev.tsv holds exactly the dev questions with their answers as JSON lists
    dev = json.loads((out / "DPR_FR_dev.json").read_text(encoding="utf-8"))
    assert read_qas(out / "qas_dev.tsv") == [(r["question"], r["answers"]) for r in dev]
    header = (out / "passages.tsv").read_text(encoding="utf-8").splitlines()[0]
    assert header == "id\ttext\ttitle"


def test_cli_split_is_by_article(tmp_path: Path, small_fixture: Path) -> None:
    # Given 5 articles and dev_ratio 0.4
    out = tmp_path / "out"
    # When converting
    assert run_cli(small_fixture, "--output_dir", out, "--dev_ratio", "0.4", *FAST) == 0
    train = json.loads((out / "DPR_FR_train.json").read_text(encoding="utf-8"))
    dev = json.loads((out / "DPR_FR_dev.json").read_text(encoding="utf-8"))

    # Then 2 articles are in dev, none of them (nor their passages) appears in train
    def titles(records: list[dict[str, Any]], key: str) -> set[str]:
        return {c["title"] for r in records for c in r[key]}

    dev_titles = titles(dev, "positive_ctxs")
    assert len(dev_titles) == 2
    assert not dev_titles & titles(train, "positive_ctxs")
    assert not dev_titles & titles(train, "hard_negative_ctxs")
    assert titles(dev, "hard_negative_ctxs") <= dev_titles


def test_cli_answer_crossing_passage_boundary_gets_window(
    tmp_path: Path, small_fixture: Path
) -> None:
    # Given an answer spanning two sentences and max_chars too small for both in one passage
    answer = "le premier port de France. Le Vieux-Port"
    out = tmp_path / "out"
    # When converting with max_chars=60
    assert run_cli(small_fixture, "--output_dir", out, "--max_chars", "60", *FAST) == 0
    passages = (out / "passages.tsv").read_text(encoding="utf-8")
    record = next(r for r in load_records(out) if r["answers"] == [answer])
    # Then no regular passage holds it, but the positive window does, in about max_chars
    assert answer not in passages
    (positive,) = record["positive_ctxs"]
    assert answer in positive["text"]
    assert ":w" in positive["passage_id"]
    assert positive["title"] == "Marseille"
    assert len(positive["text"]) <= 2 * 60


def test_cli_two_runs_give_identical_bytes(tmp_path: Path, small_fixture: Path,
                                           v2_fixture: Path) -> None:
    # Given the same inputs and seed, written to two folders
    outs = [tmp_path / "a", tmp_path / "b"]
    # When converting twice
    for out in outs:
        assert run_cli(small_fixture, v2_fixture, "--output_dir", out, "--seed", "7",
                       "--num_random_negatives", "3", *FAST) == 0
    # Then data files are byte-identical, and stats too apart from timings
    for name in DATA_FILES:
        assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes(), name
    stats = [json.loads((out / "stats.json").read_text(encoding="utf-8")) for out in outs]
    for item in stats:
        item.pop("timings_s")
    assert stats[0] == stats[1]


def test_cli_reuses_index_when_passages_unchanged(tmp_path: Path, small_fixture: Path) -> None:
    # Given a first conversion
    out = tmp_path / "out"
    assert run_cli(small_fixture, "--output_dir", out, *FAST) == 0
    index_file = out / "bm25_index" / "data.csc.index.npy"
    first_mtime = index_file.stat().st_mtime_ns
    first_train = (out / "DPR_FR_train.json").read_bytes()
    # When converting again with the same passages
    assert run_cli(small_fixture, "--output_dir", out, *FAST) == 0
    stats = json.loads((out / "stats.json").read_text(encoding="utf-8"))
    # Then the saved index is reused untouched and outputs are unchanged
    assert stats["bm25"]["index_reused"] is True
    assert index_file.stat().st_mtime_ns == first_mtime
    assert (out / "DPR_FR_train.json").read_bytes() == first_train
    # And when passages change (other max_chars) the index is rebuilt
    assert run_cli(small_fixture, "--output_dir", out, "--max_chars", "80", *FAST) == 0
    stats = json.loads((out / "stats.json").read_text(encoding="utf-8"))
    assert stats["bm25"]["index_reused"] is False


def _article(qas: list[dict[str, Any]], context: str = "Paris est la capitale.") -> dict:
    return {"title": "Paris", "paragraphs": [{"context": context, "qas": qas}]}


GOOD_QA = {"id": "ok", "question": "Quelle est la capitale ?",
           "answers": [{"text": "Paris", "answer_start": 0}]}
BAD_INPUTS = {
    "malformed_json": ('{"data": [', r"bad\.json: malformed JSON at line 1 column"),
    "empty_file": ("", r"bad\.json: file is empty"),
    "no_data": ({"data": []}, r"bad\.json: 'data' is empty"),
    "missing_data": ({"version": "1.1"}, r"bad\.json: missing field 'data'"),
    "missing_context": (
        {"data": [{"title": "Paris", "paragraphs": [{"qas": []}]}]},
        r"bad\.json: data\[0\]\.paragraphs\[0\]: missing field 'context'",
    ),
    "missing_question": (
        {"data": [_article([GOOD_QA, {"id": "q2", "answers": []}])]},
        r"bad\.json: data\[0\]\.paragraphs\[0\]\.qas\[1\] \(id=q2\): missing field 'question'",
    ),
    "start_not_int": (
        {"data": [_article([{**GOOD_QA, "answers": [{"text": "Paris", "answer_start": "0"}]}])]},
        r"qas\[0\] \(id=ok\) answers\[0\]: field 'answer_start' must be int, got str",
    ),
    "bad_offset_strict": (
        {"data": [_article([GOOD_QA, {**GOOD_QA, "id": "off",
                                      "answers": [{"text": "Paris", "answer_start": 3}]}])]},
        r"bad\.json: data\[0\]\.paragraphs\[0\]\.qas\[1\] \(id=off\) answers\[0\]: "
        r"answer_start 3 does not match",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_cli_bad_input_fails_cleanly_without_outputs(
    case: str, tmp_path: Path, small_fixture: Path, caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given a valid file followed by a broken one
    content, expected = BAD_INPUTS[case]
    bad = tmp_path / "bad.json"
    bad.write_text(content if isinstance(content, str) else json.dumps(content),
                   encoding="utf-8")
    out = tmp_path / "out"
    # When converting them (strictly)
    with caplog.at_level(logging.ERROR):
        rc = run_cli(small_fixture, bad, "--output_dir", out, "--strict", *FAST)
    # Then the exit code is non-zero, the message names file and record, no traceback, no output
    assert rc != 0
    assert any(rec.levelno == logging.ERROR and re.search(expected, rec.message)
               for rec in caplog.records), caplog.text
    assert "Traceback" not in capsys.readouterr().err
    assert not out.exists()


def test_cli_missing_file_is_reported(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # Given a path that does not exist
    missing = tmp_path / "absent.json"
    # When converting it
    rc = run_cli(missing, "--output_dir", tmp_path / "out", *FAST)
    # Then it fails with a message naming the file
    assert rc != 0
    assert "absent.json: file not found" in caplog.text


def test_cli_bad_offset_without_strict_is_skipped_and_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Given one good question and one whose answer_start is off by one
    bad = tmp_path / "offsets.json"
    qas = [GOOD_QA, {**GOOD_QA, "id": "off", "answers": [{"text": "Paris", "answer_start": 1}]}]
    bad.write_text(json.dumps({"data": [_article(qas)]}), encoding="utf-8")
    out = tmp_path / "out"
    # When converting without --strict
    with caplog.at_level(logging.WARNING):
        rc = run_cli(bad, "--output_dir", out, "--dev_ratio", "0", *FAST)
    # Then it succeeds, warns about the record and counts it as dropped
    assert rc == 0
    assert "offsets.json: data[0].paragraphs[0].qas[1] (id=off)" in caplog.text
    stats = json.loads((out / "stats.json").read_text(encoding="utf-8"))
    assert stats["questions"]["dropped"] == {"no_valid_answer": 1}
    assert stats["inputs"]["offsets"]["answers_offset_mismatch"] == 1
    assert stats["questions"]["train"] == 1


def test_cli_rejects_invalid_option_values(tmp_path: Path, small_fixture: Path) -> None:
    # Given an out-of-range dev ratio and spaCy with a non-French language
    # When parsing
    # Then the command exits with status 2
    for extra in (["--dev_ratio", "1.5"], ["--language", "en", "--sentence_splitter", "spacy"]):
        code = main([str(small_fixture), "--output_dir", str(tmp_path / "o"), *extra])
        assert code == 2
    assert not (tmp_path / "o").exists()


def test_cli_accepts_faq_files_without_ids_or_titles(tmp_path: Path) -> None:
    # Given six articles without titles (three with "", three with none), questions without ids
    articles = []
    for i in range(6):
        context = f"Le fleuve numéro {i} traverse la ville de Ville{i} et se jette dans la mer."
        qa = {"question": f"Quelle ville traverse le fleuve {i} ?",
              "answers": [{"text": f"Ville{i}", "answer_start": context.index(f"Ville{i}")}]}
        articles.append({"paragraphs": [{"context": context, "qas": [qa]}],
                         **({"title": ""} if i % 2 else {})})
    source = tmp_path / "faq.json"
    source.write_text(json.dumps({"data": articles}, ensure_ascii=False), encoding="utf-8")
    out = tmp_path / "out"
    # When converting it
    assert run_cli(source, "--output_dir", out, "--dev_ratio", "0.34", *FAST) == 0
    # Then every article is its own group for the split (none merged under the empty title)
    stats = json.loads((out / "stats.json").read_text(encoding="utf-8"))
    assert stats["split"]["articles"] == {"train": 4, "dev": 2}
    assert stats["inputs"]["faq"]["questions_given_positional_id"] == 6
    # and passages are written with an empty title
    rows = (out / "passages.tsv").read_text(encoding="utf-8").splitlines()[1:]
    assert len(rows) == 6 and all(row.endswith("\t") for row in rows)


def test_cli_paragraphs_without_qas_are_corpus_only(
    tmp_path: Path, small_fixture: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a site export: a question-bearing paragraph, a paragraph without qas in the same
    # article, and an article of documents without questions (no qas key, null)
    context = "La carte grise coûte 13,76 euros en Bretagne."
    qa = {"id": "cg", "question": "Combien coûte la carte grise en Bretagne ?",
          "answers": [{"text": "13,76 euros", "answer_start": context.index("13,76")}]}
    documents = ["La carte grise se demande en ligne, en Bretagne comme ailleurs.",
                 "Le passeport se demande en mairie.", "La carte d'identité est gratuite."]
    export = tmp_path / "export.json"
    export.write_text(json.dumps({"data": [
        {"title": "Carte grise", "paragraphs": [{"context": context, "qas": [qa]},
                                                {"context": documents[0]}]},
        {"title": "Papiers", "paragraphs": [{"context": documents[1]},
                                            {"context": documents[2], "qas": None}]},
    ]}, ensure_ascii=False), encoding="utf-8")
    out = tmp_path / "out"
    # When converting it with the small fixture
    with caplog.at_level(logging.INFO):
        assert run_cli(small_fixture, export, "--output_dir", out,
                       *(f for f in FAST if f != "--quiet")) == 0
    # Then the documents are in passages.tsv, never a positive
    passages = (out / "passages.tsv").read_text(encoding="utf-8")
    assert all(text in passages for text in documents)
    records = load_records(out)
    positives = {c["passage_id"] for r in records for c in r["positive_ctxs"]}
    assert not {p for p in positives if p.startswith("export:") and p != "export:0:0:0"}
    # And the one in the question's article (same split) is its BM25 hard negative
    (record,) = [r for r in records if r["answers"] == ["13,76 euros"]]
    assert "export:0:1:0" in [c["passage_id"] for c in record["hard_negative_ctxs"]]
    # And they are counted in stats.json and the log
    stats = json.loads((out / "stats.json").read_text(encoding="utf-8"))
    assert stats["inputs"]["export"]["paragraphs_without_questions"] == 3
    assert "3 paragraphs without questions: corpus only" in caplog.text
