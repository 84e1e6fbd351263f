"""Which captioning metrics to compute, and how BERTScore runs: the options of `run_captioning.py`, `vitgpt2 score`
and `CaptionScorer`."""

from collections.abc import Iterable
from dataclasses import dataclass, field

# "rouge" is rouge-score's ROUGE-1/2/L (with nltk's Porter stemmer) plus COCO's ROUGE-L; "rouge_coco" is COCO's
# ROUGE-L alone, the set COCO's evaluation reports with BLEU and CIDEr-D, without importing nltk.
ALL_METRICS = (
    "bleu", "rouge", "bertscore", "cider", "meteor", "spice", "clipscore", "refclipscore", "rouge_coco"
)  # fmt: skip
IMAGE_METRICS = ("clipscore", "refclipscore")  # these score a caption against its image
DEFAULT_METRICS = ("bleu", "rouge", "bertscore", "cider")


def parse_metrics(metrics: str | Iterable[str]) -> tuple[str, ...]:
    """`"bleu, cider"` or `["bleu", "cider"]` -> `("bleu", "cider")`, checked against ALL_METRICS."""
    names = metrics.split(",") if isinstance(metrics, str) else list(metrics)
    names = tuple(dict.fromkeys(name.strip().lower() for name in names if name.strip()))
    unknown = [name for name in names if name not in ALL_METRICS]
    if unknown or not names:
        raise ValueError(f"metrics must be a comma-separated subset of {', '.join(ALL_METRICS)}; got {metrics!r}")
    return names


@dataclass
class MetricsArguments:
    """Which captioning metrics to compute, and how BERTScore runs."""

    metrics: str = field(
        default=",".join(DEFAULT_METRICS),
        metadata={"help": f"Comma-separated metrics, a subset of: {', '.join(ALL_METRICS)}."},
    )
    bertscore_model: str | None = field(
        default=None,
        metadata={
            "help": "BERTScore model (Hub id or local folder). Default: bert-score's choice for the language "
            "(roberta-large for English)."
        },
    )
    bertscore_num_layers: int | None = field(
        default=None,
        metadata={"help": "Layer whose embeddings BERTScore compares. Required for models bert-score does not know."},
    )
    bertscore_rescale_with_baseline: bool | None = field(
        default=None,
        metadata={
            "help": "Rescale BERTScore with bert-score's baseline. Default: on when bert-score ships a "
            "baseline for the model and language, off otherwise."
        },
    )
    bertscore_batch_size: int = field(default=64, metadata={"help": "BERTScore batch size."})
    bertscore_lang: str = field(default="en", metadata={"help": "Language of the captions (for BERTScore)."})
    clip_model: str = field(
        default="openai/clip-vit-base-patch32",
        metadata={
            "help": "CLIP model for clipscore and refclipscore (Hub id or local folder; ViT-B/32 as in the paper)."
        },
    )

    def __post_init__(self):
        self.metrics = ",".join(parse_metrics(self.metrics))
        if self.bertscore_batch_size < 1:
            raise ValueError(f"bertscore_batch_size must be a positive integer; got {self.bertscore_batch_size}")
        if self.bertscore_num_layers is not None and self.bertscore_num_layers < 1:
            raise ValueError(
                f"bertscore_num_layers must be a positive integer or None; got {self.bertscore_num_layers}"
            )

    @property
    def metric_names(self) -> tuple[str, ...]:
        return parse_metrics(self.metrics)
