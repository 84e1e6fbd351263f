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
        "writes JSON lines {file, caption} with --output; run again, it skips the files already there. Unreadable "
        "images are skipped and listed on stderr at the end; the exit status is then non-zero.",
    )
    parser.add_argument("images", nargs="+", metavar="IMAGE_OR_DIR", help="Image files, folders or URLs.")
    parser.add_argument("--model", required=True, help="Captioner folder or Hub id (VisionEncoderDecoder).")
    parser.add_argument("--output", help="Write JSON lines {file, caption} to this file instead of printing.")
    parser.add_argument("--batch_size", type=positive_int, default=8, help="Images per generate call.")
    parser.add_argument(
        "--num_workers", type=int, default=2, help="Processes decoding images while the model generates (0: none)."
    )
    parser.add_argument("--max_new_tokens", type=positive_int, help="Default: the model's generation config.")
    parser.add_argument("--num_beams", type=positive_int, help="Default: the model's generation config.")
    parser.add_argument("--min_new_tokens", type=positive_int, help="Default: the model's generation config.")
    parser.add_argument("--length_penalty", type=float, help="Beam search: > 1 favours longer captions.")
    parser.add_argument("--no_repeat_ngram_size", type=positive_int, help="No n-gram of this size twice.")
    parser.add_argument("--repetition_penalty", type=float, help="> 1 makes repeated tokens less likely.")
    parser.add_argument(
        "--device", type=device_argument, help="cpu, cuda, cuda:1 or a GPU index. Default: GPU 0 if any."
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="Decode through a static KV cache whose decoding step is compiled with torch.compile: 2.53x the "
        "captions/s on an H200 at batch 64 (bench/bench_generate.py), after a minute or so of compiling. Same captions.",
    )
    parser.add_argument(
        "--dtype",
        choices=("float32", "bfloat16", "float16"),
        help="The weights' dtype (--backend torch). bfloat16: the ViT-B/16 encoder took 204 ms an image instead "
        "of 432 in float32 on a CPU with AVX512-BF16 (batch 32, 1 thread, bench/bench_caption.py); captions can "
        "differ from float32's. Default: as saved.",
    )
    parser.add_argument(
        "--backend",
        choices=("torch", "onnx"),
        default="torch",
        help="onnx: greedy captions with onnxruntime on the CPU, from a folder `vitgpt2 export-onnx` wrote. From an "
        "--int8 export, 3.30x the images/s of a loop of pipeline calls at batch 32 (ViT-B/16 + distilgpt2 shapes, 1 "
        "thread, bench/bench_caption.py --onnx), about 1 caption in 20 differing from float32's.",
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


class _ImageFiles:
    """A map-style dataset over image paths and URLs: each item is decoded to uint8 at the encoder's size in a
    DataLoader worker, the pipeline's own preprocessing, or carries the reason it could not be."""

    def __init__(self, images: list[str], image_processor):
        self.images, self.image_processor = images, image_processor

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[str, object, str]:
        from ..remote_code.images import image_to_uint8
        from ..remote_code.pipeline import _decodable

        image = self.images[index]
        try:
            return image, image_to_uint8(_decodable(image), self.image_processor), ""
        except read_errors() as error:
            return image, None, str(error)


def caption_images(
    pipe, images: list[str], batch_size: int, num_workers: int = 0, **generate_kwargs
) -> Iterator[tuple[str, str | None, str]]:
    """Yields (image, caption, "") or (image, None, error message), in input order, a batch at a time.

    Images are decoded in `num_workers` DataLoader processes while the model generates; an unreadable image costs
    its own caption only. Captions are the pipeline's for the same image and options."""
    import numpy as np
    import torch

    loader = torch.utils.data.DataLoader(
        _ImageFiles(images, pipe.image_processor),
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=list,
    )
    for batch in loader:
        readable = [pixels for _, pixels, _ in batch if pixels is not None]
        captions = iter(_generate(pipe, np.stack(readable), generate_kwargs) if readable else [])
        for image, pixels, error in batch:
            yield (image, next(captions), "") if pixels is not None else (image, None, error)


def _generate(pipe, pixels, generate_kwargs: dict) -> list[str]:
    import torch

    if hasattr(pipe, "caption_uint8"):  # vitgpt2.export.onnx.OnnxCaptioner
        return pipe.caption_uint8(pixels, **generate_kwargs)

    outputs = pipe.forward({"pixel_values": pipe.normalize(torch.from_numpy(pixels))}, generate_kwargs=generate_kwargs)
    return [
        pipe.postprocess({"sequences": sequences[None]})[0]["generated_text"] for sequences in outputs["sequences"]
    ]


def already_captioned(path: str) -> set[str]:
    """The files an earlier run wrote to the JSON lines file `path`; a last line cut short by a kill is dropped (the
    file is rewritten without it), so a killed run loses at most the batch it was writing."""
    if not os.path.isfile(path):
        return set()
    records, intact = [], True
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                if not line.endswith("\n"):  # written in part: the next record would run on from it
                    raise ValueError(line)
                records.append(json.loads(line)["file"])
            except (ValueError, KeyError, TypeError):  # JSONDecodeError is a ValueError
                intact = False
                break
    if not intact:
        with open(path, encoding="utf-8") as f:
            kept = f.readlines()[: len(records)]
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            f.writelines(kept)
        os.replace(path + ".tmp", path)
    return set(records)


def open_output(path: str | None):
    return open(path, "a", encoding="utf-8") if path else contextlib.nullcontext(sys.stdout)


def format_line(image: str, caption: str, as_json: bool) -> str:
    if as_json:
        return json.dumps({"file": image, "caption": caption}, ensure_ascii=False) + "\n"
    return f"{image}\t{caption}\n"


def run(args) -> int:
    from tqdm.auto import tqdm

    from ..errors import ArgumentError
    from ..inference import captioning_pipeline, compiled_decoding  # here, so that `vitgpt2 --help` stays fast

    images, problems = expand_inputs(args.images)
    done = already_captioned(args.output) if args.output else set()
    todo = [image for image in images if image not in done]
    if done:
        print(f"vitgpt2 caption: {len(images) - len(todo)} already in {args.output}, skipped", file=sys.stderr)
    generate_kwargs = {key: getattr(args, key) for key in DECODING_OPTIONS if getattr(args, key) is not None}
    if args.compile:
        if args.backend == "onnx":
            raise ArgumentError("--compile compiles PyTorch's decoding; --backend onnx runs onnxruntime's graphs")
        generate_kwargs.update(compiled_decoding())
    pipe = None
    if todo and args.backend == "onnx":
        from ..export.onnx import OnnxCaptioner

        if args.device not in (None, "cpu"):
            raise ArgumentError("--backend onnx runs on the CPU (onnxruntime's CPU provider); leave --device out")
        if args.dtype is not None:
            raise ArgumentError("--dtype sets PyTorch's weights; --backend onnx runs the exported graphs as written")
        pipe = OnnxCaptioner(args.model)
    elif todo:
        pipe = captioning_pipeline(args.model, device=args.device, dtype=args.dtype)  # from_pretrained takes the name
    unreadable = []
    with open_output(args.output) as output, tqdm(total=len(todo), unit="img", disable=None) as progress:
        batches = caption_images(pipe, todo, args.batch_size, args.num_workers, **generate_kwargs) if todo else []
        for image, caption, error in batches:
            if caption is None:
                unreadable.append(f"cannot read {image}: {error}")
            else:
                output.write(format_line(image, caption, as_json=bool(args.output)))
            output.flush()  # captions come a batch at a time: a killed run loses at most the batch being written
            progress.update(1)
    for problem in problems + unreadable:  # listed at the end, where they are not lost among the captions
        print(f"vitgpt2 caption: {problem}", file=sys.stderr)
    failed = len(unreadable) + len(problems)
    print(f"vitgpt2 caption: {len(todo) - len(unreadable)} captioned, {failed} failed", file=sys.stderr)
    return 0 if images and not failed else 1
