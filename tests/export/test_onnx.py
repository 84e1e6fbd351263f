"""ONNX export: greedy captions from onnxruntime equal PyTorch's in fp32 and mostly agree in int8, through the same
image decoding; `vitgpt2 caption --backend onnx` and its refusals."""

import json
import os

import numpy as np
import PIL.Image
import pytest
import skimage.data

from vitgpt2.cli import main
from vitgpt2.export.onnx import OnnxCaptioner, export_onnx
from vitgpt2.inference import captioning_pipeline
from vitgpt2.remote_code.images import image_to_uint8

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "camera")  # real photos among the synthetic pictures


@pytest.fixture(scope="module")
def onnx_folders(trained_captioner, tmp_path_factory):
    root = tmp_path_factory.mktemp("onnx")
    return {precision: export_onnx(trained_captioner, str(root / precision), int8=precision == "int8") and str(root / precision)
            for precision in ("fp32", "int8")}  # fmt: skip


@pytest.fixture(scope="module")
def fifty_images(synthetic_coco, tmp_path_factory) -> list[str]:
    folder = tmp_path_factory.mktemp("photos")
    photos = []
    for name in PHOTOS:
        photos.append(str(folder / f"{name}.png" if name == "camera" else folder / f"{name}.jpg"))
        PIL.Image.fromarray(getattr(skimage.data, name)()).save(photos[-1])
    pictures = [
        os.path.join(synthetic_coco, split, name)
        for split in ("train2017", "val2017")
        for name in sorted(os.listdir(os.path.join(synthetic_coco, split)))
    ]
    return (pictures + photos)[-50:]


def onnx_captions(folder: str, images: list[str], batch_size: int = 16, **options) -> list[str]:
    captioner = OnnxCaptioner(folder)
    pixels = np.stack([image_to_uint8(image, captioner.image_processor) for image in images])  # the pipeline's way
    return [
        caption
        for start in range(0, len(images), batch_size)
        for caption in captioner.caption_uint8(pixels[start : start + batch_size], **options)
    ]


def test_fp32_captions_equal_pytorch_and_int8_agree_on_nine_in_ten(trained_captioner, onnx_folders, fifty_images):
    pipe = captioning_pipeline(trained_captioner)
    expected = [output[0]["generated_text"] for output in pipe(fifty_images, batch_size=8)]
    assert len(set(expected)) >= 5  # the captions differ from picture to picture
    assert onnx_captions(onnx_folders["fp32"], fifty_images) == expected  # batches of 16: the last one has 2
    int8 = onnx_captions(onnx_folders["int8"], fifty_images)
    assert sum(a == b for a, b in zip(int8, expected)) >= 45
    sizes = {
        precision: os.path.getsize(os.path.join(folder, "decoder.onnx")) for precision, folder in onnx_folders.items()
    }
    assert sizes["int8"] < 0.6 * sizes["fp32"]


def test_length_options_match_generate(trained_captioner, onnx_folders, fifty_images):
    pipe = captioning_pipeline(trained_captioner)
    images = fifty_images[:6]
    for options in ({"max_new_tokens": 3}, {"min_new_tokens": 9, "max_new_tokens": 12}):
        expected = [output[0]["generated_text"] for output in pipe(images, batch_size=3, **options)]
        assert onnx_captions(onnx_folders["fp32"], images, batch_size=4, **options) == expected, options


def test_caption_command_with_the_onnx_backend(trained_captioner, onnx_folders, fifty_images, tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    for image in fifty_images[-7:]:
        PIL.Image.open(image).save(folder / os.path.basename(image))
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    outputs = {}
    for backend, model in (("torch", trained_captioner), ("onnx", onnx_folders["fp32"])):
        path = tmp_path / f"{backend}.jsonl"
        code = main(["caption", str(folder), "--model", model, "--backend", backend, "--output", str(path),
                     "--batch_size", "3", "--num_workers", "0"])  # fmt: skip
        assert code == 1  # the broken file
        outputs[backend] = [json.loads(line) for line in path.read_text().splitlines()]
    assert outputs["onnx"] == outputs["torch"] and len(outputs["onnx"]) == 7
    assert "cannot read" in capsys.readouterr().err

    assert (
        main(["caption", str(folder), "--model", onnx_folders["fp32"], "--backend", "onnx", "--num_beams", "3"]) == 2
    )
    assert "the ONNX backend decodes greedily; {'num_beams': 3}" in capsys.readouterr().err
    assert main(["caption", str(folder), "--model", trained_captioner, "--backend", "onnx"]) == 2
    assert "holds no ONNX captioner" in capsys.readouterr().err


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_steps_after_the_first_return_only_the_self_attention_cache(onnx_folders, precision):
    """The cross-attention keys and values come out of the first step once; each later step reads them and returns
    the self-attention cache alone, so that they are not copied again at every token."""
    import onnxruntime

    def outputs(graph):
        session = onnxruntime.InferenceSession(os.path.join(onnx_folders[precision], f"{graph}.onnx"))
        return [output.name for output in session.get_outputs()]

    first, following = outputs("decoder"), outputs("decoder_with_past")
    assert any("cross_key" in name for name in first)
    assert following[0] == "logits" and all(name.endswith((".key", ".value")) for name in following[1:])
    assert len(following) - 1 == (len(first) - 1) // 2


def test_export_refuses_a_folder_that_is_not_a_captioner(tiny_models, tmp_path, capsys):
    assert main(["export-onnx", "--model", tiny_models[0], "--output", str(tmp_path / "x")]) == 2
    assert "holds a vit model" in capsys.readouterr().err


def test_fp32_equals_pytorch_on_a_random_captioner_too(tiny_captioner_dir, fifty_images, tmp_path):
    """A random captioner (weights tripled, so its captions run long and differ from image to image) takes many more
    token paths than a trained one."""
    folder = str(tmp_path / "onnx")
    export_onnx(tiny_captioner_dir, folder)
    pipe = captioning_pipeline(tiny_captioner_dir)
    expected = [output[0]["generated_text"] for output in pipe(fifty_images, batch_size=8)]
    assert len(set(expected)) >= 20
    assert onnx_captions(folder, fifty_images, batch_size=7) == expected
