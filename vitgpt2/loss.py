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

    handle = extract_model_from_parallel(model, keep_torch_compile=False).encoder.register_forward_hook(repeat_output)
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
    captions of each image, and the model outputs; every image goes through the encoder once, or not at all when
    `encoder_states` (a frozen encoder's cached output, images x tokens x hidden) replace `pixel_values`."""
    if labels.dim() == 2:
        labels = labels[:, None, :]
    images, per_image, length = labels.shape
    flat = labels.reshape(images * per_image, length)
    present = (flat != IGNORE_INDEX).any(dim=-1)
    repeats = present.view(images, per_image).sum(dim=-1)
    flat = flat[present]
    config = extract_model_from_parallel(model, keep_torch_compile=False).config
    decoder_input_ids = shift_tokens_right(flat, config.pad_token_id, config.decoder_start_token_id)
    if encoder_states is not None:
        states = encoder_states.repeat_interleave(repeats.to(encoder_states.device), dim=0, output_size=flat.shape[0])
        with fused_sdpa_masks():
            outputs = model(
                encoder_outputs=BaseModelOutput(last_hidden_state=states),
                decoder_input_ids=decoder_input_ids,
                use_cache=False,
            )
    else:
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
