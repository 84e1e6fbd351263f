"""The COCO captions file (`annotations/captions_{split}.json`): read and checked, or written."""

import json
import os
from dataclasses import dataclass

from .errors import DataSourceError


def captions_file(coco_dir: str, image_folder: str) -> str:
    """`<coco_dir>/annotations/captions_<image_folder>.json`, e.g. image_folder `train2017`."""
    return os.path.join(coco_dir, "annotations", f"captions_{image_folder}.json")


def read_json(path: str):
    if not os.path.isfile(path):
        raise DataSourceError(f"annotation file not found: {path}")
    try:
        # JSON is UTF-8 by standard; the locale's encoding (ASCII on a bare C locale) would break on non-ASCII
        # captions, and "-sig" also accepts the byte-order mark that some Windows tools write.
        with open(path, encoding="utf-8-sig") as f:
            return json.load(f)
    except json.JSONDecodeError as error:
        raise DataSourceError(f"annotation file {path} is not valid JSON: {error}") from error
    except UnicodeDecodeError as error:
        raise DataSourceError(f"annotation file {path} is not UTF-8 text: {error}; re-save it as UTF-8") from error


def dataset_description(path: str) -> str | None:
    """What a COCO captions file says it holds (its `info` block's description, e.g. "COCO 2017 Dataset"), or None
    for a file without one: a folder in COCO's layout is not necessarily COCO."""
    info = read_json(path).get("info") if os.path.isfile(path) else None
    description = info.get("description") if isinstance(info, dict) else None
    return (" ".join(str(description).split()) or None) if description else None


def entries(data, key: str, source: str, required: tuple[str, ...], hint: str) -> list[dict]:
    """`data[key]`, checked to be a list of objects that each hold `required`; errors name the entry."""
    found = data.get(key) if isinstance(data, dict) else None
    if not isinstance(found, list):
        raise DataSourceError(f"{source} has no {key!r} list: is it the right file ({hint})?")
    for index, entry in enumerate(found):
        missing = [name for name in required if not isinstance(entry, dict) or name not in entry]
        if missing:
            raise DataSourceError(f"{source}: {key}[{index}] lacks {missing}; each entry needs {list(required)}")
    return found


@dataclass
class CocoCaptions:
    images: list[dict]
    annotations: list[dict]

    def captions_by_image(self) -> dict[str, list]:
        """Captions of each image id (as a string, so "42" and 42 match), in file order; only ids with captions."""
        captions: dict[str, list] = {}
        for annotation in self.annotations:
            captions.setdefault(str(annotation["image_id"]), []).append(annotation["caption"])
        return captions


def read_captions_file(path: str) -> CocoCaptions:
    """The `images` and `annotations` of a COCO captions file, each entry checked to hold what captioning needs."""
    data = read_json(path)
    hint = "COCO captions_*.json"
    return CocoCaptions(
        images=entries(data, "images", path, ("id", "file_name"), hint),
        annotations=entries(data, "annotations", path, ("image_id", "caption"), hint),
    )


def write_captions_file(path: str, images: list[dict], annotations: list[dict], info: dict | None = None) -> str:
    """Writes a COCO captions file (UTF-8, non-ASCII kept as is) and returns its path."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    content = {"images": images, "annotations": annotations}
    if info is not None:
        content = {"info": info, **content}
    with open(path, "w", encoding="utf-8") as f:
        json.dump(content, f, ensure_ascii=False)
    return path
