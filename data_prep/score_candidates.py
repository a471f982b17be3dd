"""`python -m data_prep.score_candidates`: a trained reranker's score of every passage of DPR
training records (positives, hard and other negatives), the teacher file that
`train_dense_encoder.py --distill_scores` reads (format: `dpr.data.teacher`; the recipe:
docs/RECIPE.md, "Distillation").

Every (question, passage) pair is scored once, in one `score_pairs` call (batched,
length-sorted, with a progress bar); the file is written atomically, so a killed run leaves
nothing behind.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

from dpr.cli.flags import (
    add_checkpoint_path_flags,
    add_device_flags,
    add_flag,
    add_output_flags,
    add_pickle_flag,
    add_precision_flags,
    encoder_params,
)
from dpr.cli.main import run_main
from dpr.data.records import load_samples
from dpr.data.teacher import sample_passages, teacher_summary, write_teacher_scores
from dpr.utils.errors import naming_flag
from dpr.utils.io import check_output_file
from dpr.utils.options import at_least

logger = logging.getLogger("data_prep.score_candidates")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m data_prep.score_candidates``."""
    parser = argparse.ArgumentParser(
        prog="python -m data_prep.score_candidates",
        description="Score every passage of DPR training records with a trained reranker: the "
        "teacher file of train_dense_encoder.py --distill_scores.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_flag(parser, "--reranker", "--model_file", required=True,
             help="train_reranker.py checkpoint, or its CrossEncoder folder written by dpr2hf")
    add_flag(parser, "--train_file", "--input", required=True,
             help="DPR JSON (or JSON Lines, .gz) training records, a glob or comma-separated "
             "globs: the files the bi-encoder will be trained on")
    add_flag(parser, "--out_file", "--output", required=True, type=Path,
             help="JSON Lines teacher file written (atomically)")
    parser.add_argument("--batch_size", type=at_least(1), default=32,
                        help="pairs per forward pass")
    add_checkpoint_path_flags(parser)
    add_device_flags(parser)
    add_precision_flags(parser)
    add_pickle_flag(parser)
    add_output_flags(parser, quiet_help="no progress bar")
    return parser


def run(args: argparse.Namespace) -> int:
    """Reads the records, scores their pairs, writes the teacher file."""
    from dpr.inference import load_reranker
    from dpr.utils.device import autocast_dtype, select_device

    check_output_file(args.out_file, flag="--out_file")
    with naming_flag("--train_file"):
        samples = load_samples(args.train_file)
    questions: dict[str, dict[int, tuple[str, str]]] = {}
    for sample in samples:
        passages = questions.setdefault(sample.question, {})
        for passage in sample_passages(sample):
            passages.setdefault(passage.key, (passage.title, passage.text))
    device = select_device(args.device)
    reranker = load_reranker(args.reranker, encoder_params(args), device=device,
                             allow_pickle=args.allow_unsafe_pickle,
                             amp_dtype=autocast_dtype(args.fp16, args.amp_dtype, device),
                             batch_size=args.batch_size, quiet=args.quiet)
    pairs = [(question, passage) for question, passages in questions.items()
             for passage in passages.values()]
    logger.info("%d questions, %d (question, passage) pairs from %s; %s", len(questions),
                len(pairs), args.train_file, reranker.description)
    start = time.perf_counter()
    scores = iter(reranker.score_pairs(pairs).tolist())
    table = {question: {key: next(scores) for key in passages}
             for question, passages in questions.items()}
    write_teacher_scores(args.out_file, table.items())
    seconds = time.perf_counter() - start
    logger.info("Scored %d pairs in %.1f s (%.1f ms per pair) -> %s", len(pairs), seconds,
                1000 * seconds / max(len(pairs), 1), os.fspath(args.out_file))
    logger.info("The reranker on the training labels: %s",
                teacher_summary(table, samples))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line: 0 on success, 1 on bad input (nothing written), 2 on bad
    flags."""
    return run_main(build_parser(), argv, run, prog="data_prep.score_candidates")


if __name__ == "__main__":
    raise SystemExit(main())
