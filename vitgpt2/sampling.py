"""Views over the one-row-per-image cache that the Trainer iterates, without copying pixels.

`CaptionGroups` is the training view: each item is an image with up to K of its captions (K=1: one
(image, caption) pair per item, the usual recipe; K=5 on COCO: one item per image, encoded once, its five
captions decoded against the repeated encoder states). Either way an epoch visits every caption once.
`ImagesWithReferences` is the evaluation view: one item per image with all its references, so captions are
generated once per image and scored against every reference.
"""

import numpy as np
import torch
from datasets import Dataset


def _numpy_pixels(dataset: Dataset) -> Dataset:
    return dataset.with_format("numpy", columns=["pixel_values"], output_all_columns=True)


class CaptionGroups(torch.utils.data.Dataset):
    def __init__(self, dataset: Dataset, captions_per_image: int = 1):
        if captions_per_image < 1:
            raise ValueError(f"captions_per_image must be at least 1, not {captions_per_image}")
        self.dataset = _numpy_pixels(dataset.select_columns(["pixel_values", "caption_ids"]))
        self.captions_per_image = captions_per_image
        counts = np.fromiter((len(ids) for ids in dataset["caption_ids"]), dtype=np.int64, count=len(dataset))
        groups = -(-counts // captions_per_image)  # ceil: the last group of an image may be smaller
        self.rows = np.repeat(np.arange(len(dataset)), groups)
        self.starts = np.concatenate([np.arange(n) * captions_per_image for n in groups]) if len(groups) else groups
        self.num_captions = int(counts.sum())

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict:
        row, start = int(self.rows[index]), int(self.starts[index])
        example = self.dataset[row]
        return {
            "pixel_values": example["pixel_values"],
            "caption_ids": example["caption_ids"][start : start + self.captions_per_image],
        }


class ImagesWithReferences(torch.utils.data.Dataset):
    def __init__(self, dataset: Dataset):
        self.dataset = dataset
        self._rows = _numpy_pixels(dataset.select_columns(["pixel_values", "caption_ids"]))
        self._metadata = dataset.select_columns(["captions", "image_id", "file_name"])

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        example = self._rows[index]
        return {"pixel_values": example["pixel_values"], "caption_ids": example["caption_ids"], "image_index": index}

    def metadata(self, indices) -> list[dict]:
        """`captions` (the references), `image_id` and `file_name` of the given rows, without pixels."""
        return [self._metadata[int(i)] for i in indices]
