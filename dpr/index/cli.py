r"""Index embedding shards and search them: faiss indexes built in bounded memory, or Milvus.

    python -m dpr.index build --encoded_ctx_file 'emb/passages_*' --factory 'IVF1024,PQ32' \
        --output_dir idx/ [--metric ip] [--train_sample 200000] [--on_disk] [--num_threads 2]
    python -m dpr.index search --index idx/ --queries questions.npy --n_docs 100 \
        --nprobe 32 [--rerank 1000] --out_file run.tsv
    python -m dpr.index milvus-load --uri passages.db --collection passages \
        --encoded_ctx_file 'emb/passages_*' --ctx_file passages.tsv
    python -m dpr.index milvus-search --uri passages.db --collection passages \
        --queries questions.npy --n_docs 100 --out_file run.json

Factories (faiss' index_factory: Flat, HNSW32, IVF4096,PQ64...), the index folder, run formats,
re-ranking and Milvus (pymilvus, optional): docs/SCALE.md, sections 2 and 3.

Exit codes: 0 success, 1 bad input (one error line naming the file), 2 bad flags.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from contextlib import closing

import faiss

from dpr.cli.flags import add_flag, add_output_flags, add_pickle_flag
from dpr.cli.main import run_main
from dpr.data.tsv import iter_passages
from dpr.index.build import METRICS, BuildOptions, build_from_glob
from dpr.index.milvus import MilvusStore, load_shards
from dpr.index.runs import check_run_path, write_run
from dpr.index.search import DEFAULT_EF_SEARCH, DEFAULT_NPROBE, load_index
from dpr.index.shards import find_shards, open_shards, read_queries
from dpr.utils.errors import UsageError

logger = logging.getLogger("dpr.index")

PICKLE_HELP = ("Read DPR's .pkl shards (pickles can run arbitrary code when read: trusted "
               "files only).")
SHARDS_HELP = ("Glob of the embedding shards, e.g. 'emb/passages_*' (quoted; .ids.json files it "
               "matches are skipped; shards sorted _2 before _10).")


def _common(parser: argparse.ArgumentParser) -> None:
    add_output_flags(parser, quiet_help="No progress bar.")
    add_flag(parser, "--num_threads", "--threads", type=int, default=None,
             help="faiss threads (unset: faiss' own choice, one per core).")


def _subparser(commands: argparse._SubParsersAction, name: str,
               summary: str) -> argparse.ArgumentParser:
    return commands.add_parser(name, help=summary, description=summary,
                               formatter_class=argparse.ArgumentDefaultsHelpFormatter)


def _add_build(commands: argparse._SubParsersAction) -> None:
    build = _subparser(commands, "build", "Build a faiss index from embedding shards.")
    add_flag(build, "--encoded_ctx_file", "--embeddings", required=True, help=SHARDS_HELP)
    build.add_argument("--factory", required=True,
                       help="faiss index-factory string: Flat, HNSW32, HNSW32_SQ8, "
                       "IVF4096,PQ64, OPQ64,IVF4096,PQ64...")
    build.add_argument("--output_dir", required=True, help="Index folder to create.")
    build.add_argument("--metric", choices=sorted(METRICS), default="ip",
                       help="Inner product (DPR) or L2 distance.")
    build.add_argument("--train_sample", type=int, default=200_000,
                       help="Vectors sampled (seeded) to train IVF, PQ, OPQ, SQ (all when "
                       "fewer); IVF wants at least 39 per list.")
    build.add_argument("--seed", type=int, default=0, help="Seed of the training sample.")
    build.add_argument("--on_disk", action="store_true",
                       help="IVF only: add each shard to its own block and merge the inverted "
                       "lists into index.ivfdata (faiss OnDiskInvertedLists), so they need "
                       "not fit in memory.")
    build.add_argument("--chunk_rows", type=int, default=65_536,
                       help="Vectors read and added per call.")
    build.add_argument("--no_checksum", action="store_true",
                       help="Do not record the shards' SHA-256 in build.json.")
    build.add_argument("--overwrite", action="store_true",
                       help="Replace --output_dir when it exists (once the new one is "
                       "complete).")
    add_pickle_flag(build, help=PICKLE_HELP)
    _common(build)


def _add_search(commands: argparse._SubParsersAction) -> None:
    search = _subparser(commands, "search", "Search an index folder with query vectors.")
    search.add_argument("--index", required=True, help="Index folder written by build.")
    _add_query_flags(search)
    search.add_argument("--nprobe", type=int, default=None,
                        help=f"IVF lists visited per query, at most the list count (default: "
                        f"min({DEFAULT_NPROBE}, list count)).")
    search.add_argument("--ef_search", type=int, default=None,
                        help=f"HNSW candidate list size (default: {DEFAULT_EF_SEARCH}).")
    search.add_argument("--rerank", type=int, default=None,
                        help="Fetch this many candidates (>= --n_docs) and re-score them exactly "
                        "from the embedding shards the index was built from (memory-mapped; for "
                        "a Refine(...) factory, from the index's refinement codes); 0: off.")
    add_flag(search, "--encoded_ctx_file", "--embeddings", default=None,
             help="With --rerank: glob of those shards when they are no longer where "
             "build.json says (same files, same order).")
    search.add_argument("--mmap", action="store_true",
                        help="Memory-map the index where faiss can instead of reading it.")
    _common(search)


def _add_query_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--queries", required=True,
                        help="Query vectors .npy [Q x D]; ids from the .ids.json beside it, "
                        "else row numbers.")
    add_flag(parser, "--n_docs", "--n-docs", "--k", type=int, default=100,
             help="Results per query.")
    add_flag(parser, "--out_file", "--output", required=True,
             help="Run file: .tsv, .json, or TREC (.txt, .trec).")


def _add_milvus(commands: argparse._SubParsersAction) -> None:
    load = _subparser(commands, "milvus-load", "Load shards (and passages) into Milvus.")
    search = _subparser(commands, "milvus-search", "Search a Milvus collection.")
    for parser in (load, search):
        parser.add_argument("--uri", required=True,
                            help="Milvus Lite file (passages.db) or server URI "
                            "(http://host:19530).")
        parser.add_argument("--collection", default="passages", help="Collection name.")
        parser.add_argument("--token", default=None,
                            help="Server credentials, user:password or an API key.")
    add_flag(load, "--encoded_ctx_file", "--embeddings", required=True, help=SHARDS_HELP)
    add_flag(load, "--ctx_file", "--passages", default=None,
             help="Passage TSV (id, text, title) in the shards' order, to store titles and "
             "texts; without it only ids and vectors are stored.")
    load.add_argument("--batch_size", type=int, default=1000, help="Rows per insert.")
    load.add_argument("--index_type", default="AUTOINDEX",
                      help="Milvus index type (AUTOINDEX, FLAT, HNSW, IVF_FLAT...).")
    load.add_argument("--overwrite", action="store_true",
                      help="Drop the collection first when it exists.")
    add_pickle_flag(load, help=PICKLE_HELP)
    _add_query_flags(search)
    for parser in (load, search):
        add_output_flags(parser, quiet_help="No progress bar.")


def build_parser() -> argparse.ArgumentParser:
    """The parser of `python -m dpr.index` and its four commands."""
    parser = argparse.ArgumentParser(prog="python -m dpr.index", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_build(commands)
    _add_search(commands)
    _add_milvus(commands)
    return parser


def run_build(args: argparse.Namespace) -> dict:
    """`build`: returns the build settings."""
    options = BuildOptions(factory=args.factory, metric=args.metric,
                           train_sample=args.train_sample, seed=args.seed, on_disk=args.on_disk,
                           threads=args.num_threads, chunk_rows=args.chunk_rows,
                           checksum=not args.no_checksum, quiet=args.quiet)
    return build_from_glob(args.encoded_ctx_file, args.output_dir, options,
                           allow_pickle=args.allow_unsafe_pickle, overwrite=args.overwrite)


def _check_query_flags(args: argparse.Namespace) -> None:
    check_run_path(args.out_file)
    if args.n_docs < 1:
        raise UsageError(f"--n_docs must be >= 1, got {args.n_docs}")


def run_search(args: argparse.Namespace) -> None:
    """`search`: writes the run file."""
    _check_query_flags(args)
    if args.num_threads is not None:
        if args.num_threads < 1:
            raise UsageError(f"--num_threads must be >= 1, got {args.num_threads}")
        faiss.omp_set_num_threads(args.num_threads)
    index = load_index(args.index, nprobe=args.nprobe, ef_search=args.ef_search,
                       rerank=args.rerank, embeddings=args.encoded_ctx_file, mmap=args.mmap)
    query_ids, queries = read_queries(args.queries)
    scores, ids = index.search(queries, args.n_docs)
    write_run(args.out_file, query_ids, ids, scores)


def _quiet_pymilvus() -> None:
    """Silences two sources of tracebacks on stderr: pymilvus logs every failed call (our one
    error line says the same), and Milvus Lite's in-process gRPC server logs "Method not
    implemented" for a call create_collection makes that Lite 3.2 lacks (harmless)."""
    for name in ("pymilvus", "grpc._server"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def run_milvus_load(args: argparse.Namespace) -> None:
    """`milvus-load`: creates the collection and inserts every shard."""
    _quiet_pymilvus()
    if args.batch_size < 1:
        raise UsageError(f"--batch_size must be >= 1, got {args.batch_size}")
    shards = open_shards(find_shards(args.encoded_ctx_file), allow_pickle=args.allow_unsafe_pickle)
    passages = (None if args.ctx_file is None else
                ((p.passage_id, p.title, p.text) for p in iter_passages(args.ctx_file)))
    with closing(MilvusStore.connect(args.uri, args.collection, token=args.token)) as store:
        store.create(shards[0].dim, index_type=args.index_type, overwrite=args.overwrite)
        load_shards(store, shards, passages=passages, source=args.ctx_file or "passages",
                    batch_size=args.batch_size, quiet=args.quiet)


def run_milvus_search(args: argparse.Namespace) -> None:
    """`milvus-search`: writes the run file."""
    _check_query_flags(args)
    _quiet_pymilvus()
    query_ids, queries = read_queries(args.queries)
    with closing(MilvusStore.connect(args.uri, args.collection, token=args.token)) as store:
        scores, ids = store.search(queries, args.n_docs)
    write_run(args.out_file, query_ids, ids, scores, name="milvus")


COMMANDS = {"build": run_build, "search": run_search, "milvus-load": run_milvus_load,
            "milvus-search": run_milvus_search}


def main(argv: Sequence[str] | None = None) -> int:
    """Runs one command; returns the exit status (see `dpr.cli.main.run_main`)."""
    return run_main(build_parser(), argv, lambda args: COMMANDS[args.command](args),
                    prog="dpr.index")
