"""Finding the checkpoint to resume from, never a half-written one.

The Trainer writes a checkpoint folder piece by piece (weights, optimizer, scheduler, RNG states) and
`trainer_state.json` last, so a run killed mid-save leaves a folder that `get_last_checkpoint` would
still pick. A checkpoint counts as complete only when its state file parses and its weights are there.
"""

import json
import logging
import os
import re

logger = logging.getLogger(__name__)

_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


def is_complete(checkpoint_dir: str) -> bool:
    try:
        with open(os.path.join(checkpoint_dir, "trainer_state.json")) as f:
            json.load(f)
    except (OSError, json.JSONDecodeError):
        return False
    return any(os.path.isfile(os.path.join(checkpoint_dir, name)) for name in _WEIGHTS)


def last_complete_checkpoint(output_dir: str) -> str | None:
    """The highest-step complete `checkpoint-N` folder in `output_dir`, or None."""
    if not os.path.isdir(output_dir):
        return None
    steps = sorted(
        ((int(match.group(1)), name) for name in os.listdir(output_dir) if (match := _CHECKPOINT.match(name))),
        reverse=True,
    )
    for _, name in steps:
        path = os.path.join(output_dir, name)
        if os.path.isdir(path) and is_complete(path):
            return path
        logger.warning("ignoring incomplete checkpoint %s (interrupted while saving)", path)
    return None
