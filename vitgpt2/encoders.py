"""Vision encoders of any family as the captioner's encoder: ViT, DeiT, BEiT, DINOv2, Swin / Swinv2, CLIP and
SigLIP / SigLIP2 (their vision towers).

VisionEncoderDecoderModel only needs a model that takes `pixel_values` and returns `last_hidden_state` of shape
(images, tokens, hidden). What differs between families is handled here, once, so that training, saving and the
pipeline see a plain encoder:

- composite image-text checkpoints (CLIP, SigLIP, SigLIP2) hold a text tower too: only the vision tower is loaded;
- SigLIP2's NaFlex tower takes pre-cut patches of any aspect ratio; at its native square grid it is exactly a
  SigLIP tower, so it is converted to one and its image processor to SigLIP's (the saved captioner then needs
  nothing beyond transformers);
- families without an SDPA kernel (Swinv2) run their encoder with the eager one;
- weights the captioner never reads (poolers, CLIP's post-norm, SigLIP's attention-pooling head) are frozen, so
  DDP sees no parameter without a gradient.
"""

import logging

import torch
from transformers import AutoConfig, AutoImageProcessor, PretrainedConfig
from transformers.models.auto.modeling_auto import MODEL_MAPPING

from .errors import ArgumentError

logger = logging.getLogger(__name__)

# model_type of the (vision) config -> the family's name; each is tested with a tiny checkpoint in hub layout.
TESTED_FAMILIES = {
    "vit": "ViT",
    "deit": "DeiT",
    "beit": "BEiT",
    "dinov2": "DINOv2",
    "dinov2_with_registers": "DINOv2 with registers",
    "swin": "Swin",
    "swinv2": "Swinv2",
    "clip_vision_model": "CLIP (vision tower)",
    "siglip_vision_model": "SigLIP (vision tower)",
    "siglip2_vision_model": "SigLIP2 NaFlex (vision tower, at its native square grid)",
}


class UnsupportedEncoder(ArgumentError):
    """A checkpoint that cannot serve as the captioner's vision encoder."""

    def __init__(self, name: str, reason: str):
        families = ", ".join(TESTED_FAMILIES.values())
        super().__init__(f"{name} cannot be the captioner's encoder: {reason}. Supported encoder families: {families}")


def vision_config(name: str, config: PretrainedConfig) -> PretrainedConfig:
    """The config of the vision model inside `config`: itself, or the vision tower of an image-text model."""
    inner = getattr(config, "vision_config", None)
    config = inner if inner is not None else config
    if type(config) not in MODEL_MAPPING:
        raise UnsupportedEncoder(name, f"transformers has no base model for {config.model_type}")
    return config


def encoder_attention(config: PretrainedConfig, attn_implementation: str | None) -> str | None:
    """The attention kernel the encoder of `config` runs: the one asked for, or the eager one where SDPA is asked
    for and the family has none (Swinv2)."""
    model_class = MODEL_MAPPING.get(type(config), None)
    if attn_implementation == "sdpa" and model_class is not None and not model_class._supports_sdpa:
        logger.info("%s has no SDPA attention; its encoder runs with the eager one", model_class.__name__)
        return "eager"
    return attn_implementation


def load_vision_encoder(
    name: str,
    attn_implementation: str | None = "sdpa",
    image_size: tuple[int, int] | None = None,
    **hub_kwargs,
) -> torch.nn.Module:
    """The vision model in `name` (a Hub id or folder), as the encoder of a VisionEncoderDecoderModel, its unused
    weights frozen (`freeze_unused_parameters`, with images of `image_size`)."""
    config = vision_config(name, AutoConfig.from_pretrained(name, **hub_kwargs))
    model_class = MODEL_MAPPING[type(config)]
    attn_implementation = encoder_attention(config, attn_implementation)
    kwargs = {"attn_implementation": attn_implementation} if attn_implementation is not None else {}
    # The vision tower's weights sit under the same prefix (`vision_model.`) in the composite checkpoint.
    encoder, loading = model_class.from_pretrained(
        name, config=config, output_loading_info=True, **hub_kwargs, **kwargs
    )
    # A few missing weights are a head the checkpoint was saved without (a ViT without its pooler); most missing
    # means the vision weights sit under names this class does not use, and the encoder would be random.
    missing, total = sorted(loading["missing_keys"]), len(encoder.state_dict())
    if len(missing) > total / 2:
        raise UnsupportedEncoder(
            name, f"{model_class.__name__} found only {total - len(missing)} of its {total} weights there"
        )
    if config.model_type == "siglip2_vision_model":
        encoder = siglip2_as_siglip(encoder)
    freeze_unused_parameters(encoder, image_size, name)
    return encoder


def load_image_processor(name: str, **hub_kwargs):
    """The image processor of `name`; SigLIP2's NaFlex one becomes SigLIP's at the tower's native square size (from
    the model's `num_patches`: the processor's `max_num_patches` may allow more, at a resized position grid)."""
    processor = AutoImageProcessor.from_pretrained(name, **hub_kwargs)
    if hasattr(processor, "max_num_patches"):
        from transformers import SiglipImageProcessor

        tower = vision_config(name, AutoConfig.from_pretrained(name, **hub_kwargs))
        side = native_grid(tower.num_patches) * tower.patch_size
        kept = ("resample", "do_rescale", "rescale_factor", "do_normalize", "image_mean", "image_std")
        processor = SiglipImageProcessor(
            size={"height": side, "width": side}, **{key: getattr(processor, key) for key in kept}
        )
    return processor


def native_grid(num_patches: int) -> int:
    grid = round(num_patches**0.5)
    if grid * grid != num_patches:
        raise ArgumentError(f"SigLIP2 with {num_patches} position embeddings has no square grid")
    return grid


# what a SigLIP2 vision config shares with SigLIP's (SigLIP2 has `num_patches` where SigLIP has `image_size`)
SIGLIP_SHARED_CONFIG = (
    "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_channels", "patch_size",
    "hidden_act", "layer_norm_eps", "attention_dropout", "vision_use_head",
)  # fmt: skip


def siglip2_as_siglip(encoder) -> torch.nn.Module:
    """A SigLIP vision model computing what `encoder` (SigLIP2 NaFlex) computes on square images at its native grid.

    There, NaFlex's position-embedding resize is the identity and no patch is padding, so the towers differ only in
    how patches enter: NaFlex's linear layer over (row, column, channel)-flattened patches is SigLIP's convolution
    with its weight permuted. Everything else has the same names and shapes.
    """
    from transformers import SiglipVisionConfig, SiglipVisionModel

    source = encoder.config
    shared = {key: getattr(source, key) for key in SIGLIP_SHARED_CONFIG}
    image_size = native_grid(source.num_patches) * source.patch_size
    config = SiglipVisionConfig(**shared, image_size=image_size, attn_implementation=source._attn_implementation)
    state = dict(encoder.state_dict())
    key = "embeddings.patch_embedding.weight"
    patch = source.patch_size
    state[key] = state[key].view(-1, patch, patch, source.num_channels).permute(0, 3, 1, 2).contiguous()
    converted = SiglipVisionModel(config).to(encoder.dtype)
    converted.load_state_dict(state, strict=False)  # strict=False: SigLIP's `position_ids` buffer is not a weight
    return converted.eval()


def probe_image(encoder, size: tuple[int, int] | None = None) -> torch.Tensor:
    config = encoder.config
    if size is None:
        side = getattr(config, "image_size", 224)  # convolutional families have no fixed size
        size = tuple(side) if isinstance(side, (list, tuple)) else (side, side)
    parameter = next(encoder.parameters())
    return torch.zeros(1, getattr(config, "num_channels", 3), *size, dtype=parameter.dtype, device=parameter.device)


def check_output(name: str, encoder, states) -> None:
    """The decoder cross-attends to `last_hidden_state`: it must be (images, tokens, hidden_size)."""
    hidden = getattr(encoder.config, "hidden_size", None)
    if states is None or states.dim() != 3 or states.shape[-1] != hidden:
        shape = None if states is None else tuple(states.shape)
        raise UnsupportedEncoder(
            name,
            f"{type(encoder).__name__} gives last_hidden_state {shape}, not (images, tokens, {hidden or 'hidden_size'})",
        )


def freeze_unused_parameters(encoder, size: tuple[int, int] | None = None, name: str = "the encoder") -> list[str]:
    """Freezes the encoder's weights that `last_hidden_state` does not depend on; returns their names.

    Found by one pass forward and backward in eval mode (stochastic depth off, so no block is skipped), which also
    checks that the states are what the decoder can read (`UnsupportedEncoder`, naming `name`, if not). They are
    kept, so saved checkpoints reload without "newly initialized" weights, but frozen: DDP then has no parameter
    without a gradient and can run with `--ddp_find_unused_parameters false`.
    """
    training = encoder.training
    trainable = {key: p.requires_grad for key, p in encoder.named_parameters()}
    unused = []
    encoder.eval().requires_grad_(True)
    try:
        encoder.zero_grad(set_to_none=True)
        try:
            states = getattr(encoder(pixel_values=probe_image(encoder, size)), "last_hidden_state", None)
        except (TypeError, ValueError, RuntimeError) as error:
            raise UnsupportedEncoder(name, f"{type(encoder).__name__} fails on a batch of images ({error})") from error
        check_output(name, encoder, states)
        states.float().sum().backward()
        unused = [key for key, p in encoder.named_parameters() if p.grad is None]
    finally:
        encoder.zero_grad(set_to_none=True)
        encoder.train(training)
        for key, parameter in encoder.named_parameters():
            parameter.requires_grad_(trainable[key] and key not in unused)
    return unused
