"""`vitgpt2 caption`: captions image files, folders of images and URLs with a saved captioner."""

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Iterator

# generate() options a user may set per run; those left out come from the model's generation_config.json.
DECODING_OPTIONS = (
    "max_new_tokens", "min_new_tokens", "num_beams", "length_penalty", "no_repeat_ngram_size", "repetition_penalty"
)  # fmt: skip
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def read_errors() -> tuple[type[Exception], ...]:
    """What a bad input raises inside the pipeline: an undecodable file, or a URL or file that cannot be read.
    (Imported when captioning starts: `vitgpt2 --help` and the other commands never load torch for it.)"""
    from ..remote_code.images import ImageLoadError

    return (ImageLoadError, OSError)


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def device_argument(text: str) -> int | str:
    return int(text) if text.lstrip("-").isdigit() else text


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "caption",
        help="Caption images with a trained captioner.",
        description="Captions images (files, folders of images, http(s) URLs). Prints FILE<TAB>CAPTION lines, or "
        "writes JSON lines {file, caption} with --output. Unreadable images are reported on stderr and skipped; "
        "the exit status is then non-zero.",
    )
    parser.add_argument("images", nargs="+", metavar="IMAGE_OR_DIR", help="Image files, folders or URLs.")
    parser.add_argument("--model", required=True, help="Captioner folder or Hub id (VisionEncoderDecoder).")
    parser.add_argument("--output", help="Write JSON lines {file, caption} to this file instead of printing.")
    parser.add_argument("--batch_size", type=positive_int, default=8, help="Images per generate call.")
    parser.add_argument("--max_new_tokens", type=positive_int, help="Default: the model's generation config.")
    parser.add_argument("--num_beams", type=positive_int, help="Default: the model's generation config.")
    parser.add_argument("--min_new_tokens", type=positive_int, help="Default: the model's generation config.")
    parser.add_argument("--length_penalty", type=float, help="Beam search: > 1 favours longer captions.")
    parser.add_argument("--no_repeat_ngram_size", type=positive_int, help="No n-gram of this size twice.")
    parser.add_argument("--repetition_penalty", type=float, help="> 1 makes repeated tokens less likely.")
    parser.add_argument(
        "--device", type=device_argument, help="cpu, cuda, cuda:1 or a GPU index. Default: GPU 0 if any."
    )
    parser.set_defaults(func=run)


def expand_inputs(inputs: list[str]) -> tuple[list[str], list[str]]:
    """Image files, folders (their image files, sorted) and URLs -> (images to caption, problems to report)."""
    images, problems = [], []
    for item in inputs:
        if item.startswith(("http://", "https://")) or os.path.isfile(item):
            images.append(item)
        elif os.path.isdir(item):
            found = sorted(entry.path for entry in os.scandir(item) if is_image_file(entry))
            images.extend(found)
            if not found:
                problems.append(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) in folder {item}")
        else:
            problems.append(f"no such file or folder: {item}")
    return images, problems


def is_image_file(entry: os.DirEntry) -> bool:
    return entry.is_file() and entry.name.lower().endswith(IMAGE_EXTENSIONS)


def caption_images(
    pipe, images: list[str], batch_size: int, **generate_kwargs
) -> Iterator[tuple[str, str | None, str]]:
    """Yields (image, caption, "") or (image, None, error message), in input order.

    Batches run whole; a batch holding an unreadable image is captioned again one image at a time, so that one
    bad file costs its own caption only.
    """
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size]
        try:
            outputs = pipe(batch, batch_size=batch_size, **generate_kwargs)
        except read_errors():
            for image in batch:
                yield caption_one(pipe, image, **generate_kwargs)
        else:
            for image, output in zip(batch, outputs):
                yield image, output[0]["generated_text"], ""


def caption_one(pipe, image: str, **generate_kwargs) -> tuple[str, str | None, str]:
    try:
        return image, pipe(image, **generate_kwargs)[0]["generated_text"], ""
    except read_errors() as error:
        return image, None, str(error)


def open_output(path: str | None):
    return open(path, "w", encoding="utf-8") if path else contextlib.nullcontext(sys.stdout)


def format_line(image: str, caption: str, as_json: bool) -> str:
    if as_json:
        return json.dumps({"file": image, "caption": caption}, ensure_ascii=False) + "\n"
    return f"{image}\t{caption}\n"


def run(args) -> int:
    from ..inference import captioning_pipeline  # imported here so that `vitgpt2 --help` stays fast

    images, problems = expand_inputs(args.images)
    for problem in problems:
        print(f"vitgpt2 caption: {problem}", file=sys.stderr)
    generate_kwargs = {key: getattr(args, key) for key in DECODING_OPTIONS if getattr(args, key) is not None}
    pipe = captioning_pipeline(args.model, device=args.device) if images else None
    unreadable = 0
    with open_output(args.output) as output:
        for image, caption, error in caption_images(pipe, images, args.batch_size, **generate_kwargs):
            if caption is None:
                unreadable += 1
                print(f"vitgpt2 caption: cannot read {image}: {error}", file=sys.stderr)
            else:
                output.write(format_line(image, caption, as_json=bool(args.output)))
    failed = unreadable + len(problems)
    print(f"vitgpt2 caption: {len(images) - unreadable} captioned, {failed} failed", file=sys.stderr)
    return 0 if images and not failed else 1
