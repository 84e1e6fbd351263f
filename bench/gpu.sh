#!/usr/bin/env bash
# One short GPU check (2.5 min on one H200, 2026-11-27): training pairs/s and MFU of ViT-B/16 + distilgpt2 with bf16
# autocast, SDPA and torch.compile, per pair vs encode-once; then the DataLoader's images/s from the uint8 cache.
#
#   bash bench/gpu.sh                                   # uses `python`; PYTHON=/path/to/python to pick another
#   bash bench/gpu.sh --no-compile --peak_tflops 756    # extra options go to bench/gpu_bench.py (H100 PCIe peak)
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # vitgpt2 from this checkout, installed or not
PYTHON="${PYTHON:-python}"

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$PYTHON" -c "import torch; assert torch.cuda.is_available(), f'torch {torch.__version__} sees no CUDA device'"
# A hard stop well inside five minutes, so a stuck compile cannot eat the machine's time.
timeout --signal=INT --kill-after=10 280 "$PYTHON" bench/gpu_bench.py --device cuda "$@"
