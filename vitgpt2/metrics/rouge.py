"""ROUGE-1/2/L through rouge-score, with its Porter stemmer, fast on captions."""

from functools import lru_cache, partial

from nltk.stem import porter
from rouge_score import rouge_scorer as rouge_score_scorer
from rouge_score import tokenize as rouge_tokenize
from rouge_score import tokenizers as rouge_tokenizers

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


class _CachedRougeTokenizer(rouge_tokenizers.Tokenizer):
    """rouge_score's default tokenizer with the Porter stemmer, memoised per text and per word.

    Stemming dominates rouge_score's run time, `score_multi` re-tokenises the prediction once per reference, and
    captions reuse few words: the memos make ROUGE several times faster, with identical tokens.
    """

    def __init__(self, cache_size: int = 1 << 16):
        stemmer = porter.PorterStemmer()
        stemmer.stem = lru_cache(maxsize=cache_size)(stemmer.stem)
        self._tokenize = lru_cache(maxsize=cache_size)(partial(rouge_tokenize.tokenize, stemmer=stemmer))

    def tokenize(self, text: str) -> list[str]:
        return self._tokenize(text)


def rouge_scorer(rouge_types=ROUGE_TYPES) -> rouge_score_scorer.RougeScorer:
    return rouge_score_scorer.RougeScorer(list(rouge_types), tokenizer=_CachedRougeTokenizer())
