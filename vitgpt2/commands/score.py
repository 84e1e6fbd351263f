"""`vitgpt2 score FILE.jsonl`: captioning metrics for saved predictions.

Each line of FILE.jsonl is one image: {"prediction": "a dog on a beach", "references": ["a dog runs", ...]}
(other keys, such as image_id, are copied to the per-image output); with clipscore or refclipscore, also
"image": a file path, relative to FILE.jsonl's folder. Prints the corpus metrics as JSON.

    vitgpt2 score predictions.jsonl
    vitgpt2 score predictions.jsonl --metrics bleu,cider,meteor --output per_image.jsonl
    vitgpt2 score predictions.jsonl --metrics cider,clipscore,refclipscore --clip_model openai/clip-vit-base-patch32
"""

import argparse
import dataclasses
import json
import logging
import os
import sys

from transformers import HfArgumentParser

from vitgpt2.metrics.arguments import MetricsArguments

logger = logging.getLogger(__name__)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "score",
        help="Score captions in a JSONL file (prediction + references per line).",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[HfArgumentParser(MetricsArguments, add_help=False)],  # the metrics options of run_captioning.py
    )
    parser.add_argument("file", help="JSONL file: one image per line with 'prediction' and 'references'.")
    parser.add_argument("--device", default=None, help="Device for BERTScore (default: cuda if available, else cpu).")
    parser.add_argument("--output", default=None, help="Optional JSONL file to write per-image scores to.")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("vitgpt2").setLevel(logging.INFO)
    try:
        metrics_args = MetricsArguments(
            **{f.name: getattr(args, f.name) for f in dataclasses.fields(MetricsArguments)}
        )
        rows = read_jsonl(args.file)
        from vitgpt2.metrics.scorer import CaptionScorer

        scorer = CaptionScorer(metrics_args, device=args.device)
        images = read_images(rows, args.file) if scorer.needs_images else None
        predictions, references = [row["prediction"] for row in rows], [row["references"] for row in rows]
        corpus, per_image = scorer.score(predictions, references, return_per_image=True, images=images)
    except (OSError, ValueError) as error:
        print(f"vitgpt2 score: error: {error}", file=sys.stderr)
        return 2
    if args.output:
        write_per_image(args.output, rows, per_image)
    print(json.dumps(corpus, indent=2))
    return 0


def read_images(rows: list[dict], path: str) -> list:
    """The `image` of every row (a file path, relative to the JSONL file's folder), for CLIPScore."""
    from vitgpt2.remote_code.images import load_rgb

    folder = os.path.dirname(os.path.abspath(path))
    missing = [number for number, row in enumerate(rows, start=1) if not isinstance(row.get("image"), str)]
    if missing:
        raise ValueError(f"{path}: clipscore needs an 'image' path in every row; rows {missing[:10]} have none")
    return [load_rgb(os.path.join(folder, row["image"])) for row in rows]


def read_jsonl(path: str) -> list[dict]:
    """Rows of `path`, each checked to hold a string `prediction` and a non-empty list of string `references`."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for line_number, line in enumerate(f, start=1):
            if line.strip():
                rows.append(_parse_row(line, f"{path}:{line_number}"))
    if not rows:
        raise ValueError(f"{path}: no rows to score")
    return rows


def _parse_row(line: str, where: str) -> dict:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as error:
        raise ValueError(f"{where}: malformed JSON ({error.msg} at column {error.colno})") from None
    if not isinstance(row, dict):
        raise ValueError(f"{where}: expected a JSON object with 'prediction' and 'references'")
    missing = [key for key in ("prediction", "references") if key not in row]
    if missing:
        raise ValueError(f"{where}: missing key(s) {missing}; found {sorted(row)}")
    references = row["references"]
    if isinstance(references, str):
        references = [references]
    if not isinstance(row["prediction"], str):
        raise ValueError(f"{where}: 'prediction' must be a string")
    if not references or not isinstance(references, list) or not all(isinstance(ref, str) for ref in references):
        raise ValueError(f"{where}: 'references' must be a non-empty list of strings")
    return {**row, "references": references}


def write_per_image(path: str, rows: list[dict], per_image: list[dict]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for row, scores in zip(rows, per_image):
            f.write(json.dumps({**row, **scores}, ensure_ascii=False) + "\n")
