"""Two machines on this one: `accelerate launch --num_machines 2 --num_processes 2` started twice (machine ranks 0 and
1, one process each, gloo over 127.0.0.1) through training, evaluation and saving, with each machine caching on its
own disk, or both machines in one shared cache folder."""

import glob
import json
import os
import re
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from vitgpt2.data.shared_cache import MARKER_PREFIX

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT_S = 240
CACHING = re.compile(r"INFO - datasets\.arrow_dataset - Caching processed dataset at \S*/cache-([0-9a-f]+)")
GENERATING = re.compile(r"INFO - datasets\.builder - Generating dataset generator")
FOUND = re.compile(r"INFO - datasets\.builder - Found cached dataset generator")
LOADING = re.compile(r"INFO - datasets\.arrow_dataset - Loading cached processed dataset at \S*/cache-([0-9a-f]+)")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _report(processes, logs) -> str:
    tails = [
        f"--- machine {rank} (exit {p.returncode}) ---\n{log[-4000:]}"
        for rank, (p, log) in enumerate(zip(processes, logs))
    ]
    return "\n".join(tails)


def _launch_machines(
    args: list[str], caches: list[str], outputs: list[str], homes: list[str], logs_dir, kill_tree
) -> list[str]:
    """Runs run_captioning.py as machine 0 and machine 1; returns what each printed. On a failure or a timeout both
    are killed (one waiting alone in a collective would wait for gloo's 30 minutes) and both logs are shown."""
    port, processes, log_files = _free_port(), [], []
    for rank in (0, 1):
        command = [
            sys.executable, "-m", "accelerate.commands.launch",
            "--num_machines", "2", "--machine_rank", str(rank), "--num_processes", "2",
            "--main_process_ip", "127.0.0.1", "--main_process_port", str(port),
            # --multi_gpu with the script's --use_cpu starts gloo processes (accelerate's --cpu starts one only)
            "--multi_gpu", "--mixed_precision", "no", "--dynamo_backend", "no",
            os.path.join(ROOT, "run_captioning.py"), *args,
            "--cache_dir", caches[rank], "--output_dir", outputs[rank], "--report_to", "none", "--use_cpu",
        ]  # fmt: skip
        env = {
            **os.environ,
            "OMP_NUM_THREADS": "1",
            "HF_HUB_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1",
            "HF_HOME": homes[rank],  # each machine's own home: only --cache_dir is shared, where it is
            "HF_DATASETS_CACHE": caches[rank],
        }
        log_files.append(open(logs_dir / f"machine{rank}.log", "w+"))
        processes.append(
            subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=log_files[-1], stderr=subprocess.STDOUT, start_new_session=True
            )
        )
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while any(p.poll() is None for p in processes) and time.monotonic() < deadline:
            if any(p.returncode not in (None, 0) for p in processes):
                break
            time.sleep(0.5)
    finally:
        for p in processes:
            if p.poll() is None:
                kill_tree(p)  # the launcher, torchrun's agent and the worker (in a session of its own)
    logs = []
    for f in log_files:
        f.seek(0)
        logs.append(f.read())
        f.close()
    assert [p.returncode for p in processes] == [0, 0], _report(processes, logs)
    assert not any("outlives training" in log for log in logs), "see vitgpt2.parallelism.end_process_group"
    return logs


def _pixel_caches(folder: str) -> list[str]:
    return sorted(glob.glob(os.path.join(folder, "**", "cache-*.arrow"), recursive=True))


def _fingerprints(paths: list[str]) -> list[str]:
    return sorted(re.fullmatch(r"cache-([0-9a-f]+)\.arrow", os.path.basename(path)).group(1) for path in paths)


def _check_pixel_cache(paths: list[str]) -> None:
    """The two splits' uint8 caches, whole: 16 training and 11 validation images."""
    from datasets import Dataset

    loaded = [Dataset.from_file(path) for path in paths]
    assert sorted(len(d) for d in loaded) == [11, 16]
    for dataset in loaded:
        assert dataset.features["pixel_values"].shape == (3, 32, 32)
        assert dataset.features["pixel_values"].dtype == "uint8"
        assert dataset.with_format("numpy")[-1]["pixel_values"].shape == (3, 32, 32)  # the last row is there


def _leftovers(folder: str) -> list[str]:
    """Unfinished writes (datasets' tmp files, encoder features' .partial) and markers left behind."""
    names = [name for _, _, files in os.walk(folder) for name in files]
    return [n for n in names if n.startswith(("tmp", MARKER_PREFIX)) or n.endswith((".partial", ".incomplete"))]


@pytest.mark.slow
@pytest.mark.parametrize("shared", [False, True], ids=["own_disks", "shared_folder"])
def test_two_machines_train_evaluate_and_save(shared, synthetic_coco, tiny_models, tmp_path, kill_tree):
    encoder, decoder = tiny_models
    machines = [tmp_path / f"machine{rank}" for rank in (0, 1)]
    caches = [str(tmp_path / "shared_cache")] * 2 if shared else [str(m / "cache") for m in machines]
    # Outputs on each machine's disk: what machine 1 would write there shows.
    outputs = [str(m / "out") for m in machines]
    args = [
        "--encoder_model_name_or_path", encoder, "--decoder_model_name_or_path", decoder, "--coco_dir", synthetic_coco,
        "--do_train", "--do_eval", "--max_train_samples", "16", "--max_eval_samples", "11", "--num_train_epochs", "1",
        "--per_device_train_batch_size", "4", "--per_device_eval_batch_size", "4", "--save_strategy", "epoch",
        "--metrics", "bleu", "--ddp_find_unused_parameters", "false", "--seed", "0",
        "--log_level", "info", "--log_level_replica", "info",
        "--freeze_encoder",  # and so a third cache: the encoder's features, beside the pixels
    ]  # fmt: skip
    logs = _launch_machines(args, caches, outputs, [str(m / "home") for m in machines], tmp_path, kill_tree)

    # One process group of two: 16 images x 5 captions = 80 pairs, 8 a step over both machines (each alone: 20 steps).
    for log in logs:
        assert "Parallelism: DDP over 2 processes (MULTI_CPU)" in log
    with open(os.path.join(outputs[0], "trainer_state.json")) as f:
        assert json.load(f)["global_step"] == 10
    assert (
        "Num examples = 80" in logs[0]
        and "Total train batch size (w. parallel, distributed & accumulation) = 8" in logs[0]
    )

    # Evaluation: 11 images over 2 processes (6 + 5, the shorter padded with a repeat), each scored once.
    with open(os.path.join(outputs[0], "eval_predictions.jsonl")) as f:
        ids = [str(json.loads(line)["image_id"]) for line in f]
    with open(os.path.join(synthetic_coco, "annotations", "captions_val2017.json")) as f:
        val_ids = [str(image["id"]) for image in json.load(f)["images"]][:11]
    assert sorted(ids) == sorted(val_ids)
    with open(os.path.join(outputs[0], "eval_results.json")) as f:
        assert json.load(f)["eval_samples"] == 11

    # Saving: machine 0's main process alone writes the model; machine 1 keeps only its RNG state for resuming.
    assert f"Saving model checkpoint to {outputs[0]}\n" in logs[0]
    assert "Saving model checkpoint" not in logs[1]
    written = sorted(os.path.relpath(p, outputs[1]) for p in glob.glob(os.path.join(outputs[1], "**"), recursive=True))
    assert written == [".", "checkpoint-10", "checkpoint-10/rng_state_1.pth"]
    from transformers import VisionEncoderDecoderModel

    model = VisionEncoderDecoderModel.from_pretrained(outputs[0])
    generated = model.generate(pixel_values=torch.rand(2, 3, 32, 32))
    assert generated.shape[0] == 2 and generated.shape[1] > 1

    # The datasets cache: who wrote which Arrow file, and what it holds.
    written_by = [CACHING.findall(log) for log in logs]
    loaded_by = [LOADING.findall(log) for log in logs]
    if shared:
        files = _pixel_caches(caches[0])
        assert len(files) == 2, files
        # One writer (machine 0's main process), for both splits; the other waited, then read its files.
        assert sorted(written_by[0]) == _fingerprints(files) and written_by[1] == [], written_by
        assert sorted(loaded_by[1]) == _fingerprints(files), loaded_by
        assert "shared with the main process; this process waits, then reads it" in logs[1]
        assert [log.count("Encoder features: 16 images") for log in logs] == [1, 0]
        assert logs[1].count("Encoder features: loading the cache") == 1
        # the source tables too: generated once, found by the other
        assert [len(GENERATING.findall(log)) for log in logs] == [2, 0] and len(FOUND.findall(logs[1])) == 2
    else:
        files = [_pixel_caches(cache) for cache in caches]
        # Each machine built its own, and the same one (the same fingerprints).
        assert _fingerprints(files[0]) == _fingerprints(files[1]) and len(files[0]) == 2, files
        assert [sorted(w) for w in written_by] == [_fingerprints(f) for f in files], written_by
        assert "this machine's own; this process writes it" in logs[1]
        assert [log.count("Encoder features: 16 images") for log in logs] == [1, 1]
    features = [
        sorted(glob.glob(os.path.join(cache, "**", "encoder_features", "*"), recursive=True)) for cache in caches
    ]
    assert len(features[0]) == 1 and [os.path.basename(p) for p in features[1]] == [os.path.basename(features[0][0])]
    for cache, paths, (feature,) in zip(caches, [files] * 2 if shared else files, features):
        _check_pixel_cache(paths)
        assert np.load(feature, mmap_mode="r").shape[:2] == (16, 17)  # 16 images, (32 / 8)^2 + 1 tokens
        assert _leftovers(cache) == []
