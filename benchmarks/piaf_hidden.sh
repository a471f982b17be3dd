#!/usr/bin/env bash
# The hidden-PIAF retrieval check: PIAF dev questions searched among all of PIAF's passages
# hidden in FILLER_N French filler passages (benchmarks/filler_corpus.py), top-20 with an exact
# (Flat) index and with a compressed one (with and without exact re-ranking), all built by
# python -m dpr.index from the shards generate_dense_embeddings.py writes (chunked, resumable,
# NPROC processes under torchrun).
#   1. data_prep: PIAF -> train/dev/tune split by article, Religion and Sport held out as test
#   2. filler: French documentation packages + recombined real sentences up to FILLER_N,
#      none from the dev/tune/test articles
#   3. corpus.tsv = PIAF's passages, then the filler
#   4. generate_dense_embeddings.py (resumable: rerun the script after a kill)
#   5. python -m dpr.index build: Flat, and FACTORY (default IVF<nlist>,PQ96x4fs)
#   6. dense_retriever.py --index on the dev questions: Flat, compressed, compressed + re-rank
#   7. hidden_summary.json: top-1/5/20/100 of each, corpus composition, encoding rate
# Steps are skipped when their output exists (delete $OUT or the file to redo one).
# Usage: bash benchmarks/piaf_hidden.sh MODEL [PIAF_JSON]
#   MODEL: a DPR checkpoint, a dpr2hf folder or a Hugging Face / sentence-transformers folder.
# Environment: OUT (bench_out/piaf_hidden), FILLER_N (1000000), NPROC (1), CHUNK_SIZE (100000),
#   VECTOR_DTYPE (float16), BATCH_SIZE (64), FACTORY (IVF<nlist>,PQ96x4fs, nlist the power of
#   two nearest 4*sqrt(passages)), NPROBE (64), RERANK (1000), THREADS (1: faiss threads),
#   DEB_CACHE ($OUT/debian_fr), ENCODER_FLAGS (extra flags, e.g. "--fp16"), PYTHON (python).
# A real model on 1M passages is hours of encoding on a CPU: run it where there are GPUs
# (NPROC = GPUs per node) and copy $OUT back, or set FILLER_N lower.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
MODEL="${1:?usage: bash benchmarks/piaf_hidden.sh MODEL [PIAF_JSON]}"
MODEL="$(cd "$(dirname "$MODEL")" && pwd)/$(basename "$MODEL")"
PIAF="${2:-$ROOT/../shared/data/piaf-v1.0.json}"
PIAF="$(cd "$(dirname "$PIAF")" && pwd)/$(basename "$PIAF")"
OUT="${OUT:-$ROOT/bench_out/piaf_hidden}" PYTHON="${PYTHON:-python}"
FILLER_N="${FILLER_N:-1000000}" NPROC="${NPROC:-1}" CHUNK_SIZE="${CHUNK_SIZE:-100000}"
VECTOR_DTYPE="${VECTOR_DTYPE:-float16}" BATCH_SIZE="${BATCH_SIZE:-64}" NPROBE="${NPROBE:-64}"
RERANK="${RERANK:-1000}" THREADS="${THREADS:-1}" ENCODER_FLAGS="${ENCODER_FLAGS:-}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
[ -f "$PIAF" ] || { echo "PIAF file not found: $PIAF" >&2; exit 2; }
mkdir -p "$OUT" && cd "$OUT"
DEB_CACHE="${DEB_CACHE:-$OUT/debian_fr}"
echo "== machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; output: $OUT"
echo "== commit: $(git -C "$ROOT" rev-parse --short HEAD 2> /dev/null || echo unknown); model: $MODEL"

if [ ! -f data/qas_dev.tsv ]; then
    echo "== 1. data_prep (dev 0.2, tune 0.1, Religion and Sport held out)"
    "$PYTHON" -m data_prep.squad2dpr "$PIAF" --output_dir data --dev_ratio 0.2 \
        --tune_ratio 0.1 --holdout_field categorie --holdout_values Religion,Sport --quiet
fi

if [ ! -f filler.tsv ]; then
    echo "== 2. filler: $FILLER_N French passages"
    held_out="$(ls data/DPR_FR_dev.json data/DPR_FR_tune.json data/DPR_FR_test.json \
                2> /dev/null | paste -sd, -)"
    "$PYTHON" "$ROOT/benchmarks/filler_corpus.py" --n "$FILLER_N" --out filler.tsv \
        --piaf "$PIAF" --cache "$DEB_CACHE" --exclude_articles "$held_out"
fi

if [ ! -f corpus.tsv ]; then
    echo "== 3. corpus: PIAF's passages hidden in the filler"
    { cat data/passages.tsv; tail -n +2 filler.tsv; } > corpus.tsv.partial
    mv corpus.tsv.partial corpus.tsv
fi
PASSAGES=$(( $(wc -l < corpus.tsv) - 1 ))
echo "   $PASSAGES passages ($(( $(wc -l < data/passages.tsv) - 1 )) from PIAF)"

echo "== 4. encoding ($NPROC process(es), chunks of $CHUNK_SIZE, $VECTOR_DTYPE; resumes)"
launcher=("$PYTHON")
if [ "$NPROC" -gt 1 ]; then
    launcher=("$PYTHON" -m torch.distributed.run "--nproc_per_node=$NPROC"
              "--master_port=$(( 20000 + RANDOM % 20000 ))")
fi
start=$(date +%s)
# shellcheck disable=SC2086
"${launcher[@]}" "$ROOT/generate_dense_embeddings.py" --model_file "$MODEL" \
    --ctx_file corpus.tsv --out_file emb/passages --chunk_size "$CHUNK_SIZE" \
    --vector_dtype "$VECTOR_DTYPE" --batch_size "$BATCH_SIZE" $ENCODER_FLAGS 2> encode.log \
    || { tail -n 30 encode.log; exit 1; }
echo "$(( $(date +%s) - start ))" > encode_seconds.txt
grep -h "Worker 0: encoded" encode.log | tail -n 1 | sed 's/^.*: Worker/   worker/'

NLIST=$("$PYTHON" -c "import math; print(2 ** max(4, round(math.log2(4 * math.sqrt($PASSAGES)))))")
FACTORY="${FACTORY:-IVF$NLIST,PQ96x4fs}"
TRAIN=$(( PASSAGES < 50 * NLIST ? PASSAGES : 50 * NLIST ))
TRAIN=$(( TRAIN > 100000 || PASSAGES < 100000 ? TRAIN : 100000 ))
for spec in "idx_flat Flat" "idx_compressed $FACTORY"; do
    read -r folder factory <<< "$spec"
    if [ ! -f "$folder/build.json" ]; then
        echo "== 5. index $factory"
        "$PYTHON" -m dpr.index build --encoded_ctx_file 'emb/passages_*' --factory "$factory" \
            --output_dir "$folder" --train_sample "$TRAIN" --num_threads "$THREADS" --quiet \
            2> "$folder.log" || { tail -n 20 "$folder.log"; exit 1; }
    fi
done

echo "== 6. dev questions: Flat, $FACTORY (nprobe $NPROBE), and re-ranked ($RERANK)"
retrieve() {  # name, then index flags
    local name="$1"; shift
    # shellcheck disable=SC2086
    OMP_NUM_THREADS="$THREADS" "$PYTHON" "$ROOT/dense_retriever.py" --model_file "$MODEL" \
        --qa_file data/qas_dev.tsv --ctx_file corpus.tsv --n-docs 100 --out_file "$name.json" \
        --batch_size "$BATCH_SIZE" --quiet $ENCODER_FLAGS "$@" 2> "$name.log" \
        || { tail -n 20 "$name.log"; exit 1; }
}
retrieve flat --index idx_flat
retrieve compressed --index idx_compressed --nprobe "$NPROBE"
retrieve reranked --index idx_compressed --nprobe "$NPROBE" --rerank "$RERANK"

"$PYTHON" - "$FACTORY" "$NPROBE" "$RERANK" "$MODEL" <<'EOF'
import json, os, sys
factory, nprobe, rerank, model = sys.argv[1:5]
def topk(name):
    results = json.load(open(f"{name}.json", encoding="utf-8"))
    ranks = [next((i for i, c in enumerate(r["ctxs"]) if c["has_answer"]), None) for r in results]
    return {f"top{k}": round(sum(r is not None and r < k for r in ranks) / len(ranks), 4)
            for k in (1, 5, 20, 100)}, [[c["id"] for c in r["ctxs"][:20]] for r in results]
runs = {name: topk(name) for name in ("flat", "compressed", "reranked")}
flat_ids = runs["flat"][1]
seconds = float(open("encode_seconds.txt").read())
passages = sum(1 for _ in open("corpus.tsv", encoding="utf-8")) - 1
summary = {
    "model": model, "questions": len(flat_ids), "passages": passages,
    "filler": json.load(open("filler.tsv.summary.json", encoding="utf-8")),
    "piaf_passages": sum(1 for _ in open("data/passages.tsv", encoding="utf-8")) - 1,
    "encoding": {"seconds_this_run": seconds, "processes": int(os.environ.get("NPROC", "1")),
                 "passages_per_second": round(passages / seconds, 1) if seconds else None,
                 "note": "a rerun that skipped complete chunks measures less than the corpus"},
    "runs": {name: {"index": {"flat": "Flat", "compressed": f"{factory}, nprobe {nprobe}",
                              "reranked": f"{factory}, nprobe {nprobe}, rerank {rerank}"}[name],
                    **scores,
                    "top20_ids_shared_with_flat": round(sum(
                        len(set(a) & set(b)) / max(1, len(b)) for a, b in zip(ids, flat_ids))
                        / len(flat_ids), 4)}
             for name, (scores, ids) in runs.items()}}
json.dump(summary, open("hidden_summary.json", "w", encoding="utf-8"), indent=2, ensure_ascii=False)
print("| index | top-1 | top-5 | top-20 | top-100 | top-20 ids shared with Flat |")
print("|---|---|---|---|---|---|")
for run in summary["runs"].values():
    print(f"| {run['index']} | {run['top1']:.3f} | {run['top5']:.3f} | {run['top20']:.3f} | "
          f"{run['top100']:.3f} | {run['top20_ids_shared_with_flat']:.3f} |")
rate = summary["encoding"]["passages_per_second"]
print(f"{passages:,} passages ({summary['piaf_passages']:,} PIAF); encoded in {seconds:.0f} s "
      f"({rate} passages/s); 1M passages at that rate: {1e6 / rate / 3600:.1f} h" if rate else "")
EOF
echo "== done in ${SECONDS} s: $OUT/hidden_summary.json"
