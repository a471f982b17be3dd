"""Malformed inputs across the six tools: each exits 1 (2 for bad flags) with one error line
naming the file, record or flag, no traceback, and writes nothing (docs/RELIABILITY.md)."""

from __future__ import annotations

import gzip
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

import dense_retriever
import generate_dense_embeddings
import train_dense_encoder
from data_prep import mine_negatives, squad2dpr
from dpr import evaluate
from dpr.index.shards import read_shard
from dpr.utils.io import write_vectors
from dpr.utils.logging import setup_logging
from dpr2hf.cli import main as dpr2hf_main

GOOD_RECORD = {"question": "Où coule la Loire ?", "answers": ["Loire"],
               "positive_ctxs": [{"title": "Loire", "text": "La Loire coule en France."}]}


@dataclass
class Env:
    """What the cases build on: a scratch folder and the shared tiny fixtures."""

    tmp: Path
    camembert: Path
    bert: Path
    checkpoint: Path
    passages: Path
    qas: Path
    shard: Path
    train: Path

    def write(self, name: str, content: str | bytes) -> Path:
        path = self.tmp / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return path

    def records(self, name: str, records: object) -> Path:
        return self.write(name, json.dumps(records, ensure_ascii=False))

    def checkpoint_with(self, name: str, change: Callable[[dict], None]) -> Path:
        state = torch.load(self.checkpoint, weights_only=True)
        change(state)
        torch.save(state, self.tmp / name)
        return self.tmp / name


# ---- argument lists of each tool; `out` is what must not be written

def train(env: Env, *extra: str, model: Path | None = None) -> list[str]:
    return ["--encoder_model_type", "hf_roberta", "--pretrained_model_cfg",
            str(model or env.camembert), "--output_dir", str(env.tmp / "out"),
            "--batch_size", "2", "--sequence_length", "32", *extra]


def train_file(env: Env, path: Path, *extra: str) -> list[str]:
    return train(env, "--train_file", str(path), *extra)


def prep(env: Env, path: Path, *extra: str) -> list[str]:
    return [str(path), "--output_dir", str(env.tmp / "out"), "--sentence_splitter", "regex",
            "--quiet", *extra]


def generate(env: Env, *extra: str, ctx: Path | None = None,
             model: Path | None = None) -> list[str]:
    return ["--model_file", str(model or env.checkpoint), "--ctx_file", str(ctx or env.passages),
            "--out_file", str(env.tmp / "out"), "--batch_size", "4", "--no_cuda", "--quiet",
            *extra]


def retrieve(env: Env, pattern: str, *extra: str, qa: Path | None = None,
             ctx: Path | None = None) -> list[str]:
    return ["--model_file", str(env.checkpoint), "--qa_file", str(qa or env.qas), "--ctx_file",
            str(ctx or env.passages), "--encoded_ctx_file", pattern, "--out_file",
            str(env.tmp / "out"), "--n-docs", "3", "--no_cuda", "--quiet", *extra]


def mine(env: Env, *, records: Path | None = None, passages: Path | None = None,
         exclude: Path | None = None) -> list[str]:
    return ["--model_file", str(env.checkpoint), "--train_file", str(records or env.train),
            "--ctx_file", str(passages or env.passages), "--out_file", str(env.tmp / "out"),
            "--no_cuda", "--quiet",
            *(["--exclude_articles_of", str(exclude)] if exclude else [])]


def tsv_eval(env: Env, *, passages: Path | None = None, qa: Path | None = None) -> list[str]:
    return ["--ctx_file", str(passages or env.passages), "--qa_file", str(qa or env.qas),
            "--retrievers", "bm25", "--output_dir", str(env.tmp / "out"), "--quiet"]


def squad_eval(env: Env, path: Path) -> list[str]:
    return ["--squad", str(path), "--retrievers", "bm25", "--output_dir", str(env.tmp / "out"),
            "--quiet"]


def embeddings(env: Env, name: str, ids: list[str], vectors: np.ndarray) -> str:
    write_vectors(env.tmp / name, ids, vectors)
    return str(env.tmp / f"{name}.npy")


def _shard(env: Env) -> tuple[list[str], np.ndarray]:
    return read_shard(f"{env.shard}_0.npy")


def _ids_mismatch(env: Env) -> str:
    ids, vectors = _shard(env)
    path = embeddings(env, "short_0", ids, vectors)
    Path(env.tmp / "short_0.ids.json").write_text(json.dumps(ids[:-1]))
    return path


def _squad(qa: dict) -> dict:
    return {"data": [{"title": "Loire", "paragraphs": [
        {"context": "La Loire coule en France.", "qas": [qa]}]}]}


def _ok_squad(env: Env) -> Path:
    return env.records("ok.json", _squad({"question": "Où ?", "answers": [
        {"text": "Loire", "answer_start": 3}]}))


def _pickled_checkpoint(env: Env) -> Path:
    def add_object(state: dict) -> None:
        state["encoder_params"]["note"] = Path("x")  # needs full unpickling

    return env.checkpoint_with("pickled.cp", add_object)


def _del_key(key: str) -> Callable[[dict], None]:
    return lambda state: state.pop(key)


def _set_param(key: str, value: object) -> Callable[[dict], None]:
    return lambda state: state["encoder_params"].__setitem__(key, value)


TSV_HEADER = "id\ttext\ttitle\n"
NO_QUESTIONS, NO_PASSAGES = "no questions (is the file empty?)", "no passages (is the file empty?)"
# (case name, tool, argv builder, exit status, text(s) the one error line contains)
CASES: list[tuple[str, Callable, Callable[[Env], list[str]], int, str | tuple[str, ...]]] = [
    ("train: missing file", train_dense_encoder.main,
     lambda e: train_file(e, e.tmp / "none.json"), 1, "none.json: no file matches"),
    ("train: empty file", train_dense_encoder.main,
     lambda e: train_file(e, e.write("empty.json", "")), 1,
     ("--train_file ", "empty.json: file is empty")),
    ("train: invalid JSON", train_dense_encoder.main,
     lambda e: train_file(e, e.write("bad.json", '[{"question": ')), 1, "bad.json"),
    ("train: JSON not a list", train_dense_encoder.main,
     lambda e: train_file(e, e.records("obj.json", {"question": "q"})), 1, "obj.json"),
    ("train: record without question", train_dense_encoder.main,
     lambda e: train_file(e, e.records("noq.json", [{**GOOD_RECORD, "question": None}])), 1,
     "noq.json: record 0"),
    ("train: answers not a list", train_dense_encoder.main,
     lambda e: train_file(e, e.records("ans.json", [{**GOOD_RECORD, "answers": "Loire"}])), 1,
     "ans.json: record 0"),
    ("train: positive_ctxs empty", train_dense_encoder.main,
     lambda e: train_file(e, e.records("nopos.json", [{**GOOD_RECORD, "positive_ctxs": []}])),
     1, "nopos.json"),
    ("train: ctx without text", train_dense_encoder.main,
     lambda e: train_file(e, e.records("notext.json", [
         {**GOOD_RECORD, "positive_ctxs": [{"title": "Loire"}]}])), 1, "notext.json: record 0"),
    ("train: truncated gz", train_dense_encoder.main,
     lambda e: train_file(e, e.write("cut.json.gz", gzip.compress(
         json.dumps([GOOD_RECORD] * 50).encode())[:60])), 1, "cut.json.gz"),
    ("train: non-UTF-8 bytes", train_dense_encoder.main,
     lambda e: train_file(e, e.write("latin1.json", json.dumps([GOOD_RECORD], ensure_ascii=False)
                                     .encode("latin-1"))), 1, "latin1.json"),
    ("train: negative --batch_size", train_dense_encoder.main,
     lambda e: train_file(e, e.train, "--batch_size", "-1"), 2, "--batch_size must be >= 1"),
    ("train: --sequence_length beyond the position table", train_dense_encoder.main,
     lambda e: train(e, "--train_file", str(e.train), "--sequence_length", "1024",
                     "--encoder_model_type", "hf_bert", model=e.bert), 2,
     "--sequence_length 1024 exceeds the 512 positions"),
    ("train: --sequence_length 513 on RoBERTa-type 514 positions", train_dense_encoder.main,
     lambda e: train_file(e, e.train, "--sequence_length", "513"), 2,
     "--sequence_length 513 exceeds the 512 positions"),
    ("train: bad --config JSON", train_dense_encoder.main,
     lambda e: train_file(e, e.train, "--config", str(e.write("c.json", "{bad"))), 2,
     "--config"),
    ("train: null in --config", train_dense_encoder.main,
     lambda e: train_file(e, e.train, "--config",
                          str(e.records("n.json", {"dev_batch_size": None}))),
     2, "--dev_batch_size: expected int, got null"),
    ("train: upsample rates of wrong length", train_dense_encoder.main,
     lambda e: train_file(e, e.train, "--train_files_upsample_rates", "[1, 2]"), 1,
     "has 2 rates but the train files expand to 1"),
    ("train: upsample rate 1e400", train_dense_encoder.main,
     lambda e: train_file(e, e.train, "--train_files_upsample_rates", "[1e400]"), 2,
     "finite non-negative numbers"),
    ("train: negative --val_av_rank_hard_neg", train_dense_encoder.main,
     lambda e: train_file(e, e.train, "--val_av_rank_hard_neg", "-3"), 2,
     "--val_av_rank_hard_neg must be >= 0"),
    ("train: --learning_rate nan", train_dense_encoder.main,
     lambda e: train_file(e, e.train, "--learning_rate", "nan"), 2,
     "--learning_rate: must be a finite number"),
    ("train: --model_file of random bytes", train_dense_encoder.main,
     lambda e: train_file(e, e.train, "--model_file", str(e.write("rnd.cp", bytes(range(256))))),
     1, "rnd.cp"),
    ("data_prep: missing file", squad2dpr.main, lambda e: prep(e, e.tmp / "none.json"), 1,
     "none.json: file not found"),
    ("data_prep: invalid JSON", squad2dpr.main,
     lambda e: prep(e, e.write("bad.json", '{"data": [')), 1, "bad.json: malformed JSON"),
    ("data_prep: data not a list", squad2dpr.main,
     lambda e: prep(e, e.records("d.json", {"data": {}})), 1, "field 'data' must be list"),
    ("data_prep: question not a string", squad2dpr.main,
     lambda e: prep(e, e.records("q.json", _squad({"question": 3, "answers": []}))), 1,
     "q.json: data[0].paragraphs[0].qas[0]"),
    ("data_prep: answer_start out of range with --strict", squad2dpr.main,
     lambda e: prep(e, e.records("s.json", _squad({"question": "Où ?", "answers": [
         {"text": "Loire", "answer_start": 400}]})), "--strict"), 1, "answer_start 400"),
    ("data_prep: negative --max_chars", squad2dpr.main,
     lambda e: prep(e, _ok_squad(e), "--max_chars", "-5"), 2, "--max_chars"),
    ("data_prep: --bm25_k1 nan", squad2dpr.main,
     lambda e: prep(e, _ok_squad(e), "--bm25_k1", "nan"), 2,
     "--bm25_k1 must be a finite number"),
    ("mine_negatives: TSV with wrong column count", mine_negatives.main,
     lambda e: ["--model_file", str(e.checkpoint), "--train_file", str(e.train), "--ctx_file",
                str(e.write("cols.tsv", TSV_HEADER + "p1\tonly two\n")), "--out_file",
                str(e.tmp / "out"), "--no_cuda", "--quiet"], 1, "cols.tsv"),
    ("dpr2hf: random bytes", dpr2hf_main,
     lambda e: [str(e.write("rnd.cp", bytes(range(256)) * 4)), "--output_dir",
                str(e.tmp / "out")], 1, "rnd.cp"),
    ("dpr2hf: checkpoint missing keys", dpr2hf_main,
     lambda e: [str(e.checkpoint_with("nokeys.cp", _del_key("model_dict"))), "--output_dir",
                str(e.tmp / "out")], 1, "nokeys.cp: not a DPR checkpoint: missing keys"),
    ("dpr2hf: needs pickle without --allow_unsafe_pickle", dpr2hf_main,
     lambda e: [str(_pickled_checkpoint(e)), "--output_dir", str(e.tmp / "out")], 1,
     "--allow_unsafe_pickle"),
    ("generate: TSV with wrong column count", generate_dense_embeddings.main,
     lambda e: generate(e, ctx=e.write("cols.tsv", TSV_HEADER + "p1\tonly two\n")), 1,
     "cols.tsv"),
    ("generate: duplicate passage ids", generate_dense_embeddings.main,
     lambda e: generate(e, ctx=e.write("dup.tsv", TSV_HEADER + "p1\ta\tA\np1\tb\tB\n")), 1,
     "dup.tsv"),
    ("generate: non-UTF-8 TSV", generate_dense_embeddings.main,
     lambda e: generate(e, ctx=e.write("l1.tsv", (TSV_HEADER + "p1\tété\tA\n")
                                       .encode("latin-1"))), 1, "l1.tsv"),
    ("generate: negative --batch_size", generate_dense_embeddings.main,
     lambda e: generate(e, "--batch_size", "-4"), 2, "--batch_size"),
    ("generate: stored sequence_length beyond the position table",
     generate_dense_embeddings.main,
     lambda e: generate(e, model=e.checkpoint_with("long.cp", _set_param("sequence_length",
                                                                         2048))), 2,
     "--sequence_length 2048 exceeds the 512 positions"),
    ("retriever: embeddings of the wrong dimension", dense_retriever.main,
     lambda e: retrieve(e, embeddings(e, "dim_0", _shard(e)[0],
                                      np.zeros((len(_shard(e)[0]), 3), np.float32))), 1,
     "dim_0.npy"),
    ("retriever: ids file mismatch", dense_retriever.main,
     lambda e: retrieve(e, _ids_mismatch(e)), 1, "short_0"),
    ("retriever: missing --qa_file", dense_retriever.main,
     lambda e: retrieve(e, f"{e.shard}_*.npy", qa=e.tmp / "none.tsv"), 1, "none.tsv"),
    ("retriever: --sequence_length -1", dense_retriever.main,
     lambda e: retrieve(e, f"{e.shard}_*.npy", "--sequence_length", "-1"), 2,
     "--sequence_length: must be >= 4"),
    ("evaluate: --bm25_b out of range", evaluate.main,
     lambda e: [*squad_eval(e, _ok_squad(e)), "--bm25_b", "1.5"], 2,
     "--bm25_b must be in [0, 1], got 1.5"),
    ("evaluate: --hybrid_lambda nan", evaluate.main,
     lambda e: [*squad_eval(e, _ok_squad(e)), "--hybrid_lambda", "nan"], 2,
     "--hybrid_lambda must be a finite number"),
    ("evaluate: SQuAD question without text", evaluate.main,
     lambda e: squad_eval(e, e.records("q.json", _squad({"answers": []}))), 1,
     "q.json: data[0].paragraphs[0].qas[0] (id=q-0-0-0): missing field 'question'"),
    ("evaluate: empty SQuAD file", evaluate.main,
     lambda e: squad_eval(e, e.write("empty.json", "")), 1,
     ("--squad ", "empty.json: file is empty")),
    ("evaluate: SQuAD file without questions", evaluate.main,
     lambda e: squad_eval(e, e.records("noq.json", {"data": [{"title": "Loire", "paragraphs": [
         {"context": "La Loire coule en France.", "qas": []}]}]})), 1,
     ("--squad ", "noq.json: no questions found")),
    ("data_prep: SQuAD file without questions", squad2dpr.main,
     lambda e: prep(e, e.records("noq.json", {"data": [{"title": "Loire", "paragraphs": [
         {"context": "La Loire coule en France.", "qas": []}]}]})), 1,
     "noq.json: no questions found in any paragraph"),
    ("data_prep: SQuAD export of documents without qas only", squad2dpr.main,
     lambda e: prep(e, e.records("docs.json", {"data": [{"title": "Loire", "paragraphs": [
         {"context": "La Loire coule en France."}]}]})), 1,
     "docs.json: no questions found in any paragraph"),
    ("evaluate: SQuAD answers as columns (a dict, not a list)", evaluate.main,
     lambda e: squad_eval(e, e.records("cols.json", _squad({"question": "Où ?", "answers": {
         "text": ["France"], "answer_start": [18]}}))), 1,
     "cols.json: data[0].paragraphs[0].qas[0] (id=cols-0-0-0): field 'answers' must be list"),
    ("data_prep: SQuAD file of unanswerable questions only", squad2dpr.main,
     lambda e: prep(e, e.records("v2.json", _squad({"question": "Où ?", "answers": [],
                                                    "is_impossible": True}))), 1,
     ("v2.json: no answerable question", "nothing to convert")),
]


def _replacing(argv: list[str], flag: str, value: Path) -> list[str]:
    """`argv` with `flag`'s value replaced by `value` (or the flag added)."""
    if flag not in argv:
        return [*argv, flag, str(value)]
    at = argv.index(flag) + 1
    return [*argv[:at], str(value), *argv[at + 1:]]


# Empty question and passage files, in every tool that reads them: (tool, its argv, flag,
# file name, content, what the error says after "<flag> <file>").
TOOLS = {"evaluate": (evaluate.main, tsv_eval),
         "retriever": (dense_retriever.main, lambda e: retrieve(e, f"{e.shard}_*.npy")),
         "generate": (generate_dense_embeddings.main, generate),
         "mine_negatives": (mine_negatives.main, mine)}
EMPTY_INPUTS = [
    ("evaluate", "--qa_file", "empty.tsv", "", NO_QUESTIONS),
    ("evaluate", "--qa_file", "none.json", "[]", NO_QUESTIONS),
    ("evaluate", "--ctx_file", "hdr.tsv", TSV_HEADER, NO_PASSAGES),
    ("retriever", "--qa_file", "empty.tsv", "", NO_QUESTIONS),
    ("retriever", "--ctx_file", "empty.tsv", "", NO_PASSAGES),
    ("generate", "--ctx_file", "empty.tsv", "", NO_PASSAGES),
    ("generate", "--ctx_file", "hdr.tsv", TSV_HEADER, NO_PASSAGES),
    ("mine_negatives", "--train_file", "empty.json", "", "file is empty"),
    ("mine_negatives", "--train_file", "none.json", "[]", "contains no records"),
    ("mine_negatives", "--ctx_file", "hdr.tsv", TSV_HEADER, NO_PASSAGES),
    ("mine_negatives", "--exclude_articles_of", "empty.json", "", "file is empty"),
]
CASES += [(f"{tool}: {flag} {name} holding {content!r}", TOOLS[tool][0],
           lambda e, tool=tool, flag=flag, name=name, content=content: _replacing(
               TOOLS[tool][1](e), flag, e.write(name, content)),
           1, (f"{flag} ", f"{name}: {said}"))
          for tool, flag, name, content, said in EMPTY_INPUTS]


def _folder(env: Env) -> Path:
    (env.tmp / "adir").mkdir()
    return env.tmp / "adir"


# Paths that cannot be used, named with their flag before any work: (tool, flag, path, exit
# status, what the error says after the path).
TOOLS.update(train=(train_dense_encoder.main, lambda e: train_file(e, e.train)),
             data_prep=(squad2dpr.main, lambda e: prep(e, _ok_squad(e))))
PATHS = {"a file": lambda e: e.write("afile", "x"), "a folder": _folder,
         "under a file": lambda e: e.write("afile", "x") / "emb",
         "missing": lambda e: e.tmp / "absent.cp"}
BAD_PATHS = [
    ("train", "--output_dir", "a file", 2, "exists and is not a folder"),
    ("data_prep", "--output_dir", "a file", 2, "exists and is not a folder"),
    ("evaluate", "--output_dir", "a file", 2, "exists and is not a folder"),
    ("evaluate", "--trec_dir", "a file", 2, "exists and is not a folder"),
    ("generate", "--out_file", "under a file", 2, "afile is a file, not a folder"),
    ("retriever", "--out_file", "a folder", 2, "is a folder; give a file name"),
    ("mine_negatives", "--out_file", "a folder", 2, "is a folder; give a file name"),
    ("train", "--model_file", "missing", 1, "does not exist"),
    ("generate", "--model_file", "missing", 1, "does not exist"),
    ("retriever", "--model_file", "missing", 1, "does not exist"),
    ("mine_negatives", "--model_file", "missing", 1, "does not exist"),
]
CASES += [(f"{tool}: {flag} {what}", TOOLS[tool][0],
           lambda e, tool=tool, flag=flag, what=what: _replacing(
               TOOLS[tool][1](e), flag, PATHS[what](e)), code, (f"{flag} ", said))
          for tool, flag, what, code, said in BAD_PATHS]


@pytest.fixture(scope="module")
def shard(tmp_path_factory: pytest.TempPathFactory, checkpoint: Path, corpus) -> Path:
    prefix = tmp_path_factory.mktemp("malformed_emb") / "p"
    assert generate_dense_embeddings.main(["--model_file", str(checkpoint), "--ctx_file",
                                           str(corpus[0]), "--out_file", str(prefix),
                                           "--no_cuda", "--quiet"]) == 0
    return prefix


@pytest.fixture()
def fresh_logging() -> Iterator[None]:
    """Restores the root logger after a test that logs to its own captured stderr (a
    handler left on a closed capture stream breaks later tests)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def _error_lines(err: str) -> list[str]:
    """Logged errors (less dpr2hf's follow-up "Nothing was written") and argparse errors."""
    return [line for line in err.splitlines() if (
        "[ERROR]" in line and "Nothing was written" not in line) or ": error:" in line]


@pytest.mark.parametrize("name,main,build,code,message", CASES, ids=[c[0] for c in CASES])
def test_malformed_input_is_one_error_line_and_writes_nothing(
        tmp_path: Path, tiny_camembert: Path, tiny_bert: Path, checkpoint: Path, corpus,
        shard: Path, dpr_files, capsys, fresh_logging: None, name: str, main: Callable,
        build: Callable, code: int, message: str) -> None:
    # Given a malformed input for one tool
    env = Env(tmp_path, tiny_camembert, tiny_bert, checkpoint, *corpus, shard, dpr_files[0])
    argv = build(env)
    capsys.readouterr()
    setup_logging()  # log to this test's stderr, as a fresh process would
    # When running the tool in-process
    status = main(argv)
    err = capsys.readouterr().err
    # Then it exits 1 (2 for bad flags) with one line naming the culprit, no traceback
    assert status == code, err
    lines = _error_lines(err)
    parts = (message,) if isinstance(message, str) else message
    assert len(lines) == 1 and all(part in lines[0] for part in parts), lines
    assert "Traceback" not in err
    # and writes nothing
    out = tmp_path / "out"
    written = [p for p in tmp_path.glob("out*") if p.is_file()] + \
        ([p for p in out.rglob("*") if p.is_file()] if out.is_dir() else [])
    assert written == []
