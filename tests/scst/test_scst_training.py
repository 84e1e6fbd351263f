"""`run_captioning.py --scst`: self-critical training continued from a cross-entropy captioner."""

import json
import os

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import run_captioning
from vitgpt2.errors import ArgumentError
from vitgpt2.inference import captioning_pipeline
from vitgpt2.scst.rewards import CaptionReward
from vitgpt2.scst.trainer import ScstTrainer

SCST_STATS = ("reward", "reward_baseline", "sample_length", "entropy")


def scst_argv(checkpoint: str, data: str, output, *extra: str) -> list[str]:
    return [
        "--model_name_or_path", checkpoint, "--coco_dir", data, "--output_dir", str(output),
        "--do_train", "--scst", "--per_device_train_batch_size", "8", "--learning_rate", "3e-4",
        "--lr_scheduler_type", "constant", "--logging_steps", "5", "--save_strategy", "no", "--report_to", "none",
        "--seed", "0", "--max_target_length", "16", *extra,
    ]  # fmt: skip


def weights(folder) -> dict[str, torch.Tensor]:
    return load_file(os.path.join(folder, "model.safetensors"))


def changed(before: dict, after: dict) -> list[str]:
    return [key for key in before if not torch.equal(before[key], after[key])]


def training_logs(output) -> list[dict]:
    with open(os.path.join(output, "trainer_state.json")) as f:
        return [entry for entry in json.load(f)["log_history"] if "loss" in entry]


def test_scst_follows_its_reward_and_saves_an_ordinary_captioner(monkeypatch, ce_captioner, synthetic_coco, tmp_path):
    """A reward whose optimum is plain to see (more words is better) must be climbed within a few dozen steps; on
    CIDEr-D a 40-image set is too noisy to show it in a test (bench/bench_scst.py measures that)."""
    monkeypatch.setattr(
        CaptionReward,
        "__call__",
        lambda self, captions, images, ended=None: np.array([len(c.split()) for c in captions], dtype=float),
    )
    output = tmp_path / "scst"
    results = run_captioning.main(
        scst_argv(ce_captioner, synthetic_coco, output, "--max_steps", "40", "--do_eval", "--metrics", "bleu,cider")
    )
    logs = training_logs(output)
    assert len(logs) == 8 and all(set(SCST_STATS) <= set(entry) for entry in logs)
    assert all(entry["entropy"] > 0 and 1 <= entry["sample_length"] <= 16 for entry in logs)
    rewards = [entry["reward"] for entry in logs]
    assert rewards[-1] > rewards[0] + 3, rewards  # 4 words longer: it follows its reward
    assert logs[-1]["sample_length"] > logs[0]["sample_length"] + 3
    assert changed(weights(ce_captioner), weights(output))
    assert results["eval_cider"] > 0 and "eval_loss" in results  # evaluation as after cross-entropy

    # Saving is unchanged: the same decoding settings, and the folder loads as any captioner does.
    saved = lambda folder: json.load(open(os.path.join(folder, "generation_config.json")))  # noqa: E731
    assert saved(output) == saved(ce_captioner)
    captions = captioning_pipeline(str(output))(
        os.path.join(synthetic_coco, "val2017", os.listdir(os.path.join(synthetic_coco, "val2017"))[0])
    )
    assert isinstance(captions[0]["generated_text"], str)
    card = (output / "README.md").read_text()
    assert "SCST-tuned" in card and "reward cider" in card and "5 samples per image" in card


def test_scst_needs_a_cross_entropy_captioner(synthetic_coco, tiny_models, tmp_path):
    encoder, decoder = tiny_models
    argv = [
        "--encoder_model_name_or_path", encoder, "--decoder_model_name_or_path", decoder, "--coco_dir", synthetic_coco,
        "--output_dir", str(tmp_path), "--do_train", "--scst",
    ]  # fmt: skip
    with pytest.raises(ArgumentError, match="--model_name_or_path"):
        run_captioning.main(argv)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--scst_num_samples", "1"], "--scst_num_samples 2 or more"),
        (["--scst_reward", "cider:1,meteor:1"], "unknown metric 'meteor'"),
        (["--scst_temperature", "0"], "--scst_temperature must be above 0"),
        (["--scst_ce_weight", "-1"], "--scst_ce_weight must be 0 or more"),
    ],
)
def test_scst_options_are_checked_before_any_work(ce_captioner, synthetic_coco, tmp_path, extra, message):
    with pytest.raises(ArgumentError, match=message):
        run_captioning.main(scst_argv(ce_captioner, synthetic_coco, tmp_path, *extra))


def _references_as_samples(monkeypatch):
    """Replaces sampling with each image's first K reference captions cut to 4 tokens without EOS: every sample then
    has the same length, and the rewards still differ (references agree with each other unequally)."""
    original = ScstTrainer.compute_loss

    def compute_loss(self, model, inputs, *args, **kwargs):
        # dropout is off while SCST trains, so the samples and their scoring see one policy
        assert all(module.p == 0 for module in model.modules() if isinstance(module, torch.nn.Dropout))
        self._references = inputs["labels"]
        return original(self, model, inputs, *args, **kwargs)

    def generate(self, model, pixel_values, config):
        samples = config.num_return_sequences
        tokens = self._references[:, :samples, :4].reshape(-1, 4)
        assert (tokens >= 0).all() and (tokens != model.config.eos_token_id).all()
        start = torch.full((len(tokens), 1), model.config.decoder_start_token_id, device=tokens.device)
        return torch.cat([start, tokens], dim=1)

    monkeypatch.setattr(ScstTrainer, "compute_loss", compute_loss)
    monkeypatch.setattr(ScstTrainer, "_generate", generate)


def test_gradient_accumulation_gives_the_update_of_the_whole_batch(
    monkeypatch, ce_captioner, synthetic_coco, tmp_path
):
    """8 images in one batch, or in two accumulated batches of 4: the same update (with the same samples)."""
    _references_as_samples(monkeypatch)
    common = ("--max_steps", "1", "--optim", "sgd", "--learning_rate", "0.5", "--scst_num_samples", "3")
    run_captioning.main(scst_argv(ce_captioner, synthetic_coco, tmp_path / "whole", *common))
    argv = scst_argv(ce_captioner, synthetic_coco, tmp_path / "accumulated", *common)
    argv[argv.index("--per_device_train_batch_size") + 1] = "4"
    run_captioning.main([*argv, "--gradient_accumulation_steps", "2"])
    whole, accumulated, start = weights(tmp_path / "whole"), weights(tmp_path / "accumulated"), weights(ce_captioner)
    assert changed(start, whole)
    for key in start:
        torch.testing.assert_close(accumulated[key], whole[key], rtol=1e-5, atol=1e-6, msg=key)


def test_greedy_baseline_bf16_and_the_mixed_objective(ce_captioner, synthetic_coco, tmp_path):
    output = tmp_path / "greedy"
    run_captioning.main(
        scst_argv(
            ce_captioner,
            synthetic_coco,
            output,
            "--max_steps",
            "5",
            "--scst_baseline",
            "greedy",
            "--bf16",
            "--use_cpu",
            "--scst_reward",
            "cider:1,bleu:0.5",
            "--scst_ce_weight",
            "0.5",
            "--scst_reward_end",
            "true",
        )
    )
    after = weights(output)
    assert changed(weights(ce_captioner), after)
    assert all(torch.isfinite(tensor.float()).all() for tensor in after.values())
    card = (output / "README.md").read_text()
    assert "the greedy caption" in card and "plus 0.5 x cross-entropy on the references" in card
    assert "cider:1,bleu:0.5 (the end of a caption scored as a word)" in card
    assert training_logs(output)[-1]["reference_loss"] > 0


def test_a_frozen_encoder_stays_as_it_was_and_runs_in_the_loop(ce_captioner, synthetic_coco, tmp_path):
    """--freeze_encoder turns encoder-feature caching on by default; SCST samples from the pixels at every step, so
    the frozen encoder runs in the loop instead, and the card says so."""
    output = tmp_path / "frozen"
    run_captioning.main(scst_argv(ce_captioner, synthetic_coco, output, "--max_steps", "3", "--freeze_encoder"))
    start, after = weights(ce_captioner), weights(output)
    moved = changed(start, after)
    assert moved and not [key for key in moved if key.startswith("encoder.")]
    card = (output / "README.md").read_text()
    assert "| cache_encoder_features | False |" in card and "| freeze_encoder | True |" in card
