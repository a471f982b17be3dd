"""Does Haystack's ranker, given a reranker's exported CrossEncoder folder, rank as
`dpr.evaluate` does? (a measurement, not a test; tests/integrations/test_haystack.py checks
the same on the test fixture).

For each question it takes the first stage's top `--depth` passages from a TREC run written by
`dpr.evaluate --trec_dir` (e.g. run.bm25.txt), re-ranks them with
`examples/haystack_pipeline.passage_ranker` (Haystack's `SentenceTransformersSimilarityRanker`
as the example builds it) and compares with the re-ranked run of the same evaluation
(run.rerank.txt): the share of questions whose whole order, and whose first passage, are the
same, and the largest score difference.

    python benchmarks/haystack_rerank_parity.py --reranker hf/reranker --ctx_file passages.tsv \
        --qa_file qas_dev.tsv --first_stage eval/trec/run.bm25.txt \
        --reranked eval/trec/run.rerank.txt --depth 20
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "examples")]

from haystack import Document  # noqa: E402
from haystack_pipeline import passage_ranker  # noqa: E402

from dpr.evaluation.inputs import read_questions  # noqa: E402
from dpr.retrieval.corpus import read_tsv_corpus  # noqa: E402


def read_run(path: str) -> dict[int, list[tuple[str, float]]]:
    """A TREC run as {question position: [(passage id, score)] in rank order}."""
    ranked: dict[int, list[tuple[str, float]]] = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        qid, _, pid, _, score, _ = line.split()
        ranked.setdefault(int(qid), []).append((pid, float(score)))
    return ranked


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reranker", required=True, help="CrossEncoder folder (dpr2hf)")
    parser.add_argument("--ctx_file", required=True)
    parser.add_argument("--qa_file", required=True)
    parser.add_argument("--first_stage", required=True, help="TREC run of the first stage")
    parser.add_argument("--reranked", required=True, help="TREC run of dpr.evaluate's rerank")
    parser.add_argument("--depth", type=int, default=20)
    args = parser.parse_args(argv)
    corpus = read_tsv_corpus(args.ctx_file)
    passage = {pid: (title, text) for pid, title, text in
               zip(corpus.ids, corpus.titles, corpus.texts)}
    questions = read_questions(args.qa_file).questions
    first, ours = read_run(args.first_stage), read_run(args.reranked)
    ranker = passage_ranker(args.reranker, top_k=args.depth)
    ranker.warm_up()
    same_order = same_first = 0
    largest = 0.0
    start = time.perf_counter()
    for qid, ranked in ours.items():
        documents = [Document(id=pid, content=passage[pid][1], meta={"title": passage[pid][0]})
                     for pid, _ in first[qid][:args.depth]]
        got = ranker.run(query=questions[qid].strip(), documents=documents)["documents"]
        same_order += [d.id for d in got] == [pid for pid, _ in ranked]
        same_first += got[0].id == ranked[0][0]
        score = dict(ranked)
        largest = max(largest, *(abs(d.score - score[d.id]) for d in got))
    n = len(ours)
    print(json.dumps({"questions": n, "depth": args.depth,
                      "same_order": round(same_order / n, 4),
                      "same_first": round(same_first / n, 4),
                      "max_score_difference": largest,
                      "seconds_per_question": round((time.perf_counter() - start) / n, 3)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
