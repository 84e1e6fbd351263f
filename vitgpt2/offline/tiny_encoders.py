"""Tiny random encoders of every supported family, in hub layout (`save_pretrained` of the model and its image
processor), for tests and offline tries of `--encoder_model_name_or_path`.

Each is built as its hub checkpoints are: CLIP and SigLIP as full image-text models (the captioner takes their vision
tower), SigLIP2 as a NaFlex model with its patch-cutting processor, DINOv2 and DeiT with the resize-then-crop
processors their hub checkpoints ship.
"""

import transformers as tf

from ..errors import ArgumentError

SMALL = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
TEXT = {**SMALL, "vocab_size": 99}


def _square(side: int) -> dict:
    return {"height": side, "width": side}


def _families(size: int) -> dict:
    """family -> (model class, config, image processor) for images of `size` pixels; patches of size // 4."""
    patch = size // 4
    vision = {**SMALL, "image_size": size, "patch_size": patch}
    windowed = {"image_size": size, "patch_size": 4, "embed_dim": 16, "depths": [1, 1], "num_heads": [1, 2]}
    crop = {"size": {"shortest_edge": size + size // 4}, "crop_size": _square(size)}
    return {
        "vit": (tf.ViTModel, tf.ViTConfig(**vision), tf.ViTImageProcessor(size=_square(size))),
        "deit": (
            tf.DeiTModel,
            tf.DeiTConfig(**vision),
            tf.DeiTImageProcessor(size=_square(size + 8), crop_size=_square(size)),
        ),
        "beit": (
            tf.BeitModel,
            tf.BeitConfig(**vision, use_mean_pooling=True),
            tf.BeitImageProcessor(size=_square(size)),
        ),
        "dinov2": (tf.Dinov2Model, tf.Dinov2Config(**vision), tf.BitImageProcessor(**crop)),
        "dinov2_with_registers": (
            tf.Dinov2WithRegistersModel,
            tf.Dinov2WithRegistersConfig(**vision, num_register_tokens=2),
            tf.BitImageProcessor(**crop),
        ),
        "swin": (
            tf.SwinModel,
            tf.SwinConfig(**windowed, window_size=size // 8),
            tf.ViTImageProcessor(size=_square(size)),
        ),
        "swinv2": (
            tf.Swinv2Model,
            tf.Swinv2Config(**windowed, window_size=size // 8),
            tf.ViTImageProcessor(size=_square(size)),
        ),
        "clip": (
            tf.CLIPModel,
            tf.CLIPConfig(vision_config=vision, text_config=TEXT, projection_dim=8),
            tf.CLIPImageProcessor(size={"shortest_edge": size}, crop_size=_square(size)),
        ),
        "clip_vision": (
            tf.CLIPVisionModel,
            tf.CLIPVisionConfig(**vision),
            tf.CLIPImageProcessor(size={"shortest_edge": size}, crop_size=_square(size)),
        ),
        "siglip": (
            tf.SiglipModel,
            tf.SiglipConfig(vision_config=vision, text_config=TEXT),
            tf.SiglipImageProcessor(size=_square(size)),
        ),
        "siglip2": (
            tf.Siglip2Model,
            tf.Siglip2Config(vision_config={**SMALL, "num_patches": 16, "patch_size": patch}, text_config=TEXT),
            tf.Siglip2ImageProcessor(patch_size=patch, max_num_patches=64),  # more than the 16 positions, as allowed
        ),
    }


FAMILIES = tuple(_families(32))


def write_tiny_family_encoder(output_dir: str, family: str, image_size: int = 32, seed: int = 0) -> str:
    """Writes a random `family` checkpoint (model + image processor) to `output_dir`, as the Hub holds them."""
    import torch

    families = _families(image_size)
    if family not in families:
        raise ArgumentError(f"unknown encoder family {family!r}; known: {', '.join(families)}")
    model_class, config, image_processor = families[family]
    torch.manual_seed(seed)
    model_class(config).save_pretrained(output_dir)
    image_processor.save_pretrained(output_dir)
    return output_dir
