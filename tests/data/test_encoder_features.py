"""Frozen-encoder training from cached encoder outputs: the same loss and weights as with the encoder in the loop,
the encoder never run in training, and a cache that follows the weights, the image processor and the images."""

import copy
import json
import os
import sys

import numpy as np
import PIL.Image
import pytest
import skimage.data
import torch
from safetensors.torch import load_file
from transformers import AutoImageProcessor, ViTModel

import run_captioning
from vitgpt2.data.collator import CaptioningCollator
from vitgpt2.data.encoder_features import encoder_features
from vitgpt2.data.views import CaptionGroups
from vitgpt2.loss import caption_loss

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "camera", "hubble_deep_field")


@pytest.fixture
def cached_train(source_rows, tiny_models, tmp_path):
    """`cached_train(image_processor)`: 6 real photos (one grayscale) with 2 or 3 captions each, preprocessed as
    run_captioning does it, from a split saved on disk (so its cache files have a folder, as COCO's do)."""
    from datasets import load_from_disk
    from transformers import AutoTokenizer

    from vitgpt2.data.preprocessing import preprocess

    paths = []
    for name in PHOTOS:
        paths.append(str(tmp_path / f"{name}.jpg"))
        PIL.Image.fromarray(getattr(skimage.data, name)()).save(paths[-1])
    captions = [[f"photo {i}: it's a close-up", "a man's hand-held t.v.", "two dogs"][: 2 + i % 2] for i in range(6)]
    source_rows(paths, captions).save_to_disk(tmp_path / "raw")
    tokenizer = AutoTokenizer.from_pretrained(tiny_models[1])
    return lambda image_processor: preprocess(load_from_disk(tmp_path / "raw"), image_processor, tokenizer, 16)


def batch_of(groups: CaptionGroups, image_processor) -> dict:
    return CaptioningCollator(image_processor)([groups[i] for i in range(len(groups))])


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_loss_from_cached_features_equals_the_frozen_encoder_in_the_loop(captioner, tiny_models, cached_train, dtype):
    model = copy.deepcopy(captioner[0]).eval()
    image_processor = AutoImageProcessor.from_pretrained(tiny_models[0])
    dataset = cached_train(image_processor)
    features = encoder_features(model.encoder, image_processor, dataset, dtype=dtype, batch_size=4)
    assert features.array.dtype == (np.float32 if dtype == "float32" else np.int16)
    in_loop = batch_of(CaptionGroups(dataset, captions_per_image=5), image_processor)
    cached = batch_of(CaptionGroups(dataset, captions_per_image=5, features=features), image_processor)
    assert "pixel_values" not in cached and torch.equal(cached["labels"], in_loop["labels"])
    with torch.no_grad():
        expected = caption_loss(model, in_loop["pixel_values"], in_loop["labels"])[0]
        actual = caption_loss(model, None, cached["labels"], encoder_states=cached["encoder_states"])[0]
        states = model.encoder(pixel_values=in_loop["pixel_values"]).last_hidden_state
    if dtype == "float32":
        torch.testing.assert_close(actual, expected, rtol=1e-6, atol=1e-6)
    else:  # exactly the encoder's output rounded to bf16
        assert torch.equal(cached["encoder_states"], states.to(torch.bfloat16).float())
        torch.testing.assert_close(actual, expected, rtol=1e-2, atol=1e-2)


def test_the_cache_follows_weights_image_processor_and_images(captioner, tiny_models, cached_train, monkeypatch):
    model = copy.deepcopy(captioner[0]).eval()
    image_processor = AutoImageProcessor.from_pretrained(tiny_models[0])
    dataset = cached_train(image_processor)
    first = encoder_features(model.encoder, image_processor, dataset)
    assert first.path is not None and os.path.isfile(first.path)
    assert first.bytes_per_image == np.prod(first.array.shape[1:]) * 2

    calls = []
    monkeypatch.setattr(type(model.encoder), "forward", lambda *a, **k: calls.append(1) / 0)
    again = encoder_features(model.encoder, image_processor, dataset)  # from the cache: the encoder never runs
    assert again.path == first.path and not calls
    monkeypatch.undo()

    weight = next(model.encoder.parameters())
    kept = weight.detach().clone()
    with torch.no_grad():
        weight.add_(0.01)
    assert encoder_features(model.encoder, image_processor, dataset).path != first.path
    with torch.no_grad():
        weight.copy_(kept)
    other = copy.deepcopy(image_processor)
    other.image_mean = [0.4, 0.4, 0.4]
    assert encoder_features(model.encoder, other, dataset).path != first.path
    assert encoder_features(model.encoder, image_processor, dataset, dtype="float32").path != first.path
    assert encoder_features(model.encoder, image_processor, dataset).path == first.path


def test_a_run_killed_while_caching_leaves_nothing_that_is_read(captioner, tiny_models, cached_train, monkeypatch):
    from vitgpt2.data import encoder_features as module

    model = copy.deepcopy(captioner[0]).eval()
    image_processor = AutoImageProcessor.from_pretrained(tiny_models[0])
    dataset = cached_train(image_processor)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(module, "_compute", killed)
    with pytest.raises(KeyboardInterrupt):
        encoder_features(model.encoder, image_processor, dataset)
    monkeypatch.undo()
    features = encoder_features(model.encoder, image_processor, dataset)
    with torch.no_grad():
        pixels = batch_of(CaptionGroups(dataset, captions_per_image=5), image_processor)["pixel_values"]
        expected = model.encoder(pixel_values=pixels).last_hidden_state.to(torch.bfloat16)
    # every row computed, none left at the zeros of a half-written file
    assert torch.equal(torch.from_numpy(np.array(features.array)).view(torch.bfloat16), expected)


def _train(monkeypatch, train_argv, output, *extra) -> dict:
    argv = [*train_argv(output), "--max_steps", "6", "--per_device_train_batch_size", "4", "--learning_rate", "1e-3",
            "--save_strategy", "no", "--seed", "0", "--captions_per_image", "5", "--freeze_encoder", *extra]  # fmt: skip
    monkeypatch.setattr(sys, "argv", ["run_captioning.py", *argv])
    return run_captioning.main()


def test_frozen_training_never_runs_the_encoder_and_matches_it_in_the_loop(monkeypatch, train_argv, tmp_path):
    runs = {}
    forward = ViTModel.forward

    def counting(self, *args, **kwargs):
        calls.append(self.training)
        return forward(self, *args, **kwargs)

    for name, extra in {
        "loop": ["--cache_encoder_features", "false"],
        "cache": ["--encoder_features_dtype", "float32"],
    }.items():
        calls = []
        monkeypatch.setattr(ViTModel, "forward", counting)
        _train(monkeypatch, train_argv, tmp_path / name, *extra)
        runs[name] = calls
        monkeypatch.setattr(ViTModel, "forward", forward)
    # in the loop: once per training step; cached: never in training (only in eval mode, for the cache)
    assert sum(runs["loop"]) == 6
    assert not any(runs["cache"])
    loop, cache = (load_file(tmp_path / name / "model.safetensors") for name in ("loop", "cache"))
    for key in loop:
        torch.testing.assert_close(cache[key], loop[key], rtol=1e-4, atol=1e-5, msg=key)
    log = json.loads((tmp_path / "cache" / "train_results.json").read_text())
    assert log["trainable_parameters"] < log["parameters"]


def test_caching_a_learning_encoder_is_refused():
    from vitgpt2.arguments import ModelArguments

    with pytest.raises(ValueError, match="--cache_encoder_features needs a frozen encoder"):
        ModelArguments(cache_encoder_features=True)
    with pytest.raises(ValueError, match="--encoder_features_dtype must be one of bfloat16, float32"):
        ModelArguments(encoder_features_dtype="float16")
    assert ModelArguments(train_encoder_layers=0).cache_encoder_features
    assert not ModelArguments(freeze_encoder=True, cache_encoder_features=False).cache_encoder_features
    assert not ModelArguments().cache_encoder_features


def test_changed_images_get_new_features(monkeypatch, train_argv, synthetic_coco, tmp_path):
    """The pixel cache follows the image files (size and mtime); the features follow the pixel cache."""
    import shutil

    import vitgpt2.data.encoder_features

    data = str(shutil.copytree(synthetic_coco, tmp_path / "data"))
    paths = []
    cache = vitgpt2.data.encoder_features.encoder_features

    def recording(*args, **kwargs):
        features = cache(*args, **kwargs)
        paths.append(features.path)
        return features

    monkeypatch.setattr(run_captioning, "encoder_features", recording)
    argv = lambda output: train_argv(output, data=data)  # noqa: E731
    for run in ("a", "b"):
        _train(monkeypatch, argv, tmp_path / run, "--max_train_samples", "8")
    image = sorted((tmp_path / "data" / "train2017").iterdir())[0]
    PIL.Image.fromarray(skimage.data.astronaut()).resize((48, 48)).save(image)
    _train(monkeypatch, argv, tmp_path / "c", "--max_train_samples", "8")
    assert paths[0] == paths[1] and paths[2] != paths[0]
    assert all(path is not None and os.path.isfile(path) for path in paths)
