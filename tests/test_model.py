"""Joining the encoder and decoder, special tokens on both configs, vocabulary padding."""

import copy

import pytest
import torch
from transformers import VisionEncoderDecoderModel

from vitgpt2.model import attention_implementations, load_captioner, pad_vocabulary


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


def test_missing_encoder_or_decoder_is_a_clear_error():
    with pytest.raises(ValueError, match="encoder and a decoder"):
        load_captioner(encoder="x")


def test_unused_pooler_is_kept_but_frozen(captioner):
    model, _ = captioner
    pooler = model.encoder.pooler
    assert pooler is not None and not any(p.requires_grad for p in pooler.parameters())
    assert all(p.requires_grad for name, p in model.named_parameters() if "pooler" not in name)


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


def test_freezing_the_encoder_or_all_but_its_last_blocks(captioner):
    from vitgpt2.errors import ArgumentError
    from vitgpt2.model import encoder_blocks, parameter_counts, set_encoder_trainable

    model = copy.deepcopy(captioner[0])
    total = parameter_counts(model)
    set_encoder_trainable(model, freeze=True)
    assert not any(p.requires_grad for p in model.encoder.parameters())
    assert all(p.requires_grad for p in model.decoder.parameters())
    assert parameter_counts(model)["trainable_parameters"] == total["trainable_parameters"] - sum(
        p.numel() for p in captioner[0].encoder.parameters() if p.requires_grad
    )

    model = copy.deepcopy(captioner[0])
    set_encoder_trainable(model, train_layers=1)
    _, blocks = encoder_blocks(model.encoder)
    trained = {id(p) for p in model.encoder.parameters() if p.requires_grad}
    assert trained == {id(p) for p in [*blocks[-1].parameters(), *model.encoder.layernorm.parameters()]}
    assert all(p.requires_grad for p in blocks[-1].parameters()) and not any(
        p.requires_grad for p in blocks[0].parameters()
    )
    with pytest.raises(ArgumentError, match="the encoder has 2 blocks"):
        set_encoder_trainable(copy.deepcopy(captioner[0]), train_layers=3)


def test_the_encoder_learns_at_its_own_rate(captioner, tmp_path):
    from vitgpt2.arguments import CaptioningTrainingArguments
    from vitgpt2.trainer import CaptioningTrainer

    model, tokenizer = copy.deepcopy(captioner[0]), captioner[1]
    args = CaptioningTrainingArguments(output_dir=str(tmp_path), learning_rate=1e-3, report_to="none")
    trainer = CaptioningTrainer(model=model, args=args, processing_class=tokenizer, encoder_learning_rate=1e-5)
    optimizer = trainer.create_optimizer()
    encoder = {id(p) for p in model.encoder.parameters()}
    rates = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
    trained = [p for p in model.parameters() if p.requires_grad]
    assert len(rates) == len(trained)  # every trained weight in exactly one group
    assert all(rates[id(p)] == (1e-5 if id(p) in encoder else 1e-3) for p in trained)
