#!/usr/bin/env bash
# Prepared runs on a GPU machine, in two parts that each fit one 10-minute device call:
#   bash benchmarks/gpu_checks.sh a   # CUDA tests, then training throughput at the blog's shape
#   bash benchmarks/gpu_checks.sh b   # 128 questions per device, corpus encoding, fused AdamW
#   bash benchmarks/gpu_checks.sh     # both, one after the other (about 9 minutes)
# CUDA tests: NCCL process group, float16/bfloat16 steps, dynamic padding and gradient caching
# against the full batch, no device sync in the step's bookkeeping. Results go to $OUT (or
# /tmp/gpu_out).
# Wheels in .whl/ (transformers 4.57.6 and what it needs) are installed first when present;
# PIAF is read from $PIAF (default .carry/piaf-v1.0.json, else ../shared/data).
set -uo pipefail
OUT=${OUT:-/tmp/gpu_out}
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers',
transformers.__version__, torch.cuda.get_device_name())" | tee -a "$OUT/gpu.txt"
PART=${1:-ab}
PIAF=${PIAF:-.carry/piaf-v1.0.json}
[ -f "$PIAF" ] || PIAF=../shared/data/piaf-v1.0.json
bench() {  # name, timeout, command...: runs it, keeps its log without warnings
  local name=$1 limit=$2; shift 2
  timeout "$limit" "$@" 2>&1 | grep -v -i warn | tee "$OUT/$name.log"
}
if [[ $PART == *a* ]]; then
  timeout 150 python3 -m pytest -m gpu tests/gpu -q -p no:cacheprovider 2>&1 \
    | tee "$OUT/gpu_tests.log" | tail -n 15
  # Blog shape (16 questions + 32 passages, length 256); ratios against `original`.
  bench train_blog_shape 330 python3 benchmarks/train_throughput.py --device cuda \
    --piaf "$PIAF" --pad_multiple 64 --warmup 5 --steps 10 --grad_cache 32 \
    --modes original,dynamic,dynamic_bf16,dynamic_buckets_bf16,compiled_bf16 \
    --out "$OUT/train_blog_shape.json"
fi
if [[ $PART == *b* ]]; then
  # 128 questions per device (one 128-question pool per step): the efficiency target.
  bench train_128 200 python3 benchmarks/train_throughput.py --device cuda --piaf "$PIAF" \
    --questions 128 --pad_multiple 64 --warmup 3 --steps 5 \
    --modes dynamic_bf16,dynamic_buckets_bf16,compiled_bf16 --out "$OUT/train_128.json"
  bench encode 150 python3 benchmarks/encode_throughput.py --device cuda --piaf "$PIAF" \
    --out "$OUT/encode.json"
  bench adamw_fused 60 python3 benchmarks/adamw_fused.py --device cuda --layers 12 --hidden 768
fi
