"""How varied a captioner's captions are, the usual guard against a model that games its reward: Java-free and cheap.

- `vocabulary`: distinct words used over all captions;
- `distinct1`, `distinct2`: distinct unigrams (bigrams) as a share of all unigrams (bigrams), 0-100;
- `copied_from_train`: the share of captions that repeat a training reference word for word, 0-100 (when the
  training references are known);
- `degenerate`: the share of captions, 0-100, that repeat a word back to back ("a a dog") or end on a word that
  leaves the sentence hanging ("a dog on the"), what a captioner tuned on its reward tends to write when it games it.
Words are COCO's tokens (`vitgpt2.metrics.ptb`), so case and punctuation don't make a caption new.
"""

from collections.abc import Iterable, Sequence

from .ptb import tokenize_all

# Words a caption cannot end on.
DANGLING = frozenset({"a", "an", "the", "of", "with", "and", "on", "in", "at", "to"})


def is_degenerate(tokens: Sequence[str]) -> bool:
    return bool(tokens) and (tokens[-1] in DANGLING or any(a == b for a, b in zip(tokens, tokens[1:])))


def diversity(captions_tokens: Sequence[Sequence[str]], training_captions: frozenset[tuple[str, ...]] | None = None):
    unigrams = [token for tokens in captions_tokens for token in tokens]
    bigrams = [pair for tokens in captions_tokens for pair in zip(tokens, tokens[1:])]
    scores = {
        "vocabulary": float(len(set(unigrams))),
        "distinct1": 100.0 * len(set(unigrams)) / max(len(unigrams), 1),
        "distinct2": 100.0 * len(set(bigrams)) / max(len(bigrams), 1),
        "degenerate": 100.0 * sum(map(is_degenerate, captions_tokens)) / max(len(captions_tokens), 1),
    }
    if training_captions is not None:
        copied = sum(tuple(tokens) in training_captions for tokens in captions_tokens)
        scores["copied_from_train"] = 100.0 * copied / max(len(captions_tokens), 1)
    return scores


def caption_set(captions: Iterable[str]) -> frozenset[tuple[str, ...]]:
    """Captions as the token tuples `diversity` compares."""
    return frozenset(map(tuple, tokenize_all(list(captions))))
