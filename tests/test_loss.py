"""The encode-once loss equals the per-pair loss; the per-image loss does not depend on batching."""

import copy

import pytest
import torch

from vitgpt2.data.collator import pad_labels
from vitgpt2.loss import caption_loss, per_image_loss


def test_encode_once_loss_and_gradients_equal_the_per_pair_loss(captioner):
    model, tokenizer = copy.deepcopy(captioner[0]), captioner[1]
    model.train()
    torch.manual_seed(0)
    eos = tokenizer.eos_token_id
    pixels = torch.randn(2, 3, 32, 32)
    captions = [[[5, 6, 7, eos], [8, eos], [9, 10, eos]], [[11, 12, eos], [13, 14, 15, 16, eos]]]
    grouped = pad_labels(captions)  # (2 images, 3 captions, 5): one encoder pass per image
    pairs = pad_labels([[caption] for group in captions for caption in group])  # (5 pairs, 1, 5)
    pair_pixels = pixels.repeat_interleave(torch.tensor([3, 2]), dim=0)

    model.eval()  # no dropout, so both paths see the same function
    grouped_loss, _ = caption_loss(model, pixels, grouped)
    grouped_loss.backward()
    grouped_grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    pair_loss, _ = caption_loss(model, pair_pixels, pairs)
    pair_loss.backward()
    assert torch.allclose(grouped_loss, pair_loss, atol=1e-5)
    for name, parameter in model.named_parameters():
        if parameter.grad is not None:
            assert torch.allclose(grouped_grads[name], parameter.grad, atol=1e-5), name

    # and both equal transformers' own loss on the pairs
    flat = pairs[:, 0]
    reference = model(pixel_values=pair_pixels, labels=flat).loss
    assert torch.allclose(pair_loss, reference, atol=1e-5)


def test_cross_attention_keys_and_values_are_projected_once_per_image(captioner):
    """With GPT-2 under SDPA the captions share their image's cross-attention keys and values (projected for 2 images,
    not 5 captions); with another kernel the encoder output is repeated instead. Both give the per-pair loss."""
    model, eos = copy.deepcopy(captioner[0]).eval(), captioner[1].eos_token_id
    pixels = torch.randn(2, 3, 32, 32)
    captions = [[[5, 6, 7, eos], [8, eos], [9, 10, eos]], [[11, 12, eos], [13, 14, 15, 16, eos]]]
    grouped, pairs = pad_labels(captions), pad_labels([[caption] for group in captions for caption in group])
    pair_pixels = pixels.repeat_interleave(torch.tensor([3, 2]), dim=0)
    projection = model.decoder.transformer.h[0].crossattention.c_attn
    rows = []
    projection.register_forward_hook(lambda module, inputs, output: rows.append(len(inputs[0])))
    with torch.no_grad():
        expected = caption_loss(model, pair_pixels, pairs)[0]
        rows.clear()
        assert torch.allclose(caption_loss(model, pixels, grouped)[0], expected, atol=1e-5)
        assert rows == [2]
        model.decoder.set_attn_implementation("eager")
        rows.clear()
        assert torch.allclose(caption_loss(model, pixels, grouped)[0], expected, atol=1e-5)
        assert rows == [5]


def test_output_layer_runs_on_caption_tokens_only(captioner):
    """Padded positions get no logits (the output layer sees the 13 label tokens, not 2 x 2 x 5 positions), and the
    loss and gradients still equal transformers' own loss over every position."""
    model, eos = copy.deepcopy(captioner[0]).eval(), captioner[1].eos_token_id
    pixels = torch.randn(2, 3, 32, 32)
    captions = [[[5, 6, 7, eos], [8, eos]], [[9, eos], [11, 12, 13, 14, eos]]]
    labels = pad_labels(captions)
    rows = []
    model.decoder.lm_head.register_forward_hook(lambda module, inputs, output: rows.append(output.shape[:-1]))
    loss, outputs = caption_loss(model, pixels, labels)
    assert rows == [(1, 13)] and outputs.logits.shape[:2] == (1, 13)
    loss.backward()
    ours = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    flat = labels.reshape(4, -1)
    reference = model(pixel_values=pixels.repeat_interleave(2, dim=0), labels=flat).loss
    reference.backward()
    assert rows[-1] == (4, flat.shape[1])  # outside caption_loss the model is as it was
    assert torch.allclose(loss, reference, atol=1e-5)
    for name, parameter in model.named_parameters():
        if parameter.grad is not None:
            assert torch.allclose(ours[name], parameter.grad, atol=1e-5), name


def test_loss_over_num_items_in_batch_sums_tokens(captioner):
    model, tokenizer = captioner
    eos = tokenizer.eos_token_id
    labels = pad_labels([[[5, eos], [6, 7, eos]]])
    mean_loss, _ = caption_loss(model, torch.randn(1, 3, 32, 32), labels)
    torch.manual_seed(0)
    pixels = torch.randn(1, 3, 32, 32)
    mean_loss, _ = caption_loss(model, pixels, labels)
    summed, _ = caption_loss(model, pixels, labels, num_items_in_batch=10)
    assert torch.allclose(summed * 10, mean_loss * 5, atol=1e-4)  # 5 label tokens


def test_per_image_loss_averages_each_images_references(captioner):
    model, tokenizer = captioner
    model.eval()
    eos = tokenizer.eos_token_id
    pixels = torch.randn(2, 3, 32, 32)
    captions = [[[5, 6, eos], [7, eos]], [[8, 9, 10, eos]]]
    losses = per_image_loss(model, pixels, pad_labels(captions))
    first, _ = caption_loss(model, pixels[:1], pad_labels(captions[:1]))
    second, _ = caption_loss(model, pixels[1:], pad_labels(captions[1:]))
    assert torch.allclose(losses, torch.stack([first, second]), atol=1e-5)


@pytest.mark.slow
def test_encode_once_compiles_as_one_graph(captioner):
    """`--torch_compile`: the repeated encoder states keep a static shape and the caption tokens reach the LM head
    through a plain index, so nothing splits the graph, batch after batch."""
    model, tokenizer = copy.deepcopy(captioner[0]), captioner[1]
    model.eval()
    eos = tokenizer.eos_token_id
    compiled_model = torch.compile(model, fullgraph=True)
    for captions in ([[[5, 6, eos], [7, eos]], [[8, 9, 10, eos]]], [[[5, eos], [7, eos]], [[8, 9, eos]]]):
        # the same padded length (as --pad_to_max_length gives), another number of caption tokens
        pixels, labels = torch.randn(2, 3, 32, 32), pad_labels(captions, pad_to=4)
        eager, _ = caption_loss(model, pixels, labels)
        compiled, _ = caption_loss(compiled_model, pixels, labels)
        assert torch.allclose(eager, compiled, atol=1e-5)


def test_label_smoothing_matches_torch_on_the_same_tokens(captioner):
    model, tokenizer = captioner
    model.eval()
    eos = tokenizer.eos_token_id
    pixels, labels = torch.randn(1, 3, 32, 32), pad_labels([[[5, 6, eos], [7, eos]]])
    plain, outputs = caption_loss(model, pixels, labels)
    smoothed, _ = caption_loss(model, pixels, labels, label_smoothing=0.1)
    flat = labels[0][labels[0] != -100]
    logits = outputs.logits[0]  # the caption tokens' only
    assert torch.allclose(smoothed, torch.nn.functional.cross_entropy(logits, flat, label_smoothing=0.1), atol=1e-5)
    assert not torch.allclose(smoothed, plain)
