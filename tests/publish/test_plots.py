"""Pictures for the model card: loss curves and caption grids, down to the smallest inputs."""

import PIL.Image
import pytest
import skimage.data

from vitgpt2.publish.plots import caption_text, save_caption_grid, save_loss_curves

LOG_HISTORY = [
    {"loss": 3.2, "learning_rate": 1e-4, "epoch": 0.5, "step": 5},
    {"loss": 2.1, "learning_rate": 5e-5, "epoch": 1.0, "step": 10},
    {"eval_loss": 2.4, "eval_bleu": 12.0, "epoch": 1.0, "step": 10},
    {"train_runtime": 12.0, "train_loss": 2.6, "epoch": 1.0, "step": 10},
]


def record(index: int, name: str = "coffee") -> dict:
    return {
        "image_id": index,
        "file_name": f"{name}.jpg",
        "prediction": "a cup of coffee on a saucer with a spoon, seen from above on a wooden table",
        "references": ["a red cup of espresso on a red saucer", "coffee in a cup"],
    }


def load_photo(record: dict) -> PIL.Image.Image:
    return PIL.Image.fromarray(getattr(skimage.data, record["file_name"].removesuffix(".jpg"))())


def assert_png(path, min_size=(100, 100)):
    with PIL.Image.open(path) as image:
        assert image.format == "PNG" and image.size >= min_size


@pytest.mark.parametrize(
    "history",
    [LOG_HISTORY, LOG_HISTORY[:2], LOG_HISTORY[:1], [LOG_HISTORY[2]], []],
    ids=["train-and-eval", "no-eval-loss", "one-record", "eval-only", "empty"],
)
def test_loss_curves(history, tmp_path):
    path = tmp_path / "loss.png"
    assert save_loss_curves(history, str(path)) == str(path)
    assert_png(path)


def test_caption_grid(tmp_path):
    records = [record(i, name) for i, name in enumerate(["coffee", "chelsea", "astronaut", "rocket", "camera"] * 3)]
    path = tmp_path / "grid.png"
    assert save_caption_grid(records, load_photo, str(path), max_images=6) == str(path)
    with PIL.Image.open(path) as image:
        assert image.width > image.height  # 6 images: 4 columns, 2 rows


def test_caption_grid_with_one_record(tmp_path):
    path = tmp_path / "one.png"
    save_caption_grid([{"prediction": "a cat", "references": [], "file_name": "chelsea.jpg"}], load_photo, str(path))
    assert_png(path)


def test_caption_grid_needs_records(tmp_path):
    with pytest.raises(ValueError, match="at least one record"):
        save_caption_grid([], load_photo, str(tmp_path / "none.png"))


def test_captions_are_wrapped():
    text = caption_text(record(0))
    assert text.startswith("predicted: a cup") and "reference: a red cup" in text
    assert max(len(line) for line in text.splitlines()) <= 40


def test_evaluation_scores_are_drawn_beside_the_loss(tmp_path):
    with_scores = [*LOG_HISTORY, {"eval_loss": 2.0, "eval_bleu": 15.0, "eval_cider": 40.0, "step": 20}]
    with PIL.Image.open(save_loss_curves(LOG_HISTORY[:2], str(tmp_path / "loss.png"))) as image:
        loss_only = image.size
    with PIL.Image.open(save_loss_curves(with_scores, str(tmp_path / "both.png"))) as image:
        both = image.size
    assert both[0] > 1.5 * loss_only[0] and both[1] == loss_only[1]  # a second panel
