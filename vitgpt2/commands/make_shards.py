"""`vitgpt2 make-shards`: a data source written as WebDataset tar shards (img2dataset layout) for streaming."""

import os
import sys

from ..errors import ArgumentError

# run_captioning.py's data options (DataArguments), so that `load_split` reads this namespace as it reads those
SOURCES = ("coco_dir", "dataset_name", "image_folder")
COLUMN_OPTIONS = ("dataset_config_name", "image_column", "caption_column", "image_id_column", "image_root")
PATH_OPTIONS = ("coco_dir", "karpathy_split_file", "image_folder", "image_root")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "make-shards",
        help="Write a dataset as WebDataset tar shards (img2dataset layout) for streaming training",
        description="Writes OUTPUT_DIR/{split}-000000.tar, ... with KEY.jpg, KEY.txt (captions, one per line) and "
        "KEY.json per image, and OUTPUT_DIR/shards.json (samples per shard, settings, source). Run again with the "
        "same arguments, it skips the shards already complete. Unreadable images are skipped and listed.",
    )
    parser.add_argument("--output_dir", required=True, help="folder for the shards and shards.json")
    parser.add_argument("--split", default="train", help="split to write (COCO: train or val); names the shards")
    source = parser.add_argument_group("source (one of --coco_dir, --dataset_name, --image_folder)")
    source.add_argument("--coco_dir", help="COCO 2017 folder (or, with --karpathy_split_file, the COCO 2014 one)")
    source.add_argument("--karpathy_split_file", help="Karpathy's dataset_coco.json, over --coco_dir's images")
    source.add_argument("--dataset_name", help="a Hub dataset or a local `datasets` folder")
    source.add_argument("--dataset_config_name", help="configuration of --dataset_name")
    source.add_argument("--image_folder", help="a local imagefolder with metadata.jsonl or metadata.csv")
    source.add_argument("--image_column", default="image", help="column holding images (or file names)")
    source.add_argument("--caption_column", default="captions", help="column holding a caption or a list of them")
    source.add_argument("--image_id_column", help="column identifying images; rows sharing it are merged")
    source.add_argument("--image_root", help="folder that a string image column's file names are relative to")
    source.add_argument("--cache_dir", help="where `datasets` caches the source")
    shards = parser.add_argument_group("shards")
    shards.add_argument("--samples_per_shard", type=int, default=1000, help="images per tar file")
    shards.add_argument(
        "--resize", type=int, help="shrink so that the shorter side is N pixels (never enlarges); default: as is"
    )
    shards.add_argument("--jpeg_quality", type=int, default=90, help="quality of re-encoded JPEGs")
    shards.add_argument("--num_workers", type=int, default=1, help="processes writing shards side by side")
    parser.set_defaults(func=run)


def source_split(args) -> str:
    """The split as the loaders name it: COCO's `val` is their `validation`; Hub and imagefolder splits pass as is."""
    from ..data.sources import COCO_SPLITS, KARPATHY_SPLITS

    if args.coco_dir is None:
        return args.split
    split = "validation" if args.split == "val" else args.split
    known = KARPATHY_SPLITS if args.karpathy_split_file else COCO_SPLITS
    if split not in known:
        raise ArgumentError(f"--split {args.split!r} is not a split of this source; choose one of {list(known)}")
    return split


def describe_source(args, split: str, num_images: int) -> dict:
    """What shards.json records of the source: a rerun with another source rewrites the shards."""
    options = (
        ("coco_dir", "karpathy_split_file") if args.coco_dir else ("dataset_name", "image_folder", *COLUMN_OPTIONS)
    )
    source = {option: getattr(args, option) for option in options if getattr(args, option) is not None}
    source.update({option: os.path.abspath(source[option]) for option in PATH_OPTIONS if option in source})
    return {**source, "split": split, "num_images": num_images}


def check_source(args) -> None:
    given = [f"--{name}" for name in SOURCES if getattr(args, name) is not None]
    if len(given) != 1:
        raise ArgumentError(f"give exactly one data source of {[f'--{name}' for name in SOURCES]}; got {given}")
    if args.karpathy_split_file is not None and args.coco_dir is None:
        raise ArgumentError("--karpathy_split_file needs --coco_dir, the folder holding the COCO 2014 images")
    for option in PATH_OPTIONS:
        path = getattr(args, option)
        if path is not None and not os.path.exists(path):
            raise ArgumentError(f"--{option} {path}: no such file or folder")


def run(args) -> int:
    import logging

    from ..data.shards import ShardSettings, write_shards
    from ..data.sources import load_split

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    settings = ShardSettings(args.samples_per_shard, args.resize, args.jpeg_quality)  # checked before any loading
    check_source(args)
    split = source_split(args)
    rows, _ = load_split(args, split, cache_dir=args.cache_dir)
    source = describe_source(args, split, len(rows))
    report = write_shards(rows, args.output_dir, args.split, settings, source, num_workers=args.num_workers)
    print(
        f"vitgpt2 make-shards: {report.num_samples} samples in {report.num_shards} {args.split} shards in "
        f"{args.output_dir} ({report.skipped_shards} already complete, skipped)"
    )
    if report.without_captions:
        print(f"vitgpt2 make-shards: {report.without_captions} images without captions left out", file=sys.stderr)
    if report.bad_images:
        print(f"vitgpt2 make-shards: {len(report.bad_images)} unreadable images left out:", file=sys.stderr)
        for bad in report.bad_images:
            print(f"  {bad['file_name']} (image {bad['image_id']}): {bad['error']}", file=sys.stderr)
    return 0
