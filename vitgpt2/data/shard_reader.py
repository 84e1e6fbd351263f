"""Reading WebDataset tar shards in the img2dataset layout: `KEY.jpg` (or .jpeg, .png, .webp) with `KEY.txt` and/or
`KEY.json` per sample, the files of a sample next to each other in the tar.

Shards are named by a path, a folder (its `*.tar`), a glob, or a brace pattern (`coco-{000000..000099}.tar`,
`{train,extra}/shard-{00..09}.tar`), several separated by spaces or commas; remote URLs (`s3://`, `https://`,
`hf://`) go through fsspec, which reads them as a stream: nothing is copied to the local disk.
"""

import glob
import json
import logging
import os
import re
import tarfile
from collections.abc import Iterator

import fsspec

from .errors import DataSourceError
from .shards import sample_captions

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")
SHARD_SUFFIXES = (".tar", ".tar.gz", ".tgz")  # tarfile reads compressed shards as a stream too
_RANGE = re.compile(r"^(\d+)\.\.(\d+)$")
_BRACES = re.compile(r"\{([^{}]*)\}")
# webdataset's rule: the key is the path up to the first dot of the file name, the rest is the extension.
_KEY_AND_EXTENSION = re.compile(r"^((?:.*/|)[^./][^.]*)\.([^/]*)$")


def expand_braces(pattern: str) -> list[str]:
    """`a{1..3}b` -> a1b a2b a3b (zero padding kept: `{08..10}` -> 08 09 10), `{x,y}` -> x y, innermost first."""
    match = _BRACES.search(pattern)
    if match is None:
        return [pattern]
    body, head, tail = match.group(1), pattern[: match.start()], pattern[match.end() :]
    numbers = _RANGE.match(body)
    if numbers:
        first, last = numbers.groups()
        width = len(first) if first.startswith("0") or len(first) == len(last) else 0
        step = 1 if int(last) >= int(first) else -1
        choices = [str(n).zfill(width) for n in range(int(first), int(last) + step, step)]
    else:
        choices = body.split(",")
    return [expanded for choice in choices for expanded in expand_braces(head + choice + tail)]


def _is_remote(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def expand_shards(spec: str) -> list[str]:
    """The shard paths or URLs that `spec` names, in order. Local ones must exist (named in the error if not)."""
    shards = []
    for part in filter(None, re.split(r"[\s,]+(?![^{]*\})", spec.strip())):
        for path in expand_braces(part):
            if _is_remote(path):
                shards.append(path)
            elif os.path.isdir(path):
                found = sorted(p for suffix in SHARD_SUFFIXES for p in glob.glob(os.path.join(path, "*" + suffix)))
                if not found:
                    raise DataSourceError(
                        f"--webdataset: the folder {path} holds no shards ({', '.join(SHARD_SUFFIXES)})"
                    )
                shards += found
            elif glob.has_magic(path):
                found = sorted(glob.glob(path))
                if not found:
                    raise DataSourceError(f"--webdataset: no shard matches {path}")
                shards += found
            elif not os.path.isfile(path):
                raise DataSourceError(f"--webdataset: shard not found: {path}")
            else:
                shards.append(path)
    if not shards:
        raise DataSourceError(f"--webdataset {spec!r} names no shards")
    return shards


def _sample(key: str, files: dict[str, bytes], shard: str) -> dict | None:
    """{"key", "image" (bytes), "captions"} of one sample, or None (logged) when it has no image or no caption."""
    image = next((files[ext] for ext in IMAGE_EXTENSIONS if ext in files), None)
    try:
        meta = json.loads(files["json"]) if "json" in files else None
        text = files["txt"].decode("utf-8") if "txt" in files else None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        logger.warning("%s: sample %s skipped: unreadable caption file (%s)", shard, key, error)
        return None
    captions = sample_captions(meta if isinstance(meta, dict) else None, text)
    if image is None or not captions:
        what = "no image (.jpg, .jpeg, .png or .webp)" if image is None else "no caption (.txt or .json)"
        logger.warning("%s: sample %s skipped: %s", shard, key, what)
        return None
    return {"key": key, "image": image, "captions": captions}


def read_shard(shard: str) -> Iterator[dict]:
    """The samples of one shard, read as a stream. A shard that breaks off (truncated, not a tar) is logged and
    ends there: the samples read before it stay in training."""
    key, files = None, {}
    try:
        with fsspec.open(shard, "rb") as stream, tarfile.open(fileobj=stream, mode="r|*") as tar:
            for member in tar:
                named = _KEY_AND_EXTENSION.match(member.name) if member.isfile() else None
                if named is None:  # folders, and names without an extension or hidden (._ of macOS)
                    continue
                if named.group(1) != key:
                    if files and (sample := _sample(key, files, shard)) is not None:
                        yield sample
                    key, files = named.group(1), {}
                files[named.group(2).lower()] = tar.extractfile(member).read()
    except (tarfile.TarError, OSError, EOFError) as error:
        logger.warning("%s: unreadable from sample %s on (%s); going on with the next shard", shard, key, error)
        return
    if files and (sample := _sample(key, files, shard)) is not None:
        yield sample
