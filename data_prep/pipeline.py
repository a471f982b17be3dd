"""The squad2dpr pipeline: validate, split, build positives, mine negatives, write
(docs/DATA_PREP.md, "Pipeline")."""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import random
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from data_prep.bm25_negatives import INDEX_DIRNAME, NegativeQuery, bm25_negatives
from data_prep.dataset import (
    Example,
    ParagraphPassages,
    build_corpus,
    build_examples,
    context,
    random_negatives,
)
from data_prep.passages import make_splitter
from data_prep.splits import TEST, TRAIN, SplitOptions, plan_splits
from data_prep.writers import write_json, write_passages_tsv, write_qas_tsv, write_records
from dpr.cli.flags import check_finite_floats
from dpr.data.answers import prepare_answers
from dpr.data.records import DataFormatError
from dpr.data.squad import SquadFile, load_squad_file, source_labels
from dpr.retrieval.bm25 import LANGUAGES, METHODS, BM25Retriever, BM25Settings
from dpr.utils.errors import UsageError
from dpr.utils.io import check_output_dir
from dpr.utils.options import at_least, opt

logger = logging.getLogger(__name__)

def _values(text: str) -> tuple[str, ...]:
    values = tuple(dict.fromkeys(v.strip() for v in text.split(",") if v.strip()))
    if not values:
        raise argparse.ArgumentTypeError("expected one or more comma-separated values")
    return values


@dataclass(frozen=True)
class Options:
    """The pipeline's options: the flags of ``python -m data_prep.squad2dpr`` (generated from
    these fields, `dpr.utils.options`) but its input files."""

    inputs: list[Path]
    output_dir: Path = opt(None, "folder for the outputs and the reusable BM25 index (created "
                           "if missing)", type=Path, required=True)
    max_chars: int = opt(600, "maximum passage length in characters; passages end on sentence "
                         "boundaries", type=at_least(1))
    sentence_splitter: str = opt("spacy", "spacy: fr_core_news_sm 'senter' only (French); "
                                 "regex: rule-based, any language", choices=("spacy", "regex"))
    language: str = opt("fr", "language of stemmer and stop words; non-French needs "
                        "--sentence_splitter regex", choices=sorted(LANGUAGES))
    dev_ratio: float = opt(0.2, "fraction of articles (not questions) put in dev; 1: every "
                           "article in dev (an evaluation set: DPR_FR_train.json is written "
                           "empty, training refuses it)")
    tune_ratio: float = opt(0.0, "fraction of articles put in a third split for tuning "
                            "(DPR_FR_tune.json, qas_tune.tsv), disjoint from train and dev; 0: "
                            "no tune split")
    holdout_field: str | None = opt(None, "article-level field (title, or e.g. PIAF's "
                                    "categorie) whose --holdout_values send whole articles to "
                                    "a test split (DPR_FR_test.json, qas_test.tsv)",
                                    metavar="FIELD")
    holdout_values: tuple[str, ...] = opt((), "comma-separated values of --holdout_field held "
                                          "out as the test split", type=_values,
                                          metavar="V1,V2")
    seed: int = opt(42, "seed of the article split and of random negatives")
    bm25_top_k: int = opt(30, "hard negatives per question (best BM25 passages without any "
                          "answer)", type=at_least(0))
    num_random_negatives: int = opt(0, "random answer-free passages per question in "
                                    "negative_ctxs", type=at_least(0))
    bm25_k1: float = opt(1.5, "BM25 k1 (term frequency saturation)")
    bm25_b: float = opt(0.75, "BM25 b (length normalisation)")
    bm25_method: str = opt("lucene", "BM25 variant as implemented by bm25s",
                           choices=METHODS)
    num_threads: int = opt(0, "threads of the BM25 search (0: in the main thread)",
                           type=at_least(0))
    strict: bool = opt(False, "fail on answer offsets that do not match the context instead "
                       "of skipping them")
    show_progress: bool = True

    def __post_init__(self) -> None:
        check_finite_floats(self)
        if self.sentence_splitter == "spacy" and self.language != "fr":
            raise UsageError("--sentence_splitter spacy is only available for --language fr")
        self.split, self.bm25  # noqa: B018 (SplitOptions and BM25Settings check their flags)

    @functools.cached_property
    def split(self) -> SplitOptions:
        """How articles are split."""
        return SplitOptions(dev_ratio=self.dev_ratio, tune_ratio=self.tune_ratio,
                            holdout_field=self.holdout_field,
                            holdout_values=self.holdout_values, seed=self.seed)

    @functools.cached_property
    def bm25(self) -> BM25Settings:
        """The BM25 index's settings."""
        return BM25Settings(language=self.language, k1=self.bm25_k1, b=self.bm25_b,
                            method=self.bm25_method)


@contextlib.contextmanager
def _stage(timings: dict[str, float], name: str) -> Iterator[None]:
    """Times the enclosed block into ``timings[name]`` (seconds, 3 decimals) and logs it."""
    start = time.perf_counter()
    yield
    timings[name] = round(time.perf_counter() - start, 3)
    logger.info("stage %-18s %.2f s", name, timings[name])


def _mine(examples: Sequence[Example], splits: dict[str, str], corpus: ParagraphPassages,
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
    content. DataFormatError on invalid input, before anything is written."""
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


def _write(examples: Sequence[Example], splits: dict[str, str], corpus: ParagraphPassages,
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
