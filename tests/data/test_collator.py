import numpy as np
import torch
from transformers import ViTImageProcessor

from vitgpt2.data.collator import CaptioningCollator, pad_labels
from vitgpt2.loss import IGNORE_INDEX

EOS = 0  # GPT-2's EOS doubles as its pad id: the trap is masking the real EOS along with the padding


def test_padding_is_masked_but_every_caption_keeps_its_eos():
    labels = pad_labels([[[5, 6, EOS]], [[7, 8, 9, 10, EOS]]])
    assert labels.shape == (2, 1, 5)
    assert labels[0, 0].tolist() == [5, 6, EOS, IGNORE_INDEX, IGNORE_INDEX]
    assert labels[1, 0].tolist() == [7, 8, 9, 10, EOS]
    assert (labels == EOS).sum() == 2


def test_images_with_fewer_captions_get_empty_rows():
    labels = pad_labels([[[1, EOS], [2, 3, EOS]], [[4, EOS]]])
    assert labels.shape == (2, 2, 3)
    assert (labels[1, 1] == IGNORE_INDEX).all()


def test_fixed_length_padding_for_compiled_training():
    assert pad_labels([[[1, EOS]]], pad_to=8).shape[-1] == 8
    assert pad_labels([[[1, 2, 3, EOS]]], multiple_of=8).shape[-1] == 8


def test_collator_normalises_uint8_pixels_and_passes_image_indices():
    processor = ViTImageProcessor(size={"height": 4, "width": 4})
    examples = [
        {"pixel_values": np.full((3, 4, 4), 255, dtype=np.uint8), "caption_ids": [[3, EOS]], "image_index": 7},
        {
            "pixel_values": np.zeros((3, 4, 4), dtype=np.uint8),
            "caption_ids": [[3, 4, EOS], [5, EOS]],
            "image_index": 2,
        },
    ]
    batch = CaptioningCollator(processor)(examples)
    assert batch["pixel_values"].dtype == torch.float32 and batch["pixel_values"].shape == (2, 3, 4, 4)
    assert torch.allclose(batch["pixel_values"][0], torch.ones(3, 4, 4))  # (1 - 0.5) / 0.5
    assert torch.allclose(batch["pixel_values"][1], -torch.ones(3, 4, 4))
    assert batch["labels"].shape == (2, 2, 3)
    assert batch["image_index"].tolist() == [7, 2]
