"""Views over the one-row-per-image cache that the Trainer iterates, without copying pixels.

`CaptionGroups` is the training view: each item is an image with up to K of its captions (K=1: one
(image, caption) pair per item, the usual recipe; K=5 on COCO: one item per image, encoded once, its five
captions decoded against the repeated encoder states). Either way an epoch visits every caption once.
`ImagesWithReferences` is the evaluation view: one item per image with all its references, so captions are
generated once per image and scored against every reference.
"""

from functools import cached_property

import numpy as np
import PIL.Image
import torch
from datasets import Dataset


class _CachedRows:
    """Reads (uint8 pixels, caption ids) of a row through Arrow: datasets' numpy formatter would widen
    the uint8 pixels to int64, eight times the memory and copying for every item."""

    def __init__(self, dataset: Dataset, pixels: bool = True):
        self.pixels = pixels
        columns = ["pixel_values", "caption_ids"] if pixels else ["caption_ids"]
        self.table = dataset.select_columns(columns).with_format("arrow")

    def __call__(self, row: int) -> tuple[np.ndarray | None, list[list[int]]]:
        record = self.table[row]
        pixels = record["pixel_values"].combine_chunks().to_numpy(zero_copy_only=False)[0] if self.pixels else None
        return pixels, record["caption_ids"].to_pylist()[0]


def caption_counts(dataset: Dataset) -> np.ndarray:
    """How many captions each image row holds."""
    return np.fromiter((len(ids) for ids in dataset["caption_ids"]), dtype=np.int64, count=len(dataset))


def check_captions_per_image(captions_per_image: int) -> None:
    if captions_per_image < 1:
        raise ValueError(f"--captions_per_image must be at least 1, not {captions_per_image}")


class CaptionGroups(torch.utils.data.Dataset):
    """With `features` (the frozen encoder's cached output per image row), items carry those as `encoder_states`
    instead of pixels, and the pixels are not read."""

    def __init__(self, dataset: Dataset, captions_per_image: int = 1, features=None):
        check_captions_per_image(captions_per_image)
        if features is not None and len(features) != len(dataset):
            raise ValueError(f"{len(features)} cached encoder outputs for {len(dataset)} images")
        self.features = features
        self.read = _CachedRows(dataset, pixels=features is None)
        self.captions_per_image = captions_per_image
        counts = caption_counts(dataset)
        groups = -(-counts // captions_per_image)  # ceil: the last group of an image may be smaller
        self.rows = np.repeat(np.arange(len(dataset)), groups)
        self.starts = np.concatenate([np.arange(n) * captions_per_image for n in groups]) if len(groups) else groups
        self.num_captions = int(counts.sum())

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict:
        row, start = int(self.rows[index]), int(self.starts[index])
        pixels, caption_ids = self.read(row)
        images = {"pixel_values": pixels} if self.features is None else {"encoder_states": self.features[row]}
        return {**images, "caption_ids": caption_ids[start : start + self.captions_per_image]}


class ImagesWithReferences(torch.utils.data.Dataset):
    def __init__(self, dataset: Dataset):
        self.dataset = dataset
        self.read = _CachedRows(dataset)
        self._metadata = dataset.select_columns(["captions", "image_id", "numeric_id", "file_name"])

    def __len__(self) -> int:
        return len(self.dataset)

    @cached_property
    def num_captions(self) -> int:
        return int(caption_counts(self.dataset).sum())

    def __getitem__(self, index: int) -> dict:
        pixels, caption_ids = self.read(index)
        return {"pixel_values": pixels, "caption_ids": caption_ids, "image_index": index}

    def pictures(self, indices) -> list[PIL.Image.Image]:
        """The images of the given rows as the captioner saw them (at the encoder's size), for metrics that look."""
        return [PIL.Image.fromarray(self.read(int(index))[0].transpose(1, 2, 0)) for index in indices]

    def metadata(self, indices) -> list[dict]:
        """`captions` (the references), `image_id`, `numeric_id` and `file_name` of the given rows, without pixels."""
        return [self._metadata[int(i)] for i in indices]
