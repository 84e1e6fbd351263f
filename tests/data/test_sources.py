import json
import os

import PIL.Image
import pytest
from datasets import Dataset, Image

from vitgpt2.data.coco_json import captions_file, write_captions_file
from vitgpt2.data.sources import DataSourceError, load_coco, load_hub, load_karpathy, safe_join, to_image_rows


def test_coco_layout_gives_one_row_per_image_with_all_captions(synthetic_coco, tmp_path):
    train = load_coco(synthetic_coco, "train", cache_dir=str(tmp_path))
    assert len(train) == 40
    assert set(train.column_names) == {"image", "captions", "image_id", "numeric_id", "file_name", "captions_left_out"}
    assert train["numeric_id"] == [int(image_id) for image_id in train["image_id"]]  # COCO's ids are integers
    assert all(len(captions) == 5 for captions in train["captions"])
    row = train[0]
    assert os.path.isfile(row["image"]["path"]) and row["file_name"].endswith(".jpg")
    assert len(load_coco(synthetic_coco, "validation", cache_dir=str(tmp_path))) == 12


def _write_coco(root, images, annotations):
    os.makedirs(os.path.join(root, "annotations"), exist_ok=True)
    os.makedirs(os.path.join(root, "train2017"), exist_ok=True)
    os.makedirs(os.path.join(root, "val2017"), exist_ok=True)
    write_captions_file(captions_file(root, "train2017"), images, annotations)


def test_coco_captions_are_cleaned_and_duplicates_merged(tmp_path):
    root = str(tmp_path / "coco")
    images = [{"id": 1, "file_name": "a.jpg"}, {"id": 1, "file_name": "a.jpg"}, {"id": 2, "file_name": "b.jpg"}]
    annotations = [
        {"image_id": 1, "caption": "  A dog\n runs. "},
        {"image_id": 1, "caption": "   "},
        {"image_id": 1, "caption": "Ein Hund läuft"},
    ]
    _write_coco(root, images, annotations)
    rows = load_coco(root, "train", cache_dir=str(tmp_path / "cache"))
    assert rows["image_id"] == ["1", "2"]
    assert rows["captions"] == [["A dog runs.", "Ein Hund läuft"], []]  # image 2 has none: left out later, counted


@pytest.mark.parametrize(
    "content, message",
    [("{not json", "not valid JSON"), (json.dumps({"images": []}), "no 'annotations'")],
)
def test_malformed_annotations_are_named(tmp_path, content, message):
    root = tmp_path / "coco"
    _write_coco(str(root), [], [])
    (root / "annotations" / "captions_train2017.json").write_text(content)
    with pytest.raises(DataSourceError, match=message):
        load_coco(str(root), "train", cache_dir=str(tmp_path / "cache"))


def test_missing_coco_folder_says_what_layout_is_expected(tmp_path):
    with pytest.raises(DataSourceError, match="official COCO 2017"):
        load_coco(str(tmp_path), "train")


def test_paths_cannot_escape_their_root(tmp_path):
    assert safe_join(str(tmp_path), "a/b.jpg") == os.path.join(str(tmp_path), "a", "b.jpg")
    for bad in ("../secret.jpg", "/etc/passwd", "a/../../x.jpg"):
        with pytest.raises(DataSourceError, match="outside"):
            safe_join(str(tmp_path), bad)


def test_rows_per_caption_are_grouped_by_image_id(tmp_path):
    image = PIL.Image.new("RGB", (8, 8))
    table = Dataset.from_dict(
        {"img": [image, image, image], "text": ["one", "two", "three"], "cocoid": [7, 9, 7]}
    ).cast_column("img", Image())
    rows = to_image_rows(table, "img", "text", image_id_column="cocoid")
    assert rows["image_id"] == ["7", "9"]
    assert rows["captions"] == [["one", "three"], ["two"]]
    assert rows[0]["image"]["bytes"]  # inline images stay encoded until preprocessing


def test_caption_lists_and_strings_both_work():
    table = Dataset.from_dict({"image": ["a.jpg", "b.jpg"], "captions": [["x", "y"], ["z"]]})
    rows = to_image_rows(table, "image", "captions", image_root="/data")
    assert rows["captions"] == [["x", "y"], ["z"]]
    assert rows[1]["image"]["path"] == os.path.join("/data", "b.jpg")


def test_wrong_column_names_list_the_real_ones():
    table = Dataset.from_dict({"image": ["a.jpg"], "sentences": ["x"]})
    with pytest.raises(DataSourceError, match=r"--caption_column 'captions'.*\['image', 'sentences'\]"):
        to_image_rows(table, "image", "captions", image_root="/data")


def test_string_image_column_without_root_is_a_clear_error():
    table = Dataset.from_dict({"image": ["a.jpg"], "captions": ["x"]})
    with pytest.raises(DataSourceError, match="--image_root"):
        to_image_rows(table, "image", "captions")


def test_imagefolder_with_metadata(tmp_path):
    folder = tmp_path / "folder" / "train"
    folder.mkdir(parents=True)
    with open(folder / "metadata.jsonl", "w") as f:
        for i in range(3):
            PIL.Image.new("RGB", (10, 10), (i * 80, 0, 0)).save(folder / f"{i}.png")
            f.write(json.dumps({"file_name": f"{i}.png", "captions": [f"red {i}", f"shade {i}"]}) + "\n")
    rows = load_hub(
        "imagefolder", "train", "image", "captions", data_dir=str(tmp_path / "folder"), cache_dir=str(tmp_path / "c")
    )
    assert len(rows) == 3 and sorted(rows["captions"])[0] == ["red 0", "shade 0"]


def test_karpathy_split_joins_restval_to_train(tmp_path):
    (tmp_path / "val2014").mkdir()
    images = [
        {
            "filepath": "val2014",
            "filename": f"{name}.jpg",
            "split": split,
            "cocoid": i,
            "sentences": [{"raw": f"c {i}"}],
        }
        for i, (name, split) in enumerate([("a", "train"), ("b", "restval"), ("c", "val"), ("d", "test")])
    ]
    split_file = tmp_path / "dataset_coco.json"
    split_file.write_text(json.dumps({"images": images}))
    cache = str(tmp_path / "cache")
    assert load_karpathy(str(split_file), str(tmp_path), "train", cache)["image_id"] == ["0", "1"]
    assert load_karpathy(str(split_file), str(tmp_path), "validation", cache)["image_id"] == ["2"]
    assert load_karpathy(str(split_file), str(tmp_path), "test", cache)["captions"] == [["c 3"]]
