"""The n-gram scores on their own, on cases small enough to check by hand (parity on a real corpus is in
tests/test_metrics.py)."""

import pytest

from vitgpt2.metrics.coco_scores import bleu_scores, cider_scores, coco_rouge_l, lcs_length, ngram_counts


def _counts(*captions):
    return [ngram_counts(caption.split()) for caption in captions]


def test_ngram_counts():
    counts = ngram_counts("a dog a dog".split())
    assert counts[("a",)] == 2 and counts[("a", "dog")] == 2 and counts[("dog", "a", "dog")] == 1
    assert sum(1 for gram in counts if len(gram) == 4) == 1


def test_bleu_of_a_copy_is_one_and_of_a_stranger_near_zero():
    refs = [_counts("a dog runs on the beach", "the dog runs")]
    lengths = [[6, 3]]
    corpus, _ = bleu_scores(_counts("a dog runs on the beach"), [6], refs, lengths)
    assert corpus == pytest.approx([1.0] * 4)
    corpus, _ = bleu_scores(_counts("purple cat sleeps"), [3], refs, lengths)
    assert corpus[3] < 1e-6


def test_cider_ranks_the_matching_caption_first():
    refs = [_counts("a dog on the beach", "a dog running"), _counts("a red bus", "a bus on the road")]
    right = cider_scores(_counts("a dog on the beach", "a red bus on the road"), refs)
    swapped = cider_scores(_counts("a red bus on the road", "a dog on the beach"), refs)
    assert all(good > bad for good, bad in zip(right, swapped))


def test_lcs_and_coco_rouge_l():
    assert lcs_length("a b c d".split(), "a c d e".split()) == 3
    assert coco_rouge_l("a dog runs".split(), ["a dog runs".split()]) == pytest.approx(1.0)
    assert coco_rouge_l([], ["a dog".split()]) == 0.0
