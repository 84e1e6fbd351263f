"""Batches for the captioner: uint8 pixels normalised on the fly, labels padded with -100 after the EOS."""

from dataclasses import dataclass

import numpy as np
import torch

from ..loss import IGNORE_INDEX
from ..remote_code.images import PixelNormalizer
from .encoder_features import as_states

STREAM_POSITION = "stream_position"  # set by `data.streaming` on the items it yields


def pad_labels(
    groups: list[list[list[int]]], pad_to: int | None = None, multiple_of: int | None = None
) -> torch.Tensor:
    """(images, captions, length) label tensor. Each caption keeps its own final EOS, since that is the
    token that teaches the model to stop; only the padding after it becomes -100 (never the EOS, even
    though GPT-2's pad id is the EOS id)."""
    per_image = max((len(group) for group in groups), default=1) or 1
    length = max((len(caption) for group in groups for caption in group), default=1)
    if pad_to is not None:
        length = max(length, pad_to)
    if multiple_of:
        length = -(-length // multiple_of) * multiple_of
    labels = torch.full((len(groups), per_image, length), IGNORE_INDEX, dtype=torch.long)
    for i, group in enumerate(groups):
        for j, caption in enumerate(group):
            labels[i, j, : len(caption)] = torch.as_tensor(np.asarray(caption, dtype=np.int64))
    return labels


@dataclass
class CaptioningCollator:
    """`pad_to` fixes the label length (for compiled training, which dislikes changing shapes)."""

    image_processor: object
    pad_to: int | None = None
    pad_to_multiple_of: int | None = None

    def __post_init__(self):
        self.normalize = PixelNormalizer(self.image_processor)

    def __call__(self, examples: list[dict]) -> dict:
        if "encoder_states" in examples[0]:  # a frozen encoder's cached output (`data.encoder_features`)
            images = {"encoder_states": as_states(np.stack([example["encoder_states"] for example in examples]))}
        else:
            pixels = np.stack([np.asarray(example["pixel_values"], dtype=np.uint8) for example in examples])
            images = {"pixel_values": self.normalize(torch.from_numpy(pixels))}
        batch = {
            **images,
            "labels": pad_labels(
                [list(example["caption_ids"]) for example in examples], self.pad_to, self.pad_to_multiple_of
            ),
        }
        if "image_index" in examples[0]:
            batch["image_index"] = torch.tensor([example["image_index"] for example in examples], dtype=torch.long)
        if STREAM_POSITION in examples[0]:  # a streamed batch: where its worker's stream stands after it
            batch[STREAM_POSITION] = torch.tensor(examples[-1][STREAM_POSITION], dtype=torch.long)
        return batch
