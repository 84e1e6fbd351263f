"""Preprocessing: the usual ViT-GPT2 recipe vs vitgpt2, on the same COCO-sized JPEGs (640x480, 5 captions each).

    python bench/bench_preprocessing.py                        # 500 images, num_proc 2 (a few minutes on 2 cores)
    python bench/bench_preprocessing.py --num_images 5000 --num_proc 16

The usual recipe (the ViT-GPT2 blog posts and example scripts): one dataset row PER CAPTION, and
`ViTImageProcessor(...)(images, return_tensors="np")` inside `datasets.map`, which decodes the full JPEG and stores
float32 `pixel_values` in every caption row. vitgpt2: `load_coco` (one row per image) + `preprocess` (JPEG draft
decoding, uint8 at the encoder's size, stored once per image). Both start from the same COCO-layout folder, run
with the same `num_proc` and batch size, write to their own fresh cache folder with `load_from_cache_file=False`,
and are timed from the annotation file to the finished cache. Cache size is the Arrow files `map` wrote.
"""

import argparse
import os
import tempfile

import common
import datasets
import numpy as np
from transformers import ViTImageProcessor

from vitgpt2.data.coco_json import captions_file, read_captions_file
from vitgpt2.data.preprocessing import preprocess
from vitgpt2.data.sources import load_coco
from vitgpt2.offline.tiny_models import train_byte_level_bpe


def usual_recipe_rows(annotation_file: str, image_dir: str):
    """One row per caption, as the COCO loading scripts those recipes use yield them."""
    data = read_captions_file(annotation_file)
    paths = {image["id"]: os.path.join(image_dir, image["file_name"]) for image in data.images}
    for annotation in data.annotations:
        yield {"image_path": paths[annotation["image_id"]], "caption": annotation["caption"]}


def usual_recipe_map(batch, image_processor, tokenizer, max_target_length):
    import PIL.Image

    images = [PIL.Image.open(path).convert("RGB") for path in batch["image_path"]]
    labels = tokenizer(batch["caption"], padding="max_length", max_length=max_target_length, truncation=True)
    return {"pixel_values": image_processor(images, return_tensors="np").pixel_values, "labels": labels.input_ids}


def run_usual_recipe(coco_dir: str, cache_dir: str, image_processor, tokenizer, args):
    rows = datasets.Dataset.from_generator(
        usual_recipe_rows,
        gen_kwargs={
            "annotation_file": captions_file(coco_dir, "train2017"),
            "image_dir": os.path.join(coco_dir, "train2017"),
        },
        cache_dir=cache_dir,
    )
    return rows.map(
        usual_recipe_map,
        batched=True,
        batch_size=args.batch_size,
        fn_kwargs={
            "image_processor": image_processor,
            "tokenizer": tokenizer,
            "max_target_length": args.max_target_length,
        },
        remove_columns=rows.column_names,
        num_proc=args.num_proc,
        load_from_cache_file=False,
    )


def run_vitgpt2(coco_dir: str, cache_dir: str, image_processor, tokenizer, args, load_from_cache_file=False):
    images = load_coco(coco_dir, "train", cache_dir=cache_dir)
    return preprocess(
        images,
        image_processor,
        tokenizer,
        args.max_target_length,
        num_proc=args.num_proc,
        load_from_cache_file=load_from_cache_file,
    )


def measure(name: str, run, coco_dir: str, work_dir: str, image_processor, tokenizer, args) -> dict:
    cache_dir = tempfile.mkdtemp(prefix=f"cache_{name}_", dir=work_dir)
    dataset, seconds = common.timed(run, coco_dir, cache_dir, image_processor, tokenizer, args)
    size = common.cache_bytes(dataset)
    return {
        "name": name,
        "rows": len(dataset),
        "seconds": seconds,
        "bytes": size,
        "dtype": pixel_dtype(dataset),
        "cache_dir": cache_dir,
    }


def processor_and_tokenizer(encoder_size: int):
    """A ViT image processor at `encoder_size` and a byte-level BPE trained on synthetic captions (deterministic, so
    two processes build tokenizers with the same `datasets` fingerprint)."""
    image_processor = ViTImageProcessor(size={"height": encoder_size, "width": encoder_size})
    tokenizer = train_byte_level_bpe(common.synthetic_caption(np.random.default_rng(i)) for i in range(2000))
    tokenizer.pad_token = tokenizer.eos_token  # the recipes pad to max_length; GPT-2 has no pad token
    return image_processor, tokenizer


def pixel_dtype(dataset) -> str:
    feature = dataset.features["pixel_values"]
    while not hasattr(feature, "dtype"):  # nested lists when `map` infers the type of a numpy array
        feature = feature.feature
    return feature.dtype


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num_images", type=int, default=500)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--encoder_size", type=int, default=224, help="The image processor's size (ViT-B/16: 224).")
    parser.add_argument("--num_proc", type=int, default=2, help="datasets.map processes, the same for both sides.")
    parser.add_argument("--batch_size", type=int, default=64, help="datasets.map batch size, the same for both.")
    parser.add_argument("--max_target_length", type=int, default=64)
    parser.add_argument("--work_dir", default=None, help="Where images and caches go (default: a temp folder).")
    args = parser.parse_args(argv)
    datasets.disable_progress_bars()
    print(common.machine_line())

    with tempfile.TemporaryDirectory(prefix="bench_preprocessing_", dir=args.work_dir) as work_dir:
        coco_dir, write_s = common.timed(
            common.write_coco_folder, os.path.join(work_dir, "coco"), args.num_images, args.width, args.height
        )
        jpeg_kb = (
            sum(entry.stat().st_size for entry in os.scandir(os.path.join(coco_dir, "train2017")))
            / args.num_images
            / 1e3
        )
        print(
            f"wrote {args.num_images} JPEGs {args.width}x{args.height}, {jpeg_kb:.0f} KB each, 5 captions each ({write_s:.0f} s)"
        )
        image_processor, tokenizer = processor_and_tokenizer(args.encoder_size)
        print(
            f"image processor {type(image_processor).__name__}, num_proc {args.num_proc}, batch size {args.batch_size}"
        )
        sides = [("usual recipe", run_usual_recipe), ("vitgpt2", run_vitgpt2)]
        usual, ours = (measure(name, run, coco_dir, work_dir, image_processor, tokenizer, args) for name, run in sides)

    rows = [
        [
            side["name"],
            f"{side['rows']:,}",
            side["dtype"],
            f"{side['seconds']:.1f}",
            f"{args.num_images / side['seconds']:.1f}",
            f"{side['bytes'] / args.num_images / 1e3:,.0f}",
            f"{side['bytes'] / 1e6:,.0f}",
        ]
        for side in (usual, ours)
    ]
    header = ["", "rows", "pixels", "seconds", "images/s", "cache KB/image", "cache MB"]
    common.print_table(f"Preprocessing {args.num_images} images (same JPEGs, same num_proc)", header, rows)
    speedup, smaller = usual["seconds"] / ours["seconds"], usual["bytes"] / ours["bytes"]
    faster_ok = common.report_ratio("images/s vitgpt2 / usual recipe", speedup, 3.0)
    smaller_ok = common.report_ratio("cache bytes usual recipe / vitgpt2", smaller, 3.5)
    return {
        "speedup": speedup,
        "cache_ratio": smaller,
        "targets_hold": faster_ok and smaller_ok,
        "usual": usual,
        "vitgpt2": ours,
    }


if __name__ == "__main__":
    main()
