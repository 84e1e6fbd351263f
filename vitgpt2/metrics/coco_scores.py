"""BLEU-1..4, CIDEr-D and COCO's ROUGE-L computed exactly as pycocoevalcap does, on tokenised captions.

Pure Python on n-gram counts, several times faster than pycocoevalcap because each reference is counted once;
`vitgpt2.metrics.CaptionScorer` feeds them normalised tokens. Values are on pycocoevalcap's 0-1 scale.
"""

import math
from collections import Counter
from collections.abc import Iterable, Sequence

MAX_NGRAM = 4
CIDER_SIGMA = 6.0
COCO_ROUGE_BETA = 1.2

# ---------------------------------------------------------------------------------------------------------------
# n-gram statistics shared by BLEU and CIDEr
# ---------------------------------------------------------------------------------------------------------------


def ngram_counts(tokens: Sequence[str], max_n: int = MAX_NGRAM) -> Counter:
    """Counts of every 1..max_n-gram (as tuples) in `tokens`."""
    return Counter(tuple(tokens[i : i + n]) for n in range(1, max_n + 1) for i in range(len(tokens) - n + 1))


def _bleu_from_stats(correct, guess, testlen: float, reflen: float) -> list[float]:
    """BLEU-1..4 from clipped matches and guesses, with pycocoevalcap's epsilons and brevity penalty (0-1 scale)."""
    small, tiny = 1e-9, 1e-15
    scores, product = [], 1.0
    for k in range(MAX_NGRAM):
        product *= (correct[k] + tiny) / (guess[k] + small)
        scores.append(product ** (1.0 / (k + 1)))
    ratio = (testlen + tiny) / (reflen + small)
    penalty = math.exp(1 - 1 / ratio) if ratio < 1 else 1.0
    return [score * penalty for score in scores]


def bleu_scores(hyp_counts, hyp_lengths, refs_counts, refs_lengths) -> tuple[list[float], list[list[float]]]:
    """Corpus BLEU-1..4 and per-image BLEU-1..4 (0-1 scale), as pycocoevalcap's `Bleu(4)` with 'closest' length."""
    total_correct, total_guess = [0] * MAX_NGRAM, [0] * MAX_NGRAM
    total_test = total_ref = 0
    per_image = []
    clips = {}  # by identity, as in `cider_scores`: a reference list shared by several hypotheses is merged once
    for counts, testlen, ref_counts, ref_lengths in zip(hyp_counts, hyp_lengths, refs_counts, refs_lengths):
        if id(ref_counts) not in clips:
            # element-wise max: BLEU clips each n-gram at its highest count in any one reference
            clips[id(ref_counts)] = Counter() if not ref_counts else ref_counts[0].copy()
            for ref in ref_counts[1:]:
                clips[id(ref_counts)] |= ref
        max_ref = clips[id(ref_counts)]
        correct = [0] * MAX_NGRAM
        for ngram, count in counts.items():
            correct[len(ngram) - 1] += min(count, max_ref[ngram])
        guess = [max(0, testlen - k) for k in range(MAX_NGRAM)]
        reflen = min((abs(length - testlen), length) for length in ref_lengths)[1]
        per_image.append(_bleu_from_stats(correct, guess, testlen, reflen))
        total_correct = [a + b for a, b in zip(total_correct, correct)]
        total_guess = [a + b for a, b in zip(total_guess, guess)]
        total_test += testlen
        total_ref += reflen
    return _bleu_from_stats(total_correct, total_guess, total_test, total_ref), per_image


class TfIdf:
    """CIDEr's tf-idf n-gram vectors. pycocoevalcap takes the document frequencies from the references of the scored
    set (`from_references`); self-critical training takes them from the training references once, as
    ruotianluo/ImageCaptioning.pytorch's CIDEr-D does."""

    def __init__(self, document_frequency: Counter, num_images: int):
        self.log_df = {ngram: math.log(df) for ngram, df in document_frequency.items()}
        self.log_num_images = math.log(num_images)

    @classmethod
    def from_references(cls, refs_counts: Iterable[Sequence[Counter]]) -> "TfIdf":
        """Document frequency: in how many images' references each n-gram appears."""
        document_frequency, num_images = Counter(), 0
        for ref_counts in refs_counts:
            document_frequency.update(set().union(*ref_counts))
            num_images += 1
        return cls(document_frequency, num_images)

    def vector(self, counts: Counter):
        """-> (weights per n-gram order, norm per order, length). Length counts bigrams, as pycocoevalcap does."""
        weights = [{} for _ in range(MAX_NGRAM)]
        squares = [0.0] * MAX_NGRAM
        bigrams = 0
        for ngram, tf in counts.items():
            weight = tf * (self.log_num_images - self.log_df.get(ngram, 0.0))
            weights[len(ngram) - 1][ngram] = weight
            squares[len(ngram) - 1] += weight * weight
            bigrams += tf if len(ngram) == 2 else 0
        return weights, [math.sqrt(square) for square in squares], bigrams


def _cider_similarity(hyp, ref) -> float:
    """Mean over n-gram orders of the clipped cosine similarity, damped by a Gaussian on the length difference."""
    (hyp_weights, hyp_norms, hyp_len), (ref_weights, ref_norms, ref_len) = hyp, ref
    damping = math.exp(-((hyp_len - ref_len) ** 2) / (2 * CIDER_SIGMA**2))
    total = 0.0
    for hyp_w, ref_w, hyp_norm, ref_norm in zip(hyp_weights, ref_weights, hyp_norms, ref_norms):
        value = 0.0
        for ngram, weight in hyp_w.items():
            ref_weight = ref_w.get(ngram, 0.0)
            value += min(weight, ref_weight) * ref_weight
        if hyp_norm != 0 and ref_norm != 0:
            value /= hyp_norm * ref_norm
        total += value * damping
    return total / MAX_NGRAM


def cider_scores(hyp_counts, refs_counts, tfidf: TfIdf | None = None) -> list[float]:
    """Per-image CIDEr-D on pycocoevalcap's scale (x10); the corpus score is their mean. The document frequencies
    are those of `refs_counts` unless `tfidf` gives others."""
    tfidf = tfidf if tfidf is not None else TfIdf.from_references(refs_counts)
    # A reference list given for several hypotheses (the samples of one image in self-critical training) is
    # weighted once; keyed by identity, since the lists live as long as this call.
    ref_vectors = {}
    scores = []
    for counts, ref_counts in zip(hyp_counts, refs_counts):
        hyp = tfidf.vector(counts)
        if id(ref_counts) not in ref_vectors:
            ref_vectors[id(ref_counts)] = [tfidf.vector(ref) for ref in ref_counts]
        similarities = [_cider_similarity(hyp, ref) for ref in ref_vectors[id(ref_counts)]]
        scores.append(10.0 * sum(similarities) / len(similarities))
    return scores


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence, bit-parallel (Crochemore et al. 2001): O(len(b)) integer ops."""
    masks = {}
    for i, token in enumerate(a):
        masks[token] = masks.get(token, 0) | (1 << i)
    full = (1 << len(a)) - 1
    row = full
    for token in b:
        matches = row & masks.get(token, 0)
        row = ((row + matches) | (row - matches)) & full
    return len(a) - row.bit_count()


def coco_rouge_l(hyp_tokens: Sequence[str], refs_tokens: Sequence[Sequence[str]]) -> float:
    """pycocoevalcap's ROUGE-L (0-1): F-beta (beta 1.2) of the best LCS precision and best LCS recall."""
    if not hyp_tokens:
        return 0.0
    lcs = [lcs_length(hyp_tokens, ref) for ref in refs_tokens]
    precision = max(length / len(hyp_tokens) for length in lcs)
    recall = max(length / max(len(ref), 1) for length, ref in zip(lcs, refs_tokens))
    if precision == 0 or recall == 0:
        return 0.0
    return (1 + COCO_ROUGE_BETA**2) * precision * recall / (recall + COCO_ROUGE_BETA**2 * precision)
