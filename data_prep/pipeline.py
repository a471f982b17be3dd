"""The squad2dpr pipeline: validate, split, build positives, mine negatives, write
(docs/DATA_PREP.md, "Pipeline")."""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from data_prep.bm25_negatives import INDEX_DIRNAME, NegativeQuery, bm25_negatives
from data_prep.dataset import (
    Corpus,
    Example,
    build_corpus,
    build_examples,
    context,
    random_negatives,
)
from data_prep.passages import make_splitter
from data_prep.splits import TEST, TRAIN, SplitOptions, plan_splits
from data_prep.writers import (
    write_json,
    write_passages_tsv,
    write_qas_tsv,
    write_records,
)
from dpr.data.answers import prepare_answers
from dpr.data.records import DataFormatError
from dpr.data.squad import SquadFile, load_squad_file, source_labels
from dpr.retrieval.bm25 import BM25Retriever, BM25Settings
from dpr.utils.io import check_output_dir

logger = logging.getLogger(__name__)

@dataclass(frozen=True)
class Options:
    """Pipeline options (see the command line help for each one)."""

    inputs: list[Path]
    output_dir: Path
    split: SplitOptions = field(default_factory=SplitOptions)
    max_chars: int = 600
    sentence_splitter: str = "spacy"
    language: str = "fr"
    bm25_top_k: int = 30
    num_random_negatives: int = 0
    bm25: BM25Settings = field(default_factory=BM25Settings)
    num_threads: int = 0
    strict: bool = False
    show_progress: bool = True


@contextlib.contextmanager
def _stage(timings: dict[str, float], name: str) -> Iterator[None]:
    """Times the enclosed block into ``timings[name]`` (seconds, 3 decimals) and logs it."""
    start = time.perf_counter()
    yield
    timings[name] = round(time.perf_counter() - start, 3)
    logger.info("stage %-18s %.2f s", name, timings[name])


def _mine(examples: Sequence[Example], splits: dict[str, str], corpus: Corpus,
          retriever: BM25Retriever, options: Options) -> list[list[tuple[int, float]]]:
    """Hard negatives per example, restricted to passages of the example's own split."""
    result: list[list[tuple[int, float]]] = [[] for _ in examples]
    for split in options.split.names:
        members = [i for i, ex in enumerate(examples) if splits[ex.paragraph.key] == split]
        if not members:
            continue
        allowed = np.array([splits[p.paragraph_key] == split for p in corpus.passages])
        tokens = retriever.query_tokens([examples[i].question.question for i in members])
        queries = [NegativeQuery(tokens=toks, paragraph_key=examples[i].paragraph.key,
                                 answers=prepare_answers(examples[i].answers))
                   for i, toks in zip(members, tokens)]
        mined = bm25_negatives(retriever, queries, corpus.passages, allowed=allowed,
                               top_k=options.bm25_top_k, n_threads=options.num_threads)
        for i, negatives in zip(members, mined):
            result[i] = negatives
    return result


def _load_inputs(options: Options) -> list[SquadFile]:
    """The validated input files; refuses a run without one answerable question."""
    check_output_dir(options.output_dir, flag="--output_dir")
    labels = source_labels(options.inputs)
    files = [load_squad_file(path, source=label, strict=options.strict)
             for path, label in zip(options.inputs, labels)]
    if not any(p.questions for f in files for p in f.paragraphs):
        raise DataFormatError(f"{', '.join(map(str, options.inputs))}: no answerable question "
                            "(every one unanswerable or without a valid answer): nothing to "
                            "convert")
    return files


def _stats(files: Sequence[SquadFile], counters: Counter[str], outputs: dict[str, Any],
           plan: dict[str, str], options: Options) -> dict[str, Any]:
    """Counts per input, per split and per stage of the run (docs/DATA_PREP.md, stats.json)."""
    articles, dropped = Counter(plan.values()), Counter[str]()
    for counter in [*(f.stats for f in files), counters]:
        dropped.update({k.removeprefix("dropped_"): v for k, v in counter.items()
                        if k.startswith("dropped_")})
    return {
        "inputs": {f.source: {"path": str(f.path), **dict(sorted(f.stats.items()))} for f in files},
        "questions": {"input": sum(f.stats["questions"] for f in files), **outputs["questions"],
                      "dropped": dict(sorted(dropped.items())),
                      "dropped_total": sum(dropped.values())},
        **{k: v for k, v in outputs.items() if k != "questions"},
        "positives": {"in_passage": counters["positives_in_passage"],
                      "answer_window": counters["positives_answer_window"]},
        "options": {"max_chars": options.max_chars, "language": options.language,
                    "sentence_splitter": options.sentence_splitter,
                    **asdict(options.split), "bm25_top_k": options.bm25_top_k,
                    "num_random_negatives": options.num_random_negatives,
                    "strict": options.strict},
        "split": {"articles": {s: articles[s] for s in options.split.names},
                  "holdout": {"field": options.split.holdout_field,
                              "values": list(options.split.holdout_values),
                              "articles": articles[TEST]},
                  "negatives_from": "own split only (passages of other splits are never "
                                    "negatives)"},
    }


def run(options: Options) -> dict[str, Any]:
    """Runs the whole conversion and writes every output file; returns ``stats.json``'s
    content.

    Raises:
        DataFormatError: On invalid input, before anything is written.
    """
    start = time.perf_counter()
    timings: dict[str, float] = {}
    counters: Counter[str] = Counter()
    with _stage(timings, "read_validate"):
        files = _load_inputs(options)
        paragraphs = [p for f in files for p in f.paragraphs]
    with _stage(timings, "load_splitter"):
        splitter = make_splitter(options.sentence_splitter)
    with _stage(timings, "split_passages"):
        corpus = build_corpus(paragraphs, splitter, max_chars=options.max_chars,
                              show_progress=options.show_progress)
    with _stage(timings, "positives_split"):
        examples = build_examples(paragraphs, corpus, max_chars=options.max_chars,
                                  counters=counters)
        plan = plan_splits(files, options.split)
        splits = {p.key: plan[p.article_key] for p in paragraphs}
    with _stage(timings, "bm25_index"):
        retriever, reused = BM25Retriever.load_or_build(
            options.output_dir / INDEX_DIRNAME, [p.title for p in corpus.passages],
            [p.text for p in corpus.passages], settings=options.bm25,
            show_progress=options.show_progress)
        logger.info("BM25 %s k1=%s b=%s", options.bm25.method, options.bm25.k1, options.bm25.b)
    with _stage(timings, "bm25_mining"):
        hard = _mine(examples, splits, corpus, retriever, options)
    with _stage(timings, "random_negatives"):
        pools = {s: [i for i, p in enumerate(corpus.passages) if splits[p.paragraph_key] == s]
                 for s in options.split.names}
        randoms = random_negatives(examples, {k: pools[s] for k, s in splits.items()}, corpus,
                                   num=options.num_random_negatives, seed=options.split.seed)
    with _stage(timings, "write_outputs"):
        outputs = _write(examples, splits, corpus, hard, randoms, options)
    stats = _stats(files, counters, outputs, plan, options)
    stats["bm25"] = {**options.bm25.describe(), "top_k": options.bm25_top_k,
                     "index_reused": reused, "index_dir": INDEX_DIRNAME}
    stats["timings_s"] = {**timings, "total": round(time.perf_counter() - start, 3)}
    write_json(options.output_dir / "stats.json", stats)
    return stats


def _write(examples: Sequence[Example], splits: dict[str, str], corpus: Corpus,
           hard: Sequence[Sequence[tuple[int, float]]], randoms: Sequence[Sequence[int]],
           options: Options) -> dict[str, Any]:
    """Writes records, passages.tsv and qas_*.tsv; returns output counts for the stats."""
    names = options.split.names
    records: dict[str, list[dict[str, Any]]] = {s: [] for s in names}
    for example, negatives, sampled in zip(examples, hard, randoms):
        records[splits[example.paragraph.key]].append({
            "question": example.question.question,
            "answers": example.answers,
            "positive_ctxs": example.positives,
            "negative_ctxs": [context(corpus.passages[i]) for i in sampled],
            "hard_negative_ctxs": [context(corpus.passages[i], score) for i, score in negatives],
        })
    for split in names:
        # The questions of a paragraph come out adjacent. DPR validates on the dev file in file
        # order, 16 questions a batch: adjacent questions sharing a positive passage would be
        # each other's "negatives", and an exact copy of the positive can never be told apart.
        random.Random(f"{options.split.seed}-order-{split}").shuffle(records[split])
    out = options.output_dir
    for split in names:
        write_records(out / f"DPR_FR_{split}.json", records[split])
    write_passages_tsv(out / "passages.tsv", corpus.passages)
    for split in names:
        if split != TRAIN:
            write_qas_tsv(out / f"qas_{split}.tsv",
                          [(r["question"], r["answers"]) for r in records[split]])
    short = sum(1 for negatives in hard if len(negatives) < options.bm25_top_k)
    return {
        "questions": {s: len(records[s]) for s in names},
        "articles_with_questions": {s: len({ex.paragraph.article_key for ex in examples
                                            if splits[ex.paragraph.key] == s}) for s in names},
        "passages": {s: sum(1 for p in corpus.passages if splits[p.paragraph_key] == s)
                     for s in names},
        "hard_negatives": {"total": sum(len(n) for n in hard),
                           "questions_with_fewer_than_top_k": short},
        "random_negatives": {"total": sum(len(r) for r in randoms)},
    }
