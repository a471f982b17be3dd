from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from dpr.data.records import (
    DataFormatError,
    expand_files,
    load_samples,
    parse_upsample_rates,
)


def _record(q: str, positives: int = 1) -> dict:
    return {"question": q, "answers": ["a"],
            "positive_ctxs": [{"title": "T", "text": f"p{i}"} for i in range(positives)],
            "negative_ctxs": [], "hard_negative_ctxs": [{"title": "H", "text": "h"}]}


def test_load_samples_reads_json_jsonl_and_gz_in_sorted_order(tmp_path: Path) -> None:
    # Given one JSON array, one JSON Lines and one gzipped file
    (tmp_path / "b.jsonl").write_text(
        "\n".join(json.dumps(_record(f"b{i}")) for i in range(2)) + "\n", encoding="utf-8")
    (tmp_path / "a.json").write_text(json.dumps([_record("a0")]), encoding="utf-8")
    with gzip.open(tmp_path / "c.json.gz", "wt", encoding="utf-8") as f:
        json.dump([_record("c0")], f)
    # When loading with a glob
    samples = load_samples(str(tmp_path / "*"))
    # Then files are read in sorted name order
    assert [s.question for s in samples] == ["a0", "b0", "b1", "c0"]
    assert samples[0].positives[0].title == "T"
    assert samples[0].hard_negatives[0].text == "h"


def test_load_samples_upsamples_per_file_and_drops_samples_without_positives(
        tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(json.dumps([_record("a0"), _record("none", 0)]))
    (tmp_path / "b.json").write_text(json.dumps([_record("b0")]))
    samples = load_samples(str(tmp_path / "*.json"), "[2, 3]")
    assert [s.question for s in samples] == ["a0", "a0", "b0", "b0", "b0"]


def test_load_samples_missing_negative_keys_are_empty(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(json.dumps([{"question": "q", "positive_ctxs": [
        {"text": "p"}]}]))
    [sample] = load_samples(str(tmp_path / "a.json"))
    assert sample.negatives == () and sample.hard_negatives == ()
    assert sample.positives[0].title == ""


@pytest.mark.parametrize("content,message", [
    ("", "file is empty"),
    ("[{\"question\": \"q\",", "invalid JSON at line 1"),
    ("[]", "contains no records"),
    ("[{\"question\": \"q\", \"answers\": []}]",
     "record 0 (question 'q'): missing 'positive_ctxs'"),
    ("[{\"question\": \"\", \"positive_ctxs\": []}]", "record 0: 'question' must be a non-empty"),
    ("[{\"question\": \"q\", \"positive_ctxs\": [{\"title\": \"t\"}]}]",
     "positive_ctxs[0] must be an object with a string 'text'"),
    ("{\"question\": \"q\", \"positive_ctxs\": []}\n{bad", "line 2: invalid JSON Lines"),
])
def test_load_samples_bad_input_names_file_and_record(tmp_path: Path, content: str,
                                                      message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataFormatError) as err:
        load_samples(str(path))
    assert str(path) in str(err.value)
    assert message in str(err.value)


def test_expand_files_glob_matching_nothing_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match="no file matches"):
        expand_files(str(tmp_path / "missing*.json"))


@pytest.mark.parametrize("text,message", [
    ("[1, 2]", "has 2 rates but the train files expand to 3"),
    ("__import__('os')", "not a literal list"),
    ("[1, -1, 2]", "non-negative"),
    ("{'a': 1}", "non-negative"),
])
def test_parse_upsample_rates_rejects_bad_values_without_eval(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("[", r"\[")):
        parse_upsample_rates(text, 3)


def test_parse_upsample_rates_truncates_fractions_like_dpr() -> None:
    assert parse_upsample_rates("[1.5, 0, 2]", 3) == [1, 0, 2]
    assert parse_upsample_rates(None, 2) == [1, 1]


def test_passage_id_is_read_as_a_string_and_bad_ids_are_refused(tmp_path: Path) -> None:
    record = _record("q")
    record["positive_ctxs"][0]["passage_id"] = 42
    record["hard_negative_ctxs"][0]["passage_id"] = "doc:3"
    (tmp_path / "a.json").write_text(json.dumps([record]), encoding="utf-8")
    sample = load_samples(str(tmp_path / "a.json"))[0]
    assert sample.positives[0].passage_id == "42"
    assert sample.hard_negatives[0].passage_id == "doc:3"
    record["positive_ctxs"][0]["passage_id"] = ["x"]
    (tmp_path / "a.json").write_text(json.dumps([record]), encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"positive_ctxs\[0\].passage_id"):
        load_samples(str(tmp_path / "a.json"))


@pytest.mark.parametrize("name", ["a.json", "a.jsonl", "a.json.gz"])
def test_load_samples_accepts_a_utf8_byte_order_mark(tmp_path: Path, name: str) -> None:
    # Given a DPR JSON, JSON Lines or gzipped file starting with a UTF-8 byte-order mark
    records = [_record("é0"), _record("é1")]
    text = (json.dumps(records, ensure_ascii=False) if ".jsonl" not in name
            else "\n".join(json.dumps(r, ensure_ascii=False) for r in records))
    data = b"\xef\xbb\xbf" + text.encode("utf-8")
    path = tmp_path / name
    if name.endswith(".gz"):
        with gzip.open(path, "wb") as handle:
            handle.write(data)
    else:
        path.write_bytes(data)
    # When loading it
    samples = load_samples(str(path))
    # Then the mark is skipped and every record is read
    assert [s.question for s in samples] == ["é0", "é1"]
