"""LoRA adapters through peft: what trains, merged weights in the saved folder that the pipeline loads without peft or
vitgpt2, and the adapter alone in peft's format."""

import copy
import json
import sys

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoTokenizer, VisionEncoderDecoderModel

import run_captioning
from vitgpt2.errors import ArgumentError
from vitgpt2.lora import add_lora, merge_lora, target_modules
from vitgpt2.model import load_captioner, pad_vocabulary, set_encoder_trainable


def trained_names(model) -> set[str]:
    return {name for name, parameter in model.named_parameters() if parameter.requires_grad}


def test_adapters_train_the_new_cross_attention_in_full_and_leave_the_rest_as_asked(captioner):
    model = copy.deepcopy(captioner[0])
    set_encoder_trainable(model, freeze=True)
    add_lora(model, 4, None, 0.0, "decoder")
    names = trained_names(model)
    assert names and all("lora_" in name or "crossattention" in name or "ln_cross_attn" in name for name in names), (
        names
    )
    assert any("crossattention.c_attn.weight" in name for name in names)  # new, random: trained in full
    assert not any(name.startswith("encoder.") for name in names)
    assert any("attn.c_attn.lora_A" in name for name in names)

    model = copy.deepcopy(captioner[0])  # adapters on the encoder; the decoder trains in full
    add_lora(model, 2, 4.0, 0.0, "encoder", ["q_proj", "v_proj"])
    encoder = {name for name in trained_names(model) if name.startswith("encoder.")}
    assert encoder and all("lora_" in name and (".q_proj." in name or ".v_proj." in name) for name in encoder)
    decoder = {name for name, _ in model.decoder.named_parameters()}
    assert {f"decoder.{name}" for name in decoder} <= trained_names(model)


def test_target_modules_name_what_exists(captioner):
    model = captioner[0]
    assert all(
        name.startswith("decoder.") and "crossattention" not in name for name in target_modules(model, "decoder")
    )
    both = target_modules(model, "both")
    assert any(name.startswith("encoder.") for name in both) and not any(name.endswith("lm_head") for name in both)
    with pytest.raises(ArgumentError, match="--lora_target_modules q_proj names no linear layer of the decoder; its "
                       "linear layers are: c_attn, c_fc, c_proj"):  # fmt: skip
        target_modules(model, "decoder", ["q_proj"])


def test_merging_keeps_the_function_and_gives_back_plain_layers(captioner):
    model = copy.deepcopy(captioner[0]).eval()
    add_lora(model, 4, None, 0.0, "both")
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(std=0.1)
    pixels, ids = torch.randn(2, 3, 32, 32), torch.tensor([[1, 2, 3], [4, 5, 6]])
    with torch.no_grad():
        adapted = model(pixel_values=pixels, decoder_input_ids=ids).logits
        assert merge_lora(model) > 0
        merged = model(pixel_values=pixels, decoder_input_ids=ids).logits
    torch.testing.assert_close(merged, adapted, rtol=1e-5, atol=1e-5)
    assert not any("lora_" in name or "base_layer" in name for name in model.state_dict())


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, synthetic_coco, tiny_models):
    output = tmp_path_factory.mktemp("lora") / "out"
    encoder, decoder = tiny_models
    argv = [
        "--encoder_model_name_or_path", encoder, "--decoder_model_name_or_path", decoder, "--coco_dir", synthetic_coco,
        "--output_dir", str(output), "--do_train", "--do_eval", "--max_steps", "8", "--per_device_train_batch_size",
        "8", "--learning_rate", "1e-2", "--max_eval_samples", "4", "--generation_max_length", "8", "--metrics", "bleu",
        "--report_to", "none", "--save_strategy", "no", "--freeze_encoder", "--lora_r", "4", "--lora_save_adapter",
    ]  # fmt: skip
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "argv", ["run_captioning.py", *argv])
        return output, run_captioning.main()


def test_saved_folder_holds_merged_weights_and_the_adapter_alone_restores_them(lora_run, tiny_models):
    output, results = lora_run
    saved = load_file(output / "model.safetensors")
    assert not any("lora_" in key or "base_layer" in key for key in saved)
    model, info = VisionEncoderDecoderModel.from_pretrained(output, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert 0 < results["trainable_parameters"] < results["parameters"] / 2
    counts = json.loads((output / "train_results.json").read_text())
    assert counts["trainable_parameters"] == results["trainable_parameters"]

    # the pretrained decoder weights moved only by the merged low-rank update
    base = load_captioner(*tiny_models)
    delta = (
        saved["decoder.transformer.h.0.attn.c_attn.weight"]
        - base.state_dict()["decoder.transformer.h.0.attn.c_attn.weight"]
    )
    assert 0 < torch.linalg.matrix_rank(delta) <= 4

    adapter = json.loads((output / "adapter" / "adapter_config.json").read_text())
    assert adapter["r"] == 4 and adapter["peft_type"] == "LORA"
    base = load_captioner(*tiny_models)  # joined as run_captioning joins it: vocabulary padded to a multiple of 64
    pad_vocabulary(base, len(AutoTokenizer.from_pretrained(tiny_models[1])), 64)
    restored = PeftModel.from_pretrained(base, output / "adapter").merge_and_unload().eval()
    pixels, ids = torch.randn(2, 3, 32, 32), torch.tensor([[1, 2, 3], [4, 5, 6]])
    with torch.no_grad():
        expected = model.eval()(pixel_values=pixels, decoder_input_ids=ids).logits
        actual = restored(pixel_values=pixels, decoder_input_ids=ids).logits
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-4)  # merged in another order


def test_the_merged_captioner_loads_in_the_pipeline_without_vitgpt2_or_peft(lora_run, isolated_pipeline, tmp_path):
    import PIL.Image
    import skimage.data

    from vitgpt2.inference import captioning_pipeline

    image = str(tmp_path / "coffee.jpg")
    PIL.Image.fromarray(skimage.data.coffee()).save(image)
    outputs = isolated_pipeline([lora_run[0]], [image, image], blocked=["peft"])[str(lora_run[0])]
    assert outputs["single"] == captioning_pipeline(str(lora_run[0]))(image)


def test_lora_arguments_are_checked():
    from vitgpt2.arguments import ModelArguments

    with pytest.raises(ValueError, match="--lora_on must be one of decoder, encoder, both"):
        ModelArguments(lora_r=4, lora_on="head")
    with pytest.raises(ValueError, match="--lora_save_adapter needs adapters"):
        ModelArguments(lora_save_adapter=True)
    # adapters on a frozen encoder: it learns, so its outputs are not cached
    assert not ModelArguments(freeze_encoder=True, lora_r=4, lora_on="encoder").cache_encoder_features
    assert ModelArguments(freeze_encoder=True, lora_r=4).cache_encoder_features


def test_checkpoints_of_an_adapted_encoder_load_back_exactly(captioner, tmp_path):
    """ViT's weights are saved under legacy names, its adapters' too; resuming reads them through from_pretrained."""
    from vitgpt2.checkpoints import load_model_weights

    trained, fresh = copy.deepcopy(captioner[0]), copy.deepcopy(captioner[0])
    for model in (trained, fresh):
        add_lora(model, 2, None, 0.0, "both")
    with torch.no_grad():
        for name, parameter in trained.named_parameters():
            if "lora_" in name:
                parameter.normal_()
    trained.save_pretrained(tmp_path)
    load_model_weights(fresh, str(tmp_path))
    expected = trained.state_dict()
    assert any("encoder." in key and "lora_A" in key for key in expected)
    assert all(torch.equal(value, expected[key]) for key, value in fresh.state_dict().items())
