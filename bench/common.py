"""Helpers shared by the bench scripts: COCO-like synthetic data, real-shape captioners, timing and tables.

The bench scripts import this as `common` (Python puts `bench/` first on the path when it runs one of them).
"""

import argparse
import os
import tempfile
import time
import types

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import PIL.Image  # noqa: E402
import PIL.ImageDraw  # noqa: E402
import torch  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from vitgpt2.data.coco_json import captions_file, read_captions_file, write_captions_file  # noqa: E402

WORDS = (
    "a", "man", "woman", "dog", "cat", "riding", "holding", "sitting", "on", "in", "the", "of", "with", "next", "to",
    "red", "large", "small", "street", "table", "field", "plate", "food", "bus", "train", "standing", "near", "two",
)  # fmt: skip


def special_tokens(vocab_size: int) -> types.SimpleNamespace:
    """A stand-in tokenizer for `configure_special_tokens`: GPT-2 puts <|endoftext|> (BOS, EOS and, in this
    project, pad) last in its vocabulary, id 50256, so the benches need no tokenizer files from the Hub."""
    eos = vocab_size - 1
    return types.SimpleNamespace(
        eos_token="<|endoftext|>", eos_token_id=eos, bos_token_id=eos, pad_token="<|endoftext|>", pad_token_id=eos
    )


def machine_line(device: str = "cpu") -> str:
    """What the timings ran on; the load average matters since this machine is shared."""
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    line = f"torch {torch.__version__}, device {device}, {os.cpu_count()} CPU cores, torch threads {torch.get_num_threads()}"
    if device.startswith("cuda"):
        line += f", {torch.cuda.get_device_name(device)}"
    return f"{line}, load average {load} (shared machine: timings move with the load)"


def add_model_arguments(parser, device: str = "cpu") -> None:
    """The options every model bench shares: where it runs and how big the model is."""
    parser.add_argument("--device", default=device)
    parser.add_argument("--tiny", action="store_true", help="A tiny ViT + GPT-2 (for CI) instead of the real shapes.")
    # One thread by default on CPU: on a 2-core machine that other jobs share, two threads wait on each other and
    # ran 2-4x slower here, and erratically so; the ratios, not the absolute speeds, are what these benches report.
    threads = 1 if device == "cpu" else 0
    parser.add_argument("--threads", type=int, default=threads, help="torch CPU threads (0: torch's default).")


# --dtype: the autocast dtype of a training step (None: no autocast)
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}


def add_precision_arguments(parser, dtype: str = "fp32", compile: bool = False, dtype_help: str | None = None) -> None:
    """--dtype (autocast, or what `dtype_help` says) and --compile (torch.compile), as run_captioning.py's --bf16 and
    --torch_compile."""
    help_text = dtype_help or "Autocast dtype (fp32: no autocast)."
    parser.add_argument("--dtype", default=dtype, choices=sorted(AUTOCAST_DTYPES), help=help_text)
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=compile)


def add_step_arguments(parser, pairs: int) -> None:
    """The options of the training-step benches: pairs per step, captions per image, timed and warm-up steps."""
    parser.add_argument("--pairs", type=int, default=pairs, help="(image, caption) pairs per step, a multiple of K.")
    parser.add_argument("--captions_per_image", type=int, default=5, help="K (COCO: 5).")
    parser.add_argument("--steps", type=int, default=3, help="Timed optimizer steps of each kind.")
    parser.add_argument("--warmup", type=int, default=1)
    add_model_arguments(parser)


def parse_step_arguments(parser, argv):
    args = parser.parse_args(argv)
    if args.pairs % args.captions_per_image:
        parser.error(f"--pairs {args.pairs} must be a multiple of --captions_per_image {args.captions_per_image}")
    start(args)
    return args


def start(args) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    print(machine_line(args.device))


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def timed(function, *args, device: str = "cpu", **kwargs):
    """(result, seconds); waits for queued GPU work so the time is the work's, not its launch's."""
    synchronize(device)
    start = time.perf_counter()
    result = function(*args, **kwargs)
    synchronize(device)
    return result, time.perf_counter() - start


def print_table(title: str, header: list[str], rows: list[list]) -> None:
    cells = [header] + [[value if isinstance(value, str) else f"{value:,.3g}" for value in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    print(f"\n{title}")
    for row in cells:
        aligned = [cell.rjust(width) if i else cell.ljust(width) for i, (cell, width) in enumerate(zip(row, widths))]
        print("  " + "  ".join(aligned))


def report_ratio(what: str, ratio: float, target: float | None = None) -> bool:
    """Prints `RATIO` and, with a target, PASS/FAIL; returns whether the target holds."""
    holds = target is None or ratio >= target
    verdict = "" if target is None else f"  (target >= {target:g}x: {'PASS' if holds else 'FAIL'})"
    print(f"RATIO {what}: {ratio:.2f}x{verdict}")
    return holds


# ---- synthetic COCO-like data -------------------------------------------------------------------------------


def synthetic_photo(rng: np.random.Generator, width: int, height: int) -> PIL.Image.Image:
    """Smooth colour regions, a lighting gradient, a few shapes and sensor-like grain: at quality 90 a 640x480
    JPEG comes out near COCO's typical 100-200 KB, so decoding costs what a real photo's does."""
    coarse = rng.integers(0, 256, (height // 24 + 2, width // 24 + 2, 3), dtype=np.uint8)
    pixels = np.asarray(PIL.Image.fromarray(coarse).resize((width, height), PIL.Image.BICUBIC), dtype=np.float32)
    lighting = np.linspace(-40.0, 40.0, width, dtype=np.float32)[None, :, None]
    pixels += lighting * rng.uniform(-1, 1, 3).astype(np.float32)
    pixels += rng.normal(0.0, 14.0, pixels.shape).astype(np.float32)
    image = PIL.Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = PIL.ImageDraw.Draw(image)
    for _ in range(int(rng.integers(3, 9))):
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        w, h = int(rng.integers(width // 16, width // 3)), int(rng.integers(height // 16, height // 3))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x, y, x + w, y + h), fill=colour)
    return image


def synthetic_caption(rng: np.random.Generator) -> str:
    return " ".join(rng.choice(WORDS, size=int(rng.integers(8, 15))))  # COCO captions hold ~10 words


def write_coco_folder(
    root: str,
    num_images: int,
    width: int = 640,
    height: int = 480,
    captions_per_image: int = 5,
    seed: int = 0,
    first_id: int = 1,
    progress: bool = False,
) -> str:
    """`<root>/train2017/*.jpg` + `<root>/annotations/captions_train2017.json`, the official COCO 2017 layout.

    `first_id` > 1 grows a folder written before: images `first_id`... are added after those its captions file lists
    (pass another `seed`, or they repeat the first ones)."""
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(root, "train2017"), exist_ok=True)
    images, annotations = [], []
    if first_id > 1:
        existing = read_captions_file(captions_file(root, "train2017"))
        images, annotations = existing.images, existing.annotations
    ids = range(first_id, first_id + num_images)
    for image_id in tqdm(ids, desc="writing JPEGs", unit="image", disable=not progress):
        file_name = f"{image_id:012d}.jpg"
        synthetic_photo(rng, width, height).save(os.path.join(root, "train2017", file_name), quality=90)
        images.append({"id": image_id, "file_name": file_name, "width": width, "height": height})
        for k in range(captions_per_image):
            caption = synthetic_caption(rng)
            annotations.append({"id": image_id * 10 + k, "image_id": image_id, "caption": caption})
    write_captions_file(captions_file(root, "train2017"), images, annotations)
    return root


def cache_bytes(dataset) -> int:
    """Bytes on disk of the Arrow files behind a dataset (what `datasets.map` wrote to its cache)."""
    return sum(os.path.getsize(entry["filename"]) for entry in dataset.cache_files)


# ---- captioners with the real architecture's shapes (random weights, nothing downloaded) ----------------------


def model_configs(tiny: bool):
    """ViT-B/16 at 224 (ViTConfig's defaults) + distilgpt2 (GPT2Config with 6 layers), or a tiny pair for CI."""
    from transformers import GPT2Config, ViTConfig

    if tiny:
        vit = ViTConfig(
            image_size=32,
            patch_size=8,
            hidden_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=128,
        )
        return vit, GPT2Config(
            vocab_size=512, n_positions=64, n_embd=64, n_layer=2, n_head=2, bos_token_id=511, eos_token_id=511
        )
    return ViTConfig(), GPT2Config(n_layer=6)


def build_captioner(tiny: bool = False, attn_implementation: str = "sdpa", seed: int = 0):
    """Saves random-weight encoder and decoder folders and joins them with `load_captioner`, the path real
    runs take from `google/vit-base-patch16-224-in21k` and `distilgpt2`."""
    import transformers
    from transformers import GPT2LMHeadModel, ViTModel

    from vitgpt2.model import configure_special_tokens, load_captioner

    transformers.utils.logging.disable_progress_bar()
    torch.manual_seed(seed)
    vit_config, gpt2_config = model_configs(tiny)
    with tempfile.TemporaryDirectory(prefix="bench_models_") as folder:
        encoder, decoder = os.path.join(folder, "encoder"), os.path.join(folder, "decoder")
        ViTModel(vit_config, add_pooling_layer=False).save_pretrained(encoder)
        GPT2LMHeadModel(gpt2_config).save_pretrained(decoder)
        verbosity = transformers.logging.get_verbosity()
        transformers.logging.set_verbosity_error()  # the new cross-attention weights are expected, not news
        try:
            model = load_captioner(encoder=encoder, decoder=decoder, attn_implementation=attn_implementation)
        finally:
            transformers.logging.set_verbosity(verbosity)
    configure_special_tokens(model, special_tokens(gpt2_config.vocab_size))
    return model


def image_shape(model) -> tuple[int, int, int]:
    size = model.config.encoder.image_size
    return model.config.encoder.num_channels, size, size


def caption_batch(model, images: int, captions_per_image: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random pixels (images, C, H, W) and labels (images, captions_per_image, length): COCO-like caption lengths
    (10-18 tokens), each ending with EOS, padded with -100 as the collator pads them."""
    from vitgpt2.data.collator import pad_labels

    generator = torch.Generator().manual_seed(seed)
    pixels = torch.randn(images, *image_shape(model), generator=generator)
    eos = model.config.eos_token_id  # the last id: random tokens are drawn below it
    lengths = torch.randint(9, 18, (images, captions_per_image), generator=generator).tolist()
    groups = [[torch.randint(0, eos, (n,), generator=generator).tolist() + [eos] for n in row] for row in lengths]
    return pixels, pad_labels(groups)


def as_pairs(pixels: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The usual recipe's batch of the same pairs: each image's pixels repeated once per caption, labels (P, 1, L)."""
    images, per_image, length = labels.shape
    return pixels.repeat_interleave(per_image, dim=0), labels.reshape(images * per_image, 1, length)


# ---- training steps ---------------------------------------------------------------------------------------------


def forward_backward(
    model, pixels, labels, autocast_dtype: torch.dtype | None = None, encoder_states=None
) -> torch.Tensor:
    """`caption_loss` and its gradients: labels (P, 1, L) is the per-pair recipe, (P/K, K, L) encode-once; with
    `encoder_states` (a frozen encoder's cached output) instead of `pixels`, the encoder does not run."""
    from vitgpt2.loss import caption_loss

    enabled = autocast_dtype is not None
    with torch.autocast(labels.device.type, dtype=autocast_dtype or torch.float32, enabled=enabled):
        loss, _ = caption_loss(model, pixels, labels, encoder_states=encoder_states)
    loss.backward()
    return loss.detach()


def step_flops(model, pixels, labels, autocast_dtype: torch.dtype | None = None, encoder_states=None) -> int:
    """FLOPs of one forward + backward as `torch.utils.flop_counter` counts them (matmuls and attention; the
    optimizer's few FLOPs left out). Counted on the eager model: a compiled one runs the same math."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        forward_backward(model, pixels, labels, autocast_dtype, encoder_states)
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def train_step(model, optimizer, pixels, labels, autocast_dtype: torch.dtype | None = None) -> torch.Tensor:
    loss = forward_backward(model, pixels, labels, autocast_dtype)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss


def time_interleaved(steps_by_name: dict, warmup: int, steps: int, device: str = "cpu") -> dict[str, float]:
    """Mean seconds per call of each zero-argument step function. The functions take turns, so a change in the
    machine's load during the run falls on all of them alike."""
    for step in steps_by_name.values():
        for _ in range(warmup):
            timed(step, device=device)
    seconds = {name: 0.0 for name in steps_by_name}
    for _ in range(steps):
        for name, step in steps_by_name.items():
            seconds[name] += timed(step, device=device)[1]
    return {name: total / steps for name, total in seconds.items()}
