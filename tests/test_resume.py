"""A run killed with SIGKILL resumes, on the same command, from its last complete checkpoint and ends with
the same weights as a run that was never interrupted."""

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from vitgpt2.checkpoints import last_complete_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAVE_STEPS = 10


def _command(synthetic_coco, tiny_models, output, scst_from: str | None = None, lora: bool = False) -> list[str]:
    """The training command; with `scst_from`, self-critical training continued from that captioner; with `lora`,
    LoRA adapters on the decoder (the encoder frozen, its features cached)."""
    encoder, decoder = tiny_models
    model = ["--encoder_model_name_or_path", encoder, "--decoder_model_name_or_path", decoder]
    if lora:
        model += ["--lora_r", "4", "--freeze_encoder"]
    if scst_from is not None:
        model = ["--model_name_or_path", scst_from, "--scst", "--scst_num_samples", "3", "--max_target_length", "12"]
    return [
        sys.executable, os.path.join(ROOT, "run_captioning.py"), *model,
        "--coco_dir", synthetic_coco, "--output_dir", str(output), "--do_train",
        # 25 steps an epoch: checkpoints fall mid-epoch, so resuming must skip the batches already seen
        "--num_train_epochs", "4", "--per_device_train_batch_size", "8", "--learning_rate", "1e-3",
        "--save_strategy", "steps", "--save_steps", str(SAVE_STEPS), "--logging_steps", "5",
        "--seed", "3", "--metrics", "bleu", "--report_to", "none", "--log_level", "info",
    ]  # fmt: skip


def _start(command: list[str], log_path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    with open(log_path, "w") as log:
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def _finish(command: list[str], log_path) -> str:
    process = _start(command, log_path)
    assert process.wait(timeout=600) == 0, open(log_path).read()[-4000:]
    return open(log_path).read()


def _kill_after_first_checkpoint(command: list[str], output, log_path) -> None:
    process = _start(command, log_path)
    deadline = time.monotonic() + 600
    while last_complete_checkpoint(str(output)) is None:
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"no checkpoint before the run ended: {open(log_path).read()[-4000:]}")
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    assert process.wait(timeout=60) == -signal.SIGKILL


def _half_write_next_checkpoint(output, resume_from: str) -> None:
    """The folder a kill during the next save leaves: weights written, trainer_state.json cut short."""
    step = int(resume_from.rsplit("-", 1)[1]) + SAVE_STEPS
    half = output / f"checkpoint-{step}"
    half.mkdir(exist_ok=True)
    shutil.copy(os.path.join(resume_from, "model.safetensors"), half)
    (half / "trainer_state.json").write_text('{"global_step": ')


@pytest.mark.slow
@pytest.mark.parametrize("training", ["cross-entropy", "scst", "lora"])
def test_killed_run_resumes_from_last_complete_checkpoint_to_the_same_weights(
    synthetic_coco, tiny_models, ce_captioner, tmp_path, training
):
    """Self-critical training too: its samples come from the RNG state the checkpoint restores. LoRA too: its
    checkpoints hold the adapters, and the end merges them."""
    scst_from = ce_captioner if training == "scst" else None
    lora = training == "lora"
    interrupted, reference = tmp_path / "interrupted", tmp_path / "reference"
    command = _command(synthetic_coco, tiny_models, interrupted, scst_from, lora)

    _kill_after_first_checkpoint(command, interrupted, tmp_path / "killed.log")
    assert not (interrupted / "model.safetensors").exists(), "the run was killed before its end"
    resume_from = last_complete_checkpoint(str(interrupted))
    _half_write_next_checkpoint(interrupted, resume_from)

    log = _finish(command, tmp_path / "resumed.log")  # the very same command
    assert f"Resuming training from {resume_from}" in log
    _finish(_command(synthetic_coco, tiny_models, reference, scst_from, lora), tmp_path / "reference.log")

    resumed, uninterrupted = load_file(interrupted / "model.safetensors"), load_file(reference / "model.safetensors")
    assert resumed.keys() == uninterrupted.keys()
    assert lora == any("lora_" in key for key in load_file(os.path.join(resume_from, "model.safetensors")))
    assert not any("lora_" in key for key in resumed)  # merged
    # Bit-for-bit on CPU: weights, optimizer, scheduler and RNG states are restored exactly, and the
    # Trainer's seedable sampler redraws the same epoch order and skips the batches already trained on.
    different = [key for key in resumed if not torch.equal(resumed[key], uninterrupted[key])]
    assert not different, different
