"""`accelerate launch --num_processes 2` (gloo on CPU): training runs, and the gathered evaluation holds
every validation image exactly once with the same metrics as a 1-process evaluation."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _launch(processes: int, args: list[str]) -> str:
    """Runs run_captioning.py under `accelerate launch` on the CPU; returns what it printed.

    `--multi_gpu` with the script's `--use_cpu` is what starts several CPU processes (gloo): accelerate's own `--cpu`
    runs one process, whatever --num_processes says."""
    command = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--num_processes", str(processes), "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "--multi_gpu" if processes > 1 else "--cpu",
        os.path.join(ROOT, "run_captioning.py"), *args, "--report_to", "none", "--use_cpu",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    printed = done.stdout + done.stderr
    assert "outlives training" not in printed, "a DDP reducer would free the process group (see end_process_group)"
    return printed


@pytest.mark.slow
def test_two_process_training_and_evaluation_match_one_process(synthetic_coco, tiny_models, tmp_path):
    encoder, decoder = tiny_models
    trained = str(tmp_path / "trained")
    common = ["--coco_dir", synthetic_coco, "--per_device_eval_batch_size", "5", "--metrics", "bleu,rouge,cider"]
    printed = _launch(
        2,
        [
            "--encoder_model_name_or_path", encoder, "--decoder_model_name_or_path", decoder,
            "--output_dir", trained, "--do_train", "--num_train_epochs", "8", "--learning_rate", "2e-3",
            "--per_device_train_batch_size", "4", "--captions_per_image", "5", "--save_strategy", "no",
            "--ddp_find_unused_parameters", "false", *common,  # every parameter gets a gradient
        ],
    )  # fmt: skip
    assert "Parallelism: DDP over 2 processes" in printed
    results = {}
    for processes in (1, 2):
        output = str(tmp_path / f"eval{processes}")
        _launch(processes, ["--model_name_or_path", trained, "--output_dir", output, "--do_eval", *common])
        with open(os.path.join(output, "eval_results.json")) as f:
            metrics = json.load(f)
        with open(os.path.join(output, "eval_predictions.jsonl")) as f:
            records = [json.loads(line) for line in f]
        results[processes] = metrics, records
    (one, one_records), (two, two_records) = results[1], results[2]
    # 12 images over 2 processes in batches of 5: the last batch is padded, and the padding must not count
    assert sorted(r["image_id"] for r in two_records) == sorted(r["image_id"] for r in one_records)
    assert len(two_records) == len({r["image_id"] for r in two_records}) == 12
    by_id = {r["image_id"]: r["prediction"] for r in one_records}
    assert all(by_id[r["image_id"]] == r["prediction"] for r in two_records)
    assert any(r["prediction"] for r in one_records), "the trained model should write something"
    for key in ("eval_bleu", "eval_rouge1", "eval_rougeL", "eval_cider", "eval_gen_len", "eval_samples"):
        assert two[key] == pytest.approx(one[key], abs=1e-6), key
    assert two["eval_loss"] == pytest.approx(one["eval_loss"], rel=1e-4)


@pytest.mark.slow
def test_two_process_scst(ce_captioner, synthetic_coco, tmp_path):
    """Self-critical training under DDP: each process samples for its own images, gradients meet in one backward."""
    output = tmp_path / "scst"
    printed = _launch(
        2,
        [
            "--model_name_or_path", ce_captioner, "--scst", "--coco_dir", synthetic_coco, "--output_dir", str(output),
            "--do_train", "--max_steps", "6", "--per_device_train_batch_size", "4", "--learning_rate", "3e-4",
            "--logging_steps", "3", "--save_strategy", "no", "--max_target_length", "12",
            "--ddp_find_unused_parameters", "false",
        ],
    )  # fmt: skip
    assert "Parallelism: DDP over 2 processes" in printed
    with open(output / "trainer_state.json") as f:
        logs = [entry for entry in json.load(f)["log_history"] if "reward" in entry]
    assert len(logs) == 2 and all(entry["sample_length"] > 0 for entry in logs)
    before, after = load_file(os.path.join(ce_captioner, "model.safetensors")), load_file(output / "model.safetensors")
    assert any(not torch.equal(before[key], after[key]) for key in before)


@pytest.mark.slow
def test_two_process_lora_on_cached_frozen_features(synthetic_coco, tiny_models, tmp_path):
    """A frozen encoder's features, computed by the main process while the other waits and then reads the same
    cache, and LoRA adapters on the decoder, under DDP without find_unused_parameters."""
    encoder, decoder = tiny_models
    output = tmp_path / "lora"
    data = shutil.copytree(synthetic_coco, tmp_path / "data")  # a pixel cache, and features, of its own
    printed = _launch(
        2,
        [
            "--encoder_model_name_or_path", encoder, "--decoder_model_name_or_path", decoder,
            "--coco_dir", str(data), "--output_dir", str(output), "--do_train", "--max_steps", "6",
            "--per_device_train_batch_size", "4", "--captions_per_image", "5", "--learning_rate", "1e-3",
            "--save_strategy", "no", "--freeze_encoder", "--lora_r", "4", "--ddp_find_unused_parameters", "false",
            "--log_level", "info", "--log_level_replica", "info",
        ],
    )  # fmt: skip
    assert "Parallelism: DDP over 2 processes" in printed
    computed = printed.count("Encoder features: 40 images")
    loaded = printed.count("Encoder features: loading the cache")
    assert (computed, loaded) == (1, 1), printed[-3000:]
    saved = load_file(output / "model.safetensors")
    assert not any("lora_" in key for key in saved)


def test_main_ends_the_process_group_it_ran_in(monkeypatch, train_argv, tmp_path):
    import torch.distributed as dist

    import run_captioning

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    run_captioning.end_process_group()
    assert not dist.is_initialized()

    ended = []
    monkeypatch.setattr(run_captioning, "end_process_group", lambda trainer: ended.append(trainer.model_wrapped))
    argv = [*train_argv(tmp_path / "out"), "--max_steps", "1", "--max_train_samples", "4", "--save_strategy", "no"]
    monkeypatch.setattr(sys, "argv", ["run_captioning.py", *argv])
    run_captioning.main()
    assert len(ended) == 1 and ended[0] is not None


def test_the_ddp_wrapper_is_gone_before_the_group_ends(tmp_path, caplog):
    """The trainer's DDP wrapper, whose reducer holds the process group, is released before the group is destroyed."""
    import weakref
    from types import SimpleNamespace

    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from vitgpt2.parallelism import end_process_group

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    model = torch.nn.Linear(2, 2)
    prepared = [DistributedDataParallel(model)]  # what the accelerator keeps
    trainer = SimpleNamespace(model=model, model_wrapped=prepared[0], accelerator=SimpleNamespace())
    trainer.accelerator.free_memory = prepared.clear
    wrapper = weakref.ref(prepared[0])
    with caplog.at_level("WARNING", logger="vitgpt2.parallelism"):
        end_process_group(trainer)
    assert wrapper() is None and trainer.model_wrapped is model and not dist.is_initialized()
    assert "outlives training" not in caplog.text


def _trainer(processes: int, distributed_type, fsdp: bool = False, deepspeed: bool = False):
    """What `vitgpt2.parallelism` reads of a Trainer."""
    from types import SimpleNamespace

    state = SimpleNamespace(num_processes=processes, distributed_type=distributed_type)
    args = SimpleNamespace(fsdp=[], deepspeed=None)
    return SimpleNamespace(
        accelerator=SimpleNamespace(state=state), args=args, is_fsdp_enabled=fsdp, is_deepspeed_enabled=deepspeed
    )


def test_the_log_names_the_parallelism_that_runs_and_a_silent_fallback(monkeypatch):
    """On the CPU, `accelerate launch --config_file configs/accelerate/fsdp.yaml` sets ACCELERATE_USE_FSDP but runs
    plain multi-process training (state MULTI_CPU, FSDP off): the run must say so."""
    from accelerate.utils import DistributedType

    from vitgpt2.parallelism import describe, fallback_warning

    assert describe(_trainer(1, DistributedType.NO)) == "one process"
    assert describe(_trainer(2, DistributedType.MULTI_CPU)) == "DDP over 2 processes (MULTI_CPU)"
    monkeypatch.delenv("ACCELERATE_USE_FSDP", raising=False)
    assert fallback_warning(_trainer(2, DistributedType.MULTI_CPU)) is None
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    warning = fallback_warning(_trainer(2, DistributedType.MULTI_CPU))
    assert (
        warning.startswith("FSDP was asked for, but accelerate runs DDP over 2 processes")
        and "nothing is sharded" in warning
    )


@pytest.mark.parametrize(
    "plugin, said",
    [
        ({"fsdp_version": 2}, "FSDP2 (FULL_SHARD, parameters resharded after forward) over 8 processes"),
        ({"fsdp_version": 2, "reshard_after_forward": "false"}, "FSDP2 (SHARD_GRAD_OP) over 8 processes"),
        ({"fsdp_version": 1}, "FSDP1 (FULL_SHARD) over 8 processes"),
        ({"fsdp_version": 2, "processes": 1}, "FSDP2 (FULL_SHARD, parameters resharded after forward) over 1 process"),
        ({"fsdp_version": 1, "reshard_after_forward": "HYBRID_SHARD"}, "FSDP1 (FULL_SHARD) over 8 processes"),
        ({"fsdp_version": 1, "sharding_strategy": "SHARD_GRAD_OP"}, "FSDP1 (SHARD_GRAD_OP) over 8 processes"),
    ],
)
def test_the_log_names_fsdps_sharding_as_accelerates_plugin_holds_it(plugin, said):
    """accelerate's own plugin, as `configs/accelerate/fsdp.yaml`'s keys build it; FSDP1 wraps with
    `sharding_strategy or reshard_after_forward`, which is what the log must name."""
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    from vitgpt2.parallelism import describe

    plugin = dict(plugin)  # parametrize shares its values between runs
    processes = plugin.pop("processes", 8)
    trainer = _trainer(processes, DistributedType.FSDP, fsdp=True)
    trainer.accelerator.state.fsdp_plugin = FullyShardedDataParallelPlugin(**plugin)
    assert describe(trainer) == said
