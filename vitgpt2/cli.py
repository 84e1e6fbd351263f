"""The `vitgpt2` console script: one sub-command per module in `vitgpt2.commands`."""

import argparse
import importlib
import sys

from .errors import report_user_errors

# sub-command -> module in vitgpt2.commands; each module defines `register(subparsers)`, which adds its parser
# and sets `func` (called with the parsed namespace, returning an exit code or None).
COMMANDS = {
    "caption": "caption",
    "evaluate": "evaluate",
    "score": "score",
    "make-synthetic": "make_synthetic",
    "make-shards": "make_shards",
    "make-tiny-models": "make_tiny_models",
    "export-onnx": "export_onnx",
    "demo": "demo",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vitgpt2", description="ViT + GPT-2 image captioning tools.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in COMMANDS.values():
        importlib.import_module(f"vitgpt2.commands.{module_name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "passthrough", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra  # commands that wrap run_captioning.py pass these on to it
    return report_user_errors(lambda: int(args.func(args) or 0), f"vitgpt2 {args.command}")


if __name__ == "__main__":
    sys.exit(main())
