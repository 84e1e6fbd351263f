"""Every data source reaches one form: one row per IMAGE with all of its captions.

Columns: `image` (a `datasets.Image(decode=False)` value: a path or the encoded bytes, decoded later, once,
at the encoder's size), `captions` (list of str), `image_id` (str), `numeric_id` (the source's id where it is an
integer, as COCO's are, else None: results files give ids back in the source's type) and `file_name` (str).
Sources: a COCO 2017 folder, a Karpathy split json over COCO 2014 images, a Hub dataset, an `imagefolder`.
"""

import logging
import numbers
import os
import urllib.parse
from collections import Counter, OrderedDict

import datasets
from datasets import Dataset, Features, Image, Sequence, Value
from datasets.exceptions import DatasetGenerationError

from .coco_json import captions_file, entries, read_captions_file, read_json
from .errors import DataSourceError

logger = logging.getLogger(__name__)

FEATURES = Features(
    {
        "image": Image(decode=False),
        "captions": Sequence(Value("string")),
        "image_id": Value("string"),
        "numeric_id": Value("int64"),
        "file_name": Value("string"),
        "captions_left_out": Value("int32"),  # null, empty or whitespace-only captions of the image
    }
)
COCO_SPLITS = {"train": "train2017", "validation": "val2017"}


def numeric_id(value) -> int | None:
    """The id itself when the source gives an integer (COCO, Karpathy's cocoid), else None."""
    return int(value) if isinstance(value, numbers.Integral) and not isinstance(value, bool) else None


def clean_captions(captions, where: str = "a caption") -> tuple[list[str], int]:
    """(the captions stripped, how many were left out): empty or whitespace-only ones (COCO has a few stray spaces
    and newlines) and nulls are left out and counted. Anything else that is not text is an error naming `where`: a
    number or a list would otherwise be trained on as the text "42" or "['a dog']"."""
    if captions is None or isinstance(captions, str):
        captions = [captions]
    cleaned = []
    for caption in captions:
        if caption is not None and not isinstance(caption, str):
            shown = repr(caption) if len(repr(caption)) <= 60 else repr(caption)[:57] + "..."
            raise DataSourceError(f"{where}: a caption must be text, not {type(caption).__name__} {shown}")
        if caption is not None and caption.strip():
            cleaned.append(" ".join(caption.split()))
    return cleaned, len(captions) - len(cleaned)


def safe_join(root: str, relative: str) -> str:
    """`root/relative`, refusing file names that leave `root` (absolute paths, `..`).

    The check is on the name, which comes from the dataset; links are the user's own filesystem and are
    followed (COCO folders whose train2014/ is a link to another disk are common).
    """
    root_abs = os.path.abspath(root)
    path = os.path.normpath(os.path.join(root_abs, relative))
    if os.path.commonpath([root_abs, path]) != root_abs:
        raise DataSourceError(f"image path {relative!r} points outside its image root {root!r}")
    return path


def local_image_path(image_root: str, name: str) -> str:
    """Where a dataset's file name or image URL lies under `image_root`.

    URL-only datasets (e.g. `http://images.cocodataset.org/train2017/000000391895.jpg`) point at files the user
    downloaded: the longest tail of the URL path that exists under the root wins (`train2017/0003...jpg`, then
    `0003...jpg`), so both a mirrored layout and a flat folder work. Without a match, the full tail is returned and
    preprocessing reports the missing file.
    """
    parsed = urllib.parse.urlparse(name)
    if parsed.scheme not in ("http", "https"):
        return safe_join(image_root, name)
    parts = [part for part in urllib.parse.unquote(parsed.path).split("/") if part]
    if not parts:
        raise DataSourceError(f"image URL {name!r} names no file")
    candidates = [safe_join(image_root, "/".join(parts[start:])) for start in range(len(parts))]
    return next((path for path in candidates if os.path.isfile(path)), candidates[0])


def _warn_count(count: int, message: str, examples) -> None:
    if count:
        logger.warning("%d %s (e.g. %s)", count, message, ", ".join(map(str, list(examples)[:3])))


def _coco_rows(annotation_file: str, image_dir: str, mtime: float):
    """Rows of one COCO captions json. `mtime` is unused here but part of the cache fingerprint.

    Ids are matched as strings, so a json written with "image_id": "42" still finds image 42.
    """
    coco = read_captions_file(annotation_file)
    images, captions = coco.images, coco.captions_by_image()
    ids = [str(image["id"]) for image in images]
    seen = set()
    for image_id, image in zip(ids, images):
        if image_id in seen:
            continue  # captions are merged by id already
        seen.add(image_id)
        cleaned, left_out = clean_captions(captions.get(image_id, []), f"{annotation_file}, image {image_id}")
        yield {
            "image": safe_join(image_dir, image["file_name"]),
            "captions": cleaned,
            "captions_left_out": left_out,
            "image_id": image_id,
            "numeric_id": numeric_id(image["id"]),
            "file_name": image["file_name"],
        }


def coco_left_out(annotation_file: str) -> dict[str, int]:
    """What a COCO captions file holds that no row can: annotations of image ids without an images entry, and
    repeated images entries (their captions are merged into the first). Logged, and returned as counts."""
    coco = read_captions_file(annotation_file)
    ids = [str(image["id"]) for image in coco.images]
    orphans = {str(annotation["image_id"]) for annotation in coco.annotations} - set(ids)
    orphan_annotations = sum(str(annotation["image_id"]) in orphans for annotation in coco.annotations)
    _warn_count(len(orphans), f"image ids in {annotation_file}'s annotations have no images entry: left out", orphans)
    repeated = [image_id for image_id, count in Counter(ids).items() if count > 1]
    _warn_count(len(repeated), f"image ids repeat in {annotation_file}'s images: the first entry is used", repeated)
    return {"annotations_left_out": orphan_annotations, "repeated_images": len(ids) - len(set(ids))}


def _from_rows(generator, gen_kwargs: dict, cache_dir: str | None) -> Dataset:
    # `from_generator` writes an on-disk Arrow table, so the `datasets.map` that follows is cached by fingerprint.
    try:
        return Dataset.from_generator(generator, gen_kwargs=gen_kwargs, features=FEATURES, cache_dir=cache_dir)
    except DatasetGenerationError as error:
        if isinstance(error.__cause__, DataSourceError):
            raise error.__cause__ from None  # the user's problem, not datasets': show our message alone
        raise


def load_coco(coco_dir: str, split: str, cache_dir: str | None = None) -> Dataset:
    """A split (`train` or `validation`) of a folder in the official COCO 2017 layout."""
    if split not in COCO_SPLITS:
        raise DataSourceError(f"COCO 2017 has captions for splits {sorted(COCO_SPLITS)}, not {split!r}")
    folder = COCO_SPLITS[split]
    annotation_file = captions_file(coco_dir, folder)
    image_dir = os.path.join(coco_dir, folder)
    for path in (annotation_file, image_dir):
        if not os.path.exists(path):
            raise DataSourceError(
                f"{path} not found: --coco_dir must hold annotations/captions_{{train,val}}2017.json, "
                "train2017/ and val2017/ as in the official COCO 2017 download"
            )
    kwargs = {"annotation_file": annotation_file, "image_dir": image_dir, "mtime": os.path.getmtime(annotation_file)}
    return _from_rows(_coco_rows, kwargs, cache_dir)


def _karpathy_rows(split_file: str, image_root: str, splits: tuple[str, ...], mtime: float):
    images = entries(read_json(split_file), "images", split_file, ("filename",), "Karpathy's dataset_coco.json")
    known = sorted({name for names in KARPATHY_SPLITS.values() for name in names})
    unknown = [f"{image['filename']} ({image.get('split')!r})" for image in images if image.get("split") not in known]
    if unknown:  # a typo would otherwise drop the image from every split without a word
        raise DataSourceError(
            f"{split_file}: {len(unknown)} images have a split that is none of {known}, e.g. {', '.join(unknown[:5])}"
        )
    for image in images:
        if image.get("split") not in splits:
            continue
        relative = os.path.join(image.get("filepath", ""), image["filename"])
        source_id = image.get("cocoid", image.get("imgid", image["filename"]))
        raw_captions = [sentence.get("raw", "") for sentence in image.get("sentences", [])]
        cleaned, left_out = clean_captions(raw_captions, f"{split_file}, image {source_id}")
        yield {
            "image": safe_join(image_root, relative),
            "captions": cleaned,
            "captions_left_out": left_out,
            "image_id": str(source_id),
            "numeric_id": numeric_id(source_id),
            "file_name": image["filename"],
        }


KARPATHY_SPLITS = {"train": ("train", "restval"), "validation": ("val",), "test": ("test",)}


def load_karpathy(split_file: str, image_root: str, split: str, cache_dir: str | None = None) -> Dataset:
    """Karpathy's split (`dataset_coco.json`) over COCO 2014 images; `restval` joins train."""
    kwargs = {
        "split_file": split_file,
        "image_root": image_root,
        "splits": KARPATHY_SPLITS[split],
        "mtime": os.path.getmtime(split_file) if os.path.exists(split_file) else 0.0,
    }
    return _from_rows(_karpathy_rows, kwargs, cache_dir)


def _check_columns(dataset: Dataset, wanted: dict[str, str | None], where: str) -> None:
    for option, column in wanted.items():
        if column is not None and column not in dataset.column_names:
            raise DataSourceError(
                f"--{option} {column!r} is not a column of {where}; its columns are {dataset.column_names}"
            )


def _group_captions(captions: list, image_ids: list) -> tuple[list[int], list[list[str]], list[int]]:
    """First row index, merged captions and captions left out of each distinct image id, in order of appearance."""
    groups: OrderedDict = OrderedDict()
    for row, (image_id, caption) in enumerate(zip(image_ids, captions)):
        first, merged, left_out = groups.setdefault(image_id, (row, [], [0]))
        cleaned, dropped = clean_captions(caption, f"the row of image {image_id}")
        merged.extend(cleaned)
        left_out[0] += dropped
    return (
        [first for first, _, _ in groups.values()],
        [merged for _, merged, _ in groups.values()],
        [left_out[0] for _, _, left_out in groups.values()],
    )


def to_image_rows(
    dataset: Dataset,
    image_column: str,
    caption_column: str,
    image_id_column: str | None = None,
    image_root: str | None = None,
    where: str = "the dataset",
) -> Dataset:
    """Converts a table with an image column and a caption column (str or list of str) to one row per image.

    Rows that share `image_id_column` (one row per caption, as many Hub copies of COCO have) are merged.
    A string image column holds file names, resolved against `image_root`.
    """
    _check_columns(
        dataset,
        {"image_column": image_column, "caption_column": caption_column, "image_id_column": image_id_column},
        where,
    )
    image_feature = dataset.features[image_column]
    if isinstance(image_feature, Image):
        dataset = dataset.cast_column(image_column, Image(decode=False))
    elif image_root is None:
        raise DataSourceError(
            f"column {image_column!r} of {where} holds {image_feature} rather than images: "
            "pass --image_root, the folder its file names are relative to"
        )
    captions = dataset[caption_column]
    if image_id_column is not None:
        first_rows, merged, left_out = _group_captions(captions, dataset[image_id_column])
        source_ids = [dataset[image_id_column][row] for row in first_rows]
    else:
        first_rows = list(range(len(dataset)))
        rows = [clean_captions(c, f"{where}, row {row}") for row, c in zip(first_rows, captions)]
        merged, left_out = [cleaned for cleaned, _ in rows], [count for _, count in rows]
        source_ids = first_rows
    image_ids = [str(source_id) for source_id in source_ids]
    dataset = dataset.select(first_rows)

    def convert(batch, indices):
        images = batch[image_column]
        if image_root is not None and not isinstance(image_feature, Image):
            images = [{"path": local_image_path(image_root, name), "bytes": None} for name in images]
        names = [
            os.path.basename((image or {}).get("path") or "") or image_ids[i] for image, i in zip(images, indices)
        ]
        return {
            "image": images,
            "captions": [merged[i] for i in indices],
            "image_id": [image_ids[i] for i in indices],
            "numeric_id": [numeric_id(source_ids[i]) for i in indices],
            "captions_left_out": [left_out[i] for i in indices],
            "file_name": names,
        }

    return dataset.map(
        convert,
        batched=True,
        with_indices=True,
        remove_columns=dataset.column_names,
        features=FEATURES,
        desc="grouping captions by image",
    )


def load_hub(
    name: str,
    split: str,
    image_column: str,
    caption_column: str,
    config_name: str | None = None,
    image_id_column: str | None = None,
    image_root: str | None = None,
    data_dir: str | None = None,
    cache_dir: str | None = None,
    **hub_kwargs,
) -> Dataset:
    """A split of a Hub dataset or of a local `imagefolder` (name="imagefolder", data_dir=...)."""
    try:
        dataset = datasets.load_dataset(
            name, config_name, data_dir=data_dir, split=split, cache_dir=cache_dir, **hub_kwargs
        )
    except ValueError as error:
        if "Unknown split" in str(error) or "split" in str(error).lower():
            raise DataSourceError(f"{name} has no split {split!r}: {error}") from error
        raise
    return to_image_rows(dataset, image_column, caption_column, image_id_column, image_root, where=f"{name}[{split}]")


def load_split(
    data_args, split: str, cache_dir: str | None = None, token: str | None = None
) -> tuple[Dataset, dict[str, int]]:
    """One split of whichever source `data_args` (a `DataArguments`) names, as one row per image, and the counts of
    what its source held that no row can (for the run's metrics)."""
    if data_args.karpathy_split_file is not None:
        return load_karpathy(data_args.karpathy_split_file, data_args.coco_dir, split, cache_dir), {}
    if data_args.coco_dir is not None:
        rows = load_coco(data_args.coco_dir, split, cache_dir)  # checks the folder first
        return rows, coco_left_out(captions_file(data_args.coco_dir, COCO_SPLITS[split]))
    name, data_dir = data_args.dataset_name, None
    if data_args.image_folder is not None:
        name, data_dir = "imagefolder", data_args.image_folder
    rows = load_hub(
        name,
        split,
        data_args.image_column,
        data_args.caption_column,
        config_name=data_args.dataset_config_name,
        image_id_column=data_args.image_id_column,
        image_root=data_args.image_root,
        data_dir=data_dir,
        cache_dir=cache_dir,
        token=token,
    )
    return rows, {}
