#!/usr/bin/env bash
# One prepared run on a GPU machine: the CUDA tests (NCCL process group, float16/bfloat16
# steps, dynamic padding and gradient caching against the full batch) and the training
# throughput benchmark. Results go to $OUT (or /tmp/gpu_out).
#   bash benchmarks/gpu_checks.sh
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
timeout 300 python3 -m pytest -m gpu tests/gpu -q -p no:cacheprovider 2>&1 \
  | tee "$OUT/gpu_tests.log" | tail -n 15
PIAF=${PIAF:-.carry/piaf-v1.0.json}
[ -f "$PIAF" ] || PIAF=../shared/data/piaf-v1.0.json
timeout 420 python3 benchmarks/train_throughput.py --device cuda --grad_cache 32 --piaf "$PIAF" \
  --out "$OUT/bench_gpu.json" 2>&1 | grep -v -i warn | tee "$OUT/bench_gpu.log"
# Step overheads (docs/PERFORMANCE.md): fused against default AdamW, and bfloat16 with length
# buckets and with compiled towers (compilation falls in the warm-up steps).
timeout 60 python3 benchmarks/adamw_fused.py --device cuda --layers 12 --hidden 768 2>&1 \
  | tee "$OUT/adamw_fused_gpu.log"
timeout 300 python3 benchmarks/train_throughput.py --device cuda --piaf "$PIAF" --pad_multiple 64 \
  --modes dynamic_bf16,dynamic_buckets_bf16,compiled_bf16 --warmup 5 --steps 10 \
  --out "$OUT/bench_gpu_overheads.json" 2>&1 | grep -v -i warn | tee "$OUT/bench_gpu_overheads.log"
