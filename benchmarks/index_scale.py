"""Index benchmark at scale: build time, peak memory, size on disk, queries/s and recall against
exact search of each faiss index type, built from shards by `python -m dpr.index build`'s code.

    python benchmarks/index_scale.py --n 5000000 --dim 384 --out index_scale_5M.json
    python benchmarks/index_scale.py --embeddings 'emb/passages_*' --query_vectors q.npy

Vectors: synthetic, from the clustered mixture of benchmarks/synthetic.py (`--centres`
centres, anisotropic spread, L2-normalised, generated in chunks with `--seed` and written as
`--dtype` shards of `--shard_rows`), or real shards with `--embeddings` (queries from
`--query_vectors`, else `--queries` vectors sampled from the shards, which then find
themselves). Exact neighbours of the held-out queries are computed shard by shard in chunks.

For each index (`--factories`, `{nlist}` replaced by a power of two near 4·sqrt(n)):
* build: one child process runs dpr.index's build (train on `--train_sample` vectors, add
  shard by shard); its time and peak resident memory (ru_maxrss of that process);
* search: another child loads the index and, for each nprobe / efSearch value, measures
  queries/s at batch 1 (`--batch1_queries` queries one by one) and at batch 256 (all queries),
  and recall@10 / recall@100: |found top-k ∩ exact top-k| / k, averaged;
* re-ranked search (indexes with lossy codes: PQ, SQ): one more child per `--reranks` value K
  > 0 fetches K candidates and re-scores them exactly from the memory-mapped shards
  (`load_index(..., rerank=K)`; a `Refine(...)` factory uses its own codes); its resident
  memory is split into the process's own (anonymous: index, buffers) and the shard pages it
  mapped (file-backed: page cache, reclaimable);
* size on disk of the index folder (index, id map, build.json), which excludes the shards a
  re-ranked search reads.
Per-vector costs (bytes/vector, add seconds per million vectors, peak memory above the
baseline process per vector) are derived so that a larger plan can be computed from them.

Prints a Markdown table; writes JSON with the machine, the command and every number.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import synthetic  # noqa: E402
from scale_common import emit, folder_bytes, machine, rss_parts_mib, run_phase  # noqa: E402

from dpr.index import BuildOptions, build_from_glob, load_index  # noqa: E402
from dpr.index.shards import find_shards, open_shards, sample_rows  # noqa: E402

DEFAULT_FACTORIES = ("Flat", "HNSW32", "HNSW32_SQ8", "IVF{nlist},PQ96",
                     "OPQ96_384,IVF{nlist},PQ96")
K = 100


def default_nlist(n: int) -> int:
    """Power of two nearest 4·sqrt(n) (faiss' guideline: 4 to 16·sqrt(n) lists)."""
    return 2 ** max(4, round(math.log2(4 * math.sqrt(n))))


def phase_baseline(_: argparse.Namespace) -> dict:
    """Peak memory of a process that only imports what the measured phases import (its
    file-backed part is the shared libraries, counted in every phase)."""
    return {"phase": "baseline", **rss_parts_mib()}


def phase_data(args: argparse.Namespace) -> dict:
    """Writes the synthetic shards and the queries, and the exact neighbours of the queries."""
    work = Path(args.work)
    start = time.perf_counter()
    if args.embeddings:
        files = [Path(f) for f in find_shards(args.embeddings)]
        queries = (np.load(args.query_vectors).astype(np.float32) if args.query_vectors
                   else _sample_queries(files, args.queries, args.seed))
    else:
        mixture = synthetic.Mixture.make(args.dim, args.centres, args.seed)
        files = synthetic.write_corpus(work / "emb", mixture, n=args.n,
                                       shard_rows=args.shard_rows, seed=args.seed,
                                       dtype=args.dtype)
        queries = synthetic.queries(mixture, args.queries, args.seed)
    generated = time.perf_counter()
    _, exact = synthetic.exact_neighbours(files, queries, K)
    np.save(work / "queries.npy", queries)
    np.save(work / "exact.npy", exact)
    return {"phase": "data", "files": [str(f) for f in files],
            "n": int(sum(np.load(f, mmap_mode="r").shape[0] for f in files)),
            "dim": int(queries.shape[1]), "generate_s": round(generated - start, 2),
            "exact_s": round(time.perf_counter() - generated, 2),
            "shard_bytes": sum(f.stat().st_size for f in files)}


def _sample_queries(files: list[Path], count: int, seed: int) -> np.ndarray:
    return sample_rows(open_shards([str(f) for f in files]), count, seed=seed)


def phase_build(args: argparse.Namespace) -> dict:
    options = BuildOptions(factory=args.factory, train_sample=args.train_sample,
                           seed=args.seed, threads=args.threads, checksum=False, quiet=True)
    settings = build_from_glob(args.pattern, Path(args.work) / "index", options)
    return {"phase": "build", "seconds": settings["seconds"], "nlist": settings["nlist"],
            "train_rows": (settings["train"] or {}).get("rows"),
            "index_class": settings["index_class"]}


def phase_search(args: argparse.Namespace) -> dict:
    work = Path(args.work)
    if args.threads:
        faiss.omp_set_num_threads(args.threads)
    index = load_index(work / "index", rerank=args.rerank or None)
    queries, exact = np.load(work / "queries.npy"), np.load(work / "exact.npy")
    name, values = (("nprobe", [v for v in args.nprobes if v <= index.nlist])
                    if index.nlist else ("ef_search", args.efs) if index.ef_parameter
                    else ("exact", [None]))
    settings = [_measure(index, queries, exact, args, **({name: v} if v else {}))
                for v in values]
    for setting in settings:
        setting["rerank"] = args.rerank or 0
    return {"phase": "search", "settings": settings, **rss_parts_mib()}


def _measure(index, queries: np.ndarray, exact: np.ndarray, args: argparse.Namespace,
             **setting: int) -> dict:
    """queries/s at batch 1 and 256 and recall@10/100 under one search setting."""
    index.configure(**setting)
    start = time.perf_counter()
    for i in range(args.batch1_queries):
        index.search_rows(queries[i:i + 1], K)
    batch1 = args.batch1_queries / (time.perf_counter() - start)
    start = time.perf_counter()
    rows = np.vstack([index.search_rows(queries[i:i + 256], K)[1]
                      for i in range(0, len(queries), 256)])
    batch256 = len(queries) / (time.perf_counter() - start)
    return {**setting, "qps_batch1": round(batch1, 1), "qps_batch256": round(batch256, 1),
            "recall@10": round(synthetic.recall(rows, exact, 10), 4),
            "recall@100": round(synthetic.recall(rows, exact, 100), 4)}


PHASES = {"baseline": phase_baseline, "data": phase_data, "build": phase_build,
          "search": phase_search}


def reranks_of(factory: str, reranks: list[int]) -> list[int]:
    """The re-ranking depths measured for a factory: all for lossy codes (PQ, SQ), else 0."""
    return reranks if ("PQ" in factory or "SQ" in factory) else [0]


def _search(args: argparse.Namespace, common: list[str], rerank: int) -> dict:
    return run_phase(__file__, [
        "--phase", "search", "--batch1_queries", str(args.batch1_queries),
        "--nprobes", ",".join(map(str, args.nprobes)), "--efs", ",".join(map(str, args.efs)),
        "--rerank", str(rerank), *common])


def measure_index(factory: str, args: argparse.Namespace, data: dict, base: float) -> dict:
    """Builds then searches one index in child processes (one per re-ranking depth);
    removes it afterwards."""
    common = ["--work", args.work, "--seed", str(args.seed),
              *(["--threads", str(args.threads)] if args.threads else [])]
    pattern = args.embeddings or str(Path(data["files"][0]).parent / "passages_*")
    build = run_phase(__file__, ["--phase", "build", "--factory", factory, "--pattern", pattern,
                                 "--train_sample", str(args.train_sample), *common])
    size = folder_bytes(Path(args.work) / "index")
    searches = [_search(args, common, r) for r in reranks_of(factory, args.reranks)]
    for search in searches:
        for setting in search["settings"]:
            setting.update({k: search[k] for k in ("peak_rss_mib", "rss_anon_mib",
                                                    "rss_file_mib")})
    search = searches[0]
    shutil.rmtree(Path(args.work) / "index")
    n, million = data["n"], data["n"] / 1e6
    return {"factory": factory, "build": build, "search_peak_rss_mib": search["peak_rss_mib"],
            "search": [s for done in searches for s in done["settings"]], "index_bytes": size,
            "per_vector": {
                "index_bytes": round(size / n, 2),
                "share_of_float32": round(size / (n * data["dim"] * 4), 4),
                "add_s_per_million": round(build["seconds"]["add"] / million, 2),
                "train_s": build["seconds"]["train"],
                "build_peak_rss_bytes": round((build["peak_rss_mib"] - base) * 2**20 / n, 1),
                "search_peak_rss_bytes": round((search["peak_rss_mib"] - base) * 2**20 / n, 1)}}


def table(results: list[dict]) -> str:
    head = ("| index | setting | build s (train + add) | build peak RSS | search peak RSS "
            "(own + shard pages at end) | size | of float32 | B/vector | q/s batch 1 | "
            "q/s batch 256 | R@10 | R@100 |")
    lines = [head, "|" + "---|" * 12]
    for r in results:
        b, pv = r["build"], r["per_vector"]
        for s in r["search"]:
            setting = ", ".join(f"{k} {v}" for k, v in s.items()
                                if k in ("nprobe", "ef_search") or (k == "rerank" and v))
            lines.append(
                f"| {r['factory']} | {setting or 'exact'} | {b['seconds']['total']:.0f} "
                f"({b['seconds']['train']:.0f} + {b['seconds']['add']:.0f}) | "
                f"{b['peak_rss_mib']:,.0f} MiB | {s['peak_rss_mib']:,.0f} MiB "
                f"({s['rss_anon_mib']:,.0f} + {s['rss_file_mib']:,.0f}) | "
                f"{r['index_bytes'] / 2**20:,.0f} MiB | {pv['share_of_float32']:.1%} | "
                f"{pv['index_bytes']:.0f} | {s['qps_batch1']:,.0f} | {s['qps_batch256']:,.0f} | "
                f"{s['recall@10']:.3f} | {s['recall@100']:.3f} |")
    return "\n".join(lines)


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5_000_000, help="Synthetic corpus size.")
    parser.add_argument("--dim", type=int, default=384, help="Vector size.")
    parser.add_argument("--centres", type=int, default=4096, help="Mixture centres.")
    parser.add_argument("--dtype", choices=("float16", "float32"), default="float16",
                        help="Element type of the synthetic shards.")
    parser.add_argument("--shard_rows", type=int, default=500_000, help="Vectors per shard.")
    parser.add_argument("--embeddings", default=None, help="Glob of real shards instead.")
    parser.add_argument("--query_vectors", default=None, help="Real query vectors (.npy).")
    parser.add_argument("--queries", type=int, default=1000, help="Held-out queries.")
    parser.add_argument("--batch1_queries", type=int, default=200,
                        help="Queries searched one at a time for the batch-1 rate.")
    parser.add_argument("--factories", default=None,
                        help=f"faiss factory strings separated by ';' (default: "
                        f"{';'.join(DEFAULT_FACTORIES)}).")
    parser.add_argument("--nlist", type=int, default=None, help="{nlist} (default: ~4·sqrt(n)).")
    parser.add_argument("--train_sample", type=int, default=None,
                        help="Training vectors (default: min(n, max(100000, 50·nlist))).")
    parser.add_argument("--nprobes", type=_ints, default=[1, 4, 16, 64, 256],
                        help="nprobe values searched with IVF indexes (comma-separated).")
    parser.add_argument("--efs", type=_ints, default=[16, 64, 128, 256],
                        help="efSearch values searched with HNSW indexes (comma-separated).")
    parser.add_argument("--reranks", type=_ints, default=[0, 1000],
                        help="Re-ranking depths (candidates re-scored exactly from the shards) "
                        "measured with PQ/SQ indexes; 0: without (comma-separated).")
    parser.add_argument("--rerank", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=None, help="faiss threads.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of vectors and samples.")
    parser.add_argument("--work", default=None, help="Working folder (default: temporary).")
    parser.add_argument("--out", default="index_scale.json", help="JSON results file.")
    for hidden in ("--phase", "--factory", "--pattern"):
        parser.add_argument(hidden, default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> dict:
    """Data, baseline, then every index; returns the report."""
    nlist = args.nlist or default_nlist(args.n)
    args.train_sample = args.train_sample or min(args.n, max(100_000, 50 * nlist))
    factories = [f.format(nlist=nlist) for f in
                 (args.factories.split(";") if args.factories else DEFAULT_FACTORIES)]
    data_args = ["--work", args.work, "--n", str(args.n), "--dim", str(args.dim),
                 "--centres", str(args.centres), "--dtype", args.dtype, "--shard_rows",
                 str(args.shard_rows), "--queries", str(args.queries), "--seed", str(args.seed),
                 *(["--embeddings", args.embeddings] if args.embeddings else []),
                 *(["--query_vectors", args.query_vectors] if args.query_vectors else [])]
    data = run_phase(__file__, ["--phase", "data", *data_args])
    baseline = run_phase(__file__, ["--phase", "baseline"])
    base = baseline["peak_rss_mib"]
    results = []
    for factory in factories:
        results.append(measure_index(factory, args, data, base))
        print(table(results[-1:]).splitlines()[-1], flush=True)
    return {"command": shlex.join([sys.executable, *sys.argv]), "machine": machine(),
            "config": {"n": data["n"], "dim": data["dim"], "nlist": nlist,
                       "train_sample": args.train_sample, "queries": args.queries,
                       "source": args.embeddings or
                       f"synthetic mixture (benchmarks/synthetic.py), {args.centres} centres, "
                       f"{args.dtype} shards of {args.shard_rows}"},
            "data": data, "baseline_peak_rss_mib": base, "baseline": baseline,
            "indexes": results}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.phase:
        emit(PHASES[args.phase](args))
        return 0
    with tempfile.TemporaryDirectory(dir=args.work) as work:
        args.work = work
        report = run(args)
    Path(args.out).write_text(json.dumps(report, indent=2), encoding="utf-8")
    print("\n" + table(report["indexes"]))
    print(f"\n{report['machine']}\n{report['config']}\nWrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
