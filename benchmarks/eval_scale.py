"""Evaluation cost against corpus size, BM25 and dense search excluded: the machinery of
`dpr.evaluate` after the retrievers (fusions, relevance judging, scoring, sign tests, TREC
files) on the same questions against corpora of growing size.

    python benchmarks/eval_scale.py --sizes 100000,1000000 --questions 1000 --out eval.json

Corpus: `--sizes` passages of about 40 words, each two random real sentences of PIAF's
paragraphs (sentences of 5 words or more) cut to 40 words, kept in a compact form (two int32
sentence numbers per passage, 8 bytes) and built when a passage is read, so 1M passages take
8 MB instead of about 300 MB of text. Questions: the first `--questions` PIAF questions with
their answers (relevance by answer matching, DPR's has_answer).

Runs: two synthetic top-`--k` rankings per question ("bm25" and "dpr", scores decreasing),
fused into "hybrid" (λ 1.1), "rrf" and "fusion" (minmax, 0.5) by `dpr.retrieval.fusion.fuse`. Rows:
* `uniform`: drawn uniformly from the corpus, so a larger corpus pools more distinct passages
  (at 100k, the 200k rows of 1,000 questions repeat many passages; at 1M few);
* `fixed`: drawn from 100,000 slots mapped into the corpus one to one, so both sizes judge
  the same number of distinct passages and only what depends on the corpus size differs.

Timed, each size in its own process (peak resident memory its own; `--repeats` processes per
size, the fastest kept): fusing, judging the pool (`relevance.Judge`, `--workers` processes),
scoring (`report.score_runs`), comparison and Holm-adjusted sign tests, TREC run and qrels
files. Building the compact corpus and the rankings is not timed. Prints a Markdown table and
the ratio of each size's total to the first size's; writes JSON with the machine and the
command.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from scale_common import DEFAULT_PIAF, emit, machine, piaf_sentences, run_phase  # noqa: E402

from dpr.evaluation.inputs import QuestionSet  # noqa: E402
from dpr.evaluation.relevance import Judge  # noqa: E402
from dpr.evaluation.report import adjust_sign_tests, compare, hits_at, score_runs  # noqa: E402
from dpr.evaluation.trec import write_trec  # noqa: E402
from dpr.retrieval.corpus import Corpus  # noqa: E402
from dpr.retrieval.fusion import Linear, Normalised, Reciprocal, fuse  # noqa: E402
from dpr.retrieval.run import Run, pool  # noqa: E402

WORDS = 40
FIXED_SLOTS = 100_000


class CompactPassages(Sequence[str]):
    """Passage texts built on access from two sentence numbers per passage."""

    def __init__(self, sentences: list[str], count: int, seed: int) -> None:
        self.sentences = sentences
        rng = np.random.default_rng(seed)
        self.pairs = rng.integers(0, len(sentences), size=(count, 2), dtype=np.int32)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, row):  # type: ignore[override]
        first, second = self.pairs[row]
        words = f"{self.sentences[first]} {self.sentences[second]}".split()
        return " ".join(words[:WORDS])


class PassageIds(Sequence[str]):
    """Passage ids `p<row>`, built on access."""

    def __init__(self, count: int) -> None:
        self.count = count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, row):  # type: ignore[override]
        return f"p{row}"


def piaf_questions(path: str, count: int) -> QuestionSet:
    """The first `count` PIAF questions with their answers."""
    qset = QuestionSet(str(path), [], [])
    for article in json.loads(Path(path).read_text(encoding="utf-8"))["data"]:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                if len(qset.questions) < count:
                    qset.questions.append(qa["question"])
                    qset.answers.append([a["text"] for a in qa["answers"]])
    return qset


def synthetic_run(name: str, *, questions: int, size: int, k: int, overlap: str,
                  seed: int) -> Run:
    """Random top-k rankings (distinct rows per question), scores decreasing."""
    rng = np.random.default_rng(seed)
    space = size if overlap == "uniform" else min(size, FIXED_SLOTS)
    stride = size // space
    rows = []
    for _ in range(questions):
        drawn = np.unique(rng.integers(0, space, size=2 * k))
        slots = rng.permutation(drawn)[:k]
        rows.append(slots * stride + (slots * 7919) % stride if stride > 1 else slots)
    scores = tuple(np.linspace(10.0, 1.0, k) for _ in rows)
    return Run(name, tuple(rows), scores)


def phase_measure(args: argparse.Namespace) -> dict:
    sentences, _, _ = piaf_sentences(args.piaf)
    texts = CompactPassages(sentences, args.size, args.seed)
    corpus = Corpus(PassageIds(args.size), [], texts, f"synthetic {args.size}")  # type: ignore
    qset = piaf_questions(args.piaf, args.questions)
    made = {"questions": len(qset.questions), "size": args.size, "k": args.k,
            "overlap": args.overlap}
    bm25, dpr = (synthetic_run(name, questions=len(qset.questions), size=args.size, k=args.k,
                               overlap=args.overlap, seed=args.seed + i)
                 for i, name in enumerate(("bm25", "dpr")))
    seconds = {}
    start = time.perf_counter()
    runs = [bm25, dpr, fuse(bm25, dpr, Linear(1.1), k=args.k, name="hybrid"),
            fuse(bm25, dpr, Reciprocal(60), k=args.k, name="rrf"),
            fuse(bm25, dpr, Normalised("minmax", 0.5), k=args.k, name="fusion")]
    seconds["fuse"] = time.perf_counter() - start
    start = time.perf_counter()
    pooled = pool(runs, len(qset.questions))
    qrels = Judge(texts, mode="answer", workers=args.workers).judge(qset, pooled)
    seconds["judge"] = time.perf_counter() - start
    start = time.perf_counter()
    results = score_runs(runs, qrels, ks=[1, 5, 10, 20, 50, 100], n_docs=args.k)
    seconds["score"] = time.perf_counter() - start
    start = time.perf_counter()
    comparison = compare(results, hits_at(results, 20), 20)
    adjust_sign_tests(comparison, [], 20)
    seconds["compare"] = time.perf_counter() - start
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        write_trec(folder, corpus=corpus, runs=runs, qrels=qrels)
    seconds["trec"] = time.perf_counter() - start
    seconds["total"] = sum(seconds.values())
    return {"phase": "measure", **made, "pooled_pairs": int(sum(len(p) for p in pooled)),
            "distinct_passages": int(len(np.unique(np.concatenate(pooled)))),
            "relevant_pairs": int(sum(qrels.num_relevant)),
            "top20_bm25": results["bm25"]["top_k"][20],
            "seconds": {key: round(value, 3) for key, value in seconds.items()}}


def table(rows: list[dict]) -> str:
    head = ("| overlap | passages | distinct judged | pooled pairs | fuse s | judge s | score s | "
            "compare s | TREC s | total s | peak MiB |")
    lines = [head, "|" + "---|" * 11]
    for row in rows:
        s = row["seconds"]
        lines.append(f"| {row['overlap']} | {row['size']:,} | {row['distinct_passages']:,} | "
                     f"{row['pooled_pairs']:,} | {s['fuse']} | {s['judge']} | {s['score']} | "
                     f"{s['compare']} | {s['trec']} | {s['total']} | {row['peak_rss_mib']} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--sizes", default="100000,1000000", help="corpus sizes, comma-separated")
    parser.add_argument("--questions", type=int, default=1000, help="PIAF questions")
    parser.add_argument("--k", type=int, default=100, help="rows per ranking")
    parser.add_argument("--overlap", choices=("uniform", "fixed", "both"), default="both",
                        help="how ranking rows are drawn (see the module docstring)")
    parser.add_argument("--workers", type=int, default=1, help="judging processes")
    parser.add_argument("--seed", type=int, default=0, help="seed of corpus and rankings")
    parser.add_argument("--repeats", type=int, default=1,
                        help="processes per measure; the fastest is kept (a loaded machine)")
    parser.add_argument("--piaf", default=str(DEFAULT_PIAF), help="PIAF JSON")
    parser.add_argument("--out", help="write the JSON results here")
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.phase == "measure":
        emit(phase_measure(args))
        return 0
    overlaps = ("uniform", "fixed") if args.overlap == "both" else (args.overlap,)
    rows = []
    for overlap in overlaps:
        for size in (int(s) for s in args.sizes.split(",")):
            tries = [run_phase(__file__, [
                "--phase", "measure", "--size", str(size), "--overlap", overlap,
                "--questions", str(args.questions), "--k", str(args.k), "--workers",
                str(args.workers), "--seed", str(args.seed), "--piaf", args.piaf])
                for _ in range(max(1, args.repeats))]
            rows.append(min(tries, key=lambda row: row["seconds"]["total"]))
            rows[-1]["totals_of_repeats"] = [row["seconds"]["total"] for row in tries]
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    print(table(rows))
    for overlap in overlaps:
        totals = [row["seconds"]["total"] for row in rows if row["overlap"] == overlap]
        print(f"{overlap}: " + ", ".join(f"{t / totals[0]:.2f}x" for t in totals))
    if args.out:
        Path(args.out).write_text(json.dumps({
            "command": shlex.join(["python", "benchmarks/eval_scale.py", *(argv or sys.argv[1:])]),
            "machine": machine(), "rows": rows}, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
