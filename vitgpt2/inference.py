"""The captioning pipeline where vitgpt2 is installed: no remote code involved."""

import os

from transformers import AutoImageProcessor, AutoTokenizer, CompileConfig, VisionEncoderDecoderModel

from .model import check_captioner
from .remote_code.pipeline import TASK, ImageCaptioningPipeline


def captioning_pipeline(
    model,
    tokenizer=None,
    image_processor=None,
    device=None,
    dtype=None,
    revision: str | None = None,
    token: str | None = None,
    **pipeline_kwargs,
) -> ImageCaptioningPipeline:
    """The `image-to-text` pipeline of `vitgpt2/remote_code/pipeline.py`, built from vitgpt2's own copy.

    `model` is a folder, a Hub id or a `VisionEncoderDecoderModel` (then give the tokenizer and image processor).
    Built directly rather than through `transformers.pipeline("image-to-text", ..., pipeline_class=...)`: for a
    folder without the `custom_pipelines` entry (or a model object) that renames the task to image-text-to-text,
    with a removal warning, and picks the model class from that task.
    """
    if isinstance(model, (str, os.PathLike)):
        name = os.fspath(model)
        hub_kwargs = {"revision": revision, "token": token}
        check_captioner(name, **hub_kwargs)
        model_kwargs = hub_kwargs if dtype is None else {**hub_kwargs, "dtype": dtype}
        model = VisionEncoderDecoderModel.from_pretrained(name, **model_kwargs)
        tokenizer = tokenizer if tokenizer is not None else AutoTokenizer.from_pretrained(name, **hub_kwargs)
        if image_processor is None:
            image_processor = AutoImageProcessor.from_pretrained(name, **hub_kwargs)
    return ImageCaptioningPipeline(
        model=model, tokenizer=tokenizer, image_processor=image_processor, task=TASK, device=device, **pipeline_kwargs
    )


def compiled_decoding() -> dict:
    """generate() options for a static KV cache whose decoding step `generate` compiles (`vitgpt2 caption --compile`,
    and the benches' compiled ways). transformers compiles it on GPUs only; `_compile_all_devices` asks for the CPU
    too, where the static cache alone was slower (0.90x)."""
    config = CompileConfig()
    config._compile_all_devices = True
    return {"cache_implementation": "static", "compile_config": config}
