"""Bad data in every form a real folder holds it: each case is either a clear error before training that
names the file or row (and the fix), or a counted skip under `--bad_images skip`; nothing crashes mid-epoch."""

import io
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import PIL.Image
import pytest
import skimage.data
from datasets import Dataset
from transformers import AutoImageProcessor, AutoTokenizer

import run_captioning
from vitgpt2.data.coco_json import captions_file, write_captions_file
from vitgpt2.data.errors import BadImageError, DataSourceError
from vitgpt2.data.preprocessing import preprocess
from vitgpt2.data.sources import coco_left_out, load_coco, load_karpathy, to_image_rows
from vitgpt2.remote_code.images import ImageLoadError, load_rgb

SKIP_HINT = "--bad_images skip"


@pytest.fixture(scope="module")
def processors(tiny_models):
    encoder, decoder = tiny_models
    return AutoImageProcessor.from_pretrained(encoder), AutoTokenizer.from_pretrained(decoder)


def _encoded(image: PIL.Image.Image, **save_kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, **save_kwargs)
    return buffer.getvalue()


def _noise(size=(64, 48)) -> PIL.Image.Image:
    return PIL.Image.effect_noise(size, 60).convert("RGB")


def _sixteen_bit() -> PIL.Image.Image:
    return PIL.Image.fromarray(np.linspace(0, 65535, 12 * 10).reshape(10, 12).astype(np.uint16))


def _palette_with_transparency() -> PIL.Image.Image:
    image = PIL.Image.new("P", (12, 10), 1)
    image.putpalette([0, 0, 0, 200, 30, 30] + [0] * 762)
    image.info["transparency"] = 0
    return image


# Images COCO and real folders hold that must be used, not skipped: (file name, encoded bytes).
READABLE = {
    "grayscale.jpg": lambda: _encoded(_noise().convert("L"), format="JPEG"),
    "cmyk.jpg": lambda: _encoded(PIL.Image.new("CMYK", (20, 16), (0, 255, 255, 0)), format="JPEG"),
    "rgba.png": lambda: _encoded(PIL.Image.new("RGBA", (20, 16), (255, 0, 0, 128)), format="PNG"),
    "palette.png": lambda: _encoded(_palette_with_transparency(), format="PNG"),
    "sixteen_bit.png": lambda: _encoded(_sixteen_bit(), format="PNG"),
    "one_pixel.png": lambda: _encoded(PIL.Image.new("RGB", (1, 1), (9, 99, 199)), format="PNG"),
}

# Files that cannot be decoded: (bytes, or None for a file that is not there) and the reason in the message.
UNREADABLE = {
    "corrupt.jpg": (lambda: b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4, "not a readable image"),
    "truncated.jpg": (lambda: _encoded(_noise((256, 256)), format="JPEG")[:3000], "truncated"),
    "missing.jpg": (lambda: None, "not found"),
    "zero_bytes.jpg": (lambda: b"", "empty"),
    "text.png": (lambda: b"this is not a picture", "not a readable image"),
    "bomb.png": (lambda: _encoded(PIL.Image.new("RGB", (100, 100)), format="PNG"), "decompression-bomb"),
}


@pytest.fixture
def small_bomb_limit(monkeypatch):
    """PIL refuses images over 2 x MAX_IMAGE_PIXELS: 10,000 pixels is then a bomb, 2,000 is not."""
    monkeypatch.setattr(PIL.Image, "MAX_IMAGE_PIXELS", 1000)


def _write(folder, name: str, data: bytes | None) -> str:
    path = os.path.join(folder, name)
    if data is not None:
        with open(path, "wb") as f:
            f.write(data)
    return path


# --- images ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", READABLE)
def test_unusual_but_valid_images_are_used(source_rows, name, processors, tmp_path):
    image_processor, tokenizer = processors
    path = _write(tmp_path, name, READABLE[name]())
    processed = preprocess(source_rows([path]), image_processor, tokenizer)  # default policy: error
    assert processed.features["pixel_values"].dtype == "uint8"
    pixels = np.asarray(processed.with_format("numpy")["pixel_values"])
    assert pixels.shape == (1, 3, 32, 32) and pixels.max() > 0  # decoded, not the blank left for a skip


@pytest.mark.parametrize("name", UNREADABLE)
def test_unreadable_image_stops_before_training_naming_the_file(
    source_rows, name, processors, tmp_path, small_bomb_limit
):
    image_processor, tokenizer = processors
    make, reason = UNREADABLE[name]
    good = _write(tmp_path, "good.png", READABLE["one_pixel.png"]())
    rows = source_rows([good, _write(tmp_path, name, make())])
    with pytest.raises(BadImageError, match=rf"image 1 \({re.escape(name)}\).*{reason}.*{SKIP_HINT}"):
        preprocess(rows, image_processor, tokenizer)


@pytest.mark.parametrize("name", UNREADABLE)
def test_unreadable_image_is_counted_and_skipped(source_rows, name, processors, tmp_path, small_bomb_limit, caplog):
    image_processor, tokenizer = processors
    make, reason = UNREADABLE[name]
    good = _write(tmp_path, "good.png", READABLE["one_pixel.png"]())
    rows = source_rows([good, _write(tmp_path, name, make()), good])
    processed = preprocess(rows, image_processor, tokenizer, bad_images="skip", desc="train")
    assert processed["image_id"] == ["0", "2"]
    summaries = [r.getMessage() for r in caplog.records if "left out" in r.getMessage()]
    assert len(summaries) == 1 and "\n" not in summaries[0]
    assert re.match(
        rf"train: left out 1 of 3 images \(1 unreadable, 0 without captions\); first: image 1 \({name}\)", summaries[0]
    )
    assert reason in summaries[0]


def test_decompression_bomb_is_an_image_load_error_not_a_crash(tmp_path, small_bomb_limit):
    # DecompressionBombError is not an OSError: uncaught it would end a run with PIL's own traceback
    path = _write(tmp_path, "huge.png", UNREADABLE["bomb.png"][0]())
    with pytest.raises(ImageLoadError, match=r"huge.png.*MAX_IMAGE_PIXELS"):
        load_rgb(path)
    with pytest.raises(ImageLoadError, match="<bytes>.*decompression-bomb"):
        load_rgb(open(path, "rb").read())


def test_no_image_in_a_row_is_an_image_load_error():
    for empty in (None, {"bytes": None, "path": None}):
        with pytest.raises(ImageLoadError, match="no image"):
            load_rgb(empty)


def test_a_split_where_nothing_is_usable_stops_even_when_skipping(source_rows, processors, tmp_path):
    image_processor, tokenizer = processors
    rows = source_rows([_write(tmp_path, "a.jpg", b""), str(tmp_path / "b.jpg")])
    with pytest.raises(BadImageError, match=r"no usable image: .*left out 2 of 2 images \(2 unreadable"):
        preprocess(rows, image_processor, tokenizer, bad_images="skip")


def test_an_empty_split_is_a_clear_error(source_rows, processors):
    image_processor, tokenizer = processors
    with pytest.raises(DataSourceError, match="train: the dataset has no images"):
        preprocess(source_rows([]), image_processor, tokenizer, desc="train")


# --- captions -------------------------------------------------------------------------------------------


def _write_coco(root, images: list[dict], annotations: list[dict], raw: bytes | None = None) -> str:
    """A COCO 2017 folder whose train annotations are `images`/`annotations` (or the bytes `raw`)."""
    for folder in ("annotations", "train2017", "val2017"):
        os.makedirs(os.path.join(root, folder), exist_ok=True)
    if raw is None:
        write_captions_file(captions_file(root, "train2017"), images, annotations)
    else:
        with open(captions_file(root, "train2017"), "wb") as f:
            f.write(raw)
    return str(root)


def _caption_set(tmp_path, captions_of: dict[int, list]) -> str:
    """COCO folder of readable images, image i holding the captions `captions_of[i]`."""
    root = tmp_path / "coco"
    images, annotations = [], []
    for image_id, captions in captions_of.items():
        images.append({"id": image_id, "file_name": f"{image_id}.png"})
        annotations += [{"id": len(annotations), "image_id": image_id, "caption": c} for c in captions]
    _write_coco(root, images, annotations)
    for image in images:
        _write(root / "train2017", image["file_name"], READABLE["one_pixel.png"]())
    return str(root)


NON_ASCII = [
    "Ein Hund läuft über die Straße",
    "一只狗在草地上奔跑",
    "кошка на диване",
    "café 🐶 naïve",
    "قطة على الأريكة",
]


def test_captions_are_cleaned_and_images_without_any_are_counted(processors, tmp_path, caplog):
    image_processor, tokenizer = processors
    root = _caption_set(
        tmp_path, {1: ["  a red  circle\n"], 2: [], 3: ["", "   ", "\t\n"], 4: [None, "a blue square"]}
    )
    rows = load_coco(root, "train", cache_dir=str(tmp_path / "cache"))
    processed = preprocess(rows, image_processor, tokenizer, desc="train")  # not an error: nothing to learn from
    assert processed["image_id"] == ["1", "4"]
    assert processed["captions"] == [["a red circle"], ["a blue square"]]
    assert "left out 2 of 4 images (0 unreadable, 2 without captions)" in caplog.text


def test_a_thousand_word_caption_is_truncated_but_still_ends_with_eos(processors, tmp_path):
    image_processor, tokenizer = processors
    long_caption = " ".join(["a red circle on top"] * 200)
    assert len(long_caption.split()) == 1000
    root = _caption_set(tmp_path, {1: [long_caption, "a red circle"]})
    processed = preprocess(load_coco(root, "train", str(tmp_path / "cache")), image_processor, tokenizer, 24)
    long_ids, short_ids = processed[0]["caption_ids"]
    assert len(long_ids) == 24 and long_ids[-1] == tokenizer.eos_token_id
    assert short_ids[-1] == tokenizer.eos_token_id and len(short_ids) < 24
    assert processed[0]["captions"][0] == long_caption  # the reference for scoring stays whole


def test_non_ascii_captions_survive_loading_and_tokenization(processors, tmp_path):
    image_processor, tokenizer = processors
    root = _caption_set(tmp_path, {1: NON_ASCII})
    processed = preprocess(load_coco(root, "train", str(tmp_path / "cache")), image_processor, tokenizer, 256)
    assert processed[0]["captions"] == NON_ASCII
    decoded = [tokenizer.decode(ids[:-1]) for ids in processed[0]["caption_ids"]]
    assert decoded == NON_ASCII


def test_annotation_file_with_a_byte_order_mark_loads(tmp_path):
    images, annotations = [{"id": 1, "file_name": "1.jpg"}], [{"image_id": 1, "caption": NON_ASCII[0]}]
    raw = b"\xef\xbb\xbf" + json.dumps({"images": images, "annotations": annotations}).encode()
    rows = load_coco(_write_coco(tmp_path / "coco", [], [], raw), "train", str(tmp_path / "cache"))
    assert rows["captions"] == [[NON_ASCII[0]]]


# --- annotations ----------------------------------------------------------------------------------------


def test_duplicate_image_ids_are_merged_and_counted(tmp_path, caplog):
    images = [{"id": 1, "file_name": "1.jpg"}, {"id": 2, "file_name": "2.jpg"}, {"id": 1, "file_name": "1b.jpg"}]
    annotations = [
        {"image_id": 1, "caption": "one"},
        {"image_id": 2, "caption": "two"},
        {"image_id": 1, "caption": "uno"},
    ]
    root = _write_coco(tmp_path / "coco", images, annotations)
    rows = load_coco(root, "train", str(tmp_path / "cache"))
    assert rows["image_id"] == ["1", "2"] and rows["file_name"] == ["1.jpg", "2.jpg"]
    assert rows["captions"] == [["one", "uno"], ["two"]]
    assert coco_left_out(captions_file(root, "train2017")) == {"annotations_left_out": 0, "repeated_images": 1}
    assert "1 image ids repeat in" in caplog.text and "the first entry is used (e.g. 1)" in caplog.text


def test_annotations_for_images_that_are_not_listed_are_counted(tmp_path, caplog):
    images = [{"id": 1, "file_name": "1.jpg"}]
    annotations = [{"image_id": 1, "caption": "one"}, {"image_id": 7, "caption": "x"}, {"image_id": 8, "caption": "y"}]
    root = _write_coco(tmp_path / "coco", images, annotations)
    rows = load_coco(root, "train", str(tmp_path / "cache"))
    assert rows["image_id"] == ["1"] and rows["captions"] == [["one"]]
    assert coco_left_out(captions_file(root, "train2017")) == {"annotations_left_out": 2, "repeated_images": 0}
    assert re.search(r"2 image ids in \S+captions_train2017.json's annotations have no images entry", caplog.text)


def test_ids_written_as_strings_still_match(tmp_path):
    images = [{"id": 42, "file_name": "42.jpg"}]
    rows = load_coco(_write_coco(tmp_path / "coco", images, [{"image_id": "42", "caption": "x"}]), "train")
    assert rows["captions"] == [["x"]]


def test_listed_images_missing_on_disk_stop_or_are_skipped(processors, tmp_path):
    image_processor, tokenizer = processors
    root = _caption_set(tmp_path, {1: ["a"], 2: ["b"]})
    os.remove(os.path.join(root, "train2017", "2.png"))
    rows = load_coco(root, "train", str(tmp_path / "cache"))
    with pytest.raises(BadImageError, match=r"image 2 \(2.png\).*not found.*train2017/2.png"):
        preprocess(rows, image_processor, tokenizer)
    assert preprocess(rows, image_processor, tokenizer, bad_images="skip")["image_id"] == ["1"]


@pytest.mark.parametrize(
    "raw, message",
    [
        (b"{not json", "is not valid JSON"),
        (b'{"images": [], "annotations": {"1": "x"}}', "has no 'annotations' list"),
        (b"[1, 2]", "has no 'images' list"),
        (
            b'{"images": [{"id": 1, "file_name": "a.jpg"}, {"id": 2}], "annotations": []}',
            r"images\[1\] lacks \['file_name'\]",
        ),
        (b'{"images": [], "annotations": [{"image_id": 1, "text": "x"}]}', r"annotations\[0\] lacks \['caption'\]"),
        (b'{"images": [], "annotations": ["a caption"]}', r"annotations\[0\] lacks \['image_id', 'caption'\]"),
        ('{"images": [], "annotations": [], "info": "caf\u00e9"}'.encode("latin-1"), "not UTF-8 text"),
    ],
    ids=[
        "syntax",
        "annotations-not-a-list",
        "not-an-object",
        "image-lacks-file",
        "no-caption",
        "bare-string",
        "latin1",
    ],
)
def test_malformed_annotation_files_name_the_file_and_entry(tmp_path, raw, message):
    root = _write_coco(tmp_path / "coco", [], [], raw)
    with pytest.raises(DataSourceError, match=rf"captions_train2017.json.*{message}|{message}.*captions_train2017"):
        load_coco(root, "train", cache_dir=str(tmp_path / "cache"))


def test_karpathy_entry_without_a_file_name_is_named(tmp_path):
    split_file = tmp_path / "dataset_coco.json"
    split_file.write_text(json.dumps({"images": [{"filepath": "val2014", "split": "train", "sentences": []}]}))
    with pytest.raises(DataSourceError, match=r"dataset_coco.json: images\[0\] lacks \['filename'\]"):
        load_karpathy(str(split_file), str(tmp_path), "train", str(tmp_path / "cache"))


@pytest.mark.parametrize(
    "caption, shown",
    [
        (42, "int 42"),
        (["a dog", "on grass"], "list ['a dog', 'on grass']"),
        ({"text": "a dog"}, "dict {'text': 'a dog'}"),
    ],
)
def test_captions_that_are_not_text_are_errors_naming_the_image(tmp_path, caption, shown):
    images = [{"id": 1, "file_name": "1.jpg"}, {"id": 2, "file_name": "2.jpg"}]
    annotations = [{"image_id": 1, "caption": "a cat"}, {"image_id": 2, "caption": caption}]
    with pytest.raises(
        DataSourceError, match=rf"captions_train2017.json, image 2: a caption must be text, not {re.escape(shown)}"
    ):
        load_coco(_write_coco(tmp_path / "coco", images, annotations), "train", str(tmp_path / "cache"))


def test_null_and_empty_captions_are_left_out_and_counted_in_all_results(monkeypatch, tiny_models, tmp_path):
    images = [{"id": 1, "file_name": "1.jpg"}]
    annotations = [
        {"image_id": 1, "caption": None},
        {"image_id": 1, "caption": "a cat"},
        {"image_id": 1, "caption": " "},
    ]
    rows = load_coco(_write_coco(tmp_path / "coco", images, annotations), "train", str(tmp_path / "cache"))
    assert rows["captions"] == [["a cat"]] and rows["captions_left_out"] == [2]

    root = _caption_set(tmp_path / "set", {1: ["a red circle", None], 2: ["two dogs", "  ", None], 3: ["a cat"]})
    output = tmp_path / "out"
    results = _main(monkeypatch, _train_argv(root, tiny_models, output))
    assert results["train_captions_left_out"] == 3 and results["train_pairs"] == 3
    assert json.loads((output / "all_results.json").read_text())["train_captions_left_out"] == 3


def test_captions_cut_at_max_target_length_are_counted_in_all_results_and_logged(
    monkeypatch, tiny_models, tmp_path, caplog
):
    long = "a double-decker bus that's parked outside St. Paul's, its 2 doors open and a driver's cap on the dash"
    root = _caption_set(tmp_path / "set", {1: ["a red bus", long], 2: [long, "two dogs"], 3: ["a cat"]})
    shutil.copytree(os.path.join(root, "train2017"), os.path.join(root, "val2017"), dirs_exist_ok=True)
    write_captions_file(captions_file(root, "val2017"), [{"id": 1, "file_name": "1.png"}], [
        {"id": 0, "image_id": 1, "caption": long}, {"id": 1, "image_id": 1, "caption": f"  {long}, again  "},
        {"id": 2, "image_id": 1, "caption": "a bus"},
    ])  # fmt: skip
    output = tmp_path / "out"
    argv = [*_train_argv(root, tiny_models, output), "--do_eval", "--max_target_length", "12"]
    results = _main(monkeypatch, argv)
    assert results["train_captions_cut"] == 2 and results["train_pairs"] == 5
    assert results["eval_captions_cut"] == 2
    written = json.loads((output / "all_results.json").read_text())
    assert written["train_captions_cut"] == 2 and written["eval_captions_cut"] == 2
    assert "train: 2 captions are longer than --max_target_length (12 tokens, EOS included)" in caplog.text
    assert "eval: 2 captions are longer" in caplog.text


def test_hub_captions_that_are_not_text_name_the_row():
    rows = Dataset.from_dict({"image": ["a.jpg", "b.jpg"], "text": [[1.5], [3.5]]})  # a column of numbers
    with pytest.raises(DataSourceError, match=r"the dataset, row 0: a caption must be text, not float 1.5"):
        to_image_rows(rows, "image", "text", image_root="/images")


def test_a_karpathy_split_typo_is_an_error_naming_the_image(tmp_path):
    split_file = tmp_path / "dataset_coco.json"
    sentences = [{"raw": "a dog"}]
    images = [
        {"filename": "a.jpg", "filepath": "val2014", "split": "train", "sentences": sentences, "cocoid": 1},
        {"filename": "b.jpg", "filepath": "val2014", "split": "trian", "sentences": sentences, "cocoid": 2},
    ]
    split_file.write_text(json.dumps({"images": images}))
    with pytest.raises(
        DataSourceError,
        match=r"1 images have a split that is none of \['restval', 'test', 'train', 'val'\], e.g. b.jpg \('trian'\)",
    ):
        load_karpathy(str(split_file), str(tmp_path), "train", str(tmp_path / "cache"))


@pytest.mark.parametrize(
    "columns, message",
    [
        ({"image_column": "img"}, r"--image_column 'img' is not a column .* \['image', 'text', 'cocoid'\]"),
        ({"caption_column": "captions"}, r"--caption_column 'captions' is not a column"),
        ({"image_id_column": "id"}, r"--image_id_column 'id' is not a column"),
    ],
)
def test_wrong_column_names_list_the_real_ones(columns, message):
    table = Dataset.from_dict({"image": ["a.jpg"], "text": ["x"], "cocoid": [1]})
    names = {"image_column": "image", "caption_column": "text", **columns}
    with pytest.raises(DataSourceError, match=message):
        to_image_rows(table, image_root="/data", **names)


# --- end to end: a COCO folder the project never saw, through run_captioning.main ------------------------

# Mixed into the training split; the first bad one in file order is what the default policy names.
MIXED_IN = {
    "000000900001.jpg": ("truncated.jpg", True),
    "000000900002.jpg": ("cmyk.jpg", True),
    "000000900003.jpg": ("zero_bytes.jpg", True),
    "000000900004.jpg": ("grayscale.jpg", True),
    "000000900005.jpg": ("missing.jpg", True),
    "000000900006.png": ("sixteen_bit.png", False),  # a usable image that has no captions
}


def _unseen_coco(synthetic_coco: str, root) -> str:
    """A copy of the synthetic set with bad, odd and uncaptioned files mixed into train."""
    root = str(root)
    shutil.copytree(synthetic_coco, root)
    annotation_file = os.path.join(root, "annotations", "captions_train2017.json")
    with open(annotation_file) as f:
        data = json.load(f)
    for offset, (file_name, (kind, captioned)) in enumerate(MIXED_IN.items()):
        image_id = 900001 + offset
        make = READABLE[kind] if kind in READABLE else UNREADABLE[kind][0]
        _write(os.path.join(root, "train2017"), file_name, make())
        data["images"].insert(3 * offset + 1, {"id": image_id, "file_name": file_name})
        if captioned:
            data["annotations"].append({"id": image_id, "image_id": image_id, "caption": "a red circle on the left"})
    data["annotations"].append({"id": 1, "image_id": 424242, "caption": "an annotation whose image is not listed"})
    with open(annotation_file, "w") as f:
        json.dump(data, f)
    return root


def _main(monkeypatch, argv: list[str]) -> dict:
    monkeypatch.setattr(sys, "argv", ["run_captioning.py", *argv])
    return run_captioning.main()


def _train_argv(data: str, tiny_models, output) -> list[str]:
    encoder, decoder = tiny_models
    return [
        "--encoder_model_name_or_path", encoder, "--decoder_model_name_or_path", decoder,
        "--coco_dir", data, "--output_dir", str(output), "--do_train",
        "--num_train_epochs", "1", "--per_device_train_batch_size", "16",
        "--metrics", "bleu", "--report_to", "none", "--save_strategy", "no",
    ]  # fmt: skip


def test_unseen_folder_with_bad_files_end_to_end(monkeypatch, synthetic_coco, tiny_models, tmp_path, caplog):
    data = _unseen_coco(synthetic_coco, tmp_path / "unseen")
    stopped = tmp_path / "stopped"
    with pytest.raises(BadImageError, match=rf"000000900001.jpg\).*truncated.*{SKIP_HINT}"):
        _main(monkeypatch, _train_argv(data, tiny_models, stopped))
    assert not stopped.exists() or not any(stopped.iterdir()), "nothing may be trained or saved"
    assert "1 image ids in" in caplog.text and "have no images entry: left out (e.g. 424242)" in caplog.text

    caplog.clear()
    output = tmp_path / "skipped"
    results = _main(monkeypatch, [*_train_argv(data, tiny_models, output), "--bad_images", "skip"])
    # 40 synthetic images + the CMYK and grayscale ones; 3 unreadable and 1 uncaptioned left out, each counted
    assert results["train_samples"] == 42 and results["train_pairs"] == 40 * 5 + 2
    assert results["train_images_left_out"] == 4  # an annotation whose image id has no images entry is no row...
    assert results["train_annotations_left_out"] == 1  # ...but is counted, every run (the rows come from the cache)
    assert "1 image ids in" in caplog.text
    written = json.loads((output / "all_results.json").read_text())
    assert written["train_images_left_out"] == 4 and written["train_annotations_left_out"] == 1
    assert "preprocessing train images: left out 4 of 46 images (3 unreadable, 1 without captions)" in caplog.text
    assert (output / "model.safetensors").is_file()


def test_the_cache_notices_image_files_that_change_between_runs(monkeypatch, synthetic_coco, tiny_models, tmp_path):
    """The same command, run again after an image file was repaired or damaged, sees the file as it is now."""
    data = str(tmp_path / "coco")
    shutil.copytree(synthetic_coco, data)
    first = os.path.join(data, "train2017", sorted(os.listdir(os.path.join(data, "train2017")))[0])
    photo = _encoded(PIL.Image.fromarray(skimage.data.chelsea()), format="JPEG")  # a real photograph
    argv = [*_train_argv(data, tiny_models, tmp_path / "out"), "--max_train_samples", "8"]

    _write(os.path.dirname(first), os.path.basename(first), photo[:5000])
    with pytest.raises(BadImageError, match=re.escape(os.path.basename(first))):
        _main(monkeypatch, argv)
    _write(os.path.dirname(first), os.path.basename(first), photo)  # repaired: the same command now trains
    assert _main(monkeypatch, argv)["train_samples"] == 8
    _write(os.path.dirname(first), os.path.basename(first), photo[:5000])  # damaged after a good run
    with pytest.raises(BadImageError, match=re.escape(os.path.basename(first))):
        _main(monkeypatch, argv)


def test_an_image_between_one_and_two_times_the_bomb_limit_is_listed_too(
    source_rows, processors, tmp_path, small_bomb_limit
):
    image_processor, tokenizer = processors
    path = _write(tmp_path, "large.png", _encoded(PIL.Image.new("RGB", (50, 30)), format="PNG"))  # 1,500 px: 1.5x
    with pytest.raises(BadImageError, match=r"large.png.*decompression-bomb"):
        preprocess(source_rows([path]), image_processor, tokenizer)


def test_zero_epochs_is_an_error_not_an_untrained_model(monkeypatch, synthetic_coco, tiny_models, tmp_path):
    output = tmp_path / "out"
    with pytest.raises(ValueError, match="--num_train_epochs 0 trains nothing"):
        _main(monkeypatch, [*_train_argv(synthetic_coco, tiny_models, output), "--num_train_epochs", "0"])
    assert not (output / "model.safetensors").exists() and not (output / "README.md").exists()


def _script(argv: list[str], **env) -> subprocess.CompletedProcess:
    script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "run_captioning.py")
    return subprocess.run(
        [sys.executable, script, *argv], capture_output=True, text=True, env={**os.environ, **env}, timeout=300
    )


def test_expected_errors_print_one_clean_paragraph_and_a_variable_brings_the_traceback(
    synthetic_coco, tiny_models, tmp_path
):
    data = str(tmp_path / "coco")
    shutil.copytree(synthetic_coco, data)
    first = os.path.join(data, "train2017", sorted(os.listdir(os.path.join(data, "train2017")))[0])
    _write(os.path.dirname(first), os.path.basename(first), b"not an image")
    argv = [*_train_argv(data, tiny_models, tmp_path / "out"), "--max_train_samples", "4"]
    result = _script(argv)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert re.search(rf"run_captioning.py: error: .*{re.escape(os.path.basename(first))}.*{SKIP_HINT}", result.stderr)
    assert "Traceback" in _script(argv, VITGPT2_TRACEBACK="1").stderr
    bad_argument = _script([*argv, "--captions_per_image", "0"])
    assert bad_argument.returncode == 2 and "Traceback" not in bad_argument.stderr
    assert "run_captioning.py: error: --captions_per_image must be at least 1, not 0" in bad_argument.stderr


@pytest.mark.parametrize("part", ["encoder", "decoder"])
def test_a_folder_that_is_not_a_captioner_says_what_it_is(
    tiny_models, part, monkeypatch, synthetic_coco, tmp_path, capsys
):
    from vitgpt2.cli import main as cli
    from vitgpt2.model import NotACaptioner

    folder = tiny_models[0 if part == "encoder" else 1]
    kind = "vit" if part == "encoder" else "gpt2"
    photo = _write(tmp_path, "photo.png", READABLE["one_pixel.png"]())
    assert cli(["caption", photo, "--model", folder]) == 2
    error = capsys.readouterr().err
    assert f"holds a {kind} model" in error and "vision-encoder-decoder" in error and "Traceback" not in error
    argv = [*_train_argv(synthetic_coco, tiny_models, tmp_path / "out"), "--model_name_or_path", folder]
    with pytest.raises(NotACaptioner, match=f"holds a {kind} model.*--encoder_model_name_or_path"):
        _main(monkeypatch, argv)
