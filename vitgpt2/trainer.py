"""`Seq2SeqTrainer` for captioning: encode-once loss, and evaluation that generates once per image and
scores each caption against ALL of that image's references."""

import json
import logging
import os

import numpy as np
import torch
from transformers import Seq2SeqTrainer

from .checkpoints import load_model_weights
from .modeling import IGNORE_INDEX, caption_loss, per_image_loss
from .sampling import ImagesWithReferences

logger = logging.getLogger(__name__)


class CaptionMetricsHook:
    """The `compute_metrics` hook. Evaluation batches return each image's row index as their "labels", so
    the hook looks up all references of every generated caption, whatever the order or number of processes."""

    def __init__(self, tokenizer, scorer, output_dir: str | None = None, is_main_process=lambda: True):
        self.tokenizer = tokenizer
        self.scorer = scorer
        self.output_dir = output_dir
        self.is_main_process = is_main_process
        self.view: ImagesWithReferences | None = None
        self.prefix = "eval"
        self.last_records: list[dict] = []

    def bind(self, view: ImagesWithReferences, prefix: str) -> None:
        self.view, self.prefix = view, prefix

    def decode(self, token_ids: np.ndarray) -> tuple[list[str], float]:
        token_ids = np.where(token_ids == IGNORE_INDEX, self.tokenizer.pad_token_id, token_ids)
        special = set(self.tokenizer.all_special_ids)
        lengths = [sum(1 for token in row if token not in special) for row in token_ids.tolist()]
        texts = self.tokenizer.batch_decode(token_ids, skip_special_tokens=True)
        return [" ".join(text.split()) for text in texts], float(np.mean(lengths)) if lengths else 0.0

    def __call__(self, eval_prediction) -> dict[str, float]:
        if self.view is None:
            raise RuntimeError("CaptionMetricsHook.bind(view, prefix) must be called before evaluation")
        predictions, gen_len = self.decode(np.asarray(eval_prediction.predictions))
        indices = np.asarray(eval_prediction.label_ids).reshape(len(predictions), -1)[:, 0]
        rows = self.view.metadata(indices)
        references = [row["captions"] for row in rows]
        scores, per_image = self.scorer.score(predictions, references, return_per_image=True)
        self.last_records = [
            {
                "image_index": int(index),
                "image_id": row["image_id"],
                "file_name": row["file_name"],
                "prediction": prediction,
                "references": row["captions"],
                "scores": image_scores,
            }
            for index, row, prediction, image_scores in zip(indices, rows, predictions, per_image)
        ]
        if self.output_dir and self.is_main_process():
            self.write_records(os.path.join(self.output_dir, f"{self.prefix}_predictions.jsonl"))
        return {**scores, "gen_len": gen_len}

    def write_records(self, path: str) -> None:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(path, "w") as f:
            for record in self.last_records:
                f.write(json.dumps(record, ensure_ascii=False) + "\n")


class CaptioningTrainer(Seq2SeqTrainer):
    def __init__(self, *args, metrics_hook: CaptionMetricsHook | None = None, **kwargs):
        super().__init__(*args, compute_metrics=metrics_hook, **kwargs)
        self.metrics_hook = metrics_hook

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        # --label_smoothing_factor applies here (the Trainer's own label smoother never sees these losses);
        # evaluation reports the plain per-image loss.
        smoothing = self.args.label_smoothing_factor if model.training else 0.0
        loss, outputs = caption_loss(model, inputs["pixel_values"], inputs["labels"], num_items_in_batch, smoothing)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            # `num_items_in_batch` counts tokens on every process; DDP averages gradients over processes.
            loss = loss * self.accelerator.num_processes
        return (loss, outputs) if return_outputs else loss

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        # transformers 5 resumes with load_state_dict(strict=False), which skips the ViT weights save_pretrained
        # wrote under their legacy names: the encoder would silently restart from its initial layers.
        if self.is_deepspeed_enabled or self.is_fsdp_enabled:
            return super()._load_from_checkpoint(resume_from_checkpoint, model)
        load_model_weights(self.model if model is None else model, resume_from_checkpoint)

    def _load_best_model(self):
        # `--load_best_model_at_end` goes through the same lossy load as resuming (see _load_from_checkpoint).
        if self.is_deepspeed_enabled or self.is_fsdp_enabled:
            return super()._load_best_model()
        logger.info("Loading best model from %s (score: %s)", self.state.best_model_checkpoint, self.state.best_metric)
        load_model_weights(self.model, self.state.best_model_checkpoint)

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None, **gen_kwargs):
        inputs = dict(inputs)
        image_index = inputs.pop("image_index", None)
        labels = inputs.pop("labels", None)
        inputs = self._prepare_inputs(inputs)
        loss = None
        if labels is not None:
            # The mean of per-image losses: the Trainer averages batch losses weighted by batch size, so
            # eval_loss is then the same however images are batched or spread over processes.
            with torch.no_grad(), self.compute_loss_context_manager():
                loss = per_image_loss(model, inputs["pixel_values"], labels.to(self.args.device)).mean().detach()
        if prediction_loss_only or not self.args.predict_with_generate or image_index is None:
            return loss, None, None
        _, generated, _ = super().prediction_step(
            model, inputs, prediction_loss_only=False, ignore_keys=ignore_keys, **gen_kwargs
        )
        return loss, generated, image_index.to(generated.device)[:, None]

    def _bind(self, dataset, prefix: str) -> None:
        if self.metrics_hook is not None and isinstance(dataset, ImagesWithReferences):
            self.metrics_hook.bind(dataset, prefix)

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix="eval", **gen_kwargs):
        self._bind(eval_dataset if eval_dataset is not None else self.eval_dataset, metric_key_prefix)
        return super().evaluate(
            eval_dataset, ignore_keys=ignore_keys, metric_key_prefix=metric_key_prefix, **gen_kwargs
        )

    def predict(self, test_dataset, ignore_keys=None, metric_key_prefix="test", **gen_kwargs):
        self._bind(test_dataset, metric_key_prefix)
        return super().predict(
            test_dataset, ignore_keys=ignore_keys, metric_key_prefix=metric_key_prefix, **gen_kwargs
        )
