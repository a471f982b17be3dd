"""Retrieves passages for a QA file with a model and FAISS, and scores the top-k.

python dense_retriever.py --model_file dpr_biencoder.2 --qa_file qas_dev.tsv \
    --ctx_file passages.tsv --encoded_ctx_file "emb/passages_*" --out_file results.json
python dense_retriever.py ... --index idx/ [--nprobe 64 | --ef_search 256] [--rerank 1000]
python dense_retriever.py ... --reranker rerank/reranker.2.1000 --reranker_depth 20

The shards of --encoded_ctx_file are indexed in memory through `dpr.index` (exact, or DPR's
HNSW with --hnsw_index; kept as a folder beside them with --save_or_load_index), or an index
folder built by `python -m dpr.index build` is searched (--index); the model must be the one
that encoded the passages. With --reranker, a cross-encoder (train_reranker.py) re-ranks each
question's top --reranker_depth (`dpr.retrieval.rerank`) before the results are scored and
written. Indexes, checks and formats: docs/EVALUATION.md ("dense_retriever.py").
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Any

import numpy as np

from dpr.cli.flags import add_debug_flag, add_encoder_flags, add_flag, encoder_params
from dpr.cli.main import run_main
from dpr.data.answers import contains_answer, prepare_answers
from dpr.data.records import Passage
from dpr.data.tsv import read_passages, read_qas
from dpr.evaluation.metrics import top_k_accuracy
from dpr.evaluation.relevance import TEXTS_PER_WORKER, prepare_texts
from dpr.index import BuildOptions, FaissIndex, build_index, index_shards, load_index
from dpr.index.search import read_settings
from dpr.index.shards import Shard, find_shards, open_shards
from dpr.inference import DenseEncoder, load_encoder, load_reranker
from dpr.inference.chunks import model_identity
from dpr.retrieval.corpus import Corpus
from dpr.retrieval.rerank import DEFAULT_RERANK_DEPTH, PairScorer, rerank
from dpr.retrieval.run import Run
from dpr.utils.device import autocast_dtype, select_device
from dpr.utils.errors import InputError, UsageError, read_input
from dpr.utils.io import atomic_write, check_input_path, check_output_file

logger = logging.getLogger("dense_retriever")

HNSW_FACTORY = "HNSW512"  # DPR's IndexHNSWFlat(d, 512); efSearch 128 is dpr.index's default
HNSW_EF_CONSTRUCTION = 200  # DPR's


def build_parser() -> argparse.ArgumentParser:
    """DPR's flags of dense_retriever.py."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_encoder_flags(parser)
    parser.add_argument("--qa_file", required=True,
                        help="Questions: question<TAB>answers, answers a JSON list "
                        "(data_prep) or DPR's Python-literal list.")
    parser.add_argument("--ctx_file", required=True,
                        help="Passage TSV (id, text, title; header skipped; .gz accepted).")
    parser.add_argument("--encoded_ctx_file", default=None,
                        help="Glob of embedding files from generate_dense_embeddings.py "
                        "(.npy; DPR's .pkl only with --allow_unsafe_pickle), e.g. DPR's "
                        "\"emb/passages_*\": other files it matches (the .ids.json beside each "
                        ".npy) are skipped. Required without --index; with --index and "
                        "--rerank, where the index's shards are now.")
    parser.add_argument("--index", default=None,
                        help="Index folder from `python -m dpr.index build` over the passages' "
                        "embeddings: searched instead of indexing --encoded_ctx_file in memory.")
    parser.add_argument("--nprobe", type=int, default=None,
                        help="With --index (IVF): inverted lists visited per question.")
    parser.add_argument("--ef_search", type=int, default=None,
                        help="With --index (HNSW): candidate list size.")
    parser.add_argument("--rerank", type=int, default=None,
                        help="With --index: fetch this many candidates and re-score them "
                        "exactly from the embedding shards the index was built from.")
    parser.add_argument("--reranker", default=None,
                        help="Reranker checkpoint (train_reranker.py, or its python -m "
                        "dpr2hf CrossEncoder folder) re-ranking each "
                        "question's top --reranker_depth passages; the results hold those "
                        "passages only, with the reranker's scores. Loaded with its "
                        "checkpoint's own parameters (the model flags are --model_file's).")
    parser.add_argument("--reranker_depth", type=int, default=None,
                        help="With --reranker: passages re-ranked per question (default "
                        f"{DEFAULT_RERANK_DEPTH}).")
    parser.add_argument("--out_file", default=None,
                        help="Results JSON (DPR's format); none written when omitted.")
    parser.add_argument("--match", default="string", choices=("string", "regex"),
                        help="Answer matching: token sub-sequence or regular expression.")
    add_flag(parser, "--n-docs", "--n_docs", type=int, default=200,
             help="Passages to retrieve per question.")
    parser.add_argument("--validation_workers", type=int, default=16,
                        help="Processes preparing the retrieved passages for answer matching "
                        f"(at most one per {TEXTS_PER_WORKER} passages; 1: in this process).")
    parser.add_argument("--batch_size", type=int, default=32,
                        help="Questions per forward pass.")
    parser.add_argument("--index_buffer", type=int, default=50000,
                        help="Vectors added to the FAISS index per call.")
    parser.add_argument("--hnsw_index", action="store_true",
                        help=f"Approximate HNSW index ({HNSW_FACTORY}, inner product) instead "
                        "of the exact one (Flat).")
    parser.add_argument("--save_or_load_index", action="store_true",
                        help="Keep the index as a dpr.index folder <stem>.Flat (or "
                        f"<stem>.{HNSW_FACTORY}) beside the shards (stem: first embedding file "
                        "without its last '_' part) and reuse it while the shards are unchanged.")
    add_debug_flag(parser)
    return parser


def check_args(args: argparse.Namespace) -> None:
    """Raises UsageError (exit status 2) for counts below 1 and flags of the other source."""
    if args.reranker_depth is not None and args.reranker is None:
        raise UsageError("--reranker_depth needs --reranker")
    if args.reranker_depth is None:
        args.reranker_depth = DEFAULT_RERANK_DEPTH
    for name in ("n_docs", "batch_size", "index_buffer", "validation_workers",
                 "reranker_depth"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('n_docs', 'n-docs')} must be >= 1")
    if args.index is None and args.encoded_ctx_file is None:
        raise UsageError("give either --encoded_ctx_file (shards indexed in memory) or --index "
                         "(an index folder from python -m dpr.index build)")
    in_memory = [flag for flag, on in (("--hnsw_index", args.hnsw_index),
                                       ("--save_or_load_index", args.save_or_load_index)) if on]
    saved = [flag for flag in ("nprobe", "ef_search", "rerank")
             if getattr(args, flag) is not None]
    if args.index is not None and in_memory:
        raise UsageError(f"{in_memory[0]} builds an index in memory; --index searches a saved one")
    if args.index is None and saved:
        raise UsageError(f"--{saved[0]} needs --index")
    if args.index is not None and args.encoded_ctx_file is not None and not args.rerank:
        raise UsageError("--encoded_ctx_file with --index says where the index's shards are "
                         "for --rerank: give --rerank too, or only --index")


def _built_from(folder: str, shards: list[Shard]) -> bool:
    """True when `folder` holds an index built from these shards (same files, rows, sizes)."""
    try:
        recorded = [(s["abspath"], s["rows"], s["bytes"]) for s in read_settings(folder)["shards"]]
    except (InputError, KeyError, TypeError):
        return False
    return recorded == [(os.path.abspath(s.path), s.rows, s.bytes) for s in shards]


def shard_index(args: argparse.Namespace, files: list[str]) -> FaissIndex:
    """The shards of --encoded_ctx_file indexed in memory, or with --save_or_load_index the
    `dpr.index` folder beside them (built there first when missing or of other shards)."""
    hnsw = args.hnsw_index
    options = BuildOptions(factory=HNSW_FACTORY if hnsw else "Flat", chunk_rows=args.index_buffer,
                           ef_construction=HNSW_EF_CONSTRUCTION if hnsw else None,
                           checksum=False, quiet=args.quiet)
    shards = open_shards(files, allow_pickle=args.allow_unsafe_pickle)
    if not args.save_or_load_index:
        return index_shards(shards, options)
    first = shards[0].path
    folder = os.path.join(os.path.dirname(first),
                          f"{os.path.basename(first).rsplit('_', 1)[0]}.{options.factory}")
    if _built_from(folder, shards):
        logger.info("Reusing the index of these shards saved in %s", folder)
    else:
        build_index(shards, folder, options, overwrite=True)
    return load_index(folder)


def search(args: argparse.Namespace, files: list[str] | None, model: DenseEncoder,
           passages: dict[str, Passage],
           questions: np.ndarray) -> tuple[list[list[str]], np.ndarray]:
    """Searches --index or the shards' index, once the model is known to be the one that
    encoded the passages; every passage id must be in --ctx_file (of --index, only those
    retrieved are looked up: an index may hold millions)."""
    index = (shard_index(args, files) if files is not None else
             load_index(args.index, nprobe=args.nprobe, ef_search=args.ef_search,
                        rerank=args.rerank, embeddings=args.encoded_ctx_file))
    index.check_encoder(model_identity(args.model_file, model.amp_dtype), dim=model.dim)
    scores, hits = index.search(questions, min(args.n_docs, len(index)))
    # the shards' ids are all checked; a saved index's only where retrieved (it may be huge)
    used = set(index.ids) if files is not None else {pid for ids in hits for pid in ids}
    missing = sorted(used - set(passages))
    if missing:
        raise InputError(f"{args.ctx_file}: passage ids of the embeddings missing, e.g. "
                         f"{missing[:3]}")
    return hits, scores


def rerank_hits(reranker: PairScorer, questions: list[str], hits: list[list[str]],
                scores: np.ndarray, *, passages: dict[str, Passage],
                depth: int) -> tuple[list[list[str]], list[np.ndarray]]:
    """Each question's top `depth` hits re-ranked (`dpr.retrieval.rerank.rerank`), as (ids,
    the reranker's scores) per question; the hits below are left out."""
    wanted = sorted({pid for ids in hits for pid in ids})  # only the passages retrieved
    corpus = Corpus(wanted, [passages[p].title for p in wanted],
                    [passages[p].text for p in wanted], "the passages retrieved")
    row = {pid: i for i, pid in enumerate(wanted)}
    run = Run("dpr", tuple(np.array([row[p] for p in ids], dtype=np.int64) for ids in hits),
              tuple(np.asarray(s[:len(ids)]) for s, ids in zip(scores, hits)))
    reranked = rerank(run, reranker, questions, corpus, depth=depth)
    logger.info("Re-ranked the top %d passages of %d questions in %.3f s", depth, len(hits),
                reranked.metadata["rerank"]["seconds"])
    return [[wanted[r] for r in rows.tolist()] for rows in reranked.rows], list(reranked.scores)


def score_results(questions: list[tuple[str, list[str]]], hits: list[list[str]],
                  passages: dict[str, Passage], *, match: str,
                  scores: np.ndarray | list[np.ndarray],
                  workers: int = 1) -> list[dict[str, Any]]:
    """DPR's results records, with has_answer computed on each passage's text: each retrieved
    passage prepared once (`prepare_texts`, in up to `workers` processes), then matched."""
    retrieved = sorted({pid for ids in hits for pid in ids})
    prepared = dict(zip(retrieved, prepare_texts([passages[p].text for p in retrieved],
                                                 match=match, workers=workers)))
    results = []
    for (question, answers), ids, row in zip(questions, hits, scores):
        wanted = prepare_answers(answers, match)
        ctxs = [{"id": pid, "title": passages[pid].title, "text": passages[pid].text,
                 "score": str(float(score)),
                 "has_answer": contains_answer(wanted, prepared[pid], match)}
                for pid, score in zip(ids, row)]
        results.append({"question": question, "answers": answers, "ctxs": ctxs})
    return results


def log_accuracy(results: list[dict[str, Any]], n_docs: int) -> None:
    """Logs top-k accuracy at 1, 5, 20, 100 and n_docs."""
    ranks = [next((j for j, c in enumerate(r["ctxs"]) if c["has_answer"]), None)
             for r in results]
    curve = top_k_accuracy(ranks, range(1, n_docs + 1))
    for k in sorted({1, 5, 20, 100, n_docs}):
        if k <= n_docs:
            logger.info("Top-%d accuracy: %.4f", k, curve[k])


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Encodes the questions, searches, matches answers and writes the results."""
    check_args(args)
    check_input_path(args.model_file, flag="--model_file")
    if args.reranker is not None:
        check_input_path(args.reranker, flag="--reranker")
    if args.out_file:
        check_output_file(args.out_file, flag="--out_file")
    files = None if args.index is not None else find_shards(args.encoded_ctx_file)
    questions = read_input(read_qas, args.qa_file, flag="--qa_file", what="questions")
    passages = read_input(read_passages, args.ctx_file, flag="--ctx_file", what="passages")
    device = select_device(args.device)
    amp_dtype = autocast_dtype(args.fp16, args.amp_dtype, device)
    model = load_encoder(args.model_file, encoder_params(args), device=device,
                         allow_pickle=args.allow_unsafe_pickle, amp_dtype=amp_dtype,
                         batch_size=args.batch_size, quiet=args.quiet)
    logger.info("Model: %s", model.description)
    reranker = None if args.reranker is None else load_reranker(
        args.reranker, device=device, allow_pickle=args.allow_unsafe_pickle,
        amp_dtype=amp_dtype, batch_size=args.batch_size, quiet=args.quiet)
    if reranker is not None:
        logger.info("Reranker: %s", reranker.description)
    q_vectors = model.encode_questions([q for q, _ in questions])
    hits, scores = search(args, files, model, passages, q_vectors)
    if reranker is not None:
        hits, scores = rerank_hits(reranker, [q for q, _ in questions], hits, scores,
                                   passages=passages, depth=args.reranker_depth)
    results = score_results(questions, hits, passages, match=args.match, scores=scores,
                            workers=args.validation_workers)
    log_accuracy(results, min(args.n_docs, max((len(h) for h in hits), default=0)))
    if args.out_file:
        with atomic_write(args.out_file) as handle:
            json.dump(results, handle, indent=4, ensure_ascii=False)
            handle.write("\n")
        logger.info("Wrote %d results to %s", len(results), args.out_file)
    return results


def main(argv: list[str] | None = None) -> int:
    """Runs the retrieval; returns the exit status (see `dpr.cli.main.run_main`)."""
    return run_main(build_parser(), argv, run, prog="dense_retriever")


if __name__ == "__main__":
    sys.exit(main())
