"""Small encoder and decoder checkpoints in hub layout, for offline demos and tests.

The folders are written with `save_pretrained`, so the training script loads them through exactly the
`from_pretrained` path it uses for `google/vit-base-patch16-224-in21k` and `distilgpt2`.
Weights are random; the tokenizer is a byte-level BPE (GPT-2's scheme) trained on the given captions.
"""

import os
from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast, ViTConfig, ViTImageProcessor, ViTModel

GPT2_SPECIAL_TOKEN = "<|endoftext|>"
CLIP_START, CLIP_END = "<|startoftext|>", "<|endoftext|>"


def _byte_level_bpe(texts: Iterable[str], vocab_size: int, special_tokens: list[str]) -> Tokenizer:
    """A byte-level BPE (GPT-2's and CLIP's scheme) trained on `texts`."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


def train_byte_level_bpe(texts: Iterable[str], vocab_size: int = 512) -> GPT2TokenizerFast:
    """A GPT-2-style tokenizer (byte-level BPE, `<|endoftext|>` as BOS/EOS/UNK, no pad token)."""
    tokenizer = _byte_level_bpe(texts, vocab_size, [GPT2_SPECIAL_TOKEN])
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    return GPT2TokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=GPT2_SPECIAL_TOKEN,
        eos_token=GPT2_SPECIAL_TOKEN,
        unk_token=GPT2_SPECIAL_TOKEN,
        model_max_length=128,
    )


def sincos_position_embeddings(grid: int, dim: int):
    """Fixed 2D sin-cos position embeddings (as in MAE), (grid * grid, dim): rows in one half of the channels,
    columns in the other.

    A pretrained ViT's position embeddings encode where each patch is. Random ones at the usual 0.02 scale do
    not, and a 3-layer ViT then takes many epochs to learn it: in the demo, trained from noise, it learned the colour
    of the shapes but not the side of the picture they sit on.
    """
    import torch

    rows, columns = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    quarter = dim // 4
    frequencies = 1.0 / (10000 ** (torch.arange(quarter, dtype=torch.float32) / quarter))
    parts = []
    for coordinate in (rows, columns):
        angles = coordinate.flatten().float()[:, None] * frequencies[None]
        parts += [torch.sin(angles), torch.cos(angles)]
    embeddings = torch.cat(parts, dim=1)
    return torch.nn.functional.pad(embeddings, (0, dim - embeddings.shape[1]))


def write_tiny_encoder(
    output_dir: str,
    image_size: int = 64,
    patch_size: int = 8,
    hidden_size: int = 128,
    num_layers: int = 3,
    seed: int = 0,
) -> str:
    """A ViT encoder + ViTImageProcessor folder, like `google/vit-base-patch16-224-in21k` but small."""
    import torch

    torch.manual_seed(seed)
    config = ViTConfig(
        image_size=image_size,
        patch_size=patch_size,
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=max(1, hidden_size // 32),
        intermediate_size=hidden_size * 4,
    )
    encoder = ViTModel(config)  # with a pooler, as hub ViT checkpoints have
    with torch.no_grad():
        grid = image_size // patch_size
        encoder.embeddings.position_embeddings[0, 1:] = sincos_position_embeddings(grid, hidden_size)
        encoder.embeddings.position_embeddings[0, 0] = 0.0
    encoder.save_pretrained(output_dir)
    ViTImageProcessor(size={"height": image_size, "width": image_size}).save_pretrained(output_dir)
    return output_dir


def write_tiny_decoder(
    output_dir: str,
    captions: Iterable[str],
    vocab_size: int = 512,
    hidden_size: int = 128,
    num_layers: int = 3,
    max_positions: int = 128,
    seed: int = 0,
) -> str:
    """A GPT-2 LM head model + tokenizer folder, like `distilgpt2` but small and with a caption-trained BPE."""
    import torch

    tokenizer = train_byte_level_bpe(captions, vocab_size=vocab_size)
    torch.manual_seed(seed)
    eos = tokenizer.convert_tokens_to_ids(GPT2_SPECIAL_TOKEN)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=max_positions,
        n_embd=hidden_size,
        n_layer=num_layers,
        n_head=max(1, hidden_size // 32),
        bos_token_id=eos,
        eos_token_id=eos,
    )
    GPT2LMHeadModel(config).save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    return output_dir


def write_tiny_models(
    output_dir: str,
    captions: Iterable[str],
    image_size: int = 64,
    hidden_size: int = 128,
    num_layers: int = 3,
    vocab_size: int = 512,
    seed: int = 0,
) -> tuple[str, str]:
    """Writes `<output_dir>/encoder` and `<output_dir>/decoder`; returns both paths."""
    sizes = {"hidden_size": hidden_size, "num_layers": num_layers, "seed": seed}
    encoder_dir = write_tiny_encoder(os.path.join(output_dir, "encoder"), image_size=image_size, **sizes)
    decoder_dir = write_tiny_decoder(os.path.join(output_dir, "decoder"), captions, vocab_size=vocab_size, **sizes)
    return encoder_dir, decoder_dir


def write_tiny_clip(output_dir: str, captions: Iterable[str], image_size: int = 32, seed: int = 0) -> str:
    """A CLIP model + processor folder, like `openai/clip-vit-base-patch32` but small, with a caption-trained BPE."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizerFast

    tokenizer = _byte_level_bpe(captions, 400, [CLIP_START, CLIP_END])
    start, end = tokenizer.token_to_id(CLIP_START), tokenizer.token_to_id(CLIP_END)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{CLIP_START} $A {CLIP_END}", special_tokens=[(CLIP_START, start), (CLIP_END, end)]
    )
    fast = CLIPTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=CLIP_START,
        eos_token=CLIP_END,
        pad_token=CLIP_END,
        unk_token=CLIP_END,
        model_max_length=77,
    )
    sizes = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2}
    text = {
        **sizes,
        "vocab_size": len(fast),
        "max_position_embeddings": 77,
        "bos_token_id": start,
        "eos_token_id": end,
    }
    config = CLIPConfig(
        text_config={**text, "pad_token_id": end},
        vision_config={**sizes, "image_size": image_size, "patch_size": 8},
        projection_dim=16,
    )
    torch.manual_seed(seed)
    CLIPModel(config).save_pretrained(output_dir)
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    )
    CLIPProcessor(image_processor=image_processor, tokenizer=fast).save_pretrained(output_dir)
    return output_dir
