"""Building the VisionEncoderDecoder captioner and computing its loss with one encoder pass per image."""

import contextlib
import logging

import torch
import torch.nn.functional as F
from transformers import AutoConfig, GenerationConfig, VisionEncoderDecoderModel

from .sdpa_masks import fused_sdpa_masks

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100


def load_captioner(
    encoder: str | None = None,
    decoder: str | None = None,
    checkpoint: str | None = None,
    attn_implementation: str | None = "sdpa",
    trust_remote_code: bool = False,
    **hub_kwargs,
) -> VisionEncoderDecoderModel:
    """Loads a trained captioner (`checkpoint`) or joins a pretrained encoder and decoder.

    The decoder config is loaded first and marked `is_decoder` / `add_cross_attention` because
    `from_encoder_decoder_pretrained` fails on GPT-2 configs in transformers 5 without it; the cross-attention
    weights are new and randomly initialised, as in every ViT-GPT2 recipe.
    """
    common = {"trust_remote_code": trust_remote_code, **hub_kwargs}
    if checkpoint is not None:
        model = VisionEncoderDecoderModel.from_pretrained(
            checkpoint, attn_implementation=attn_implementation, **common
        )
        return freeze_encoder_pooler(model)
    if encoder is None or decoder is None:
        raise ValueError("give either a VisionEncoderDecoder checkpoint or both an encoder and a decoder")
    decoder_config = AutoConfig.from_pretrained(decoder, **common)
    decoder_config.is_decoder = True
    decoder_config.add_cross_attention = True
    encoder_kwargs = {f"encoder_{key}": value for key, value in common.items()}
    decoder_kwargs = {f"decoder_{key}": value for key, value in common.items()}
    if attn_implementation is not None:
        encoder_kwargs["encoder_attn_implementation"] = attn_implementation
        decoder_kwargs["decoder_attn_implementation"] = attn_implementation
    model = VisionEncoderDecoderModel.from_encoder_decoder_pretrained(
        encoder, decoder, decoder_config=decoder_config, **encoder_kwargs, **decoder_kwargs
    )
    return freeze_encoder_pooler(model)


def freeze_encoder_pooler(model: VisionEncoderDecoderModel) -> VisionEncoderDecoderModel:
    """The captioner never reads the encoder's pooler (ViT's has one). Kept, so saved checkpoints reload without
    "newly initialized" weights, but frozen: DDP then has no parameter without a gradient and can run with
    `--ddp_find_unused_parameters false`."""
    pooler = getattr(model.encoder, "pooler", None)
    if pooler is not None:
        pooler.requires_grad_(False)
    return model


def configure_special_tokens(model, tokenizer, max_length: int | None = None, num_beams: int | None = None) -> None:
    """Sets decoder start (BOS), pad and EOS on the model config AND the generation config.

    transformers 5 reads generation settings from `generation_config` only, and `generate` needs a decoder
    start token; GPT-2 has no pad token, so EOS doubles as pad. Padding never reaches the loss: labels are
    padded with -100 after each caption's own EOS (see `vitgpt2.collator`).
    """
    if tokenizer.eos_token_id is None:
        raise ValueError(f"the decoder tokenizer {type(tokenizer).__name__} has no EOS token; captions could not end")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
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


def _unwrap(model):
    while hasattr(model, "module"):
        model = model.module
    return getattr(model, "_orig_mod", model)


@contextlib.contextmanager
def repeated_encoder_states(model, repeats: torch.Tensor, total: int | None = None):
    """Within the block, the encoder's output row i is repeated `repeats[i]` times.

    This is what lets one encoder pass serve several captions of the same image inside a single call of
    the (possibly DDP- or FSDP-wrapped) model, so gradient synchronisation sees one ordinary forward.
    """

    def repeat_output(module, inputs, output):
        # `output_size` (the number of captions, known outside the model) keeps the shape static for
        # torch.compile: without it the repeat is data-dependent and splits the compiled graph in two.
        output.last_hidden_state = output.last_hidden_state.repeat_interleave(repeats, dim=0, output_size=total)
        return output

    handle = _unwrap(model).encoder.register_forward_hook(repeat_output)
    try:
        yield
    finally:
        handle.remove()


def shift_right(labels: torch.Tensor, start_token_id: int, pad_token_id: int) -> torch.Tensor:
    shifted = labels.new_full(labels.shape, pad_token_id)
    shifted[:, 1:] = labels[:, :-1]
    shifted[:, 0] = start_token_id
    return shifted.masked_fill(shifted == IGNORE_INDEX, pad_token_id)


def _token_losses(model, pixel_values: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.0):
    """Per-token cross-entropy (captions, length) of the captions present in `labels`, the number of
    captions of each image, and the model outputs; every image goes through the encoder once."""
    if labels.dim() == 2:
        labels = labels[:, None, :]
    images, per_image, length = labels.shape
    flat = labels.reshape(images * per_image, length)
    present = (flat != IGNORE_INDEX).any(dim=-1)
    repeats = present.view(images, per_image).sum(dim=-1)
    flat = flat[present]
    config = _unwrap(model).config
    decoder_input_ids = shift_right(flat, config.decoder_start_token_id, config.pad_token_id)
    with repeated_encoder_states(model, repeats, total=flat.shape[0]), fused_sdpa_masks():
        outputs = model(pixel_values=pixel_values, decoder_input_ids=decoder_input_ids, use_cache=False)
    logits = outputs.logits.float()
    losses = F.cross_entropy(
        logits.reshape(-1, logits.size(-1)),
        flat.reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="none",
        label_smoothing=label_smoothing,
    )
    return losses.view_as(flat), flat != IGNORE_INDEX, repeats, outputs


def caption_loss(
    model, pixel_values: torch.Tensor, labels: torch.Tensor, num_items_in_batch=None, label_smoothing: float = 0.0
):
    """Cross-entropy of captions given images, encoding each image once for all of its captions.

    `labels` is (images, captions, length), padded with -100; rows made only of -100 are absent captions.
    The result equals the loss of the same (image, caption) pairs fed one pair per row: the mean over
    caption tokens, or their sum over `num_items_in_batch` when the Trainer counts tokens across
    gradient-accumulation steps.
    """
    losses, mask, _, outputs = _token_losses(model, pixel_values, labels, label_smoothing)
    denominator = num_items_in_batch if num_items_in_batch is not None else mask.sum()
    return losses.sum() / denominator, outputs


def per_image_loss(model, pixel_values: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Each image's mean token loss over all of its references, shape (images,).

    Averaged over images, this does not depend on how images were batched or spread over processes.
    """
    losses, mask, repeats, _ = _token_losses(model, pixel_values, labels)
    owner = torch.repeat_interleave(torch.arange(len(repeats), device=losses.device), repeats.to(losses.device))
    sums = losses.new_zeros(len(repeats)).index_add(0, owner, losses.sum(dim=-1))
    counts = losses.new_zeros(len(repeats)).index_add(0, owner, mask.sum(dim=-1).to(losses.dtype))
    return sums / counts.clamp(min=1)
