import json
import os

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer
from transformers.trainer_utils import EvalPrediction

from vitgpt2.data.views import ImagesWithReferences
from vitgpt2.trainer import CaptionMetricsHook, write_records


class RecordingScorer:
    needs_images = False

    def __init__(self):
        self.calls = []

    def score(self, predictions, references, return_per_image=False, images=None):
        self.calls.append((predictions, references))
        per_image = [{"hits": float(p in refs)} for p, refs in zip(predictions, references)]
        corpus = {"hits": 100 * float(np.mean([s["hits"] for s in per_image]))}
        return (corpus, per_image) if return_per_image else corpus


@pytest.fixture
def view(cached_split):
    captions = [["a red circle", "one red circle"], ["two blue squares", "blue squares", "2 squares"], ["a cat"]]
    return ImagesWithReferences(cached_split(captions, ["10", "20", "30"]))


def test_each_prediction_is_scored_against_all_references_of_its_own_image(view, tiny_models, tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(tiny_models[1])
    tokenizer.pad_token = tokenizer.eos_token
    eos = tokenizer.eos_token_id
    texts = ["blue squares", "a cat", "one red circle"]
    generated = [[eos] + tokenizer(t)["input_ids"] + [eos] for t in texts]
    width = max(map(len, generated)) + 2
    padded = np.array([row + [-100] * (width - len(row)) for row in generated])  # -100: cross-process padding
    # gathered out of order, as several processes would: rows 1, 2, 0 of the dataset
    labels = np.array([[1], [2], [0]])
    scorer = RecordingScorer()
    hook = CaptionMetricsHook(tokenizer, scorer)
    hook.view = view
    metrics = hook(EvalPrediction(predictions=padded, label_ids=labels))
    predictions, references = scorer.calls[0]
    assert predictions == texts
    assert references == [view.dataset[1]["captions"], view.dataset[2]["captions"], view.dataset[0]["captions"]]
    assert metrics["hits"] == 100.0
    assert metrics["gen_len"] == pytest.approx(np.mean([len(tokenizer(t)["input_ids"]) for t in texts]))
    write_records(hook.records, str(tmp_path / "eval_predictions.jsonl"))
    records = [json.loads(line) for line in open(tmp_path / "eval_predictions.jsonl", encoding="utf-8")]
    assert [r["image_id"] for r in records] == ["20", "30", "10"]
    assert records[0]["references"] == ["two blue squares", "blue squares", "2 squares"]
    assert records[0]["prediction"] == "blue squares" and records[0]["scores"] == {"hits": 1.0}


def test_hook_without_a_view_refuses_to_guess(tiny_models):
    hook = CaptionMetricsHook(AutoTokenizer.from_pretrained(tiny_models[1]), RecordingScorer())
    with pytest.raises(RuntimeError, match="ImagesWithReferences"):
        hook(EvalPrediction(predictions=np.zeros((1, 2), int), label_ids=np.zeros((1, 1), int)))


@pytest.fixture(scope="module")
def eval_trainer(tiny_captioner_dir, synthetic_coco, tmp_path_factory):
    from transformers import AutoImageProcessor, VisionEncoderDecoderModel

    from vitgpt2.arguments import CaptioningTrainingArguments
    from vitgpt2.data.collator import CaptioningCollator
    from vitgpt2.data.preprocessing import preprocess
    from vitgpt2.data.sources import load_coco
    from vitgpt2.trainer import CaptioningTrainer

    tokenizer = AutoTokenizer.from_pretrained(tiny_captioner_dir)
    image_processor = AutoImageProcessor.from_pretrained(tiny_captioner_dir)
    split = load_coco(synthetic_coco, "validation").select(range(5))
    view = ImagesWithReferences(preprocess(split, image_processor, tokenizer, max_target_length=16))
    output_dir = str(tmp_path_factory.mktemp("trainer"))
    args = CaptioningTrainingArguments(output_dir=output_dir, per_device_eval_batch_size=2, report_to="none")
    trainer = CaptioningTrainer(
        model=VisionEncoderDecoderModel.from_pretrained(tiny_captioner_dir),
        args=args,
        eval_dataset=view,
        processing_class=tokenizer,
        data_collator=CaptioningCollator(image_processor),
        scorer=RecordingScorer(),
    )
    return trainer, view


@pytest.mark.parametrize("kind", ["evaluate", "predict"])
def test_evaluation_returns_its_records_and_writes_the_same_ones(eval_trainer, kind):
    trainer, view = eval_trainer
    if kind == "evaluate":
        evaluation = trainer.evaluate_captions(metric_key_prefix="eval")
    else:
        evaluation = trainer.predict_captions(view, metric_key_prefix="predict")
    prefix = "eval" if kind == "evaluate" else "predict"
    assert f"{prefix}_hits" in evaluation.metrics and f"{prefix}_gen_len" in evaluation.metrics
    assert sorted(record["image_id"] for record in evaluation.records) == sorted(view.dataset["numeric_id"])
    for record in evaluation.records:
        assert record["references"] == view.dataset[record["image_index"]]["captions"]
    path = os.path.join(trainer.args.output_dir, f"{prefix}_predictions.jsonl")
    with open(path, encoding="utf-8") as f:
        assert [json.loads(line) for line in f] == evaluation.records
    assert trainer.metrics_hook.records == []  # handed over, not left behind for the next pass


def test_trainer_evaluate_keeps_the_trainer_api(eval_trainer):
    trainer, view = eval_trainer
    metrics = trainer.evaluate()
    assert isinstance(metrics, dict) and "eval_hits" in metrics
    assert trainer.predict(view).predictions.shape[0] == len(view)


def test_eval_loss_is_the_mean_over_images_however_they_are_batched(tiny_captioner_dir, synthetic_coco):
    """10 images in batches of 4 (4, 4, 2) and of 3 (3, 3, 3, 1): the same eval_loss, the mean of per-image losses."""
    from transformers import AutoImageProcessor, VisionEncoderDecoderModel

    from vitgpt2.arguments import CaptioningTrainingArguments
    from vitgpt2.data.collator import CaptioningCollator
    from vitgpt2.data.preprocessing import preprocess
    from vitgpt2.data.sources import load_coco
    from vitgpt2.loss import per_image_loss
    from vitgpt2.trainer import CaptioningTrainer

    tokenizer = AutoTokenizer.from_pretrained(tiny_captioner_dir)
    image_processor = AutoImageProcessor.from_pretrained(tiny_captioner_dir)
    split = load_coco(synthetic_coco, "validation").select(range(10))
    view = ImagesWithReferences(preprocess(split, image_processor, tokenizer, max_target_length=16))
    model = VisionEncoderDecoderModel.from_pretrained(tiny_captioner_dir).eval()
    collator = CaptioningCollator(image_processor)
    batch = collator([view[i] for i in range(len(view))])
    with torch.no_grad():
        expected = per_image_loss(model, batch["pixel_values"], batch["labels"]).mean().item()
    losses = []
    for batch_size in (4, 3):
        args = CaptioningTrainingArguments(
            output_dir=os.path.join(os.path.dirname(tiny_captioner_dir), f"b{batch_size}"),
            per_device_eval_batch_size=batch_size,
            report_to="none",
            predict_with_generate=False,
        )
        trainer = CaptioningTrainer(model=model, args=args, processing_class=tokenizer, data_collator=collator)
        losses.append(trainer.evaluate(view)["eval_loss"])
    assert losses[0] == pytest.approx(losses[1], abs=1e-6) == pytest.approx(expected, abs=1e-5)
