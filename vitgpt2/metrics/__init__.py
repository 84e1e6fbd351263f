"""Captioning metrics, each caption scored against ALL references of its image: `CaptionScorer` (scorer.py), the
words COCO's evaluation scores (ptb.py, its PTB tokenizer in pure Python), the n-gram scores computed as pycocoevalcap
does (coco_scores.py), and an `evaluate` module wrapping the scorer (caption_metrics/)."""

import os

from .arguments import ALL_METRICS, DEFAULT_METRICS, MetricsArguments, parse_metrics
from .ptb import normalize_caption, tokenize, tokenize_all
from .scorer import CaptionScorer

__all__ = [
    "ALL_METRICS",
    "DEFAULT_METRICS",
    "CaptionScorer",
    "MetricsArguments",
    "evaluate_module_path",
    "normalize_caption",
    "parse_metrics",
    "tokenize",
    "tokenize_all",
]


def evaluate_module_path() -> str:
    """Folder of the `evaluate` metric wrapping CaptionScorer: `evaluate.load(evaluate_module_path())`."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "caption_metrics")
