"""Captioning metrics, each caption scored against ALL references of its image: `CaptionScorer` (scorer.py), the
words COCO's evaluation scores (ptb.py, its PTB tokenizer in pure Python), the n-gram scores computed as pycocoevalcap
does (coco_scores.py), and an `evaluate` module wrapping the scorer (caption_metrics/)."""

import importlib
import os

# Imported on first use, so that `vitgpt2 score` and the Trainer load only the metrics they compute.
_EXPORTS = {
    "ALL_METRICS": "arguments",
    "DEFAULT_METRICS": "arguments",
    "MetricsArguments": "arguments",
    "parse_metrics": "arguments",
    "CaptionScorer": "scorer",
    "normalize_caption": "ptb",
    "tokenize": "ptb",
    "tokenize_all": "ptb",
}
__all__ = [*_EXPORTS, "evaluate_module_path"]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)


def evaluate_module_path() -> str:
    """Folder of the `evaluate` metric wrapping CaptionScorer: `evaluate.load(evaluate_module_path())`."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "caption_metrics")
