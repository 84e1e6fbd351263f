"""End to end: `run_captioning.main()` with patched `sys.argv`, on local folders only."""

import json
import os
import shutil
import sys

import numpy as np
import pytest
import torch
from datasets import Dataset, Image
from safetensors.torch import load_file
from transformers import VisionEncoderDecoderModel

import run_captioning
from vitgpt2.inference import captioning_pipeline
from vitgpt2.model import load_captioner
from vitgpt2.offline.synthetic import COLOURS, SIDES, all_captions, write_synthetic_coco
from vitgpt2.offline.tiny_models import write_tiny_models

REQUIRED_EVAL_KEYS = {
    "eval_loss",
    "eval_bleu",
    "eval_rouge1",
    "eval_rouge2",
    "eval_rougeL",
    "eval_bertscore_f1",
    "eval_gen_len",
}


def _run(monkeypatch, argv: list[str]) -> dict:
    monkeypatch.setattr(sys, "argv", ["run_captioning.py", *argv])
    return run_captioning.main()


def test_train_evaluate_save(monkeypatch, synthetic_coco, tiny_models, minilm, tmp_path):
    encoder, decoder = tiny_models
    output = tmp_path / "out"
    generated_rows = []
    original_generate = VisionEncoderDecoderModel.generate

    def counting_generate(self, *args, **kwargs):
        result = original_generate(self, *args, **kwargs)
        generated_rows.append(len(result))
        return result

    monkeypatch.setattr(VisionEncoderDecoderModel, "generate", counting_generate)
    results = _run(
        monkeypatch,
        [
            "--encoder_model_name_or_path", encoder,
            "--decoder_model_name_or_path", decoder,
            "--coco_dir", synthetic_coco,
            "--output_dir", str(output),
            "--do_train", "--do_eval",
            "--num_train_epochs", "1",
            "--per_device_train_batch_size", "8",
            "--per_device_eval_batch_size", "5",
            "--learning_rate", "1e-3",
            "--generation_max_length", "12",
            "--bertscore_model", minilm,
            "--bertscore_num_layers", "6",
            "--report_to", "none",
            "--save_strategy", "no",
        ],
    )  # fmt: skip
    # evaluation generated once per validation image (12), not once per (image, caption) row (60)
    assert sum(generated_rows) == 12
    eval_results = json.loads((output / "eval_results.json").read_text())
    assert REQUIRED_EVAL_KEYS <= set(eval_results)
    assert REQUIRED_EVAL_KEYS <= set(json.loads((output / "all_results.json").read_text()))
    assert all(0 <= eval_results[key] <= 100 for key in REQUIRED_EVAL_KEYS - {"eval_loss", "eval_gen_len"})
    assert results["train_pairs"] == 200 and results["eval_samples"] == 12
    for name in ("config.json", "generation_config.json", "preprocessor_config.json", "tokenizer.json"):
        assert (output / name).is_file(), name
    records = [json.loads(line) for line in open(output / "eval_predictions.jsonl")]
    assert len(records) == 12 and len({r["image_id"] for r in records}) == 12
    assert all(len(r["references"]) == 5 for r in records)
    # the weights changed in training
    trained = load_file(output / "model.safetensors")
    initial = load_captioner(encoder=encoder, decoder=decoder).state_dict()
    key = "decoder.transformer.h.0.mlp.c_fc.weight"
    assert not torch.allclose(trained[key], initial[key])


def test_config_file_with_overrides(monkeypatch, synthetic_coco, tiny_models, tmp_path):
    encoder, decoder = tiny_models
    config = tmp_path / "run.json"
    config.write_text(
        json.dumps(
            {
                "encoder_model_name_or_path": encoder,
                "decoder_model_name_or_path": decoder,
                "coco_dir": synthetic_coco,
                "output_dir": str(tmp_path / "wrong"),
                "do_eval": True,
                "max_eval_samples": 4,
                "metrics": "bleu,rouge",
                "report_to": "none",
            }
        )
    )
    results = _run(monkeypatch, [str(config), "--output_dir", str(tmp_path / "right")])
    assert results["eval_samples"] == 4 and "eval_bleu" in results and "eval_bertscore_f1" not in results
    assert (tmp_path / "right" / "eval_results.json").is_file() and not (tmp_path / "wrong").exists()


@pytest.mark.slow
def test_learns_synthetic_captions_and_stops_at_eos(monkeypatch, tmp_path):
    """The task is learned (BLEU-4 >= 50 on held-out images, colour and side named right), captions end where
    references do, and the model trained with encode-once loads with the pipeline."""
    data = write_synthetic_coco(str(tmp_path / "data"), num_train=500, num_val=100, seed=3)
    encoder, decoder = write_tiny_models(str(tmp_path / "models"), all_captions(data), image_size=64)
    output = tmp_path / "out"
    results = _run(
        monkeypatch,
        [
            "--encoder_model_name_or_path", encoder,
            "--decoder_model_name_or_path", decoder,
            "--coco_dir", data,
            "--output_dir", str(output),
            "--do_train", "--do_eval",
            "--num_train_epochs", "5",
            "--captions_per_image", "5",
            "--per_device_train_batch_size", "8",
            "--per_device_eval_batch_size", "50",
            "--learning_rate", "1e-3",
            "--warmup_steps", "30",
            "--lr_scheduler_type", "cosine",
            "--generation_max_length", "24",
            "--metrics", "bleu,rouge,cider",
            "--report_to", "none",
            "--save_strategy", "no",
            "--seed", "0",
        ],
    )  # fmt: skip
    assert results["eval_bleu"] >= 50, results
    records = [json.loads(line) for line in open(output / "eval_predictions.jsonl")]
    reference_words = np.mean([len(ref.split()) for r in records for ref in r["references"]])
    predicted_words = np.mean([len(r["prediction"].split()) for r in records])
    # EOS was learned: captions stop near the references' length instead of running to the 24-token limit
    assert abs(predicted_words - reference_words) < 2.5, (predicted_words, reference_words)
    assert results["eval_gen_len"] < 20
    # it sees: the caption names the drawn colour and side (the words every reference shares)
    for attribute in (COLOURS, SIDES):
        named = [next((w for w in r["prediction"].split() if w in attribute), None) for r in records]
        truth = [next(w for w in r["references"][0].split() if w in attribute) for r in records]
        assert np.mean([a == b for a, b in zip(named, truth)]) >= 0.8, attribute
    # the saved encode-once model is a plain VisionEncoderDecoderModel: the pipeline gives the evaluated captions
    captioner = captioning_pipeline(str(output))
    # with its vocabulary padded to a multiple of 64 (the default), the padding kept out of generation
    assert captioner.model.config.decoder.vocab_size % 64 == 0
    assert len(captioner.model.generation_config.suppress_tokens) == captioner.model.config.decoder.vocab_size - len(
        captioner.tokenizer
    )
    paths = [os.path.join(data, "val2017", r["file_name"]) for r in records[:8]]
    assert [c[0]["generated_text"] for c in captioner(paths, batch_size=4)] == [r["prediction"] for r in records[:8]]


def test_speed_settings_train_and_evaluate(monkeypatch, synthetic_coco, tiny_models, tmp_path, sdpa_masks_compiled):
    """The settings the README recommends for GPUs run end to end (here on the CPU): bf16 autocast, fused AdamW,
    fixed-length labels, encode-once, loader workers with persistence and prefetch, and the Trainer's
    torch.compile (a backend that runs the traced graphs as they are, to keep the test short), whose attention
    gets no mask."""
    backend, masks = sdpa_masks_compiled
    compile_ = torch.compile  # accelerate compiles with a backend from its own list; swap in the recording one
    monkeypatch.setattr(torch, "compile", lambda model, **kwargs: compile_(model, **{**kwargs, "backend": backend}))
    encoder, decoder = tiny_models
    results = _run(
        monkeypatch,
        [
            "--encoder_model_name_or_path", encoder, "--decoder_model_name_or_path", decoder,
            "--coco_dir", synthetic_coco, "--output_dir", str(tmp_path / "out"),
            "--do_train", "--do_eval", "--num_train_epochs", "1", "--max_eval_samples", "4",
            "--bf16", "--use_cpu", "--optim", "adamw_torch_fused", "--pad_to_max_length", "--max_target_length", "24",
            "--captions_per_image", "5", "--per_device_train_batch_size", "4",
            "--dataloader_num_workers", "2", "--dataloader_persistent_workers", "--dataloader_prefetch_factor", "2",
            "--torch_compile_backend", "eager",
            "--metrics", "bleu", "--report_to", "none", "--save_strategy", "no",
        ],
    )  # fmt: skip
    assert np.isfinite(results["train_loss"]) and np.isfinite(results["eval_loss"])
    assert results["train_pairs"] == 200 and "eval_bleu" in results
    assert masks and set(masks) == {None}  # the compiled graphs hold attention, and none of it is masked


def test_predict_on_the_karpathy_test_split_writes_predictions(monkeypatch, synthetic_coco, tiny_models, tmp_path):
    """Karpathy's json over COCO-style folders: `test` is the predict split, and its predictions land on disk."""
    annotations = json.loads(open(os.path.join(synthetic_coco, "annotations", "captions_val2017.json")).read())
    captions = {}
    for annotation in annotations["annotations"]:
        captions.setdefault(annotation["image_id"], []).append({"raw": annotation["caption"]})
    images = [
        {"filepath": "val2017", "filename": image["file_name"], "cocoid": image["id"], "split": split,
         "sentences": captions[image["id"]]}
        for image, split in zip(annotations["images"], ["test"] * 5 + ["val"] * 3 + ["restval"] * 4)
    ]  # fmt: skip
    split_file = tmp_path / "dataset_coco.json"
    split_file.write_text(json.dumps({"images": images}))
    encoder, decoder = tiny_models
    output = tmp_path / "out"
    results = _run(
        monkeypatch,
        [
            "--encoder_model_name_or_path", encoder, "--decoder_model_name_or_path", decoder,
            "--coco_dir", synthetic_coco, "--karpathy_split_file", str(split_file), "--output_dir", str(output),
            "--do_train", "--do_predict", "--num_train_epochs", "1", "--metrics", "bleu,cider", "--report_to", "none",
            "--save_strategy", "no",
        ],
    )  # fmt: skip
    assert results["train_samples"] == 4  # restval joins train
    assert results["predict_samples"] == 5 and "predict_bleu" in results and "predict_cider" in results
    records = [json.loads(line) for line in open(output / "predict_predictions.jsonl")]
    assert sorted(r["image_id"] for r in records) == sorted(image["cocoid"] for image in images[:5])  # ints, as given
    assert json.loads((output / "predict_results.json").read_text())["predict_samples"] == 5
    assert (output / "sample_captions.png").is_file()  # drawn from the predicted images when there is no eval


def _synthetic_rows(coco_dir: str, split: str):
    annotations = json.loads(open(os.path.join(coco_dir, "annotations", f"captions_{split}2017.json")).read())
    captions = {}
    for annotation in annotations["annotations"]:
        captions.setdefault(annotation["image_id"], []).append(annotation["caption"])
    folder = os.path.join(coco_dir, f"{split}2017")
    return [(os.path.join(folder, image["file_name"]), captions[image["id"]]) for image in annotations["images"]]


def _write_imagefolder(coco_dir: str, root) -> list[str]:
    for split, name in (("train", "train"), ("val", "validation")):
        (root / name).mkdir(parents=True)
        with open(root / name / "metadata.jsonl", "w") as f:
            for path, captions in _synthetic_rows(coco_dir, split):
                shutil.copy(path, root / name)
                f.write(json.dumps({"file_name": os.path.basename(path), "captions": captions}) + "\n")
    return ["--image_folder", str(root)]


def _write_parquet_repo(coco_dir: str, root) -> list[str]:
    """One row per caption, images inline, as several Hub copies of COCO are laid out."""
    for split, name in (("train", "train"), ("val", "validation")):
        rows = [(path, caption) for path, captions in _synthetic_rows(coco_dir, split) for caption in captions]
        table = Dataset.from_dict(
            {"img": [path for path, _ in rows], "sentence": [c for _, c in rows], "cocoid": [p for p, _ in rows]}
        ).cast_column("img", Image())
        (root / "data").mkdir(parents=True, exist_ok=True)
        table.to_parquet(str(root / "data" / f"{name}-00000-of-00001.parquet"))
    return ["--dataset_name", str(root), "--image_column", "img", "--caption_column", "sentence",
            "--image_id_column", "cocoid"]  # fmt: skip


def _source_argv(tiny_models, source: list[str], output, *extra: str) -> list[str]:
    """Train the tiny models on `source` (a `_write_*` function's arguments) and evaluate with BLEU."""
    encoder, decoder = tiny_models
    return [
        "--encoder_model_name_or_path", encoder, "--decoder_model_name_or_path", decoder, *source,
        "--output_dir", str(output), "--do_train", "--do_eval", "--metrics", "bleu", "--report_to", "none",
        "--save_strategy", "no", *extra,
    ]  # fmt: skip


@pytest.mark.parametrize("write_source", [_write_imagefolder, _write_parquet_repo], ids=["imagefolder", "hub-parquet"])
def test_other_sources_train_and_evaluate_like_coco(monkeypatch, synthetic_coco, tiny_models, tmp_path, write_source):
    output = tmp_path / "out"
    source = write_source(synthetic_coco, tmp_path / "source")
    results = _run(monkeypatch, _source_argv(tiny_models, source, output, "--num_train_epochs", "1"))
    assert results["train_samples"] == 40 and results["train_pairs"] == 200 and results["eval_samples"] == 12
    records = [json.loads(line) for line in open(output / "eval_predictions.jsonl")]
    assert len(records) == 12 and all(len(r["references"]) == 5 for r in records)


@pytest.mark.parametrize("write_source", [_write_imagefolder, _write_parquet_repo], ids=["imagefolder", "hub-parquet"])
def test_other_sources_stream_their_training_split(monkeypatch, synthetic_coco, tiny_models, tmp_path, write_source):
    """--streaming: the training split is read as it trains (no cache of it), evaluation from the cached split."""
    output = tmp_path / "out"
    source = write_source(synthetic_coco, tmp_path / "source")
    extra = ("--streaming", "--max_steps", "4", "--dataloader_num_workers", "2")
    results = _run(monkeypatch, _source_argv(tiny_models, source, output, *extra))
    assert results["eval_samples"] == 12 and "train_samples" not in results and results["train_loss"] > 0
    assert VisionEncoderDecoderModel.from_pretrained(output).config.decoder.n_layer > 0


def test_training_only_with_default_metrics_never_touches_bertscore_offline(monkeypatch, train_argv, tmp_path):
    """The default metrics include BERTScore with roberta-large, which this machine can't download: a run that
    never evaluates must not need it."""
    argv = [
        *train_argv(tmp_path / "out"),
        "--max_train_samples",
        "8",
        "--num_train_epochs",
        "1",
        "--save_strategy",
        "no",
    ]
    results = _run(monkeypatch, argv)
    assert results["train_samples"] == 8 and (tmp_path / "out" / "model.safetensors").is_file()


def test_an_unavailable_bertscore_model_stops_an_evaluating_run_before_training(monkeypatch, train_argv, tmp_path):
    argv = [*train_argv(tmp_path / "out"), "--do_eval"]
    with pytest.raises(ValueError, match=r"roberta-large.*--bertscore_model DIR.*--metrics bleu,rouge,cider"):
        _run(monkeypatch, argv)
    assert not (tmp_path / "out" / "model.safetensors").exists()  # stopped before any training


def test_decoding_options_reach_evaluation_and_the_saved_generation_config(
    monkeypatch, train_argv, synthetic_coco, tmp_path
):
    output = tmp_path / "out"
    argv = [
        *train_argv(output),
        "--do_eval",
        "--max_train_samples",
        "8",
        "--max_eval_samples",
        "6",
        "--metrics",
        "bleu",
    ]
    argv += ["--num_train_epochs", "1", "--save_strategy", "no", "--generation_num_beams", "2"]
    argv += ["--generation_no_repeat_ngram_size", "1", "--generation_length_penalty", "0.5"]
    argv += ["--generation_repetition_penalty", "1.3", "--generation_min_new_tokens", "3"]
    argv += ["--generation_max_new_tokens", "8"]
    _run(monkeypatch, argv)
    saved = json.loads((output / "generation_config.json").read_text())
    assert (saved["num_beams"], saved["no_repeat_ngram_size"], saved["length_penalty"]) == (2, 1, 0.5)
    assert (saved["repetition_penalty"], saved["min_new_tokens"], saved["max_new_tokens"]) == (1.3, 3, 8)
    # generate() with the saved model's defaults obeys them, and gives the captions evaluation scored
    records = [json.loads(line) for line in open(output / "eval_predictions.jsonl", encoding="utf-8")]
    captioner = captioning_pipeline(str(output))
    for record in records:
        pixels = captioner.preprocess(os.path.join(synthetic_coco, "val2017", record["file_name"]))
        ids = captioner.model.generate(**pixels)[0, 1:].tolist()  # after the start token
        words = [token for token in ids if token != captioner.tokenizer.eos_token_id]
        assert len(words) == len(set(words)) and 3 <= len(ids) <= 8, ids  # no token twice; the length limits held
        assert captioner.tokenizer.decode(ids, skip_special_tokens=True).split() == record["prediction"].split()


def test_decoding_options_that_contradict_each_other_are_an_argument_error(monkeypatch, train_argv, tmp_path):
    from vitgpt2.errors import ArgumentError

    argv = [*train_argv(tmp_path / "out"), "--generation_num_beams", "1", "--generation_length_penalty", "2"]
    with pytest.raises(ArgumentError, match="decoding options do not fit together.*length_penalty"):
        _run(monkeypatch, argv)


def test_a_frozen_encoder_keeps_its_weights_and_the_card_says_so(monkeypatch, train_argv, tiny_models, tmp_path):
    from transformers import AutoModel

    output = tmp_path / "out"
    argv = [*train_argv(output), "--max_train_samples", "8", "--max_steps", "3", "--learning_rate", "1e-2"]
    results = _run(monkeypatch, [*argv, "--freeze_encoder", "--save_strategy", "no"])
    assert results["trainable_parameters"] < results["parameters"]
    trained = VisionEncoderDecoderModel.from_pretrained(output)
    original = AutoModel.from_pretrained(tiny_models[0])
    for name, value in original.state_dict().items():
        assert torch.equal(trained.encoder.state_dict()[name], value), name
    original_decoder = AutoModel.from_pretrained(tiny_models[1]).state_dict()
    assert not torch.equal(trained.decoder.transformer.h[0].mlp.c_fc.weight, original_decoder["h.0.mlp.c_fc.weight"])
    card = (output / "README.md").read_text()
    assert (
        "| freeze_encoder | True |" in card and f"| trainable_parameters | {results['trainable_parameters']} |" in card
    )
