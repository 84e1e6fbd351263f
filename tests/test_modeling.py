import copy

import pytest
import torch
from transformers import AutoTokenizer, VisionEncoderDecoderModel

from vitgpt2.collator import pad_labels
from vitgpt2.modeling import (
    attention_implementations,
    caption_loss,
    configure_special_tokens,
    load_captioner,
    pad_vocabulary,
    per_image_loss,
)


@pytest.fixture(scope="module")
def captioner(tiny_models):
    encoder, decoder = tiny_models
    tokenizer = AutoTokenizer.from_pretrained(decoder)
    model = load_captioner(encoder=encoder, decoder=decoder)
    configure_special_tokens(model, tokenizer, max_length=12, num_beams=2)
    return model, tokenizer


def test_joins_local_folders_with_cross_attention_and_sdpa(captioner):
    model, _ = captioner
    assert isinstance(model, VisionEncoderDecoderModel)
    assert model.decoder.config.is_decoder and model.decoder.config.add_cross_attention
    assert attention_implementations(model) == {"encoder": "sdpa", "decoder": "sdpa"}


def test_special_token_ids_are_on_the_model_and_the_generation_config(captioner):
    model, tokenizer = captioner
    eos = tokenizer.eos_token_id
    for config in (model.config, model.generation_config):
        assert config.decoder_start_token_id == eos  # GPT-2's BOS is its EOS token
        assert config.pad_token_id == eos
        assert config.eos_token_id == eos
    assert model.generation_config.max_length == 12 and model.generation_config.num_beams == 2


def test_ids_survive_save_and_reload(captioner, tmp_path):
    model, tokenizer = captioner
    model.save_pretrained(tmp_path)
    reloaded = load_captioner(checkpoint=str(tmp_path))
    assert reloaded.generation_config.decoder_start_token_id == tokenizer.eos_token_id
    assert reloaded.generation_config.pad_token_id == tokenizer.eos_token_id


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


def test_missing_encoder_or_decoder_is_a_clear_error():
    with pytest.raises(ValueError, match="encoder and a decoder"):
        load_captioner(encoder="x")


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


def test_unused_pooler_is_kept_but_frozen(captioner):
    model, _ = captioner
    pooler = model.encoder.pooler
    assert pooler is not None and not any(p.requires_grad for p in pooler.parameters())
    assert all(p.requires_grad for name, p in model.named_parameters() if "pooler" not in name)


@pytest.mark.slow
def test_encode_once_compiles_as_one_graph(captioner):
    """`--torch_compile`: the repeated encoder states keep a static shape, so nothing splits the graph."""
    model, tokenizer = copy.deepcopy(captioner[0]), captioner[1]
    model.eval()
    eos = tokenizer.eos_token_id
    pixels, labels = torch.randn(2, 3, 32, 32), pad_labels([[[5, 6, eos], [7, eos]], [[8, 9, 10, eos]]])
    eager, _ = caption_loss(model, pixels, labels)
    compiled, _ = caption_loss(torch.compile(model, fullgraph=True), pixels, labels)
    assert torch.allclose(eager, compiled, atol=1e-5)


def test_label_smoothing_matches_torch_on_the_same_tokens(captioner):
    model, tokenizer = captioner
    model.eval()
    eos = tokenizer.eos_token_id
    pixels, labels = torch.randn(1, 3, 32, 32), pad_labels([[[5, 6, eos], [7, eos]]])
    plain, outputs = caption_loss(model, pixels, labels)
    smoothed, _ = caption_loss(model, pixels, labels, label_smoothing=0.1)
    flat = labels[0][labels[0] != -100]
    logits = outputs.logits[labels[0] != -100]
    assert torch.allclose(smoothed, torch.nn.functional.cross_entropy(logits, flat, label_smoothing=0.1), atol=1e-5)
    assert not torch.allclose(smoothed, plain)


def test_padded_vocabulary_is_aligned_tied_and_never_generated(captioner):
    model, tokenizer = copy.deepcopy(captioner[0]), captioner[1]
    model.eval()
    size = pad_vocabulary(model, len(tokenizer), 64)
    assert size % 64 == 0 and size > len(tokenizer) and model.config.decoder.vocab_size == size
    head, embeddings = model.decoder.get_output_embeddings(), model.decoder.get_input_embeddings()
    assert head.weight.shape[0] == size and head.weight.data_ptr() == embeddings.weight.data_ptr()
    assert pad_vocabulary(model, len(tokenizer), 64) == size  # idempotent, as when resuming
    padding = list(range(len(tokenizer), size))
    assert model.generation_config.suppress_tokens == padding

    # make a padded id by far the likeliest next token: generate must still never choose it
    pixels, start = torch.randn(2, 3, 32, 32), torch.full((2, 1), tokenizer.eos_token_id)
    with torch.no_grad():
        hidden = model(pixel_values=pixels, decoder_input_ids=start, output_hidden_states=True).decoder_hidden_states
        embeddings.weight[padding[0]] = 100 * torch.nn.functional.normalize(hidden[-1][:, -1].mean(0), dim=0)
        logits = model(pixel_values=pixels, decoder_input_ids=start).logits
    assert (logits[:, -1].argmax(-1) == padding[0]).all()
    generated = model.generate(pixel_values=pixels, max_new_tokens=4, num_beams=1)
    assert not set(generated.flatten().tolist()) & set(padding)


def test_vocabulary_is_left_alone_with_multiple_one(captioner):
    model, tokenizer = copy.deepcopy(captioner[0]), captioner[1]
    size = model.config.decoder.vocab_size
    assert pad_vocabulary(model, len(tokenizer), 1) == size == model.decoder.get_output_embeddings().weight.shape[0]
    assert not model.generation_config.suppress_tokens


def test_vocabulary_multiple_below_one_is_refused():
    from vitgpt2.arguments import ModelArguments

    with pytest.raises(ValueError, match="--pad_vocab_to_multiple_of must be 1 or more, not 0"):
        ModelArguments(pad_vocab_to_multiple_of=0)
