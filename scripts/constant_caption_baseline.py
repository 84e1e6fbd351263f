"""What a captioner that ignores the image scores on the demo's held-out images: it always writes the most
frequent training caption. The trained model's scores mean something only well above these."""

import sys
from collections import Counter

from vitgpt2.data.coco_json import captions_file, read_captions_file
from vitgpt2.metrics import CaptionScorer


def main(data_dir: str, metrics: str = "bleu,rouge,cider") -> dict:
    train = read_captions_file(captions_file(data_dir, "train2017")).captions_by_image()
    val = read_captions_file(captions_file(data_dir, "val2017")).captions_by_image()
    constant, count = Counter(caption for captions in train.values() for caption in captions).most_common(1)[0]
    references = list(val.values())
    scores = CaptionScorer(metrics=metrics.split(",")).score([constant] * len(references), references)
    print(f"\nBaseline: always {constant!r} (the most frequent training caption, {count} times) on {len(val)} images:")
    print("  " + "  ".join(f"{key} {value:.2f}" for key, value in scores.items()))
    return scores


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python scripts/constant_caption_baseline.py DATA_DIR")
    main(sys.argv[1])
