"""End of `make demo`: the held-out scores of both stages side by side, cross-entropy then SCST."""

import json
import os
import sys

SHOWN = (
    "eval_cider",
    "eval_bleu",
    "eval_rougeL_coco",
    "eval_gen_len",
    "eval_distinct2",
    "eval_degenerate",
    "eval_loss",
)


def main(*stages: str) -> None:
    """Each stage is NAME=OUTPUT_DIR."""
    names, results = [], []
    for stage in stages:
        name, _, folder = stage.rpartition("=")
        names.append(name or os.path.basename(os.path.normpath(folder)))
        with open(os.path.join(folder, "eval_results.json")) as f:
            results.append(json.load(f))
    print("\nHeld-out scores by stage (0-100; gen_len in tokens):")
    print(f"  {'':20s}" + "".join(f"{name:>15s}" for name in names))
    for key in SHOWN:
        if all(key in result for result in results):
            print(f"  {key:20s}" + "".join(f"{result[key]:15.2f}" for result in results))


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: python scripts/demo_stages.py NAME=OUTPUT_DIR [NAME=OUTPUT_DIR ...]")
    main(*sys.argv[1:])
