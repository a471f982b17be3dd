"""`python -m data_prep.squad2dpr`: SQuAD-format French QA files -> DPR training files with
BM25 hard negatives (docs/DATA_PREP.md)."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from data_prep.pipeline import Options, run
from dpr.cli.flags import add_output_flags
from dpr.cli.main import run_main
from dpr.utils.options import add_options, options_of

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m data_prep.squad2dpr``."""
    parser = argparse.ArgumentParser(
        prog="python -m data_prep.squad2dpr",
        description="Convert SQuAD v1/v2-format QA files (e.g. PIAF) into DPR training files "
        "(DPR_FR_train.json, DPR_FR_dev.json, passages.tsv, qas_dev.tsv, stats.json; "
        "optionally tune and held-out test splits) with BM25 hard negatives, without any "
        "search server.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("inputs", nargs="+", type=Path, metavar="FILE", help="SQuAD-format "
                        "JSON file(s), optionally .gz; all are merged before the split")
    add_options(parser, Options)
    add_output_flags(parser, quiet_help="no progress bars, warnings and errors only")
    return parser


def _run(args: argparse.Namespace) -> int:
    options = options_of(Options, args, show_progress=not args.quiet
                         and not os.environ.get("DISABLE_TQDM"))
    stats = run(options)
    questions = stats["questions"]
    per_split = " + ".join(f"{questions[s]} {s}" for s in options.split.names)
    corpus_only = sum(f.get("paragraphs_without_questions", 0) for f in stats["inputs"].values())
    logger.info(
        "Done: %s questions, %d dropped %s, %d passages (%d paragraphs without questions: "
        "corpus only); total %.1f s -> %s", per_split, questions["dropped_total"],
        questions["dropped"], sum(stats["passages"].values()), corpus_only,
        stats["timings_s"]["total"], options.output_dir)
    if not questions["train"]:
        logger.warning("DPR_FR_train.json is empty: every question is in an evaluation split")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Runs the command line: 0 on success, 1 on invalid input, 2 on invalid flags."""
    return run_main(build_parser(), argv, _run, prog="data_prep.squad2dpr", quiet_logs=True)


if __name__ == "__main__":
    raise SystemExit(main())
