"""Only complete checkpoints are resumed from, and resuming restores every weight."""

import copy
import json
import logging
import re
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

import run_captioning
from vitgpt2.arguments import CaptioningTrainingArguments
from vitgpt2.checkpoints import is_complete, last_complete_checkpoint, load_model_weights
from vitgpt2.model import load_captioner, pad_vocabulary
from vitgpt2.trainer import CaptioningTrainer

STATE = json.dumps({"global_step": 1, "log_history": []})


def _checkpoint(output, step: int, state: str | None = STATE, weights: str | None = "model.safetensors") -> str:
    """A `checkpoint-<step>` folder with the given trainer_state.json text and weights file (None: absent)."""
    folder = output / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    if state is not None:
        (folder / "trainer_state.json").write_bytes(state.encode("utf-8", "surrogateescape"))
    if weights == "model.safetensors":
        save_file({"weight": torch.zeros(2)}, str(folder / weights))  # readable: a header and its data
    elif weights is not None:
        (folder / weights).touch()
    return str(folder)


def test_the_highest_complete_step_wins_numerically(tmp_path):
    for step in (9, 20, 100):
        _checkpoint(tmp_path, step)
    assert last_complete_checkpoint(str(tmp_path)).endswith("checkpoint-100")


HALF_WRITTEN = {
    "weights-no-state": {"state": None},
    "state-cut-short": {"state": STATE[:12]},
    "state-empty": {"state": ""},
    "state-not-a-trainer-state": {"state": "{}"},
    "state-null": {"state": "null"},
    "state-not-utf8": {"state": '{"global_step": 1, "x": "\udcff"}'},  # a lone 0xff byte
    "state-but-no-weights": {"weights": None},
    "empty-folder": {"state": None, "weights": None},
}


@pytest.mark.parametrize("kind", HALF_WRITTEN)
def test_a_half_written_checkpoint_is_never_picked(kind, tmp_path, caplog):
    complete = _checkpoint(tmp_path, 10)
    half = _checkpoint(tmp_path, 20, **HALF_WRITTEN[kind])
    assert not is_complete(half)
    assert last_complete_checkpoint(str(tmp_path)) == complete
    assert f"ignoring incomplete checkpoint {half}" in caplog.text


def test_only_half_written_checkpoints_means_starting_afresh(tmp_path):
    _checkpoint(tmp_path, 10, state=None)
    assert last_complete_checkpoint(str(tmp_path)) is None
    assert last_complete_checkpoint(str(tmp_path / "not-there")) is None


def test_other_names_and_files_are_not_checkpoints(tmp_path):
    _checkpoint(tmp_path, 5)
    (tmp_path / "checkpoint-50").write_text("a file, not a folder")
    for name in ("checkpoint-final", "checkpoint-70.tmp", "old-checkpoint-90"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "trainer_state.json").write_text(STATE)
        (tmp_path / name / "model.safetensors").touch()
    assert last_complete_checkpoint(str(tmp_path)).endswith("checkpoint-5")


@pytest.mark.parametrize("weights", ["model.safetensors.index.json", "pytorch_model.bin", "pytorch_model_fsdp_0"])
def test_sharded_legacy_and_fsdp_weights_count(weights, tmp_path):
    folder = _checkpoint(tmp_path, 3, weights=None)
    if weights.endswith("_0"):  # FSDP SHARDED_STATE_DICT: a folder of shards
        (tmp_path / "checkpoint-3" / weights).mkdir()
    else:
        (tmp_path / "checkpoint-3" / weights).touch()
    assert is_complete(folder)


def test_run_captioning_ignores_a_half_written_checkpoint(monkeypatch, synthetic_coco, tiny_models, tmp_path):
    encoder, decoder = tiny_models
    output = tmp_path / "out"
    _checkpoint(output, 4, state='{"global_step": 4, "log_hi')  # killed while writing its state
    argv = [
        "--encoder_model_name_or_path", encoder, "--decoder_model_name_or_path", decoder,
        "--coco_dir", synthetic_coco, "--output_dir", str(output), "--do_train", "--max_steps", "2",
        "--max_train_samples", "8", "--per_device_train_batch_size", "4", "--metrics", "bleu",
        "--report_to", "none", "--save_strategy", "no",
    ]  # fmt: skip
    monkeypatch.setattr(sys, "argv", ["run_captioning.py", *argv])
    results = run_captioning.main()  # resuming from the broken folder would fail on its weights and state
    assert results["train_samples"] == 8 and (output / "model.safetensors").is_file()


@pytest.fixture
def saved_captioner(tiny_models, tmp_path):
    """(model, folder): a captioner and the folder it was saved to, then the model's weights scrambled."""
    encoder, decoder = tiny_models
    model = load_captioner(encoder=encoder, decoder=decoder)
    folder = tmp_path / "saved"
    model.save_pretrained(folder)
    expected = {key: value.clone() for key, value in model.state_dict().items()}
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(1.0)
    return model, str(folder), expected


def _differing(model, expected: dict) -> list[str]:
    return [key for key, value in model.state_dict().items() if not torch.equal(value, expected[key])]


def test_load_model_weights_restores_every_parameter(saved_captioner):
    model, folder, expected = saved_captioner
    load_model_weights(model, folder)
    assert not _differing(model, expected)


def test_load_model_weights_refuses_a_checkpoint_that_lacks_weights(saved_captioner):
    model, folder, _ = saved_captioner
    weights = load_file(f"{folder}/model.safetensors")
    dropped = next(key for key in weights if key.startswith("decoder.") and "crossattention" in key)
    save_file({key: value for key, value in weights.items() if key != dropped}, f"{folder}/model.safetensors")
    with pytest.raises(ValueError, match=r"does not match the model being trained: \{'missing_keys'"):
        load_model_weights(model, folder)


def test_load_model_weights_names_a_vocabulary_padded_differently(saved_captioner):
    model, folder, _ = saved_captioner
    vocabulary = model.config.decoder.vocab_size
    padded = copy.deepcopy(model)
    assert pad_vocabulary(padded, vocabulary, vocabulary + 1) == vocabulary + 1  # one more row than was saved
    with pytest.raises(ValueError, match=r"decoder.lm_head.weight.*resume with the --pad_vocab_to_multiple_of"):
        load_model_weights(padded, folder)


def test_trainer_resume_restores_every_parameter(saved_captioner, tmp_path):
    """transformers 5's own resume skips the ViT weights saved under legacy names (huggingface/transformers#43701);
    CaptioningTrainer loads through from_pretrained instead."""
    model, folder, expected = saved_captioner
    args = CaptioningTrainingArguments(output_dir=str(tmp_path / "out"), report_to="none")
    CaptioningTrainer(model=model, args=args)._load_from_checkpoint(folder)
    assert not _differing(model, expected)


def test_load_best_model_at_end_restores_every_parameter_of_the_best_checkpoint(
    monkeypatch, synthetic_coco, tiny_models, tmp_path
):
    encoder, decoder = tiny_models
    output = tmp_path / "out"
    argv = [
        "--encoder_model_name_or_path", encoder, "--decoder_model_name_or_path", decoder,
        "--coco_dir", synthetic_coco, "--output_dir", str(output), "--do_train",
        "--num_train_epochs", "2", "--learning_rate", "1e-3", "--per_device_train_batch_size", "8",
        "--eval_strategy", "epoch", "--save_strategy", "epoch", "--load_best_model_at_end",
        # the HIGHEST eval loss is "best": the first epoch, so the best model is not simply the last one
        "--metric_for_best_model", "eval_loss", "--greater_is_better", "true",
        "--predict_with_generate", "false", "--report_to", "none",
    ]  # fmt: skip
    monkeypatch.setattr(sys, "argv", ["run_captioning.py", *argv])
    run_captioning.main()
    state = json.loads((output / "trainer_state.json").read_text())
    best = state["best_model_checkpoint"]
    assert best.endswith("checkpoint-25"), best  # 40 images x 5 captions / 8 pairs a step = 25 steps an epoch
    final, chosen = load_file(output / "model.safetensors"), load_file(f"{best}/model.safetensors")
    assert final.keys() == chosen.keys()
    assert [key for key in final if not torch.equal(final[key], chosen[key])] == []


@pytest.fixture
def run_saving_every_step(monkeypatch, train_argv, tmp_path):
    """(output folder, `run(*more_arguments)`): the same training command, a checkpoint every step, run again and
    again as a user would after an interruption."""
    output = tmp_path / "out"
    argv = [*train_argv(output), "--max_train_samples", "8", "--per_device_train_batch_size", "4"]
    argv += ["--save_strategy", "steps", "--save_steps", "1"]

    def run(*more: str) -> dict:
        monkeypatch.setattr(sys, "argv", ["run_captioning.py", *argv, *more])
        return run_captioning.main()

    return output, run


def test_a_resume_is_announced_at_the_default_log_level(run_saving_every_step, caplog):
    output, run = run_saving_every_step
    run("--max_steps", "1")
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        run("--max_steps", "2")
    assert f"Resuming training from {output / 'checkpoint-1'}" in caplog.text
    assert "Parallelism: one process" in caplog.text and "was asked for" not in caplog.text


def test_a_damaged_last_checkpoint_falls_back_to_the_one_before(run_saving_every_step, caplog):
    output, run = run_saving_every_step
    run("--max_steps", "2")
    weights = output / "checkpoint-2" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # a disk that filled up, a copy cut short
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        results = run("--max_steps", "3")
    assert f"ignoring damaged checkpoint {output / 'checkpoint-2'}: model.safetensors cannot be read" in caplog.text
    assert f"Resuming training from {output / 'checkpoint-1'}" in caplog.text
    assert results["train_samples"] == 8 and (output / "checkpoint-3").is_dir()

    from vitgpt2.checkpoints import DamagedCheckpoint

    weights = output / "checkpoint-3" / "model.safetensors"  # a damaged checkpoint named explicitly: a clear error
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(
        DamagedCheckpoint, match=r"checkpoint-3 is damaged: model.safetensors cannot be read.*--resume"
    ):
        run("--max_steps", "4", "--resume_from_checkpoint", str(weights.parent))


def test_a_full_disk_says_so_with_the_bytes_and_the_run_goes_on_afterwards(monkeypatch, run_saving_every_step, caplog):
    from types import SimpleNamespace

    from vitgpt2 import disk_space
    from vitgpt2.disk_space import DiskFull

    output, run = run_saving_every_step
    monkeypatch.setattr(disk_space.shutil, "disk_usage", lambda folder: SimpleNamespace(free=1_000_000))

    def full(*args, **kwargs):  # what torch.save raises when the disk fills up mid-file
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 1024 vs 960")

    monkeypatch.setattr(torch, "save", full)
    with (
        caplog.at_level(logging.WARNING),
        pytest.raises(
            DiskFull,
            match=r"no space left on the disk of .*1,000,000 bytes free, a checkpoint takes about [\d,]+\. Free space",
        ),
    ):
        run("--max_steps", "2", "--save_total_limit", "3")
    assert re.search(r"has 1,000,000 bytes free, and 3 checkpoints take about [\d,]+", caplog.text)  # warned first
    monkeypatch.undo()  # the disk has room again: the same command goes on
    assert run("--max_steps", "2", "--save_total_limit", "3")["train_samples"] == 8
    assert (output / "checkpoint-2" / "trainer_state.json").is_file()
