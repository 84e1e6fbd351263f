"""push_to_hub: what is uploaded loads as a pipeline; checkpoints, logs and the token never leave the machine."""

import logging
import os
import pickle
import shutil

import PIL.Image
import pytest
import skimage.data
from transformers import pipeline

from vitgpt2.inference import captioning_pipeline
from vitgpt2.publish.hub import SecretInUploadError, push_to_hub, upload_files
from vitgpt2.publish.model_card import write_model_card
from vitgpt2.publish.pipeline_code import save_pipeline_code
from vitgpt2.publish.plots import save_loss_curves

TOKEN = "hf_FakeTokenForTestsOnlyDoNotUploadThis1234"
REPO_ID = "someone/vit-gpt2-tiny"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, make_tiny_captioner):
    """A finished training folder: model, pipeline code, card, a picture, and what must stay local."""
    output_dir = make_tiny_captioner(tmp_path_factory.mktemp("hub"))
    save_pipeline_code(output_dir)
    save_loss_curves([{"loss": 1.0, "step": 1}], os.path.join(output_dir, "loss_curves.png"))
    write_model_card(
        output_dir,
        model_name="vit-gpt2-tiny",
        base_models={"encoder": "tiny-vit", "decoder": "tiny-gpt2"},
        dataset=None,
        metrics={"eval_bleu": 1.0},
        hyperparameters={"learning_rate": 1e-3, "hub_token": TOKEN},
        sample_records=[],
        pictures=["loss_curves.png"],
        hub_model_id=REPO_ID,
    )
    # "[best]" is a glob character class: the upload must take file names literally, not as patterns
    for name in ("all_results.json", "results [best].json"):
        with open(os.path.join(output_dir, name), "w") as f:
            f.write('{"eval_bleu": 1.0}\n')
    local_only = {
        "training_args.bin": pickle.dumps({"hub_token": TOKEN}),  # what the Trainer pickles: the token included
        ".env": f"HF_TOKEN={TOKEN}\n".encode(),
        "runs/Jan01_00-00-00/events.out.tfevents.1.host": b"tensorboard " + TOKEN.encode(),
        "checkpoint-5/config.json": b"{}",
        "checkpoint-5/optimizer.pt": b"state",
        "checkpoint-5/training_args.bin": pickle.dumps({"hub_token": TOKEN}),
    }
    for name, content in local_only.items():
        os.makedirs(os.path.dirname(os.path.join(output_dir, name)), exist_ok=True)
        with open(os.path.join(output_dir, name), "wb") as f:
            f.write(content)
    return output_dir


def uploaded_files(folder) -> list[str]:
    return sorted(
        os.path.relpath(os.path.join(root, name), folder) for root, _, names in os.walk(folder) for name in names
    )


def test_upload_set(model_dir):
    files = upload_files(model_dir)
    for expected in (
        "model.safetensors",
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "preprocessor_config.json",
        "pipeline.py",
        "images.py",
        "README.md",
        "loss_curves.png",
        "all_results.json",
    ):
        assert expected in files
    assert not [name for name in files if name.startswith(("checkpoint-", "runs", ".")) or name.endswith(".bin")]


def test_push_uploads_a_loadable_captioner_and_no_secret(model_dir, hub, caplog, capsys):
    with caplog.at_level(logging.DEBUG):
        commit = push_to_hub(model_dir, REPO_ID, token=TOKEN, private=True, commit_message="tiny")
    assert commit.commit_url.startswith(f"https://huggingface.co/{REPO_ID}")
    assert hub.create_repo == [{"repo_id": REPO_ID, "token": TOKEN, "private": True, "exist_ok": True}]
    (upload,) = hub.upload_folder
    assert upload["repo_id"] == REPO_ID and upload["commit_message"] == "tiny" and upload["token"] == TOKEN
    assert upload["folder_path"] == model_dir  # no staging copy: huggingface_hub uploads the checked files only
    assert "results [best].json" in uploaded_files(hub.uploaded)
    assert uploaded_files(hub.uploaded) == upload_files(model_dir)
    for name in uploaded_files(hub.uploaded):
        assert TOKEN.encode() not in (hub.uploaded / name).read_bytes(), name
    captured = capsys.readouterr()
    assert TOKEN not in caplog.text + captured.out + captured.err

    image = PIL.Image.fromarray(skimage.data.astronaut())
    remote = pipeline("image-to-text", model=str(hub.uploaded), trust_remote_code=True, device="cpu")
    assert remote(image) == captioning_pipeline(model_dir, device="cpu")(image)


@pytest.mark.parametrize("secret", [TOKEN, "hf_" + "x" * 34], ids=["the-token", "token-shaped-string"])
def test_push_refuses_files_that_hold_a_token(model_dir, hub, tmp_path, secret):
    folder = shutil.copytree(model_dir, tmp_path / "leaky")
    (folder / "notes.txt").write_text(f"login with {secret}\n")
    with pytest.raises(SecretInUploadError, match="notes.txt") as error:
        push_to_hub(str(folder), REPO_ID, token=TOKEN)
    assert TOKEN not in str(error.value) and secret not in str(error.value)
    assert hub.create_repo == [] and hub.upload_folder == []


def test_push_needs_a_saved_model(tmp_path, hub):
    with pytest.raises(FileNotFoundError, match="config.json"):
        push_to_hub(str(tmp_path), REPO_ID)
