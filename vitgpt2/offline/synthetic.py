"""A synthetic captioning set in the COCO 2017 layout, whose captions follow from what is drawn.

Each scene holds one to three shapes of one kind and colour, in a row or column along one edge. Five
differently worded references name the count, colour, shape and side, so a captioner that learns to see
scores far above one that writes the same caption for every image (README gives both figures).
"""

import os
import random
from collections.abc import Callable
from dataclasses import dataclass

import PIL.Image
import PIL.ImageDraw
from tqdm.auto import tqdm

from ..data.coco_json import captions_file, read_captions_file, write_captions_file
from . import scenes

COLOURS = {"red": (214, 39, 40), "green": (44, 160, 44), "blue": (31, 119, 180), "yellow": (238, 200, 20)}
SHAPES = ("circle", "square", "triangle")
SIDES = ("left", "right", "top", "bottom")
COUNT_WORDS = {1: "one", 2: "two", 3: "three"}
TEMPLATES = (
    "{article} {colour} {shape} on the {side}",
    "{count} {colour} {shape} {verb} on the {side} side of the image",
    "a picture with {count} {colour} {shape} at the {side}",
    "there {verb} {count} {shape} coloured {colour} on the {side}",
    "{count} {shape} in {colour} near the {side} edge",
)


@dataclass(frozen=True)
class Scene:
    shape: str
    colour: str
    count: int
    side: str

    def captions(self) -> list[str]:
        plural = self.count > 1
        words = {
            "article": "a" if not plural else COUNT_WORDS[self.count],
            "count": COUNT_WORDS[self.count],
            "colour": self.colour,
            "shape": self.shape + ("s" if plural else ""),
            "verb": "are" if plural else "is",
            "side": self.side,
        }
        return [template.format(**words) for template in TEMPLATES]


def random_scene(rng: random.Random) -> Scene:
    return Scene(rng.choice(SHAPES), rng.choice(list(COLOURS)), rng.randint(1, 3), rng.choice(SIDES))


# Where shapes sit along their side, as fractions of the picture: a row (top, bottom) or a column (left, right).
SLOTS = {1: (0.5,), 2: (0.3, 0.7), 3: (0.18, 0.5, 0.82)}


def shape_centres(scene: Scene, rng: random.Random, size: int, radius: int) -> list[tuple[int, int]]:
    """Centres along the named edge, so the side is never ambiguous (a corner is neither left nor top)."""
    centres = []
    for fraction in SLOTS[scene.count]:
        along = int(fraction * size) + rng.randint(-3, 3)
        across = radius + 2 + rng.randint(0, radius)
        if scene.side in ("right", "bottom"):
            across = size - 1 - across
        centres.append((across, along) if scene.side in ("left", "right") else (along, across))
    return centres


def draw_scene(scene: Scene, rng: random.Random, size: int = 96) -> PIL.Image.Image:
    """Draws the scene on a lightly tinted background; shapes do not overlap."""
    tint = tuple(rng.randint(200, 245) for _ in range(3))
    image = PIL.Image.new("RGB", (size, size), tint)
    draw = PIL.ImageDraw.Draw(image)
    radius = size // 10
    colour = COLOURS[scene.colour]
    for cx, cy in shape_centres(scene, rng, size, radius):
        box = (cx - radius, cy - radius, cx + radius, cy + radius)
        if scene.shape == "circle":
            draw.ellipse(box, fill=colour)
        elif scene.shape == "square":
            draw.rectangle(box, fill=colour)
        else:
            draw.polygon([(cx, cy - radius), (cx - radius, cy + radius), (cx + radius, cy + radius)], fill=colour)
    return image


@dataclass(frozen=True)
class SceneSet:
    """How one kind of synthetic picture is drawn at random, drawn, and captioned."""

    random_scene: Callable[[random.Random], object]
    draw: Callable[[object, random.Random, int], PIL.Image.Image]
    captions: Callable[[object, random.Random], list[str]]


SCENE_SETS = {
    "shapes": SceneSet(random_scene, draw_scene, lambda scene, rng: scene.captions()),
    "scenes": SceneSet(scenes.random_scene, scenes.draw_scene, scenes.captions),
}


def write_split(
    root: str,
    split: str,
    num_images: int,
    rng: random.Random,
    image_size: int,
    first_id: int,
    kind: str = "shapes",
) -> str:
    """Writes `<root>/<split>2017/*.jpg` and `<root>/annotations/captions_<split>2017.json`."""
    scene_set = SCENE_SETS[kind]
    image_dir = os.path.join(root, f"{split}2017")
    os.makedirs(image_dir, exist_ok=True)
    images, annotations = [], []
    for offset in tqdm(range(num_images), desc=f"synthetic {split}", leave=False):
        image_id = first_id + offset
        scene = scene_set.random_scene(rng)
        file_name = f"{image_id:012d}.jpg"
        scene_set.draw(scene, rng, image_size).save(os.path.join(image_dir, file_name), quality=92)
        images.append({"id": image_id, "file_name": file_name, "width": image_size, "height": image_size})
        for k, caption in enumerate(scene_set.captions(scene, rng)):
            annotations.append({"id": image_id * 10 + k, "image_id": image_id, "caption": caption})
    info = {"description": f"vitgpt2 synthetic {kind}"}
    return write_captions_file(captions_file(root, f"{split}2017"), images, annotations, info=info)


def write_synthetic_coco(
    root: str, num_train: int = 2000, num_val: int = 200, image_size: int = 96, seed: int = 0, kind: str = "shapes"
) -> str:
    """Writes a COCO-2017-layout captioning set under `root` and returns `root`. `kind` is "shapes" (this module's
    set, learned almost perfectly) or "scenes" (`vitgpt2.offline.scenes`: objects, places, relations, and
    references that disagree in wording, as people's do)."""
    if kind not in SCENE_SETS:
        raise ValueError(f"unknown synthetic set {kind!r}; choose one of {list(SCENE_SETS)}")
    rng = random.Random(seed)
    write_split(root, "train", num_train, rng, image_size, first_id=1, kind=kind)
    write_split(root, "val", num_val, rng, image_size, first_id=1_000_000, kind=kind)
    return root


def all_captions(root: str, split: str = "train") -> list[str]:
    return [
        annotation["caption"] for annotation in read_captions_file(captions_file(root, f"{split}2017")).annotations
    ]
