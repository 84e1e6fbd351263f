"""`vitgpt2 caption`: files, folders, JSON lines output, and unreadable files reported without stopping the run."""

import argparse
import json

import PIL.Image
import pytest
import skimage.data
import torch

from vitgpt2.commands import caption


def run_caption(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    caption.register(parser.add_subparsers())
    args = parser.parse_args(["caption", *argv])
    return args.func(args)


@pytest.fixture
def image_dir(tmp_path):
    folder = tmp_path / "images"
    (folder / "nested").mkdir(parents=True)
    PIL.Image.fromarray(skimage.data.coffee()).save(folder / "b_coffee.jpg")
    PIL.Image.fromarray(skimage.data.chelsea()).save(folder / "a_chelsea.PNG")
    PIL.Image.fromarray(skimage.data.camera()).save(folder / "c_camera.png")  # grayscale
    PIL.Image.fromarray(skimage.data.rocket()).save(folder / "nested" / "rocket.png")  # not expanded: not recursive
    (folder / "notes.txt").write_text("not an image")
    return folder


def captioned(pipe, path, **generate_kwargs) -> str:
    return pipe(str(path), **generate_kwargs)[0]["generated_text"]


def test_folder_prints_sorted_file_tab_caption_lines(tiny_captioner_pipe, tiny_captioner_dir, image_dir, capsys):
    assert run_caption(str(image_dir), "--model", tiny_captioner_dir, "--batch_size", "2", "--device", "cpu") == 0
    lines = capsys.readouterr().out.splitlines()
    expected = [image_dir / name for name in ("a_chelsea.PNG", "b_coffee.jpg", "c_camera.png")]
    assert lines == [f"{path}\t{captioned(tiny_captioner_pipe, path)}" for path in expected]


def test_unreadable_files_are_reported_and_skipped(
    tiny_captioner_pipe, tiny_captioner_dir, image_dir, tmp_path, capsys
):
    (image_dir / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (image_dir / "empty.png").write_bytes(b"")
    output = tmp_path / "captions.jsonl"
    missing = tmp_path / "missing.jpg"
    status = run_caption(
        str(image_dir), str(missing), "--model", tiny_captioner_dir, "--output", str(output), "--device", "cpu"
    )
    assert status != 0
    errors = capsys.readouterr().err
    for bad in ("broken.jpg", "empty.png", str(missing)):
        assert bad in errors
    records = [json.loads(line) for line in output.read_text().splitlines()]
    assert [record["file"] for record in records] == [
        str(image_dir / name) for name in ("a_chelsea.PNG", "b_coffee.jpg", "c_camera.png")
    ]
    assert all(record["caption"] == captioned(tiny_captioner_pipe, record["file"]) for record in records)


def test_files_and_generation_options(tiny_captioner_pipe, tiny_captioner_dir, image_dir, tmp_path):
    files = [str(image_dir / "nested" / "rocket.png"), str(image_dir / "b_coffee.jpg")]
    output = tmp_path / "out.jsonl"
    decoding = {
        "num_beams": 2, "max_new_tokens": 6, "min_new_tokens": 2, "length_penalty": 0.5,
        "no_repeat_ngram_size": 1, "repetition_penalty": 1.2,
    }  # fmt: skip
    options = [item for key, value in decoding.items() for item in (f"--{key}", str(value))]
    assert (
        run_caption(*files, "--model", tiny_captioner_dir, *options, "--output", str(output), "--device", "cpu") == 0
    )
    records = [json.loads(line) for line in output.read_text().splitlines()]
    assert records == [{"file": f, "caption": captioned(tiny_captioner_pipe, f, **decoding)} for f in files]
    assert records != [{"file": f, "caption": captioned(tiny_captioner_pipe, f)} for f in files]  # they changed it


def test_folder_without_images_fails(tiny_captioner_dir, tmp_path, capsys):
    assert run_caption(str(tmp_path), "--model", tiny_captioner_dir) == 1
    assert "no image files" in capsys.readouterr().err


def test_a_killed_run_resumes_where_it_stopped(tiny_captioner_pipe, tiny_captioner_dir, image_dir, tmp_path, capsys):
    files = [str(image_dir / name) for name in ("a_chelsea.PNG", "b_coffee.jpg", "c_camera.png")]
    expected = {f: captioned(tiny_captioner_pipe, f) for f in files}
    output = tmp_path / "captions.jsonl"
    # killed while writing: one caption whole, the next cut off mid-line
    whole = json.dumps({"file": files[0], "caption": expected[files[0]]})
    output.write_text(whole + "\n" + json.dumps({"file": files[1], "caption": "cut"})[:20])
    argv = [str(image_dir), "--model", tiny_captioner_dir, "--output", str(output), "--batch_size", "2"]
    assert run_caption(*argv) == 0
    assert "1 already in" in capsys.readouterr().err
    records = [json.loads(line) for line in output.read_text().splitlines()]
    assert sorted(record["file"] for record in records) == files  # each once, the cut line gone
    assert all(record["caption"] == expected[record["file"]] for record in records)

    assert run_caption(*argv) == 0  # nothing left to do: nothing recaptioned
    assert "3 already in" in capsys.readouterr().err
    assert [json.loads(line) for line in output.read_text().splitlines()] == records


def test_workers_and_batches_give_the_pipelines_captions(tiny_captioner_pipe, tiny_captioner_dir, image_dir, capsys):
    outputs = []
    for workers, batch in (("0", "1"), ("2", "2")):
        assert (
            run_caption(str(image_dir), "--model", tiny_captioner_dir, "--num_workers", workers, "--batch_size", batch)
            == 0
        )
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1]
    assert [line.split("\t")[1] for line in outputs[0].splitlines()] == [
        captioned(tiny_captioner_pipe, image_dir / name) for name in ("a_chelsea.PNG", "b_coffee.jpg", "c_camera.png")
    ]


def test_unreadable_files_are_listed_at_the_end(tiny_captioner_dir, image_dir, capsys):
    (image_dir / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    assert run_caption(str(image_dir), "--model", tiny_captioner_dir, "--batch_size", "2") == 1
    errors = capsys.readouterr().err.strip().splitlines()
    assert "cannot read" in errors[-2] and "broken.jpg" in errors[-2]
    assert errors[-1] == "vitgpt2 caption: 3 captioned, 1 failed"


def test_compiled_decoding_gives_the_pipelines_captions(tiny_captioner_pipe, tiny_captioner_dir, image_dir, capsys):
    """--compile: a static KV cache and a compiled decoding step, over two batch sizes (the last one uneven)."""
    assert run_caption(str(image_dir), "--model", tiny_captioner_dir, "--batch_size", "2", "--compile") == 0
    lines = capsys.readouterr().out.splitlines()
    names = ("a_chelsea.PNG", "b_coffee.jpg", "c_camera.png")
    assert lines == [f"{image_dir / name}\t{captioned(tiny_captioner_pipe, image_dir / name)}" for name in names]
    with pytest.raises(Exception, match="--backend onnx"):
        run_caption(str(image_dir), "--model", tiny_captioner_dir, "--compile", "--backend", "onnx")


def test_dtype_gives_the_pipelines_captions_in_that_dtype(tiny_captioner_dir, image_dir, capsys, monkeypatch):
    """--dtype bfloat16: the command's model runs in bf16, and its captions are the bf16 pipeline's, over two batch
    sizes."""
    from vitgpt2 import inference

    pipe = inference.captioning_pipeline(tiny_captioner_dir, device="cpu", dtype="bfloat16")
    names = ("a_chelsea.PNG", "b_coffee.jpg", "c_camera.png")
    expected = [f"{image_dir / name}\t{captioned(pipe, image_dir / name)}" for name in names]
    built, build = [], inference.captioning_pipeline
    monkeypatch.setattr(inference, "captioning_pipeline", lambda *a, **k: built.append(build(*a, **k)) or built[-1])
    for batch in ("2", "3"):
        assert (
            run_caption(str(image_dir), "--model", tiny_captioner_dir, "--batch_size", batch, "--dtype", "bfloat16")
            == 0
        )
        assert capsys.readouterr().out.splitlines() == expected
    assert [made.model.dtype for made in built] == [torch.bfloat16] * 2
    with pytest.raises(Exception, match="--dtype sets PyTorch's weights"):
        run_caption(str(image_dir), "--model", tiny_captioner_dir, "--dtype", "bfloat16", "--backend", "onnx")
    with pytest.raises(SystemExit):
        run_caption(str(image_dir), "--model", tiny_captioner_dir, "--dtype", "int8")
