"""The harder synthetic set: captions that say what is drawn, worded as differently as people word them."""

import random

import numpy as np
import pytest

from vitgpt2.offline import scenes
from vitgpt2.offline.synthetic import all_captions, write_synthetic_coco


def test_every_reference_names_only_what_is_drawn():
    rng = random.Random(0)
    for _ in range(300):
        scene = scenes.random_scene(rng)
        references = scenes.captions(scene, rng)
        assert len(references) == len(set(references)) == 5
        drawn = {thing.kind for thing in scene.things} | {thing.colour for thing in scene.things}
        for reference in references:
            words = set(reference.replace(",", "").split())
            assert words & set(scenes.OBJECTS) <= drawn and words & set(scenes.COLOURS) <= drawn, (scene, reference)
            assert words & set(scenes.OBJECTS), reference  # every reference names an object
            assert " a a" not in f" {reference}" and " a orange" not in f" {reference}"


def test_objects_sit_where_the_relation_says():
    rng = random.Random(1)
    for relation in scenes.RELATIONS:
        scene = scenes.Scene(
            "grass", (scenes.Thing("ball", "red", "large"), scenes.Thing("box", "blue", "small")), relation
        )
        pixels = np.asarray(scenes.draw_scene(scene, rng, size=96)).astype(int)
        red = np.argwhere((pixels[..., 0] > 180) & (pixels[..., 1] < 80) & (pixels[..., 2] < 80))
        blue = np.argwhere((pixels[..., 2] > 160) & (pixels[..., 0] < 80))
        (red_y, red_x), (blue_y, blue_x) = red.mean(axis=0), blue.mean(axis=0)
        expected = {"left": red_x < blue_x, "right": red_x > blue_x, "above": red_y < blue_y, "below": red_y > blue_y}
        assert expected[relation], (relation, red.mean(axis=0), blue.mean(axis=0))


def test_scenes_set_in_coco_layout_and_its_references_disagree(tmp_path):
    root = write_synthetic_coco(str(tmp_path), num_train=30, num_val=5, image_size=64, seed=3, kind="scenes")
    captions = all_captions(root)
    assert len(captions) == 150
    assert len(set(captions)) > 100  # five wordings per picture, rarely twice the same
    with pytest.raises(ValueError, match="choose one of"):
        write_synthetic_coco(str(tmp_path / "x"), 1, 1, kind="photos")
