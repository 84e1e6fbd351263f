"""Caption text rules shared by training, evaluation and the pipeline."""


def ensure_pad_token(tokenizer) -> None:
    """GPT-2 has no pad token: EOS doubles as pad. Padding never reaches the loss (labels are padded with -100 after
    each caption's own EOS), and transformers refuses to batch pipeline inputs without a pad token."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token


def clean_caption(text: str) -> str:
    """Whitespace collapsed: what the tokenizer's decoding leaves around special tokens and merges is not a caption."""
    return " ".join(text.split())


def decode_captions(tokenizer, token_ids) -> list[str]:
    """Generated token ids (one row per caption) -> caption text, without special tokens."""
    return [clean_caption(text) for text in tokenizer.batch_decode(token_ids, skip_special_tokens=True)]
