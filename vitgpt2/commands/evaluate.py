"""`vitgpt2 evaluate`: score any VisionEncoderDecoder captioner on any data source, without training.

It runs `run_captioning.main` with `--do_eval` on the given checkpoint, so data sources, preprocessing,
generation and metrics are exactly those of a training run; any other run_captioning argument passes through.
"""

import json


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="Score a trained captioner (folder or Hub id) on a dataset with the metrics suite",
        description="Any run_captioning.py argument may follow, e.g. --coco_dir DIR --max_eval_samples 500 "
        "--metrics bleu,rouge,cider --generation_num_beams 3 --per_device_eval_batch_size 64.",
    )
    parser.add_argument("--model", required=True, help="a VisionEncoderDecoder checkpoint folder or Hub id")
    parser.add_argument("--output_dir", default="vitgpt2-eval", help="where eval_results.json and predictions go")
    parser.set_defaults(func=run, passthrough=True)


def run(args) -> int:
    import run_captioning

    argv = ["--model_name_or_path", args.model, "--output_dir", args.output_dir, "--do_eval", *args.extra]
    if "--report_to" not in args.extra:
        argv += ["--report_to", "none"]
    results = run_captioning.main(argv)
    print(json.dumps({key: value for key, value in results.items() if key.startswith("eval_")}, indent=2))
    return 0
