"""Benchmark of BM25 hard-negative mining (data_prep.bm25_negatives) on synthetic French-like
data.

Generates a vocabulary of French-looking words (syllable combinations) with Zipf-distributed
frequencies, builds passages and questions (questions are words sampled from a random
"positive" passage, the answer a 2-word span of it), indexes the passages with the project's
BM25 (``dpr.retrieval.bm25.BM25Retriever``), mines hard negatives with ``bm25_negatives``
and reports indexing time, questions/s and peak RSS. It then compares bm25s with ``rank-bm25`` on a
subset: bm25s ``method="robertson"`` against ``BM25Okapi(epsilon=0)``, which is the same
BM25 variant (Robertson IDF ``log((N - df + 0.5) / (df + 0.5))`` with negative IDF set to 0,
same k1/b term saturation; bm25s omits the constant ``k1 + 1`` factor, which does not change
rankings), on identical token lists; it reports top-k overlap and the speed ratio.

Quick run::

    python benchmarks/bm25_mining.py --num_passages 20000 --num_questions 2000
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import resource
import sys
import time
from pathlib import Path

import bm25s
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data_prep.bm25_negatives import NegativeQuery, bm25_negatives  # noqa: E402
from data_prep.passages import PassageSpan  # noqa: E402
from dpr.data.answers import prepare_answers  # noqa: E402
from dpr.retrieval.bm25 import BM25Retriever, BM25Settings, passage_text  # noqa: E402

logger = logging.getLogger("bm25_mining")

ONSETS = ["", "b", "c", "d", "f", "g", "l", "m", "n", "p", "r", "s", "t", "v", "ch", "pr", "tr",
          "gr", "bl", "fl"]
NUCLEI = ["a", "e", "i", "o", "u", "é", "è", "ou", "ai", "an", "on", "in", "eu", "au"]
CODAS = ["", "", "", "r", "l", "s", "n", "t", "x"]
ENDINGS = ["", "", "tion", "ment", "eur", "ique", "age", "ité", "elle", "ant"]


def peak_rss_mib() -> float:
    """Peak resident set size of this process in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine() -> str:
    """CPU model from /proc/cpuinfo and the number of usable cores."""
    model = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{model}; {usable} usable cores (os.cpu_count()={os.cpu_count()})"


def make_vocabulary(size: int, rng: np.random.Generator) -> list[str]:
    """``size`` distinct French-looking words of 1-4 syllables plus an optional ending."""
    words: dict[str, None] = {}
    while len(words) < size:
        n = size - len(words)
        syllables = rng.integers(1, 5, n)
        for count in syllables.tolist():
            parts = [ONSETS[rng.integers(len(ONSETS))] + NUCLEI[rng.integers(len(NUCLEI))]
                     + CODAS[rng.integers(len(CODAS))] for _ in range(count)]
            word = "".join(parts) + ENDINGS[rng.integers(len(ENDINGS))]
            if len(word) > 2:
                words[word] = None
    return list(words)[:size]


def sample_ids(n: int, vocab_size: int, zipf_a: float, rng: np.random.Generator) -> np.ndarray:
    """``n`` word ranks drawn with probability proportional to ``1 / rank**zipf_a``."""
    weights = 1.0 / np.arange(1, vocab_size + 1, dtype=np.float64) ** zipf_a
    cdf = np.cumsum(weights)
    cdf /= cdf[-1]
    return np.searchsorted(cdf, rng.random(n)).astype(np.int32)


def make_passages(args: argparse.Namespace, vocab: list[str], rng: np.random.Generator
                  ) -> list[PassageSpan]:
    """Synthetic passages of ``passage_words`` +/- 50% words, in chunks to bound memory."""
    passages: list[PassageSpan] = []
    words = np.array(vocab, dtype=object)
    chunk = 50_000
    for offset in range(0, args.num_passages, chunk):
        n = min(chunk, args.num_passages - offset)
        lengths = rng.integers(args.passage_words // 2, args.passage_words * 3 // 2 + 1, n)
        ids = sample_ids(int(lengths.sum()), len(vocab), args.zipf_a, rng)
        bounds = np.concatenate([[0], np.cumsum(lengths)])
        for i in range(n):
            text = " ".join(words[ids[bounds[i]:bounds[i + 1]]].tolist()) + "."
            key = f"syn:{offset + i}"
            passages.append(PassageSpan(title=f"Titre {offset + i}", text=text,
                                        passage_id=f"{key}:0", paragraph_key=key, start=0,
                                        end=len(text)))
    return passages


def make_questions(args: argparse.Namespace, passages: list[PassageSpan], rng: np.random.Generator
                   ) -> list[tuple[str, str, int]]:
    """(question, answer, positive passage index) triples sampled from random passages."""
    questions = []
    for index in rng.integers(0, len(passages), args.num_questions).tolist():
        words = passages[index].text.rstrip(".").split()
        pick = rng.choice(len(words), size=min(args.question_words, len(words)), replace=False)
        start = int(rng.integers(0, len(words) - 1))
        answer = " ".join(words[start:start + 2])
        questions.append((" ".join(words[i] for i in sorted(pick)) + " ?", answer, index))
    return questions


def bench_mining(args: argparse.Namespace, passages: list[PassageSpan],
                 questions: list[tuple[str, str, int]]) -> dict[str, float]:
    """Indexes all passages and mines hard negatives for all questions, as the pipeline does."""
    start = time.perf_counter()
    retriever = BM25Retriever([p.title for p in passages], [p.text for p in passages],
                              settings=BM25Settings(k1=args.k1, b=args.b))
    index_s = time.perf_counter() - start
    logger.info("indexed %d passages in %.1f s (tokenisation included); peak RSS %.0f MiB",
                len(passages), index_s, peak_rss_mib())
    start = time.perf_counter()
    tokens = retriever.query_tokens([q for q, _, _ in questions])
    queries = [NegativeQuery(toks, prepare_answers([answer]), passages[pos].paragraph_key)
               for toks, (_, answer, pos) in zip(tokens, questions)]
    mined = bm25_negatives(retriever, queries, passages,
                           allowed=np.ones(len(passages), dtype=bool), top_k=args.top_k,
                           n_threads=args.n_threads)
    mine_s = time.perf_counter() - start
    got = sum(len(m) for m in mined)
    logger.info("mined %d negatives for %d questions in %.1f s: %.0f questions/s; peak RSS "
                "%.0f MiB", got, len(questions), mine_s, len(questions) / mine_s,
                peak_rss_mib())
    return {"index_s": index_s, "mine_s": mine_s,
            "questions_per_s": len(questions) / mine_s, "negatives": got}


def bench_rank_bm25(args: argparse.Namespace, passages: list[PassageSpan],
                    questions: list[tuple[str, str, int]]) -> dict[str, float]:
    """bm25s (robertson) vs rank-bm25 BM25Okapi(epsilon=0) on the same token lists."""
    from rank_bm25 import BM25Okapi  # optional dependency, only for this comparison

    subset = passages[: args.compare_passages]
    start = time.perf_counter()
    ours = BM25Retriever([p.title for p in subset], [p.text for p in subset],
                         settings=BM25Settings(k1=args.k1, b=args.b, method="robertson"))
    ours_index_s = time.perf_counter() - start  # tokenisation included
    # every token of an indexed passage is in the vocabulary: these are its indexed tokens
    corpus = ours.query_tokens([passage_text(p.title, p.text) for p in subset])
    raw = ours.query_tokens([q for q, _, _ in questions[: args.compare_questions]])
    queries = [list(dict.fromkeys(q)) for q in raw]
    queries = [q for q in queries if q]
    k = min(args.top_k, len(subset))
    start = time.perf_counter()
    docs, _ = ours.top_k(queries, k, n_threads=args.n_threads)
    ours_s = time.perf_counter() - start
    start = time.perf_counter()
    theirs = BM25Okapi(corpus, k1=args.k1, b=args.b, epsilon=0.0)
    theirs_index_s = time.perf_counter() - start
    start = time.perf_counter()
    top = [np.argsort(-theirs.get_scores(q), kind="stable")[:k] for q in queries]
    theirs_s = time.perf_counter() - start
    overlap = float(np.mean([len(set(a.tolist()) & set(b.tolist())) / k
                             for a, b in zip(docs, top)]))
    same = float(np.mean([a.tolist() == b.tolist() for a, b in zip(docs, top)]))
    result = {"queries": len(queries), "k": k, "overlap": overlap, "identical_lists": same,
              "bm25s_qps": len(queries) / ours_s, "rank_bm25_qps": len(queries) / theirs_s,
              "bm25s_index_s": ours_index_s, "rank_bm25_index_s": theirs_index_s}
    result["speed_ratio"] = result["bm25s_qps"] / result["rank_bm25_qps"]
    return result


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add = parser.add_argument
    add("--num_passages", type=int, default=1_000_000, help="synthetic passages to index")
    add("--num_questions", type=int, default=100_000, help="synthetic questions to mine for")
    add("--vocab_size", type=int, default=200_000, help="distinct synthetic words")
    add("--zipf_a", type=float, default=1.1, help="Zipf exponent of word frequencies")
    add("--passage_words", type=int, default=60, help="mean words per passage (+/- 50%%)")
    add("--question_words", type=int, default=8, help="words per question")
    add("--top_k", type=int, default=30, help="hard negatives per question")
    add("--k1", type=float, default=1.5, help="BM25 k1")
    add("--b", type=float, default=0.75, help="BM25 b")
    add("--n_threads", type=int, default=0, help="bm25s retrieval threads (0: none)")
    add("--compare_passages", type=int, default=20_000,
        help="passages of the rank-bm25 comparison subset (0 disables the comparison)")
    add("--compare_questions", type=int, default=300, help="questions for the comparison")
    add("--seed", type=int, default=0, help="random seed of the synthetic data")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Runs the benchmark and logs the numbers."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("bm25s").setLevel(logging.WARNING)
    args = parse_args(argv)
    logger.info("machine: %s; python %s; bm25s %s; numba backend: no (numpy)", machine(),
                platform.python_version(), bm25s.__version__)
    logger.info("args: %s", vars(args))
    rng = np.random.default_rng(args.seed)
    start = time.perf_counter()
    vocab = make_vocabulary(args.vocab_size, rng)
    passages = make_passages(args, vocab, rng)
    questions = make_questions(args, passages, rng)
    logger.info("generated %d passages, %d questions in %.1f s; peak RSS %.0f MiB",
                len(passages), len(questions), time.perf_counter() - start, peak_rss_mib())
    mining = bench_mining(args, passages, questions)
    if args.compare_passages > 0:
        comparison = bench_rank_bm25(args, passages, questions)
        logger.info(
            "rank-bm25 comparison on %d passages, %d queries, top-%d (bm25s robertson vs "
            "BM25Okapi epsilon=0): top-k overlap %.4f, identical lists %.3f; bm25s %.0f q/s vs "
            "rank-bm25 %.1f q/s -> bm25s %.0fx faster; index %.2f s (tokenisation included) vs "
            "%.2f s",
            min(args.compare_passages, len(passages)), comparison["queries"], comparison["k"],
            comparison["overlap"], comparison["identical_lists"], comparison["bm25s_qps"],
            comparison["rank_bm25_qps"], comparison["speed_ratio"],
            comparison["bm25s_index_s"], comparison["rank_bm25_index_s"])
    logger.info("summary: index %.1f s, mining %.0f questions/s, peak RSS %.0f MiB",
                mining["index_s"], mining["questions_per_s"], peak_rss_mib())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
