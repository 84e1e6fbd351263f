"""Captioning metrics, each caption scored against ALL references of its image: `CaptionScorer` (scorer.py), the
COCO n-gram scores it computes as pycocoevalcap does (coco_scores.py), and an `evaluate` module wrapping it
(caption_metrics/)."""

import os

from .arguments import ALL_METRICS, DEFAULT_METRICS, MetricsArguments, parse_metrics
from .scorer import CaptionScorer
from .text import normalize_caption

__all__ = [
    "ALL_METRICS",
    "DEFAULT_METRICS",
    "CaptionScorer",
    "MetricsArguments",
    "evaluate_module_path",
    "normalize_caption",
    "parse_metrics",
]


def evaluate_module_path() -> str:
    """Folder of the `evaluate` metric wrapping CaptionScorer: `evaluate.load(evaluate_module_path())`."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "caption_metrics")
