"""Under torch.compile the captioner's attention gets no materialised mask, so SDPA can keep its fused kernels."""

import pytest
import torch
from transformers import AutoTokenizer, masking_utils
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, causal_mask_function, sdpa_mask
from transformers.models.vision_encoder_decoder.modeling_vision_encoder_decoder import shift_tokens_right

from vitgpt2.data.collator import pad_labels
from vitgpt2.loss import caption_loss
from vitgpt2.model import configure_special_tokens, load_captioner
from vitgpt2.sdpa_masks import fused_sdpa_masks, sdpa_mask_without_trivial


@pytest.fixture(scope="module")
def captioner_and_batch(tiny_models):
    encoder, decoder = tiny_models
    tokenizer = AutoTokenizer.from_pretrained(decoder)
    model = load_captioner(encoder=encoder, decoder=decoder)
    configure_special_tokens(model, tokenizer, max_length=12)
    model.train()
    torch.manual_seed(0)
    size = model.config.encoder.image_size
    pixels = torch.randn(3, 3, size, size)
    captions = [[5, 6, 7, 8, 9, 10, 11], [12, 13, 14], [15, 16, 17, 18, 19]]
    return model, pixels, pad_labels([[c + [tokenizer.eos_token_id]] for c in captions])


def test_compiled_caption_loss_passes_no_attention_mask(captioner_and_batch, sdpa_masks_compiled):
    model, pixels, labels = captioner_and_batch
    backend, masks = sdpa_masks_compiled
    caption_loss(torch.compile(model, backend=backend, dynamic=False), pixels, labels)
    layers = model.config.encoder.num_hidden_layers + 2 * model.config.decoder.n_layer
    assert masks == [None] * layers


def test_compiled_model_without_the_fix_materialises_the_decoder_mask(captioner_and_batch, sdpa_masks_compiled):
    """The control: what transformers does under compile when it is left alone."""
    model, pixels, labels = captioner_and_batch
    flat = labels.reshape(-1, labels.shape[-1])
    config = model.config
    decoder_input_ids = shift_tokens_right(flat, config.pad_token_id, config.decoder_start_token_id)

    backend, masks = sdpa_masks_compiled
    compiled = torch.compile(model, backend=backend, dynamic=False)
    compiled(pixel_values=pixels, decoder_input_ids=decoder_input_ids, use_cache=False)
    assert (len(flat), 1, flat.shape[-1], flat.shape[-1]) in masks


def test_compiled_loss_and_gradients_equal_eager(captioner_and_batch):
    model, pixels, labels = captioner_and_batch
    model.eval()  # no dropout, so the two runs see the same function
    params = [p for p in model.parameters() if p.requires_grad]
    try:
        eager = caption_loss(model, pixels, labels)[0]
        eager_grads = torch.autograd.grad(eager, params, allow_unused=True)
        torch._dynamo.reset()
        compiled_model = torch.compile(model, backend="aot_eager", dynamic=False)
        compiled = caption_loss(compiled_model, pixels, labels)[0]
        grads = torch.autograd.grad(compiled, params, allow_unused=True)
    finally:
        torch._dynamo.reset()
        model.train()
    torch.testing.assert_close(compiled, eager)
    for got, want in zip(grads, eager_grads):
        if want is not None:
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


def test_trivial_masks_are_left_out():
    common = {"batch_size": 2, "q_length": 4, "kv_length": 4}
    assert sdpa_mask_without_trivial(**common, allow_is_bidirectional_skip=True) is None
    assert sdpa_mask_without_trivial(**common, mask_function=causal_mask_function) is None
    assert sdpa_mask_without_trivial(batch_size=2, q_length=1, kv_length=9) is None  # one decoding step


@pytest.mark.parametrize(
    "kwargs",
    [
        {"attention_mask": torch.tensor([[True, True, True, False], [True] * 4])},  # padding
        {"local_size": 2},  # a sliding window
        {"allow_is_causal_skip": False},  # the caller added or/and mask functions
    ],
)
def test_masks_with_content_are_built_as_transformers_builds_them(kwargs):
    common = {"batch_size": 2, "q_length": 4, "kv_length": 4, "mask_function": causal_mask_function}
    built = sdpa_mask_without_trivial(**common, **kwargs)
    assert built is not None
    torch.testing.assert_close(built, sdpa_mask(**common, **kwargs))


def test_a_tensor_offset_is_left_to_transformers(monkeypatch):
    """A static cache's offset can only be read outside tracing; transformers decides there, not this module."""
    common = {"batch_size": 2, "q_length": 4, "kv_length": 4, "q_offset": torch.tensor(0)}
    calls = []
    monkeypatch.setattr("vitgpt2.sdpa_masks.sdpa_mask", lambda **kwargs: calls.append(kwargs) or "built")
    assert sdpa_mask_without_trivial(**common) == "built"
    assert calls and calls[0]["q_offset"] is common["q_offset"]


def test_the_block_restores_what_it_replaced():
    before = (ALL_MASK_ATTENTION_FUNCTIONS["sdpa"], masking_utils.find_packed_sequence_indices)
    with pytest.raises(RuntimeError), fused_sdpa_masks():
        assert ALL_MASK_ATTENTION_FUNCTIONS["sdpa"] is sdpa_mask_without_trivial
        assert masking_utils.find_packed_sequence_indices(torch.tensor([[0, 1, 0, 1]])) is None
        raise RuntimeError("a failing step")
    assert (ALL_MASK_ATTENTION_FUNCTIONS["sdpa"], masking_utils.find_packed_sequence_indices) == before
    assert "sdpa" not in ALL_MASK_ATTENTION_FUNCTIONS._local_mapping
