#!/usr/bin/env bash
# configs/accelerate/fsdp.yaml for real on this machine's GPUs (bench/gpu.sh runs it): the demo's synthetic scenes
# and tiny models, trained with FSDP2 under bf16, a checkpoint saved mid-run and resumed after the process is killed,
# then the saved folder captioned through the pipeline. Needs a GPU: on the CPU accelerate falls back to DDP.
#   bash scripts/fsdp_check.sh [WORK_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"
work="${1:-$(mktemp -d)}"
gpus=$(nvidia-smi -L | wc -l)
"$PYTHON" -m vitgpt2.cli make-synthetic --kind scenes --output_dir "$work/data" --num_train 400 --num_val 40
"$PYTHON" -m vitgpt2.cli make-tiny-models --coco_dir "$work/data" --output_dir "$work/models"
train=("$PYTHON" -m accelerate.commands.launch --config_file configs/accelerate/fsdp.yaml --num_processes "$gpus"
  run_captioning.py configs/demo.yaml --coco_dir "$work/data" --output_dir "$work/fsdp"
  --encoder_model_name_or_path "$work/models/encoder" --decoder_model_name_or_path "$work/models/decoder"
  --max_steps 80 --save_strategy steps --save_steps 40 --eval_strategy no --metrics bleu,cider --logging_steps 10)
# Killed once its first checkpoint is complete, then the same command resumes from it.
"${train[@]}" > "$work/killed.log" 2>&1 &
until [ -f "$work/fsdp/checkpoint-40/trainer_state.json" ]; do
  kill -0 $! 2>/dev/null || { tail -40 "$work/killed.log"; echo "FSDP run ended before its checkpoint"; exit 1; }
  sleep 1
done
pkill -9 -f "output_dir $work/fsdp" || true
wait || true
"${train[@]}" 2>&1 | tee "$work/resumed.log" | grep -E "Parallelism|Resuming|eval_bleu|eval_cider|train_loss|Error" || true
grep -q "Parallelism: FSDP" "$work/resumed.log" || { echo "FAILED: the run did not shard with FSDP"; exit 1; }
grep -q "Resuming training from" "$work/resumed.log" || { echo "FAILED: no resume"; exit 1; }
"$PYTHON" - "$work/fsdp" "$work/data/val2017" <<'PY'
import glob, sys
from transformers import pipeline
folder, images = sys.argv[1], sorted(glob.glob(sys.argv[2] + "/*.jpg"))[:4]
captioner = pipeline("image-to-text", model=folder, trust_remote_code=True, device=0)
for image, out in zip(images, captioner(images)):
    print("caption", image.rsplit("/", 1)[-1], "->", out[0]["generated_text"])
PY
echo "FSDP check passed"
