"""Shared fixtures: a small synthetic COCO-layout set and tiny local models, built once per session."""

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def synthetic_coco(tmp_path_factory) -> str:
    """40 training and 12 validation synthetic images (5 captions each) in the COCO 2017 layout."""
    from vitgpt2.synthetic import write_synthetic_coco

    return write_synthetic_coco(str(tmp_path_factory.mktemp("coco")), num_train=40, num_val=12, image_size=48, seed=1)


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory, synthetic_coco) -> tuple[str, str]:
    """(encoder folder, decoder folder): a 32 px ViT and a GPT-2 with a BPE trained on the captions."""
    from vitgpt2.synthetic import all_captions
    from vitgpt2.tiny_models import write_tiny_models

    root = str(tmp_path_factory.mktemp("models"))
    return write_tiny_models(root, all_captions(synthetic_coco), image_size=32, hidden_size=64, num_layers=2)


@pytest.fixture(scope="session")
def minilm() -> str:
    from vitgpt2.offline_models import minilm_path

    return minilm_path()
