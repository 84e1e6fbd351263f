"""Training loader throughput: images/s streamed from WebDataset shards (each JPEG decoded in draft mode and resized
in the DataLoader's workers, at every epoch) against the uint8 cache (decoded once, beforehand), with N workers.

    python bench/bench_loader.py                                                  # 512 COCO-sized JPEGs, 2 workers
    python bench/bench_loader.py --images 4096 --num_workers 14 --device cuda     # as bench/gpu.sh runs it

Both loaders give batches of `--batch_size` images x 5 captions (encode-once) through the project's collator,
pinned and copied to `--device` as the Trainer does, and are timed after their first batch (worker start-up) over
one pass of the data. Also printed: the one-off work each needs first (the cache: decode, resize and write every
image; the shards: pack the JPEG files) and its bytes on disk. Compiled encode-once training of ViT-B/16 + distilgpt2
takes about 1,300 images/s (6,500 pairs/s) on one H200 (bench/gpu.sh): `--need` prints whether a loader keeps up.
"""

import argparse
import glob
import math
import os
import tempfile
import time

import common
import datasets
import numpy as np
import torch
from transformers import ViTImageProcessor

from vitgpt2.data.collator import STREAM_POSITION, CaptioningCollator
from vitgpt2.data.preprocessing import preprocess
from vitgpt2.data.shards import ShardSettings, write_shards
from vitgpt2.data.sources import load_coco
from vitgpt2.data.streaming import ShardSource, StreamingCaptions
from vitgpt2.data.views import CaptionGroups
from vitgpt2.offline.tiny_models import train_byte_level_bpe

CAPTIONS_PER_IMAGE = 5


def images_per_second(loader, batches: int, device: str) -> float:
    """Images/s over `batches` batches after the first, each copied to `device` as training does."""
    images, start = 0, None
    for index, batch in enumerate(loader):
        batch.pop(STREAM_POSITION, None)
        pixels = batch["pixel_values"].to(device, non_blocking=True)
        batch["labels"].to(device, non_blocking=True)
        if start is None:
            common.synchronize(device)
            start = time.perf_counter()
        else:
            images += pixels.shape[0]
        if index == batches:
            break
    common.synchronize(device)
    return images / (time.perf_counter() - start)


def data_loader(dataset, collator, args, shuffle: bool) -> torch.utils.data.DataLoader:
    workers = args.num_workers
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=args.batch_size,
        shuffle=shuffle,
        drop_last=True,
        num_workers=workers,
        prefetch_factor=4 if workers else None,
        pin_memory=args.device.startswith("cuda"),
        collate_fn=collator,
    )


def folder_bytes(pattern: str) -> int:
    return sum(os.path.getsize(path) for path in glob.glob(pattern))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=512, help="Synthetic COCO-sized (640x480) JPEGs.")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--image_size", type=int, default=224, help="The encoder's input size.")
    parser.add_argument("--num_workers", type=int, default=2, help="DataLoader workers (and preprocessing processes).")
    parser.add_argument("--batch_size", type=int, default=32, help="Images per batch.")
    parser.add_argument("--need", type=float, default=1300.0, help="Images/s that training consumes.")
    parser.add_argument(
        "--work_dir", default=None, help="Where the images, cache and shards go (default: a temp dir)."
    )
    common.add_model_arguments(parser)
    args = parser.parse_args(argv)
    common.start(args)
    datasets.disable_progress_bars()
    batches = args.images // args.batch_size - 1
    if batches < 1:
        parser.error(f"--images {args.images} must hold at least 2 batches of --batch_size {args.batch_size}")

    with tempfile.TemporaryDirectory(prefix="bench_loader_") as temporary:
        work = args.work_dir or temporary
        coco_dir, seconds = common.timed(
            common.write_coco_folder, os.path.join(work, "coco"), args.images, width=args.width, height=args.height
        )
        print(f"wrote {args.images} synthetic {args.width}x{args.height} JPEGs in {seconds:.0f} s")
        processor = ViTImageProcessor(size={"height": args.image_size, "width": args.image_size})
        tokenizer = train_byte_level_bpe(common.synthetic_caption(np.random.default_rng(i)) for i in range(500))
        rows = load_coco(coco_dir, "train", cache_dir=os.path.join(work, "rows"))
        workers = max(1, args.num_workers)
        processed, cache_seconds = common.timed(preprocess, rows, processor, tokenizer, num_proc=workers)
        per_shard = math.ceil(args.images / (2 * workers))  # at least two shards a worker
        shard_dir = os.path.join(work, "shards")
        _, shard_seconds = common.timed(
            write_shards, rows, shard_dir, "train", ShardSettings(samples_per_shard=per_shard), {"bench": coco_dir}
        )
        collator = CaptioningCollator(processor)
        cached = data_loader(CaptionGroups(processed, CAPTIONS_PER_IMAGE), collator, args, shuffle=True)
        stream = StreamingCaptions(
            ShardSource(os.path.join(shard_dir, "train-*.tar")), processor, tokenizer, 64, CAPTIONS_PER_IMAGE
        )
        streamed = data_loader(stream, collator, args, shuffle=False)
        speeds = {
            "uint8 cache": images_per_second(cached, batches, args.device),
            "WebDataset shards, streamed": images_per_second(streamed, batches, args.device),
        }
        first = {"uint8 cache": cache_seconds, "WebDataset shards, streamed": shard_seconds}
        sizes = {
            "uint8 cache": common.cache_bytes(processed),
            "WebDataset shards, streamed": folder_bytes(os.path.join(shard_dir, "train-*.tar")),
        }
    rows_out = [
        [name, f"{speed:,.0f}", f"{speed * CAPTIONS_PER_IMAGE:,.0f}", f"{first[name]:.1f}", f"{sizes[name] / 1e6:,.1f}",
         "yes" if speed >= args.need else "no"]
        for name, speed in speeds.items()
    ]  # fmt: skip
    title = (
        f"Training loader, {args.images} images at {args.image_size}x{args.image_size}, batch {args.batch_size} x "
        f"{CAPTIONS_PER_IMAGE} captions, {args.num_workers} workers, to {args.device}"
    )
    header = ["", "images/s", "pairs/s", "first (s)", "MB on disk", f">= {args.need:,.0f} images/s"]
    common.print_table(title, header, rows_out)
    ratio = speeds["WebDataset shards, streamed"] / speeds["uint8 cache"]
    common.report_ratio("images/s streamed / uint8 cache", ratio)
    return {"images_per_s": speeds, "first_s": first, "bytes": sizes, "ratio": ratio}


if __name__ == "__main__":
    main()
