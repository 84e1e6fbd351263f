import io

import numpy as np
import PIL.Image
import pytest
from transformers import ViTImageProcessor

from vitgpt2.remote_code.images import (
    ImageLoadError,
    PixelNormalizer,
    encoder_size,
    image_to_uint8,
    load_rgb,
    resize_to_uint8,
    to_rgb,
)


def _jpeg_bytes(image: PIL.Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG")
    return buffer.getvalue()


@pytest.mark.parametrize(
    "image",
    [
        PIL.Image.new("L", (8, 6), 128),
        PIL.Image.new("CMYK", (8, 6), (0, 255, 255, 0)),
        PIL.Image.new("RGBA", (8, 6), (255, 0, 0, 255)),
        PIL.Image.new("LA", (8, 6), (30, 255)),
        PIL.Image.new("P", (8, 6), 3),
        PIL.Image.new("1", (8, 6), 1),
        PIL.Image.new("I;16", (8, 6), 4000),
        PIL.Image.new("F", (8, 6), 0.5),
        PIL.Image.new("RGB", (1, 1), (1, 2, 3)),
    ],
    ids=lambda image: f"{image.mode}-{image.size}",
)
def test_every_mode_becomes_rgb(image):
    rgb = to_rgb(image)
    assert rgb.mode == "RGB" and rgb.size == image.size
    assert resize_to_uint8(rgb, (4, 5)).shape == (3, 4, 5)


def test_cmyk_red_stays_red():
    red = np.asarray(to_rgb(PIL.Image.new("CMYK", (2, 2), (0, 255, 255, 0))))
    assert red[0, 0, 0] > 200 and red[0, 0, 1] < 60 and red[0, 0, 2] < 60


def test_transparent_pixels_become_white_not_black():
    transparent = PIL.Image.new("RGBA", (2, 2), (0, 0, 0, 0))
    assert np.asarray(to_rgb(transparent)).min() == 255
    palette = PIL.Image.new("P", (2, 2), 0)
    palette.info["transparency"] = 0
    assert np.asarray(to_rgb(palette)).min() == 255


def test_sixteen_bit_range_is_rescaled_not_clipped():
    array = np.array([[0, 30000], [60000, 65535]], dtype=np.uint16)
    image = PIL.Image.fromarray(array)
    assert image.mode.startswith("I;16")
    grey = np.asarray(to_rgb(image))[..., 0]
    assert grey[0, 0] == 0 and grey[1, 1] == 255 and 100 < grey[0, 1] < 130


def test_load_rgb_reads_paths_bytes_and_datasets_dicts(tmp_path):
    image = PIL.Image.new("RGB", (640, 480), (10, 200, 30))
    path = tmp_path / "photo.jpg"
    image.save(path)
    data = _jpeg_bytes(image)
    for source in (str(path), data, {"bytes": data, "path": None}, {"bytes": None, "path": str(path)}):
        assert load_rgb(source).size == (640, 480)


def test_draft_mode_decodes_large_jpegs_smaller_but_never_below_the_target(tmp_path):
    path = tmp_path / "big.jpg"
    PIL.Image.new("RGB", (1024, 768), (90, 90, 90)).save(path)
    draft = load_rgb(str(path), size=(224, 224))
    assert draft.size[0] < 1024 and min(draft.size) >= 224


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: str(d / "missing.jpg"), "not found"),
        (lambda d: (d / "empty.jpg").write_bytes(b"") or str(d / "empty.jpg"), "empty"),
        (lambda d: (d / "text.jpg").write_text("not an image") and str(d / "text.jpg"), "not a readable image"),
        (lambda d: b"", "empty"),
    ],
)
def test_unreadable_images_raise_a_clear_error(tmp_path, make, message):
    with pytest.raises(ImageLoadError, match=message):
        load_rgb(make(tmp_path))


def test_truncated_jpeg_raises(tmp_path):
    data = _jpeg_bytes(PIL.Image.effect_noise((256, 256), 60).convert("RGB"))
    path = tmp_path / "truncated.jpg"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageLoadError, match="truncated.jpg"):
        load_rgb(str(path))


def test_normalizer_matches_the_image_processor():
    processor = ViTImageProcessor(size={"height": 16, "width": 16})
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(2, 3, 16, 16), dtype=np.uint8)
    expected = processor(list(pixels), do_resize=False, return_tensors="pt")["pixel_values"]
    assert np.allclose(PixelNormalizer(processor)(pixels).numpy(), expected.numpy(), atol=1e-5)


def test_image_to_uint8_uses_the_encoder_size():
    processor = ViTImageProcessor(size={"height": 24, "width": 32})
    assert encoder_size(processor) == (24, 32)
    array = image_to_uint8(PIL.Image.new("RGB", (100, 50), (1, 2, 3)), processor)
    assert array.dtype == np.uint8 and array.shape == (3, 24, 32)
