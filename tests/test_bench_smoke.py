"""The bench scripts still run end to end at tiny sizes, so a change in vitgpt2 cannot silently break them."""

import importlib
import os
import shutil

import datasets
import pytest
import torch
import transformers
import yaml

from tests.scst.test_scst_training import changed, weights

BENCH_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench")


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(BENCH_DIR)  # the scripts import their helpers as `common`, as when run directly
    # The benches set process-wide state (one CPU thread, no progress bars); later tests get theirs back.
    threads = torch.get_num_threads()
    bars = datasets.is_progress_bar_enabled(), transformers.utils.logging.is_progress_bar_enabled()
    yield importlib.import_module
    torch.set_num_threads(threads)
    if bars[0]:
        datasets.enable_progress_bars()
    if bars[1]:
        transformers.utils.logging.enable_progress_bar()


def test_bench_preprocessing(bench, tmp_path):
    argv = ["--num_images", "12", "--width", "160", "--height", "120", "--encoder_size", "32", "--num_proc", "1"]
    results = bench("bench_preprocessing").main([*argv, "--work_dir", str(tmp_path)])
    assert results["usual"]["rows"] == 5 * results["vitgpt2"]["rows"] == 60
    assert results["cache_ratio"] > 3.5  # float32 per caption vs uint8 per image, whatever the timing


def test_bench_training(bench):
    results = bench("bench_training").main(["--tiny", "--pairs", "10", "--steps", "1", "--warmup", "1"])
    loss_per_pair, loss_encode_once = results["losses"]
    assert loss_per_pair == pytest.approx(loss_encode_once, rel=1e-5)
    assert results["ratios"]["flops"] > 1  # fewer encoder passes


def test_bench_eval(bench):
    results = bench("bench_eval").main(["--tiny", "--num_images", "2", "--batch_size", "2", "--max_length", "6"])
    assert results["identical_captions"]
    assert set(results["seconds"]) == {"once per image", "once per row"}


def test_gpu_bench_runs_on_cpu(bench):
    argv = ["--device", "cpu", "--tiny", "--pairs", "10", "--steps", "1", "--warmup", "1", "--no-compile"]
    results = bench("gpu_bench").main([*argv, "--loader_images", "12", "--num_workers", "1", "--loader_epochs", "2"])
    assert all(0 < result["tflop_step"] for result in results["training"].values())
    assert results["training"]["encode-once"]["tflop_step"] < results["training"]["per pair"]["tflop_step"]
    assert all(result["pairs/s"] > 0 for result in results["loader"].values())


def test_gpu_bench_times_and_profiles_the_kinds_asked_for(bench, capsys):
    argv = ["--device", "cpu", "--tiny", "--pairs", "10", "--steps", "1", "--warmup", "1", "--no-compile"]
    results = bench("gpu_bench").main([*argv, "--loader_images", "0", "--kinds", "per-pair", "--profile", "3"])
    assert set(results["training"]) == {"per pair"}
    assert "One per pair step, top 3 ops" in capsys.readouterr().out


def test_gpu_bench_refuses_to_profile_a_kind_it_does_not_time(bench):
    with pytest.raises(SystemExit):
        bench("gpu_bench").main(["--device", "cpu", "--tiny", "--kinds", "encode-once", "--profile_kinds", "per-pair"])


@pytest.mark.skipif(shutil.which("java") is None, reason="pycocoevalcap's tokenizer runs in Java")
def test_bench_score_process(bench):
    results = bench("bench_score_process").main(["--images", "40", "--repeats", "1"])
    assert results["pycocoevalcap_s"] > 0 and results["vitgpt2_bleu,cider_s"] > 0


def test_bench_scst(bench, ce_captioner, synthetic_coco, tmp_path):
    """Both sides train on the config's schedule (one written here, not the shipped one) and are scored alike; what
    the config says of the encoder holds for SCST's side only."""
    with open(os.path.join(os.path.dirname(BENCH_DIR), "configs", "demo_scst.yaml")) as f:
        config = {**yaml.safe_load(f), "lr_scheduler_type": "cosine", "freeze_encoder": True}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    argv = ["--checkpoint", ce_captioner, "--data", synthetic_coco, "--steps", "2", "--work_dir", str(tmp_path),
            "--config", str(tmp_path / "config.yaml")]  # fmt: skip
    outcome = bench("bench_scst").main(argv)
    scst, ce = outcome["results"]["SCST"], outcome["results"]["cross-entropy"]
    assert outcome["ratio"] == pytest.approx(scst["eval_cider"] / ce["eval_cider"])
    assert {"eval_cider", "eval_degenerate", "eval_distinct2"} <= set(scst) & set(ce)
    for side in ("scst", "more-cross-entropy"):
        ran = torch.load(tmp_path / side / "training_args.bin", weights_only=False)
        assert (ran.lr_scheduler_type, ran.max_steps) == ("cosine", 2)
    start = weights(ce_captioner)
    encoder_moved = {
        side: [key for key in changed(start, weights(tmp_path / side)) if key.startswith("encoder.")]
        for side in ("scst", "more-cross-entropy")
    }
    assert not encoder_moved["scst"] and encoder_moved["more-cross-entropy"]


def test_sweep_scst(bench, ce_captioner, synthetic_coco, tmp_path):
    """Each (variant, seed) runs bench_scst with the variant's settings over the config and that seed."""
    sweep = bench("sweep_scst")
    argv = ["--checkpoint", ce_captioner, "--data", synthetic_coco, "--seeds", "3", "--work_dir", str(tmp_path),
            "--variant", "cool:max_steps=1,scst_temperature=0.9"]  # fmt: skip
    outcome = sweep.main(argv)
    with open(tmp_path / "cool-seed3" / "config.yaml") as f:
        ran = yaml.safe_load(f)
    assert (ran["scst_temperature"], ran["seed"], ran["max_steps"], ran["scst_num_samples"]) == (0.9, 3, 1, 5)
    assert outcome["means"]["cool"] == pytest.approx(outcome["summaries"]["cool-seed3"]["ratio"])
    assert "samples per image at temperature 0.9" in (tmp_path / "cool-seed3" / "scst" / "README.md").read_text()
    with pytest.raises(SystemExit, match="expected KEY=VALUE"):
        sweep.parse_variant("hot:scst_temperature")
    with pytest.raises(SystemExit, match="not warmup_steps"):  # a key the bench would not pass on
        sweep.parse_variant("warm:warmup_steps=10")


def test_bench_frozen(bench):
    results = bench("bench_frozen").main(["--tiny", "--pairs", "10", "--steps", "1", "--warmup", "1"])
    assert set(results["ratios"]) == {"cached_vs_fine_tuning", "cached_vs_frozen_in_loop", "flops_bound"}
    assert all(ratio > 0 for ratio in results["ratios"].values())
    assert results["bytes_per_image"] == 17 * 64 * 2  # (32/8)^2 patches + CLS, 64 wide, bf16


def test_bench_onnx(bench):
    results = bench("bench_onnx").main(["--tiny", "--images", "4", "--batch_size", "2", "--repeats", "1"])
    assert results["fp32_equal"] and set(results["ratios"]) == {"ONNX fp32", "ONNX int8"}
    assert results["sizes"]["int8"] < results["sizes"]["fp32"]


@pytest.mark.parametrize("options", [["--dtype", "float32", "--onnx"], ["--dtype", "bfloat16"]])
def test_bench_caption(bench, options):
    results = bench("bench_caption").main(
        ["--tiny", "--images", "4", "--batch_size", "2", "--num_workers", "1", *options]
    )
    torch_sides = {"pipe(paths, batch_size=2)", "vitgpt2 caption"}
    onnx_sides = {f"vitgpt2 caption --backend onnx ({precision})" for precision in ("fp32", "int8")}
    assert results["same_captions"] and set(results["ratios"]) == torch_sides | (
        onnx_sides if "--onnx" in options else set()
    )
    if "--onnx" in options:  # fp32 graphs caption as PyTorch does; int8's agreement is only reported
        assert results["onnx_agree"]["vitgpt2 caption --backend onnx (fp32)"] == 4


def test_bench_scst_step(bench):
    results = bench("bench_scst_step").main(
        ["--tiny", "--images", "2", "--samples", "3", "--steps", "1", "--warmup", "0"]
    )
    eager = results["eager"]
    assert eager["samples_per_s"] > 0 and min(eager["sampling"], eager["reward"], eager["update"]) > 0


def test_bench_generate_compiles_a_static_cache_to_the_same_captions(bench):
    argv = ["--tiny", "--batch_size", "3", "--new_tokens", "6", "--repeats", "1", "--warmup", "2", "--compile"]
    results = bench("bench_generate").main(argv)
    assert set(results) == {"default generate", "static cache", "static cache + compile"}
    assert all(result["same"] == 1.0 and result["captions/s"] > 0 for result in results.values())


def test_bench_loader(bench):
    results = bench("bench_loader").main(["--images", "24", "--width", "64", "--height", "48", "--batch_size", "4"])
    assert set(results["images_per_s"]) == {"uint8 cache", "WebDataset shards, streamed"}
    assert all(speed > 0 for speed in results["images_per_s"].values()) and all(results["bytes"].values())
