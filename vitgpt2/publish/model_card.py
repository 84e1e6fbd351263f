"""The model card (README.md) written next to a trained captioner: Hub metadata, results, usage, samples, pictures.

The metadata is built with `huggingface_hub.ModelCardData`, so the Hub reads the pipeline tag, the base models and
the `model-index` eval results from it. No secret reaches the card: hyperparameters whose name says token, secret,
password, key or credential are left out, and so are values that look like a Hub token.
"""

import os
import re

from huggingface_hub import EvalResult, ModelCardData

from .secrets import HUB_TOKEN_PATTERN

TASK_TYPE = "image-to-text"
TAGS = ["image-captioning", "vision-encoder-decoder", "gpt2"]
# the encoder config's model_type -> how the card names it (and its tag, without "_vision_model")
ENCODER_NAMES = {
    "vit": "ViT",
    "deit": "DeiT",
    "beit": "BEiT",
    "dinov2": "DINOv2",
    "dinov2_with_registers": "DINOv2",
    "swin": "Swin",
    "swinv2": "Swinv2",
    "clip_vision_model": "CLIP",
    "siglip_vision_model": "SigLIP",
}
# Trainer bookkeeping in the eval metrics, not results.
NOT_RESULTS = ("runtime", "samples_per_second", "steps_per_second", "epoch")
# Results shown in the table but not scores of the model (so left out of `model-index`).
NOT_SCORES = ("gen_len",)
# Metric ids of the card metadata (the `evaluate` / Hub names); an eval key maps to the one it starts with.
METRIC_IDS = ("bleu", "rouge", "bertscore", "cider", "meteor", "spice", "loss")
SECRET_KEY_WORDS = ("token", "secret", "password", "passwd", "api_key", "apikey", "credential", "private_key")
MAX_SAMPLES = 20


def is_secret(key: str, value) -> bool:
    return any(word in key.lower() for word in SECRET_KEY_WORDS) or bool(HUB_TOKEN_PATTERN.search(str(value)))


def public_hyperparameters(hyperparameters: dict) -> dict:
    """The hyperparameters safe to publish: no token-like name or value, no unset (None) value."""
    return {key: value for key, value in hyperparameters.items() if value is not None and not is_secret(key, value)}


def eval_results(metrics: dict) -> dict[str, float]:
    """`eval_*` numbers without the prefix and without the Trainer's timing keys, in the order given."""
    results = {}
    for key, value in metrics.items():
        name = key.removeprefix("eval_")
        if key.startswith("eval_") and isinstance(value, (int, float)) and name not in NOT_RESULTS:
            results[name] = float(value)
    return results


def metric_id(name: str) -> str | None:
    return next((metric for metric in METRIC_IDS if name.lower().startswith(metric)), None)


def hub_id(name: str | None) -> str | None:
    """`name` when it can be a Hub repo id (the metadata fields expect one), not a local folder or file."""
    if name and re.fullmatch(r"[\w.-]+(/[\w.-]+)?", name) and not os.path.exists(name):
        return name
    return None


def started_from(base_models: dict) -> list[str]:
    """What the run started from: a captioner checkpoint, or the encoder and the decoder."""
    names = [base_models.get("checkpoint")] if base_models.get("checkpoint") else []
    return names or [base_models.get(role) for role in ("encoder", "decoder") if base_models.get(role)]


def card_metadata(
    model_name: str, base_models: dict, dataset: str | None, results: dict[str, float], encoder_type: str | None = None
):
    dataset_id = hub_id(dataset)
    scores = {name: value for name, value in results.items() if name not in NOT_SCORES and metric_id(name)}
    evals = [
        EvalResult(
            task_type=TASK_TYPE,
            task_name="Image captioning",
            dataset_type=dataset_id or "custom",
            dataset_name=dataset or "custom",
            metric_type=metric_id(name),
            metric_name=name,
            metric_value=round(value, 4),
        )
        for name, value in scores.items()
    ]
    return ModelCardData(
        model_name=model_name,
        library_name="transformers",
        pipeline_tag=TASK_TYPE,
        base_model=[model for model in map(hub_id, started_from(base_models)) if model] or None,
        datasets=[dataset_id] if dataset_id else None,
        metrics=sorted({metric_id(name) for name in scores} - {"loss"}) or None,
        tags=[*TAGS, (encoder_type or "vit").removesuffix("_vision_model")],
        eval_results=evals or None,
    )


def format_value(value) -> str:
    if not isinstance(value, float):
        return str(value)
    if value != 0 and not 1e-3 <= abs(value) < 1e6:
        return f"{value:.3g}"  # learning rates and the like: 5e-05, not 0.0001
    return f"{value:.4f}" if abs(value) < 10 else f"{value:.2f}"


def cell(text) -> str:
    """Text that stays inside one Markdown table cell."""
    return " ".join(str(text).split()).replace("|", "\\|")


def table(header: tuple[str, ...], rows: list[tuple]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines)


def usage_section(model_reference: str) -> str:
    return f"""## How to use

transformers 5 has no built-in `image-to-text` pipeline for encoder-decoder captioners; this repository carries
its own (`pipeline.py` and the modules beside it), which preprocesses images exactly as in training. Hence
`trust_remote_code`:

```python
from transformers import pipeline

captioner = pipeline("image-to-text", model="{model_reference}", trust_remote_code=True)
print(captioner("photo.jpg"))  # a path, URL or PIL image, or a list of them: [{{'generated_text': '...'}}]
```

`num_beams=`, `max_new_tokens=` and other `generate` arguments work per call. With `vitgpt2` installed,
`vitgpt2.inference.captioning_pipeline("{model_reference}")` gives the same pipeline without remote code."""


def training_section(base_models: dict, dataset: str | None, hyperparameters: dict, scst: str | None = None) -> str:
    checkpoint, encoder, decoder = (base_models.get(role) for role in ("checkpoint", "encoder", "decoder"))
    start = (
        f"continued from the captioner `{checkpoint}`"
        if checkpoint
        else f"with the image encoder `{encoder}` and the text decoder `{decoder}`"
    )
    data = f"`{dataset}`" if dataset else "image captions"
    how = f"fine-tuned with the Hugging Face `Seq2SeqTrainer` on {data}."
    if scst:
        how = (
            f"SCST-tuned (self-critical sequence training, after cross-entropy) on {data}: {scst}. Each step samples "
            "captions per image and raises the likelihood of those that score above the baseline."
        )
    lines = ["## Training", "", f"A `VisionEncoderDecoderModel` {start}, {how}"]
    public = public_hyperparameters(hyperparameters)
    if public:
        lines += [
            "",
            "### Hyperparameters",
            "",
            table(("Name", "Value"), [(k, format_value(v)) for k, v in public.items()]),
        ]
    return "\n".join(lines)


def results_section(results: dict[str, float]) -> str:
    if not results:
        return "## Evaluation\n\nNo evaluation was run."
    rows = [(name, format_value(value)) for name, value in results.items()]
    note = "Captioning scores are on a 0-100 scale; each image is scored against all of its reference captions."
    return f"## Evaluation\n\n{note}\n\n{table(('Metric', 'Value'), rows)}"


def samples_section(sample_records: list[dict]) -> str:
    if not sample_records:
        return ""
    rows = [
        (record.get("image_id", ""), record.get("file_name", ""), record.get("prediction", ""), refs(record))
        for record in sample_records[:MAX_SAMPLES]
    ]
    header = ("Image id", "File", "Predicted caption", "Reference captions")
    return f"## Sample captions\n\n{table(header, rows)}"


def refs(record: dict) -> str:
    references = record.get("references") or []
    return " / ".join(references) if isinstance(references, (list, tuple)) else str(references)


def pictures_section(output_dir: str, pictures: list[str]) -> str:
    missing = [name for name in pictures if not os.path.isfile(os.path.join(output_dir, name))]
    if missing:
        raise FileNotFoundError(f"pictures linked from the model card are not in {output_dir}: {missing}")
    links = [f"![{os.path.splitext(os.path.basename(name))[0]}]({name.replace(os.sep, '/')})" for name in pictures]
    return "## Pictures\n\n" + "\n\n".join(links) if links else ""


def write_model_card(
    output_dir: str,
    *,
    model_name: str,
    base_models: dict,
    dataset: str | None,
    metrics: dict,
    hyperparameters: dict,
    sample_records: list[dict],
    pictures: list[str],
    hub_model_id: str | None = None,
    scst: str | None = None,
    encoder_type: str | None = None,
) -> str:
    """Writes `<output_dir>/README.md` and returns its path.

    `base_models` holds the `encoder` and `decoder` ids (or the `checkpoint` the run continued from), `metrics`
    the `eval_*` results, `sample_records` dicts with image_id, file_name, prediction and references, and
    `pictures` file names inside `output_dir`. The usage snippet loads `hub_model_id`, or this folder when there
    is none. `scst` says how a self-critical run was tuned (reward, samples, baseline).
    """
    results = eval_results(metrics)
    metadata = card_metadata(model_name, base_models, dataset, results, encoder_type)
    family = ENCODER_NAMES.get(encoder_type, encoder_type or "ViT")
    sections = [
        f"# {model_name}",
        f"An image captioner: a {family} image encoder and a GPT-2 text decoder joined with cross-attention. "
        "Give it a picture; it writes one sentence about it.",
        usage_section(hub_model_id or os.path.abspath(output_dir)),
        results_section(results),
        samples_section(sample_records),
        pictures_section(output_dir, pictures),
        training_section(base_models, dataset, hyperparameters, scst),
    ]
    text = f"---\n{metadata.to_yaml()}\n---\n\n" + "\n\n".join(section for section in sections if section) + "\n"
    path = os.path.join(output_dir, "README.md")
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path
