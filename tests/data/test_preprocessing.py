import numpy as np
import PIL.Image
import pytest
from transformers import AutoImageProcessor, AutoTokenizer

from vitgpt2.data.preprocessing import BadImageError, preprocess, tokenize_captions
from vitgpt2.data.sources import load_coco


@pytest.fixture(scope="module")
def processors(tiny_models):
    encoder, decoder = tiny_models
    return AutoImageProcessor.from_pretrained(encoder), AutoTokenizer.from_pretrained(decoder)


def test_images_are_cached_as_uint8_at_the_encoder_size(synthetic_coco, processors, tmp_path):
    image_processor, tokenizer = processors
    rows = load_coco(synthetic_coco, "validation", cache_dir=str(tmp_path))
    processed = preprocess(rows, image_processor, tokenizer, max_target_length=32)
    assert len(processed) == 12
    assert processed.features["pixel_values"].dtype == "uint8"
    assert processed.features["pixel_values"].shape == (3, 32, 32)
    assert "image" not in processed.column_names
    first = processed.with_format("arrow")[0]["pixel_values"].combine_chunks().to_numpy(zero_copy_only=False)[0]
    assert first.dtype == np.uint8 and first.shape == (3, 32, 32)
    # the cached bytes per image are uint8: a quarter of what float32 pixel_values would take
    assert processed.data.nbytes / len(processed) < 3 * 32 * 32 * 4 / 2


def test_second_run_reuses_the_cache(synthetic_coco, processors, tmp_path):
    image_processor, tokenizer = processors
    rows = load_coco(synthetic_coco, "validation", cache_dir=str(tmp_path))
    first = preprocess(rows, image_processor, tokenizer)
    again = preprocess(rows, image_processor, tokenizer)
    assert first.cache_files and first._fingerprint == again._fingerprint
    assert first.cache_files[0]["filename"] == again.cache_files[0]["filename"]


def test_every_caption_ends_with_eos_even_when_cut_and_the_cut_ones_are_counted(processors):
    _, tokenizer = processors
    eos = tokenizer.eos_token_id
    fits = "A man's hat, e.g. a 1920s fedora — on the café's shelf"  # clitics, an abbreviation, unicode
    room = len(tokenizer(fits, add_special_tokens=False)["input_ids"]) + 1  # its tokens and EOS, exactly
    paragraph = " ".join(["a red-and-white double-decker bus"] * 1000)
    ids, cut = tokenize_captions(tokenizer, [fits, paragraph, fits + " ok", "  two dogs  "], max_target_length=room)
    assert all(caption[-1] == eos for caption in ids)
    assert [len(caption) for caption in ids[:3]] == [room] * 3 and eos not in ids[0][:-1]
    assert cut == 2  # the paragraph and the caption one word too long; the one that fits exactly is whole
    assert tokenize_captions(tokenizer, [], max_target_length=room) == ([], 0)


def test_the_cache_counts_each_images_cut_captions(source_rows, processors, tmp_path):
    image_processor, tokenizer = processors
    image = tmp_path / "photo.png"
    PIL.Image.new("RGB", (40, 40), "teal").save(image)
    long = "a tabby cat that's curled up asleep on a well-worn leather sofa next to two throw pillows"
    rows = source_rows([str(image), str(image)], [["a cat", long], [long, long, "a sofa"]])
    processed = preprocess(rows, image_processor, tokenizer, max_target_length=8)
    assert processed["captions_cut"] == [1, 2]
    assert processed["captions"][1] == [long, long, "a sofa"]  # the references the metrics read stay whole


def test_bad_images_stop_before_training_naming_the_file(source_rows, processors, tmp_path):
    image_processor, tokenizer = processors
    good = tmp_path / "good.jpg"
    PIL.Image.new("RGB", (40, 40)).save(good)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff garbage")
    rows = source_rows([str(good), str(broken)], [["a"], ["b"]])
    with pytest.raises(BadImageError, match=r"image 1 \(broken.jpg\).*--bad_images skip"):
        preprocess(rows, image_processor, tokenizer)


def test_skip_policy_counts_and_leaves_out_bad_images_and_images_without_captions(
    source_rows, processors, tmp_path, caplog
):
    image_processor, tokenizer = processors
    good = tmp_path / "good.png"
    PIL.Image.new("RGBA", (40, 40)).save(good)
    rows = source_rows([str(good), str(tmp_path / "missing.jpg"), str(good)], [["a"], ["b"], []])
    processed = preprocess(rows, image_processor, tokenizer, bad_images="skip")
    assert processed["image_id"] == ["0"]
    assert "left out 2 of 3 images" in caplog.text


def test_unknown_policy_lists_the_choices(source_rows, processors):
    image_processor, tokenizer = processors
    with pytest.raises(ValueError, match="error.*skip"):
        preprocess(source_rows([], []), image_processor, tokenizer, bad_images="ignore")


def test_every_bad_image_is_named_at_once_then_skip_leaves_them_out(source_rows, processors, tmp_path):
    image_processor, tokenizer = processors
    good = tmp_path / "good.jpg"
    PIL.Image.new("RGB", (40, 40)).save(good)
    paths = [str(good), str(tmp_path / "gone.jpg"), str(good), str(tmp_path / "lost.jpg")]
    rows = source_rows(paths, [["a"], ["b"], ["c"], ["d"]])
    with pytest.raises(
        BadImageError, match=r"2 of 4 images cannot be used: image 1 \(gone.jpg\).*image 3 \(lost.jpg\)"
    ):
        preprocess(rows, image_processor, tokenizer)
    kept = preprocess(rows, image_processor, tokenizer, bad_images="skip")
    assert kept["image_id"] == ["0", "2"]
