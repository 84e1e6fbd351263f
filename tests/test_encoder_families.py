"""Every supported encoder family, from a tiny random checkpoint in hub layout: joined with a GPT-2 decoder, trained a
few steps, evaluated, saved with its own image processor, and captioning through the pipeline in a process where
vitgpt2 cannot be imported."""

import json
import sys

import PIL.Image
import pytest
import skimage.data
import torch
from transformers import Siglip2VisionModel, VisionEncoderDecoderModel

import run_captioning
from vitgpt2.encoders import TESTED_FAMILIES, UnsupportedEncoder, load_image_processor, load_vision_encoder
from vitgpt2.inference import captioning_pipeline
from vitgpt2.model import load_captioner
from vitgpt2.offline.tiny_encoders import FAMILIES, write_tiny_family_encoder
from vitgpt2.publish.model_card import ENCODER_NAMES

# family -> the encoder the saved captioner holds
SAVED_AS = {
    "clip": "clip_vision_model",
    "clip_vision": "clip_vision_model",
    "siglip": "siglip_vision_model",
    "siglip2": "siglip_vision_model",
}


@pytest.fixture(scope="module")
def decoder(tiny_models) -> str:
    return tiny_models[1]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, synthetic_coco, decoder):
    """family -> (output folder, run results), each trained 4 steps with evaluation and prediction."""
    root = tmp_path_factory.mktemp("families")
    runs = {}
    for family in FAMILIES:
        encoder = write_tiny_family_encoder(str(root / "encoders" / family), family)
        output = root / "runs" / family
        argv = [
            "--encoder_model_name_or_path", encoder, "--decoder_model_name_or_path", decoder,
            "--coco_dir", synthetic_coco, "--output_dir", str(output), "--do_train", "--do_eval",
            "--max_steps", "4", "--per_device_train_batch_size", "8", "--learning_rate", "1e-3",
            "--max_eval_samples", "4", "--generation_max_length", "8", "--metrics", "bleu,rouge",
            "--report_to", "none", "--save_strategy", "no", "--seed", "0",
        ]  # fmt: skip
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(sys, "argv", ["run_captioning.py", *argv])
            runs[family] = (output, run_captioning.main())
    return runs


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_trains_evaluates_and_saves(trained, family):
    output, results = trained[family]
    eval_results = json.loads((output / "eval_results.json").read_text())
    assert {"eval_loss", "eval_bleu"} <= set(eval_results) and eval_results["eval_loss"] > 0
    model = load_captioner(checkpoint=str(output))  # as --model_name_or_path and `vitgpt2 evaluate` load it
    assert model.config.encoder.model_type == SAVED_AS.get(family, family)
    card = (output / "README.md").read_text()
    encoder_name = ENCODER_NAMES[SAVED_AS.get(family, family)]
    assert f"a {encoder_name} image encoder" in card and "trainable_parameters" in card
    # the saved image processor is the encoder's own (SigLIP2's NaFlex one becomes SigLIP's at the native grid)
    preprocessor = json.loads((output / "preprocessor_config.json").read_text())
    assert preprocessor["image_processor_type"].startswith(
        {"clip": "CLIP", "clip_vision": "CLIP", "siglip": "Siglip", "siglip2": "Siglip", "deit": "DeiT", "beit": "Beit",
         "dinov2": "Bit", "dinov2_with_registers": "Bit"}.get(family, "ViT")
    )  # fmt: skip


def test_weights_the_captioner_never_reads_are_frozen_and_the_rest_learn(trained, tmp_path, decoder):
    """After 4 steps every trainable encoder weight moved; the ones frozen as unused (poolers, CLIP's post-norm,
    SigLIP's pooling head) did not, so DDP can run without find_unused_parameters."""
    for family in ("vit", "clip", "siglip"):
        encoder = write_tiny_family_encoder(str(tmp_path / family), family)
        initial = load_vision_encoder(encoder).state_dict()
        trained_state = VisionEncoderDecoderModel.from_pretrained(trained[family][0]).encoder.state_dict()
        moved = {name for name, value in initial.items() if not torch.equal(value, trained_state[name])}
        unused = {"vit": {"pooler."}, "clip": {"post_layernorm."}, "siglip": {"head."}}[family]
        for name in initial:
            if any(name.startswith(prefix) for prefix in unused):
                assert name not in moved, (family, name)
            elif name.endswith(("weight", "bias")) and "mask_token" not in name:
                assert name in moved, (family, name)


def test_siglip2_naflex_tower_is_converted_exactly(tmp_path):
    """The converted SigLIP tower computes what the NaFlex tower computes on the patches its processor cuts."""
    folder = write_tiny_family_encoder(str(tmp_path / "siglip2"), "siglip2")
    naflex = Siglip2VisionModel.from_pretrained(folder).eval()
    converted = load_vision_encoder(folder).eval()
    processor = load_image_processor(folder)
    image = PIL.Image.fromarray(skimage.data.astronaut()).resize((32, 32))
    pixels = processor(images=image, return_tensors="pt")["pixel_values"]
    from transformers import AutoImageProcessor

    cut = AutoImageProcessor.from_pretrained(folder)(images=image, return_tensors="pt", max_num_patches=16)
    assert cut["spatial_shapes"].tolist() == [[4, 4]] and bool(cut["pixel_attention_mask"].all())
    with torch.no_grad():
        expected = naflex(**cut).last_hidden_state
        actual = converted(pixel_values=pixels).last_hidden_state
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)


def photo_files(folder) -> list[str]:
    paths = []
    for name in ("astronaut", "coffee", "chelsea"):
        paths.append(str(folder / f"{name}.jpg"))
        PIL.Image.fromarray(getattr(skimage.data, name)()).save(paths[-1])
    return paths


def test_every_family_captions_through_the_pipeline_without_vitgpt2(trained, isolated_pipeline, tmp_path):
    folders = [str(trained[family][0]) for family in FAMILIES]
    images = photo_files(tmp_path)
    outputs = isolated_pipeline(folders, images)
    for folder in folders:
        pipe = captioning_pipeline(folder)
        assert outputs[folder]["single"] == pipe(images[0]), folder
        assert outputs[folder]["batch"] == pipe(images, batch_size=2), folder
        assert outputs[folder]["beams"] == pipe(images[0], num_beams=2), folder


def test_a_family_that_cannot_be_an_encoder_names_the_supported_ones(tmp_path, decoder):
    from transformers import ResNetConfig, ResNetModel

    ResNetModel(ResNetConfig(hidden_sizes=[8, 16], depths=[1, 1], embedding_size=8)).save_pretrained(tmp_path / "r")
    with pytest.raises(
        UnsupportedEncoder, match=r"last_hidden_state \(1, 16, 28, 28\).*Supported encoder families: ViT"
    ):
        load_vision_encoder(str(tmp_path / "r"))
    assert len(TESTED_FAMILIES) >= 9


@pytest.mark.parametrize(
    "family, trained",
    [
        # the last block and the norm after the blocks; CLIP's pre-norm comes before them, its post-norm is unused
        ("clip", ("encoder.layers.1.",)),
        ("siglip", ("encoder.layers.1.", "post_layernorm.")),  # its pooling head is unused
        ("swin", ("encoder.layers.1.", "layernorm.")),  # Swin's last stage
        ("vit", ("layers.1.", "layernorm.")),
    ],
)
def test_training_the_last_encoder_layers_picks_them_in_every_family(family, trained, tmp_path, decoder):
    from vitgpt2.model import set_encoder_trainable

    model = load_captioner(write_tiny_family_encoder(str(tmp_path / family), family), decoder)
    set_encoder_trainable(model, train_layers=1)
    names = {name.removeprefix("vision_model.") for name, p in model.encoder.named_parameters() if p.requires_grad}
    assert names and all(name.startswith(trained) for name in names), sorted(names)
    assert {prefix for prefix in trained for name in names if name.startswith(prefix)} == set(trained)
