"""`vitgpt2 evaluate`: scores a saved captioner without training, with the training script's own code."""

import json
import os

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
