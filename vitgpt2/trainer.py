"""`Seq2SeqTrainer` for captioning: encode-once loss, and evaluation that generates once per image and
scores each caption against ALL of that image's references."""

import json
import logging
import os
from dataclasses import dataclass, field

import numpy as np
import torch
from accelerate.utils import gather_object
from transformers import Seq2SeqTrainer, TrainerCallback
from transformers.trainer_utils import get_last_checkpoint

from .arguments import DEFAULT_LOGGING_STEPS
from .checkpoints import load_model_weights
from .data.errors import DataSourceError
from .data.streaming import StreamingCaptions, StreamState
from .data.views import ImagesWithReferences
from .disk_space import disk_full, is_disk_full
from .loss import IGNORE_INDEX, caption_loss, per_image_loss
from .remote_code.text import decode_captions

logger = logging.getLogger(__name__)

STREAM_STATE = "stream_state-{}.json"  # per process, in each checkpoint of a streamed run


@dataclass
class CaptionEvaluation:
    """What one evaluation (or prediction) pass gives: the metrics, and per image its caption, references and scores."""

    metrics: dict[str, float]
    records: list[dict] = field(default_factory=list)


class CaptionMetricsHook:
    """The `compute_metrics` hook. Evaluation batches return each image's row index as their "labels", so
    the hook looks up all references of every generated caption, whatever the order or number of processes.

    The Trainer passes only metrics back from `compute_metrics`, so the per-image records of the call wait in
    `records` until `CaptioningTrainer` takes them."""

    def __init__(self, tokenizer, scorer):
        self.tokenizer = tokenizer
        self.scorer = scorer
        self.view: ImagesWithReferences | None = None
        self.records: list[dict] = []

    def decode(self, token_ids: np.ndarray) -> tuple[list[str], float]:
        token_ids = np.where(token_ids == IGNORE_INDEX, self.tokenizer.pad_token_id, token_ids)
        special = set(self.tokenizer.all_special_ids)
        lengths = [sum(1 for token in row if token not in special) for row in token_ids.tolist()]
        return decode_captions(self.tokenizer, token_ids), float(np.mean(lengths)) if lengths else 0.0

    def __call__(self, eval_prediction) -> dict[str, float]:
        if self.view is None:
            raise RuntimeError("evaluation needs an ImagesWithReferences view (one item per image)")
        generated = np.asarray(eval_prediction.predictions)
        indices = np.asarray(eval_prediction.label_ids).reshape(len(generated), -1)[:, 0]
        # Several processes: the distributed sampler repeats images to even out the last batches, and what is
        # gathered can hold them; each image counts once, with its first caption.
        first = np.sort(np.unique(indices, return_index=True)[1])
        predictions, gen_len = self.decode(generated[first])
        indices = indices[first]
        rows = self.view.metadata(indices)
        references = [row["captions"] for row in rows]
        images = self.view.pictures(indices) if self.scorer.needs_images else None
        scores, per_image = self.scorer.score(predictions, references, return_per_image=True, images=images)
        self.records = [
            {
                "image_index": int(index),
                "image_id": row["image_id"] if row["numeric_id"] is None else row["numeric_id"],  # the source's type
                "file_name": row["file_name"],
                "prediction": prediction,
                "references": row["captions"],
                "scores": image_scores,
            }
            for index, row, prediction, image_scores in zip(indices, rows, predictions, per_image)
        ]
        return {**scores, "gen_len": gen_len}


def write_records(records: list[dict], path: str) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")


def write_coco_results(records: list[dict], path: str) -> None:
    """COCO's results format, which pycocotools' `COCO.loadRes` and pycocoevalcap's `COCOEvalCap` read."""
    with open(path, "w", encoding="utf-8") as f:
        json.dump([{"image_id": record["image_id"], "caption": record["prediction"]} for record in records], f)


LOGGED_POINTS = 50


class LogOften(TrainerCallback):
    """At the default `--logging_steps`, the loss is logged every `max_steps // 50` steps: at least 50 points a run.
    The Trainer turns a fraction into steps rounding up (a 140-step run at 0.02 logs every 3 steps: 46 points).
    A `--logging_steps` of the user's own is kept as given."""

    def on_train_begin(self, args, state, control, **kwargs):
        if args.logging_steps == DEFAULT_LOGGING_STEPS:
            state.logging_steps = max(1, state.max_steps // LOGGED_POINTS)


class CaptioningTrainer(Seq2SeqTrainer):
    """With a `scorer` (a `vitgpt2.metrics.CaptionScorer`), evaluation generates one caption per image, scores it
    against all of the image's references and writes `<prefix>_predictions.jsonl` (per image: caption, references,
    scores) and `<prefix>_coco_results.json` (COCO's results format) to the output folder."""

    def __init__(self, *args, scorer=None, encoder_learning_rate: float | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.add_callback(LogOften())
        self.encoder_learning_rate = encoder_learning_rate
        self._image_losses: list[tuple[int, float]] = []  # (image index, loss) of the evaluation under way
        self.metrics_hook = CaptionMetricsHook(self.processing_class, scorer) if scorer is not None else None
        self.compute_metrics = self.metrics_hook
        self.stream_state, self._resumed_stream_from = None, None
        if isinstance(self.train_dataset, StreamingCaptions):
            # The stream resumes itself (data.streaming); the Trainer's skipping would read every skipped batch.
            self.args.ignore_data_skip = True
            self.train_dataset.set_topology(self.args.process_index, self.args.world_size)
            self.stream_state = StreamState(self.args.world_size, self.args.dataloader_num_workers)

    def get_train_dataloader(self):
        if self.stream_state is None:
            return super().get_train_dataloader()
        # Not through accelerate's `prepare`, which would have every process read the whole stream and keep its
        # slice of each batch: the stream splits itself between processes and workers.
        workers = self.args.dataloader_num_workers
        return torch.utils.data.DataLoader(
            self.train_dataset,
            batch_size=self._train_batch_size,
            collate_fn=self.data_collator,
            num_workers=workers,
            pin_memory=self.args.dataloader_pin_memory,
            persistent_workers=self.args.dataloader_persistent_workers and workers > 0,
            prefetch_factor=self.args.dataloader_prefetch_factor if workers > 0 else None,
            multiprocessing_context=self.args.dataloader_multiprocessing_context if workers > 0 else None,
        )

    def get_batch_samples(self, epoch_iterator, num_batches, device):
        batches, num_items_in_batch = super().get_batch_samples(epoch_iterator, num_batches, device)
        if self.stream_state is not None:
            batches = [self.stream_state.used(batch) for batch in batches]
        if self._resumed_stream_from is not None:
            # Starting the DataLoader drew a seed from the RNG the checkpoint restored: restore it again, so that
            # dropout continues as in the uninterrupted run (the Trainer does the same after skipping batches).
            self._load_rng_state(self._resumed_stream_from)
            self._resumed_stream_from = None
        return batches, num_items_in_batch

    def streamed_images_left_out(self) -> int:
        """Unreadable images a streamed run skipped, over every process (each one logged as it was skipped)."""
        count = torch.tensor(self.stream_state.unreadable(), device=self.args.device)
        return (
            int(self.accelerator.reduce(count, reduction="sum")) if self.accelerator.num_processes > 1 else int(count)
        )

    def _save_rng_state(self, output_dir):
        # Written before trainer_state.json, which marks the checkpoint complete (vitgpt2.checkpoints).
        if self.stream_state is not None:
            path = os.path.join(output_dir, STREAM_STATE.format(self.args.process_index))
            os.makedirs(output_dir, exist_ok=True)  # another process than the one that saves the weights may be first
            with open(path + ".tmp", "w", encoding="utf-8") as f:
                json.dump(self.stream_state.state_dict(), f)
            os.replace(path + ".tmp", path)
        super()._save_rng_state(output_dir)

    def train(self, resume_from_checkpoint=None, **kwargs):
        if self.stream_state is not None and resume_from_checkpoint:
            if resume_from_checkpoint is True:
                resume_from_checkpoint = get_last_checkpoint(self.args.output_dir)
            path = os.path.join(resume_from_checkpoint, STREAM_STATE.format(self.args.process_index))
            try:
                with open(path, encoding="utf-8") as f:
                    state = json.load(f)
            except FileNotFoundError:
                raise DataSourceError(
                    f"{resume_from_checkpoint} holds no stream position for process {self.args.process_index} "
                    f"({os.path.basename(path)}): it was not saved by a streamed run with this many processes"
                ) from None
            self.train_dataset.resume(state, self.args.dataloader_num_workers)
            self.stream_state.load(state)
            self._resumed_stream_from = resume_from_checkpoint
        return super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)

    def create_optimizer(self, model=None):
        """The Trainer's optimizer, with the encoder's weights in groups of their own at `encoder_learning_rate`."""
        optimizer = super().create_optimizer(model)
        if self.encoder_learning_rate is None:
            return optimizer
        encoder = {id(parameter) for parameter in self.model.encoder.parameters()}
        for group in list(optimizer.param_groups):
            moved = [parameter for parameter in group["params"] if id(parameter) in encoder]
            if not moved:
                continue
            group["params"] = [parameter for parameter in group["params"] if id(parameter) not in encoder]
            if not group["params"]:
                optimizer.param_groups.remove(group)
            optimizer.add_param_group({**group, "params": moved, "lr": self.encoder_learning_rate})
        return optimizer

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        # --label_smoothing_factor applies here (the Trainer's own label smoother never sees these losses);
        # evaluation reports the plain per-image loss.
        smoothing = self.args.label_smoothing_factor if model.training else 0.0
        loss, outputs = caption_loss(
            model,
            inputs.get("pixel_values"),
            inputs["labels"],
            num_items_in_batch,
            smoothing,
            encoder_states=inputs.get("encoder_states"),
        )
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            # `num_items_in_batch` counts tokens on every process; DDP averages gradients over processes.
            loss = loss * self.accelerator.num_processes
        return (loss, outputs) if return_outputs else loss

    def _save_checkpoint(self, model, trial):
        try:
            return super()._save_checkpoint(model, trial)
        except (OSError, RuntimeError) as error:
            if is_disk_full(error):
                raise disk_full(error, self.args.output_dir, self.model) from error
            raise

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
            with torch.no_grad(), self.compute_loss_context_manager():
                losses = per_image_loss(model, inputs["pixel_values"], labels.to(self.args.device)).detach()
            loss = losses.mean()
            if image_index is not None:
                self._image_losses.extend(zip(image_index.tolist(), losses.float().tolist()))
        if prediction_loss_only or not self.args.predict_with_generate or image_index is None:
            return loss, None, None
        _, generated, _ = super().prediction_step(
            model, inputs, prediction_loss_only=False, ignore_keys=ignore_keys, **gen_kwargs
        )
        return loss, generated, image_index.to(generated.device)[:, None]

    def evaluation_loop(
        self, dataloader, description, prediction_loss_only=None, ignore_keys=None, metric_key_prefix="eval"
    ):
        # The Trainer's eval_loss is a mean of batch means weighted by the full batch size, so a short last batch
        # counts as a full one: eval_loss is the mean over images instead, the same however images are batched or
        # spread over processes (the distributed sampler's repeated images counted once).
        self._image_losses = []
        output = super().evaluation_loop(
            dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix=metric_key_prefix
        )
        losses = gather_object(self._image_losses) if self.accelerator.num_processes > 1 else self._image_losses
        if losses:
            output.metrics[f"{metric_key_prefix}_loss"] = float(np.mean(list(dict(losses).values())))
        return output

    def _scored(self, run, dataset, prefix: str):
        """(what `run` returns, the per-image records it scored): `run` is the Trainer's `evaluate` or `predict` over
        `dataset`. The records are also written (main process) to `<prefix>_predictions.jsonl` and, in COCO's results
        format, `<prefix>_coco_results.json`."""
        hook = self.metrics_hook
        if hook is None:
            return run(), []
        hook.view = dataset if isinstance(dataset, ImagesWithReferences) else None
        hook.records = []
        result = run()
        records, hook.records = hook.records, []
        if records and self.is_world_process_zero():
            write_records(records, os.path.join(self.args.output_dir, f"{prefix}_predictions.jsonl"))
            write_coco_results(records, os.path.join(self.args.output_dir, f"{prefix}_coco_results.json"))
        return result, records

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix="eval", **gen_kwargs):
        return self.evaluate_captions(eval_dataset, ignore_keys, metric_key_prefix, **gen_kwargs).metrics

    def predict(self, test_dataset, ignore_keys=None, metric_key_prefix="test", **gen_kwargs):
        return self._predict_scored(test_dataset, ignore_keys, metric_key_prefix, **gen_kwargs)[0]

    def evaluate_captions(
        self, eval_dataset=None, ignore_keys=None, metric_key_prefix="eval", **gen_kwargs
    ) -> CaptionEvaluation:
        """`evaluate`, returning the per-image records with the metrics."""
        dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
        run = lambda: super(CaptioningTrainer, self).evaluate(  # noqa: E731
            eval_dataset, ignore_keys=ignore_keys, metric_key_prefix=metric_key_prefix, **gen_kwargs
        )
        return CaptionEvaluation(*self._scored(run, dataset, metric_key_prefix))

    def predict_captions(
        self, test_dataset, ignore_keys=None, metric_key_prefix="predict", **gen_kwargs
    ) -> CaptionEvaluation:
        """`predict`, returning the metrics and the per-image records (captions, references, scores)."""
        output, records = self._predict_scored(test_dataset, ignore_keys, metric_key_prefix, **gen_kwargs)
        return CaptionEvaluation(output.metrics, records)

    def _predict_scored(self, test_dataset, ignore_keys, metric_key_prefix, **gen_kwargs):
        run = lambda: super(CaptioningTrainer, self).predict(  # noqa: E731
            test_dataset, ignore_keys=ignore_keys, metric_key_prefix=metric_key_prefix, **gen_kwargs
        )
        return self._scored(run, test_dataset, metric_key_prefix)
