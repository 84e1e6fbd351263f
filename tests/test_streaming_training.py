"""run_captioning.py trains from WebDataset shards written by another tool (img2dataset's layout), evaluates on a
cached split, and after kill -9 the same command ends with the weights of an uninterrupted run: in one process with
2 DataLoader workers, and in 2 processes x 2 workers."""

import json
import os
import subprocess
import sys
import time

import pytest
from safetensors.torch import load_file

from vitgpt2.checkpoints import last_complete_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _command(tiny_models, coco_shards, synthetic_coco, output, processes: int) -> list[str]:
    encoder, decoder = tiny_models
    launcher = [sys.executable]
    if processes > 1:  # see test_multiprocess.py: --multi_gpu with the script's --use_cpu starts CPU processes
        launcher += ["-m", "accelerate.commands.launch", "--num_processes", str(processes), "--num_machines", "1",
                     "--mixed_precision", "no", "--dynamo_backend", "no", "--multi_gpu"]  # fmt: skip
    return [
        *launcher, os.path.join(ROOT, "run_captioning.py"),
        "--encoder_model_name_or_path", encoder, "--decoder_model_name_or_path", decoder,
        "--webdataset", coco_shards, "--coco_dir", synthetic_coco, "--output_dir", str(output),
        # 40 images over 2 workers (x processes) in batches of 3: checkpoints fall mid-epoch, and the run goes on
        # into the second epoch of every worker's stream
        "--do_train", "--do_eval", "--max_steps", "10", "--per_device_train_batch_size", "3",
        "--captions_per_image", "5", "--dataloader_num_workers", "2", "--shuffle_buffer_size", "4",
        "--save_strategy", "steps", "--save_steps", "4", "--learning_rate", "1e-3", "--seed", "3",
        "--metrics", "bleu", "--report_to", "none", "--logging_steps", "2", "--use_cpu",
    ]  # fmt: skip


def _start(command: list[str], log_path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    with open(log_path, "w") as log:
        return subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )


def _finish(command: list[str], log_path, kill_tree) -> str:
    process = _start(command, log_path)
    try:
        returncode = process.wait(timeout=600)
    except subprocess.TimeoutExpired:
        kill_tree(process)  # no rank left behind to hold on to its port
        raise
    printed = open(log_path).read()
    assert returncode == 0, printed[-4000:]
    assert "outlives training" not in printed, "see vitgpt2.parallelism.end_process_group"
    return printed


def _kill_after_first_checkpoint(command, output, log_path, kill_tree) -> None:
    process = _start(command, log_path)
    deadline = time.monotonic() + 600
    while last_complete_checkpoint(str(output)) is None:
        if process.poll() is not None or time.monotonic() > deadline:
            kill_tree(process)
            pytest.fail(f"no checkpoint before the run ended: {open(log_path).read()[-4000:]}")
        time.sleep(0.02)
    kill_tree(process)  # the launcher, every rank and every DataLoader worker


@pytest.mark.slow
@pytest.mark.parametrize("processes", [1, 2])
def test_streamed_training_resumes_after_kill_9_to_the_same_weights(
    tiny_models, coco_shards, synthetic_coco, tmp_path, processes, kill_tree
):
    uninterrupted, resumed = tmp_path / "uninterrupted", tmp_path / "resumed"
    printed = _finish(
        _command(tiny_models, coco_shards, synthetic_coco, uninterrupted, processes), tmp_path / "a.log", kill_tree
    )
    assert ("DDP over 2 processes" if processes > 1 else "Parallelism: one process") in printed

    command = _command(tiny_models, coco_shards, synthetic_coco, resumed, processes)
    _kill_after_first_checkpoint(command, resumed, tmp_path / "killed.log", kill_tree)
    checkpoint = last_complete_checkpoint(str(resumed))
    assert checkpoint.endswith("checkpoint-4") and not os.path.exists(resumed / "model.safetensors")
    for rank in range(processes):
        with open(os.path.join(checkpoint, f"stream_state-{rank}.json")) as f:
            state = json.load(f)
        assert state["batches"] == 4 and set(state["positions"]) == {"0", "1"}
    assert "***** train metrics *****" not in open(tmp_path / "killed.log").read(), "the kill did not stop training"
    printed = _finish(command, tmp_path / "resumed.log", kill_tree)
    assert "Resuming training from" in printed

    expected, got = load_file(uninterrupted / "model.safetensors"), load_file(resumed / "model.safetensors")
    initial = load_file(os.path.join(checkpoint, "model.safetensors"))
    assert any((expected[key] != initial[key]).any() for key in expected), (
        "training after the checkpoint moved nothing"
    )
    different = [key for key in expected if not (expected[key] == got[key]).all()]
    assert not different, different[:5]

    with open(uninterrupted / "all_results.json") as f:
        results = json.load(f)
    assert results["eval_samples"] == 12 and "train_samples" not in results  # evaluation: the cached split
    assert results["train_images_left_out"] == 0
    with open(uninterrupted / "README.md") as f:
        assert "WebDataset shards" in f.read()


def test_streamed_training_refuses_what_it_cannot_do(tiny_models, coco_shards, synthetic_coco, tmp_path):
    base = _command(tiny_models, coco_shards, synthetic_coco, tmp_path / "out", 1)
    without_steps = base[: base.index("--max_steps")] + base[base.index("--max_steps") + 2 :]
    done = subprocess.run(without_steps, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and "give --max_steps" in done.stderr and "Traceback" not in done.stderr
    done = subprocess.run([*base, "--max_train_samples", "8"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and "a stream trains for --max_steps" in done.stderr
    no_eval_source = [arg for arg in base if arg not in ("--coco_dir", synthetic_coco)]
    done = subprocess.run(no_eval_source, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and "evaluation reads a cached split" in done.stderr
