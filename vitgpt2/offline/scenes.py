"""A harder synthetic captioning set: objects with attributes, in places, in relation to each other.

Each picture shows one or two objects (ball, box, cone, star, ring, cross) of a colour and size, in one of six
places (grass, beach, snow, a room, a road, the night), the second one left of, right of, above or below the first.
Its five references are written the way people caption: each picks its own wording (big or large, a field or the
grass, beside or to the left of) and its own details (some leave out sizes, colours or the place). So even a model
that sees everything cannot match every reference, and which caption scores best against five such references is a
real question: cross-entropy training learns the spread of the wordings, while CIDEr rewards their consensus. This
is the set where self-critical training (`--scst`) has room to show what it does; the simpler shapes set
(`vitgpt2.offline.synthetic`) is learned almost perfectly and has none.
"""

import math
import random
from dataclasses import dataclass

import PIL.Image
import PIL.ImageDraw

COLOURS = {
    "red": (210, 40, 40),
    "blue": (40, 70, 200),
    "yellow": (240, 210, 30),
    "purple": (130, 50, 160),
    "orange": (245, 130, 20),
    "pink": (240, 130, 190),
    "black": (25, 25, 25),
    "white": (250, 250, 250),
}
OBJECTS = ("ball", "box", "cone", "star", "ring", "cross")
SIZES = {"small": ("small", "little", "small"), "large": ("large", "big", "large")}  # words people use, by frequency
PLACES = {
    "grass": ("on the grass", "in a field", "on a lawn", "on the grass", "in a grassy field"),
    "beach": ("on the beach", "on the sand", "on a sandy beach", "on the beach", "by the sea"),
    "snow": ("in the snow", "on a snowy field", "in the snow", "on the snow"),
    "room": ("in a room", "on a wooden floor", "indoors", "in a room", "on the floor of a room"),
    "road": ("on the road", "on a street", "on the road", "on an empty road"),
    "night": ("at night", "under the night sky", "at night", "in the dark"),
}
# Colours a place would hide (a white ball in the snow, a black box at night).
HIDDEN = {"snow": {"white"}, "night": {"black"}, "beach": {"yellow"}}
RELATIONS = {
    "left": ("to the left of", "left of", "next to", "beside", "to the left of"),
    "right": ("to the right of", "right of", "next to", "beside", "to the right of"),
    "above": ("above", "over", "above"),
    "below": ("below", "under", "beneath", "below"),
}
INVERSE = {"left": "right", "right": "left", "above": "below", "below": "above"}


@dataclass(frozen=True)
class Thing:
    kind: str
    colour: str
    size: str


@dataclass(frozen=True)
class Scene:
    place: str
    things: tuple[Thing, ...]
    relation: str | None = None  # things[0] <relation> things[1]


def _phrase(thing: Thing, rng: random.Random, size: bool = True, colour: bool = True) -> str:
    words = []
    if size:
        words.append(rng.choice(SIZES[thing.size]))
    if colour:
        words.append(thing.colour)
    words.append(thing.kind)
    return ("an " if words[0][0] in "aeiou" else "a ") + " ".join(words)


def _one_thing(scene: Scene, rng: random.Random) -> list:
    thing, place = scene.things[0], lambda: rng.choice(PLACES[scene.place])
    return [
        lambda: f"{_phrase(thing, rng)} {place()}",
        lambda: f"{_phrase(thing, rng, size=False)} {place()}",
        lambda: f"there is {_phrase(thing, rng)} {place()}",
        lambda: f"a picture of {_phrase(thing, rng, size=False)} {place()}",
        lambda: f"{_phrase(thing, rng, colour=False)} {place()}",
        lambda: f"{_phrase(thing, rng, size=False)} lying {place()}",
        lambda: f"{_phrase(thing, rng)}",
    ]


def _two_things(scene: Scene, rng: random.Random) -> list:
    first, second = scene.things
    place = lambda: rng.choice(PLACES[scene.place])  # noqa: E731
    relation = lambda: rng.choice(RELATIONS[scene.relation])  # noqa: E731
    inverse = lambda: rng.choice(RELATIONS[INVERSE[scene.relation]])  # noqa: E731
    return [
        lambda: f"{_phrase(first, rng)} {relation()} {_phrase(second, rng)} {place()}",
        lambda: f"{_phrase(first, rng, size=False)} {relation()} {_phrase(second, rng, size=False)} {place()}",
        lambda: f"{_phrase(second, rng, size=False)} {inverse()} {_phrase(first, rng, size=False)} {place()}",
        lambda: f"{_phrase(first, rng, size=False)} and {_phrase(second, rng, size=False)} {place()}",
        lambda: f"two objects {place()}, {_phrase(first, rng)} and {_phrase(second, rng)}",
        lambda: f"{_phrase(first, rng, colour=False)} {relation()} {_phrase(second, rng, colour=False)}",
        lambda: f"there is {_phrase(first, rng)} {relation()} {_phrase(second, rng)}",
        lambda: f"a {first.kind} and a {second.kind} {place()}",
    ]


def captions(scene: Scene, rng: random.Random, count: int = 5) -> list[str]:
    """`count` references, each from a different template, worded independently."""
    templates = _one_thing(scene, rng) if len(scene.things) == 1 else _two_things(scene, rng)
    return [template() for template in rng.sample(templates, count)]


def random_scene(rng: random.Random) -> Scene:
    place = rng.choice(list(PLACES))
    colours = [colour for colour in COLOURS if colour not in HIDDEN.get(place, ())]
    count = 1 if rng.random() < 0.3 else 2
    things = []
    while len(things) < count:
        thing = Thing(rng.choice(OBJECTS), rng.choice(colours), rng.choice(list(SIZES)))
        if all(thing.kind != other.kind or thing.colour != other.colour for other in things):
            things.append(thing)  # two objects that look alike would make "the left one" meaningless
    relation = rng.choice(list(RELATIONS)) if count == 2 else None
    return Scene(place, tuple(things), relation)


def _draw_place(draw: PIL.ImageDraw.ImageDraw, place: str, size: int, rng: random.Random) -> None:
    horizon = int(size * rng.uniform(0.35, 0.45))
    sky = (150, 200, 240)
    if place == "grass":
        draw.rectangle((0, 0, size, horizon), fill=sky)
        draw.rectangle((0, horizon, size, size), fill=(70, 150, 60))
    elif place == "beach":
        draw.rectangle((0, 0, size, horizon), fill=sky)
        draw.rectangle((0, horizon, size, horizon + size // 8), fill=(30, 100, 170))
        draw.rectangle((0, horizon + size // 8, size, size), fill=(225, 200, 150))
    elif place == "snow":
        draw.rectangle((0, 0, size, horizon), fill=(190, 195, 205))
        draw.rectangle((0, horizon, size, size), fill=(235, 240, 248))
    elif place == "room":
        draw.rectangle((0, 0, size, horizon), fill=(225, 210, 180))
        draw.rectangle((0, horizon, size, size), fill=(140, 90, 50))
        for y in range(horizon + 6, size, 8):
            draw.line((0, y, size, y), fill=(110, 70, 40))
    elif place == "road":
        draw.rectangle((0, 0, size, horizon), fill=sky)
        draw.rectangle((0, horizon, size, size), fill=(95, 95, 100))
        middle = (horizon + size) // 2
        for x in range(0, size, 12):
            draw.rectangle((x, middle - 1, x + 6, middle + 1), fill=(240, 240, 240))
    else:  # night
        draw.rectangle((0, 0, size, size), fill=(15, 20, 60))
        for _ in range(12):
            x, y = rng.randrange(size), rng.randrange(horizon)
            draw.point((x, y), fill=(255, 255, 230))


def _draw_thing(draw: PIL.ImageDraw.ImageDraw, thing: Thing, cx: int, cy: int, radius: int) -> None:
    colour = COLOURS[thing.colour]
    box = (cx - radius, cy - radius, cx + radius, cy + radius)
    outline = (60, 60, 60) if thing.colour == "white" else None
    if thing.kind == "ball":
        draw.ellipse(box, fill=colour, outline=outline)
    elif thing.kind == "box":
        draw.rectangle(box, fill=colour, outline=outline)
    elif thing.kind == "cone":
        draw.polygon([(cx, cy - radius), (cx - radius, cy + radius), (cx + radius, cy + radius)], fill=colour)
    elif thing.kind == "star":
        points = []
        for k in range(10):
            r = radius if k % 2 == 0 else radius * 0.45
            angle = -math.pi / 2 + k * math.pi / 5
            points.append((cx + r * math.cos(angle), cy + r * math.sin(angle)))
        draw.polygon(points, fill=colour)
    elif thing.kind == "ring":
        draw.ellipse(box, outline=colour, width=max(2, radius // 3))
    else:  # cross
        arm = max(2, radius // 3)
        draw.rectangle((cx - arm, cy - radius, cx + arm, cy + radius), fill=colour)
        draw.rectangle((cx - radius, cy - arm, cx + radius, cy + arm), fill=colour)


def draw_scene(scene: Scene, rng: random.Random, size: int = 96) -> PIL.Image.Image:
    """The place as a background, then the objects: side by side for left/right, stacked for above/below."""
    image = PIL.Image.new("RGB", (size, size))
    draw = PIL.ImageDraw.Draw(image)
    _draw_place(draw, scene.place, size, rng)
    radii = [int(size * (0.19 if thing.size == "large" else 0.11)) for thing in scene.things]
    jitter = lambda: rng.randint(-size // 24, size // 24)  # noqa: E731
    if len(scene.things) == 1:
        centres = [(size // 2 + 2 * jitter(), int(size * 0.62) + jitter())]
    elif scene.relation in ("left", "right"):
        row = int(size * 0.64) + jitter()
        left, right = (size * 0.26 + jitter(), size * 0.74 + jitter())
        first, second = (left, right) if scene.relation == "left" else (right, left)
        centres = [(int(first), row), (int(second), row)]
    else:
        column = size // 2 + 2 * jitter()
        top, bottom = (size * 0.26 + jitter(), size * 0.74 + jitter())
        first, second = (top, bottom) if scene.relation == "above" else (bottom, top)
        centres = [(column, int(first)), (column, int(second))]
    for thing, (cx, cy), radius in zip(scene.things, centres, radii):
        _draw_thing(draw, thing, cx, cy, radius)
    return image
