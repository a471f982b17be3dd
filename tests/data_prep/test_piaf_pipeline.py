"""Full pipeline on the real PIAF v1.0 data set (skipped when absent, failing under CI=true)."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Any

import pytest

from data_prep.squad2dpr import main
from dpr.data.answers import contains_answer, has_answer, prepare_answers, prepare_text
from dpr.data.tsv import read_qas

MAX_SECONDS = 60.0


@pytest.fixture(scope="module")
def piaf_run(piaf_path: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Converts PIAF once with default options (spaCy splitter, 30 BM25 negatives)."""
    out = tmp_path_factory.mktemp("piaf_out")
    start = time.perf_counter()
    rc = main([str(piaf_path), "--output_dir", str(out), "--quiet"])
    elapsed = time.perf_counter() - start
    records = {
        split: json.loads((out / f"DPR_FR_{split}.json").read_text(encoding="utf-8"))
        for split in ("train", "dev")
    }
    return {
        "rc": rc, "elapsed": elapsed, "out": out, "records": records,
        "stats": json.loads((out / "stats.json").read_text(encoding="utf-8")),
        "raw": json.loads(piaf_path.read_text(encoding="utf-8")),
    }


def test_piaf_pipeline_properties(piaf_run: dict[str, Any]) -> None:
    # Given one default run over PIAF v1.0
    stats, records, raw = piaf_run["stats"], piaf_run["records"], piaf_run["raw"]
    # Then it succeeded in under 60 s, including index build and model loading
    assert piaf_run["rc"] == 0
    assert piaf_run["elapsed"] < MAX_SECONDS, stats["timings_s"]
    assert stats["bm25"]["index_reused"] is False

    # And every input question is in train, in dev, or counted as dropped with a reason
    input_count = sum(len(p["qas"]) for a in raw["data"] for p in a["paragraphs"])
    q = stats["questions"]
    assert q["input"] == input_count
    assert len(records["train"]) == q["train"] and len(records["dev"]) == q["dev"]
    assert q["train"] + q["dev"] + sum(q["dropped"].values()) == input_count
    assert q["train"] > 0 and q["dev"] > 0
    assert set(q["dropped"]) <= {"unanswerable", "no_valid_answer", "duplicate_question",
                                 "empty_question"}

    # And no dev article (title) or dev passage appears anywhere in train
    def titles(split: str, *keys: str) -> set[str]:
        return {c["title"] for r in records[split] for key in keys for c in r[key]}

    def ids(split: str) -> set[str]:
        keys = ("positive_ctxs", "hard_negative_ctxs", "negative_ctxs")
        return {":".join(c["passage_id"].split(":")[:2])  # <source>:<article index>
                for r in records[split] for key in keys for c in r[key]}

    all_keys = ("positive_ctxs", "hard_negative_ctxs", "negative_ctxs")
    assert not titles("dev", "positive_ctxs") & titles("train", *all_keys)
    assert not ids("dev") & ids("train")

    # And every positive contains an answer, no hard negative contains any answer, and
    # titles are the article titles (no window index suffix)
    raw_titles = {a["title"].strip() for a in raw["data"]}
    prepared_texts: dict[str, str] = {}
    for record in records["train"] + records["dev"]:
        assert record["positive_ctxs"]
        for ctx in record["positive_ctxs"]:
            assert has_answer(record["answers"], ctx["text"]), (record["question"], ctx)
            assert ctx["title"] in raw_titles
        answers = prepare_answers(record["answers"])
        for ctx in record["hard_negative_ctxs"]:
            if ctx["text"] not in prepared_texts:  # has_answer on cached texts (same rules)
                prepared_texts[ctx["text"]] = prepare_text(ctx["text"])
            assert not contains_answer(answers, prepared_texts[ctx["text"]]), ctx
        assert len(record["hard_negative_ctxs"]) <= 30


def test_piaf_outputs_are_consistent(piaf_run: dict[str, Any]) -> None:
    # Given the same run
    out, records, stats = piaf_run["out"], piaf_run["records"], piaf_run["stats"]
    # Then passages.tsv lists every passage once, within max_chars, with article titles
    lines = (out / "passages.tsv").read_text(encoding="utf-8").splitlines()
    assert lines[0] == "id\ttext\ttitle"
    with (out / "passages.tsv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle, delimiter="\t"))[1:]
    assert len(rows) == sum(stats["passages"].values())
    assert len({row[0] for row in rows}) == len(rows)
    assert all(0 < len(row[1]) <= 600 for row in rows)
    raw_titles = {a["title"].strip() for a in piaf_run["raw"]["data"]}
    assert {row[2] for row in rows} <= raw_titles
    # And qas_dev.tsv matches the dev records; timings are reported per stage
    assert read_qas(out / "qas_dev.tsv") == [
        (r["question"], r["answers"]) for r in records["dev"]
    ]
    assert {"read_validate", "split_passages", "bm25_index", "bm25_mining", "write_outputs",
            "total"} <= set(stats["timings_s"])


def test_piaf_records_are_shuffled_so_validation_batches_rarely_share_positives(
        piaf_run: dict[str, Any]) -> None:
    # Given the dev file, validated by DPR in file order 16 questions at a time
    dev = piaf_run["records"]["dev"]
    positives = [record["positive_ctxs"][0]["passage_id"] for record in dev]
    # When counting questions whose positive passage is another question's in the same batch
    shared = 0
    for start in range(0, len(dev), 16):
        batch = positives[start:start + 16]
        shared += sum(1 for p in batch if batch.count(p) > 1)
    # Then few are (in paragraph order, 664 of PIAF's 725 dev questions were)
    assert shared < 0.25 * len(dev), shared
    # And the training file is not in paragraph order either
    train = [r["positive_ctxs"][0]["passage_id"] for r in piaf_run["records"]["train"]]
    adjacent = sum(1 for a, b in zip(train, train[1:]) if a == b)
    assert adjacent < 0.1 * len(train), adjacent


def test_piaf_outputs_start_a_short_training_run(piaf_run: dict[str, Any], tiny_camembert: Path,
                                                 tmp_path: Path) -> None:
    # Given data_prep's PIAF output files, cut to their first 24 training questions
    import train_dense_encoder

    out = piaf_run["out"]
    small = tmp_path / "train.json"
    small.write_text(json.dumps(piaf_run["records"]["train"][:24], ensure_ascii=False),
                     encoding="utf-8")
    # When the trainer runs one epoch on them, validating on the full dev file
    ckpts = tmp_path / "ckpt"
    rc = train_dense_encoder.main([
        "--encoder_model_type", "hf_roberta", "--pretrained_model_cfg", str(tiny_camembert),
        "--train_file", str(small), "--dev_file", str(out / "DPR_FR_dev.json"),
        "--output_dir", str(ckpts), "--batch_size", "8", "--dev_batch_size", "64",
        "--sequence_length", "128", "--num_train_epochs", "1", "--hard_negatives", "1"])
    # Then it trains, validates and writes a checkpoint
    assert rc == 0
    assert (ckpts / "dpr_biencoder.0.3").is_file()
    log = [json.loads(x) for x in (ckpts / "training_log.jsonl").read_text().splitlines()]
    assert [r["event"] for r in log].count("train") == 3
    assert any(r["event"] == "validation" and r["metric"] == "nll_loss" for r in log)
