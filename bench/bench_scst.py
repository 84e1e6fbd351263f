"""Self-critical training vs more cross-entropy: N steps of each from the same cross-entropy captioner, on the same
images, scored on held-out images.

    make demo && python bench/bench_scst.py --checkpoint demo_run/output --data demo_run/data
    python bench/bench_scst.py                   # builds the scenes set and a stage-1 captioner first (~8 min)

SCST runs with configs/demo_scst.yaml's settings (learning rate, samples, steps, and whether its encoder trains). The
baseline continues cross-entropy for the same number of steps over the same images per step (all five captions of
each, encode-once, its encoder training) at its own learning rate (default: the same one), on the config's
learning-rate schedule, as SCST. Reported: held-out CIDEr-D, BLEU-4, caption length, distinct-2 and the share of
degenerate captions (a word repeated back to back, or a dangling last word).
Targets: SCST at least 1.08x continued cross-entropy's CIDEr-D, with no more than 2 points more degenerate captions.
"""

import argparse
import json
import os
import subprocess
import sys

import common
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = 1.08
MAX_MORE_DEGENERATE = 2.0
SHOWN = {
    "CIDEr-D": "eval_cider",
    "BLEU-4": "eval_bleu",
    "length (tokens)": "eval_gen_len",
    "distinct-2": "eval_distinct2",
    "degenerate %": "eval_degenerate",
}


# The config keys this bench reads: these go to both sides as they are; learning_rate and max_steps too, unless
# --ce_learning_rate or --steps say otherwise; and every scst_* key and what the config says of the encoder, to
# SCST's side only. Continued cross-entropy trains its encoder: frozen, it scored lower (README, Benchmarks).
BOTH_SIDES = ("lr_scheduler_type", "per_device_train_batch_size", "per_device_eval_batch_size", "max_target_length",
              "generation_max_length", "seed")  # fmt: skip
SCST_ENCODER = ("freeze_encoder", "train_encoder_layers", "encoder_learning_rate")
SETTINGS = ("learning_rate", "max_steps", *BOTH_SIDES, *SCST_ENCODER)


def reads(key: str) -> bool:
    return key in SETTINGS or key.startswith("scst")


def scst_side(key: str) -> bool:
    return key.startswith("scst") or key in SCST_ENCODER


def run(argv: list[str], log_path: str) -> dict:
    """run_captioning.py in its own process; returns its all_results.json."""
    command = [sys.executable, os.path.join(ROOT, "run_captioning.py"), *argv, "--disable_tqdm", "true"]
    with open(log_path, "w") as log:
        done = subprocess.run(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    if done.returncode:
        sys.exit(f"{' '.join(command)} failed; see {log_path}")
    output = argv[argv.index("--output_dir") + 1]
    with open(os.path.join(output, "all_results.json")) as f:
        return json.load(f)


def stage_one(work_dir: str, num_train: int, num_val: int) -> tuple[str, str]:
    """The scenes set and a cross-entropy captioner trained on it with configs/demo.yaml."""
    data, models, output = (os.path.join(work_dir, name) for name in ("data", "models", "cross-entropy"))
    cli = [sys.executable, "-m", "vitgpt2.cli"]
    subprocess.run([*cli, "make-synthetic", "--kind", "scenes", "--output_dir", data, "--num_train", str(num_train),
                    "--num_val", str(num_val)], check=True)  # fmt: skip
    subprocess.run([*cli, "make-tiny-models", "--coco_dir", data, "--output_dir", models], check=True)
    run(
        [
            os.path.join(ROOT, "configs", "demo.yaml"), "--coco_dir", data, "--output_dir", output,
            "--encoder_model_name_or_path", os.path.join(models, "encoder"),
            "--decoder_model_name_or_path", os.path.join(models, "decoder"), "--metrics", "bleu,cider",
            "--eval_strategy", "no", "--save_strategy", "no",
        ],
        os.path.join(work_dir, "cross-entropy.log"),
    )  # fmt: skip
    return output, data


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", help="A cross-entropy captioner (default: train one on a new scenes set).")
    parser.add_argument("--data", help="The COCO-layout folder it was trained on (needed with --checkpoint).")
    parser.add_argument("--config", default=os.path.join(ROOT, "configs", "demo_scst.yaml"))
    parser.add_argument("--steps", type=int, help="Steps of each side (default: the config's max_steps).")
    parser.add_argument("--ce_learning_rate", type=float, help="Continued cross-entropy's (default: SCST's).")
    parser.add_argument("--work_dir", default="bench_out/scst")
    parser.add_argument("--num_train", type=int, default=2000)
    parser.add_argument("--num_val", type=int, default=200)
    args = parser.parse_args(argv)
    if (args.checkpoint is None) != (args.data is None):
        parser.error("give --checkpoint and --data together, or neither")
    print(common.machine_line())
    os.makedirs(args.work_dir, exist_ok=True)
    checkpoint, data = args.checkpoint, args.data
    if checkpoint is None:
        checkpoint, data = stage_one(args.work_dir, args.num_train, args.num_val)

    with open(args.config) as f:
        config = yaml.safe_load(f)
    steps = args.steps or config["max_steps"]
    learning_rate = config["learning_rate"]
    ce_learning_rate = args.ce_learning_rate or learning_rate
    shared = [
        "--model_name_or_path", checkpoint, "--coco_dir", data, "--do_train", "--do_eval", "--max_steps", str(steps),
        "--metrics", "bleu,cider", "--save_strategy", "no", "--eval_strategy", "no", "--report_to", "none",
        *(f"--{key}={config[key]}" for key in BOTH_SIDES),
    ]  # fmt: skip
    scst_options = [f"--{key}={value}" for key, value in config.items() if scst_side(key)]
    results = {
        "SCST": run(
            [*shared, "--output_dir", os.path.join(args.work_dir, "scst"), "--learning_rate", str(learning_rate),
             *scst_options],
            os.path.join(args.work_dir, "scst.log"),
        ),
        "cross-entropy": run(
            [*shared, "--output_dir", os.path.join(args.work_dir, "more-cross-entropy"), "--captions_per_image", "5",
             "--learning_rate", str(ce_learning_rate)],
            os.path.join(args.work_dir, "more-cross-entropy.log"),
        ),
    }  # fmt: skip

    print(
        f"\n{steps} steps of each from {checkpoint}, {config['per_device_train_batch_size']} images a step, "
        f"learning rate {config['lr_scheduler_type']} from {learning_rate:g} (cross-entropy: "
        f"{ce_learning_rate:g})"
        + "".join(f", SCST side: {key} {config[key]}" for key in SCST_ENCODER if key in config)
    )
    rows = [[name, *(result[key] for key in SHOWN.values())] for name, result in results.items()]
    common.print_table("Held-out scores (0-100)", ["", *SHOWN], rows)
    scst, ce = results["SCST"], results["cross-entropy"]
    ratio = scst["eval_cider"] / ce["eval_cider"]
    more_degenerate = scst["eval_degenerate"] - ce["eval_degenerate"]
    passed = common.report_ratio("CIDEr-D, SCST / continued cross-entropy", ratio, TARGET)
    clean = more_degenerate <= MAX_MORE_DEGENERATE
    print(
        f"degenerate captions: {more_degenerate:+.1f} points with SCST "
        f"(target <= +{MAX_MORE_DEGENERATE:g}: {'PASS' if clean else 'FAIL'})"
    )
    summary = {"results": results, "ratio": ratio, "more_degenerate": more_degenerate, "passed": passed and clean}
    with open(os.path.join(args.work_dir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)  # for bench/sweep_scst.py
    return summary


if __name__ == "__main__":
    main()
