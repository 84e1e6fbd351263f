"""Sampling captions for self-critical training, and turning them into labels the encode-once loss reads."""

import contextlib

import torch
import torch.nn.functional as F
from transformers import GenerationConfig

from ..loss import IGNORE_INDEX

# Kept from the model's generation_config: the special tokens, and the suppression of the padded vocabulary.
KEPT = ("decoder_start_token_id", "bos_token_id", "eos_token_id", "pad_token_id", "suppress_tokens")


def _config(saved: GenerationConfig, **settings) -> GenerationConfig:
    return GenerationConfig(**{key: getattr(saved, key) for key in KEPT}, num_beams=1, top_p=1.0, **settings)


def sampling_config(saved: GenerationConfig, num_samples: int, temperature: float, max_new_tokens: int):
    """Multinomial sampling from the model's own distribution. The decoding controls saved for inference (beams,
    repetition penalty, no-repeat n-grams, minimum length) and generate's default top-k of 50 stay out: the policy
    gradient must follow captions drawn from the policy itself."""
    return _config(
        saved,
        do_sample=True,
        num_return_sequences=num_samples,
        temperature=temperature,
        top_k=0,
        max_new_tokens=max_new_tokens,
    )


def greedy_config(saved: GenerationConfig, max_new_tokens: int) -> GenerationConfig:
    """The greedy caption, the baseline of the original SCST."""
    return _config(saved, do_sample=False, max_new_tokens=max_new_tokens)


@contextlib.contextmanager
def generating_with(model, config: GenerationConfig):
    """Within the block, `model.generate()` uses `config` alone. Passed as an argument instead, `generate` would fill
    every option `config` leaves at its default from the model's own generation_config: a saved repetition penalty
    or no-repeat n-gram size would reshape the samples."""
    saved, model.generation_config = model.generation_config, config
    try:
        yield
    finally:
        model.generation_config = saved


def sample_labels(sequences: torch.Tensor, eos_token_id: int, per_image: int) -> torch.Tensor:
    """(images, per_image, length) labels of generated `sequences` (start token first, as `generate` returns them):
    each caption's tokens up to and including its first EOS, -100 after it. A caption cut at the length limit keeps
    all its tokens."""
    tokens = sequences[:, 1:]
    is_eos = tokens == eos_token_id
    ended_before = (is_eos.cumsum(dim=1) - is_eos.long()) > 0  # positions after the first EOS
    labels = tokens.masked_fill(ended_before, IGNORE_INDEX)
    return labels.view(-1, per_image, labels.shape[-1])


def ended(sequences: torch.Tensor, eos_token_id: int) -> list[bool]:
    """For each generated caption (start token first), whether it generated its EOS rather than stopping at the
    length limit. The start token is skipped: GPT-2's start and end are the same token."""
    return (sequences[:, 1:] == eos_token_id).any(dim=1).tolist()


def with_references(samples: torch.Tensor, references: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(images, K + R, length) labels, each image's K samples then its R reference captions, padded to one length
    so that one encoder pass serves both; and, for each caption row present (not all -100), whether it is a sample.
    Every sample is present: it holds at least its first token."""
    length = max(samples.shape[-1], references.shape[-1])
    labels = torch.cat(
        [F.pad(part, (0, length - part.shape[-1]), value=IGNORE_INDEX) for part in (samples, references)], dim=1
    )
    is_sample = torch.zeros(labels.shape[:2], dtype=torch.bool, device=labels.device)
    is_sample[:, : samples.shape[1]] = True
    return labels, is_sample[(labels != IGNORE_INDEX).any(dim=-1)]
