"""ROUGE-1, ROUGE-2 and ROUGE-L F-measures as rouge-score computes them, on rouge-score's own tokens.

rouge-score tokenizes (lower case, letters and digits, Porter stemming) and scores each (reference, prediction) pair
in pure Python, with an O(n x m) table for the LCS; `score_multi` then keeps the best F-measure per type. Here the
tokens come from rouge-score's own tokenizer (memoised: captions reuse few words), each reference's n-grams are
counted once, and the LCS is bit-parallel: the same numbers (tests/metrics/test_scorer.py compares them with
`score_multi` exactly), several times faster.
"""

from collections import Counter
from functools import lru_cache, partial

from nltk.stem import porter
from rouge_score import tokenize as rouge_tokenize

from .coco_scores import lcs_length

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


class RougeTokenizer:
    """rouge-score's default tokenizer with the Porter stemmer, memoised per text and per word."""

    def __init__(self, cache_size: int = 1 << 16):
        stemmer = porter.PorterStemmer()
        stemmer.stem = lru_cache(maxsize=cache_size)(stemmer.stem)
        self.tokenize = lru_cache(maxsize=cache_size)(partial(rouge_tokenize.tokenize, stemmer=stemmer))


def _fmeasure(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


def _ngrams(tokens, n: int) -> Counter:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def _ngram_fmeasure(target: Counter, prediction: Counter) -> float:
    overlap = sum(min(count, prediction[ngram]) for ngram, count in target.items())
    return _fmeasure(overlap / max(sum(prediction.values()), 1), overlap / max(sum(target.values()), 1))


def _lcs_fmeasure(target, prediction) -> float:
    if not target or not prediction:
        return 0.0
    lcs = lcs_length(target, prediction)
    return _fmeasure(lcs / len(prediction), lcs / len(target))


def best_rouge(tokenizer: RougeTokenizer, references: list[str], prediction: str) -> dict[str, float]:
    """rouge-score's `score_multi(references, prediction)`: per type, the best F-measure over the references."""
    predicted = tokenizer.tokenize(prediction)
    predicted_ngrams = {n: _ngrams(predicted, n) for n in (1, 2)}
    best = dict.fromkeys(ROUGE_TYPES, 0.0)
    for reference in references:
        target = tokenizer.tokenize(reference)
        for n in (1, 2):
            best[f"rouge{n}"] = max(best[f"rouge{n}"], _ngram_fmeasure(_ngrams(target, n), predicted_ngrams[n]))
        best["rougeL"] = max(best["rougeL"], _lcs_fmeasure(target, predicted))
    return best
