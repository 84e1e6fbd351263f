"""bench/bench_scaling.py runs end to end at tiny sizes; its images are written once, its caches kept apart."""

import os

import pytest
from test_bench_smoke import bench  # noqa: F401  (the fixture that imports a bench script)

TINY = ["--width", "160", "--height", "120", "--encoder_size", "32", "--num_proc", "2", "--train_batch_size", "4"]


def test_bench_scaling(bench, tmp_path):  # noqa: F811
    results = bench("bench_scaling").main(["--sizes", "40", "20", *TINY, "--work_dir", str(tmp_path)])
    assert results["sizes"] == [20, 40]
    assert [result["images"] for result in results["results"]] == [20, 40]
    for result in results["results"]:
        prep, view = result["preprocessing"], result["view"]
        assert prep["rows"] == view["rows"] == result["images"]
        assert prep["seconds"] > 0 and view["open_s"] > 0 and view["view_s"] > 0
        assert min(prep["rss_mb"], prep["worker_rss_mb"], prep["tree_pss_mb"], view["rss_mb"]) > 0
        assert view["batch"] == 4
        assert not os.path.exists(prep["cache_dir"])  # deleted once measured
    small, large = (result["preprocessing"] for result in results["results"])
    assert small["cache_dir"] != large["cache_dir"]
    assert 1.8 < large["bytes"] / small["bytes"] < 2.2  # twice the images, twice the uint8 pixels
    assert set(results["ratios"]) == {
        "images_per_s", "cpu_s_per_image", "cache_bytes_per_image", "peak_rss", "tree_pss", "view_start_s", "view_rss",
    }  # fmt: skip
    assert results["ratios"]["cache_bytes_per_image"] == pytest.approx(1, rel=0.1)


def test_images_are_written_once_and_grown(bench, tmp_path):  # noqa: F811
    scaling = bench("bench_scaling")
    root = str(tmp_path / "coco")
    scaling.grow_images(root, 3, 32, 24)
    first = os.stat(os.path.join(root, "train2017", "000000000001.jpg")).st_mtime_ns
    scaling.grow_images(root, 5, 32, 24)
    scaling.grow_images(root, 4, 32, 24)  # already there: nothing written
    assert os.stat(os.path.join(root, "train2017", "000000000001.jpg")).st_mtime_ns == first
    assert len(os.listdir(os.path.join(root, "train2017"))) == 5
    subset = scaling.subset_folder(root, str(tmp_path), 2)
    captions = scaling.read_captions_file(os.path.join(subset, "annotations", "captions_train2017.json"))
    assert [image["id"] for image in captions.images] == [1, 2]
    assert {annotation["image_id"] for annotation in captions.annotations} == {1, 2}
    assert len(captions.annotations) == 10
    assert os.path.realpath(os.path.join(subset, "train2017")) == os.path.realpath(os.path.join(root, "train2017"))
