"""Disk space for checkpoints: a warning before training when it looks short, and a plain "no space left" when a save
fails for want of it (torch reports that as `RuntimeError: ... unexpected pos`)."""

import errno
import logging
import os
import shutil

from .errors import UserError

logger = logging.getLogger(__name__)

# A checkpoint holds the fp32 weights and AdamW's two fp32 moments of every trained parameter.
BYTES_PER_TRAINED_PARAMETER = 12
BYTES_PER_FROZEN_PARAMETER = 4
_FULL_DISK_MESSAGES = ("unexpected pos", "no space left", "file write failed")


class DiskFull(UserError, OSError):
    """A checkpoint could not be written because the disk is full."""


def checkpoint_bytes(model) -> int:
    """About how many bytes one checkpoint of `model` takes."""
    return sum(
        parameter.numel() * (BYTES_PER_TRAINED_PARAMETER if parameter.requires_grad else BYTES_PER_FROZEN_PARAMETER)
        for parameter in model.parameters()
    )


def free_bytes(folder: str) -> int:
    while not os.path.isdir(folder):  # the output folder may not exist yet: measure the disk it will be on
        folder = os.path.dirname(os.path.abspath(folder))
    return shutil.disk_usage(folder).free


def warn_if_short(output_dir: str, model, checkpoints: int | None) -> None:
    """Warns when the free space cannot hold `checkpoints` checkpoints (`--save_total_limit`; at least two)."""
    needed = checkpoint_bytes(model) * max(checkpoints or 2, 1)
    free = free_bytes(output_dir)
    if free < needed:
        logger.warning(
            "%s has %s bytes free, and %d checkpoints take about %s: the run may stop when the disk fills up "
            "(free space, or lower --save_total_limit)",
            output_dir,
            f"{free:,}",
            max(checkpoints or 2, 1),
            f"{needed:,}",
        )


def is_disk_full(error: BaseException) -> bool:
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        return True
    return isinstance(error, (OSError, RuntimeError)) and any(m in str(error).lower() for m in _FULL_DISK_MESSAGES)


def disk_full(error: BaseException, folder: str, model) -> DiskFull:
    return DiskFull(
        f"no space left on the disk of {folder} while saving a checkpoint: {free_bytes(folder):,} bytes free, a "
        f"checkpoint takes about {checkpoint_bytes(model):,}. Free space (or lower --save_total_limit) and run the same "
        f"command again: it resumes from the last complete checkpoint. ({error})"
    )
