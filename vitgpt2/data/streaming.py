"""Training data streamed from WebDataset shards (`--webdataset`) or a Hub dataset (`--streaming`), for datasets too
big for the uint8 cache: images are decoded (JPEG draft mode) and resized in the DataLoader's workers as they are
needed, behind a shuffle buffer, and nothing is written to disk.

Each process x DataLoader worker is one *reader*. In each epoch the readers split the data between them, so that every
sample is read once per epoch: whole shards where there are at least as many shards as readers, else every sample
index modulo the readers. The stream never ends (epoch after epoch, reshuffled): training runs for `--max_steps`.

Resuming is exact and decodes nothing it skips. Every batch carries where its worker's stream stands (epoch, items
pulled from its shuffle buffer, unreadable images skipped so far); the trainer keeps the position of the last batch of each worker that a step used and
saves it with the checkpoint. A resumed worker replays its stream to that position without decoding (the shuffle
buffer is refilled identically), and the workers take over in the turn the DataLoader would have reached, so that the
batches after the checkpoint are those of an uninterrupted run.
"""

import logging
import random
from collections.abc import Iterator
from itertools import count, islice

import torch
from datasets import Image, load_dataset
from datasets.distributed import split_dataset_by_node

from ..remote_code.images import encoder_resample, encoder_size
from .collator import STREAM_POSITION
from .errors import DataSourceError
from .preprocessing import decode_pixels, tokenize_captions
from .shard_reader import expand_shards, read_shard
from .sources import clean_captions, local_image_path
from .views import check_captions_per_image

logger = logging.getLogger(__name__)


class ShardSource:
    """Samples of local or remote tar shards; the shard order is reshuffled each epoch, the same on every reader."""

    def __init__(self, spec: str):
        self.spec, self.shards = spec, expand_shards(spec)

    def __repr__(self) -> str:
        return f"{len(self.shards)} WebDataset shard(s) ({self.spec})"

    def samples(self, epoch: int, seed: int, shuffle: bool, reader: int, readers: int) -> Iterator[dict]:
        order = list(self.shards)
        if shuffle:
            random.Random(seed + epoch).shuffle(order)
        if len(order) >= readers:
            for shard in order[reader::readers]:
                yield from read_shard(shard)
            return
        every = (read_shard(shard) for shard in order)
        yield from islice((sample for shard in every for sample in shard), reader, None, readers)


class HubSource:
    """Rows of a Hub dataset (or a local dataset folder) read with `streaming=True`: one row is one image."""

    def __init__(
        self, name, split, image_column, caption_column, config_name=None, data_dir=None, image_root=None, **hub_kwargs
    ):
        try:
            self.dataset = load_dataset(
                name, config_name, data_dir=data_dir, split=split, streaming=True, **hub_kwargs
            )
        except ValueError as error:
            raise DataSourceError(f"{name} has no split {split!r} to stream: {error}") from error
        columns = self.dataset.column_names or []
        for option, column in (("--image_column", image_column), ("--caption_column", caption_column)):
            if columns and column not in columns:
                raise DataSourceError(f"{option} {column!r} is not a column of {name}[{split}]; it has {columns}")
        if isinstance((self.dataset.features or {}).get(image_column), Image):
            self.dataset = self.dataset.cast_column(image_column, Image(decode=False))  # decoded by the readers
        self.name, self.image_column, self.caption_column = name, image_column, caption_column
        self.image_root = image_root  # where a string image column's file names (or URLs' tails) lie

    def __repr__(self) -> str:
        return f"{self.name}, streamed ({self.dataset.n_shards} shard(s))"

    def samples(self, epoch: int, seed: int, shuffle: bool, reader: int, readers: int) -> Iterator[dict]:
        dataset = self.dataset.shuffle(seed=seed, buffer_size=1) if shuffle else self.dataset  # the shard order
        dataset.set_epoch(epoch)
        dataset = split_dataset_by_node(dataset, rank=reader, world_size=readers)
        # `iter` rather than `for row in dataset`: inside a DataLoader worker, datasets would split the rows between
        # the workers a second time.
        for batch in dataset.iter(batch_size=64):
            for image, captions in zip(batch[self.image_column], batch[self.caption_column]):
                if isinstance(image, str) and self.image_root is not None:
                    try:
                        image = local_image_path(self.image_root, image)
                    except DataSourceError as error:  # a name that leaves the root: this row only
                        logger.warning("%s; skipped", error)
                        continue
                yield {"key": image if isinstance(image, str) else None, "image": image, "captions": captions}


def shuffled(items: Iterator, buffer_size: int, rng: random.Random) -> Iterator:
    """A shuffle buffer: each item out is drawn from the next `buffer_size` in (webdataset's and datasets' way)."""
    if buffer_size <= 1:
        yield from items
        return
    buffer = []
    for item in items:
        if len(buffer) < buffer_size:
            buffer.append(item)
            continue
        index = rng.randrange(buffer_size)
        buffer[index], item = item, buffer[index]
        yield item
    rng.shuffle(buffer)
    yield from buffer


class StreamingCaptions(torch.utils.data.IterableDataset):
    """Training items as `CaptionGroups` makes them (uint8 pixels, up to K caption id lists), from a stream.

    Call `set_topology` (processes, and this process's index) before the DataLoader starts, and `resume` with
    what `position` gave at the checkpoint to continue a run."""

    def __init__(
        self,
        source,
        image_processor,
        tokenizer,
        max_target_length: int,
        captions_per_image: int = 1,
        shuffle_buffer_size: int = 1000,
        shuffle: bool = True,
        seed: int = 42,
    ):
        check_captions_per_image(captions_per_image)
        self.source, self.tokenizer, self.max_target_length = source, tokenizer, max_target_length
        self.size, self.resample = encoder_size(image_processor), encoder_resample(image_processor)
        self.captions_per_image, self.shuffle_buffer_size = captions_per_image, shuffle_buffer_size
        self.shuffle, self.seed = shuffle, seed
        self.process_index, self.num_processes = 0, 1
        self.resumed: dict | None = None

    def set_topology(self, process_index: int, num_processes: int) -> None:
        self.process_index, self.num_processes = process_index, num_processes

    def resume(self, state: dict, num_workers: int) -> None:
        """Continue from a checkpoint's stream state (`StreamState.state_dict()` of this process)."""
        saved = max(1, state["num_workers"])
        if saved != max(1, num_workers) or state["num_processes"] != self.num_processes:
            raise DataSourceError(
                f"the checkpoint's stream was read by {state['num_processes']} process(es) x {saved} DataLoader "
                f"worker(s); resume with the same (now {self.num_processes} x {max(1, num_workers)}), "
                "or the batches after it would differ from an uninterrupted run's"
            )
        self.resumed = state

    def _groups(self, samples: Iterator[dict]) -> Iterator[tuple]:
        """(image, caption group) per training item, captions cleaned as the map-style path cleans them."""
        for sample in samples:
            try:
                captions = clean_captions(sample["captions"], where=f"sample {sample['key']}")[0]
            except DataSourceError as error:
                logger.warning("%s; skipped", error)
                continue
            for start in range(0, len(captions), self.captions_per_image):
                yield sample["key"], sample["image"], captions[start : start + self.captions_per_image]

    def _pulled(self, epoch: int, reader: int, readers: int) -> Iterator[tuple]:
        """The epoch's items of one reader in training order, not yet decoded."""
        samples = self.source.samples(epoch, self.seed, self.shuffle, reader, readers)
        rng = random.Random(f"{self.seed}-{epoch}-{reader}")
        return shuffled(self._groups(samples), self.shuffle_buffer_size if self.shuffle else 0, rng)

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        start_epoch, skip, unreadable, warned_cut = 0, 0, 0, False
        original = worker
        if self.resumed is not None:
            # The DataLoader asks its workers for batches in turn, starting again at worker 0: this worker serves the
            # turns that worker `original` served before, from where that one stood.
            original = (worker + self.resumed["batches"]) % workers
            position = self.resumed["positions"].get(str(original))
            if position is not None:
                start_epoch, skip, unreadable = position
        reader, readers = self.process_index * workers + original, self.num_processes * workers
        for epoch in count(start_epoch):
            pulled = 0
            for pulled, (key, image, captions) in enumerate(self._pulled(epoch, reader, readers), 1):
                if pulled <= skip:
                    continue
                pixels, error = decode_pixels(image, self.size, self.resample)
                if pixels is None:
                    unreadable += 1
                    logger.warning("sample %s skipped: %s", key, error)
                    continue
                caption_ids, cut = tokenize_captions(self.tokenizer, captions, self.max_target_length)
                if cut and not warned_cut:  # a stream has no end to count at: its first cut caption is named
                    warned_cut = True
                    logger.warning(
                        "sample %s: a caption longer than --max_target_length (%d tokens, EOS included) was cut "
                        "there; raise it to keep such captions whole (later ones are not logged)",
                        key,
                        self.max_target_length,
                    )
                yield {
                    "pixel_values": pixels,
                    "caption_ids": caption_ids,
                    STREAM_POSITION: (original, epoch, pulled, unreadable),
                }
            if pulled == 0:
                raise DataSourceError(
                    f"reader {reader} of {readers} (process x DataLoader worker) got no sample in epoch {epoch}: "
                    f"{self.source} holds fewer samples than readers"
                )
            skip = 0


class StreamState:
    """Where each DataLoader worker's stream stands after the batches that training steps used (one per process)."""

    def __init__(self, num_processes: int, num_workers: int):
        self.num_processes, self.num_workers = num_processes, num_workers
        self.batches, self.positions = 0, {}

    def load(self, state: dict) -> None:
        self.batches, self.positions = state["batches"], dict(state["positions"])

    def used(self, batch: dict) -> dict:
        """Notes the position a batch carries and returns the batch without it."""
        batch = dict(batch)
        worker, epoch, pulled, unreadable = batch.pop(STREAM_POSITION).tolist()
        self.positions[str(worker)] = [epoch, pulled, unreadable]
        self.batches += 1
        return batch

    def unreadable(self) -> int:
        """Unreadable images this process's workers skipped before the batches training used."""
        return sum(position[2] for position in self.positions.values())

    def state_dict(self) -> dict:
        return {
            "num_processes": self.num_processes,
            "num_workers": self.num_workers,
            "batches": self.batches,
            "positions": self.positions,
        }


def training_stream(data_args, image_processor, tokenizer, seed: int, **hub_kwargs) -> StreamingCaptions:
    """The streamed training data that `--webdataset` or `--streaming` (with `--dataset_name` or `--image_folder`)
    names (`data_args` is a `DataArguments`)."""
    if data_args.webdataset is not None:
        source = ShardSource(data_args.webdataset)
    else:
        name, data_dir = data_args.dataset_name, None
        if data_args.image_folder is not None:
            name, data_dir = "imagefolder", data_args.image_folder
        source = HubSource(
            name,
            data_args.train_split_name,
            data_args.image_column,
            data_args.caption_column,
            config_name=data_args.dataset_config_name,
            data_dir=data_dir,
            image_root=data_args.image_root,
            **hub_kwargs,
        )
    logger.info("Training data: %s", source)
    return StreamingCaptions(
        source,
        image_processor,
        tokenizer,
        data_args.max_target_length,
        captions_per_image=data_args.captions_per_image,
        shuffle_buffer_size=data_args.shuffle_buffer_size,
        seed=seed,
    )
