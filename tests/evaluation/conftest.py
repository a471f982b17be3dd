"""Fixtures shared by the evaluation tests: a small French corpus and a trained checkpoint."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from conftest import SAMPLE_SQUAD
from helpers import NUM_PASSAGES

import train_dense_encoder


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(passages.tsv with 17 French passages, qas.tsv with JSON answer lists)."""
    folder = tmp_path_factory.mktemp("corpus")
    articles = json.loads(SAMPLE_SQUAD.read_text(encoding="utf-8"))["data"]
    rows, qas = [], []
    for article in articles:
        for paragraph in article["paragraphs"]:
            if len(rows) < NUM_PASSAGES:
                rows.append((f"p{len(rows)}", paragraph["context"], article["title"]))
                qas += [(qa["question"], [a["text"] for a in qa["answers"]])
                        for qa in paragraph["qas"]]
    passages = folder / "passages.tsv"
    with passages.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out, delimiter="\t", lineterminator="\n")
        writer.writerow(["id", "text", "title"])
        writer.writerows(rows)
    qa_file = folder / "qas.tsv"
    qa_file.write_text("".join(f"{q}\t{json.dumps(a, ensure_ascii=False)}\n"
                               for q, a in qas[:8]), encoding="utf-8")
    return passages, qa_file


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory, tiny_camembert: Path,
               dpr_files) -> Path:
    """A tiny CamemBERT bi-encoder trained for two steps."""
    folder = tmp_path_factory.mktemp("train")
    subset = folder / "train.json"
    records = json.loads(dpr_files[0].read_text(encoding="utf-8"))[:16]
    subset.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    out = folder / "out"
    assert train_dense_encoder.main([
        "--encoder_model_type", "hf_roberta", "--pretrained_model_cfg", str(tiny_camembert),
        "--train_file", str(subset), "--output_dir", str(out), "--batch_size", "8",
        "--sequence_length", "64", "--num_train_epochs", "1", "--warmup_steps", "0"]) == 0
    (path,) = out.glob("dpr_biencoder.*")
    return path


