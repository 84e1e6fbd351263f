#!/usr/bin/env bash
# The GPU checks, each under its own hard stop so that a stuck compile cannot eat the machine's time:
#   training  training pairs/s and MFU of ViT-B/16 + distilgpt2 with bf16 autocast, SDPA and torch.compile, per pair
#             vs encode-once, then the DataLoader's images/s from the uint8 cache (bench/gpu_bench.py, ~2.5 min);
#   frozen    frozen-encoder training from cached features vs encode-once fine-tuning, pairs/s and MFU
#             (bench/bench_frozen.py);
#   scst      one SCST step's samples/s, eager vs compiled sampling and update (bench/bench_scst_step.py);
#   generate  greedy captions/s, default generate vs a static KV cache, compiled or not (bench/bench_generate.py);
#   fsdp      configs/accelerate/fsdp.yaml for real: trains, is killed, resumes, and the result captions (scripts/fsdp_check.sh);
#   loader    images/s of the streaming loader (WebDataset shards, decoded in 14 workers) against the uint8 cache,
#             copied to the GPU: whether streaming keeps compiled encode-once training fed (bench/bench_loader.py).
#
#   bash bench/gpu.sh                                   # all checks, with `python`; PYTHON=/path/to/python picks another
#   GPU_CHECKS="frozen scst" bash bench/gpu.sh          # some of them
#   bash bench/gpu.sh --no-compile --peak_tflops 756    # extra options go to "$PYTHON" bench/gpu_bench.py (H100 PCIe peak)
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # vitgpt2 from this checkout, installed or not
PYTHON="${PYTHON:-python}"
CHECKS="${GPU_CHECKS:-training frozen scst generate loader fsdp}"

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$PYTHON" -c "import torch, transformers; assert torch.cuda.is_available(), f'torch {torch.__version__} sees no CUDA device'; print('torch', torch.__version__, 'transformers', transformers.__version__)"

check() {  # check SECONDS COMMAND...: runs one check; a failed or stopped one is reported and the next goes on
  local limit=$1; shift
  echo "=== $* (stopped after ${limit} s)"
  timeout --signal=INT --kill-after=10 "$limit" "$@" || echo "=== FAILED ($?): $*"
}
cuda=(--device cuda --threads 0 --dtype bf16 --compile)
for name in $CHECKS; do
  case $name in
    training) check 280 "$PYTHON" bench/gpu_bench.py --device cuda "$@" ;;
    frozen) check 180 "$PYTHON" bench/bench_frozen.py "${cuda[@]}" --pairs 320 --steps 10 --warmup 3 ;;
    scst) check 150 "$PYTHON" bench/bench_scst_step.py "${cuda[@]}" --images 64 --steps 5 --warmup 3 ;;
    generate) check 120 "$PYTHON" bench/bench_generate.py "${cuda[@]}" --batch_size 64 --repeats 5 --warmup 3 ;;
    loader) check 240 "$PYTHON" bench/bench_loader.py --device cuda --threads 0 --images 4096 --num_workers 14 --batch_size 64 ;;
    fsdp) check 300 env PYTHON="$PYTHON" bash scripts/fsdp_check.sh ;;
    *) echo "unknown check $name (training, frozen, scst, generate, loader, fsdp)"; exit 2 ;;
  esac
done
