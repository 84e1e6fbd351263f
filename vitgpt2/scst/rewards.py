"""Rewards for self-critical training, on COCO's tokens (`vitgpt2.metrics.ptb`).

CIDEr-D takes its document frequencies from the training references, once, as ruotianluo/ImageCaptioning.pytorch
does (its `coco-train-idxs`): a sampled caption is then scored against its image's references with the same idf at
every step, whatever else is in the batch. BLEU-4 is pycocoevalcap's per-image BLEU. A mix such as `cider:1,bleu:0.5`
adds the weighted rewards, each on pycocoevalcap's scale (CIDEr-D about 1 for a good caption, BLEU 0-1).

With `score_end`, as in that recipe (its `array_to_str` keeps the end token, its `prepro_ngrams.py` appends `<eos>` to
every reference), the end of a caption counts as a word: n-grams such as "on a table <end>" reward a sample that ends
where the references end, and a sample cut at the length limit, which never ended, misses them.
"""

import logging
import sys
from collections.abc import Sequence

import numpy as np
from tqdm.auto import tqdm

from ..errors import ArgumentError
from ..metrics.coco_scores import TfIdf, bleu_scores, cider_scores, ngram_counts
from ..metrics.ptb import tokenize_all

logger = logging.getLogger(__name__)

REWARD_METRICS = ("cider", "bleu")
# The end of a caption as a word. The PTB tokenizer deletes NUL, so no caption's own token can equal it.
END = "\x00end"


def parse_reward(text: str) -> dict[str, float]:
    """ "cider:1,bleu:0.5" -> {"cider": 1.0, "bleu": 0.5}; a metric without a weight weighs 1."""
    weights = {}
    for part in filter(None, (piece.strip() for piece in text.split(","))):
        name, _, weight = part.partition(":")
        name = name.strip().lower()
        if name not in REWARD_METRICS:
            raise ArgumentError(
                f"--scst_reward: unknown metric {name!r} in {text!r}; choose from {list(REWARD_METRICS)}"
            )
        try:
            weights[name] = float(weight) if weight.strip() else 1.0
        except ValueError:
            raise ArgumentError(f"--scst_reward: the weight of {name} must be a number, not {weight!r}") from None
    if not weights or not any(weights.values()):
        raise ArgumentError(f"--scst_reward {text!r} rewards nothing; give e.g. cider:1 or cider:1,bleu:0.5")
    return weights


def _words(captions: Sequence[str]) -> list[list[str]]:
    # PTB tokens, split on any whitespace as pycocoevalcap's BLEU and CIDEr split them; interned, since COCO's
    # 590k training references repeat the same few thousand words.
    return [[sys.intern(word) for word in " ".join(tokens).split()] for tokens in tokenize_all(captions)]


class CaptionReward:
    """Rewards of sampled captions against the references of their images (indices into `references`)."""

    def __init__(
        self,
        references: Sequence[Sequence[str]],
        weights: dict[str, float],
        score_end: bool = False,
        progress: bool = True,
    ):
        self.weights = {name: weight for name, weight in weights.items() if weight}
        self.score_end = score_end
        flat = [caption for image in references for caption in image]
        ends = [END] if score_end else []
        words = iter(
            tokens + ends
            for tokens in _words(tqdm(flat, desc="tokenizing references for the reward", disable=not progress))
        )
        # Words, not n-gram counts, are kept per image: counts of all COCO references would take gigabytes.
        self.references = [[next(words) for _ in image] for image in references]
        self.tfidf = None
        if "cider" in self.weights:
            self.tfidf = TfIdf.from_references([ngram_counts(ref) for ref in image] for image in self.references)
        logger.info("SCST reward %s over %d training images", self.weights, len(self.references))

    def __call__(
        self, captions: Sequence[str], image_indices: Sequence[int], ended: Sequence[bool] | None = None
    ) -> np.ndarray:
        """One reward per caption; `image_indices[i]` is the image `captions[i]` was sampled for, `ended[i]` whether
        the caption ended (generated its EOS) rather than being cut at the length limit; all ended if not given."""
        return self.components(captions, image_indices, ended) @ np.array(list(self.weights.values()))

    def components(
        self, captions: Sequence[str], image_indices: Sequence[int], ended: Sequence[bool] | None = None
    ) -> np.ndarray:
        """(captions, metrics) unweighted rewards, in the order of `weights`."""
        hyp_words = _words(captions)
        if self.score_end:
            ended = [True] * len(captions) if ended is None else ended
            hyp_words = [words + [END] if end else words for words, end in zip(hyp_words, ended, strict=True)]
        hyp_counts = [ngram_counts(words) for words in hyp_words]
        refs_words = [self.references[int(index)] for index in image_indices]
        # Each image's references are counted once, however many of its samples are scored.
        counted = {
            index: [ngram_counts(ref) for ref in self.references[index]]
            for index in dict.fromkeys(map(int, image_indices))
        }
        refs_counts = [counted[int(index)] for index in image_indices]
        columns = []
        for name in self.weights:
            if name == "cider":
                columns.append(cider_scores(hyp_counts, refs_counts, tfidf=self.tfidf))
            else:
                lengths = [[len(ref) for ref in image] for image in refs_words]
                per_image = bleu_scores(hyp_counts, [len(words) for words in hyp_words], refs_counts, lengths)[1]
                columns.append([values[3] for values in per_image])
        return np.asarray(columns, dtype=np.float64).T
