"""The end of a training run: the folder users download, and the push, through `run_captioning.main`."""

import os
import sys

import PIL.Image
from huggingface_hub import ModelCard
from test_hub import TOKEN, uploaded_files

import run_captioning
from vitgpt2.inference import captioning_pipeline


def _all_bytes(folder) -> dict[str, bytes]:
    contents = {}
    for root, _, names in os.walk(folder):
        for name in names:
            with open(os.path.join(root, name), "rb") as f:
                contents[os.path.relpath(os.path.join(root, name), folder)] = f.read()
    return contents


def test_trained_folder_has_card_pictures_pipeline_and_pushes_without_the_token(
    monkeypatch,
    hub,
    synthetic_coco,
    tiny_models,
    tmp_path,
    capsys,
    caplog,  # noqa: F811
):
    encoder, decoder = tiny_models
    output = tmp_path / "out"
    argv = [
        "--encoder_model_name_or_path", encoder, "--decoder_model_name_or_path", decoder,
        "--coco_dir", synthetic_coco, "--output_dir", str(output),
        "--do_train", "--do_eval", "--num_train_epochs", "2", "--learning_rate", "1e-3",
        "--per_device_train_batch_size", "8", "--save_strategy", "epoch", "--eval_strategy", "epoch",
        "--metrics", "bleu,rouge,cider", "--report_to", "none",
        "--push_to_hub", "--hub_model_id", "someone/vit-gpt2-test", "--hub_token", TOKEN,
    ]  # fmt: skip
    monkeypatch.setattr(sys, "argv", ["run_captioning.py", *argv])
    results = run_captioning.main()

    card = ModelCard.load(output / "README.md")
    assert card.data.pipeline_tag == "image-to-text" and card.data.library_name == "transformers"
    assert card.data.base_model is None  # local folders are named in the text, not claimed as Hub models
    assert f"`{encoder}`" in card.content and f"`{decoder}`" in card.content
    reported = card.data.eval_results
    # the card rounds to 4 decimals
    assert any(r.metric_type == "bleu" and abs(r.metric_value - results["eval_bleu"]) <= 5e-5 for r in reported)
    for picture in ("loss_curves.png", "sample_captions.png"):
        assert PIL.Image.open(output / picture).size[0] > 100
        assert picture in card.text
    checkpoints = sorted(name for name in os.listdir(output) if name.startswith("checkpoint-"))
    assert checkpoints and all((output / name / "pipeline.py").is_file() for name in checkpoints)

    uploaded = uploaded_files(hub.uploaded)
    assert {"model.safetensors", "config.json", "pipeline.py", "images.py", "README.md"} <= set(uploaded)
    assert {"loss_curves.png", "sample_captions.png", "preprocessor_config.json", "generation_config.json"} <= set(
        uploaded
    )
    assert not any(name.startswith("checkpoint-") or name.endswith("training_args.bin") for name in uploaded)
    assert hub.create_repo[0]["repo_id"] == "someone/vit-gpt2-test"

    # the token is nowhere: not in the output folder (training_args.bin included), the upload, or the logs
    for folder in (output, hub.uploaded):
        assert not [name for name, data in _all_bytes(folder).items() if TOKEN.encode() in data]
    captured = capsys.readouterr()
    assert TOKEN not in captured.out + captured.err + caplog.text

    captioner = captioning_pipeline(str(hub.uploaded))
    image = PIL.Image.open(
        os.path.join(synthetic_coco, "val2017", sorted(os.listdir(os.path.join(synthetic_coco, "val2017")))[0])
    )
    assert isinstance(captioner(image)[0]["generated_text"], str)


def test_default_logging_draws_50_points_and_the_card_names_the_data_as_its_files_do(
    monkeypatch, synthetic_coco, tiny_models, tmp_path
):
    """140 steps: the Trainer's ratio 0.02 would log every 3 steps (46 points); the default logs every 2 (70). The
    captions file of this copy says nothing of what it holds, so the card does not call it COCO."""
    import json
    import shutil

    data = shutil.copytree(synthetic_coco, tmp_path / "data")
    annotations = data / "annotations" / "captions_train2017.json"
    content = json.loads(annotations.read_text())
    content.pop("info", None)
    annotations.write_text(json.dumps(content))
    encoder, decoder = tiny_models
    output = tmp_path / "out"
    argv = [
        "--encoder_model_name_or_path", encoder, "--decoder_model_name_or_path", decoder, "--coco_dir", str(data),
        "--output_dir", str(output), "--do_train", "--max_steps", "140", "--per_device_train_batch_size", "2",
        "--save_strategy", "no", "--report_to", "none",
    ]  # fmt: skip
    monkeypatch.setattr(sys, "argv", ["run_captioning.py", *argv])
    run_captioning.main()
    history = json.loads((output / "trainer_state.json").read_text())["log_history"]
    assert len([entry for entry in history if "loss" in entry]) >= 50
    card = ModelCard.load(output / "README.md")
    assert "COCO's layout (folder data" in card.text and "`COCO`" not in card.text
    assert card.data.datasets is None


def test_a_coco_folder_is_named_by_its_captions_file(synthetic_coco, tmp_path):
    import json
    import shutil
    from types import SimpleNamespace

    from vitgpt2.publish.end_of_run import _folder_description

    data = shutil.copytree(synthetic_coco, tmp_path / "coco")
    args = SimpleNamespace(
        karpathy_split_file=None, coco_dir=str(data), train_split_name="train", image_folder=None, webdataset=None
    )
    assert _folder_description(args) == "vitgpt2 synthetic shapes"
    annotations = data / "annotations" / "captions_train2017.json"
    content = json.loads(annotations.read_text())
    content["info"] = {"description": "COCO 2017 Dataset", "url": "http://cocodataset.org", "year": 2017}
    annotations.write_text(json.dumps(content))
    assert _folder_description(args) == "COCO 2017 Dataset"
