"""CLIPScore and RefCLIPScore against torchmetrics' CLIPScore, on a tiny random CLIP checkpoint in hub layout."""

import json

import numpy as np
import PIL.Image
import pytest
import skimage.data
import torch

from vitgpt2.metrics import CaptionScorer
from vitgpt2.metrics.clipscore import ClipScoreUnavailable

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "camera")
CAPTIONS = ["an astronaut in a suit", "a cup of coffee", "a cat looks at the camera", "a rocket on a pad", ""]
REFERENCES = [
    ["a woman in a space suit", "an astronaut poses"],
    ["coffee in a white cup"],
    ["a tabby cat", "an orange cat's face", "a close-up of a cat"],
    ["a rocket launch", "the rocket stands"],
    ["a man with a camera"],
]


def photographs() -> list[PIL.Image.Image]:
    images = [getattr(skimage.data, name)() for name in PHOTOS]
    return [PIL.Image.fromarray(image).convert("RGB") for image in images]  # camera is grayscale


class Features(torch.nn.Module):
    """torchmetrics 1.9 expects `get_*_features` to return tensors; transformers 5 returns model outputs."""

    def __init__(self, model):
        super().__init__()
        self.model, self.config = model, model.config

    def get_image_features(self, *args, **kwargs):
        return self.model.get_image_features(*args, **kwargs).pooler_output

    def get_text_features(self, *args, **kwargs):
        return self.model.get_text_features(*args, **kwargs).pooler_output


def torchmetrics_scores(tiny_clip, sources, targets) -> list[float]:
    from torchmetrics.functional.multimodal import clip_score
    from transformers import CLIPModel, CLIPProcessor

    model, processor = Features(CLIPModel.from_pretrained(tiny_clip)), CLIPProcessor.from_pretrained(tiny_clip)
    return [
        float(clip_score(source, target, model_name_or_path=lambda: (model, processor)))
        for source, target in zip(sources, targets)
    ]


def test_clipscore_is_torchmetrics_clipscore_with_the_papers_weight(tiny_clip):
    images = photographs()
    tensors = [torch.from_numpy(np.array(image)).permute(2, 0, 1) for image in images]
    theirs = torchmetrics_scores(tiny_clip, tensors[:4], CAPTIONS[:4])  # 100 * max(cos, 0)
    scores, per_image = CaptionScorer(metrics="clipscore", clip_model=tiny_clip).score(
        CAPTIONS[:4], REFERENCES[:4], return_per_image=True, images=images[:4]
    )
    for ours, reference in zip(per_image, theirs):
        assert ours["clipscore"] == pytest.approx(2.5 * reference, abs=1e-4)
    assert scores["clipscore"] == pytest.approx(2.5 * np.mean(theirs), abs=1e-4)


def test_refclipscore_is_the_harmonic_mean_with_the_best_reference(tiny_clip):
    images = photographs()
    _, per_image = CaptionScorer(metrics="clipscore,refclipscore", clip_model=tiny_clip).score(
        CAPTIONS[:4], REFERENCES[:4], return_per_image=True, images=images[:4]
    )
    for caption, references, row in zip(CAPTIONS, REFERENCES, per_image):
        best = max(torchmetrics_scores(tiny_clip, [caption] * len(references), references)) / 100  # text-text cos
        clip_s = row["clipscore"] / 100
        expected = 2 * clip_s * best / (clip_s + best) if clip_s + best > 0 else 0.0
        assert row["refclipscore"] == pytest.approx(100 * expected, abs=1e-4)


def test_clipscore_needs_the_images_and_loads_clip_at_the_first_score(tiny_clip, monkeypatch):
    scorer = CaptionScorer(metrics="bleu,clipscore", clip_model=tiny_clip)
    assert "_model_and_processor" not in vars(scorer.clipscore)  # nothing loaded yet
    with pytest.raises(ValueError, match="one image per prediction"):
        scorer.score(CAPTIONS, REFERENCES)
    scores = scorer.score(CAPTIONS, REFERENCES, images=photographs())
    assert 0 <= scores["clipscore"] <= 250 and "bleu" in scores


def test_an_unavailable_clip_model_says_what_to_do(tmp_path):
    scorer = CaptionScorer(metrics="clipscore", clip_model=str(tmp_path / "no-clip-here"))
    with pytest.raises(ClipScoreUnavailable, match="--clip_model"):
        scorer.score(["a dog"], [["a dog"]], images=photographs()[:1])


def test_score_command_reads_images_next_to_the_jsonl(tiny_clip, tmp_path, capsys):
    from vitgpt2.cli import main as cli

    lines = []
    for name, image, caption, refs in zip(PHOTOS, photographs(), CAPTIONS, REFERENCES):
        image.save(tmp_path / f"{name}.png")
        lines.append(json.dumps({"prediction": caption, "references": refs, "image": f"{name}.png"}))
    (tmp_path / "p.jsonl").write_text("\n".join(lines) + "\n")
    argv = ["score", str(tmp_path / "p.jsonl"), "--metrics", "cider,clipscore,refclipscore", "--clip_model", tiny_clip]
    assert cli(argv) == 0
    scores = json.loads(capsys.readouterr().out)
    direct = CaptionScorer(metrics="cider,clipscore,refclipscore", clip_model=tiny_clip).score(
        CAPTIONS, REFERENCES, images=photographs()
    )
    assert scores == pytest.approx(direct, abs=1e-4)  # PNG round trip is lossless

    (tmp_path / "q.jsonl").write_text(json.dumps({"prediction": "a", "references": ["b"]}) + "\n")
    assert cli(["score", str(tmp_path / "q.jsonl"), "--metrics", "clipscore", "--clip_model", tiny_clip]) == 2
    assert "'image'" in capsys.readouterr().err


def test_evaluate_module_takes_the_images(tiny_clip):
    import evaluate

    from vitgpt2.metrics import evaluate_module_path

    module = evaluate.load(evaluate_module_path())
    scores = module.compute(
        predictions=CAPTIONS, references=REFERENCES, metrics="clipscore", clip_model=tiny_clip, images=photographs()
    )
    direct = CaptionScorer(metrics="clipscore", clip_model=tiny_clip).score(CAPTIONS, REFERENCES, images=photographs())
    assert scores == pytest.approx(direct, abs=1e-5)
