"""GPU check: training pairs/s and model FLOPs utilisation (MFU), per pair vs encode-once, and the data loader's
images/s from the uint8 cache. Run through `bench/gpu.sh` (about 3-4 minutes on one H100/H200).

    python bench/gpu_bench.py --device cuda                  # ViT-B/16 224 + distilgpt2, bf16 autocast, SDPA, compile
    python bench/gpu_bench.py --device cpu --tiny --pairs 10 --steps 1 --no-compile --loader_images 20 --num_workers 2

MFU = FLOPs of one training step (forward + backward, counted by `torch.utils.flop_counter.FlopCounterMode` on
the eager model; the optimizer's few FLOPs left out) / measured step time / the GPU's dense bf16 peak
(`--peak_tflops`: H100 SXM and H200 989; H100 PCIe 756). Encode-once does fewer FLOPs per pair, so its MFU can
stay level while its pairs/s rise. The loader part preprocesses synthetic JPEGs at the encoder's size into the
uint8 cache and reads it through `CaptionGroups` + `CaptioningCollator` in a multi-worker `DataLoader`, copying
each batch to the device, as training does.
"""

import argparse
import os
import tempfile
import time

import common
import datasets
import numpy as np
import torch
from transformers import ViTImageProcessor

from vitgpt2.data.collator import CaptioningCollator
from vitgpt2.data.preprocessing import preprocess
from vitgpt2.data.sources import load_coco
from vitgpt2.data.views import CaptionGroups
from vitgpt2.model import attention_implementations, pad_vocabulary
from vitgpt2.offline.tiny_models import train_byte_level_bpe

KINDS = {"per-pair": "per pair", "encode-once": "encode-once"}  # option value: name in the tables


def bench_training(args) -> dict:
    model = common.build_captioner(tiny=args.tiny)
    vocab = pad_vocabulary(model, model.decoder.config.vocab_size, args.pad_vocab)
    model = model.to(args.device).train()
    print(
        f"attention implementations: {attention_implementations(model)}, autocast {args.dtype}, "
        f"compile {args.compile}, vocabulary {vocab}"
    )
    images = args.pairs // args.captions_per_image
    encode_once = tuple(t.to(args.device) for t in common.caption_batch(model, images, args.captions_per_image))
    batches = {"per pair": common.as_pairs(*encode_once), "encode-once": encode_once}
    batches = {name: batch for name, batch in batches.items() if name in args.kinds}
    dtype = common.AUTOCAST_DTYPES[args.dtype]
    flops = {name: common.step_flops(model, *batch, dtype) for name, batch in batches.items()}

    fused = args.device.startswith("cuda")  # one kernel for all parameters on the GPU
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=fused)
    # Static shapes: each kind of batch gets its own graph instead of one slower dynamic-shape graph.
    step_model = torch.compile(model, dynamic=False, mode=args.compile_mode) if args.compile else model

    def step(batch):
        return lambda: common.train_step(step_model, optimizer, *batch, dtype)

    steps = {name: step(batch) for name, batch in batches.items()}
    seconds = common.time_interleaved(steps, args.warmup, args.steps, args.device)
    for name in args.profile_kinds if args.profile else ():
        print_top_kernels(name, steps[name], args.profile, args.device)
    results = {}
    for name, s in seconds.items():
        tflops = flops[name] / s / 1e12
        results[name] = {"s": s, "pairs/s": args.pairs / s, "tflop_step": flops[name] / 1e12, "tflops": tflops}
        results[name]["mfu"] = tflops / args.peak_tflops
    return results


def print_top_kernels(name: str, step, rows: int, device: str) -> None:
    """Where one (warm) step's device time goes: the ops that took the most of it, as torch.profiler sees them."""
    cuda = device.startswith("cuda")
    activities = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if cuda else [])
    with torch.profiler.profile(activities=activities) as profiler:
        step()
        common.synchronize(device)
    print(f"\nOne {name} step, top {rows} ops by self device time")
    sort_by = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    print(profiler.key_averages().table(sort_by=sort_by, row_limit=rows, max_name_column_width=60))


def write_cache(work_dir: str, num_images: int, image_processor) -> datasets.Dataset:
    size = image_processor.size["height"]
    coco_dir = common.write_coco_folder(os.path.join(work_dir, "coco"), num_images, width=size, height=size)
    tokenizer = train_byte_level_bpe(common.synthetic_caption(np.random.default_rng(i)) for i in range(500))
    images = load_coco(coco_dir, "train", cache_dir=os.path.join(work_dir, "cache"))
    return preprocess(images, image_processor, tokenizer, num_proc=min(16, os.cpu_count() or 1))


def loader_throughput(processed, image_processor, captions_per_image: int, args) -> dict:
    """Pixel rows/s and pairs/s of a multi-worker loader over the cache, after its first batch (worker start-up)."""
    loader = torch.utils.data.DataLoader(
        CaptionGroups(processed, captions_per_image),
        batch_size=max(1, args.pairs // captions_per_image),
        shuffle=True,
        drop_last=True,
        num_workers=args.num_workers,
        persistent_workers=args.num_workers > 0,
        prefetch_factor=args.prefetch_factor if args.num_workers > 0 else None,
        pin_memory=args.device.startswith("cuda"),
        collate_fn=CaptioningCollator(image_processor),
    )
    rows = pairs = 0
    start = None
    for _ in range(args.loader_epochs):
        for batch in loader:
            pixels = batch["pixel_values"].to(args.device, non_blocking=True)
            labels = batch["labels"].to(args.device, non_blocking=True)
            if start is None:
                common.synchronize(args.device)
                start = time.perf_counter()
                continue
            rows += pixels.shape[0]
            pairs += int((labels != -100).any(dim=-1).sum())
    common.synchronize(args.device)
    seconds = time.perf_counter() - (start or time.perf_counter())
    return {"rows/s": rows / max(seconds, 1e-9), "pairs/s": pairs / max(seconds, 1e-9)}


def bench_loader(args) -> dict:
    size = common.model_configs(args.tiny)[0].image_size
    image_processor = ViTImageProcessor(size={"height": size, "width": size})
    with tempfile.TemporaryDirectory(prefix="gpu_bench_loader_") as work_dir:
        processed, seconds = common.timed(write_cache, work_dir, args.loader_images, image_processor)
        print(f"wrote and preprocessed {len(processed)} synthetic images at {size}x{size} in {seconds:.0f} s")
        return {k: loader_throughput(processed, image_processor, k, args) for k in (args.captions_per_image, 1)}


def print_summary(args, training: dict, loader: dict) -> None:
    if training:
        rows = [
            [
                name,
                f"{r['s'] * 1e3:.1f}",
                f"{r['pairs/s']:,.0f}",
                f"{r['tflop_step']:.3g}",
                f"{r['tflops']:.3g}",
                f"{r['mfu']:.1%}",
            ]
            for name, r in training.items()
        ]
        compiled = f"{args.compile} ({args.compile_mode or 'default'})" if args.compile else "False"
        title = f"Training {args.pairs} pairs/step, {args.dtype} autocast, compile {compiled}, peak {args.peak_tflops} TFLOPS"
        common.print_table(title, ["", "ms/step", "pairs/s", "TFLOP/step", "TFLOPS", "MFU"], rows)
        if len(training) == 2:
            ratio = training["encode-once"]["pairs/s"] / training["per pair"]["pairs/s"]
            common.report_ratio("pairs/s encode-once / per pair", ratio, 2.5)
    if loader:
        rows = [[f"{k} caption(s) per item", f"{r['rows/s']:,.0f}", f"{r['pairs/s']:,.0f}"] for k, r in loader.items()]
        title = f"DataLoader from the uint8 cache, {args.num_workers} workers, prefetch {args.prefetch_factor}"
        common.print_table(title, ["", "pixel rows/s", "pairs/s"], rows)
    if "encode-once" in training and loader:
        need = training["encode-once"]["pairs/s"]
        have = loader[args.captions_per_image]["pairs/s"]
        print(f"loader pairs/s / encode-once training pairs/s = {have / need:.2f} (>= 1: the loader keeps up)")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=320, help="(image, caption) pairs per training step.")
    parser.add_argument("--captions_per_image", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10, help="Timed steps of each kind.")
    parser.add_argument("--warmup", type=int, default=3, help="Untimed steps of each kind (compilation happens here).")
    common.add_precision_arguments(parser, dtype="bf16", compile=True)
    parser.add_argument(
        "--compile_mode",
        default=None,
        choices=["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"],
        help="torch.compile mode (as --torch_compile_mode in training); reduce-overhead replays CUDA graphs.",
    )
    parser.add_argument(
        "--peak_tflops", type=float, default=989.0, help="Dense peak of --dtype (H100 SXM/H200 bf16: 989)."
    )
    parser.add_argument(
        "--loader_images", type=int, default=2048, help="Synthetic images in the loader's cache (0: skip)."
    )
    parser.add_argument("--loader_epochs", type=int, default=3)
    parser.add_argument("--num_workers", type=int, default=8)
    parser.add_argument("--prefetch_factor", type=int, default=4)
    parser.add_argument("--skip_training", action="store_true")
    parser.add_argument(
        "--pad_vocab", type=int, default=64, help="Pad the decoder's vocabulary to a multiple of N, as training does."
    )
    parser.add_argument(
        "--profile", type=int, default=0, help="Print the top N ops of one step of each --profile_kinds."
    )
    parser.add_argument("--kinds", nargs="+", choices=list(KINDS), default=list(KINDS), help="Training steps to time.")
    parser.add_argument(
        "--profile_kinds", nargs="+", choices=list(KINDS), help="Kinds --profile covers (default: all of --kinds)."
    )
    parser.add_argument(
        "--math_sdp",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="Allow SDPA's unfused math backend (--no-math_sdp: fused kernels or an error saying why not).",
    )
    common.add_model_arguments(parser, device="cuda")
    args = parser.parse_args(argv)
    args.profile_kinds = args.profile_kinds or args.kinds
    if not set(args.profile_kinds) <= set(args.kinds):
        parser.error(f"--profile_kinds {args.profile_kinds} must be among --kinds {args.kinds}")
    args.kinds, args.profile_kinds = ([KINDS[k] for k in kinds] for kinds in (args.kinds, args.profile_kinds))
    if args.pairs % args.captions_per_image:
        parser.error(f"--pairs {args.pairs} must be a multiple of --captions_per_image {args.captions_per_image}")
    datasets.disable_progress_bars()
    if args.device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True  # what fp32 leftovers outside autocast use in real runs
        torch.backends.cuda.enable_math_sdp(args.math_sdp)
    common.start(args)
    training = {} if args.skip_training else bench_training(args)
    if args.device.startswith("cuda"):
        torch.cuda.empty_cache()  # the model is gone with bench_training's frame; free its memory for the loader
    loader = bench_loader(args) if args.loader_images else {}
    print_summary(args, training, loader)
    return {"training": training, "loader": loader}


if __name__ == "__main__":
    main()
