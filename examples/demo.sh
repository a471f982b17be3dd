#!/usr/bin/env bash
# The whole pipeline on the French sample shipped in examples/data, offline, in a few minutes:
#   1. a tiny CamemBERT (SentencePiece unigram tokenizer trained on the sample, random weights)
#   2. SQuAD-format sample -> DPR training/dev files with BM25 hard negatives
#   3. the blog's training command (2 processes, CPU) with sizes scaled down
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=demo_out
rm -rf "$OUT"
mkdir -p "$OUT"

echo "== 1. Tiny CamemBERT in $OUT/camembert-tiny"
python -m dpr.tiny --type camembert --corpus examples/data/fr_sample_squad.json \
    --out "$OUT/camembert-tiny"

echo "== 2. DPR training files with BM25 hard negatives in $OUT/data"
python -m data_prep.squad2dpr examples/data/fr_sample_squad.json --output_dir "$OUT/data" \
    --dev_ratio 0.25 --quiet

echo "== 3. The blog's command (hf_roberta, 2 processes, sizes scaled down)"
python -m torch.distributed.launch --nproc_per_node=2 train_dense_encoder.py \
    --max_grad_norm 2.0 --encoder_model_type hf_roberta --pretrained_file "$OUT/camembert-tiny" \
    --seed 12345 --sequence_length 256 --warmup_steps 4 --batch_size 4 --do_lower_case \
    --train_file "$OUT/data/DPR_FR_train.json" --dev_file "$OUT/data/DPR_FR_dev.json" \
    --output_dir "$OUT/output/" --learning_rate 5e-4 --num_train_epochs 8 --dev_batch_size 4 \
    --val_av_rank_start_epoch 6 --pretrained_model_cfg "$OUT/camembert-tiny/" \
    --log_batch_step 4 2> "$OUT/train.log" || { tail -n 40 "$OUT/train.log"; exit 1; }

echo "== Validation results (lower is better; log in $OUT/train.log)"
python examples/summarize_log.py "$OUT/output/training_log.jsonl"
