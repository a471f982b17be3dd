"""Encodes a passage TSV file with a model's passage encoder, in resumable chunks, over the
processes of a `torchrun` / SLURM job or DPR's shards.

python generate_dense_embeddings.py --model_file dpr_biencoder.2 --ctx_file passages.tsv \
    --out_file emb/passages [--chunk_size 100000] [--vector_dtype float16]
torchrun --nproc_per_node 4 generate_dense_embeddings.py ...     (or srun, one task per GPU)
python generate_dense_embeddings.py ... --shard_id 0 --num_shards 2      (DPR's shards)

Layout, manifest and resume: docs/EVALUATION.md ("generate_dense_embeddings.py") and
docs/SCALE.md, section 1.
"""

from __future__ import annotations

import argparse
import logging
import sys

from dpr.cli.flags import add_debug_flag, add_encoder_flags, add_flag, encoder_params
from dpr.cli.main import run_main
from dpr.data.tsv import count_passages
from dpr.index.shards import FLOAT_DTYPES
from dpr.inference import load_encoder
from dpr.inference.chunks import Layout, check_output, make_manifest
from dpr.inference.corpus import EncodingReport, encode_corpus
from dpr.utils.device import autocast_dtype, select_device
from dpr.utils.dist import resolve_ranks
from dpr.utils.errors import InputError, UsageError
from dpr.utils.io import check_input_path, check_output_file
from dpr.utils.logging import setup_logging

logger = logging.getLogger("generate_dense_embeddings")

DEFAULT_CHUNK_SIZE = 100_000


def build_parser() -> argparse.ArgumentParser:
    """DPR's flags of generate_dense_embeddings.py, and the chunking ones."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_encoder_flags(parser)
    parser.add_argument("--ctx_file", type=str, required=True,
                        help="Passage TSV (id, text, title; header skipped; .gz accepted).")
    parser.add_argument("--out_file", type=str, required=True,
                        help="Output prefix: writes <out_file>_<k>.npy and <out_file>_<k>.ids.json "
                        "per chunk (or per DPR shard), and <out_file>.manifest.json.")
    parser.add_argument("--chunk_size", type=int, default=DEFAULT_CHUNK_SIZE,
                        help="Passages per output file: the unit of work of the processes and "
                        "of resume (0: one file per DPR shard, see --num_shards).")
    parser.add_argument("--shard_id", type=int, default=0, help="0-based DPR shard to encode.")
    parser.add_argument("--num_shards", type=int, default=1,
                        help="DPR's shards for separate jobs (> 1 selects DPR's layout): shard k "
                        "holds rows [k*s, (k+1)*s) with s = ceil(rows / num_shards), so every "
                        "passage is encoded.")
    parser.add_argument("--vector_dtype", choices=FLOAT_DTYPES, default="float32",
                        help="Stored element type of the vectors (float16 halves the files; "
                        "python -m dpr.index build reads both).")
    parser.add_argument("--batch_size", type=int, default=32,
                        help="Passages per forward pass.")
    add_flag(parser, "--local_rank", "--local-rank", type=int, default=-1,
             help="Set by torch.distributed.launch (also read from LOCAL_RANK).")
    add_debug_flag(parser)
    return parser


def check_args(args: argparse.Namespace, world_size: int) -> None:
    """Raises UsageError (exit status 2) for inconsistent shard, chunk or batch flags."""
    if args.num_shards < 1:
        raise UsageError(f"--num_shards must be >= 1, got {args.num_shards}")
    if not 0 <= args.shard_id < args.num_shards:
        raise UsageError(f"--shard_id must be in [0, {args.num_shards}), got {args.shard_id}")
    if args.batch_size < 1:
        raise UsageError(f"--batch_size must be >= 1, got {args.batch_size}")
    if args.chunk_size < 0:
        raise UsageError(f"--chunk_size must be >= 0, got {args.chunk_size}")
    if world_size > 1 and (args.num_shards > 1 or args.chunk_size == 0):
        raise UsageError("--num_shards/--chunk_size 0 (DPR's shards, one per job) cannot be split "
                         f"over the {world_size} processes of this launcher: use --chunk_size")


def layout_of(args: argparse.Namespace, total: int) -> Layout:
    """DPR's shards when --num_shards > 1 or --chunk_size 0, else chunks of --chunk_size."""
    if args.num_shards > 1 or args.chunk_size == 0:
        return Layout(total, num_shards=args.num_shards)
    return Layout(total, chunk_size=args.chunk_size)


def run(args: argparse.Namespace) -> EncodingReport:
    """Encodes this process's incomplete chunks; returns what it did."""
    rank, local_rank, world_size = resolve_ranks(args.local_rank)
    setup_logging(rank)
    check_args(args, world_size)
    check_input_path(args.model_file, flag="--model_file")
    check_output_file(f"{args.out_file}_0.npy", flag="--out_file")
    total = count_passages(args.ctx_file)  # also refuses duplicate ids
    if total == 0:  # before the model loads: nothing would be written
        raise InputError(f"--ctx_file {args.ctx_file}: no passages (is the file empty?)")
    layout = layout_of(args, total)
    device = select_device(args.device, local_rank=local_rank)
    model = load_encoder(args.model_file, encoder_params(args), device=device,
                         allow_pickle=args.allow_unsafe_pickle,
                         amp_dtype=autocast_dtype(args.fp16, args.amp_dtype, device),
                         batch_size=args.batch_size, quiet=True)
    worker, workers = ((args.shard_id, args.num_shards) if layout.chunk_size is None
                       else (rank, world_size))
    logger.info("%d passages in %d file(s) of %s; worker %d of %d; device %s; model %s", total,
                len(layout.chunks()), layout.describe(), worker, workers, device,
                model.description)
    manifest = make_manifest(model_path=args.model_file, model_description=model.description,
                             params=model.params, amp_dtype=model.amp_dtype, dim=model.dim,
                             passages=args.ctx_file, layout=layout,
                             vector_dtype=args.vector_dtype)
    check_output(args.out_file, manifest, layout.chunks())
    report = encode_corpus(model, args.ctx_file, args.out_file, layout, manifest=manifest,
                           worker=worker, workers=workers, vector_dtype=args.vector_dtype,
                           progress=rank == 0 and not args.quiet)
    logger.info("Worker %d: encoded %d chunk(s) (%d passages, %.1f passages/s), skipped %d "
                "complete chunk(s)", worker, len(report.encoded), report.passages,
                report.passages / max(report.seconds, 1e-9), len(report.skipped))
    return report


def main(argv: list[str] | None = None) -> int:
    """Encodes this process's chunks; returns the exit status (see `dpr.cli.main.run_main`)."""
    return run_main(build_parser(), argv, run, prog="generate_dense_embeddings")


if __name__ == "__main__":
    sys.exit(main())
