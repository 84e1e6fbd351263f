"""`vitgpt2 score` as a process against pycocoevalcap as a process, on a COCO-val-sized set (5,000 images x 5 refs).

    python bench/bench_score_process.py
    python bench/bench_score_process.py --images 1000

pycocoevalcap runs as COCO's evaluation does: its Java PTB tokenizer, then BLEU-1..4, ROUGE-L and CIDEr-D.
vitgpt2 runs its command line on a JSONL file of the same captions: with the same three metrics (`rouge_coco`,
COCO's ROUGE-L), with its full "rouge" (which adds rouge-score's stemmed ROUGE-1/2/L and imports nltk), and with
BLEU and CIDEr-D alone. Each timing is the whole process,
start-up and imports included, the best of --repeats runs.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from bench_metrics import synthetic_set
from common import machine_line

PYCOCOEVALCAP = """
import json, sys
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer
rows = [json.loads(line) for line in open(sys.argv[1], encoding="utf-8")]
tokenizer = PTBTokenizer()
gts = tokenizer.tokenize({i: [{"caption": ref} for ref in row["references"]] for i, row in enumerate(rows)})
res = tokenizer.tokenize({i: [{"caption": row["prediction"]}] for i, row in enumerate(rows)})
scores = {"bleu": Bleu(4).compute_score(gts, res, verbose=0)[0][3], "rougeL_coco": Rouge().compute_score(gts, res)[0]}
scores["cider"] = Cider().compute_score(gts, res)[0]
print(json.dumps({key: 100 * value for key, value in scores.items()}))
"""


def best_time(command: list[str], repeats: int) -> tuple[float, dict]:
    best, output = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True, check=True)
        best = min(best, time.perf_counter() - start)
        output = json.loads(result.stdout[result.stdout.index("{") :])
    return best, output


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    print(machine_line())
    predictions, references = synthetic_set(args.images)
    vitgpt2 = os.path.join(os.path.dirname(sys.executable), "vitgpt2")
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "captions.jsonl")
        with open(path, "w", encoding="utf-8") as f:
            for prediction, refs in zip(predictions, references):
                f.write(json.dumps({"prediction": prediction, "references": refs}) + "\n")
        coco_s, coco = best_time([sys.executable, "-c", PYCOCOEVALCAP, path], args.repeats)
        runs = {
            metrics: best_time([vitgpt2, "score", path, "--metrics", metrics], args.repeats)
            for metrics in ("bleu,rouge_coco,cider", "bleu,rouge,cider", "bleu,cider")
        }
    print(f"\nOne process each, {args.images:,} images x 5 references (seconds, best of {args.repeats})")
    print(f"  pycocoevalcap (Java PTB tokenizer, BLEU, ROUGE-L, CIDEr-D)  {coco_s:6.2f}")
    for metrics, (seconds, _) in runs.items():
        print(f"  vitgpt2 score --metrics {metrics:<22}            {seconds:6.2f}   ratio {coco_s / seconds:.2f}x")
    ours = runs["bleu,rouge_coco,cider"][1]
    assert ours == {key: runs["bleu,rouge,cider"][1][key] for key in ours if key in runs["bleu,rouge,cider"][1]}
    for key, value in coco.items():
        print(
            f"  {key:<12} vitgpt2 {ours[key]:9.4f}   pycocoevalcap {value:9.4f}   |diff| {abs(ours[key] - value):.1e}"
        )
    return {"pycocoevalcap_s": coco_s, **{f"vitgpt2_{metrics}_s": seconds for metrics, (seconds, _) in runs.items()}}


if __name__ == "__main__":
    main()
