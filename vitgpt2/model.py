"""Building the VisionEncoderDecoder captioner: joining encoder and decoder, special tokens, vocabulary padding."""

import torch
from transformers import AutoConfig, GenerationConfig, VisionEncoderDecoderModel

from .encoders import encoder_attention, freeze_unused_parameters, load_vision_encoder
from .errors import ArgumentError, UserError
from .remote_code.text import ensure_pad_token


class NotACaptioner(UserError, ValueError):
    """A folder or Hub id given as a captioner that holds something else (or nothing)."""


def check_captioner(name: str, **hub_kwargs) -> None:
    """Raises `NotACaptioner`, saying what `name` holds instead, unless it is a VisionEncoderDecoder captioner."""
    try:
        config = AutoConfig.from_pretrained(name, **hub_kwargs)
    except (OSError, ValueError) as error:
        raise NotACaptioner(f"cannot load a captioner from {name}: {' '.join(str(error).split())}") from error
    if config.model_type != VisionEncoderDecoderModel.config_class.model_type:
        raise NotACaptioner(
            f"{name} holds a {config.model_type} model ({type(config).__name__}), not a captioner. A captioner "
            "folder, as run_captioning.py saves it, holds a vision-encoder-decoder config.json with its weights, the "
            "tokenizer and the image processor. To join a separate encoder and decoder, give them with "
            "--encoder_model_name_or_path and --decoder_model_name_or_path."
        )


def load_captioner(
    encoder: str | None = None,
    decoder: str | None = None,
    checkpoint: str | None = None,
    attn_implementation: str | None = "sdpa",
    trust_remote_code: bool = False,
    image_size: tuple[int, int] | None = None,
    **hub_kwargs,
) -> VisionEncoderDecoderModel:
    """Loads a trained captioner (`checkpoint`) or joins a pretrained encoder and decoder.

    The encoder is the vision model of any supported family (`vitgpt2.encoders`). The decoder config is loaded first
    and marked `is_decoder` / `add_cross_attention` because `from_encoder_decoder_pretrained` fails on GPT-2 configs
    in transformers 5 without it; the cross-attention weights are new and randomly initialised, as in every ViT-GPT2
    recipe. Encoder weights the captioner never reads are frozen (`image_size`: the size its images come at, for
    the probe that finds them; default the encoder config's).
    """
    common = {"trust_remote_code": trust_remote_code, **hub_kwargs}
    if checkpoint is not None:
        model = VisionEncoderDecoderModel.from_pretrained(
            checkpoint, attn_implementation=_supported(attn_implementation, checkpoint, common), **common
        )
    elif encoder is None or decoder is None:
        raise ValueError("give either a VisionEncoderDecoder checkpoint or both an encoder and a decoder")
    else:
        decoder_config = AutoConfig.from_pretrained(decoder, **common)
        decoder_config.is_decoder = True
        decoder_config.add_cross_attention = True
        decoder_kwargs = {f"decoder_{key}": value for key, value in common.items()}
        if attn_implementation is not None:
            decoder_kwargs["decoder_attn_implementation"] = attn_implementation
        model = VisionEncoderDecoderModel.from_encoder_decoder_pretrained(
            None,
            decoder,
            encoder_model=load_vision_encoder(encoder, attn_implementation, image_size, **common),
            decoder_config=decoder_config,
            **decoder_kwargs,
        )
        return model
    freeze_unused_parameters(model.encoder, image_size, checkpoint)
    return model


def _supported(attn_implementation: str | None, checkpoint: str, common: dict) -> str | dict | None:
    """The attention kernel per sub-model: an encoder family without SDPA (Swinv2) gets the eager one."""
    if attn_implementation != "sdpa":
        return attn_implementation
    encoder = encoder_attention(AutoConfig.from_pretrained(checkpoint, **common).encoder, attn_implementation)
    return (
        attn_implementation if encoder == attn_implementation else {"": "sdpa", "encoder": encoder, "decoder": "sdpa"}
    )


def configure_special_tokens(model, tokenizer, max_length: int | None = None, num_beams: int | None = None) -> None:
    """Sets decoder start (BOS), pad and EOS on the model config AND the generation config.

    transformers 5 reads generation settings from `generation_config` only, and `generate` needs a decoder
    start token; GPT-2 has no pad token, so EOS doubles as pad (`ensure_pad_token`).
    """
    if tokenizer.eos_token_id is None:
        raise ValueError(f"the decoder tokenizer {type(tokenizer).__name__} has no EOS token; captions could not end")
    ensure_pad_token(tokenizer)
    start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    ids = {
        "decoder_start_token_id": start,
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }
    for key, value in ids.items():
        setattr(model.config, key, value)
    model.config.decoder.bos_token_id = start
    model.config.decoder.eos_token_id = tokenizer.eos_token_id
    generation = model.generation_config if model.generation_config is not None else GenerationConfig()
    generation.update(bos_token_id=start, **ids)
    if max_length is not None:
        generation.max_length = max_length  # decoder length, start token included, as Seq2SeqTrainer reads it
    if num_beams is not None:
        generation.num_beams = num_beams
    model.generation_config = generation


def pad_vocabulary(model, tokenizer_size: int, multiple: int) -> int:
    """Rounds the decoder's vocabulary (embeddings and the tied LM head) up to a multiple of `multiple` and keeps
    `generate` from ever choosing the new ids. Returns the new vocabulary size.

    GPT-2's 50,257 rows are odd, so the LM head's matmuls, the largest in the decoder, cannot use the GPU's
    aligned tensor-core kernels; 50,304 rows can. The extra ids are never labels, and no tokenizer id maps to them.
    """
    if multiple <= 1:
        return model.decoder.config.vocab_size
    model.decoder.resize_token_embeddings(
        max(tokenizer_size, model.decoder.config.vocab_size), pad_to_multiple_of=multiple
    )
    size = model.decoder.config.vocab_size
    padding = list(range(tokenizer_size, size))
    generation = model.generation_config
    generation.suppress_tokens = sorted(set(generation.suppress_tokens or []) | set(padding)) or None
    return size


def attention_implementations(model) -> dict[str, str]:
    """The attention kernels actually chosen for the encoder and the decoder (e.g. to assert SDPA)."""
    return {
        "encoder": model.encoder.config._attn_implementation,
        "decoder": model.decoder.config._attn_implementation,
    }


def encoder_blocks(encoder) -> tuple[str, torch.nn.ModuleList]:
    """The encoder's transformer blocks and their name: the module list as long as its `num_hidden_layers` (ViT,
    DeiT, BEiT, DINOv2, and CLIP's and SigLIP's vision towers keep them that way; Swin's stages do not)."""
    layers = getattr(encoder.config, "num_hidden_layers", None)
    for name, module in encoder.named_modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == layers:
            return name, module
    raise ArgumentError(
        f"--train_encoder_layers needs an encoder whose blocks form one list of num_hidden_layers; "
        f"{type(encoder).__name__} has none: use --freeze_encoder, or train all of it"
    )


def norms_after(encoder, blocks_name: str) -> list[torch.nn.Module]:
    """The LayerNorms that come after the blocks at any level above them (ViT's `layernorm`, SigLIP's
    `post_layernorm`), in registration order; CLIP's `pre_layrnorm`, before its blocks, is not one."""
    norms, path = [], blocks_name.split(".")
    for depth in range(len(path), 0, -1):
        parent = encoder.get_submodule(".".join(path[: depth - 1]))
        names = [name for name, _ in parent.named_children()]
        for name in names[names.index(path[depth - 1]) + 1 :]:
            module = getattr(parent, name)
            if isinstance(module, torch.nn.LayerNorm):
                norms.append(module)
    return norms


def set_encoder_trainable(model, freeze: bool = False, train_layers: int | None = None) -> None:
    """Freezes the encoder, or all of it but its last `train_layers` blocks and the norm after them.

    Weights already frozen (those the captioner never reads, such as CLIP's post-norm of its pooled output) stay so.
    """
    if not freeze and train_layers is None:
        return
    unused = {p for p in model.encoder.parameters() if not p.requires_grad}
    model.encoder.requires_grad_(False)
    if freeze or train_layers == 0:
        return
    name, blocks = encoder_blocks(model.encoder)
    if train_layers > len(blocks):
        raise ArgumentError(f"--train_encoder_layers {train_layers}: the encoder has {len(blocks)} blocks")
    for module in [*blocks[-train_layers:], *norms_after(model.encoder, name)]:
        for parameter in module.parameters():
            parameter.requires_grad_(parameter not in unused)


def parameter_counts(model) -> dict[str, int]:
    return {
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "parameters": sum(p.numel() for p in model.parameters()),
    }
