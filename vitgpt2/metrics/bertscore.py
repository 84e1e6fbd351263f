"""BERTScore through bert-score: options checked when the scorer is built, the model loaded on first use."""

import logging
import os
from functools import cached_property

from ..errors import UserError

logger = logging.getLogger(__name__)


class BertScoreUnavailable(UserError, ValueError):
    """The BERTScore model cannot be loaded (not downloaded, offline, or not a model); the message says what to do."""


def default_rescale_with_baseline(model_type: str, lang: str) -> bool:
    """True when bert-score ships a rescaling baseline for this model and language."""
    import bert_score

    baseline = os.path.join(os.path.dirname(bert_score.__file__), "rescale_baseline", lang, f"{model_type}.tsv")
    return os.path.isfile(baseline)


class BertScore:
    """Best precision, recall and F1 over each image's references (bert-score's rule for several references)."""

    def __init__(self, model=None, num_layers=None, rescale=None, lang="en", device=None, batch_size=64):
        from bert_score.utils import lang2model, model2layers

        self.model_type = model or lang2model[lang.lower()]
        if num_layers is None and self.model_type not in model2layers:
            raise ValueError(f"bert-score has no default layer for {self.model_type!r}: set bertscore_num_layers")
        has_baseline = default_rescale_with_baseline(self.model_type, lang)
        if rescale is None:
            rescale = has_baseline
            if not has_baseline:
                logger.info(
                    "BERTScore: no rescaling baseline for %s (%s); reporting raw scores.", self.model_type, lang
                )
        elif rescale and not has_baseline:
            raise ValueError(f"bert-score ships no rescaling baseline for {self.model_type!r} in language {lang!r}")
        self.num_layers, self.rescale, self.lang, self.device, self.batch_size = (
            num_layers,
            rescale,
            lang,
            device,
            batch_size,
        )

    def check_available(self) -> None:
        """Raises `BertScoreUnavailable` now, before hours of training, if the model cannot be had; loads only its
        config."""
        from transformers import AutoConfig

        try:
            AutoConfig.from_pretrained(self.model_type)
        except OSError as error:
            raise self._unavailable(error) from error

    def _unavailable(self, error: Exception) -> BertScoreUnavailable:
        reason = " ".join(str(error).split())
        return BertScoreUnavailable(
            f"BERTScore needs the model {self.model_type!r}, which could not be loaded ({reason}). Download it once "
            "(online), or pass a local folder with --bertscore_model DIR --bertscore_num_layers N, or leave BERTScore "
            "out: --metrics bleu,rouge,cider"
        )

    @cached_property
    def scorer(self):
        """bert-score's `BERTScorer`, loaded the first time captions are scored (a run that never evaluates never
        loads roberta-large)."""
        from bert_score import BERTScorer

        try:
            return BERTScorer(
                model_type=self.model_type,
                num_layers=self.num_layers,
                lang=self.lang,
                rescale_with_baseline=self.rescale,
                device=self.device,
            )
        except OSError as error:
            raise self._unavailable(error) from error

    def score(self, predictions: list[str], references: list[list[str]]) -> list[tuple[float, float, float]]:
        """(precision, recall, F1) of each prediction, 0-1 scale (rescaled when `rescale`)."""
        # bert-score 0.3.13 crashes on an empty string with transformers 5, so empty captions and empty references
        # are kept away from it and given the raw score bert-score assigns them (0), rescaled like the others.
        refs_kept = [[ref for ref in image_refs if ref.strip()] for image_refs in references]
        scored = [i for i, (pred, image_refs) in enumerate(zip(predictions, refs_kept)) if pred.strip() and image_refs]
        values = [self._of_empty()] * len(predictions)
        if scored:
            precision, recall, f1 = self.scorer.score(
                [predictions[i] for i in scored], [refs_kept[i] for i in scored], batch_size=self.batch_size
            )
            for i, p, r, f in zip(scored, precision.tolist(), recall.tolist(), f1.tolist()):
                values[i] = (p, r, f)
        return values

    def _of_empty(self) -> tuple[float, float, float]:
        if not self.rescale:
            return (0.0, 0.0, 0.0)
        baseline = self.scorer.baseline_vals.tolist()
        return tuple(-b / (1 - b) for b in baseline)
