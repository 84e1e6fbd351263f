"""SCST settings against continued cross-entropy over several seeds: bench_scst.py once per (variant, seed), in
parallel, from one cross-entropy captioner. One 200-step run moves by several CIDEr-D points from seed to seed on the
scenes set, so a setting is judged by its mean ratio over seeds, not by one run.

    python bench/sweep_scst.py --checkpoint demo_run/output --data demo_run/data \\
        --variant shipped --variant T0.7:scst_temperature=0.7 --variant n10:scst_num_samples=10 --seeds 42 7 1

A variant is NAME or NAME:KEY=VALUE,KEY=VALUE over --config (default configs/demo_scst.yaml); values are read as YAML.
Each run's processes take --threads torch threads: on a GPU machine, --parallel 8 --threads 2 fills 16 cores.
"""

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from itertools import product

import common
import yaml
from bench_scst import ROOT, SETTINGS, TARGET, reads


def parse_variant(text: str) -> tuple[str, dict]:
    name, _, settings = text.partition(":")
    changes = {}
    for item in filter(None, settings.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--variant {text}: expected KEY=VALUE, got {item!r}")
        key = key.strip()
        if not reads(key):
            raise SystemExit(f"--variant {text}: bench_scst.py reads scst_* keys and {', '.join(SETTINGS)}, not {key}")
        changes[key] = yaml.safe_load(value)
    return name, changes


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--checkpoint", required=True, help="A cross-entropy captioner (`make demo`'s demo_run/output)."
    )
    parser.add_argument("--data", required=True, help="The COCO-layout folder it was trained on.")
    parser.add_argument("--config", default=os.path.join(ROOT, "configs", "demo_scst.yaml"))
    parser.add_argument("--variant", action="append", help="NAME[:KEY=VALUE,...]; repeat (default: the config as is).")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 7, 1])
    parser.add_argument("--parallel", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="torch threads per run (OMP_NUM_THREADS).")
    parser.add_argument("--work_dir", default="bench_out/sweep_scst")
    args = parser.parse_args(argv)
    print(common.machine_line())
    with open(args.config) as f:
        config = yaml.safe_load(f)
    variants = dict(parse_variant(text) for text in args.variant or ["shipped"])
    environment = {**os.environ, **({"OMP_NUM_THREADS": str(args.threads)} if args.threads else {})}

    def bench(job: tuple[str, int]) -> dict:
        name, seed = job
        work = os.path.join(args.work_dir, f"{name}-seed{seed}")
        os.makedirs(work, exist_ok=True)
        path = os.path.join(work, "config.yaml")
        with open(path, "w") as f:
            yaml.safe_dump({**config, **variants[name], "seed": seed}, f)
        command = [sys.executable, os.path.join(ROOT, "bench", "bench_scst.py"), "--checkpoint", args.checkpoint,
                   "--data", args.data, "--config", path, "--work_dir", work]  # fmt: skip
        with open(os.path.join(work, "bench.log"), "w") as log:
            done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=environment)
        if done.returncode:
            print(f"{name} seed {seed} failed: see {log.name}", flush=True)
            return {}
        with open(os.path.join(work, "summary.json")) as f:
            summary = json.load(f)
        print(f"{name} seed {seed}: {summary['ratio']:.3f}x", flush=True)
        return summary

    jobs = list(product(variants, args.seeds))
    with ThreadPoolExecutor(args.parallel) as pool:
        summaries = dict(zip(jobs, pool.map(bench, jobs)))

    rows, means, done_seeds = [], {}, {}
    for name in variants:
        done = [(seed, summaries[name, seed]) for seed in args.seeds if summaries[name, seed]]
        ratios = [summary["ratio"] for _, summary in done]
        means[name] = sum(ratios) / len(ratios) if ratios else float("nan")
        runs = ", ".join(
            f"{seed}: {s['results']['SCST']['eval_cider']:.1f} / {s['results']['cross-entropy']['eval_cider']:.1f}"
            for seed, s in done
        )
        worst = max((s["more_degenerate"] for _, s in done), default=float("nan"))
        steps = {**config, **variants[name]}["max_steps"]
        rows.append([name, str(steps), runs, *(f"{r:.3f}" for r in (means[name], min(ratios, default=0),
                     max(ratios, default=0))), f"{worst:+.1f}"])  # fmt: skip
        done_seeds[name] = len(done)
    common.print_table(
        f"CIDEr-D, SCST / continued cross-entropy (target >= {TARGET:g}x)",
        ["variant", "steps", "seed: SCST / cross-entropy", "mean", "min", "max", "degenerate, worst"],
        rows,
    )
    for name, mean in means.items():
        common.report_ratio(f"{name}, mean over {done_seeds[name]} seeds", mean, TARGET)
    return {"summaries": {f"{name}-seed{seed}": s for (name, seed), s in summaries.items()}, "means": means}


if __name__ == "__main__":
    main()
