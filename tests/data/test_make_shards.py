import glob
import io
import json
import logging
import os

import datasets
import numpy as np
import PIL.Image
import pytest
import skimage.data

import vitgpt2.data.shards as shards
from vitgpt2.cli import main
from vitgpt2.data.coco_json import captions_file, write_captions_file
from vitgpt2.data.shards import caption_lines, sample_captions
from vitgpt2.data.sources import load_coco

# COCO-style captions as people and annotation tools write them: stray spaces and line breaks, apostrophes, hyphens,
# abbreviations, numbers, accents, a dash and an emoji.
PHOTOS = {
    "astronaut.jpg": [
        "An astronaut in a white space-suit poses with the U.S. flag.  ",
        "Eileen Collins's portrait\n, c. 1999",
    ],
    "chelsea.jpg": ["A tabby cat's face, close-up, looking left.", "the cat isn't amused: 2 ears, 1 nose"],
    "coffee.jpg": ["Café au lait — 250 ml, latte-art heart 🙂", " a cup of coffee on a saucer with a spoon"],
    "camera.jpg": ["A black-and-white photo of a man with a camera on a tripod."],
    "rocket.jpg": ["A Saturn V rocket on the launch pad at 6 p.m."],
    "small.jpg": ["A 100 x 80 crop of a cat's eye."],
    "broken.jpg": ["A photo that was cut off mid-download."],
    "no_captions.jpg": [],
}
EXIF_ROTATED_90 = 6  # a phone held upright: stored sideways, shown turned 90 degrees clockwise
PIXELS = {
    "small.jpg": lambda: skimage.data.chelsea()[100:180, 200:300],
    "broken.jpg": skimage.data.coffee,
    "no_captions.jpg": skimage.data.astronaut,
}


def photo(name: str) -> PIL.Image.Image:
    pixels = PIXELS.get(name) or getattr(skimage.data, os.path.splitext(name)[0])
    return PIL.Image.fromarray(pixels())


def write_photo(path: str, name: str) -> None:
    exif = PIL.Image.Exif()
    if name == "rocket.jpg":
        exif[shards.EXIF_ORIENTATION] = EXIF_ROTATED_90
    buffer = io.BytesIO()
    photo(name).save(buffer, "JPEG", quality=90, exif=exif)
    data = buffer.getvalue()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2] if name == "broken.jpg" else data)  # as an interrupted download leaves it


@pytest.fixture(scope="module")
def photo_coco(tmp_path_factory) -> str:
    """A COCO 2017 layout whose val2017/ holds real photos (one grayscale, one turned by EXIF, one truncated, one
    smaller than the resize, one without captions)."""
    root = str(tmp_path_factory.mktemp("photo_coco"))
    os.makedirs(os.path.join(root, "val2017"))
    os.makedirs(os.path.join(root, "train2017"))
    images, annotations = [], []
    for image_id, (name, captions) in enumerate(PHOTOS.items(), start=101):
        write_photo(os.path.join(root, "val2017", name), name)
        images.append({"id": image_id, "file_name": name})
        annotations += [{"id": len(annotations), "image_id": image_id, "caption": caption} for caption in captions]
    write_captions_file(captions_file(root, "val2017"), images, annotations)
    write_captions_file(captions_file(root, "train2017"), [], [])
    return root


def make_shards(*argv) -> int:
    return main(["make-shards", *map(str, argv)])


def read_shards(output_dir, split="train", decode=True) -> list[dict]:
    """The samples as training streams them: `datasets`' webdataset reader over the shards, in order."""
    files = sorted(glob.glob(os.path.join(output_dir, f"{split}-*.tar")))
    stream = datasets.load_dataset("webdataset", data_files=files, split="train", streaming=True)
    return list(stream if decode else stream.cast_column("jpg", datasets.Image(decode=False)))


def manifest(output_dir) -> dict:
    with open(os.path.join(output_dir, "shards.json"), encoding="utf-8") as f:
        return json.load(f)


def test_coco_shards_keep_every_image_caption_and_jpeg_byte(synthetic_coco, tmp_path):
    out = tmp_path / "shards"
    assert make_shards("--coco_dir", synthetic_coco, "--output_dir", out, "--samples_per_shard", 16) == 0

    assert sorted(os.listdir(out)) == ["shards.json", "train-000000.tar", "train-000001.tar", "train-000002.tar"]
    samples = read_shards(out, decode=False)
    rows = load_coco(synthetic_coco, "train", cache_dir=str(tmp_path / "cache"))
    assert [sample["__key__"] for sample in samples] == [f"{i:09d}" for i in range(40)]
    for sample, row in zip(samples, rows):
        assert sample_captions(sample["json"], sample["txt"]) == row["captions"]
        assert sample["txt"].splitlines() == row["captions"]
        assert sample["json"]["caption"] == row["captions"][0] and sample["json"]["key"] == sample["__key__"]
        assert (sample["json"]["image_id"], sample["json"]["file_name"]) == (row["image_id"], row["file_name"])
        with open(row["image"]["path"], "rb") as f:
            assert sample["jpg"]["bytes"] == f.read()  # an RGB JPEG without resize: the original bytes
        assert (sample["json"]["width"], sample["json"]["height"]) == (48, 48)

    split = manifest(out)["splits"]["train"]
    assert [shard["num_samples"] for shard in split["shards"]] == [16, 16, 8]
    assert split["num_samples"] == 40 and split["num_shards"] == 3 and split["complete"] is True
    assert split["settings"] == {"samples_per_shard": 16, "resize": None, "jpeg_quality": 90}
    assert split["source"] == {"coco_dir": os.path.abspath(synthetic_coco), "split": "train", "num_images": 40}


def test_workers_write_the_same_shards(synthetic_coco, tmp_path):
    written = {}
    for workers in (1, 2):
        out = tmp_path / f"workers{workers}"
        assert make_shards("--coco_dir", synthetic_coco, "--output_dir", out, "--samples_per_shard", 7,
                           "--resize", 32, "--num_workers", workers) == 0  # fmt: skip
        written[workers] = [(s["__key__"], s["jpg"]["bytes"], s["txt"]) for s in read_shards(out, decode=False)]
        assert manifest(out)["splits"]["train"]["complete"] is True
    assert len(written[2]) == 40 and written[2] == written[1]


def test_resized_photos_keep_captions_and_skip_the_unreadable(photo_coco, tmp_path, capsys):
    out = tmp_path / "shards"
    argv = ["--coco_dir", photo_coco, "--split", "val", "--output_dir", out, "--resize", 128, "--samples_per_shard", 3]
    assert make_shards(*argv) == 0

    samples = {sample["json"]["file_name"]: sample for sample in read_shards(out, "val")}
    expected_sizes = {
        "astronaut.jpg": (128, 128),
        "chelsea.jpg": (192, 128),  # 451 x 300: the shorter side to 128, the aspect ratio kept
        "coffee.jpg": (192, 128),
        "camera.jpg": (128, 128),
        "rocket.jpg": (128, 192),  # 640 x 427 stored, shown upright as 427 x 640 by its EXIF tag
        "small.jpg": (100, 80),  # never enlarged
    }
    assert {name: sample["jpg"].size for name, sample in samples.items()} == expected_sizes
    for name, sample in samples.items():
        assert (sample["json"]["width"], sample["json"]["height"]) == expected_sizes[name]
        assert sample["jpg"].mode == "RGB"
        assert sample["json"]["captions"] == [" ".join(caption.split()) for caption in PHOTOS[name]]
        assert sample_captions(None, sample["txt"]) == sample["json"]["captions"]
        original = PIL.ImageOps.exif_transpose(PIL.Image.open(os.path.join(photo_coco, "val2017", name)))
        reference = np.asarray(original.convert("RGB").resize(expected_sizes[name]), dtype=float)
        assert np.abs(np.asarray(sample["jpg"], dtype=float) - reference).mean() < 8  # same picture, same way up
    assert samples["coffee.jpg"]["json"]["captions"][0] == "Café au lait — 250 ml, latte-art heart 🙂"
    assert (
        samples["astronaut.jpg"]["txt"]
        == "An astronaut in a white space-suit poses with the U.S. flag.\nEileen Collins's portrait , c. 1999"
    )

    err = capsys.readouterr().err
    assert "1 unreadable images left out" in err and "broken.jpg" in err and "truncated" in err
    assert "1 images without captions left out" in err
    split = manifest(out)["splits"]["val"]
    assert [shard["num_samples"] for shard in split["shards"]] == [3, 3, 0]
    assert split["shards"][2]["file"] is None and not os.path.exists(out / "val-000002.tar")
    assert [bad["file_name"] for shard in split["shards"] for bad in shard["bad_images"]] == ["broken.jpg"]
    assert split["shards"][2]["without_captions"] == 1 and split["num_samples"] == 6


def test_without_resize_only_upright_rgb_jpegs_pass_through(photo_coco, tmp_path):
    out = tmp_path / "shards"
    assert make_shards("--coco_dir", photo_coco, "--split", "val", "--output_dir", out) == 0

    samples = {sample["json"]["file_name"]: sample for sample in read_shards(out, "val", decode=False)}
    for name, sample in samples.items():
        with open(os.path.join(photo_coco, "val2017", name), "rb") as f:
            passed_through = sample["jpg"]["bytes"] == f.read()
        assert passed_through == (name not in ("camera.jpg", "rocket.jpg")), name
        decoded = PIL.Image.open(io.BytesIO(sample["jpg"]["bytes"]))
        assert decoded.mode == "RGB" and decoded.getexif().get(shards.EXIF_ORIENTATION, 1) == 1
        assert decoded.size == (sample["json"]["width"], sample["json"]["height"])
    assert samples["rocket.jpg"]["json"]["width"] == 427 and samples["rocket.jpg"]["json"]["height"] == 640


def test_rerun_after_a_kill_rewrites_only_the_unfinished_shard(synthetic_coco, tmp_path, monkeypatch, caplog):
    out = tmp_path / "shards"
    argv = ["--coco_dir", synthetic_coco, "--output_dir", out, "--samples_per_shard", 16]
    encode, calls = shards.jpeg_sample, []

    def killed_at_image_36(image, settings):
        calls.append(image)
        if len(calls) == 36:
            raise KeyboardInterrupt  # as Ctrl-C or a kill stops the run, halfway through the third shard
        return encode(image, settings)

    monkeypatch.setattr(shards, "jpeg_sample", killed_at_image_36)
    with pytest.raises(KeyboardInterrupt):
        make_shards(*argv)
    monkeypatch.setattr(shards, "jpeg_sample", encode)
    assert os.path.getsize(out / "train-000002.tar.partial") > 0
    assert not os.path.exists(out / "train-000002.tar")  # no cut-short shard under a finished shard's name
    assert manifest(out)["splits"]["train"]["complete"] is False
    finished = {name: os.stat(out / name).st_mtime_ns for name in ("train-000000.tar", "train-000001.tar")}

    with caplog.at_level(logging.INFO, logger="vitgpt2.data.shards"):
        assert make_shards(*argv) == 0
    assert "2 of 3 train shards already complete" in caplog.text
    assert {name: os.stat(out / name).st_mtime_ns for name in finished} == finished
    assert not os.path.exists(out / "train-000002.tar.partial")
    assert [sample["__key__"] for sample in read_shards(out)] == [f"{i:09d}" for i in range(40)]
    assert manifest(out)["splits"]["train"]["complete"] is True

    # other settings: every shard is rewritten, and those the new layout has no place for are removed
    assert make_shards(*argv[:-1], 40) == 0
    assert sorted(glob.glob(str(out / "train-*"))) == [str(out / "train-000000.tar")]
    assert len(read_shards(out)) == 40


def test_imagefolder_pngs_are_reencoded_as_jpeg(tmp_path):
    folder = tmp_path / "folder"
    folder.mkdir()
    captions = {
        "astronaut.png": ["An astronaut's portrait.", "Portrait officiel de la NASA"],
        "coffee.png": ["Un café"],
    }
    with open(folder / "metadata.jsonl", "w", encoding="utf-8") as f:
        for name, texts in captions.items():
            photo(name).convert("RGBA").save(folder / name)
            f.write(json.dumps({"file_name": name, "captions": texts}, ensure_ascii=False) + "\n")
    out = tmp_path / "shards"
    argv = ["--image_folder", folder, "--output_dir", out, "--jpeg_quality", 80, "--cache_dir", tmp_path / "cache"]
    assert make_shards(*argv) == 0

    samples = read_shards(out, decode=False)
    assert sorted(sample["json"]["file_name"] for sample in samples) == sorted(captions)
    for sample in samples:
        assert sample["json"]["captions"] == captions[sample["json"]["file_name"]]
        decoded = PIL.Image.open(io.BytesIO(sample["jpg"]["bytes"]))
        assert decoded.format == "JPEG" and decoded.mode == "RGB"
    assert manifest(out)["splits"]["train"]["settings"]["jpeg_quality"] == 80


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--coco_dir", "{tmp}/nowhere"], "--coco_dir {tmp}/nowhere: no such file or folder"),
        (["--coco_dir", "{coco}", "--samples_per_shard", "0"], "--samples_per_shard must be at least 1, not 0"),
        (["--coco_dir", "{coco}", "--split", "test"], "--split 'test' is not a split of this source"),
        (["--coco_dir", "{coco}", "--image_folder", "{coco}"], "give exactly one data source"),
        (["--coco_dir", "{coco}", "--resize", "0"], "--resize must be at least 1 pixel"),
    ],
)
def test_bad_arguments_are_named_without_a_traceback(synthetic_coco, tmp_path, capsys, argv, message):
    def fill(text):
        return text.format(tmp=tmp_path, coco=synthetic_coco)

    assert make_shards(*map(fill, argv), "--output_dir", tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert f"vitgpt2 make-shards: error: {fill(message)}" in err and "Traceback" not in err
    assert not glob.glob(str(tmp_path / "out" / "*.tar"))


def test_sample_captions_prefer_the_json_list_then_its_caption_then_the_text():
    text = "  A dog's nose, close-up \n\n2 dogs on a beach\r\n"
    assert sample_captions({"captions": ["Un chien", " a dog "]}, text) == ["Un chien", "a dog"]
    assert sample_captions({"caption": "Ein Hund läuft "}, text) == ["Ein Hund läuft"]
    assert sample_captions({"captions": []}, text.encode("utf-8")) == ["A dog's nose, close-up", "2 dogs on a beach"]
    assert sample_captions(None, None) == []


def test_caption_lines_read_back_as_the_same_captions():
    captions = ["A cat\non a mat", "line\u2028separated", "   ", "tab\tkept, 3 cats"]
    lines = caption_lines(captions)
    assert lines == ["A cat on a mat", "line separated", "tab\tkept, 3 cats"]
    assert sample_captions(None, "\n".join(lines)) == lines
