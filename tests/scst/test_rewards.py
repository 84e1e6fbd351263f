"""The SCST reward: CIDEr-D with document frequencies from the training references, BLEU-4, and their mixes."""

import importlib

import numpy as np
import pytest

from tests.metrics.test_scorer import coco_inputs, load_fixture
from vitgpt2.errors import ArgumentError
from vitgpt2.scst.rewards import CaptionReward, parse_reward


@pytest.fixture(scope="module")
def human_captions():
    """COCO-like human captions (clitics, hyphens, abbreviations, numbers): predictions and 5 references each."""
    return load_fixture()


@pytest.mark.parametrize(
    ("text", "weights"),
    [("cider", {"cider": 1.0}), ("cider:1,bleu:0.5", {"cider": 1.0, "bleu": 0.5}), (" BLEU : 2 ", {"bleu": 2.0})],
)
def test_parse_reward(text, weights):
    assert parse_reward(text) == weights


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("spice", "unknown metric"),
        ("cider:x", "must be a number"),
        ("cider:0", "rewards nothing"),
        ("", "rewards nothing"),
    ],
)
def test_parse_reward_refuses_what_it_cannot_use(text, message):
    with pytest.raises(ArgumentError, match=message):
        parse_reward(text)


@pytest.mark.parametrize(
    ("module", "name", "metric"),
    [("pycocoevalcap.cider.cider", "Cider", "cider"), ("pycocoevalcap.bleu.bleu", "Bleu", "bleu")],
)
def test_reward_equals_pycocoevalcap_when_the_training_references_are_the_scored_ones(
    human_captions, module, name, metric
):
    """With the scored set as the training set, the idf is the same one pycocoevalcap computes: the rewards must be
    its per-image scores (CIDEr-D) and its per-image BLEU-4."""
    predictions, references = human_captions
    reward = CaptionReward(references, {metric: 1.0}, progress=False)
    ours = reward(predictions, range(len(predictions)))
    scorer = getattr(importlib.import_module(module), name)
    per_image = (
        scorer(4).compute_score(*coco_inputs(predictions, references), verbose=0)[1][3]
        if metric == "bleu"
        else scorer().compute_score(*coco_inputs(predictions, references))[1]
    )
    np.testing.assert_allclose(ours, per_image, rtol=1e-9, atol=1e-12)
    assert ours.std() > 0.1 * ours.mean()  # real spread: the test would see a constant reward


def test_the_reward_of_a_caption_does_not_depend_on_the_batch(human_captions):
    """The idf comes from the training references once, so the reward of (caption, image) is the same whichever
    other captions are scored with it, unlike evaluation's CIDEr whose idf is that of the scored set."""
    predictions, references = human_captions
    reward = CaptionReward(references, {"cider": 1.0, "bleu": 0.5}, progress=False)
    alone = [reward([prediction], [i])[0] for i, prediction in enumerate(predictions[:8])]
    together = reward(predictions[:8], range(8))
    shuffled = reward(predictions[:8][::-1] + ["a dog"], [*range(7, -1, -1), 3])[:8][::-1]
    np.testing.assert_allclose(alone, together, rtol=1e-12)
    np.testing.assert_allclose(together, shuffled, rtol=1e-12)


def test_a_mix_adds_the_weighted_rewards(human_captions):
    predictions, references = human_captions
    reward = CaptionReward(references, {"cider": 1.0, "bleu": 0.5}, progress=False)
    components = reward.components(predictions, range(len(predictions)))
    np.testing.assert_allclose(reward(predictions, range(len(predictions))), components[:, 0] + 0.5 * components[:, 1])


def test_reward_reads_captions_as_coco_does(human_captions):
    """Case, punctuation and stray whitespace do not change a reward; a wrong word does; an empty caption gets 0."""
    _, references = human_captions
    reward = CaptionReward(references[:3], {"cider": 1.0}, progress=False)
    caption = references[0][0]
    noisy = "  " + caption.upper().replace(" ", "  ") + " .\n"
    values = reward([caption, noisy, "a purple elephant", ""], [0, 0, 0, 0])
    assert values[0] == pytest.approx(values[1]) and values[0] > values[2] and values[3] == 0


def test_with_score_end_the_end_of_a_caption_is_a_word_of_pycocoevalcaps_cider_d(human_captions):
    """ruotianluo's reward: `<eos>` appended to every reference and to every sample that ended. Ours must equal
    pycocoevalcap's CIDEr-D on the same tokens with such a word appended, a cut sample (`ended` False) without it."""
    from pycocoevalcap.cider.cider import Cider

    predictions, references = human_captions
    ended = [i % 3 != 0 for i in range(len(predictions))]
    reward = CaptionReward(references, {"cider": 1.0}, score_end=True, progress=False)
    ours = reward(predictions, range(len(predictions)), ended)

    gts, res = coco_inputs(predictions, references)
    gts = {i: [f"{ref} zzend" for ref in refs] for i, refs in gts.items()}
    res = {i: [f"{hyp[0]} zzend" if ended[i] else hyp[0]] for i, hyp in res.items()}
    np.testing.assert_allclose(ours, Cider().compute_score(gts, res)[1], rtol=1e-9, atol=1e-12)
    without = CaptionReward(references, {"cider": 1.0}, progress=False)(predictions, range(len(predictions)))
    assert not np.allclose(ours, without)


def test_with_score_end_a_caption_that_ends_where_the_references_end_beats_the_same_words_cut():
    references = [["a dog on a couch", "a brown dog lying on a couch", "the dog sleeps on a couch"]] * 2
    references[1] = ["a cat on a bed", "two cats on a bed", "a cat sleeping on a bed"]
    reward = CaptionReward(references, {"cider": 1.0, "bleu": 1.0}, score_end=True, progress=False)
    ended, cut = reward(["a dog on a couch", "a dog on a couch"], [0, 0], [True, False])
    assert ended > cut
    # a caption that stops early ends where no reference ends: "a dog on <end>" is no reference n-gram
    early, full = reward(["a dog on a", "a dog on a couch"], [0, 0], [True, True])
    assert full > early
    # an empty caption is worth nothing, though every reference ends with the same word (BLEU's smoothing: 1e-7)
    assert reward([""], [0], [True])[0] < 1e-6
