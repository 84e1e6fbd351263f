"""Hub datasets (and URL-only ones with local files), through the same `datasets.load_dataset` call as a Hub id, on local folders laid out as the
Hub's parquet copies of COCO are: images inline with a caption list per image, or one row per caption."""

import io

import PIL.Image
import pytest
from datasets import Dataset, Image

from vitgpt2.data.sources import DataSourceError, load_hub, to_image_rows


def _png(colour) -> bytes:
    buffer = io.BytesIO()
    PIL.Image.new("RGB", (12, 12), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def _write_parquet(folder, split: str, columns: dict) -> None:
    table = Dataset.from_dict(columns).cast_column("image", Image())
    (folder / "data").mkdir(parents=True, exist_ok=True)
    table.to_parquet(str(folder / "data" / f"{split}-00000-of-00001.parquet"))


def test_one_row_per_image_with_a_caption_list(tmp_path):
    repo = tmp_path / "coco2017-captioning"
    images = [{"bytes": _png((i * 60, 0, 0)), "path": f"{i}.jpg"} for i in range(3)]
    _write_parquet(repo, "train", {"image": images, "captions": [["a", "b"], ["c"], ["d", "e", "f"]]})
    _write_parquet(repo, "validation", {"image": images[:1], "captions": [["g"]]})
    rows = load_hub(str(repo), "train", "image", "captions", cache_dir=str(tmp_path / "cache"))
    assert rows["captions"] == [["a", "b"], ["c"], ["d", "e", "f"]]
    assert rows[0]["image"]["bytes"] and rows["file_name"] == ["0.jpg", "1.jpg", "2.jpg"]
    assert len(load_hub(str(repo), "validation", "image", "captions", cache_dir=str(tmp_path / "cache"))) == 1


def test_one_row_per_caption_grouped_by_image_id(tmp_path):
    repo = tmp_path / "karpathy"
    red, blue = {"bytes": _png((255, 0, 0)), "path": None}, {"bytes": _png((0, 0, 255)), "path": None}
    _write_parquet(
        repo,
        "train",
        {"image": [red, blue, red, red], "sentence": ["r1", "b1", "r2", "r3"], "cocoid": [5, 8, 5, 5]},
    )
    rows = load_hub(str(repo), "train", "image", "sentence", image_id_column="cocoid", cache_dir=str(tmp_path / "c"))
    assert rows["image_id"] == ["5", "8"] and rows["captions"] == [["r1", "r2", "r3"], ["b1"]]
    assert rows["file_name"] == ["5", "8"]  # no file names inline: the image id stands in


def test_url_only_dataset_resolves_against_the_image_root(tmp_path):
    root = tmp_path / "downloaded"
    (root / "val2017").mkdir(parents=True)
    PIL.Image.new("RGB", (8, 8)).save(root / "val2017" / "000000000139.jpg")
    PIL.Image.new("RGB", (8, 8)).save(root / "000000000285.jpg")  # a flat folder works too
    urls = [
        "http://images.cocodataset.org/val2017/000000000139.jpg",
        "http://images.cocodataset.org/val2017/000000000285.jpg",
    ]
    table = Dataset.from_dict({"coco_url": urls, "caption": ["a", "b"]})
    rows = to_image_rows(table, "coco_url", "caption", image_root=str(root))
    assert [image["path"] for image in rows["image"]] == [
        str(root / "val2017" / "000000000139.jpg"),
        str(root / "000000000285.jpg"),
    ]
    assert rows["file_name"] == ["000000000139.jpg", "000000000285.jpg"]


def test_url_paths_cannot_escape_the_image_root(tmp_path):
    table = Dataset.from_dict({"url": ["http://host/a/%2E%2E/%2E%2E/etc/passwd"], "caption": ["x"]})
    with pytest.raises(DataSourceError, match="outside"):
        to_image_rows(table, "url", "caption", image_root=str(tmp_path))
