"""WebDataset tar shards in img2dataset's layout, for streaming training on sets too big for the Arrow cache.

Shard `{split}-{index:06d}.tar` holds the source's rows [index * n, (index + 1) * n), each as three files:
`KEY.jpg` (an upright RGB JPEG), `KEY.txt` (its captions, one per line) and `KEY.json` (key, captions, caption,
image_id, file_name, width, height). KEY is the row's index, zero-padded: unique across shards, and a shard's content
depends on its own rows only, so a rerun rewrites exactly the shards that are missing. Unreadable images and images
without captions are left out (keys then have gaps, as img2dataset's do) and listed in `shards.json`, which also holds
the samples per shard, the settings and the source.
"""

import concurrent.futures
import io
import json
import logging
import math
import multiprocessing
import os
import tarfile
import time
from dataclasses import asdict, dataclass, field

import PIL.Image

from ..errors import ArgumentError
from ..remote_code.images import ImageLoadError, load_rgb, open_image

logger = logging.getLogger(__name__)

MANIFEST = "shards.json"
PARTIAL = ".partial"  # a shard being written; renamed to its .tar name once complete
KEY_DIGITS = 9  # img2dataset's keys are 9 digits too
EXIF_ORIENTATION = 0x0112
READ_ERRORS = (ImageLoadError, OSError)


def sample_captions(meta: dict | None, text: str | bytes | None) -> list[str]:
    """A sample's captions: its json's "captions" list if present, else its "caption" string, else the lines of its
    .txt; each stripped, empty ones dropped. For any reader of the shards, so that all read the same captions."""
    meta = meta or {}
    text = text.decode("utf-8") if isinstance(text, bytes) else text or ""
    for captions in (meta.get("captions"), meta.get("caption"), text.splitlines()):
        captions = [captions] if isinstance(captions, str) else captions or []
        cleaned = [caption.strip() for caption in captions if isinstance(caption, str) and caption.strip()]
        if cleaned:
            return cleaned
    return []


def caption_lines(captions: list[str]) -> list[str]:
    """Captions as the lines of KEY.txt: a line break inside a caption (any that `str.splitlines` sees, so that
    `sample_captions` reads the same captions back) becomes a space."""
    lines = (" ".join(caption.splitlines()).strip() for caption in captions)
    return [line for line in lines if line]


@dataclass(frozen=True)
class ShardSettings:
    samples_per_shard: int = 1000
    resize: int | None = None  # shorter side in pixels; None keeps the size
    jpeg_quality: int = 90

    def __post_init__(self):
        if self.samples_per_shard < 1:
            raise ArgumentError(f"--samples_per_shard must be at least 1, not {self.samples_per_shard}")
        if self.resize is not None and self.resize < 1:
            raise ArgumentError(f"--resize must be at least 1 pixel, not {self.resize}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ArgumentError(f"--jpeg_quality must be between 1 and 100, not {self.jpeg_quality}")


def _passes_through(picture: PIL.Image.Image, settings: ShardSettings) -> bool:
    """Whether the file's own bytes can be the sample: already an RGB JPEG that needs no turning or shrinking
    (CMYK JPEGs are re-encoded, since many decoders show Adobe's inverted CMYK wrong)."""
    upright = _orientation(picture) == 1
    return settings.resize is None and picture.format == "JPEG" and picture.mode == "RGB" and upright


def _orientation(picture: PIL.Image.Image) -> int:
    return picture.getexif().get(EXIF_ORIENTATION, 1)


def _shown_size(picture: PIL.Image.Image) -> tuple[int, int]:
    """(width, height) as the picture is shown: EXIF orientations 5 to 8 turn it a quarter."""
    width, height = picture.size
    return (height, width) if _orientation(picture) in (5, 6, 7, 8) else (width, height)


def shrunk_size(size: tuple[int, int], shorter_side: int | None) -> tuple[int, int]:
    """`size` with its shorter side made `shorter_side`, the aspect ratio kept; never larger than `size`."""
    width, height = size
    scale = shorter_side / min(width, height) if shorter_side else 1.0
    return size if scale >= 1 else (max(1, round(width * scale)), max(1, round(height * scale)))


def _original_bytes(image) -> bytes:
    if isinstance(image, dict) and image.get("bytes"):
        return image["bytes"]
    with open(image["path"] if isinstance(image, dict) else image, "rb") as f:
        return f.read()


def jpeg_sample(image, settings: ShardSettings) -> tuple[bytes, int, int]:
    """(JPEG bytes, width, height) of `image` (a path, bytes or `datasets` {"bytes", "path"} dict) as written.

    Every image is decoded, so a truncated file fails here rather than in training; a file that passes through is
    decoded at 1/8 scale, which still reads all of its data. Raises ImageLoadError or OSError when unreadable."""
    picture = open_image(image)
    if _passes_through(picture, settings):
        width, height = picture.size
        load_rgb(picture, size=(1, 1))
        return _original_bytes(image), width, height
    icc_profile = picture.info.get("icc_profile")
    size = shrunk_size(_shown_size(picture), settings.resize)  # from the full size: a draft rounds it
    side = settings.resize
    rgb = load_rgb(picture, size=(side, side) if side else None)  # draft: JPEGs decode at a reduced scale >= side
    if rgb.size != size:
        rgb = rgb.resize(size, PIL.Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    # an RGB colour profile still describes the pixels; a CMYK or grey one would not after the conversion
    keep_profile = icc_profile if icc_profile and icc_profile[16:20] == b"RGB " else None
    rgb.save(buffer, "JPEG", quality=settings.jpeg_quality, icc_profile=keep_profile)
    return buffer.getvalue(), rgb.width, rgb.height


def _add_file(tar: tarfile.TarFile, name: str, data: bytes, mtime: float) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), mtime, 0o644
    tar.addfile(info, io.BytesIO(data))


@dataclass
class ShardPlan:
    """Which rows go to which shard, and where shards are written."""

    rows: object  # a `datasets.Dataset` in `sources.FEATURES` form
    output_dir: str
    split: str
    settings: ShardSettings

    @property
    def num_shards(self) -> int:
        return math.ceil(len(self.rows) / self.settings.samples_per_shard)

    def name(self, index: int) -> str:
        return f"{self.split}-{index:06d}.tar"

    def row_range(self, index: int) -> range:
        start = index * self.settings.samples_per_shard
        return range(start, min(start + self.settings.samples_per_shard, len(self.rows)))

    def key(self, row: int) -> str:
        return f"{row:0{max(KEY_DIGITS, len(str(len(self.rows) - 1)))}d}"


def write_shard(plan: ShardPlan, index: int, progress=None) -> dict:
    """Writes shard `index` under a temporary name, renamed once complete; returns its `shards.json` record. A shard
    left with no sample is not written (a reader that takes its features from the first shard would fail on it)."""
    record = {"index": index, "file": plan.name(index), "num_samples": 0, "size": 0}
    record |= {"bad_images": [], "without_captions": 0}
    final, mtime = os.path.join(plan.output_dir, plan.name(index)), time.time()
    rows = plan.row_range(index)
    with open(final + PARTIAL, "wb") as f:  # "wb" also replaces what a killed run left
        with tarfile.open(fileobj=f, mode="w") as tar:
            for row_index, row in zip(rows, plan.rows.select(rows)):
                if progress is not None:
                    progress.update()
                key, captions = plan.key(row_index), caption_lines(row["captions"])
                if not captions:  # nothing to train on
                    record["without_captions"] += 1
                    continue
                try:
                    files = _sample_files(key, row, captions, plan.settings)
                except READ_ERRORS as error:
                    record["bad_images"].append(_bad_image(key, row, error))
                    continue
                for name, data in files:
                    _add_file(tar, name, data, mtime)
                record["num_samples"] += 1
        f.flush()
        os.fsync(f.fileno())  # the rename below must never publish a shard whose bytes are not on disk
    if record["num_samples"]:
        os.replace(final + PARTIAL, final)
        record["size"] = os.path.getsize(final)
    else:
        os.remove(final + PARTIAL)
        record["file"] = None
    return record


def _sample_files(key: str, row: dict, captions: list[str], settings: ShardSettings) -> list[tuple[str, bytes]]:
    jpeg, width, height = jpeg_sample(row["image"], settings)
    meta = {"key": key, "captions": captions, "caption": captions[0], "image_id": row["image_id"]}
    meta.update(file_name=row["file_name"], width=width, height=height)
    return [
        (f"{key}.jpg", jpeg),
        (f"{key}.txt", "\n".join(captions).encode("utf-8")),
        (f"{key}.json", json.dumps(meta, ensure_ascii=False).encode("utf-8")),
    ]


def _bad_image(key: str, row: dict, error: Exception) -> dict:
    logger.warning("skipped unreadable image %s (%s): %s", row["image_id"], row["file_name"], error)
    return {"key": key, "image_id": row["image_id"], "file_name": row["file_name"], "error": str(error)}


def read_manifest(output_dir: str) -> dict:
    path = os.path.join(output_dir, MANIFEST)
    if not os.path.isfile(path):
        return {"format": "webdataset", "splits": {}}
    try:
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)  # written whole or not at all (write_manifest): never cut short by a kill
        problem = None if isinstance(manifest, dict) and isinstance(manifest.get("splits"), dict) else "no splits"
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        problem = error
    if problem is not None:
        raise ArgumentError(
            f"{path} is not one that vitgpt2 make-shards wrote ({problem}): give another --output_dir, or remove it"
        )
    return manifest


def write_manifest(output_dir: str, manifest: dict) -> None:
    path = os.path.join(output_dir, MANIFEST)
    with open(path + PARTIAL, "w", encoding="utf-8") as f:
        json.dump(manifest, f, ensure_ascii=False, indent=1)
    os.replace(path + PARTIAL, path)


def _complete(output_dir: str, record: dict) -> bool:
    """A shard recorded as written, whose file is still there at the size it was written with."""
    if record["file"] is None:
        return True
    path = os.path.join(output_dir, record["file"])
    return os.path.isfile(path) and os.path.getsize(path) == record["size"]


def _earlier_shards(plan: ShardPlan, source: dict, manifest: dict) -> dict[int, dict]:
    """Records of the shards an earlier run completed with the same source and settings. Shards written another way
    are deleted: mixed with the new ones, they would repeat or miss rows."""
    entry = manifest["splits"].get(plan.split)
    if entry is None:
        return {}
    if entry["source"] == source and entry["settings"] == asdict(plan.settings):
        return {record["index"]: record for record in entry["shards"] if _complete(plan.output_dir, record)}
    logger.warning(
        "%s shards in %s were written from %s with %s: rewriting them from %s with %s",
        plan.split, plan.output_dir, entry["source"], entry["settings"], source, asdict(plan.settings),
    )  # fmt: skip
    for record in entry["shards"]:
        if record["file"] and os.path.isfile(os.path.join(plan.output_dir, record["file"])):
            os.remove(os.path.join(plan.output_dir, record["file"]))
    return {}


@dataclass
class ShardsReport:
    output_dir: str
    split: str
    num_shards: int
    num_samples: int
    skipped_shards: int  # complete from an earlier run
    bad_images: list[dict] = field(default_factory=list)
    without_captions: int = 0


def write_shards(
    rows, output_dir: str, split: str, settings: ShardSettings, source: dict, num_workers: int = 1
) -> ShardsReport:
    """Writes `rows` (one per image, as `sources.load_split` gives them) as shards of `split` in `output_dir`, and
    their record in `output_dir/shards.json` after each shard; shards complete from an earlier run with the same
    `source` and `settings` are kept. With `num_workers` > 1, that many processes write shards side by side (each
    shard depends only on its own rows)."""
    from tqdm.auto import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    os.makedirs(output_dir, exist_ok=True)
    plan = ShardPlan(rows, output_dir, split, settings)
    manifest = read_manifest(output_dir)
    done = _earlier_shards(plan, source, manifest)
    entry = {"source": source, "settings": asdict(settings), "num_shards": plan.num_shards}
    manifest["splits"][split] = entry

    def record(complete: bool) -> None:
        shards = [done[index] for index in sorted(done)]
        entry.update(num_samples=sum(shard["num_samples"] for shard in shards), complete=complete, shards=shards)
        write_manifest(output_dir, manifest)

    record(complete=len(done) == plan.num_shards)
    if done:
        logger.info(
            "%d of %d %s shards already complete in %s: skipped", len(done), plan.num_shards, split, output_dir
        )
    todo = [index for index in range(plan.num_shards) if index not in done]
    images = sum(len(plan.row_range(index)) for index in todo)
    with logging_redirect_tqdm(), tqdm(total=images, unit="img", desc=f"{split} shards") as progress:
        if num_workers <= 1:
            for index in todo:
                done[index] = write_shard(plan, index, progress)
                record(complete=len(done) == plan.num_shards)
        else:
            # spawn: fresh interpreters, rather than forks of a process whose threads (tqdm's) hold locks
            context = multiprocessing.get_context("spawn")
            with concurrent.futures.ProcessPoolExecutor(num_workers, mp_context=context) as pool:
                running = {pool.submit(write_shard, plan, index): index for index in todo}
                for future in concurrent.futures.as_completed(running):
                    index = running[future]
                    done[index] = future.result()
                    progress.update(len(plan.row_range(index)))
                    record(complete=len(done) == plan.num_shards)
    return ShardsReport(
        output_dir=output_dir,
        split=split,
        num_shards=plan.num_shards,
        num_samples=entry["num_samples"],
        skipped_shards=plan.num_shards - len(todo),
        bad_images=[bad for shard in entry["shards"] for bad in shard["bad_images"]],
        without_captions=sum(shard["without_captions"] for shard in entry["shards"]),
    )
