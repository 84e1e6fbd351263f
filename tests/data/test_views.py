import numpy as np
import pytest

from vitgpt2.data.views import CaptionGroups, ImagesWithReferences


@pytest.fixture
def cache(cached_split):
    counts = [5, 3, 1]
    return cached_split([[f"image {i} caption {k}" for k in range(n)] for i, n in enumerate(counts)], ["a", "b", "c"])


@pytest.mark.parametrize("per_image, expected_items", [(1, 9), (2, 3 + 2 + 1), (5, 3)])
def test_every_caption_is_seen_exactly_once_per_epoch(cache, per_image, expected_items):
    view = CaptionGroups(cache, per_image)
    assert len(view) == expected_items and view.num_captions == 9
    seen = []
    for i in range(len(view)):
        item = view[i]
        assert item["pixel_values"].dtype == np.uint8
        assert 1 <= len(item["caption_ids"]) <= per_image
        image = int(item["pixel_values"][0, 0, 0])
        seen += [(image, ids[0]) for ids in item["caption_ids"]]
        assert all(ids[0] // 10 == image for ids in item["caption_ids"])  # captions stay with their image
    assert sorted(seen) == sorted((i, 10 * i + k) for i, n in enumerate([5, 3, 1]) for k in range(n))


def test_evaluation_view_has_one_item_per_image_with_all_references(cache):
    view = ImagesWithReferences(cache)
    assert len(view) == 3
    assert len(view[0]["caption_ids"]) == 5 and view[1]["image_index"] == 1
    assert view.metadata([2, 0])[0] == {
        "captions": ["image 2 caption 0"],
        "image_id": "c",
        "numeric_id": None,
        "file_name": "c.jpg",
    }


def test_captions_per_image_must_be_positive(cache):
    with pytest.raises(ValueError, match="at least 1"):
        CaptionGroups(cache, 0)
