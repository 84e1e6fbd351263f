"""Shared fixtures: a small synthetic COCO-layout set and tiny local models, built once per session."""

import json
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def synthetic_coco(tmp_path_factory) -> str:
    """40 training and 12 validation synthetic images (5 captions each) in the COCO 2017 layout."""
    from vitgpt2.offline.synthetic import write_synthetic_coco

    return write_synthetic_coco(str(tmp_path_factory.mktemp("coco")), num_train=40, num_val=12, image_size=48, seed=1)


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory, synthetic_coco) -> tuple[str, str]:
    """(encoder folder, decoder folder): a 32 px ViT and a GPT-2 with a BPE trained on the captions."""
    from vitgpt2.offline.synthetic import all_captions
    from vitgpt2.offline.tiny_models import write_tiny_models

    root = str(tmp_path_factory.mktemp("models"))
    return write_tiny_models(root, all_captions(synthetic_coco), image_size=32, hidden_size=64, num_layers=2)


@pytest.fixture(scope="session")
def captioner(tiny_models):
    """(model, tokenizer): the tiny encoder and decoder joined, special tokens set. Copy the model to change it."""
    from transformers import AutoTokenizer

    from vitgpt2.model import configure_special_tokens, load_captioner

    encoder, decoder = tiny_models
    tokenizer = AutoTokenizer.from_pretrained(decoder)
    model = load_captioner(encoder=encoder, decoder=decoder)
    configure_special_tokens(model, tokenizer, max_length=12, num_beams=2)
    return model, tokenizer


@pytest.fixture(scope="session")
def train_argv(synthetic_coco, tiny_models):
    """`train_argv(output_dir, data=synthetic_coco)`: run_captioning.py arguments that train the tiny models."""
    encoder, decoder = tiny_models

    def build(output_dir, data: str = synthetic_coco) -> list[str]:
        return [
            "--encoder_model_name_or_path", encoder, "--decoder_model_name_or_path", decoder, "--coco_dir", data,
            "--output_dir", str(output_dir), "--do_train", "--report_to", "none",
        ]  # fmt: skip

    return build


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory) -> str:
    """A CLIP model + processor folder in hub layout, random weights, for CLIPScore."""
    from vitgpt2.offline.tiny_models import write_tiny_clip

    captions = ["a red circle on the left", "two dogs on a beach", "a man rides a wave", "a cup of coffee"]
    return write_tiny_clip(str(tmp_path_factory.mktemp("clip")), captions * 5)


@pytest.fixture(scope="session")
def minilm() -> str:
    from vitgpt2.offline.models import minilm_path

    return minilm_path()


def _source_rows(images: list, captions: list[list[str]] | None = None):
    """Rows as the sources give them (`vitgpt2.data.sources.FEATURES`): image i is `images[i]` (a path), id "i"."""
    from datasets import Dataset

    from vitgpt2.data.sources import FEATURES

    captions = captions if captions is not None else [["a picture"]] * len(images)
    columns = {
        "image": images,
        "captions": captions,
        "image_id": [str(i) for i in range(len(images))],
        "numeric_id": list(range(len(images))),
        "captions_left_out": [0] * len(images),
        "file_name": [os.path.basename(str(image)) for image in images],
    }
    return Dataset.from_dict(columns, features=FEATURES)


@pytest.fixture(scope="session")
def source_rows():
    """`source_rows(images, captions=None)`: a split as the sources give it, one row per image path."""
    return _source_rows


@pytest.fixture
def cached_split():
    """Builds a preprocessed-like split without images or a tokenizer: image i has pixels all equal to i,
    caption ids [10 * i + k] and the given references."""
    import numpy as np
    from datasets import Array3D, Dataset, Features, Sequence, Value

    def build(captions: list[list[str]], image_ids: list[str]):
        features = Features(
            {
                "pixel_values": Array3D(shape=(3, 2, 2), dtype="uint8"),
                "caption_ids": Sequence(Sequence(Value("int32"))),
                "captions": Sequence(Value("string")),
                "image_id": Value("string"),
                "numeric_id": Value("int64"),
                "file_name": Value("string"),
            }
        )
        columns = {
            "pixel_values": [np.full((3, 2, 2), i, dtype=np.uint8) for i in range(len(captions))],
            "caption_ids": [[[10 * i + k] for k in range(len(refs))] for i, refs in enumerate(captions)],
            "captions": captions,
            "image_id": image_ids,
            "numeric_id": [None] * len(image_ids),
            "file_name": [f"{image_id}.jpg" for image_id in image_ids],
        }
        return Dataset.from_dict(columns, features=features)

    return build


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """Replaces the Hub calls: records them, and copies the files `upload_folder` would send (those its
    `allow_patterns` select, as huggingface_hub selects them) to `hub.uploaded`."""
    import shutil
    from types import SimpleNamespace

    from huggingface_hub import HfApi
    from huggingface_hub.utils import filter_repo_objects

    calls = SimpleNamespace(create_repo=[], upload_folder=[], uploaded=tmp_path / "uploaded")

    def create_repo(self, repo_id, **kwargs):
        calls.create_repo.append({"repo_id": repo_id, **kwargs})
        return SimpleNamespace(repo_id=repo_id)

    def upload_folder(self, **kwargs):
        calls.upload_folder.append(kwargs)
        root = kwargs["folder_path"]
        names = [
            os.path.relpath(os.path.join(folder, name), root) for folder, _, files in os.walk(root) for name in files
        ]
        for name in filter_repo_objects(names, allow_patterns=kwargs.get("allow_patterns")):
            os.makedirs(os.path.dirname(calls.uploaded / name), exist_ok=True)
            shutil.copy2(os.path.join(root, name), calls.uploaded / name)
        return SimpleNamespace(commit_url=f"https://huggingface.co/{kwargs['repo_id']}/commit/0")

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    return calls


def _save_tiny_captioner(folder, image_size: int = 32) -> str:
    """A saved captioner (model, tokenizer, image processor) with random weights, in `<folder>/captioner`.

    At the usual init scale a random decoder emits EOS first, so every caption would be empty; weights three
    times larger give captions that differ from image to image, which makes identity checks meaningful.
    """
    import torch
    from transformers import AutoImageProcessor, AutoTokenizer

    from vitgpt2.model import configure_special_tokens, load_captioner
    from vitgpt2.offline.tiny_models import write_tiny_models

    captions = ["a red circle on the left", "two blue squares at the top", "three green triangles near the bottom"]
    sizes = {"image_size": image_size, "hidden_size": 64, "num_layers": 2, "vocab_size": 300}
    encoder, decoder = write_tiny_models(os.path.join(folder, "parts"), captions * 4, **sizes)
    model = load_captioner(encoder=encoder, decoder=decoder)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "position_embeddings" not in name:  # already at scale 1 (sin-cos): tripled, they drown the image
                parameter.mul_(3)
    tokenizer = AutoTokenizer.from_pretrained(decoder)
    image_processor = AutoImageProcessor.from_pretrained(encoder)
    configure_special_tokens(model, tokenizer, max_length=12)
    output_dir = os.path.join(folder, "captioner")
    for component in (model, tokenizer, image_processor):
        component.save_pretrained(output_dir)
    return output_dir


@pytest.fixture(scope="session")
def make_tiny_captioner():
    """`make_tiny_captioner(folder)` saves a fresh random captioner there, for tests that change the folder."""
    return _save_tiny_captioner


@pytest.fixture(scope="session")
def tiny_captioner_dir(tmp_path_factory) -> str:
    """A saved random captioner shared by the tests that only read it."""
    return _save_tiny_captioner(tmp_path_factory.mktemp("captioner"))


@pytest.fixture(scope="session")
def tiny_captioner_pipe(tiny_captioner_dir):
    from vitgpt2.inference import captioning_pipeline

    return captioning_pipeline(tiny_captioner_dir, device="cpu")


_SDPA_MASKS_SEEN = []


def _record_sdpa_masks(graph_module, example_inputs):
    for node in graph_module.graph.nodes:
        if "scaled_dot_product_attention" in str(node.target):
            mask = node.kwargs.get("attn_mask")
            _SDPA_MASKS_SEEN.append(None if mask is None else tuple(mask.meta["example_value"].shape))
    return graph_module.forward  # run the graph as traced


@pytest.fixture
def sdpa_masks_compiled():
    """(name, masks): a torch.compile backend registered under `name` that records the `attn_mask` of each SDPA
    call in the graphs it gets (None, or the mask's shape) into `masks`."""
    import torch

    name = "vitgpt2_sdpa_mask_probe"
    if name not in torch._dynamo.list_backends(exclude_tags=()):
        torch._dynamo.register_backend(_record_sdpa_masks, name=name)
    _SDPA_MASKS_SEEN.clear()
    torch._dynamo.reset()
    yield name, _SDPA_MASKS_SEEN
    torch._dynamo.reset()


@pytest.fixture(scope="session")
def ce_captioner(tmp_path_factory, train_argv) -> str:
    """A captioner trained with cross-entropy on the synthetic set (tiny models, 60 steps): where SCST starts."""
    import run_captioning

    output = tmp_path_factory.mktemp("ce") / "captioner"
    argv = [
        *train_argv(output), "--num_train_epochs", "12", "--per_device_train_batch_size", "8",
        "--learning_rate", "2e-3", "--save_strategy", "no", "--seed", "0", "--max_target_length", "16",
    ]  # fmt: skip
    run_captioning.main(argv)
    return str(output)


# Runs where vitgpt2 cannot be imported: an isolated interpreter (-I: no cwd, no PYTHONPATH, no user site) whose
# import system also refuses vitgpt2, in case it is installed in the environment.
ISOLATED_PIPELINE_SCRIPT = """
import json, sys
from importlib.abc import MetaPathFinder

class NoVitgpt2(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "vitgpt2" or name.startswith("vitgpt2."):
            raise ImportError("vitgpt2 is blocked in this test")

sys.meta_path.insert(0, NoVitgpt2())
try:
    import vitgpt2
except ImportError:
    pass
else:
    raise SystemExit("vitgpt2 should not be importable here")
# Packages the caller also wants absent (`blocked=`): None in sys.modules reads as "not installed" to an import
# and to importlib.util.find_spec alike, so transformers takes them for missing.
for name in filter(None, sys.argv[1].split(",")):
    sys.modules[name] = None
sys.argv = sys.argv[1:]

from transformers import pipeline

folders, images = json.loads(sys.argv[1]), sys.argv[2:]
results = {}
for folder in folders:
    pipe = pipeline("image-to-text", model=folder, trust_remote_code=True, device="cpu")
    results[folder] = {
        "single": pipe(images[0]), "batch": pipe(images, batch_size=2), "beams": pipe(images[0], num_beams=2)
    }
print("RESULT " + json.dumps(results))
"""


@pytest.fixture
def isolated_pipeline(tmp_path):
    """`isolated_pipeline(folders, images, blocked=())`: {folder: {"single", "batch", "beams"}} captions by
    `pipeline("image-to-text", trust_remote_code=True)` in one process where vitgpt2 cannot be imported, nor the
    packages named in `blocked`."""
    import json
    import subprocess
    import sys

    def run(folders, images, blocked=()) -> dict:
        folders = [str(folder) for folder in folders]
        env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
        env.update(HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"))
        command = [
            sys.executable,
            "-I",
            "-c",
            ISOLATED_PIPELINE_SCRIPT,
            ",".join(blocked),
            json.dumps(folders),
            *images,
        ]
        result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
        return json.loads(result.stdout.split("RESULT ", 1)[1])

    return run


@pytest.fixture(scope="session")
def trained_captioner(tmp_path_factory, train_argv) -> str:
    """The tiny models trained (300 steps, ~10 s) until their captions follow the pictures and read as sentences:
    for checks that mean something only where the model is sure of its words (int8 agreement, the demo page)."""
    import run_captioning

    output = tmp_path_factory.mktemp("trained") / "captioner"
    argv = [*train_argv(output), "--num_train_epochs", "30", "--captions_per_image", "5", "--per_device_train_batch_size",
            "4", "--learning_rate", "2e-3", "--save_strategy", "no", "--seed", "0", "--max_target_length", "16"]  # fmt: skip
    run_captioning.main(argv)
    return str(output)


def write_img2dataset_shard(path, samples, caption_in: str = "both") -> str:
    """A tar shard as img2dataset writes one: per (key, JPEG bytes, captions) sample, KEY.jpg, KEY.txt (the captions,
    one per line) and KEY.json (its caption or captions, with img2dataset's url and status fields)."""
    import io
    import tarfile

    def add(tar, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))

    with tarfile.open(path, "w") as tar:
        for key, image, captions in samples:
            add(tar, f"{key}.jpg", image)
            if caption_in in ("both", "txt"):
                add(tar, f"{key}.txt", "\n".join(captions).encode())
            if caption_in in ("both", "json"):
                meta = {"key": key, "url": f"http://example.com/{key}.jpg", "status": "success", "width": 48}
                meta.update({"caption": captions[0]} if len(captions) == 1 else {"captions": captions})
                add(tar, f"{key}.json", json.dumps(meta, ensure_ascii=False).encode())
    return str(path)


@pytest.fixture(scope="session")
def img2dataset_shard():
    """`img2dataset_shard(path, [(key, jpeg_bytes, captions), ...], caption_in="both"|"txt"|"json")`."""
    return write_img2dataset_shard


@pytest.fixture(scope="session")
def coco_shards(tmp_path_factory, synthetic_coco) -> str:
    """synthetic_coco's 40 training images as 4 img2dataset-style shards of 10 (JPEG files as they are, all five
    captions in the json); returns their brace pattern."""
    from vitgpt2.data.sources import load_coco

    rows = load_coco(synthetic_coco, "train")
    samples = [
        (f"{i:09d}", open(image["path"], "rb").read(), captions)
        for i, (image, captions) in enumerate(zip(rows["image"], rows["captions"]))
    ]
    folder = tmp_path_factory.mktemp("coco_shards")
    for shard in range(4):
        write_img2dataset_shard(folder / f"coco-{shard:04d}.tar", samples[shard::4], caption_in="json")
    return str(folder / "coco-{0000..0003}.tar")


def kill_process_tree(process) -> None:
    """SIGKILL to a launched process and everything under it: torch's launcher starts each rank in a session of its
    own, out of reach of a signal to the launcher's process group. Waits for the process itself."""
    import signal
    import subprocess

    import psutil

    try:
        tree = [process.pid, *(child.pid for child in psutil.Process(process.pid).children(recursive=True))]
    except psutil.NoSuchProcess:
        tree = []
    for pid in tree:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        pass


@pytest.fixture(scope="session")
def kill_tree():
    """`kill_tree(popen)`: see `kill_process_tree`."""
    return kill_process_tree
