"""After training: everything a user downloads next to the weights, then the optional push to the Hub.

The output folder gets the image processor (the Trainer saves model, tokenizer and generation config),
the pipeline code that makes `pipeline("image-to-text", trust_remote_code=True)` work, a loss-curve and a
caption-grid picture, and a model card with the results.
"""

import json
import logging
import os

from ..data.coco_json import captions_file, dataset_description
from ..data.sources import COCO_SPLITS
from ..remote_code.images import load_rgb
from .hub import push_to_hub
from .model_card import write_model_card
from .pipeline_code import save_pipeline_code
from .plots import save_caption_grid, save_loss_curves

logger = logging.getLogger(__name__)

LOSS_PICTURE = "loss_curves.png"
SAMPLES_PICTURE = "sample_captions.png"


def save_pictures(output_dir: str, log_history: list[dict], records: list[dict], source_images) -> list[str]:
    """The loss curves, and a grid of evaluated images with their captions. `source_images` is the split the
    records came from, before preprocessing (rows with `image_id` and `image`), for the original pictures."""
    pictures = []
    if log_history:
        save_loss_curves(log_history, os.path.join(output_dir, LOSS_PICTURE))
        pictures.append(LOSS_PICTURE)
    if records and source_images is not None:
        try:
            rows = {image_id: row for row, image_id in enumerate(source_images["image_id"])}
            load = lambda record: load_rgb(source_images[rows[str(record["image_id"])]]["image"])  # noqa: E731
            save_caption_grid(records, load, os.path.join(output_dir, SAMPLES_PICTURE))
            pictures.append(SAMPLES_PICTURE)
        except (OSError, ValueError, LookupError) as error:  # a picture is not worth losing the trained model over
            logger.warning("no caption grid: %s", error)
    return pictures


def publish(
    args,
    model_args,
    data_args,
    *,
    image_processor,
    results: dict,
    log_history: list[dict],
    records: list[dict],
    source_images=None,
    push: bool = False,
    token: str | None = None,
    scst: str | None = None,
):
    """Completes the output folder of a training run (`args` are its training arguments): image processor, pipeline
    code, pictures of `log_history` and of the per-image `records` (drawn from `source_images`), a model card with
    `results` (and, for a self-critical run, `scst`: how it was tuned); pushes it to the Hub when `push`."""
    output_dir = args.output_dir
    image_processor.save_pretrained(output_dir)
    save_pipeline_code(output_dir)
    pictures = save_pictures(output_dir, log_history, records, source_images)
    base_models = {"encoder": model_args.encoder_model_name_or_path, "decoder": model_args.decoder_model_name_or_path}
    if model_args.model_name_or_path:
        base_models = {"checkpoint": model_args.model_name_or_path}
    dataset = data_args.dataset_name or _folder_description(data_args)
    write_model_card(
        output_dir,
        model_name=os.path.basename(os.path.normpath(args.hub_model_id or output_dir)),
        base_models=base_models,
        dataset=dataset,
        metrics=results,
        hyperparameters=_hyperparameters(args, model_args, data_args, results),
        sample_records=records[:20],
        pictures=pictures,
        hub_model_id=args.hub_model_id if push else None,
        scst=scst,
        encoder_type=_encoder_type(output_dir),
    )
    if push:
        repo_id = args.hub_model_id or os.path.basename(os.path.normpath(output_dir))
        push_to_hub(output_dir, repo_id, token=token, private=args.hub_private_repo)
        logger.info("pushed %s to the Hub as %s", output_dir, repo_id)


def _folder_description(data_args) -> str | None:
    """The data of a local run, as its files name it: a COCO folder by its captions file's own `info` block."""
    if data_args.webdataset:
        return f"WebDataset shards {data_args.webdataset}"
    if data_args.karpathy_split_file:
        return f"the Karpathy split ({os.path.basename(data_args.karpathy_split_file)}) of COCO 2014"
    if data_args.coco_dir:
        folder = COCO_SPLITS.get(data_args.train_split_name, f"{data_args.train_split_name}2017")
        annotations = captions_file(data_args.coco_dir, folder)
        named = dataset_description(annotations)
        folder = os.path.basename(os.path.normpath(data_args.coco_dir))
        return named or f"images and captions in COCO's layout (folder {folder}; its captions file names no dataset)"
    return data_args.image_folder


def _encoder_type(output_dir: str) -> str | None:
    try:
        with open(os.path.join(output_dir, "config.json")) as f:
            return json.load(f)["encoder"]["model_type"]
    except (OSError, ValueError, KeyError):
        return None


def _hyperparameters(args, model_args, data_args, results: dict) -> dict:
    keys = (
        "learning_rate", "per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps",
        "num_train_epochs", "lr_scheduler_type", "warmup_steps", "weight_decay", "seed", "bf16", "fp16",
        "generation_max_length", "generation_num_beams",
    )  # fmt: skip
    values = {key: getattr(args, key) for key in keys}
    values["world_size"] = args.world_size
    values["captions_per_image"] = data_args.captions_per_image
    values["max_target_length"] = data_args.max_target_length
    for key in ("freeze_encoder", "train_encoder_layers", "encoder_learning_rate", "cache_encoder_features"):
        values[key] = getattr(model_args, key)
    if model_args.lora_r:
        for key in ("lora_r", "lora_alpha", "lora_dropout", "lora_on", "lora_target_modules"):
            values[key] = getattr(model_args, key)
    for key in ("trainable_parameters", "parameters"):
        values[key] = results.get(key)
    return values
