"""Who writes the datasets cache (vitgpt2.data.shared_cache): the rule, and its detection in two gloo processes taken
as two machines (a cache folder each, or one shared folder) and as one machine."""

import json
import os
import sys
import time
from datetime import timedelta
from types import SimpleNamespace

import datasets
import pytest
import torch.distributed as dist
import torch.multiprocessing as mp

from vitgpt2.data.shared_cache import MARKER_PREFIX, CacheWriters, cache_folder, writes_cache

WRITING_S = 0.3
# case: (each process's cache folder, each process's index on its machine)
CASES = {
    "own_disks": (("machine0", "machine1"), (0, 0)),
    "shared_folder": (("shared", "shared"), (0, 0)),
    "one_machine": (("local", "local"), (0, 1)),
}


def test_the_main_process_writes_a_shared_folder_and_each_machine_its_own():
    assert writes_cache(is_main=True, is_local_main=True, shares_main_folder=True)
    assert writes_cache(is_main=False, is_local_main=True, shares_main_folder=False)  # another machine's own disk
    assert not writes_cache(is_main=False, is_local_main=True, shares_main_folder=True)  # the main process's disk
    assert not writes_cache(is_main=False, is_local_main=False, shares_main_folder=False)  # its machine's first writes


def test_one_process_writes_without_a_process_group(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf"))
    assert cache_folder(None) == str(tmp_path / "hf")
    assert cache_folder("~/x") == os.path.join(os.path.expanduser("~"), "x")
    writers = CacheWriters.detect(SimpleNamespace(world_size=1), None)
    assert (writers.writes, writers.distributed) == (True, False)
    with writers.first("preprocessing"):  # no barrier: there is no process group to meet in
        pass


def _process(rank: int, root: str) -> None:
    if sys.platform == "linux":
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    dist.init_process_group(
        "gloo", init_method=f"file://{root}/store", rank=rank, world_size=2, timeout=timedelta(minutes=1)
    )
    results = {}
    for case, (folders, local_ranks) in CASES.items():
        args = SimpleNamespace(world_size=2, process_index=rank, local_process_index=local_ranks[rank])
        writers = CacheWriters.detect(args, os.path.join(root, case, folders[rank]))
        with writers.first(case):
            start = time.monotonic()  # CLOCK_MONOTONIC: one clock for the processes of a machine
            if writers.writes:
                time.sleep(WRITING_S)
            results[case] = {
                "shared": writers.shared,
                "writes": writers.writes,
                "start": start,
                "end": time.monotonic(),
            }
    with open(os.path.join(root, f"results{rank}.json"), "w") as f:
        json.dump(results, f)
    dist.barrier()
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def detected(tmp_path_factory):
    """(root, {case: [rank 0's, rank 1's] {shared, writes, start, end}})."""
    root = str(tmp_path_factory.mktemp("shared_cache"))
    mp.start_processes(_process, args=(root,), nprocs=2, start_method="spawn")
    results = []
    for rank in (0, 1):
        with open(os.path.join(root, f"results{rank}.json")) as f:
            results.append(json.load(f))
    return root, {case: [results[0][case], results[1][case]] for case in CASES}


def test_machines_with_their_own_disks_each_write_their_cache(detected):
    main, other = detected[1]["own_disks"]
    assert (main["shared"], main["writes"]) == (True, True)
    assert (other["shared"], other["writes"]) == (False, True)
    assert other["start"] < main["end"]  # at once: neither waits for the other


def test_a_folder_shared_with_the_main_process_is_written_by_it_alone(detected):
    main, other = detected[1]["shared_folder"]
    assert (main["writes"], other["shared"], other["writes"]) == (True, True, False)
    assert other["start"] >= main["end"]  # the other reads after the main process has written


def test_the_other_processes_of_a_machine_wait_for_its_first(detected):
    first, second = detected[1]["one_machine"]
    assert (first["writes"], second["writes"]) == (True, False)
    assert second["start"] >= first["end"]


def test_no_marker_is_left_behind(detected):
    root, _ = detected
    names = [name for _, _, files in os.walk(root) for name in files]
    assert not [name for name in names if name.startswith(MARKER_PREFIX)]
    assert os.path.isdir(os.path.join(root, "own_disks", "machine0"))  # the main process made its folder to mark it
