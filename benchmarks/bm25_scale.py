"""BM25 at scale: indexing, saving, memory-mapped loading and querying time and memory of the
project's BM25 (dpr.retrieval.bm25, bm25s with the French analyser).

    python benchmarks/bm25_scale.py --passages 200000 --queries 1000 --out bm25_scale.json

Corpus: `--passages` synthetic French passages of 100 words, each made of random real
sentences of PIAF's paragraphs (split at sentence ends, sentences of 5 words or more) with a
random PIAF article title, seeded; queries: PIAF's questions (the first `--queries`). PIAF has
about 9k paragraphs, so the vocabulary is PIAF's and term statistics are those of a larger
corpus drawn from it; a real corpus has a longer vocabulary tail (larger score matrix).

Phases, each in its own process so that each peak resident memory is its own:
1. index: build the passages, tokenise and index them (`BM25Retriever`), save the index;
2. query_mmap: load the saved index memory-mapped, search the questions (top 100);
3. query_ram: the same with the index read into memory.
Both query phases must return the same passages (checked via a digest).

Prints a Markdown table and writes JSON with the machine and the command.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from scale_common import (  # noqa: E402
    DEFAULT_PIAF,
    current_rss_mib,
    emit,
    folder_bytes,
    machine,
    piaf_sentences,
    recombined_passages,
    run_phase,
)

from dpr.retrieval.bm25 import BM25Retriever  # noqa: E402


def phase_index(args: argparse.Namespace) -> dict:
    start = time.perf_counter()
    sentences, titles, _ = piaf_sentences(args.piaf)
    titles, texts = recombined_passages(sentences, titles, args.passages, seed=args.seed)
    built = time.perf_counter()
    retriever = BM25Retriever(titles, texts)
    indexed = time.perf_counter()
    retriever.save(Path(args.work) / "bm25", overwrite=True)
    saved = time.perf_counter()
    return {"phase": "index", "passages": len(texts), "sentences_in_pool": len(sentences),
            "words_per_passage": round(sum(len(t.split()) for t in texts) / len(texts), 1),
            "make_passages_s": round(built - start, 2), "index_s": round(indexed - built, 2),
            "save_s": round(saved - indexed, 2), "vocabulary": len(retriever.index.vocab_dict),
            "index_bytes": folder_bytes(Path(args.work) / "bm25")}


def phase_query(args: argparse.Namespace, *, mmap: bool) -> dict:
    _, _, questions = piaf_sentences(args.piaf)
    questions = questions[:args.queries]
    start = time.perf_counter()
    retriever = BM25Retriever.load(Path(args.work) / "bm25", mmap=mmap)
    loaded = time.perf_counter()
    rss_loaded = current_rss_mib()
    rows, _ = retriever.search(questions, 100)
    searched = time.perf_counter()
    return {"phase": "query_mmap" if mmap else "query_ram", "queries": len(questions),
            "load_s": round(loaded - start, 3), "rss_after_load_mib": round(rss_loaded, 1),
            "search_s": round(searched - loaded, 2),
            "queries_per_s": round(len(questions) / (searched - loaded), 1),
            "results_digest": hashlib.sha256(rows.tobytes()).hexdigest()[:16]}


def table(results: list[dict]) -> str:
    index, *queries = results
    lines = [
        f"Index: {index['passages']:,} passages ({index['words_per_passage']} words), "
        f"vocabulary {index['vocabulary']:,}, index on disk "
        f"{index['index_bytes'] / 2**20:.0f} MiB",
        "",
        "| phase | time | queries/s | RSS after load | peak RSS |",
        "|---|---|---|---|---|",
        f"| tokenise + index | {index['index_s']:.1f} s (+ save {index['save_s']:.1f} s) | | "
        f"| {index['peak_rss_mib']:,.0f} MiB |",
    ]
    for q in queries:
        lines.append(f"| {q['phase']} ({q['queries']} questions, top 100) | load "
                     f"{q['load_s']:.2f} s, search {q['search_s']:.1f} s | "
                     f"{q['queries_per_s']:.0f} | {q['rss_after_load_mib']:,.0f} MiB | "
                     f"{q['peak_rss_mib']:,.0f} MiB |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passages", type=int, default=200_000, help="Synthetic passages.")
    parser.add_argument("--queries", type=int, default=1000, help="PIAF questions searched.")
    parser.add_argument("--piaf", default=str(DEFAULT_PIAF), help="PIAF (SQuAD-format) file.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the passages.")
    parser.add_argument("--out", default="bm25_scale.json", help="JSON results file.")
    parser.add_argument("--work", default=None, help="Working folder (default: a temporary one).")
    parser.add_argument("--phase", default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.phase:
        emit(phase_index(args) if args.phase == "index"
             else phase_query(args, mmap=args.phase == "query_mmap"))
        return 0
    with tempfile.TemporaryDirectory(dir=args.work) as work:
        common = ["--work", work, "--piaf", args.piaf, "--passages", str(args.passages),
                  "--queries", str(args.queries), "--seed", str(args.seed)]
        results = [run_phase(__file__, ["--phase", phase, *common])
                   for phase in ("index", "query_mmap", "query_ram")]
    if results[1]["results_digest"] != results[2]["results_digest"]:
        raise SystemExit("memory-mapped and in-memory searches returned different passages")
    report = {"command": shlex.join([sys.executable, *sys.argv]), "machine": machine(),
              "results": results}
    Path(args.out).write_text(json.dumps(report, indent=2), encoding="utf-8")
    print(table(results))
    print(f"\n{report['machine']}\nWrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
