"""`pipeline("image-to-text")` for ViT + GPT-2 captioners, in transformers 5, with or without vitgpt2 installed.

transformers 5 removed the image-to-text pipeline: the task name is redirected to image-text-to-text, which wants a
text prompt and a `ProcessorMixin`. This module registers a replacement for the task; vitgpt2 copies it next to every
model it saves (`vitgpt2.publish.pipeline_code`), so that `pipeline("image-to-text", model=folder_or_hub_id,
trust_remote_code=True)` loads it anywhere.

Like everything in `remote_code/`, it imports only the standard library, torch, PIL, numpy, transformers and its
sibling modules. Preprocessing IS the training path (`image_to_uint8` then `PixelNormalizer`), so
a caption from the pipeline is exactly `model.generate` on the pixels the model was trained and evaluated on.
"""

import urllib.request

import numpy as np
import PIL.Image
from transformers import Pipeline, VisionEncoderDecoderModel
from transformers.pipelines import PIPELINE_REGISTRY

from .images import PixelNormalizer, image_to_uint8
from .text import decode_captions, ensure_pad_token

TASK = "image-to-text"
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
        if kwargs.get("tokenizer") is not None:
            ensure_pad_token(kwargs["tokenizer"])
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
        return [{"generated_text": text} for text in decode_captions(self.tokenizer, model_outputs["sequences"][0])]


PIPELINE_REGISTRY.register_pipeline(TASK, pipeline_class=ImageCaptioningPipeline, pt_model=VisionEncoderDecoderModel)


def _decodable(image, timeout=None):
    """What `image_to_uint8` reads: URLs are fetched (only URLs touch the network), arrays become PIL images."""
    if isinstance(image, str) and image.startswith(_URL_PREFIXES):
        with urllib.request.urlopen(image, timeout=timeout) as response:
            return response.read()
    if isinstance(image, np.ndarray):
        return PIL.Image.fromarray(image)
    return image
