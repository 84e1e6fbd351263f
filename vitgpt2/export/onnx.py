"""A saved captioner as ONNX, and greedy captioning with onnxruntime: no PyTorch needed to serve it.

Three graphs, as optimum splits encoder-decoder models (optimum's exporters do not support transformers 5 yet):
- `encoder.onnx`: pixel_values -> encoder_hidden_states (the encoder-to-decoder projection included, if any);
- `decoder.onnx`: the first step, input_ids (the start token) and encoder_hidden_states -> logits and the KV cache,
  per layer the self-attention keys and values and the cross-attention ones;
- `decoder_with_past.onnx`: one more token, with the cache -> logits and the self-attention cache one token longer.
  The cross-attention keys and values are computed once, in the first step, and only read after it: returned again
  at every step, they would be copied whole each time (a quarter of a step's time at batch 32).
They are exported with `torch.onnx.export(dynamo=True)` from eager attention, batch and cache length dynamic.
`--int8` quantizes their weights to int8 per output channel (onnxruntime's dynamic quantization: int8 matmuls,
activations quantized on the fly).

The folder also holds the config, generation config, tokenizer and image processor, so that `OnnxCaptioner` needs
the folder alone; images go through the same uint8 decoding and normalisation as training and the pipeline.
"""

import json
import logging
import os

import numpy as np

from ..errors import ArgumentError

GRAPHS = ("encoder", "decoder", "decoder_with_past")
MANIFEST = "onnx_captioner.json"
# generate() options the greedy ONNX loop implements; anything else in a generation config is refused.
SUPPORTED = {"num_beams": 1, "do_sample": False, "repetition_penalty": 1.0, "no_repeat_ngram_size": 0}


def _wrappers(model):
    """The three exportable modules over `model`'s weights."""
    import torch
    from transformers.cache_utils import DynamicCache, EncoderDecoderCache

    decoder, layers = model.decoder, model.decoder.config.num_hidden_layers

    def flat(cache, cross: bool = True) -> list:
        parts = []
        for self_layer, cross_layer in zip(cache.self_attention_cache.layers, cache.cross_attention_cache.layers):
            parts += [self_layer.keys, self_layer.values] + ([cross_layer.keys, cross_layer.values] if cross else [])
        return parts

    class Encoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, pixel_values):
            states = self.model.encoder(pixel_values=pixel_values).last_hidden_state
            projection = getattr(self.model, "enc_to_dec_proj", None)
            return projection(states) if projection is not None else states

    class FirstStep(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.decoder = decoder

        def forward(self, input_ids, encoder_hidden_states):
            cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
            output = self.decoder(
                input_ids=input_ids, encoder_hidden_states=encoder_hidden_states, past_key_values=cache, use_cache=True
            )
            return (output.logits, *flat(output.past_key_values))

    class NextStep(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.decoder = decoder

        def forward(self, input_ids, encoder_hidden_states, past):
            pairs = [(past[4 * i + offset], past[4 * i + offset + 1]) for i in range(layers) for offset in (0, 2)]
            cache = EncoderDecoderCache(
                DynamicCache(ddp_cache_data=pairs[0::2]), DynamicCache(ddp_cache_data=pairs[1::2])
            )
            output = self.decoder(
                input_ids=input_ids, encoder_hidden_states=encoder_hidden_states, past_key_values=cache, use_cache=True
            )
            return (output.logits, *flat(output.past_key_values, cross=False))

    return Encoder().eval(), FirstStep().eval(), NextStep().eval()


def cache_names(layers: int, prefix: str, cross: bool = True) -> list[str]:
    parts = ("key", "value", "cross_key", "cross_value") if cross else ("key", "value")
    return [f"{prefix}.{i}.{part}" for i in range(layers) for part in parts]


def export_onnx(model_dir: str, output_dir: str, int8: bool = False) -> list[str]:
    """Exports the captioner in `model_dir` to `output_dir`; returns the graph files written."""
    import torch
    from transformers import AutoImageProcessor, AutoTokenizer

    from ..model import load_captioner
    from ..remote_code.images import encoder_size

    # Eager attention exports as MatMuls that onnxruntime fuses with the keys' transpose. SDPA's exported form
    # transposes every layer's cross-attention keys again at each step: a third of a decoding step at batch 32.
    model = load_captioner(checkpoint=model_dir, attn_implementation="eager").eval()
    image_processor = AutoImageProcessor.from_pretrained(model_dir)
    layers = model.decoder.config.num_hidden_layers
    encoder, first, following = _wrappers(model)
    batch, past_length = torch.export.Dim("batch"), torch.export.Dim("past_length")
    # Example inputs of 2 images and a 2-token cache: torch.export fixes dimensions of size 0 or 1 as constants.
    pixels = torch.randn(2, 3, *encoder_size(image_processor))
    with torch.no_grad():
        states = encoder(pixels)
        start = torch.full((2, 1), model.config.decoder_start_token_id)
        cache = first(start, states)[1:]
        longer = iter(following(start, states, cache)[1:])  # the self-attention cache, 2 tokens long
        cache = tuple(next(longer) if i % 4 < 2 else part for i, part in enumerate(cache))
    past = tuple({0: batch, 2: past_length} if i % 4 < 2 else {0: batch} for i in range(4 * layers))
    os.makedirs(output_dir, exist_ok=True)
    specs = {
        "encoder": (encoder, (pixels,), ["pixel_values"], ["encoder_hidden_states"], ({0: batch},)),
        "decoder": (
            first, (start, states), ["input_ids", "encoder_hidden_states"], ["logits", *cache_names(layers, "present")],
            ({0: batch}, {0: batch}),
        ),
        "decoder_with_past": (
            following, (start, states, cache),
            ["input_ids", "encoder_hidden_states", *cache_names(layers, "past")],
            ["logits", *cache_names(layers, "present", cross=False)], ({0: batch}, {0: batch}, past),
        ),
    }  # fmt: skip
    written = []
    for name, (module, inputs, input_names, output_names, dynamic) in specs.items():
        path = os.path.join(output_dir, f"{name}.onnx")
        with torch.no_grad():
            program = torch.onnx.export(
                module, inputs, dynamic_shapes=dynamic, input_names=input_names, output_names=output_names,
                dynamo=True, verbose=False,
            )  # fmt: skip
        program.save(path, external_data=False)
        if int8:
            _quantize(path)
        written.append(path)
    for component in (
        model.config,
        model.generation_config,
        image_processor,
        AutoTokenizer.from_pretrained(model_dir),
    ):
        component.save_pretrained(output_dir)
    with open(os.path.join(output_dir, MANIFEST), "w") as f:
        json.dump({"graphs": list(GRAPHS), "num_layers": layers, "int8": int8, "exported_from": model_dir}, f)
    return written


def _quantize(path: str) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantized = f"{path}.int8"
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # onnxruntime advises its pre-processing on the root logger; it is for CNNs
    try:
        # a scale per output channel: on the demo's captioner 190 of 200 greedy captions stayed PyTorch's, 184
        # with one scale per tensor, at the same speed
        quantize_dynamic(path, quantized, weight_type=QuantType.QInt8, per_channel=True)
    finally:
        root.setLevel(level)
    os.replace(quantized, path)


class OnnxCaptioner:
    """Greedy captions with onnxruntime from a folder `export_onnx` wrote. `caption_uint8` takes images as the
    training cache holds them (N, 3, H, W uint8 at the encoder's size)."""

    def __init__(self, folder: str, threads: int | None = None):
        import onnxruntime
        from transformers import AutoImageProcessor, AutoTokenizer, GenerationConfig

        from ..remote_code.images import PixelNormalizer
        from ..remote_code.text import ensure_pad_token

        manifest = os.path.join(folder, MANIFEST)
        if not os.path.isfile(manifest):
            raise ArgumentError(f"{folder} holds no ONNX captioner ({MANIFEST}); write one with `vitgpt2 export-onnx`")
        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.sessions = {
            name: onnxruntime.InferenceSession(
                os.path.join(folder, f"{name}.onnx"), options, providers=["CPUExecutionProvider"]
            )
            for name in GRAPHS
        }
        # what each graph's outputs feed next: its present.* caches are the next step's past.*
        self.feeds = {
            name: [output.name.replace("present.", "past.", 1) for output in session.get_outputs()]
            for name, session in self.sessions.items()
        }
        self.image_processor = AutoImageProcessor.from_pretrained(folder)
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        ensure_pad_token(self.tokenizer)
        self.generation_config = GenerationConfig.from_pretrained(folder)
        self.normalize = PixelNormalizer(self.image_processor)

    def _settings(self, options: dict) -> dict:
        config = self.generation_config
        settings = {key: options.get(key, getattr(config, key, None)) for key in SUPPORTED}
        unsupported = {key: value for key, value in settings.items() if value not in (None, SUPPORTED[key])}
        if unsupported or options.get("length_penalty") not in (None, 1.0):
            raise ArgumentError(
                f"the ONNX backend decodes greedily; {unsupported or {'length_penalty': options['length_penalty']}} "
                "cannot be applied (pass --num_beams 1, or caption with the PyTorch backend)"
            )
        # generate's defaults where the config leaves them unset: 20 tokens in all, no minimum
        max_new = options.get("max_new_tokens") or config.max_new_tokens or ((config.max_length or 20) - 1)
        min_new = options.get("min_new_tokens") or config.min_new_tokens or max((config.min_length or 0) - 1, 0)
        return {"max_new_tokens": max_new, "min_new_tokens": min_new}

    def generate(self, pixel_values: np.ndarray, **options) -> np.ndarray:
        """Greedy token ids (images, start + new tokens), as `model.generate(num_beams=1)` gives them: finished
        rows padded with the pad id, the tokens of `suppress_tokens` never chosen, EOS held back for
        `min_new_tokens`."""
        settings, config = self._settings(options), self.generation_config
        eos = config.eos_token_id if isinstance(config.eos_token_id, list) else [config.eos_token_id]
        suppressed = list(config.suppress_tokens or [])
        states = self.sessions["encoder"].run(None, {"pixel_values": pixel_values.astype(np.float32)})[0]
        tokens = np.full((len(states), 1), config.decoder_start_token_id, dtype=np.int64)
        inputs = {"input_ids": tokens, "encoder_hidden_states": states}
        done = np.zeros(len(states), dtype=bool)
        graph = "decoder"
        for step in range(settings["max_new_tokens"]):
            outputs = dict(zip(self.feeds[graph], self.sessions[graph].run(None, inputs)))
            scores = outputs.pop("logits")[:, -1].astype(np.float32)
            inputs.update(outputs)  # the cross-attention cache stays the first step's: later steps return none
            scores[:, suppressed] = -np.inf
            if step < settings["min_new_tokens"]:
                scores[:, eos] = -np.inf
            chosen = np.where(done, config.pad_token_id, scores.argmax(-1))
            tokens = np.concatenate([tokens, chosen[:, None]], axis=1)
            done |= np.isin(chosen, eos)
            if done.all():
                break
            graph = "decoder_with_past"
            inputs["input_ids"] = chosen[:, None]
        return tokens

    def caption_uint8(self, pixels: np.ndarray, **options) -> list[str]:
        from ..remote_code.text import decode_captions

        return decode_captions(self.tokenizer, self.generate(self.normalize(pixels).numpy(), **options))
