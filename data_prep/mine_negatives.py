"""`python -m data_prep.mine_negatives`: hard negatives mined with a trained dense model (DPR's
"adv-hn" round; docs/DATA_PREP.md, "Mining negatives with a trained model"). This module reads
the flags and files, encodes the corpus into chunk files beside ``--out_file`` (shared by the
processes of a ``torchrun`` job, resumed after a kill, removed once the output is written) and
writes the output; the selection itself is `dpr.retrieval.mining.mine`.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from data_prep.dataset import context
from data_prep.writers import write_records
from dpr.cli.flags import (
    add_checkpoint_path_flags,
    add_device_flags,
    add_flag,
    add_output_flags,
    add_pickle_flag,
    encoder_params,
)
from dpr.cli.main import run_main
from dpr.data.recipe import SORT_WINDOW_BATCHES
from dpr.data.records import DataFormatError, Passage, parse_sample, read_json_records
from dpr.data.tsv import read_passages
from dpr.inference.chunks import Layout, check_output, make_manifest
from dpr.inference.corpus import encode_corpus, read_chunks
from dpr.retrieval.mining import ArticleExclusion, EncodedCorpus, MiningOptions, mine
from dpr.utils.errors import InputError, UsageError, naming_flag, require_items
from dpr.utils.io import check_input_path, check_output_file

logger = logging.getLogger("data_prep.mine_negatives")
CHUNK_WINDOWS = 16  # default chunk: 16 length-sorted windows of SORT_WINDOW_BATCHES batches


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m data_prep.mine_negatives``."""
    parser = argparse.ArgumentParser(
        prog="python -m data_prep.mine_negatives",
        description="Replace the hard negatives of DPR JSON records by the passages a trained "
        "dense model ranks highest, without the positives and the passages containing an "
        "answer (false-negative filtering).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add = parser.add_argument
    add("--model_file", required=True,
        help="DPR checkpoint (any encoder type) or a folder written by dpr2hf")
    add_flag(parser, "--train_file", "--input", required=True, type=Path,
             help="DPR JSON (or JSON Lines, .gz) records whose hard negatives are mined")
    add_flag(parser, "--ctx_file", "--passages", required=True, type=Path,
             help="passage TSV (id, text, title) to mine from, e.g. data_prep's passages.tsv")
    add_flag(parser, "--out_file", "--output", required=True, type=Path,
             help="DPR JSON file written (atomically)")
    add_flag(parser, "--n_docs", "--n-docs", "--n_retrieved", type=int, default=100,
             help="passages retrieved per question")
    add("--num_negatives", type=int, default=30, help="mined negatives kept per question")
    add("--skip_top", type=int, default=0,
        help="ignore the first K ranks of every ranking (likely unlabelled positives)")
    add("--margin", type=float, default=None,
        help="keep only negatives with score <= positive score - MARGIN")
    add("--relative_margin", type=float, default=None,
        help="keep only negatives with score <= positive score * (1 - RELATIVE_MARGIN)")
    add("--mix_bm25", type=int, default=0,
        help="also keep the first M of the record's existing hard negatives (deduplicated, "
        "without those containing an answer or of --exclude_articles_of), after the mined ones")
    add("--exclude_articles_of", action="append", type=Path, default=[], metavar="FILE",
        help="DPR JSON file (repeatable, e.g. the dev file): passages of the articles of its "
        "passages are neither mined nor mixed in, so that train records hold no text of the "
        "other split's articles; articles are keyed as data_prep splits them (case-folded "
        "title; an untitled article by its position, read from data_prep's passage ids), and "
        "every passage of FILE is also excluded by its id and text")
    add("--match", choices=("string", "regex"), default="string",
        help="answer matching, as in the evaluation")
    add_checkpoint_path_flags(parser)
    add("--batch_size", type=int, default=64, help="texts per forward pass")
    add("--chunk_size", type=int, default=None,
        help="passages per encoded chunk, the unit of work of the processes and of resume "
        f"(default: {CHUNK_WINDOWS} length-sorted windows of {SORT_WINDOW_BATCHES} batches, "
        "which encodes the batches of one pass over the corpus)")
    add_device_flags(parser)
    add_flag(parser, "--local_rank", "--local-rank", type=int, default=-1,
             help="set by torch.distributed.launch (torchrun uses the environment)")
    add_pickle_flag(parser)
    add_output_flags(parser, quiet_help="no progress bars")
    return parser


def mining_options(args: argparse.Namespace) -> MiningOptions:
    """The selection options of the flags; checks the other counts too (UsageError naming
    the flag with a bad value)."""
    if args.chunk_size is None:
        args.chunk_size = CHUNK_WINDOWS * SORT_WINDOW_BATCHES * max(args.batch_size, 1)
    for flag in ("n_docs", "batch_size", "chunk_size"):
        if getattr(args, flag) < 1:
            raise UsageError(f"--{flag} must be >= 1, got {getattr(args, flag)}")
    if args.out_file.suffix == ".gz":
        raise UsageError(f"--out_file {args.out_file}: compressed output is not supported; "
                         "write a .json file")
    check_output_file(args.out_file, flag="--out_file")
    check_input_path(args.model_file, flag="--model_file")
    options = MiningOptions(num_negatives=args.num_negatives, skip_top=args.skip_top,
                            margin=args.margin, relative_margin=args.relative_margin,
                            mix_existing=args.mix_bm25)
    if args.n_docs < args.skip_top + args.num_negatives:
        logger.warning("--n_docs %d < --skip_top %d + --num_negatives %d: no question "
                       "can get %d mined negatives", args.n_docs, args.skip_top,
                       args.num_negatives, args.num_negatives)
    return options


def read_records(path: Path) -> list[dict[str, Any]]:
    """Reads and validates DPR records, kept as the raw dicts (every field preserved);
    InputError naming the file and the record on a missing or malformed one."""
    records = read_json_records(os.fspath(path))
    if not records:
        raise DataFormatError(f"{path}: contains no records")
    for index, record in enumerate(records):
        parse_sample(record, path=os.fspath(path), index=index)
    return records


def read_corpus(path: Path, *, exclusion: ArticleExclusion | None = None
                ) -> list[Passage]:
    """Reads the passage TSV, without the passages of the articles ``exclusion`` names;
    InputError on a malformed file, duplicate ids, or no passage (left)."""
    passages = list(read_passages(path).values())
    require_items(passages, path=path, what="passages")
    if exclusion is not None:
        kept = [p for p in passages if not exclusion.excludes(context(p))]
        logger.info("%d passages of %d article(s) of the other split(s) left out of the corpus",
                    len(passages) - len(kept), len(exclusion.articles))
        if not kept:
            raise InputError(f"{path}: no passage left once the articles of "
                             f"--exclude_articles_of are removed")
        passages = kept
    return passages


def read_exclusion(paths: Sequence[Path]) -> ArticleExclusion | None:
    """The articles of every passage of the records of ``paths`` (None without a path);
    InputError naming ``--exclude_articles_of`` on a missing, empty or malformed file."""
    if not paths:
        return None
    with naming_flag("--exclude_articles_of"):
        ctxs = [ctx for path in paths for record in read_records(path)
                for field in ("positive_ctxs", "negative_ctxs", "hard_negative_ctxs")
                for ctx in record.get(field) or []]
    return ArticleExclusion.of(ctxs)


def run(args: argparse.Namespace) -> int:
    """Reads, encodes (distributed when launched so), mines and writes (rank 0)."""
    from dpr.inference import load_encoder
    from dpr.utils.dist import cleanup, init_distributed
    from dpr.utils.logging import setup_logging

    ctx = init_distributed(args.local_rank, device=args.device)
    setup_logging(ctx.rank)
    try:
        options = mining_options(args)
        with naming_flag("--train_file"):
            records = read_records(args.train_file)
        exclusion = read_exclusion(args.exclude_articles_of)
        with naming_flag("--ctx_file"):
            passages = read_corpus(args.ctx_file, exclusion=exclusion)
        quiet = args.quiet or not ctx.is_main
        model = load_encoder(args.model_file, encoder_params(args), device=ctx.device,
                             batch_size=args.batch_size, quiet=quiet,
                             allow_pickle=args.allow_unsafe_pickle)
        logger.info("%d records from %s, %d passages from %s, model %s, %d process(es)",
                    len(records), args.train_file, len(passages), args.ctx_file,
                    model.description, ctx.world_size)
        vectors = encode_passages(args, model, passages, ctx=ctx, quiet=quiet)
        if vectors is None:
            return 0
        start = time.perf_counter()
        out, stats = mine(records, EncodedCorpus(passages, vectors), model, options=options,
                          n_retrieved=args.n_docs, match=args.match, exclusion=exclusion)
        write_records(args.out_file, out)
        shutil.rmtree(vectors_folder(args.out_file), ignore_errors=True)
        logger.info("Encoded questions, searched and selected in %.1f s",
                    time.perf_counter() - start)
        logger.info("Mined %s -> %s", stats.summary(options.num_negatives), args.out_file)
        return 0
    finally:
        cleanup()


def vectors_folder(out_file: Path) -> Path:
    """Where the corpus chunks of a mining run are written: ``<out_file>.vectors``."""
    return out_file.with_name(out_file.name + ".vectors")


def encode_passages(args: argparse.Namespace, model: Any, passages: list[Passage], *,
                    ctx: Any, quiet: bool) -> Any:
    """Encodes the corpus into chunk files (chunk k by process k mod processes; those of a
    killed run with the same inputs kept, any other leftover removed first), then reads them
    back: the vectors [N × D] on rank 0, None on the other processes."""
    from dpr.utils.dist import barrier

    start = time.perf_counter()
    prefix = str(vectors_folder(args.out_file) / "passages")
    layout = Layout(len(passages), chunk_size=args.chunk_size)
    manifest = make_manifest(model_path=args.model_file, model_description=model.description,
                             params=model.params, amp_dtype=model.amp_dtype, dim=model.dim,
                             passages=args.ctx_file, layout=layout, vector_dtype="float32")
    if ctx.is_main:
        try:
            check_output(prefix, manifest, layout.chunks())
        except InputError as err:
            logger.info("Removing the chunks of an earlier run with other inputs (%s)", err)
            shutil.rmtree(vectors_folder(args.out_file))
        vectors_folder(args.out_file).mkdir(exist_ok=True)
    barrier(ctx)
    encode_corpus(model, passages, prefix, layout, manifest=manifest, worker=ctx.rank,
                  workers=ctx.world_size, progress=not quiet)
    barrier(ctx)
    if not ctx.is_main:
        return None
    vectors = read_chunks(prefix, layout)
    logger.info("Encoded %d passages in %.1f s", len(vectors), time.perf_counter() - start)
    return vectors


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line: 0 on success, 1 on bad input (nothing written), 2 on bad
    flags."""
    return run_main(build_parser(), argv, run, prog="data_prep.mine_negatives")


if __name__ == "__main__":
    raise SystemExit(main())
