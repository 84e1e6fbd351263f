"""Streamed training data (`--webdataset`, `--streaming`): shard patterns, reading tars written the way other tools
write them, the split between processes and workers, and items equal to the cached path's."""

import io
import json
import os
import tarfile

import numpy as np
import PIL.Image
import pytest
import torch
from transformers import AutoTokenizer, ViTImageProcessor

from vitgpt2.data.collator import STREAM_POSITION, CaptioningCollator
from vitgpt2.data.errors import DataSourceError
from vitgpt2.data.preprocessing import preprocess
from vitgpt2.data.shard_reader import expand_braces, expand_shards, read_shard
from vitgpt2.data.sources import load_coco
from vitgpt2.data.streaming import HubSource, ShardSource, StreamingCaptions, StreamState, shuffled
from vitgpt2.data.views import CaptionGroups
from vitgpt2.loss import caption_loss

CAPTIONS = [
    "A man's bike leans on a red-brick wall.",
    "  Two dogs  play in the snow \n",
    "The U.S. flag flies at half-mast — 3 p.m.",
    "Une crème brûlée on a café table",
    "a cat that's sleeping on a 2-seat sofa",
]


def _jpeg(seed: int, size=(40, 30)) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    PIL.Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


@pytest.fixture
def shards(tmp_path, img2dataset_shard):
    """`shards(n_shards, per_shard)`: shards of distinct samples, 5 captions each, the first naming the sample."""

    def build(n_shards: int, per_shard: int, folder: str = "shards") -> tuple[str, list[str]]:
        root = tmp_path / folder
        root.mkdir()
        keys = []
        for shard in range(n_shards):
            samples = []
            for i in range(per_shard):
                key = f"{shard:05d}{i:04d}"
                keys.append(key)
                samples.append((key, _jpeg(len(keys)), [f"sample {key}", *CAPTIONS[:4]]))
            img2dataset_shard(root / f"part-{shard:06d}.tar", samples)
        return str(root / f"part-{{000000..{n_shards - 1:06d}}}.tar"), keys

    return build


def test_brace_patterns_expand_as_webdataset_expands_them():
    assert expand_braces("a-{08..11}.tar") == ["a-08.tar", "a-09.tar", "a-10.tar", "a-11.tar"]
    assert expand_braces("{train,extra}/s{0..1}.tar") == [
        "train/s0.tar",
        "train/s1.tar",
        "extra/s0.tar",
        "extra/s1.tar",
    ]
    assert expand_braces("plain.tar") == ["plain.tar"]


def test_shards_are_named_by_pattern_folder_or_glob_and_missing_ones_are_named(shards, tmp_path):
    pattern, _ = shards(3, 1)
    named = expand_shards(pattern)
    assert [os.path.basename(path) for path in named] == [f"part-{i:06d}.tar" for i in range(3)]
    folder = os.path.dirname(pattern)
    assert expand_shards(folder) == named == expand_shards(os.path.join(folder, "part-*.tar"))
    assert expand_shards(f"{named[0]}, {named[2]}") == [named[0], named[2]]
    with pytest.raises(DataSourceError, match="part-000003.tar"):
        expand_shards(os.path.join(folder, "part-{000000..000003}.tar"))
    assert expand_shards("s3://bucket/cc3m-{0..1}.tar") == ["s3://bucket/cc3m-0.tar", "s3://bucket/cc3m-1.tar"]


def test_a_shard_of_another_tool_reads_with_every_caption_layout(tmp_path, caplog):
    image = _jpeg(0)
    path = tmp_path / "mixed.tar"
    with tarfile.open(path, "w") as tar:
        _add(tar, "000000000.jpg", image)
        _add(tar, "000000000.txt", CAPTIONS[2].encode())  # img2dataset: one caption in .txt
        _add(tar, "000000001.jpg", image)
        _add(tar, "000000001.json", json.dumps({"caption": CAPTIONS[3]}, ensure_ascii=False).encode())
        _add(tar, "000000002.png", image)  # a .png holding JPEG bytes: decoding goes by content
        _add(tar, "000000002.json", json.dumps({"captions": CAPTIONS[:2]}).encode())
        _add(tar, "000000003.txt", b"a caption without an image")
        _add(tar, "000000004.jpg", image)  # no caption
        _add(tar, "sub/dir/000000005.jpg", image)
        _add(tar, "sub/dir/000000005.txt", b"line one\n\n  line two  \n")
        _add(tar, "._000000006.jpg", b"macOS resource fork")
    samples = list(read_shard(str(path)))
    assert [sample["key"] for sample in samples] == ["000000000", "000000001", "000000002", "sub/dir/000000005"]
    assert samples[0]["captions"] == [CAPTIONS[2]] and samples[1]["captions"] == [CAPTIONS[3]]
    assert samples[2]["captions"] == [CAPTIONS[0], CAPTIONS[1].strip()]
    assert samples[3]["captions"] == ["line one", "line two"] and samples[0]["image"] == image
    assert "000000003 skipped: no image" in caplog.text and "000000004 skipped: no caption" in caplog.text


def test_a_folder_of_gzipped_shards_streams_like_plain_ones(shards, tmp_path):
    import gzip

    pattern, keys = shards(2, 3)
    folder = tmp_path / "gzipped"
    folder.mkdir()
    for index, path in enumerate(expand_shards(pattern)):
        (folder / f"part-{index}.tar.gz").write_bytes(gzip.compress(open(path, "rb").read()))
    gzipped = expand_shards(str(folder))
    assert [os.path.basename(path) for path in gzipped] == ["part-0.tar.gz", "part-1.tar.gz"]
    assert [sample["key"] for path in gzipped for sample in read_shard(path)] == keys


def test_a_truncated_shard_keeps_the_samples_before_the_break(shards, caplog):
    pattern, keys = shards(1, 6)
    path = expand_shards(pattern)[0]
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[: len(data) * 2 // 3])
    read = [sample["key"] for sample in read_shard(path)]
    assert 0 < len(read) < 6 and read == keys[: len(read)]
    assert "unreadable from sample" in caplog.text


def test_the_shuffle_buffer_permutes_and_is_reproducible():
    import random

    first = list(shuffled(iter(range(100)), 10, random.Random(1)))
    assert sorted(first) == list(range(100)) and first != list(range(100))
    assert first == list(shuffled(iter(range(100)), 10, random.Random(1)))
    assert list(shuffled(iter(range(5)), 0, random.Random(1))) == list(range(5))


@pytest.fixture(scope="module")
def tokenizer_and_processor(tiny_models):
    encoder, decoder = tiny_models
    return AutoTokenizer.from_pretrained(decoder), ViTImageProcessor.from_pretrained(encoder)


def _stream(spec, tokenizer_and_processor, **options) -> StreamingCaptions:
    tokenizer, processor = tokenizer_and_processor
    return StreamingCaptions(ShardSource(spec), processor, tokenizer, max_target_length=24, **options)


def _first_caption_keys(tokenizer, batch) -> list[str]:
    firsts = batch["labels"][:, 0, :]
    return [tokenizer.decode(row[row >= 0][:-1]).split()[-1] for row in firsts]


@pytest.mark.parametrize("n_shards, per_shard", [(8, 3), (5, 4), (2, 7)])
def test_each_sample_is_read_once_per_epoch_by_2_processes_x_2_workers(
    shards, tokenizer_and_processor, n_shards, per_shard
):
    """8 shards: two for each of the 4 readers; 5: uneven; 2, fewer than the readers: split by sample."""
    pattern, keys = shards(n_shards, per_shard)
    tokenizer, processor = tokenizer_and_processor
    seen = []
    for process in range(2):
        stream = _stream(pattern, tokenizer_and_processor, captions_per_image=5, shuffle_buffer_size=4, seed=7)
        stream.set_topology(process, 2)
        loader = torch.utils.data.DataLoader(
            stream, batch_size=1, num_workers=2, collate_fn=CaptioningCollator(processor)
        )
        epochs = {}
        for batch in loader:
            worker, epoch, _, _ = batch[STREAM_POSITION].tolist()
            if epoch > 0:  # past the epoch in every worker's stream: stop when both have moved on
                epochs[worker] = True
                if len(epochs) == 2:
                    break
                continue
            seen += _first_caption_keys(tokenizer, batch)
    assert sorted(seen) == sorted(keys)


def test_streamed_batches_and_loss_equal_the_cached_path_in_the_same_order(
    synthetic_coco, captioner, tokenizer_and_processor, tmp_path, img2dataset_shard
):
    tokenizer, processor = tokenizer_and_processor
    rows = load_coco(synthetic_coco, "train")
    samples = [
        (f"{i:09d}", open(image["path"], "rb").read(), captions)
        for i, (image, captions) in enumerate(zip(rows["image"], rows["captions"]))
    ]
    pattern = img2dataset_shard(tmp_path / "coco-0.tar", samples, caption_in="json")
    cached = CaptionGroups(preprocess(rows, processor, tokenizer, max_target_length=24), captions_per_image=2)
    stream = _stream(pattern, tokenizer_and_processor, captions_per_image=2, shuffle=False)
    collator = CaptioningCollator(processor)
    streamed_items = iter(stream)
    model = captioner[0].eval()
    for start in range(0, len(cached), 16):
        expected = collator([cached[i] for i in range(start, min(start + 16, len(cached)))])
        got = collator([next(streamed_items) for _ in range(len(expected["labels"]))])
        got.pop(STREAM_POSITION)
        assert torch.equal(got["pixel_values"], expected["pixel_values"])
        assert torch.equal(got["labels"], expected["labels"])
        with torch.no_grad():
            loss = caption_loss(model, got["pixel_values"], got["labels"])[0]
            assert loss == caption_loss(model, expected["pixel_values"], expected["labels"])[0]
    assert next(streamed_items)[STREAM_POSITION][1] == 1  # the next epoch follows


def test_an_unreadable_image_is_skipped_and_logged(tmp_path, tokenizer_and_processor, caplog, img2dataset_shard):
    samples = [("000000000", _jpeg(1), ["a fine photo"]), ("000000001", b"\xff\xd8 not a jpeg", ["broken"])]
    samples.append(("000000002", _jpeg(2), ["another photo"]))
    pattern = img2dataset_shard(tmp_path / "bad.tar", samples, caption_in="txt")
    tokenizer, _ = tokenizer_and_processor
    items = iter(_stream(pattern, tokenizer_and_processor, shuffle=False))
    first, second = next(items), next(items)
    assert [tokenizer.decode(item["caption_ids"][0][:-1]) for item in (first, second)] == [
        "a fine photo",
        "another photo",
    ]
    assert "sample 000000001 skipped" in caplog.text
    assert first[STREAM_POSITION] == (0, 0, 1, 0) and second[STREAM_POSITION] == (0, 0, 3, 1)  # 1 unreadable so far
    state = StreamState(num_processes=1, num_workers=0)
    state.used(CaptioningCollator(tokenizer_and_processor[1])([first, second]))
    assert state.unreadable() == 1


def test_a_streamed_caption_cut_at_max_target_length_is_named_once(
    tmp_path, tokenizer_and_processor, caplog, img2dataset_shard
):
    long = "a man's red-and-white kite, e.g. a 2-line stunt kite, caught in an oak tree's top branches at dusk"
    samples = [("000000000", _jpeg(1), ["a kite"]), ("000000001", _jpeg(2), [long]), ("000000002", _jpeg(3), [long])]
    pattern = img2dataset_shard(tmp_path / "long.tar", samples, caption_in="txt")
    tokenizer, _ = tokenizer_and_processor
    items = iter(_stream(pattern, tokenizer_and_processor, shuffle=False))
    cut = [next(items)["caption_ids"][0] for _ in range(3)][1:]
    assert all(len(ids) == 24 and ids[-1] == tokenizer.eos_token_id for ids in cut)
    assert caplog.text.count("longer than --max_target_length (24 tokens, EOS included)") == 1
    assert "sample 000000001: a caption longer" in caplog.text


def test_resuming_continues_each_workers_stream_in_the_dataloaders_turn(shards, tokenizer_and_processor):
    """Positions saved after 5 of 2 workers' batches: the resumed loader yields batches 6, 7, ... of the first."""
    pattern, _ = shards(4, 5)
    _, processor = tokenizer_and_processor

    def loader(stream):
        return torch.utils.data.DataLoader(
            stream, batch_size=3, num_workers=2, collate_fn=CaptioningCollator(processor)
        )

    uninterrupted = iter(loader(_stream(pattern, tokenizer_and_processor, shuffle_buffer_size=5)))
    batches = [next(uninterrupted) for _ in range(14)]
    state = StreamState(num_processes=1, num_workers=2)
    for batch in batches[:5]:
        state.used(batch)
    resumed_stream = _stream(pattern, tokenizer_and_processor, shuffle_buffer_size=5)
    resumed_stream.resume(json.loads(json.dumps(state.state_dict())), num_workers=2)
    resumed = iter(loader(resumed_stream))
    for expected in batches[5:]:
        got = next(resumed)
        assert torch.equal(got["pixel_values"], expected["pixel_values"])
        assert torch.equal(got["labels"], expected["labels"])
    with pytest.raises(DataSourceError, match="same"):
        resumed_stream.resume(state.state_dict(), num_workers=4)


def test_a_local_dataset_streams_through_the_hub_path(tmp_path, tokenizer_and_processor):
    folder = tmp_path / "imagefolder"
    folder.mkdir()
    with open(folder / "metadata.jsonl", "w") as f:
        for i in range(6):
            PIL.Image.open(io.BytesIO(_jpeg(i))).save(folder / f"{i}.jpg")
            f.write(json.dumps({"file_name": f"{i}.jpg", "captions": [f"photo {i}", CAPTIONS[0]]}) + "\n")
    tokenizer, processor = tokenizer_and_processor
    source = HubSource("imagefolder", "train", "image", "captions", data_dir=str(folder))
    firsts = []
    for reader in range(2):
        for sample in source.samples(epoch=0, seed=0, shuffle=True, reader=reader, readers=2):
            firsts.append(sample["captions"][0])
            assert isinstance(sample["image"], dict)  # not decoded yet: {"bytes", "path"}
    assert sorted(firsts) == [f"photo {i}" for i in range(6)]
    item = next(iter(StreamingCaptions(source, processor, tokenizer, max_target_length=24, captions_per_image=2)))
    assert item["pixel_values"].shape == (3, *[processor.size[k] for k in ("height", "width")])
    assert len(item["caption_ids"]) == 2
    with open(folder / "named.jsonl", "w") as f:  # a string column of file names under --image_root
        f.write(json.dumps({"path": "0.jpg", "text": "photo zero"}) + "\n")
        f.write(json.dumps({"path": "../outside.jpg", "text": "escapes the root"}) + "\n")
    named = HubSource(
        "json", "train", "path", "text", data_dir=None, image_root=str(folder), data_files=str(folder / "named.jsonl")
    )
    samples = list(named.samples(epoch=0, seed=0, shuffle=False, reader=0, readers=1))
    assert [(sample["image"], sample["captions"]) for sample in samples] == [(str(folder / "0.jpg"), "photo zero")]
    with pytest.raises(DataSourceError, match="--caption_column 'caption'"):
        HubSource("imagefolder", "train", "image", "caption", data_dir=str(folder))
