"""The image-to-text pipeline: captions equal `model.generate` on the training pixels, loadable without vitgpt2."""

import functools
import hashlib
import http.server
import inspect
import json
import os
import shutil
import threading
from types import SimpleNamespace

import PIL.Image
import pytest
import skimage.data
import torch
from transformers import (
    Trainer,
    TrainerState,
    TrainingArguments,
    VisionEncoderDecoderModel,
    default_data_collator,
    pipeline,
)

from vitgpt2.data.collator import CaptioningCollator
from vitgpt2.inference import captioning_pipeline
from vitgpt2.publish.pipeline_code import PipelineCodeCallback, custom_pipelines_entry, save_pipeline_code
from vitgpt2.remote_code.images import image_to_uint8
from vitgpt2.remote_code.pipeline import ImageCaptioningPipeline

CAPTIONS = ["a red circle on the left", "two blue squares at the top", "three green triangles near the bottom"] * 4
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")


def photographs() -> list[PIL.Image.Image]:
    return [PIL.Image.fromarray(getattr(skimage.data, name)()) for name in PHOTOS]


def generate_reference(pipe, images, **generate_kwargs) -> list[str]:
    """Captions by `model.generate` on the pixels training sees: `image_to_uint8`, then the training collator."""
    examples = [
        {"pixel_values": image_to_uint8(image, pipe.image_processor), "caption_ids": [[0]]} for image in images
    ]
    pixel_values = CaptioningCollator(pipe.image_processor)(examples)["pixel_values"]
    with torch.no_grad():
        sequences = pipe.model.generate(pixel_values=pixel_values, **generate_kwargs)
    return [" ".join(text.split()) for text in pipe.tokenizer.batch_decode(sequences, skip_special_tokens=True)]


def texts(outputs) -> list[str]:
    return [record["generated_text"] for record in outputs]


@pytest.fixture(scope="module")
def photo_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    paths = []
    for name, image in zip(PHOTOS, photographs()):
        suffix = ".png" if name == "rocket" else ".jpg"  # JPEG goes through draft-mode decoding, PNG does not
        paths.append(str(folder / f"{name}{suffix}"))
        image.save(paths[-1])
    return paths


def test_photographs_as_pil_images_match_generate(tiny_captioner_pipe):
    images = photographs()
    captions = [tiny_captioner_pipe(image) for image in images]
    for image, caption in zip(images, captions):
        assert caption == [{"generated_text": generate_reference(tiny_captioner_pipe, [image])[0]}]
    # Non-empty and image-dependent, so the equality above compares real captions.
    assert all(texts(caption)[0] for caption in captions)
    assert len({texts(caption)[0] for caption in captions}) > 1


def test_paths_and_arrays_match_generate(tiny_captioner_pipe, photo_files):
    for path in photo_files:
        assert texts(tiny_captioner_pipe(path)) == generate_reference(tiny_captioner_pipe, [path])
    array = skimage.data.coffee()
    assert tiny_captioner_pipe(array) == tiny_captioner_pipe(PIL.Image.fromarray(array))


def test_batch_matches_batched_generate(tiny_captioner_pipe, photo_files):
    outputs = tiny_captioner_pipe(photo_files, batch_size=len(photo_files))
    assert len(outputs) == len(photo_files) and all(len(output) == 1 for output in outputs)
    assert [texts(output)[0] for output in outputs] == generate_reference(tiny_captioner_pipe, photo_files)
    assert tiny_captioner_pipe(tuple(photo_files[:2]), batch_size=2) == outputs[:2]


def test_generation_parameters_reach_generate(tiny_captioner_pipe):
    image = photographs()[1]
    beams = tiny_captioner_pipe(image, num_beams=3, num_return_sequences=2, max_new_tokens=5)
    assert texts(beams) == generate_reference(
        tiny_captioner_pipe, [image], num_beams=3, num_return_sequences=2, max_new_tokens=5
    )
    assert tiny_captioner_pipe(image, generate_kwargs={"num_beams": 3, "max_new_tokens": 5}) == tiny_captioner_pipe(
        image, num_beams=3, max_new_tokens=5
    )
    with pytest.raises(ValueError, match="max_new_tokens"):
        tiny_captioner_pipe(image, max_new_tokens=4, generate_kwargs={"max_new_tokens": 5})


def test_init_and_call_generation_parameters_combine(tiny_captioner_dir, tiny_captioner_pipe):
    image = photographs()[2]
    beam_pipe = captioning_pipeline(
        tiny_captioner_dir, device="cpu", num_beams=3, generate_kwargs={"max_new_tokens": 6}
    )
    assert beam_pipe(image) == tiny_captioner_pipe(image, num_beams=3, max_new_tokens=6)
    assert beam_pipe(image, max_new_tokens=3) == tiny_captioner_pipe(image, num_beams=3, max_new_tokens=3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_runs_on_gpu_in_half_precision(tiny_captioner_dir, photo_files):
    gpu = captioning_pipeline(tiny_captioner_dir, device="cuda", dtype=torch.float16)
    assert gpu.device.type == "cuda" and gpu.model.dtype == torch.float16
    outputs = gpu(photo_files, batch_size=2)
    examples = [
        {"pixel_values": image_to_uint8(path, gpu.image_processor), "caption_ids": [[0]]} for path in photo_files
    ]
    pixel_values = CaptioningCollator(gpu.image_processor)(examples)["pixel_values"].to("cuda", torch.float16)
    for start in (0, 2):  # the same batches as the pipeline's
        with torch.no_grad():
            sequences = gpu.model.generate(pixel_values=pixel_values[start : start + 2])
        expected = [" ".join(text.split()) for text in gpu.tokenizer.batch_decode(sequences, skip_special_tokens=True)]
        assert [output[0]["generated_text"] for output in outputs[start : start + 2]] == expected


def test_url_input(tiny_captioner_pipe, photo_files):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=os.path.dirname(photo_files[0]))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/{os.path.basename(photo_files[0])}"
        assert tiny_captioner_pipe(url, timeout=10) == tiny_captioner_pipe(photo_files[0])
    finally:
        server.shutdown()


def test_captioning_pipeline_from_a_model_object(tiny_captioner_pipe):
    image = photographs()[0]
    rebuilt = captioning_pipeline(
        tiny_captioner_pipe.model,
        tokenizer=tiny_captioner_pipe.tokenizer,
        image_processor=tiny_captioner_pipe.image_processor,
    )
    assert isinstance(rebuilt, ImageCaptioningPipeline) and rebuilt.task == "image-to-text"
    assert rebuilt(image) == tiny_captioner_pipe(image)
    with pytest.raises(ValueError, match="image processor"):
        captioning_pipeline(tiny_captioner_pipe.model, tokenizer=tiny_captioner_pipe.tokenizer, device="cpu")


def file_digest(path) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_save_pipeline_code_matches_save_pretrained(tiny_captioner_pipe, tiny_captioner_dir, tmp_path):
    folder = shutil.copytree(tiny_captioner_dir, tmp_path / "model")
    weights = file_digest(folder / "model.safetensors")
    written = save_pipeline_code(folder)
    remote_code = os.path.dirname(inspect.getfile(ImageCaptioningPipeline))
    shipped = sorted(name for name in os.listdir(remote_code) if name.endswith(".py") and name != "__init__.py")
    assert sorted(os.path.basename(path) for path in written) == shipped  # exactly the remote_code/ modules
    assert file_digest(folder / "model.safetensors") == weights  # the weights are not re-written

    tiny_captioner_pipe.save_pretrained(tmp_path / "by_transformers")
    config = json.loads((folder / "config.json").read_text())
    reference = json.loads((tmp_path / "by_transformers" / "config.json").read_text())
    assert config["custom_pipelines"] == reference["custom_pipelines"] == custom_pipelines_entry()
    original = json.loads(open(os.path.join(tiny_captioner_dir, "config.json")).read())
    assert {key: value for key, value in config.items() if key != "custom_pipelines"} == original

    image = photographs()[3]
    with_class = pipeline("image-to-text", model=str(folder), pipeline_class=ImageCaptioningPipeline, device="cpu")
    remote = pipeline("image-to-text", model=str(folder), trust_remote_code=True, device="cpu")
    assert type(remote).__name__ == "ImageCaptioningPipeline" and type(remote) is not ImageCaptioningPipeline
    assert with_class(image) == remote(image) == tiny_captioner_pipe(image)


def test_save_pipeline_code_needs_a_saved_model(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        save_pipeline_code(tmp_path)


def test_loads_with_trust_remote_code_where_vitgpt2_is_not_installed(
    tiny_captioner_pipe, tiny_captioner_dir, photo_files, isolated_pipeline, tmp_path
):
    folder = shutil.copytree(tiny_captioner_dir, tmp_path / "model")
    save_pipeline_code(folder)
    images = photo_files[:2]
    outputs = isolated_pipeline([folder], images)[str(folder)]
    assert outputs["single"] == tiny_captioner_pipe(images[0])
    assert outputs["batch"] == tiny_captioner_pipe(images, batch_size=2)
    assert outputs["beams"] == tiny_captioner_pipe(images[0], num_beams=2)


class ImageCaptionDataset(torch.utils.data.Dataset):
    def __init__(self, pixel_values, labels):
        self.pixel_values, self.labels = pixel_values, labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        return {"pixel_values": self.pixel_values[index], "labels": self.labels[index]}


def test_callback_makes_every_checkpoint_loadable(tiny_captioner_pipe, tiny_captioner_dir, tmp_path):
    model = VisionEncoderDecoderModel.from_pretrained(
        tiny_captioner_dir
    )  # trained here, so not the shared `tiny_captioner_pipe.model`
    images = photographs()[:2]
    pixel_values = CaptioningCollator(tiny_captioner_pipe.image_processor)(
        [
            {"pixel_values": image_to_uint8(image, tiny_captioner_pipe.image_processor), "caption_ids": [[0]]}
            for image in images
        ]
    )["pixel_values"]
    labels = tiny_captioner_pipe.tokenizer(
        CAPTIONS[:2], padding="max_length", truncation=True, max_length=8, return_tensors="pt"
    )["input_ids"]
    args = TrainingArguments(
        output_dir=str(tmp_path / "run"),
        max_steps=2,
        save_steps=1,
        per_device_train_batch_size=2,
        dataloader_pin_memory=False,
        report_to="none",
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=ImageCaptionDataset(pixel_values, labels),
        data_collator=default_data_collator,
        processing_class=tiny_captioner_pipe.tokenizer,  # the Trainer saves only this one; the callback adds the image processor
        callbacks=[PipelineCodeCallback(image_processor=tiny_captioner_pipe.image_processor)],
    )
    trainer.train()
    for step in (1, 2):
        checkpoint = tmp_path / "run" / f"checkpoint-{step}"
        assert (checkpoint / "pipeline.py").is_file() and (checkpoint / "preprocessor_config.json").is_file()
    loaded = pipeline("image-to-text", model=str(checkpoint), trust_remote_code=True, device="cpu")
    trained = captioning_pipeline(
        model,
        tokenizer=tiny_captioner_pipe.tokenizer,
        image_processor=tiny_captioner_pipe.image_processor,
        device="cpu",
    )
    assert loaded(images[0]) == trained(images[0])


def test_callback_writes_only_on_saving_processes(tmp_path):
    (tmp_path / "checkpoint-7").mkdir()
    args = SimpleNamespace(should_save=False, output_dir=str(tmp_path))
    PipelineCodeCallback().on_save(args, TrainerState(global_step=7), control=None)
    assert not (tmp_path / "checkpoint-7" / "pipeline.py").exists()
