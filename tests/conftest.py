"""Shared fixtures: tiny models built in code (no network) and DPR files from the French sample."""

from __future__ import annotations

import csv
import json
import logging
import os
from pathlib import Path

import pytest
import torch
from helpers import NUM_PASSAGES

import train_dense_encoder
import train_reranker
from dpr import tiny
from dpr.models.checkpoint import CheckpointState, save_checkpoint, to_dpr_layout
from dpr.models.factory import build_biencoder

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_SQUAD = ROOT / "examples" / "data" / "fr_sample_squad.json"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def dpr_records_from_squad(path: Path, *, num_hard: int = 3, num_other: int = 1) -> list[dict]:
    """DPR records from a SQuAD file: the paragraph is the positive, paragraphs of the following
    articles are hard negatives and one of the article after that an other negative."""
    articles = json.loads(path.read_text(encoding="utf-8"))["data"]
    records = []
    for a, article in enumerate(articles):
        others = [
            {"title": o["title"], "text": p["context"]}
            for o in articles[a + 1 :] + articles[:a] for p in o["paragraphs"]
        ]
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                records.append({
                    "question": qa["question"],
                    "answers": [x["text"] for x in qa["answers"]],
                    "positive_ctxs": [{"title": article["title"], "text": paragraph["context"]}],
                    "negative_ctxs": others[-num_other:] if num_other else [],
                    "hard_negative_ctxs": others[:num_hard],
                })
    return records


@pytest.fixture(scope="session")
def sample_texts() -> list[str]:
    return tiny.corpus_texts(SAMPLE_SQUAD)


def _tiny_model(builder, name: str, doc: str, **options):
    """A session fixture building one tiny model folder with `builder` (see dpr.tiny)."""

    @pytest.fixture(scope="session")
    def fixture(tmp_path_factory: pytest.TempPathFactory, sample_texts: list[str]) -> Path:
        return builder(tmp_path_factory.mktemp("models") / name, sample_texts, **options)

    fixture.__doc__ = doc
    return fixture


tiny_camembert = _tiny_model(tiny.make_tiny_camembert, "camembert-tiny",
                             "A tiny CamemBERT folder (SentencePiece unigram tokenizer).")
tiny_bert = _tiny_model(tiny.make_tiny_bert, "bert-tiny", "A tiny uncased BERT folder.")
tiny_roberta = _tiny_model(tiny.make_tiny_roberta, "roberta-tiny",
                           "A tiny RoBERTa folder (byte-level BPE).")
tiny_xlmr = _tiny_model(tiny.make_tiny_xlm_roberta, "xlmr-tiny",
                        "A tiny XLM-R folder: its SentencePiece file has CamemBERT's name, "
                        "not its ids.")
tiny_e5 = _tiny_model(tiny.make_tiny_e5, "e5-tiny",
                      "A tiny BERT with an XLM-R tokenizer and multilingual-e5's "
                      "sentence-transformers recipe (mean, normalised, query:/passage: prompts).")
tiny_cased_bert = _tiny_model(tiny.make_tiny_bert, "bert-cased-tiny",
                              "A tiny cased BERT (vocabulary keeps case and accents).",
                              cased=True)


@pytest.fixture(scope="session")
def dpr_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(train file, dev file): 29 training and 8 dev questions from the French sample."""
    records = dpr_records_from_squad(SAMPLE_SQUAD)
    folder = tmp_path_factory.mktemp("dpr_data")
    train, dev = folder / "train.json", folder / "dev.json"
    train.write_text(json.dumps(records[:29], ensure_ascii=False), encoding="utf-8")
    dev.write_text(json.dumps(records[29:], ensure_ascii=False), encoding="utf-8")
    return train, dev


@pytest.fixture(scope="session")
def nodrop_camembert(tmp_path_factory: pytest.TempPathFactory, sample_texts: list[str]) -> Path:
    """A tiny CamemBERT without dropout, for exact equality of training computations."""
    return tiny.make_tiny_camembert(tmp_path_factory.mktemp("models") / "camembert-nodrop",
                                    sample_texts, dropout=0.0)


@pytest.fixture(scope="session")
def fairseq_camembert(tmp_path_factory: pytest.TempPathFactory, sample_texts: list[str]) -> Path:
    """A tiny CamemBERT in fairseq's folder format (model.pt with a plain-dict cfg, dict.txt,
    sentencepiece.bpe.model); the folder name is the blog's."""
    return tiny.make_tiny_fairseq_camembert(
        tmp_path_factory.mktemp("fairseq") / "camembert-base", sample_texts)


# ---- evaluation: a small French corpus and a tiny checkpoint trained for two steps

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
    return train_tiny_checkpoint(tmp_path_factory.mktemp("train"), "hf_roberta", tiny_camembert,
                                 dpr_files[0], records=slice(0, 16))


@pytest.fixture(scope="session")
def spread(tmp_path_factory: pytest.TempPathFactory, tiny_camembert: Path) -> Path:
    """A tiny CamemBERT bi-encoder with large random weights (std 0.3, layer norms kept):
    its scores differ by whole units, where the default initialisation gives vectors that
    agree to 1e-5 and rankings decided by rounding noise."""
    torch.manual_seed(0)
    model = build_biencoder("hf_roberta", str(tiny_camembert))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("weight") and "LayerNorm" not in name:
                param.normal_(std=0.3)
    params = {"encoder_model_type": "hf_roberta", "pretrained_model_cfg": str(tiny_camembert),
              "pretrained_file": None, "do_lower_case": False, "projection_dim": 0,
              "sequence_length": 64}
    path = tmp_path_factory.mktemp("spread") / "dpr_biencoder.0"
    save_checkpoint(CheckpointState(model_dict=to_dpr_layout(model.state_dict()),
                                    encoder_params=params), path)
    return path


@pytest.fixture(scope="session")
def reranker_checkpoint(tmp_path_factory: pytest.TempPathFactory, tiny_camembert: Path,
                        dpr_files) -> Path:
    """A tiny CamemBERT reranker trained for two steps (8 questions, batch 4, 3 negatives)
    with a random head, so that its scores differ between pairs."""
    folder = tmp_path_factory.mktemp("reranker")
    subset = folder / "train.json"
    chosen = json.loads(dpr_files[0].read_text(encoding="utf-8"))[:8]
    subset.write_text(json.dumps(chosen, ensure_ascii=False), encoding="utf-8")
    assert train_reranker.main([
        "--encoder_model_type", "hf_roberta", "--pretrained_model_cfg", str(tiny_camembert),
        "--train_file", str(subset), "--output_dir", str(folder / "out"), "--batch_size", "4",
        "--sequence_length", "64", "--num_train_epochs", "1", "--warmup_steps", "0",
        "--negatives", "3", "--head_init", "random"]) == 0
    return folder / "out" / "reranker.0.2"


def train_tiny_checkpoint(folder: Path, encoder_type: str, model_cfg: Path, train_file: Path,
                          *, records: slice) -> Path:
    """Trains a tiny bi-encoder for one epoch (batch 8) on ``records`` of ``train_file``."""
    subset = folder / "train.json"
    chosen = json.loads(train_file.read_text(encoding="utf-8"))[records]
    subset.write_text(json.dumps(chosen, ensure_ascii=False), encoding="utf-8")
    out = folder / "out"
    assert train_dense_encoder.main([
        "--encoder_model_type", encoder_type, "--pretrained_model_cfg", str(model_cfg),
        "--train_file", str(subset), "--output_dir", str(out), "--batch_size", "8",
        "--sequence_length", "64", "--num_train_epochs", "1", "--warmup_steps", "0"]) == 0
    (path,) = out.glob("dpr_biencoder.*")
    return path




@pytest.fixture(autouse=True)
def restore_root_logging():
    """Puts back the root logger's handlers and level after every test: an entry point run
    under capsys installs a handler on the test's own (then closed) stderr, and a later tool
    that only calls logging.basicConfig would otherwise log to a closed stream (which made
    results depend on test order)."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
