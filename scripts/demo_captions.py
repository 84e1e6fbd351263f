"""End of `make demo`: print the evaluation scores, then caption held-out images with the saved model
through `pipeline("image-to-text", trust_remote_code=True)`, exactly as a user who downloaded it would
(this script never imports vitgpt2, so the pipeline comes from the model folder). The images and their references
are the last ones of the evaluation's `eval_predictions.jsonl`."""

import json
import os
import sys

from transformers import pipeline


def main(output_dir: str, data_dir: str, count: int = 6) -> None:
    with open(os.path.join(output_dir, "eval_results.json")) as f:
        results = json.load(f)
    print("\nEvaluation on held-out synthetic images (0-100):")
    for key in sorted(results):
        print(f"  {key:28s} {results[key]:.4g}" if isinstance(results[key], float) else f"  {key:28s} {results[key]}")

    with open(os.path.join(output_dir, "eval_predictions.jsonl"), encoding="utf-8") as f:
        records = [json.loads(line) for line in f][-count:]  # held out: never seen in training

    captioner = pipeline("image-to-text", model=output_dir, trust_remote_code=True)
    paths = [os.path.join(data_dir, "val2017", record["file_name"]) for record in records]
    print(f"\nCaptions from pipeline('image-to-text', model={output_dir!r}, trust_remote_code=True):")
    for record, result in zip(records, captioner(paths, batch_size=len(paths))):
        print(f"  {record['file_name']}: {result[0]['generated_text']!r}   (a reference: {record['references'][0]!r})")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python scripts/demo_captions.py OUTPUT_DIR DATA_DIR")
    main(sys.argv[1], sys.argv[2])
