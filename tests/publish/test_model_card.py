"""The model card: Hub metadata that parses, results, a usage snippet that runs, samples, pictures, no secrets."""

import contextlib
import io
import re

import PIL.Image
import pytest
import skimage.data
from huggingface_hub import ModelCard

from vitgpt2.inference import captioning_pipeline
from vitgpt2.publish.model_card import write_model_card
from vitgpt2.publish.pipeline_code import save_pipeline_code

TOKEN = "hf_ThisIsAFakeTokenThatMustNeverBePublished"
BASE_MODELS = {"encoder": "google/vit-base-patch16-224-in21k", "decoder": "distilgpt2"}
METRICS = {
    "eval_loss": 2.3456,
    "eval_bleu": 31.234,
    "eval_rougeL": 54.5,
    "eval_cider": 101.2,
    "eval_bertscore_f1": 70.1,
    "eval_gen_len": 9.5,
    "eval_runtime": 12.3,
    "eval_samples_per_second": 40.0,
    "epoch": 3.0,
}
HYPERPARAMETERS = {
    "learning_rate": 5e-5,
    "num_train_epochs": 3,
    "per_device_train_batch_size": 32,
    "hub_token": TOKEN,
    "push_to_hub_token": TOKEN,
    "HF_TOKEN": TOKEN,
    "api_key": "sk-not-a-real-key",
    "report_to": f"note {TOKEN}",  # a token hiding in an innocent-looking value
    "seed": 42,
    "resume_from_checkpoint": None,
}
SAMPLES = [
    {
        "image_id": 139,
        "file_name": "000000000139.jpg",
        "prediction": "a living room | with a tv",
        "references": ["a room", "a tv"],
    },
    {"image_id": 285, "file_name": "000000000285.jpg", "prediction": "a brown bear", "references": ["a big bear"]},
]


def write_card(output_dir, **overrides):
    arguments = {
        "model_name": "vit-gpt2-coco",
        "base_models": BASE_MODELS,
        "dataset": "AKCIT/coco2017-captioning",
        "metrics": METRICS,
        "hyperparameters": HYPERPARAMETERS,
        "sample_records": SAMPLES,
        "pictures": [],
        "hub_model_id": "someone/vit-gpt2-coco",
    }
    return write_model_card(str(output_dir), **{**arguments, **overrides})


def test_card_metadata_parses_on_the_hub_schema(tmp_path):
    (tmp_path / "loss_curves.png").write_bytes(b"png")
    path = write_card(tmp_path, pictures=["loss_curves.png"])
    assert path == str(tmp_path / "README.md")
    card = ModelCard.load(path)
    data = card.data
    assert data.pipeline_tag == "image-to-text" and data.library_name == "transformers"
    assert data.base_model == [BASE_MODELS["encoder"], BASE_MODELS["decoder"]]
    assert data.datasets == ["AKCIT/coco2017-captioning"]
    assert set(data.metrics) == {"bleu", "rouge", "cider", "bertscore"}
    assert "image-captioning" in data.tags
    results = {result.metric_name: result.metric_value for result in data.eval_results}
    assert results == {"loss": 2.3456, "bleu": 31.234, "rougeL": 54.5, "cider": 101.2, "bertscore_f1": 70.1}
    assert {result.task_type for result in data.eval_results} == {"image-to-text"}
    assert "model-index" in card.content


def test_card_body(tmp_path):
    (tmp_path / "pictures").mkdir()
    (tmp_path / "pictures" / "samples.png").write_bytes(b"png")
    text = open(write_card(tmp_path, pictures=["pictures/samples.png"])).read()
    assert "| bleu | 31.23 |" in text and "| loss | 2.3456 |" in text and "| gen_len | 9.5000 |" in text
    assert "runtime" not in text and "samples_per_second" not in text
    assert "| learning_rate | 5e-05 |" in text and "| seed | 42 |" in text and "resume_from_checkpoint" not in text
    assert "a living room \\| with a tv" in text and "a room / a tv" in text  # pipes escaped inside table cells
    assert "![samples](pictures/samples.png)" in text
    assert 'pipeline("image-to-text", model="someone/vit-gpt2-coco", trust_remote_code=True)' in text


def test_no_token_like_value_is_written(tmp_path):
    text = open(write_card(tmp_path)).read()
    assert TOKEN not in text and "hf_" not in text and "sk-not-a-real-key" not in text
    assert not re.search(r"\btoken\b", text.split("### Hyperparameters")[1], flags=re.IGNORECASE)


def test_local_dataset_is_named_but_not_claimed_as_a_hub_dataset(tmp_path):
    path = write_card(tmp_path, dataset=str(tmp_path), metrics={}, sample_records=[], hyperparameters={})
    card = ModelCard.load(path)
    assert card.data.datasets is None and card.data.eval_results is None
    assert str(tmp_path) in card.text and "No evaluation was run." in card.text


def test_missing_picture_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="loss_curves.png"):
        write_card(tmp_path, pictures=["loss_curves.png"])


def test_usage_snippet_runs(tmp_path, make_tiny_captioner):
    model_dir = make_tiny_captioner(tmp_path)
    save_pipeline_code(model_dir)
    card_text = open(write_card(model_dir, hub_model_id=None)).read()
    snippet = re.search(r"```python\n(.*?)```", card_text, flags=re.DOTALL).group(1)
    image_path = tmp_path / "photo.png"
    PIL.Image.fromarray(skimage.data.chelsea()).save(image_path)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(snippet.replace('"photo.jpg"', repr(str(image_path))), {})
    expected = captioning_pipeline(model_dir, device="cpu")(str(image_path))
    assert printed.getvalue().strip() == str(expected)


def test_a_continued_run_names_its_checkpoint_as_base_model(tmp_path):
    path = write_card(tmp_path, base_models={"checkpoint": "someone/vit-gpt2-coco-v1"})
    card = ModelCard.load(path)
    assert card.data.base_model == ["someone/vit-gpt2-coco-v1"]
    assert "continued from the captioner `someone/vit-gpt2-coco-v1`" in card.content and "`None`" not in card.content


def test_local_model_folders_are_named_but_not_claimed_as_hub_models(tmp_path):
    encoder, decoder = tmp_path / "encoder", tmp_path / "decoder"
    encoder.mkdir(), decoder.mkdir()
    card = ModelCard.load(write_card(tmp_path, base_models={"encoder": str(encoder), "decoder": str(decoder)}))
    assert card.data.base_model is None
    assert f"the image encoder `{encoder}` and the text decoder `{decoder}`" in card.content
