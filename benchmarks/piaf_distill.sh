#!/usr/bin/env bash
# The reranker distilled into the bi-encoder on PIAF: does the bi-encoder alone gain? (a
# benchmark, not a test; docs/RECIPE.md, "Distillation", has the measured run). It works in
# piaf_e5.sh's folder (same OUT) after piaf_e5.sh and piaf_rerank.sh (NEGATIVES=mined): their
# split, round-1 model, mined negatives, round-2 model and reranker. Steps are skipped when
# their output exists, so a rerun only redoes what is missing.
#   1. The teacher: python -m data_prep.score_candidates scores every passage of the round-2
#      training file (positives, mined and BM25 negatives) with the reranker, once.
#   2. Distilled rounds: round 2's own command (its training_config.json: same start from
#      round 1, data, recipe, seed) plus --distill_scores at each DISTILL_WEIGHTS; each scored
#      on the tune split (MRR@10, then top-1) against round 2 itself (weight 0). Nothing is
#      chosen on dev or on the held-out categories.
#   3. dpr.evaluate on dev and on the held-out categories: BM25, round 2 and the distilled
#      round of the best weight (even when round 2 won on tune: the question is measured either
#      way), and the sign test of the distilled model against round 2.
# Usage: bash benchmarks/piaf_distill.sh [PIAF_JSON]
#   OUT (bench_out/piaf_e5), DISTILL_WEIGHTS ("0.5 2"), RERANKER (the last checkpoint of
#   rerank_mined/), SPLITS ("dev test"), HOLDOUT (Religion,Sport), AMP (--fp16 or empty).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PIAF_JSON="${1:-}" DEFAULT_OUT="$ROOT/bench_out/piaf_e5"
DISTILL_WEIGHTS="${DISTILL_WEIGHTS:-0.5 2}" SPLITS="${SPLITS:-dev test}"
HOLDOUT="${HOLDOUT:-Religion,Sport}" AMP="${AMP---fp16}"
# shellcheck source=benchmarks/common.sh
source "$ROOT/benchmarks/common.sh"

R2="$(ls -v round2/dpr_biencoder.* 2> /dev/null | tail -n 1 || true)"
RERANKER="${RERANKER:-$(ls -v rerank_mined/reranker.* 2> /dev/null | tail -n 1 || true)}"
TRAIN=data/DPR_FR_train.mined_e5.json TEACHER=data/DPR_FR_train.mined_e5.teacher.jsonl
[ -n "$R2" ] && [ -f round2/training_config.json ] && [ -n "$RERANKER" ] || {
    echo "needs piaf_e5.sh's round 2 and piaf_rerank.sh's reranker in $OUT: run them first" >&2
    exit 2; }
echo "   round 2: $R2; reranker: $RERANKER"

echo "== 1. The teacher: the reranker's scores of every passage of $TRAIN ($(stamp))"
if [ ! -f "$TEACHER" ]; then
    start=$SECONDS
    "$PYTHON" -m data_prep.score_candidates --reranker "$RERANKER" --train_file "$TRAIN" \
        --out_file "$TEACHER" --pretrained_model_cfg "$E5" $AMP --quiet 2> score_teacher.log \
        || { tail -n 20 score_teacher.log; exit 1; }
    echo "   $TEACHER: $(( SECONDS - start )) s"
fi
grep -h "Scored" score_teacher.log | sed 's/.*INFO[^:]*: /   /' || true

echo "== 2. Distilled rounds, weights $DISTILL_WEIGHTS, chosen on tune ($(stamp))"
read -r best_score best_top1 _ <<< "$(tune_score "$R2" tune_round2)"
echo "   round 2 (weight 0): MRR@10 $best_score, top-1 $best_top1 on tune"
best_weight=0 best_distilled="" best_distilled_score=-1 best_distilled_weight=""
for weight in $DISTILL_WEIGHTS; do
    dir="distill_w$weight"
    if [ ! -f "$dir/done" ]; then
        start=$SECONDS
        "$PYTHON" "$ROOT/train_dense_encoder.py" --config round2/training_config.json \
            --output_dir "$dir" --distill_scores "$TEACHER" --distill_weight "$weight" \
            2> "$dir.log" || { tail -n 40 "$dir.log"; exit 1; }
        touch "$dir/done"
        echo "   $dir: $(( SECONDS - start )) s"
    fi
    ckpt="$(ls -v "$dir"/dpr_biencoder.* | tail -n 1)"
    read -r mrr top1 top20 <<< "$(tune_score "$ckpt" "tune_$dir")"
    echo "   weight $weight: MRR@10 $mrr, top-1 $top1, top-20 $top20 on tune"
    if "$PYTHON" -c "import sys; sys.exit(not $mrr > $best_distilled_score)"; then
        best_distilled="$ckpt" best_distilled_score="$mrr" best_distilled_weight="$weight"
    fi
    if "$PYTHON" -c "import sys; sys.exit(not ($mrr, $top1) > ($best_score, $best_top1))"; then
        best_weight="$weight" best_score="$mrr" best_top1="$top1"
    fi
done
echo "   chosen on tune: weight $best_weight (0 = round 2 without the teacher);" \
     "evaluated: weight $best_distilled_weight ($best_distilled)"

echo "== 3. Dev and the held-out categories ($HOLDOUT) ($(stamp))"
for split in $SPLITS; do
    dir="eval_distill_$split"
    [ -f "$dir/results.json" ] || "$PYTHON" -m dpr.evaluate --ctx_file data/passages.tsv \
        --qa_file "data/qas_$split.tsv" --retrievers "bm25,dpr:round2,dpr:distilled" \
        --dpr_model "round2=$R2" --dpr_model "distilled=$best_distilled" \
        --pairs "dpr:distilled>dpr:round2" --batch_size 64 $AMP --output_dir "$dir" \
        --quiet > "$dir.log" 2>&1 || { tail -n 20 "$dir.log"; exit 1; }
    echo "   $split: round 2 $(score "$dir/results.json" dpr:round2) -> distilled" \
         "$(score "$dir/results.json" dpr:distilled) (MRR@10 top-1 top-20)"
done
echo "== done in ${SECONDS} s ($(stamp))"
