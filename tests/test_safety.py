"""Loading what users hand in is safe by default: no model code runs unless asked (`--trust_remote_code`), and
image paths from annotation files or dataset columns cannot leave their image root."""

import json
import os

import pytest
from datasets import Dataset

import run_captioning
from vitgpt2 import encoders
from vitgpt2.arguments import ModelArguments, parse_args
from vitgpt2.data.sources import DataSourceError, load_coco, load_karpathy, safe_join, to_image_rows
from vitgpt2.model import load_captioner

# --- trust_remote_code ----------------------------------------------------------------------------------


def test_trust_remote_code_is_off_unless_asked(synthetic_coco):
    assert ModelArguments().trust_remote_code is False
    model_args, *_ = parse_args(["--coco_dir", synthetic_coco, "--output_dir", "unused"])
    assert model_args.trust_remote_code is False


@pytest.fixture
def remote_code_model(tmp_path) -> tuple[str, str]:
    """(folder, marker): a model folder whose config names custom code that writes `marker` when imported."""
    folder, marker = tmp_path / "remote_code_model", tmp_path / "code_ran"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "x-gpt", "auto_map": {"AutoConfig": "x.XConfig"}}))
    (folder / "x.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    return str(folder), str(marker)


def test_load_captioner_refuses_custom_code_by_default(remote_code_model, tiny_models):
    folder, marker = remote_code_model
    encoder, _ = tiny_models
    with pytest.raises(ValueError, match="trust_remote_code"):
        load_captioner(encoder=encoder, decoder=folder)
    assert not os.path.exists(marker)


def test_run_captioning_passes_trust_remote_code_false_everywhere(monkeypatch, synthetic_coco, tiny_models, tmp_path):
    encoder, decoder = tiny_models
    seen = []

    def spy(original):
        def call(*args, **kwargs):
            seen.append((getattr(original, "__qualname__", original), kwargs.get("trust_remote_code", "missing")))
            return original(*args, **kwargs)

        return call

    class Stop(Exception):
        pass

    def stop(**kwargs):
        seen.append(("load_captioner", kwargs.get("trust_remote_code", "missing")))
        raise Stop  # the model is the last thing loaded with these arguments

    monkeypatch.setattr(  # vitgpt2.encoders.load_image_processor's
        encoders.AutoImageProcessor, "from_pretrained", spy(encoders.AutoImageProcessor.from_pretrained)
    )
    monkeypatch.setattr(
        run_captioning.AutoTokenizer, "from_pretrained", spy(run_captioning.AutoTokenizer.from_pretrained)
    )
    monkeypatch.setattr(run_captioning, "load_captioner", stop)
    argv = [
        "--encoder_model_name_or_path", encoder, "--decoder_model_name_or_path", decoder,
        "--coco_dir", synthetic_coco, "--output_dir", str(tmp_path), "--do_eval", "--max_eval_samples", "2",
        "--metrics", "bleu", "--report_to", "none",
    ]  # fmt: skip
    with pytest.raises(Stop):
        run_captioning.main(argv)
    assert len(seen) == 3 and all(trust is False for _, trust in seen), seen


# --- image paths stay under their root ------------------------------------------------------------------

ESCAPES = ["../outside.jpg", "../../etc/passwd", "/etc/passwd", "a/../../outside.jpg"]


def _coco_with_file_name(root, file_name: str) -> str:
    for folder in ("annotations", "train2017", "val2017"):
        os.makedirs(os.path.join(root, folder), exist_ok=True)
    data = {"images": [{"id": 1, "file_name": file_name}], "annotations": [{"image_id": 1, "caption": "x"}]}
    with open(os.path.join(root, "annotations", "captions_train2017.json"), "w") as f:
        json.dump(data, f)
    return str(root)


@pytest.mark.parametrize("file_name", ESCAPES)
def test_coco_file_names_cannot_escape(file_name, tmp_path):
    with pytest.raises(DataSourceError, match="outside its image root"):
        load_coco(_coco_with_file_name(tmp_path / "coco", file_name), "train", cache_dir=str(tmp_path / "cache"))


@pytest.mark.parametrize("filepath, filename", [("..", "x.jpg"), ("val2014", "../../x.jpg"), ("/etc", "passwd")])
def test_karpathy_paths_cannot_escape(filepath, filename, tmp_path):
    split_file = tmp_path / "dataset_coco.json"
    image = {"filepath": filepath, "filename": filename, "split": "train", "sentences": [{"raw": "x"}]}
    split_file.write_text(json.dumps({"images": [image]}))
    with pytest.raises(DataSourceError, match="outside its image root"):
        load_karpathy(str(split_file), str(tmp_path / "coco"), "train", cache_dir=str(tmp_path / "cache"))


@pytest.mark.parametrize("name", ESCAPES)
def test_image_root_file_names_cannot_escape(name, tmp_path):
    table = Dataset.from_dict({"image": ["fine.jpg", name], "captions": ["x", "y"]})
    with pytest.raises(DataSourceError, match="outside its image root"):
        to_image_rows(table, "image", "captions", image_root=str(tmp_path))


def test_names_are_checked_and_the_users_links_are_followed(tmp_path):
    disk, root = tmp_path / "disk" / "train2014", tmp_path / "coco"
    disk.mkdir(parents=True)
    (disk / "a.jpg").touch()
    root.mkdir()
    (root / "train2014").symlink_to(disk)  # COCO images on another disk, linked into the COCO folder
    path = safe_join(str(root), "train2014/a.jpg")
    assert path == os.path.join(str(root), "train2014", "a.jpg") and os.path.isfile(path)
    with pytest.raises(DataSourceError, match="outside"):
        safe_join(str(root), "train2014/../../disk/train2014/a.jpg")
