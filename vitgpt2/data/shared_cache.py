"""Which processes write the datasets cache (source tables, the uint8 pixel cache, encoder features) on several
machines, while the others wait for it and then read it.

`TrainingArguments.main_process_first()` lets the first process of EACH machine write (`local=True`): right when
each machine caches on its own disk, but where the machines share one folder (NFS, a cluster file system) all of
them compute and write the same Arrow files at once. `local=False` (the global main process only) is right for a
shared folder, but on separate disks it leaves the other machines to wait, then build their caches one process at a
time each. Which one holds is a fact about the file systems, so it is found out rather than asked for: the main
process writes a marker file, named anew for each run, into its cache folder; a process that sees it in its own
cache folder shares the main process's disk and waits for the main process; a machine that does not see it writes
its own cache (its first process, the others on it waiting), as it must.
"""

import logging
import os
import uuid
from contextlib import contextmanager
from dataclasses import dataclass

import datasets
import torch.distributed as dist

logger = logging.getLogger(__name__)

MARKER_PREFIX = ".vitgpt2-shared-cache-"


def cache_folder(cache_dir: str | None) -> str:
    """Where `datasets` writes this process's caches: `--cache_dir`, else HF_DATASETS_CACHE."""
    return os.path.abspath(os.path.expanduser(cache_dir or datasets.config.HF_DATASETS_CACHE))


def writes_cache(is_main: bool, is_local_main: bool, shares_main_folder: bool) -> bool:
    """The rule: the main process writes the folder it shares with others; a machine with a folder of its own has
    its first process write it."""
    return is_main or (is_local_main and not shares_main_folder)


@dataclass(frozen=True)
class CacheWriters:
    """This process's part: whether it writes the cache (`writes`) or waits for a writer, and whether its cache
    folder is the main process's (`shared`)."""

    folder: str
    writes: bool = True
    shared: bool = True
    distributed: bool = False

    @classmethod
    def detect(cls, training_args, cache_dir: str | None) -> "CacheWriters":
        """Every process must call this (it meets the others); a single process writes without asking."""
        folder = cache_folder(cache_dir)
        if training_args.world_size == 1:
            return cls(folder)
        is_main = training_args.process_index == 0
        shared = _sees_main_marker(folder, is_main)
        writes = writes_cache(is_main, training_args.local_process_index == 0, shared)
        logger.info(
            "Dataset cache %s: %s; this process %s",
            folder,
            "shared with the main process" if shared else "this machine's own",
            "writes it" if writes else "waits, then reads it",
        )
        return cls(folder, writes, shared, distributed=True)

    @contextmanager
    def first(self, desc: str = "work"):
        """Runs the block on the writers first; the others run it after every writer is done (and read the cache).
        Each process meets the others at exactly one barrier, before the block or after it."""
        if not self.distributed:
            yield
            return
        if not self.writes:
            logger.debug("waiting for the cache writers: %s", desc)
            dist.barrier()
        try:
            yield
        finally:
            if self.writes:
                dist.barrier()


def _sees_main_marker(folder: str, is_main: bool) -> bool:
    # A fresh name each run: no stale file, and no cached "not found" on a network file system, answers for it.
    name = [f"{MARKER_PREFIX}{uuid.uuid4().hex}" if is_main else None]
    dist.broadcast_object_list(name, src=0)
    marker = os.path.join(folder, name[0])
    if is_main:
        os.makedirs(folder, exist_ok=True)
        with open(marker, "w") as f:
            f.write("written by the main process to find which processes share this folder; removed at once\n")
    dist.barrier()
    shared = os.path.exists(marker)
    dist.barrier()  # everyone has looked
    if is_main:
        os.remove(marker)
    return shared
