"""`vitgpt2 evaluate`: scores a saved captioner without training, with the training script's own code."""

import json
import os
import shutil

import pytest

from vitgpt2.cli import main as cli
from vitgpt2.inference import captioning_pipeline


def test_evaluate_a_saved_model_on_a_coco_folder(synthetic_coco, tiny_captioner_dir, tmp_path, capsys):
    model = tiny_captioner_dir
    output = tmp_path / "eval"
    argv = ["evaluate", "--model", model, "--output_dir", str(output), "--coco_dir", synthetic_coco]
    argv += ["--max_eval_samples", "6", "--metrics", "bleu,rouge,cider", "--generation_max_length", "12"]
    assert cli(argv) == 0
    assert '"eval_bleu"' in capsys.readouterr().out
    results = json.loads((output / "eval_results.json").read_text())
    assert {"eval_bleu", "eval_rougeL", "eval_cider", "eval_gen_len", "eval_loss"} <= set(results)
    assert results["eval_samples"] == 6
    # evaluation never writes a model, nor publishes one: no card, pictures or pipeline code
    for name in ("model.safetensors", "README.md", "pipeline.py", "loss_curves.png", "sample_captions.png"):
        assert not (output / name).exists(), name
    # the captions scored are the ones the pipeline gives for the same files
    records = [json.loads(line) for line in open(output / "eval_predictions.jsonl")]
    captioner = captioning_pipeline(model)
    paths = [os.path.join(synthetic_coco, "val2017", record["file_name"]) for record in records]
    assert [r[0]["generated_text"] for r in captioner(paths)] == [record["prediction"] for record in records]


@pytest.mark.skipif(shutil.which("java") is None, reason="pycocoevalcap tokenizes in Java")
def test_the_coco_results_file_scores_the_same_in_pycocoevalcap(
    synthetic_coco, tiny_captioner_dir, tmp_path, monkeypatch
):
    from pycocoevalcap import eval as coco_eval
    from pycocotools.coco import COCO

    output = tmp_path / "eval"
    argv = ["evaluate", "--model", tiny_captioner_dir, "--output_dir", str(output), "--coco_dir", synthetic_coco]
    argv += ["--max_eval_samples", "8", "--metrics", "bleu,rouge,cider", "--generation_max_length", "12"]
    assert cli(argv) == 0
    ours = json.loads((output / "eval_results.json").read_text())
    results = json.loads((output / "eval_coco_results.json").read_text())
    assert len(results) == 8 and all(isinstance(result["image_id"], int) for result in results)  # COCO's own type
    predictions = [json.loads(line) for line in open(output / "eval_predictions.jsonl", encoding="utf-8")]
    assert [p["image_id"] for p in predictions] == [r["image_id"] for r in results]

    coco = COCO(os.path.join(synthetic_coco, "annotations", "captions_val2017.json"))
    evaluation = coco_eval.COCOEvalCap(coco, coco.loadRes(str(output / "eval_coco_results.json")))
    evaluation.params["image_id"] = [result["image_id"] for result in results]

    class NoSpice:  # SPICE fetches Stanford models on first use; this machine is offline
        def method(self):
            return "SPICE"

        def compute_score(self, gts, res):
            return 0.0, [0.0] * len(res)

    monkeypatch.setattr(coco_eval, "Spice", NoSpice)
    evaluation.evaluate()
    for theirs, key in (
        ("Bleu_1", "eval_bleu1"),
        ("Bleu_4", "eval_bleu"),
        ("ROUGE_L", "eval_rougeL_coco"),
        ("CIDEr", "eval_cider"),
    ):
        assert ours[key] == pytest.approx(100 * evaluation.eval[theirs], abs=0.01), key


def test_evaluation_scores_clipscore_on_the_images_it_captioned(
    synthetic_coco, tiny_captioner_dir, tiny_clip, tmp_path
):
    output = tmp_path / "eval"
    argv = ["evaluate", "--model", tiny_captioner_dir, "--output_dir", str(output), "--coco_dir", synthetic_coco]
    argv += ["--max_eval_samples", "4", "--metrics", "cider,clipscore,refclipscore", "--clip_model", tiny_clip]
    assert cli(argv) == 0
    results = json.loads((output / "eval_results.json").read_text())
    assert 0 <= results["eval_clipscore"] <= 250 and 0 <= results["eval_refclipscore"] <= 100
    records = [json.loads(line) for line in open(output / "eval_predictions.jsonl", encoding="utf-8")]
    assert all({"clipscore", "refclipscore", "cider"} <= set(record["scores"]) for record in records)
