"""Keep SDPA on its fused kernels when the captioner runs under torch.compile.

In eager mode transformers passes no mask for attention that has nothing to mask: ViT's bidirectional attention,
cross-attention to the image, and a causal decoder without padding. SDPA can then use its fused cuDNN or Flash
kernels. Under torch.compile with torch < 2.14, dynamo reads `torch.compiler.is_exporting()` as a constant True
(fixed by pytorch#176499). transformers then builds every mask as a tensor, for example a (batch, 1, 197, 197) boolean
mask in each ViT layer. With a mask like that, SDPA can only use its unfused math path, which also upcasts to
float32. Measured on an H200, this is why a compiled ViT-B/16 + distilgpt2 training step ran no faster than the
eager one (`bench/gpu.sh`).

`fused_sdpa_masks()` applies transformers' rules for leaving a mask out again, but only where no padding mask or
tensor offset has to be read. Those rules do not depend on values, so they are safe to trace. Every other case gets
the mask transformers builds.

There is a second case, GPT-2's causal self-attention during training (no cache, no padding mask). Because GPT-2
always passes `position_ids`, transformers checks whether the sequences are packed. That check reads values, so
under compile it cannot be done and the mask is built anyway. Caption rows are never packed: each caption starts at
position 0. So within the block the check answers "not packed".
"""

import contextlib
from unittest import mock

import torch
from transformers import masking_utils
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask


def mask_can_be_left_out(
    q_length: int,
    kv_length: int,
    attention_mask=None,
    q_offset=0,
    local_size: int | None = None,
    allow_is_causal_skip: bool = True,
    allow_is_bidirectional_skip: bool = False,
    **sdpa_mask_kwargs,
) -> bool:
    """transformers' `_ignore_causal_mask_sdpa` / `_ignore_bidirectional_mask_sdpa` without a padding mask
    (`attention_mask`): SDPA's `is_causal` (or no mask at all) then means exactly what the mask would. Takes
    `sdpa_mask`'s keyword arguments, with its defaults."""
    if attention_mask is not None or isinstance(q_offset, torch.Tensor):
        return False
    if local_size is not None and kv_length >= local_size:  # sliding or chunked windows need the mask
        return False
    if allow_is_bidirectional_skip:
        return True
    return allow_is_causal_skip and (q_length == 1 or kv_length == q_length or q_offset == 0)


def sdpa_mask_without_trivial(**kwargs):
    """`transformers.masking_utils.sdpa_mask` (which transformers calls with keywords only), returning None for the
    masks that hold nothing."""
    return None if mask_can_be_left_out(**kwargs) else sdpa_mask(**kwargs)


def unpacked(position_ids):
    """Stands in for `find_packed_sequence_indices`: one caption per row, never several packed together."""
    return None


@contextlib.contextmanager
def fused_sdpa_masks():
    """Within the block, models with `attn_implementation="sdpa"` get no mask where none is needed, compiled or
    not. Only for batches of unpacked sequences, such as caption rows."""
    with (
        mock.patch.dict(ALL_MASK_ATTENTION_FUNCTIONS._local_mapping, sdpa=sdpa_mask_without_trivial),
        mock.patch.object(masking_utils, "find_packed_sequence_indices", unpacked),
    ):
        yield
