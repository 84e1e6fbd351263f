"""`datasets.map` preprocessing: each image decoded and resized ONCE to uint8 at the encoder's size, each
caption tokenised and ended with EOS. Cached on disk by fingerprint, so a second run starts at once.

uint8 is a quarter of float32 `pixel_values`, and one row per image stores the pixels once rather than once per
caption (sizes measured by bench/bench_preprocessing.py).
"""

import hashlib
import logging
import os
import typing
from typing import Literal

import numpy as np
from datasets import Array3D, Dataset, Features, Sequence, Value

from ..remote_code.images import ImageLoadError, encoder_resample, encoder_size, load_rgb, resize_to_uint8
from .errors import BadImageError, DataSourceError

logger = logging.getLogger(__name__)

BadImagePolicy = Literal["error", "skip"]
# Why a row is left out, in the cached `problem` column ("" for a usable row); the `reason` column says more.
NO_CAPTIONS = "no captions"
UNREADABLE = "unreadable"


def tokenize_captions(tokenizer, captions: list[str], max_target_length: int) -> tuple[list[list[int]], int]:
    """Token ids of each caption, truncated to leave room for EOS, then EOS, which teaches the model to stop; and how
    many captions were cut, for the run to count (tokenizing one token past the room finds them)."""
    if not captions:
        return [], 0
    ids = tokenizer(captions, add_special_tokens=False, truncation=True, max_length=max_target_length)["input_ids"]
    cut = sum(len(caption) == max_target_length for caption in ids)
    return [caption[: max_target_length - 1] + [tokenizer.eos_token_id] for caption in ids], cut


def decode_pixels(image, size, resample) -> tuple[np.ndarray | None, str]:
    """(uint8 pixels, "") or (None, why the image cannot be read): the cache's decoding, and the stream's
    (`data.streaming`), so that both give the same pixels."""
    try:
        return resize_to_uint8(load_rgb(image, size), size, resample), ""
    except (ImageLoadError, OSError, ValueError) as error:
        return None, str(error)


def _encode_batch(batch, size, resample, tokenizer, max_target_length, image_files=None):
    # Never raises for a bad image: every problem of the split is found in one pass (and the pass is cached),
    # then `preprocess` applies the --bad_images policy to all of them at once.
    pixels, caption_ids, captions_cut, problems, reasons = [], [], [], [], []
    for image, captions in zip(batch["image"], batch["captions"]):
        array, error = decode_pixels(image, size, resample)
        pixels.append(array if array is not None else np.zeros((3, *size), dtype=np.uint8))
        problems.append(UNREADABLE if error else ("" if captions else NO_CAPTIONS))
        reasons.append(error)
        ids, cut = tokenize_captions(tokenizer, captions, max_target_length)
        caption_ids.append(ids)
        captions_cut.append(cut)
    return {
        "pixel_values": pixels,
        "caption_ids": caption_ids,
        "captions_cut": captions_cut,
        "problem": problems,
        "reason": reasons,
    }


def _unreadable_error(
    rows: Dataset, problems: np.ndarray, unreadable: np.ndarray, desc: str, shown: int = 5
) -> BadImageError:
    named = [
        f"image {row['image_id']} ({row['file_name']}) cannot be used: {row['reason']}"
        for row in rows.select(unreadable[:shown])
    ]
    more = f"; and {len(unreadable) - shown} more" if len(unreadable) > shown else ""
    return BadImageError(
        f"{desc}: {len(unreadable)} of {len(problems)} images cannot be used: "
        + "; ".join(named)
        + more
        + ". Fix or remove these files, or pass --bad_images skip to leave them out (they are counted and logged)."
    )


def _left_out_summary(encoded: Dataset, problems: np.ndarray, unreadable: np.ndarray, desc: str) -> str:
    """One line: how many images were left out and why, naming the first unreadable one."""
    summary = (
        f"{desc}: left out {int((problems != '').sum())} of {len(problems)} images "
        f"({len(unreadable)} unreadable, {int((problems == NO_CAPTIONS).sum())} without captions)"
    )
    if len(unreadable):
        first = encoded[int(unreadable[0])]
        summary += f"; first: image {first['image_id']} ({first['file_name']}) {UNREADABLE}: {first['reason']}"
    return summary


def image_files_signature(dataset: Dataset) -> str:
    """A digest of the size and modification time of every image file the rows name (one `stat` each).

    `datasets` keys its cache on the rows, which hold image paths, not pixels: without this, a file repaired or
    damaged after the first run would keep its old cached pixels (or its old error). Images stored as bytes in the
    rows are already part of that key."""
    images = dataset.select_columns(["image"]).with_format("arrow")["image"]
    images = images.combine_chunks() if hasattr(images, "combine_chunks") else images
    paths, stored = images.field("path").to_pylist(), images.field("bytes").is_valid().to_pylist()
    digest = hashlib.blake2b(digest_size=16)
    for path, has_bytes in zip(paths, stored):
        if path and not has_bytes:
            try:
                status = os.stat(path)
                digest.update(f"{path}\0{status.st_size}\0{status.st_mtime_ns}\n".encode())
            except OSError:
                digest.update(f"{path}\0missing\n".encode())
    return digest.hexdigest()


def preprocess(
    dataset: Dataset,
    image_processor,
    tokenizer,
    max_target_length: int = 64,
    num_proc: int | None = None,
    load_from_cache_file: bool = True,
    bad_images: BadImagePolicy = "error",
    desc: str = "preprocessing",
) -> Dataset:
    """Rows {image, captions, image_id, file_name} -> {pixel_values (uint8 C,H,W), caption_ids, captions_cut,
    captions, image_id, file_name}; images that cannot be decoded or have no caption are counted and left out."""
    if bad_images not in typing.get_args(BadImagePolicy):
        raise ValueError(f"bad_images must be one of {typing.get_args(BadImagePolicy)}, not {bad_images!r}")
    if len(dataset) == 0:
        raise DataSourceError(f"{desc}: the dataset has no images; check the data source and its split")
    size = encoder_size(image_processor)
    features = Features(
        {
            "pixel_values": Array3D(shape=(3, *size), dtype="uint8"),
            "caption_ids": Sequence(Sequence(Value("int32"))),
            "captions": Sequence(Value("string")),
            "image_id": Value("string"),
            "numeric_id": Value("int64"),
            "file_name": Value("string"),
            "captions_left_out": Value("int32"),
            "captions_cut": Value("int32"),  # captions longer than max_target_length, cut to fit
            "problem": Value("string"),
            "reason": Value("string"),
        }
    )
    encoded = dataset.map(
        _encode_batch,
        batched=True,
        batch_size=64,
        fn_kwargs={
            "size": size,
            "resample": int(encoder_resample(image_processor)),
            "tokenizer": tokenizer,
            "max_target_length": max_target_length,
            "image_files": image_files_signature(dataset),  # part of the cache key only
        },
        remove_columns=["image"],
        features=features,
        num_proc=num_proc,
        load_from_cache_file=load_from_cache_file,
        desc=desc,
    )
    problems = np.asarray(encoded["problem"], dtype=object)
    if (problems == "").all():
        return encoded.remove_columns(["problem", "reason"])
    rows = encoded.select_columns(["image_id", "file_name", "reason"])
    unreadable = np.flatnonzero(problems == UNREADABLE)
    if bad_images == "error" and len(unreadable):
        raise _unreadable_error(rows, problems, unreadable, desc)
    summary = _left_out_summary(rows, problems, unreadable, desc)
    if (problems != "").all():
        raise BadImageError(f"no usable image: {summary}. Check the image folder and the captions file.")
    logger.warning(summary)
    return encoded.select(np.flatnonzero(problems == "")).remove_columns(["problem", "reason"])
