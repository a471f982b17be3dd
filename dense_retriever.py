"""Retrieves passages for a QA file with a model and FAISS, and scores the top-k.

The model is a DPR checkpoint, a dpr2hf export folder or a Hugging Face / sentence-transformers
folder, applied with its own recipe (`dpr.inference`); it must be the model that encoded the
passages.

python dense_retriever.py --model_file dpr_biencoder.2 --qa_file qas_dev.tsv \
    --ctx_file passages.tsv --encoded_ctx_file "emb/passages_*" --out_file results.json
python dense_retriever.py ... --index idx/ [--nprobe 64 | --ef_search 256] [--rerank 1000]

With --encoded_ctx_file the shards (found in natural order, `_2` before `_10`, as
`python -m dpr.index` finds them) are indexed in memory (exact, or HNSW with --hnsw_index);
with --index, an index folder built by `python -m dpr.index build` over the same embeddings is
searched instead, in bounded memory.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import multiprocessing
import os
import sys
from typing import Any

import numpy as np

from dpr.cli.flags import add_debug_flag, add_encoder_flags, add_flag, encoder_params
from dpr.cli.main import run_main
from dpr.data.answers import has_answer
from dpr.data.records import Passage
from dpr.data.tsv import read_passages, read_qas
from dpr.evaluation.metrics import top_k_accuracy
from dpr.index import load_index
from dpr.index.shards import find_shards
from dpr.inference import DenseEncoder, load_encoder
from dpr.retrieval.index import DenseIndex, EmbeddingFileError, read_embeddings
from dpr.utils.device import autocast_dtype, select_device
from dpr.utils.errors import InputError, UsageError, read_input
from dpr.utils.io import atomic_write, check_input_path, check_output_file

logger = logging.getLogger("dense_retriever")

QUESTIONS_PER_WORKER = 50  # below this, a process costs more than the matching it takes over


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
                        ".npy) are skipped. Required without --index.")
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
    parser.add_argument("--out_file", default=None,
                        help="Results JSON (DPR's format); none written when omitted.")
    parser.add_argument("--match", default="string", choices=("string", "regex"),
                        help="Answer matching: token sub-sequence or regular expression.")
    add_flag(parser, "--n-docs", "--n_docs", type=int, default=200,
             help="Passages to retrieve per question.")
    parser.add_argument("--validation_workers", type=int, default=16,
                        help="Processes matching answers in the retrieved passages (at most "
                        f"one per {QUESTIONS_PER_WORKER} questions; 1: in this process).")
    parser.add_argument("--batch_size", type=int, default=32,
                        help="Questions per forward pass.")
    parser.add_argument("--index_buffer", type=int, default=50000,
                        help="Vectors added to the FAISS index per call.")
    parser.add_argument("--hnsw_index", action="store_true",
                        help="Approximate HNSW index instead of the exact inner-product one.")
    parser.add_argument("--save_or_load_index", action="store_true",
                        help="Reuse <stem>.index + <stem>.meta.json when present (stem: first "
                        "embedding file without its last '_' part), else build and save them.")
    add_debug_flag(parser)
    return parser


def check_args(args: argparse.Namespace) -> None:
    """Raises UsageError (exit status 2) for counts below 1 and flags of the other source."""
    for name in ("n_docs", "batch_size", "index_buffer", "validation_workers"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('n_docs', 'n-docs')} must be >= 1")
    if (args.index is None) == (args.encoded_ctx_file is None):
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


def build_index(files: list[str], args: argparse.Namespace) -> DenseIndex:
    """Indexes every embedding file (φ over all of them for HNSW)."""
    parts = [read_embeddings(f, allow_pickle=args.allow_unsafe_pickle) for f in files]
    sizes = {v.shape[1] for _, v in parts}
    if len(sizes) > 1:
        raise EmbeddingFileError(f"{args.encoded_ctx_file}: files hold vectors of different "
                                 f"sizes {sorted(sizes)}")
    ids = [i for part_ids, _ in parts for i in part_ids]
    vectors = np.concatenate([v for _, v in parts]) if parts else np.zeros((0, 0), np.float32)
    if len(set(ids)) != len(ids):
        raise EmbeddingFileError(f"{args.encoded_ctx_file}: a passage id occurs in several "
                                 "vectors")
    index = DenseIndex(vectors.shape[1], hnsw=args.hnsw_index)
    index.add(ids, vectors, buffer_size=args.index_buffer, quiet=args.quiet)
    logger.info("Indexed %d vectors from %d file(s)", len(ids), len(files))
    return index


def get_index(files: list[str], args: argparse.Namespace) -> DenseIndex:
    """Loads the saved index when asked and present, else builds (and maybe saves) it."""
    stem = os.path.join(os.path.dirname(files[0]), os.path.basename(files[0]).rsplit("_", 1)[0])
    if args.hnsw_index:
        stem += ".hnsw"
    if args.save_or_load_index and DenseIndex.exists(stem):
        logger.info("Loading index %s", stem)
        return DenseIndex.load(stem)
    index = build_index(files, args)
    if args.save_or_load_index:
        index.save(stem)
    return index


def _question_matches(task: tuple[list[str], list[str], str]) -> list[bool]:
    answers, texts, match = task
    return [has_answer(answers, text, match=match) for text in texts]


def match_answers(tasks: list[tuple[list[str], list[str], str]], workers: int) -> list[list[bool]]:
    """has_answer of every (answers, passage texts, match) task, in up to `workers` processes
    (DPR's `--validation_workers`), at most one per QUESTIONS_PER_WORKER questions."""
    workers = max(1, min(workers, math.ceil(len(tasks) / QUESTIONS_PER_WORKER)))
    logger.info("Matching answers of %d question(s) in %d process(es)", len(tasks), workers)
    if workers == 1:
        return [_question_matches(task) for task in tasks]
    with multiprocessing.Pool(workers) as pool:
        return pool.map(_question_matches, tasks, chunksize=math.ceil(len(tasks) / workers / 4))


def score_results(questions: list[tuple[str, list[str]]], hits: list[list[str]],
                  passages: dict[str, Passage], *, match: str, scores: np.ndarray,
                  workers: int = 1) -> list[dict[str, Any]]:
    """DPR's results records, with has_answer computed on each passage's text."""
    tasks = [(answers, [passages[pid].text for pid in ids], match)
             for (_, answers), ids in zip(questions, hits)]
    results = []
    for (question, answers), ids, row, found in zip(questions, hits, scores,
                                                    match_answers(tasks, workers)):
        ctxs = [{"id": pid, "title": passages[pid].title, "text": passages[pid].text,
                 "score": str(float(score)), "has_answer": hit}
                for pid, score, hit in zip(ids, row, found)]
        results.append({"question": question, "answers": answers, "ctxs": ctxs})
    return results


def log_accuracy(results: list[dict[str, Any]], n_docs: int) -> dict[int, float]:
    """Logs top-k accuracy at 1, 5, 20, 100 and n_docs; returns the full curve."""
    ranks = [next((j for j, c in enumerate(r["ctxs"]) if c["has_answer"]), None)
             for r in results]
    curve = top_k_accuracy(ranks, range(1, n_docs + 1))
    for k in sorted({1, 5, 20, 100, n_docs}):
        if k <= n_docs:
            logger.info("Top-%d accuracy: %.4f", k, curve[k])
    return curve


def search_shards(files: list[str], args: argparse.Namespace, model: DenseEncoder,
                  passages: dict[str, Passage],
                  questions: np.ndarray) -> tuple[list[list[str]], np.ndarray]:
    """Indexes the shards in memory (or loads the index saved beside them) and searches it."""
    index = get_index(files, args)
    if index.dim != model.dim:
        raise EmbeddingFileError(f"{files[0]}: vectors of size {index.dim}, but the model's are "
                                 f"{model.dim} (another checkpoint?)")
    missing = sorted(set(index.ids) - set(passages))
    if missing:
        raise InputError(f"{args.ctx_file}: passage ids of the embeddings missing, e.g. "
                         f"{missing[:3]}")
    return index.search(questions, args.n_docs)


def search_saved(args: argparse.Namespace, model: DenseEncoder,
                 passages: dict[str, Passage],
                 questions: np.ndarray) -> tuple[list[list[str]], np.ndarray]:
    """Searches an index folder built by `python -m dpr.index build` (only the retrieved ids
    are looked up in --ctx_file: the index may hold millions)."""
    index = load_index(args.index, nprobe=args.nprobe, ef_search=args.ef_search,
                       rerank=args.rerank)
    if index.dim != model.dim:
        raise EmbeddingFileError(f"{args.index}: vectors of size {index.dim}, but the model's "
                                 f"are {model.dim} (another checkpoint?)")
    scores, hits = index.search(questions, min(args.n_docs, len(index)))
    missing = sorted({pid for ids in hits for pid in ids} - set(passages))
    if missing:
        raise InputError(f"{args.ctx_file}: passage ids of the index missing, e.g. "
                         f"{missing[:3]}")
    return hits, scores


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Encodes the questions, searches, matches answers and writes the results."""
    check_args(args)
    check_input_path(args.model_file, flag="--model_file")
    if args.out_file:
        check_output_file(args.out_file, flag="--out_file")
    files = (None if args.index is not None
             else find_shards(args.encoded_ctx_file, flag="--encoded_ctx_file"))
    questions = read_input(read_qas, args.qa_file, flag="--qa_file", what="questions")
    passages = read_input(read_passages, args.ctx_file, flag="--ctx_file", what="passages")
    device = select_device(args.device)
    model = load_encoder(args.model_file, encoder_params(args), device=device,
                         allow_pickle=args.allow_unsafe_pickle,
                         amp_dtype=autocast_dtype(args.fp16, args.amp_dtype, device),
                         batch_size=args.batch_size, quiet=args.quiet)
    logger.info("Model: %s", model.description)
    q_vectors = model.encode_questions([q for q, _ in questions])
    hits, scores = (search_saved(args, model, passages, q_vectors) if files is None
                    else search_shards(files, args, model, passages, q_vectors))
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
    """Parses the flags and runs the retrieval.

    Returns:
        0 on success, 1 on bad input (logged, nothing written), 2 on bad flags. Other errors
        are bugs and propagate with their traceback.
    """
    return run_main(build_parser(), argv, run, prog="dense_retriever")


if __name__ == "__main__":
    sys.exit(main())
