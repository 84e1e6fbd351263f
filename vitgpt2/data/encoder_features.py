"""Frozen-encoder training without the encoder: its output for every training image, computed once and cached.

When nothing in the encoder learns, running it at every step of every epoch recomputes the same numbers. They are
computed once here (in eval mode, as a frozen encoder should run: no dropout, no stochastic depth) and stored beside
the uint8 pixel cache as one `.npy` array (images, tokens, hidden), in bf16 by default (as 16-bit words: numpy has
no bf16), memory-mapped by every DataLoader worker.

The cache's name is a fingerprint of what the numbers depend on: the encoder's weights, the image processor
(rescale, mean, std), the pixel cache (its datasets fingerprint, which changes with the images and their size) and
the stored dtype. Anything else gets a new cache; a run killed while writing leaves a `.partial` file only.
"""

import hashlib
import json
import logging
import os
from dataclasses import dataclass

import numpy as np
import torch
from datasets import Dataset
from tqdm.auto import tqdm

from ..remote_code.images import PixelNormalizer

logger = logging.getLogger(__name__)

DTYPES = {"bfloat16": (torch.bfloat16, np.int16), "float32": (torch.float32, np.float32)}


def check_dtype(dtype: str) -> None:
    if dtype not in DTYPES:
        raise ValueError(f"--encoder_features_dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")


def fingerprint(encoder, image_processor, dataset: Dataset, dtype: str) -> str:
    digest = hashlib.blake2b(digest_size=16)
    for name, tensor in sorted(encoder.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu").contiguous().view(torch.uint8).numpy().tobytes())
    normalizer = PixelNormalizer(image_processor)
    for value in (normalizer.scale, normalizer.mean.tolist(), normalizer.std.tolist(), dataset._fingerprint, dtype):
        digest.update(json.dumps(value).encode())
    return digest.hexdigest()


def as_states(array: np.ndarray) -> torch.Tensor:
    """float32 encoder states from stored rows (bf16 words or float32)."""
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    return tensor.view(torch.bfloat16).float() if tensor.dtype == torch.int16 else tensor


@dataclass
class EncoderFeatures:
    """The cached encoder states of a split's image rows; `path` is None when they live in memory only."""

    array: np.ndarray
    path: str | None

    def __len__(self) -> int:
        return len(self.array)

    def __getitem__(self, row: int) -> np.ndarray:
        return np.asarray(self.array[row])

    @property
    def bytes_per_image(self) -> int:
        return int(self.array[0].nbytes) if len(self.array) else 0


def _cache_folder(dataset: Dataset) -> str | None:
    files = dataset.cache_files
    return os.path.join(os.path.dirname(files[0]["filename"]), "encoder_features") if files else None


def _encode(encoder, normalize, pixels: np.ndarray) -> torch.Tensor:
    parameter = next(encoder.parameters())
    pixel_values = normalize(torch.from_numpy(pixels.astype(np.uint8, copy=False)))
    return encoder(pixel_values=pixel_values.to(parameter.device, parameter.dtype)).last_hidden_state


def _compute(encoder, dataset: Dataset, normalize, out: np.ndarray, dtype, batch_size: int) -> None:
    pixels = dataset.select_columns(["pixel_values"]).with_format("numpy")
    for start in tqdm(range(0, len(dataset), batch_size), desc="encoder features", unit="batch"):
        states = _encode(encoder, normalize, pixels[start : start + batch_size]["pixel_values"]).to(dtype).cpu()
        out[start : start + len(states)] = states.view(torch.int16).numpy() if dtype == torch.bfloat16 else states


@torch.no_grad()
def encoder_features(
    encoder, image_processor, dataset: Dataset, dtype: str = "bfloat16", batch_size: int = 32
) -> EncoderFeatures:
    """The encoder's `last_hidden_state` for every row of `dataset` (the preprocessed uint8 cache), from the
    fingerprinted cache beside it when there, else computed on the encoder's device and written there (kept in
    memory for an in-memory dataset)."""
    check_dtype(dtype)
    torch_dtype, numpy_dtype = DTYPES[dtype]
    folder = _cache_folder(dataset)
    path = None
    if folder is not None:
        path = os.path.join(folder, f"{fingerprint(encoder, image_processor, dataset, dtype)}.npy")
        if os.path.exists(path):
            logger.info("Encoder features: loading the cache %s", path)
            return EncoderFeatures(np.load(path, mmap_mode="r"), path)
    training = encoder.training
    encoder.eval()
    normalize = PixelNormalizer(image_processor)
    try:
        first = np.asarray(dataset.select_columns(["pixel_values"]).with_format("numpy")[0:1]["pixel_values"])
        shape = (len(dataset), *_encode(encoder, normalize, first).shape[1:])
        if path is None:
            array = np.empty(shape, dtype=numpy_dtype)
            _compute(encoder, dataset, normalize, array, torch_dtype, batch_size)
        else:
            os.makedirs(folder, exist_ok=True)
            partial = f"{path}.{os.getpid()}.partial"
            array = np.lib.format.open_memmap(partial, mode="w+", dtype=numpy_dtype, shape=shape)
            _compute(encoder, dataset, normalize, array, torch_dtype, batch_size)
            array.flush()
            del array
            os.replace(partial, path)  # atomic: a reader sees the whole cache or none
            array = np.load(path, mmap_mode="r")
    finally:
        encoder.train(training)
    features = EncoderFeatures(array, path)
    logger.info(
        "Encoder features: %d images x %s in %s, %.1f KB per image, %.2f GB in all, %s",
        len(features), "x".join(map(str, shape[1:])), dtype, features.bytes_per_image / 1024,
        features.bytes_per_image * len(features) / 1e9, f"cached at {path}" if path else "in memory",
    )  # fmt: skip
    return features
