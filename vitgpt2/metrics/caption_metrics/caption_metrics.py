"""Captioning metrics (BLEU-1..4, ROUGE, BERTScore, CIDEr-D, METEOR) as an `evaluate` module.

It wraps `vitgpt2.metrics.CaptionScorer`, so the numbers are the same; load it by path (no Hub access needed):

    metric = evaluate.load(vitgpt2.metrics.evaluate_module_path())
    metric.compute(predictions=["a dog runs"], references=[["a dog running", "a brown dog"]], metrics="bleu,cider")

Options of `compute` are CaptionScorer's: metrics, bertscore_model, bertscore_num_layers,
bertscore_rescale_with_baseline, bertscore_batch_size, bertscore_lang, device. One scorer (and one BERTScore model)
is kept per distinct set of options, so repeated `compute` calls do not reload the model.
"""

import datasets
import evaluate

from vitgpt2.metrics import ALL_METRICS, DEFAULT_METRICS, CaptionScorer

_CITATION = """\
@inproceedings{vedantam2015cider, title={CIDEr: Consensus-based Image Description Evaluation}, year={2015},
  author={Vedantam, Ramakrishna and Zitnick, C. Lawrence and Parikh, Devi}, booktitle={CVPR}}
@inproceedings{papineni2002bleu, title={BLEU: a Method for Automatic Evaluation of Machine Translation},
  author={Papineni, Kishore and Roukos, Salim and Ward, Todd and Zhu, Wei-Jing}, booktitle={ACL}, year={2002}}
@inproceedings{zhang2020bertscore, title={BERTScore: Evaluating Text Generation with BERT}, year={2020},
  author={Zhang, Tianyi and Kishore, Varsha and Wu, Felix and Weinberger, Kilian Q. and Artzi, Yoav}, booktitle={ICLR}}
"""

_DESCRIPTION = f"""\
Image-captioning metrics, each prediction scored against ALL references of its image, on a 0-100 scale
(CIDEr as papers report it: pycocoevalcap x 100). Available metrics: {", ".join(ALL_METRICS)};
default: {", ".join(DEFAULT_METRICS)}.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: list of generated captions, one per image.
    references: list of lists of reference captions, one list per image (any number >= 1).
    metrics: comma-separated subset of bleu, rouge, bertscore, cider, meteor, spice, clipscore, refclipscore.
    images: one PIL image per prediction, for clipscore and refclipscore (clip_model= names the CLIP model).
    bertscore_model, bertscore_num_layers, bertscore_rescale_with_baseline, bertscore_batch_size, bertscore_lang,
    device: BERTScore settings (see vitgpt2.metrics.MetricsArguments).
Returns:
    dict with bleu (BLEU-4), bleu1-3, rouge1, rouge2, rougeL, rougeL_coco, bertscore_precision/recall/f1, cider,
    meteor, spice, clipscore, refclipscore: only those of the selected metrics; and always the captions' diversity
    (vocabulary, distinct1, distinct2).
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class CaptionMetrics(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Sequence(datasets.Value("string"))}
            ),
        )

    def _compute(self, predictions, references, metrics=",".join(DEFAULT_METRICS), images=None, **scorer_options):
        return self._scorer(metrics, **scorer_options).score(predictions, references, images=images)

    def _scorer(self, metrics, **scorer_options) -> CaptionScorer:
        if not hasattr(self, "_scorers"):
            self._scorers = {}
        key = (metrics if isinstance(metrics, str) else ",".join(metrics), tuple(sorted(scorer_options.items())))
        if key not in self._scorers:
            self._scorers[key] = CaptionScorer(metrics=metrics, **scorer_options)
        return self._scorers[key]
