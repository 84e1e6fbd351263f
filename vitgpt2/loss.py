"""The captioner's loss with one encoder pass per image: encode-once training and the per-image evaluation loss."""

import contextlib

import torch
import torch.nn.functional as F
from accelerate.utils import extract_model_from_parallel
from transformers.modeling_outputs import BaseModelOutput
from transformers.models.vision_encoder_decoder.modeling_vision_encoder_decoder import shift_tokens_right

from .sdpa_masks import fused_sdpa_masks

# Label positions the loss ignores: the padding after each caption's EOS, and absent captions (rows of it only).
IGNORE_INDEX = -100


def cross_attention_projections(model) -> list[torch.nn.Module]:
    """GPT-2's cross-attention key/value projections (`crossattention.c_attn`, one per block), where the decoder
    attends with SDPA; [] otherwise. Their input is the encoder states, and only their output is per caption."""
    decoder = model.decoder
    if decoder.config._attn_implementation != "sdpa":  # other kernels build a mask sized by the encoder's rows
        return []
    blocks = getattr(getattr(decoder, "transformer", None), "h", [])
    return [block.crossattention.c_attn for block in blocks if hasattr(block, "crossattention")]


@contextlib.contextmanager
def images_shared_by_captions(model, repeats: torch.Tensor, total: int):
    """Within the block, the model's caption rows see their images' encoder states: row i of the encoder output
    serves `repeats[i]` captions. Yields True when the states are repeated inside the decoder, False when the
    encoder's output is (a caller that passes encoder states itself then repeats them).

    This is what lets one encoder pass serve several captions of the same image inside a single call of the
    (possibly DDP- or FSDP-wrapped) model, so gradient synchronisation sees one ordinary forward. With GPT-2 the
    repeat comes after each cross-attention's key/value projection, which then also runs once per image: with 5
    captions per image, that projection over 197 image tokens is as costly as the rest of distilgpt2's forward.
    `output_size` (the number of captions, known outside the model) keeps the shape static for torch.compile:
    without it the repeat is data-dependent and splits the compiled graph in two.
    """

    def repeat(module, inputs, output):
        return output.repeat_interleave(repeats, dim=0, output_size=total)

    def repeat_output(module, inputs, output):
        output.last_hidden_state = repeat(module, inputs, output.last_hidden_state)
        return output

    unwrapped = extract_model_from_parallel(model, keep_torch_compile=False)
    projections = cross_attention_projections(unwrapped)
    if projections:
        handles = [projection.register_forward_hook(repeat) for projection in projections]
    else:
        handles = [unwrapped.encoder.register_forward_hook(repeat_output)]
    try:
        yield bool(projections)
    finally:
        for handle in handles:
            handle.remove()


@contextlib.contextmanager
def logits_of_caption_tokens(model, present: torch.Tensor):
    """Within the block, the decoder's output layer runs on the caption tokens only: the positions where `present`
    (captions x length) is True, flattened, so the model's logits are (1, tokens, vocabulary). Padded positions
    after a caption's EOS have no label; the output layer (768 x 50,257 with GPT-2) and the softmax over them would
    be a fifth of a COCO batch's decoder work and logits memory for nothing. The positions are computed here,
    outside the model, so that a compiled model sees a plain index tensor."""
    index = present.flatten().nonzero().squeeze(1)

    def select(module, args):
        (hidden,) = args
        return (hidden.flatten(0, 1).index_select(0, index.to(hidden.device))[None],)

    unwrapped = extract_model_from_parallel(model, keep_torch_compile=False)
    handle = unwrapped.decoder.get_output_embeddings().register_forward_pre_hook(select)
    try:
        yield
    finally:
        handle.remove()


def token_losses(
    model,
    pixel_values: torch.Tensor | None,
    labels: torch.Tensor,
    label_smoothing: float = 0.0,
    encoder_states: torch.Tensor | None = None,
):
    """Per-token cross-entropy (captions, length) of the captions present in `labels`, the number of
    captions of each image, and the model outputs, whose logits are the caption tokens' only (1, tokens, vocabulary).
    Every image goes through the encoder once, or not at all when `encoder_states` (a frozen encoder's cached output,
    images x tokens x hidden) replace `pixel_values`."""
    if labels.dim() == 2:
        labels = labels[:, None, :]
    images, per_image, length = labels.shape
    flat = labels.reshape(images * per_image, length)
    present = (flat != IGNORE_INDEX).any(dim=-1)
    repeats = present.view(images, per_image).sum(dim=-1)
    flat = flat[present]
    config = extract_model_from_parallel(model, keep_torch_compile=False).config
    decoder_input_ids = shift_tokens_right(flat, config.pad_token_id, config.decoder_start_token_id)
    inputs = {"pixel_values": pixel_values}
    mask = flat != IGNORE_INDEX
    with (
        images_shared_by_captions(model, repeats, flat.shape[0]) as repeated_in_decoder,
        logits_of_caption_tokens(model, mask),
        fused_sdpa_masks(),
    ):
        if encoder_states is not None:
            if not repeated_in_decoder:
                encoder_states = encoder_states.repeat_interleave(repeats, dim=0, output_size=flat.shape[0])
            inputs = {"encoder_outputs": BaseModelOutput(last_hidden_state=encoder_states)}
        outputs = model(**inputs, decoder_input_ids=decoder_input_ids, use_cache=False)
    token_logits = outputs.logits[0].float()
    losses = F.cross_entropy(token_logits, flat[mask], reduction="none", label_smoothing=label_smoothing)
    return flat.new_zeros(flat.shape, dtype=losses.dtype).masked_scatter(mask, losses), mask, repeats, outputs


def caption_loss(
    model,
    pixel_values: torch.Tensor | None,
    labels: torch.Tensor,
    num_items_in_batch=None,
    label_smoothing: float = 0.0,
    encoder_states: torch.Tensor | None = None,
):
    """Cross-entropy of captions given images, encoding each image once for all of its captions.

    `labels` is (images, captions, length), padded with -100; rows made only of -100 are absent captions.
    The result equals the loss of the same (image, caption) pairs fed one pair per row: the mean over
    caption tokens, or their sum over `num_items_in_batch` when the Trainer counts tokens across
    gradient-accumulation steps.
    """
    losses, mask, _, outputs = token_losses(model, pixel_values, labels, label_smoothing, encoder_states)
    denominator = num_items_in_batch if num_items_in_batch is not None else mask.sum()
    return losses.sum() / denominator, outputs


def per_image_loss(model, pixel_values: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Each image's mean token loss over all of its references, shape (images,).

    Averaged over images, this does not depend on how images were batched or spread over processes.
    """
    losses, mask, repeats, _ = token_losses(model, pixel_values, labels)
    owner = torch.repeat_interleave(torch.arange(len(repeats), device=losses.device), repeats.to(losses.device))
    sums = losses.new_zeros(len(repeats)).index_add(0, owner, losses.sum(dim=-1))
    counts = losses.new_zeros(len(repeats)).index_add(0, owner, mask.sum(dim=-1).to(losses.dtype))
    return sums / counts.clamp(min=1)
