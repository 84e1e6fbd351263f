"""`pipeline("image-to-text")` for ViT + GPT-2 captioners, in transformers 5, with or without vitgpt2 installed.

transformers 5 removed the image-to-text pipeline: the task name is redirected to image-text-to-text, which wants a
text prompt and a `ProcessorMixin`. This module registers a replacement for the task and saves its code next to a
model, so that `pipeline("image-to-text", model=folder_or_hub_id, trust_remote_code=True)` loads it anywhere.

It imports only transformers, torch, PIL, numpy, the standard library and `.images` (relative, so that transformers
copies images.py along with it). Preprocessing IS the training path (`image_to_uint8` then `PixelNormalizer`), so
a caption from the pipeline is exactly `model.generate` on the pixels the model was trained and evaluated on.
"""

import json
import os
import urllib.request

import numpy as np
import PIL.Image
from transformers import (
    AutoImageProcessor,
    AutoTokenizer,
    Pipeline,
    TrainerCallback,
    VisionEncoderDecoderModel,
)
from transformers.dynamic_module_utils import custom_object_save
from transformers.pipelines import PIPELINE_REGISTRY
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from .images import PixelNormalizer, image_to_uint8

TASK = "image-to-text"
CONFIG_NAME = "config.json"
_URL_PREFIXES = ("http://", "https://")


class ImageCaptioningPipeline(Pipeline):
    """Captions images given as file paths, http(s) URLs, PIL images or HWC uint8 arrays, one or a list.

    Returns `[{"generated_text": caption}]` for one image (`num_return_sequences` entries when asked) and a list of
    those for a list, as transformers 4's image-to-text pipeline did; lists are batched with `batch_size=`.
    Generation parameters (`max_new_tokens=`, `num_beams=`, ... or `generate_kwargs={...}`) apply at construction
    and per call; those left unset come from the model's generation config, as in `model.generate`. Captions are
    decoded without special tokens and with whitespace collapsed, as the trainer decodes them for its metrics.
    """

    _load_processor = False
    _load_image_processor = True
    _load_feature_extractor = False
    _load_tokenizer = True
    _pipeline_calls_generate = True

    def __init__(self, *args, **kwargs):
        tokenizer = kwargs.get("tokenizer")
        if tokenizer is not None and tokenizer.pad_token is None:
            # GPT-2 has no pad token, and transformers refuses to batch pipeline inputs without one; the captioner
            # pads with EOS anyway (see `vitgpt2.modeling.configure_special_tokens`).
            tokenizer.pad_token = tokenizer.eos_token
        super().__init__(*args, **kwargs)
        if self.image_processor is None or self.tokenizer is None:
            raise ValueError("ImageCaptioningPipeline needs both the image processor and the tokenizer")
        self.normalize = PixelNormalizer(self.image_processor)
        self.model.eval()  # a model straight from a Trainer is in train mode, and dropout would randomise captions
        # Keep every init-time generation parameter in one place, so that a call's parameters add to them.
        self._generate_kwargs.update(self._forward_params.pop("generate_kwargs", {}))

    def __call__(self, inputs=None, **kwargs):
        """`inputs`: an image (path, URL, PIL image, HWC uint8 array) or a list of them; `images=` is an alias."""
        if "images" in kwargs:
            if inputs is not None:
                raise ValueError("give the images either as `inputs` or as `images=`, not both")
            inputs = kwargs.pop("images")
        if isinstance(inputs, tuple):
            inputs = list(inputs)
        return super().__call__(inputs, **kwargs)

    def _sanitize_parameters(self, generate_kwargs=None, timeout=None, **generation_params):
        generate_kwargs = dict(generate_kwargs or {})
        given_twice = sorted(generate_kwargs.keys() & generation_params.keys())
        if given_twice:
            raise ValueError(f"{given_twice} given both directly and in `generate_kwargs`; give each once")
        generate_kwargs.update(generation_params)
        preprocess_params = {} if timeout is None else {"timeout": timeout}
        forward_params = {"generate_kwargs": generate_kwargs} if generate_kwargs else {}
        return preprocess_params, forward_params, {}

    def preprocess(self, image, timeout=None):
        pixels = image_to_uint8(_decodable(image, timeout), self.image_processor)
        return {"pixel_values": self.normalize(pixels[None])}

    def _forward(self, model_inputs, generate_kwargs=None):
        generate_kwargs = self._prepare_generate_kwargs(generate_kwargs or {}, return_dict_in_generate=False)
        pixel_values = model_inputs["pixel_values"].to(self.model.dtype)
        sequences = self.model.generate(pixel_values=pixel_values, **generate_kwargs)
        # (images * num_return_sequences, length) -> (images, num_return_sequences, length): the pipeline's
        # batch iterator splits outputs along the first axis, which must then be the image.
        return {"sequences": sequences.reshape(len(pixel_values), -1, sequences.shape[-1])}

    def postprocess(self, model_outputs):
        texts = self.tokenizer.batch_decode(model_outputs["sequences"][0], skip_special_tokens=True)
        return [{"generated_text": " ".join(text.split())} for text in texts]


PIPELINE_REGISTRY.register_pipeline(TASK, pipeline_class=ImageCaptioningPipeline, pt_model=VisionEncoderDecoderModel)


def _decodable(image, timeout=None):
    """What `image_to_uint8` reads: URLs are fetched (only URLs touch the network), arrays become PIL images."""
    if isinstance(image, str) and image.startswith(_URL_PREFIXES):
        with urllib.request.urlopen(image, timeout=timeout) as response:
            return response.read()
    if isinstance(image, np.ndarray):
        return PIL.Image.fromarray(image)
    return image


def custom_pipelines_entry() -> dict:
    """The `custom_pipelines` value that `Pipeline.save_pretrained` writes into config.json for this pipeline."""
    entry = {}
    for task, info in ImageCaptioningPipeline._registered_impl.items():
        module = info["impl"].__module__.split(".")[-1]
        entry[task] = {**info, "impl": f"{module}.{info['impl'].__name__}", "pt": [c.__name__ for c in info["pt"]]}
    return entry


def save_pipeline_code(folder: str | os.PathLike, tokenizer=None, image_processor=None) -> list[str]:
    """Makes a saved model folder loadable with `pipeline("image-to-text", model=folder, trust_remote_code=True)`.

    Does what `pipe.save_pretrained` does for the code (copies this module and its relative imports, adds the
    `custom_pipelines` entry to config.json) without re-writing the weights. A tokenizer or image processor passed
    here is saved too, for folders (like Trainer checkpoints) that lack one. Returns the code files written.
    """
    folder = os.fspath(folder)
    config_path = os.path.join(folder, CONFIG_NAME)
    if not os.path.isfile(config_path):
        raise FileNotFoundError(f"{config_path} not found: save the model in {folder} before its pipeline code")
    for component in (tokenizer, image_processor):
        if component is not None:
            component.save_pretrained(folder)
    with open(config_path, encoding="utf-8") as f:
        config = json.load(f)
    config["custom_pipelines"] = custom_pipelines_entry()
    with open(config_path, "w", encoding="utf-8") as f:
        f.write(json.dumps(config, indent=2, sort_keys=True) + "\n")  # as `PretrainedConfig.to_json_string`
    return [os.fspath(path) for path in custom_object_save(ImageCaptioningPipeline, folder)]


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
    """The captioning pipeline where vitgpt2 is installed, no remote code involved.

    `model` is a folder, a Hub id or a `VisionEncoderDecoderModel` (then give the tokenizer and image processor).
    Built directly rather than through `transformers.pipeline("image-to-text", ..., pipeline_class=...)`: for a
    folder without the `custom_pipelines` entry (or a model object) that renames the task to image-text-to-text,
    with a removal warning, and picks the model class from that task.
    """
    if isinstance(model, (str, os.PathLike)):
        name = os.fspath(model)
        hub_kwargs = {"revision": revision, "token": token}
        model_kwargs = hub_kwargs if dtype is None else {**hub_kwargs, "dtype": dtype}
        model = VisionEncoderDecoderModel.from_pretrained(name, **model_kwargs)
        tokenizer = tokenizer if tokenizer is not None else AutoTokenizer.from_pretrained(name, **hub_kwargs)
        if image_processor is None:
            image_processor = AutoImageProcessor.from_pretrained(name, **hub_kwargs)
    return ImageCaptioningPipeline(
        model=model, tokenizer=tokenizer, image_processor=image_processor, task=TASK, device=device, **pipeline_kwargs
    )


class PipelineCodeCallback(TrainerCallback):
    """Adds the pipeline code to every `checkpoint-N` folder, so each checkpoint loads with `pipeline(...)`.

    The Trainer saves one `processing_class`; give the tokenizer and the image processor here so that both are in
    every checkpoint. Only the processes that save (`args.should_save`) write.
    """

    def __init__(self, tokenizer=None, image_processor=None):
        self.tokenizer = tokenizer
        self.image_processor = image_processor

    def on_save(self, args, state, control, **kwargs):
        if args.should_save:
            folder = os.path.join(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")
            save_pipeline_code(folder, tokenizer=self.tokenizer, image_processor=self.image_processor)
