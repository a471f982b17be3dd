"""Encodes a passage TSV file (or one shard of it) with a model's passage encoder.

The model is a DPR checkpoint, a dpr2hf export folder or a Hugging Face / sentence-transformers
folder, applied with its own recipe (pooling, normalisation, prefixes; `dpr.inference`).

python generate_dense_embeddings.py --model_file dpr_biencoder.2 --ctx_file passages.tsv \
    --out_file emb/passages --shard_id 0 --num_shards 2

writes emb/passages_0.npy (float32 [n × D]) and emb/passages_0.ids.json (the passage ids).
"""

from __future__ import annotations

import argparse
import logging
import sys

from dpr.data.tsv import read_passages
from dpr.evaluation.encode import (
    add_encoder_flags,
    cli_encoder_params,
    encoding_dtype,
    pick_device,
)
from dpr.evaluation.index import write_embeddings
from dpr.inference import load_encoder
from dpr.utils.cli import add_debug_flag, run_main
from dpr.utils.errors import UsageError, read_input
from dpr.utils.io import check_input_path, check_output_file
from dpr.utils.logging import setup_logging

logger = logging.getLogger("generate_dense_embeddings")


def build_parser() -> argparse.ArgumentParser:
    """DPR's flags of generate_dense_embeddings.py."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_encoder_flags(parser)
    parser.add_argument("--ctx_file", type=str, required=True,
                        help="Passage TSV (id, text, title; header skipped; .gz accepted).")
    parser.add_argument("--out_file", type=str, required=True,
                        help="Output prefix: writes <out_file>_<shard_id>.npy and "
                        "<out_file>_<shard_id>.ids.json.")
    parser.add_argument("--shard_id", type=int, default=0, help="0-based shard to encode.")
    parser.add_argument("--num_shards", type=int, default=1,
                        help="Number of shards; shard k holds rows [k*s, (k+1)*s) with "
                        "s = ceil(rows / num_shards), so every passage is encoded.")
    parser.add_argument("--batch_size", type=int, default=32,
                        help="Passages per forward pass.")
    add_debug_flag(parser)
    return parser


def check_args(args: argparse.Namespace) -> None:
    """Raises UsageError (exit status 2) for inconsistent shard or batch flags."""
    if args.num_shards < 1:
        raise UsageError(f"--num_shards must be >= 1, got {args.num_shards}")
    if not 0 <= args.shard_id < args.num_shards:
        raise UsageError(f"--shard_id must be in [0, {args.num_shards}), got {args.shard_id}")
    if args.batch_size < 1:
        raise UsageError(f"--batch_size must be >= 1, got {args.batch_size}")


def shard_bounds(total: int, shard_id: int, num_shards: int) -> tuple[int, int]:
    """Rows [start, end) of one shard; sizes by ceil so that the shards cover every row."""
    size = -(-total // num_shards)
    return min(shard_id * size, total), min((shard_id + 1) * size, total)


def run(args: argparse.Namespace) -> str:
    """Encodes one shard and writes it; returns the vector file name."""
    check_args(args)
    check_input_path(args.model_file, flag="--model_file")
    check_output_file(f"{args.out_file}_{args.shard_id}.npy", flag="--out_file")
    # Read first: a bad file fails before the model loads; duplicate ids are refused.
    passages = list(read_input(read_passages, args.ctx_file, flag="--ctx_file",
                               what="passages").values())
    device = pick_device(args.no_cuda)
    model = load_encoder(args.model_file, cli_encoder_params(args), device=device,
                         allow_pickle=args.allow_unsafe_pickle,
                         amp_dtype=encoding_dtype(args, device), batch_size=args.batch_size,
                         quiet=args.quiet)
    start, end = shard_bounds(len(passages), args.shard_id, args.num_shards)
    shard = passages[start:end]
    logger.info("Shard %d/%d: passages %d..%d of %d (%d), device %s", args.shard_id,
                args.num_shards, start, end, len(passages), len(shard), model.device)
    logger.info("Model: %s", model.description)
    vectors = model.encode_passages([(p.title, p.text) for p in shard])
    npy, _ = write_embeddings(f"{args.out_file}_{args.shard_id}", [p.id for p in shard],
                              vectors)
    logger.info("Wrote %d vectors of size %d to %s", len(shard), model.dim, npy)
    return npy


def main(argv: list[str] | None = None) -> int:
    """Encodes one shard; returns the exit status (see `dpr.utils.cli.run_main`)."""
    return run_main(build_parser(), argv, run, prog="generate_dense_embeddings",
                    setup=lambda _: setup_logging(0))


if __name__ == "__main__":
    sys.exit(main())
