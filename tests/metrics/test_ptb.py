"""vitgpt2's pure-Python PTB tokenization against the Java tokenizer pycocoevalcap runs: identical tokens, and so
identical scores, on captions of every kind that tokenizes differently from splitting on punctuation."""

import shutil
from collections import Counter

import pytest
from ptb_captions import CLASSES, generate, generate_with_classes

from vitgpt2.metrics import CaptionScorer, normalize_caption, tokenize, tokenize_all

needs_java = pytest.mark.skipif(shutil.which("java") is None, reason="the reference tokenizer runs in Java")

# Written the way COCO's annotators write (none of these come from the generator).
HUMAN_CAPTIONS = [
    "A close-up of a T.V. on a stand.",
    "It's a dog's life on the couch.",
    "Two children's toys aren't put away.",
    "A man in a t-shirt and jeans is riding a skateboard down the street.",
    "The St. Louis arch at 6:30 p.m.",
    "A 2-year-old boy eating a slice of pizza.",
    "a plate with 3 1/2 sandwiches on it",
    'A sign that says "STOP" at the corner of 5th Ave. and Main St.',
    "A woman's hand holding a cell phone (an iPhone).",
    "people standing on the ground.A train is coming",
    "Dogs & cats sleeping together!!!",
    "A bus that's going to downtown L.A. and it's red",
    "the kitchen has a stove/oven and a fridge",
    "A man jumps in the air -- with his skateboard",
    "A cup of coffee ☕ and a donut on a table",
    "Someone's laptop, keyboard, and mouse on a desk...",
    "Un café au lait à côté d'un croissant",
    "A 100% cotton shirt on sale for $19.99",
    "Children playing frisbee at the park in the U.S.",
    "  A   giraffe   standing next to a tree  ",
    "an old-fashioned clock reads 10:45",
    "A vase w/ flowers in it",
    "The Yankees' dugout during a game",
    "I'd say it's a cat on a car's hood",
    "a",
    "",
]


def java_tokens(captions: list[str]) -> list[str]:
    """pycocoevalcap's PTBTokenizer on `captions`, one per image in order, as its evaluation calls it."""
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    tokenized = PTBTokenizer().tokenize({i: [{"caption": caption}] for i, caption in enumerate(captions)})
    return [tokenized[i][0] for i in range(len(captions))]


def test_the_generated_captions_cover_every_class_thousands_of_times():
    counts = Counter(name for _, classes in generate_with_classes(20_000) for name in classes)
    assert set(counts) == set(CLASSES)
    assert min(counts.values()) >= 3_000


@needs_java
def test_identical_tokens_to_pycocoevalcap_on_20000_generated_captions():
    captions = generate(20_000, seed=0)
    ours = [" ".join(tokens) for tokens in tokenize_all(captions)]
    theirs = java_tokens(captions)
    differing = [(caption, a, b) for caption, a, b in zip(captions, ours, theirs) if a != b]
    assert differing == [], f"{len(differing)} captions differ, first: {differing[:3]}"


@needs_java
def test_identical_tokens_on_human_written_captions():
    assert [normalize_caption(caption) for caption in HUMAN_CAPTIONS] == java_tokens(HUMAN_CAPTIONS)
    assert [" ".join(tokens) for tokens in tokenize_all(HUMAN_CAPTIONS)] == java_tokens(HUMAN_CAPTIONS)


@needs_java
@pytest.mark.parametrize(
    "caption, next_caption",
    [
        *(("a plan b.", opener) for opener in ("The dog sleeps", "the dog sleeps", "A cat", "Two cats", "Mr. Smith")),
        *(("in room No.", start) for start in ("5 dogs", "five dogs", " 5 dogs")),
    ],
)
def test_the_next_line_decides_a_final_period_as_in_pycocoevalcap(caption, next_caption):
    """The Java lexer reads across lines: "b." ending one caption loses its period before a sentence opener, and
    "No." keeps its period only before a number."""
    captions = [caption, next_caption]
    expected = java_tokens(captions)[0]
    assert " ".join(tokenize(captions[0], next_caption=next_caption)) == expected
    assert " ".join(tokenize_all(captions)[0]) == expected


def test_what_coco_keeps_that_splitting_on_punctuation_loses():
    assert tokenize("It's a dog's close-up on T.V.") == ["it", "'s", "a", "dog", "'s", "close-up", "on", "t.v."]
    assert tokenize("Don't (really)!!") == ["do", "n't", "-lrb-", "really", "-rrb-", "!!"]
    assert tokenize("gonna see ground.A man 🐶") == ["gon", "na", "see", "ground.a", "man"]
    assert tokenize(None) == [] and tokenize(42) == ["42"]


def test_plain_captions_split_and_keep_periods_as_the_lexer_does():
    assert tokenize("A man on Main St.") == ["a", "man", "on", "main", "st."]
    assert tokenize("A dog runs.") == ["a", "dog", "runs"]
    assert tokenize("I cannot see, it is gonna rain") == ["i", "can", "not", "see", "it", "is", "gon", "na", "rain"]
    assert tokenize("plan b.") == ["plan", "b."] and tokenize("plan b.", next_caption="The end") == ["plan", "b"]
    assert tokenize("room No. 5") == ["room", "no.", "5"] and tokenize("room no.") == ["room", "no"]


def test_line_breaks_inside_a_caption_are_spaces():
    assert tokenize("a dog\non the\r\ngrass\u2028now") == ["a", "dog", "on", "the", "grass", "now"]


@needs_java
def test_scores_equal_pycocoevalcap_with_its_java_tokenizer():
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    references = [generate(5, seed=seed) for seed in range(1, 601)]
    predictions = generate(600, seed=1000)
    references += [[caption] * 5 for caption in HUMAN_CAPTIONS[:-1]]
    predictions += [caption.lower() for caption in HUMAN_CAPTIONS[:-1]]
    tokenizer = PTBTokenizer()
    gts = tokenizer.tokenize({i: [{"caption": ref} for ref in refs] for i, refs in enumerate(references)})
    res = tokenizer.tokenize({i: [{"caption": prediction}] for i, prediction in enumerate(predictions)})
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    rouge, _ = Rouge().compute_score(gts, res)
    cider, _ = Cider().compute_score(gts, res)
    ours = CaptionScorer(metrics="bleu,rouge,cider").score(predictions, references)
    theirs = {"bleu1": bleu[0], "bleu": bleu[3], "rougeL_coco": rouge, "cider": cider}
    for key, value in theirs.items():
        assert ours[key] == pytest.approx(100 * value, abs=0.01), key
