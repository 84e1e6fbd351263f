"""Captioning metrics: BLEU-1..4, ROUGE, BERTScore, CIDEr-D, METEOR and SPICE, scored per image against ALL its references.

One `CaptionScorer` is built per run and reused: it loads the BERTScore model once and keeps the METEOR Java
process alive between calls. Every value is on a 0-100 scale (papers' convention: CIDEr 112.3 is pycocoevalcap's
1.123) and keys carry no prefix (the trainer adds `eval_`).

Text goes through COCO's tokenization (`vitgpt2.metrics.ptb`: pycocoevalcap's PTB tokens, exactly, in pure Python)
before every metric that splits words (BLEU, ROUGE, CIDEr, METEOR, SPICE). BERTScore gets the raw text: its model has
its own tokenizer, and bert-score's rescaling baselines were computed on raw text.

- BLEU-1..4 (`bleu` is BLEU-4): corpus level with the closest reference length, computed exactly as pycocoevalcap's
  `Bleu(4)`. Per image: pycocoevalcap's sentence BLEU, i.e. no smoothing beyond its 1e-15 / 1e-9 epsilons, so an
  image without any matching 4-gram gets ~0 BLEU-4.
- ROUGE-1/2/L: as `rouge_score` computes them with its Porter stemmer, best reference per prediction (its
  `score_multi`, F-measure; `vitgpt2.metrics.rouge`), then the mean. `rougeL_coco` is COCO eval's ROUGE-L (pycocoevalcap `Rouge`: LCS, beta = 1.2, best precision and
  best recall over the references), which is what captioning papers report as ROUGE-L; `rouge_coco` computes it
  alone, without rouge-score (and nltk, whose import alone takes about a second).
- CIDEr-D: a reimplementation of pycocoevalcap's `Cider` (n = 4, sigma = 6, document frequencies from the
  references of the scored set), faster because each reference vector is built once.
- BERTScore: `bert_score.BERTScorer`; with several references the best P, R and F1 are taken (bert-score's rule).
- METEOR / SPICE: pycocoevalcap + Java (`pip install vitgpt2[coco]`); skipped with one warning when unavailable.
"""

import dataclasses
import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from functools import cached_property

from .arguments import IMAGE_METRICS, MetricsArguments
from .bertscore import BertScore
from .clipscore import ClipScore
from .coco_scores import bleu_scores, cider_scores, coco_rouge_l, ngram_counts
from .diversity import caption_set, diversity
from .java_metrics import JAVA_METRICS, java_inputs, java_metric, java_metric_unavailable
from .ptb import tokenize_all

logger = logging.getLogger(__name__)


def _check_inputs(predictions, references) -> tuple[list[str], list[list[str]]]:
    if isinstance(predictions, str) or len(predictions) != len(references):
        raise ValueError("predictions must be a list of strings with one list of references per prediction")
    if not predictions:
        raise ValueError("nothing to score: predictions is empty")
    references = [[image_refs] if isinstance(image_refs, str) else list(image_refs) for image_refs in references]
    missing = [i for i, image_refs in enumerate(references) if not image_refs]
    if missing:
        raise ValueError(f"every prediction needs at least one reference; none for index {missing[:10]}")
    return ["" if text is None else str(text) for text in predictions], references


class _Captions:
    """One batch being scored: raw text, normalised text, tokens and n-gram counts, each derived once and shared."""

    def __init__(self, predictions: list[str], references: list[list[str]]):
        self.predictions, self.references = predictions, references
        self.images, self.clip_rows = None, None

    @cached_property
    def hyp_tokens(self) -> list[list[str]]:
        return tokenize_all(self.predictions)

    @cached_property
    def refs_tokens(self) -> list[list[list[str]]]:
        # one file of references, in image order, as pycocoevalcap tokenizes them
        flat = iter(tokenize_all([ref for image_refs in self.references for ref in image_refs]))
        return [[next(flat) for _ in image_refs] for image_refs in self.references]

    @cached_property
    def hyps(self) -> list[str]:
        return [" ".join(tokens) for tokens in self.hyp_tokens]

    @cached_property
    def refs(self) -> list[list[str]]:
        return [[" ".join(tokens) for tokens in image_refs] for image_refs in self.refs_tokens]

    # BLEU and CIDEr split the tokenized text on any whitespace, as pycocoevalcap does, so the rare PTB token that
    # holds a non-breaking space ("2 1/2", phone numbers) counts as two words there; COCO's ROUGE-L splits on " ".
    @cached_property
    def hyp_words(self) -> list[list[str]]:
        return [hyp.split() for hyp in self.hyps]

    @cached_property
    def refs_words(self) -> list[list[list[str]]]:
        return [[ref.split() for ref in image_refs] for image_refs in self.refs]

    @cached_property
    def hyp_counts(self) -> list[Counter]:
        return [ngram_counts(words) for words in self.hyp_words]

    @cached_property
    def refs_counts(self) -> list[list[Counter]]:
        return [[ngram_counts(words) for words in image_refs] for image_refs in self.refs_words]


class CaptionScorer:
    """Scores captions per image against all of that image's references. Build once, call `score` many times."""

    def __init__(
        self,
        args: MetricsArguments | None = None,
        device: str | None = None,
        training_captions: Iterable[str] | None = None,
        **options,
    ):
        """`args` (or its fields as keyword `options`, which override it) say which metrics and which BERTScore model;
        `device` is BERTScore's (default: cuda if available). With `training_captions`, every score also says how many
        captions repeat one of them (`copied_from_train`)."""
        args = dataclasses.replace(args or MetricsArguments(), **options)
        requested = args.metric_names
        self.skipped = {m: why for m in requested if m in JAVA_METRICS and (why := java_metric_unavailable(m))}
        for metric, why in self.skipped.items():
            logger.warning("Skipping %s: %s.", metric.upper(), why)
        self.metrics = tuple(m for m in requested if m not in self.skipped)
        self._training_captions = training_captions
        self._java = {}  # METEOR / SPICE wrappers, started at first use and kept (METEOR is a long-lived process)
        self._rouge = None
        if "rouge" in self.metrics:
            from .rouge import RougeTokenizer  # rouge-score imports all of nltk: only when asked for

            self._rouge = RougeTokenizer()
        self.clipscore = None
        if any(metric in IMAGE_METRICS for metric in self.metrics):  # loaded at the first score
            self.clipscore = ClipScore(args.clip_model, device)
        self.bertscore = None
        if "bertscore" in self.metrics:  # checked now, loaded at the first score
            self.bertscore = BertScore(
                args.bertscore_model,
                args.bertscore_num_layers,
                args.bertscore_rescale_with_baseline,
                args.bertscore_lang,
                device,
                args.bertscore_batch_size,
            )

    @property
    def needs_images(self) -> bool:
        return self.clipscore is not None

    def score(
        self,
        predictions: Sequence[str],
        references: Sequence[Sequence[str]],
        return_per_image: bool = False,
        images: Sequence | None = None,
    ):
        """Corpus metrics (0-100) for `predictions[i]` against all of `references[i]` (and `images[i]`, a PIL image,
        for CLIPScore); per-image too if asked. The corpus metrics always include the captions' diversity
        (`vitgpt2.metrics.diversity`)."""
        captions = _Captions(*_check_inputs(predictions, references))
        if self.needs_images:
            if images is None or len(images) != len(captions.predictions):
                raise ValueError("clipscore and refclipscore need one image per prediction (images=[...])")
            captions.images = list(images)
        corpus, per_image = diversity(captions.hyp_tokens, self._training_set), [{} for _ in captions.predictions]
        for metric in self.metrics:
            metric_corpus, metric_per_image = getattr(self, f"_score_{metric}")(captions)
            corpus.update({key: 100.0 * value for key, value in metric_corpus.items()})
            for row, values in zip(per_image, metric_per_image):
                row.update({key: 100.0 * value for key, value in values.items()})
        return (corpus, per_image) if return_per_image else corpus

    @cached_property
    def _training_set(self):
        # tokenized at the first score, not when the scorer is built
        return None if self._training_captions is None else caption_set(self._training_captions)

    # Each _score_<metric>(captions) returns (corpus values, per-image values) on a 0-1 scale.

    def _score_bleu(self, captions: _Captions):
        corpus, per_image = bleu_scores(
            captions.hyp_counts,
            [len(words) for words in captions.hyp_words],
            captions.refs_counts,
            [[len(words) for words in image_refs] for image_refs in captions.refs_words],
        )
        return _bleu_keys(corpus), [_bleu_keys(values) for values in per_image]

    def _score_cider(self, captions: _Captions):
        scores = cider_scores(captions.hyp_counts, captions.refs_counts)
        return {"cider": sum(scores) / len(scores)}, [{"cider": score} for score in scores]

    def _score_rouge_coco(self, captions: _Captions):
        per_image = [
            {"rougeL_coco": coco_rouge_l(hyp_tokens, refs_tokens)}
            for hyp_tokens, refs_tokens in zip(captions.hyp_tokens, captions.refs_tokens)
        ]
        return _mean_rows(per_image), per_image

    def _score_rouge(self, captions: _Captions):
        from .rouge import best_rouge

        _, per_image = self._score_rouge_coco(captions)
        for row, hyp, image_refs in zip(per_image, captions.hyps, captions.refs):
            row.update(best_rouge(self._rouge, image_refs, hyp))
        return _mean_rows(per_image), per_image

    def _score_bertscore(self, captions: _Captions):
        keys = ("bertscore_precision", "bertscore_recall", "bertscore_f1")
        per_image = [
            dict(zip(keys, value)) for value in self.bertscore.score(captions.predictions, captions.references)
        ]
        return _mean_rows(per_image), per_image

    def _clip_rows(self, captions: _Captions) -> list[dict]:
        if captions.clip_rows is None:  # one pass serves both metrics
            references = captions.references if "refclipscore" in self.metrics else None
            captions.clip_rows = self.clipscore.score(captions.predictions, references, captions.images)
        return captions.clip_rows

    def _score_clipscore(self, captions: _Captions):
        per_image = [{"clipscore": row["clipscore"]} for row in self._clip_rows(captions)]
        return _mean_rows(per_image), per_image

    def _score_refclipscore(self, captions: _Captions):
        per_image = [{"refclipscore": row["refclipscore"]} for row in self._clip_rows(captions)]
        return _mean_rows(per_image), per_image

    def _score_java(self, metric, captions: _Captions):
        if metric not in self._java:
            self._java[metric] = java_metric(metric)
        gts, res = java_inputs(captions.hyps, captions.refs)
        corpus, per_image = self._java[metric].compute_score(gts, res)
        if metric == "spice":  # Spice returns per-image dicts of sub-scores; the headline is "All" F-score
            per_image = [image["All"]["f"] for image in per_image]
        return {metric: float(corpus)}, [{metric: float(value)} for value in per_image]

    def _score_meteor(self, captions: _Captions):
        return self._score_java("meteor", captions)

    def _score_spice(self, captions: _Captions):
        return self._score_java("spice", captions)


def _bleu_keys(values: Sequence[float]) -> dict[str, float]:
    return {"bleu1": values[0], "bleu2": values[1], "bleu3": values[2], "bleu": values[3]}


def _mean_rows(rows: Sequence[dict[str, float]]) -> dict[str, float]:
    return {key: sum(row[key] for row in rows) / len(rows) for key in rows[0]}
