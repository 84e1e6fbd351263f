import torch
from transformers import AutoImageProcessor, AutoTokenizer, GPT2LMHeadModel, ViTModel

from vitgpt2.offline.tiny_models import sincos_position_embeddings, train_byte_level_bpe, write_tiny_models

CAPTIONS = ["a red circle on the left", "two blue squares on the top", "three green triangles at the bottom"] * 20


def test_folders_load_like_hub_checkpoints(tmp_path):
    encoder, decoder = write_tiny_models(str(tmp_path), CAPTIONS, image_size=32, hidden_size=64, num_layers=2)
    vit, processor = ViTModel.from_pretrained(encoder), AutoImageProcessor.from_pretrained(encoder)
    assert vit.config.image_size == 32 and processor.size["height"] == 32
    gpt2, tokenizer = GPT2LMHeadModel.from_pretrained(decoder), AutoTokenizer.from_pretrained(decoder)
    assert gpt2.config.vocab_size == len(tokenizer) and gpt2.config.n_embd == 64
    assert tokenizer.eos_token == tokenizer.bos_token == "<|endoftext|>" and tokenizer.pad_token is None


def test_bpe_round_trips_captions_and_unseen_text():
    tokenizer = train_byte_level_bpe(CAPTIONS, vocab_size=300)
    for text in ("two blue squares on the top", "Ünïcödé ☃ text"):  # byte-level: nothing is unknown
        assert tokenizer.decode(tokenizer(text)["input_ids"]) == text
    assert len(tokenizer("a red circle on the left")["input_ids"]) < len("a red circle on the left") / 2


def test_position_embeddings_encode_the_patch_grid():
    embeddings = sincos_position_embeddings(grid=4, dim=32).view(4, 4, 32)
    rows, columns = embeddings[..., :16], embeddings[..., 16:]
    assert torch.allclose(rows[1, 0], rows[1, 3]) and not torch.allclose(rows[1, 0], rows[2, 0])
    assert torch.allclose(columns[0, 2], columns[3, 2]) and not torch.allclose(columns[0, 2], columns[0, 1])


def test_make_tiny_models_writes_the_encoder_family_asked_for(synthetic_coco, tmp_path, capsys):
    import json

    from vitgpt2.cli import main

    assert main(["make-tiny-models", "--coco_dir", synthetic_coco, "--output_dir", str(tmp_path / "m"),
                 "--encoder_family", "clip", "--image_size", "32"]) == 0  # fmt: skip
    config = json.loads((tmp_path / "m" / "encoder" / "config.json").read_text())
    assert config["model_type"] == "clip" and config["vision_config"]["image_size"] == 32
    assert main(["make-tiny-models", "--coco_dir", synthetic_coco, "--output_dir", str(tmp_path / "r"),
                 "--encoder_family", "resnet"]) == 2  # fmt: skip
    assert "unknown --encoder_family 'resnet'; known: vit, deit" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
