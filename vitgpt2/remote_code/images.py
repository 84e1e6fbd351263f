"""Image decoding shared by preprocessing, the collator and the captioning pipeline.

Training and inference must see identical pixels, so both go through `load_rgb` -> `resize_to_uint8`
-> `normalize`. This module depends on PIL, numpy and torch only: it is copied next to every saved model
so that the pipeline loads with `trust_remote_code=True` where vitgpt2 is not installed.
"""

import io
import os
import warnings

import numpy as np
import PIL.Image
import PIL.ImageOps
import torch

# Images whose alpha channel hides pixels (RGBA, LA, palette with transparency) are laid on white, the
# colour a viewer shows; a plain `.convert("RGB")` would expose whatever colour the hidden pixels hold.
_BACKGROUND = (255, 255, 255)


class ImageLoadError(ValueError):
    """An image that cannot be decoded: missing, empty, truncated, too large or not an image."""


def _too_large(name: str, error: Exception) -> ImageLoadError:
    # PIL refuses images over 2 x MAX_IMAGE_PIXELS with DecompressionBombError, which is not an OSError, and warns
    # over 1 x MAX_IMAGE_PIXELS.
    return ImageLoadError(
        f"image {name} is over PIL's decompression-bomb limit ({error}); if it is a genuine photo, "
        "shrink it, or raise PIL.Image.MAX_IMAGE_PIXELS in your script"
    )


def open_image(image) -> PIL.Image.Image:
    """Opens a path, raw bytes, a `datasets` `{"bytes", "path"}` dict or a PIL image (not yet decoded)."""
    if isinstance(image, PIL.Image.Image):
        return image
    if isinstance(image, dict):
        image = image.get("bytes") or image.get("path")
    if image is None:
        raise ImageLoadError("no image: the row's image is empty (None)")
    if isinstance(image, (bytes, bytearray)):
        if len(image) == 0:
            raise ImageLoadError("empty image bytes")
        source, name = io.BytesIO(image), "<bytes>"
    elif isinstance(image, (str, os.PathLike)):
        name = os.fspath(image)
        if not os.path.isfile(name):
            raise ImageLoadError(f"image file not found: {name}")
        if os.path.getsize(name) == 0:
            raise ImageLoadError(f"image file is empty (0 bytes): {name}")
        source = name
    else:
        raise ImageLoadError(f"cannot read an image from a {type(image).__name__}")
    try:
        # PIL only warns between 1x and 2x its limit and decodes the image in full: refuse it as over the limit
        with warnings.catch_warnings():
            warnings.simplefilter("error", PIL.Image.DecompressionBombWarning)
            return PIL.Image.open(source)
    except (PIL.Image.DecompressionBombError, PIL.Image.DecompressionBombWarning) as error:
        raise _too_large(name, error) from error
    except (PIL.UnidentifiedImageError, OSError) as error:
        raise ImageLoadError(f"not a readable image: {name} ({error})") from error


def to_rgb(image: PIL.Image.Image) -> PIL.Image.Image:
    """Converts any PIL mode (L, LA, P, RGBA, CMYK, I;16, I, F, 1, YCbCr) to RGB."""
    if image.mode == "RGB":
        return image
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16-bit and float images: rescale the actual range to 8 bits instead of clipping at 255.
        array = np.asarray(image, dtype=np.float64)
        low, high = float(array.min()), float(array.max())
        scale = 255.0 / (high - low) if high > low else 0.0
        image = PIL.Image.fromarray(((array - low) * scale).astype(np.uint8))
    if image.mode in ("RGBA", "LA", "PA"):
        rgba = image.convert("RGBA")
        background = PIL.Image.new("RGBA", rgba.size, _BACKGROUND + (255,))
        return PIL.Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def load_rgb(image, size: tuple[int, int] | None = None) -> PIL.Image.Image:
    """Decodes `image` to an RGB PIL image, oriented as its EXIF tag says.

    With `size` (height, width), JPEGs are decoded in draft mode at the smallest power-of-two reduction
    that is still at least `size`, which is several times faster for COCO-sized photos.
    """
    image = open_image(image)
    name = getattr(image, "filename", "") or "<bytes>"
    try:
        if size is not None and image.format == "JPEG":
            height, width = size
            image.draft("RGB", (width, height))
        image.load()
        image = PIL.ImageOps.exif_transpose(image)
    except PIL.Image.DecompressionBombError as error:
        raise _too_large(name, error) from error
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageLoadError(f"cannot decode image {name}: {error}") from error
    return to_rgb(image)


def resize_to_uint8(image: PIL.Image.Image, size: tuple[int, int], resample=PIL.Image.BILINEAR) -> np.ndarray:
    """Resizes to (height, width) and returns a channels-first uint8 array, the form stored in the cache."""
    height, width = size
    if image.size != (width, height):
        image = image.resize((width, height), resample=resample)
    return np.asarray(image, dtype=np.uint8).transpose(2, 0, 1).copy()


def encoder_size(image_processor) -> tuple[int, int]:
    """The (height, width) the encoder sees, from any of the `size` layouts transformers uses.

    Where the processor resizes then crops the centre (DeiT, DINOv2, CLIP), the whole picture is resized to the crop
    size instead: a caption should describe all of it, and the encoder's position embeddings are sized for the crop.
    """
    size = image_processor.size
    crop = getattr(image_processor, "crop_size", None)
    if getattr(image_processor, "do_center_crop", False) and crop:
        size = crop
    if isinstance(size, int):
        return size, size
    size = dict(size)
    if "height" in size and "width" in size:
        return int(size["height"]), int(size["width"])
    if "shortest_edge" in size:
        return int(size["shortest_edge"]), int(size["shortest_edge"])
    raise ValueError(f"unsupported image processor size {size!r}: expected height/width or shortest_edge")


def encoder_resample(image_processor):
    resample = getattr(image_processor, "resample", None)
    return PIL.Image.BILINEAR if resample is None else PIL.Image.Resampling(int(resample))


class PixelNormalizer:
    """uint8 (N, 3, H, W) -> float pixel_values, with the image processor's rescale factor, mean and std."""

    def __init__(self, image_processor):
        do_rescale = getattr(image_processor, "do_rescale", True)
        do_normalize = getattr(image_processor, "do_normalize", True)
        self.scale = float(getattr(image_processor, "rescale_factor", 1 / 255)) if do_rescale else 1.0
        mean = image_processor.image_mean if do_normalize else [0.0, 0.0, 0.0]
        std = image_processor.image_std if do_normalize else [1.0, 1.0, 1.0]
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)

    def __call__(self, pixels) -> torch.Tensor:
        pixels = torch.as_tensor(np.asarray(pixels) if not torch.is_tensor(pixels) else pixels)
        return (pixels.to(torch.float32) * self.scale - self.mean) / self.std


def image_to_uint8(image, image_processor) -> np.ndarray:
    """The one path from any image input to the cached uint8 array at the encoder's size."""
    size = encoder_size(image_processor)
    return resize_to_uint8(load_rgb(image, size), size, encoder_resample(image_processor))
