#!/usr/bin/env python
"""Fine-tune a ViT encoder + GPT-2 decoder image captioner on COCO captions (or any image-caption dataset).

Offline demo (synthetic data, small models; what `make demo` runs):
    python -m vitgpt2.cli make-synthetic --output_dir demo_run/data
    python -m vitgpt2.cli make-tiny-models --coco_dir demo_run/data --output_dir demo_run/models
    accelerate launch run_captioning.py configs/demo.yaml

COCO 2017 on one GPU:
    accelerate launch run_captioning.py \\
        --encoder_model_name_or_path google/vit-base-patch16-224-in21k --decoder_model_name_or_path distilgpt2 \\
        --coco_dir /data/coco --output_dir vit-gpt2-coco --do_train --do_eval \\
        --per_device_train_batch_size 64 --per_device_eval_batch_size 128 --learning_rate 5e-5 \\
        --bf16 --captions_per_image 5 --preprocessing_num_workers 16 --dataloader_num_workers 8 \\
        --eval_strategy epoch --save_strategy epoch --generation_num_beams 3

Several GPUs (after `accelerate config`, or with a file from configs/accelerate/):
    accelerate launch --config_file configs/accelerate/multi_gpu.yaml run_captioning.py <same arguments>

Push to the Hub (model, processor, tokenizer, pipeline code, model card, pictures):
    accelerate launch run_captioning.py <arguments> --push_to_hub --hub_model_id you/vit-gpt2-coco

A single .json/.yaml argument is a config file; arguments after it override it.
"""

import logging
import os
import sys

import datasets
import transformers
from transformers import AutoTokenizer, set_seed

from vitgpt2.arguments import apply_decoding, parse_args
from vitgpt2.checkpoints import last_complete_checkpoint
from vitgpt2.data.collator import CaptioningCollator
from vitgpt2.data.encoder_features import encoder_features
from vitgpt2.data.preprocessing import preprocess
from vitgpt2.data.shared_cache import CacheWriters
from vitgpt2.data.sources import load_split
from vitgpt2.data.streaming import training_stream
from vitgpt2.data.views import CaptionGroups, ImagesWithReferences
from vitgpt2.disk_space import warn_if_short
from vitgpt2.encoders import load_image_processor
from vitgpt2.errors import ArgumentError, report_user_errors
from vitgpt2.lora import add_lora, merge_lora, save_adapter
from vitgpt2.metrics import CaptionScorer
from vitgpt2.model import (
    attention_implementations,
    check_captioner,
    configure_special_tokens,
    load_captioner,
    pad_vocabulary,
    parameter_counts,
    set_encoder_trainable,
)
from vitgpt2.parallelism import describe as describe_parallelism
from vitgpt2.parallelism import end_process_group, fallback_warning
from vitgpt2.publish.end_of_run import publish
from vitgpt2.publish.pipeline_code import PipelineCodeCallback
from vitgpt2.remote_code.images import encoder_size
from vitgpt2.scst.rewards import CaptionReward
from vitgpt2.scst.trainer import ScstTrainer
from vitgpt2.trainer import CaptioningTrainer

logger = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> dict:
    model_args, data_args, decoding_args, metrics_args, scst_args, training_args = parse_args(argv)
    if scst_args.scst and model_args.model_name_or_path is None:
        raise ArgumentError(
            "--scst continues a captioner trained with cross-entropy: give it with --model_name_or_path "
            "(self-critical training from scratch samples noise and learns nothing)"
        )
    # vitgpt2 pushes the finished folder itself (vitgpt2.publish.hub): the Trainer's push would upload checkpoints without
    # pipeline code. The token is kept out of training_args, which the Trainer pickles into training_args.bin.
    push, training_args.push_to_hub = training_args.push_to_hub, False
    hub_token, training_args.hub_token = training_args.hub_token, None

    # Logging: INFO on the main process, warnings elsewhere.
    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s",
        datefmt="%m/%d/%Y %H:%M:%S",
        handlers=[logging.StreamHandler(sys.stdout)],
    )
    log_level = training_args.get_process_log_level()
    for library_logger in (logger, logging.getLogger("vitgpt2")):
        library_logger.setLevel(log_level)
    datasets.utils.logging.set_verbosity(log_level)
    transformers.utils.logging.set_verbosity(log_level)
    logger.info("Training/evaluation parameters %s", training_args)

    # Last checkpoint: an interrupted run resumes from its last complete checkpoint.
    resume_from = training_args.resume_from_checkpoint
    if resume_from is None and training_args.do_train:
        resume_from = last_complete_checkpoint(training_args.output_dir)
        if resume_from is not None:
            logger.warning("Resuming training from %s", resume_from)  # shown at the default log level

    set_seed(training_args.seed)

    streamed = training_args.do_train and data_args.streams_training
    if streamed:
        check_streamed_training(data_args, model_args, scst_args, training_args)
    elif scst_args.scst and training_args.do_train and model_args.cache_encoder_features:
        # SCST samples from the pixels at every step: a frozen encoder runs in the loop, without gradients
        logger.info("--scst: the frozen encoder runs in the loop; its features are not cached")
        model_args.cache_encoder_features = False

    # Datasets: one row per image, all of its captions (a streamed training split is read as it trains).
    wanted = {
        "train": training_args.do_train and not streamed,
        "eval": training_args.do_eval,
        "predict": training_args.do_predict,
    }
    split_names = {
        "train": data_args.train_split_name,
        "eval": data_args.eval_split_name,
        "predict": data_args.test_split_name
        or ("test" if data_args.karpathy_split_file else data_args.eval_split_name),
    }
    limits = {
        "train": data_args.max_train_samples,
        "eval": data_args.max_eval_samples,
        "predict": data_args.max_predict_samples,
    }
    raw, source_left_out = {}, {}
    # Who writes the datasets cache: each machine for its own disk, the main process alone for a shared folder.
    cache_writers = CacheWriters.detect(training_args, model_args.cache_dir)
    with cache_writers.first("loading datasets"):
        for role, name in split_names.items():
            if wanted[role]:
                raw[role], source_left_out[role] = load_split(
                    data_args, name, cache_dir=model_args.cache_dir, token=model_args.token
                )
                if limits[role] is not None:
                    raw[role] = raw[role].select(range(min(limits[role], len(raw[role]))))

    # Model, tokenizer, image processor.
    source = model_args.model_name_or_path
    hub_kwargs = {**model_args.hub_kwargs(), "trust_remote_code": model_args.trust_remote_code}
    if source is not None:
        check_captioner(source, **hub_kwargs)
    image_processor = load_image_processor(source or model_args.encoder_model_name_or_path, **hub_kwargs)
    tokenizer = AutoTokenizer.from_pretrained(source or model_args.decoder_model_name_or_path, **hub_kwargs)
    model = load_captioner(
        encoder=model_args.encoder_model_name_or_path,
        decoder=model_args.decoder_model_name_or_path,
        checkpoint=source,
        attn_implementation=model_args.attn_implementation,
        image_size=encoder_size(image_processor),
        **hub_kwargs,
    )
    if decoding_args.generation_max_new_tokens is not None:
        training_args.generation_max_length = None  # one length limit: the Trainer would pass both to generate
    configure_special_tokens(model, tokenizer, training_args.generation_max_length, training_args.generation_num_beams)
    apply_decoding(model.generation_config, decoding_args)
    vocabulary = pad_vocabulary(model, len(tokenizer), model_args.pad_vocab_to_multiple_of)
    set_encoder_trainable(model, model_args.freeze_encoder, model_args.train_encoder_layers)
    lora_config = None
    if model_args.lora_r:
        lora_config = add_lora(
            model,
            model_args.lora_r,
            model_args.lora_alpha,
            model_args.lora_dropout,
            model_args.lora_on,
            model_args.lora_targets,
        )
    parameters = parameter_counts(model)
    logger.info("Trainable parameters: %(trainable_parameters)d of %(parameters)d", parameters)
    logger.info("Decoder vocabulary: %d rows for %d tokenizer ids", vocabulary, len(tokenizer))
    logger.info("Attention implementations: %s", attention_implementations(model))

    # Preprocessing: decode + resize each image once to uint8, tokenize captions (+EOS); cached by fingerprint.
    processed = {}
    with cache_writers.first("preprocessing"):
        for role, dataset in raw.items():
            processed[role] = preprocess(
                dataset,
                image_processor,
                tokenizer,
                max_target_length=data_args.max_target_length,
                num_proc=data_args.preprocessing_num_workers,
                load_from_cache_file=not data_args.overwrite_cache,
                bad_images=data_args.bad_images,
                desc=f"preprocessing {role} images",
            )
    # What each split left out or cut, for its metrics: unreadable or uncaptioned images, null or empty captions,
    # captions cut at --max_target_length, and what the source held that no row can (annotations of unlisted
    # images, repeated images entries).
    left_out = {
        role: {
            f"{role}_images_left_out": len(raw[role]) - len(processed[role]),
            f"{role}_captions_left_out": sum(raw[role]["captions_left_out"]),
            f"{role}_captions_cut": sum(processed[role]["captions_cut"]),
            **{f"{role}_{key}": value for key, value in source_left_out[role].items()},
        }
        for role in processed
    }
    for role, counts in left_out.items():
        if counts[f"{role}_captions_left_out"]:
            logger.warning("%s: left out %d null or empty captions", role, counts[f"{role}_captions_left_out"])
        if counts[f"{role}_captions_cut"]:
            logger.warning(
                "%s: %d captions are longer than --max_target_length (%d tokens, EOS included) and were cut there; "
                "raise it to keep them whole",
                role,
                counts[f"{role}_captions_cut"],
                data_args.max_target_length,
            )
    train_dataset = None
    if streamed:
        train_dataset = training_stream(
            data_args,
            image_processor,
            tokenizer,
            training_args.data_seed or training_args.seed,
            **model_args.hub_kwargs(),
        )
    elif "train" in processed and scst_args.scst:  # SCST samples its own captions: one item per image, its references
        train_dataset = ImagesWithReferences(processed["train"])
    elif "train" in processed:
        features = None
        if model_args.cache_encoder_features and training_args.do_train:  # the frozen encoder runs once per image
            with cache_writers.first("encoder features"):
                features = encoder_features(
                    model.encoder.to(training_args.device),
                    image_processor,
                    processed["train"],
                    dtype=model_args.encoder_features_dtype,
                    batch_size=training_args.per_device_eval_batch_size,
                )
        train_dataset = CaptionGroups(processed["train"], data_args.captions_per_image, features)
    views = {role: ImagesWithReferences(processed[role]) for role in ("eval", "predict") if role in processed}
    eval_dataset, predict_dataset = views.get("eval"), views.get("predict")

    # Collator and metrics: a scorer only where an evaluation will run. BERTScore's model is checked to exist now
    # and loaded at the first evaluation, onto the evaluation device.
    collator = CaptioningCollator(
        image_processor, pad_to=data_args.max_target_length if data_args.pad_to_max_length else None
    )
    scorer = None
    if training_args.predict_with_generate and (training_args.do_eval or training_args.do_predict):
        training_captions = raw["train"]["captions"] if "train" in raw else None
        scorer = CaptionScorer(
            metrics_args,
            device=str(training_args.device),
            training_captions=None if training_captions is None else (c for image in training_captions for c in image),
        )
        if scorer.bertscore is not None:
            scorer.bertscore.check_available()

    # Trainer: cross-entropy, or self-critical with a reward over the training references.
    trainer_class, scst_kwargs = CaptioningTrainer, {}
    if scst_args.scst and training_args.do_train:
        logger.info("Self-critical training: %s", scst_args.describe())
        trainer_class = ScstTrainer
        scst_kwargs = {
            "scst_args": scst_args,
            "reward": CaptionReward(
                processed["train"]["captions"], scst_args.reward_weights, score_end=scst_args.scst_reward_end
            ),
            "max_new_tokens": scst_args.scst_max_new_tokens or data_args.max_target_length,
        }
    trainer = trainer_class(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        data_collator=collator,
        scorer=scorer,
        encoder_learning_rate=model_args.encoder_learning_rate,
        callbacks=[PipelineCodeCallback(tokenizer=tokenizer, image_processor=image_processor)],
        **scst_kwargs,
    )

    logger.warning("Parallelism: %s", describe_parallelism(trainer))
    if warning := fallback_warning(trainer):
        logger.warning(warning)

    results = {}
    # The last scored pass (predict, else eval) gives the model card's samples; `shown` is the split it came from.
    records, shown = [], None
    # Training.
    if training_args.do_train:
        if training_args.save_strategy != "no" and trainer.is_world_process_zero():
            warn_if_short(training_args.output_dir, model, training_args.save_total_limit)
        train_result = trainer.train(resume_from_checkpoint=resume_from)
        if lora_config is not None:  # the saved model (and what is evaluated next) holds the merged weights
            if model_args.lora_save_adapter and trainer.is_world_process_zero():
                save_adapter(model, lora_config, os.path.join(training_args.output_dir, "adapter"))
            logger.info("LoRA: merged %d adapters into their weights", merge_lora(model))
        trainer.save_model()
        metrics = {**train_result.metrics, **parameters}
        if streamed:
            metrics["train_images_left_out"] = trainer.streamed_images_left_out()
            if metrics["train_images_left_out"]:
                logger.warning("streamed training skipped %d unreadable images", metrics["train_images_left_out"])
        else:  # a stream's size is not known ahead
            metrics.update(
                {
                    "train_samples": len(processed["train"]),
                    "train_pairs": train_dataset.num_captions,
                    **left_out["train"],
                }
            )
        trainer.log_metrics("train", metrics)
        trainer.save_metrics("train", metrics)
        trainer.save_state()
        results.update(metrics)

    # Evaluation: one caption per image, scored against all of its references.
    if training_args.do_eval:
        evaluation = trainer.evaluate_captions(metric_key_prefix="eval")
        metrics = {**evaluation.metrics, "eval_samples": len(eval_dataset), **left_out["eval"]}
        trainer.log_metrics("eval", metrics)
        trainer.save_metrics("eval", metrics)
        results.update(metrics)
        records, shown = evaluation.records, raw["eval"]

    # Prediction: the same scoring on the predict split.
    if training_args.do_predict:
        prediction = trainer.predict_captions(predict_dataset, metric_key_prefix="predict")
        metrics = {**prediction.metrics, "predict_samples": len(predict_dataset)}
        metrics.update(left_out["predict"])
        trainer.log_metrics("predict", metrics)
        trainer.save_metrics("predict", metrics)
        results.update(metrics)
        records, shown = prediction.records, raw["predict"]

    # Publishing, only after training (an evaluation-only run leaves the model it read alone): image processor and
    # pipeline code next to the model, pictures, model card; push if asked.
    if training_args.do_train and trainer.is_world_process_zero():
        publish(
            training_args,
            model_args,
            data_args,
            image_processor=image_processor,
            results=results,
            log_history=trainer.state.log_history,
            records=records,
            source_images=shown,
            push=push,
            token=hub_token,
            scst=scst_args.describe() if scst_args.scst else None,
        )
    end_process_group(trainer)
    return results


def check_streamed_training(data_args, model_args, scst_args, training_args) -> None:
    """What a streamed training split cannot do, said before anything loads."""
    if training_args.max_steps <= 0:
        raise ArgumentError(
            "streamed training data has no length to count epochs in: give --max_steps (e.g. images to see / "
            "(--per_device_train_batch_size x processes x --gradient_accumulation_steps))"
        )
    if scst_args.scst:
        raise ArgumentError("--scst scores samples against all training references: it needs a cached training split")
    others = data_args.coco_dir or data_args.dataset_name or data_args.image_folder
    if data_args.webdataset is not None and not others and (training_args.do_eval or training_args.do_predict):
        raise ArgumentError(
            "evaluation reads a cached split: with --webdataset, give its source with --coco_dir, --dataset_name "
            "or --image_folder (and --eval_split_name), or leave out --do_eval/--do_predict"
        )
    if data_args.max_train_samples is not None:
        raise ArgumentError("--max_train_samples limits a cached training split; a stream trains for --max_steps")
    if data_args.streaming and data_args.image_id_column:
        logger.warning(
            "--image_id_column: streamed rows are not merged by image; each row trains as an image of its own"
        )
    if model_args.cache_encoder_features:
        logger.warning("--cache_encoder_features: streamed images are not cached; the frozen encoder runs in the loop")
        model_args.cache_encoder_features = False


if __name__ == "__main__":
    sys.exit(report_user_errors(main, "run_captioning.py"))
