"""Finding the checkpoint to resume from, never a half-written one.

The Trainer writes a checkpoint folder piece by piece (weights, optimizer, scheduler, RNG states) and
`trainer_state.json` last, so a run killed mid-save leaves a folder that `get_last_checkpoint` would
still pick. A checkpoint counts as complete only when its state file parses and its weights are there.
"""

import json
import logging
import os
import re

from .errors import UserError
from .lora import class_with_adapters

logger = logging.getLogger(__name__)


class DamagedCheckpoint(UserError, ValueError):
    """A checkpoint whose weights cannot be read."""


_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
# FSDP with SHARDED_STATE_DICT saves the weights as a folder of shards (FULL_STATE_DICT as model.safetensors).
_SHARDED_WEIGHTS = "pytorch_model_fsdp_0"


def _has_weights(checkpoint_dir: str) -> bool:
    if os.path.isdir(os.path.join(checkpoint_dir, _SHARDED_WEIGHTS)):
        return True
    return any(os.path.isfile(os.path.join(checkpoint_dir, name)) for name in _WEIGHTS)


def weights_damage(checkpoint_dir: str) -> str | None:
    """Why the checkpoint's safetensors weights cannot be read (truncated, corrupt), or None. Reads headers only."""
    from safetensors import safe_open

    names = ["model.safetensors"]
    index = os.path.join(checkpoint_dir, "model.safetensors.index.json")
    if os.path.isfile(index):
        with open(index, encoding="utf-8") as f:
            names = sorted(set(json.load(f).get("weight_map", {}).values()))
    for name in names:
        path = os.path.join(checkpoint_dir, name)
        if os.path.isfile(path) or os.path.isfile(index):
            try:
                with safe_open(path, framework="pt"):
                    pass
            except Exception as error:  # safetensors raises its own error type, or OSError for a missing shard
                return f"{name} cannot be read ({error})"
    return None


def is_complete(checkpoint_dir: str) -> bool:
    try:
        with open(os.path.join(checkpoint_dir, "trainer_state.json"), encoding="utf-8") as f:
            state = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    # A file that parses but is not a Trainer state (`{}`, `null`) does not count: the Trainer always writes its step.
    return isinstance(state, dict) and "global_step" in state and _has_weights(checkpoint_dir)


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
        if not (os.path.isdir(path) and is_complete(path)):
            logger.warning("ignoring incomplete checkpoint %s (interrupted while saving)", path)
        elif damage := weights_damage(path):
            logger.warning(
                "ignoring damaged checkpoint %s: %s; resuming from the one before it. Delete the folder, or pass "
                "--resume_from_checkpoint to choose one",
                path,
                damage,
            )
        else:
            return path
    return None


def load_model_weights(model, checkpoint_dir: str) -> None:
    """Loads a checkpoint's weights into `model` in place, every parameter or an error.

    transformers 5 saves some models (ViT among them) under their legacy parameter names and translates the
    names back only in `from_pretrained`. The Trainer's resume path loads the file with a plain
    `load_state_dict(strict=False)`, which leaves the encoder layers at their initial values with only a
    warning; loading through `from_pretrained` applies the translation (to a model built with the same LoRA
    adapters, when `model` has them).
    """
    if damage := weights_damage(checkpoint_dir):
        raise DamagedCheckpoint(
            f"checkpoint {checkpoint_dir} is damaged: {damage}. Resume from another one (--resume_from_checkpoint "
            "DIR), or delete this folder and run the same command again to resume from the last complete one"
        )
    saved, info = class_with_adapters(model).from_pretrained(checkpoint_dir, output_loading_info=True)
    problems = {key: sorted(info[key]) for key in ("missing_keys", "unexpected_keys", "mismatched_keys") if info[key]}
    if problems:
        raise ValueError(f"checkpoint {checkpoint_dir} does not match the model being trained: {problems}")
    current, weights = model.state_dict(), saved.state_dict()
    shapes = {
        key: f"checkpoint {tuple(value.shape)}, model {tuple(current[key].shape)}"
        for key, value in weights.items()
        if key in current and value.shape != current[key].shape
    }
    if shapes:
        hint = ""
        if any("wte" in key or "lm_head" in key for key in shapes):
            hint = " The vocabularies differ: resume with the --pad_vocab_to_multiple_of the run started with."
        raise ValueError(f"checkpoint {checkpoint_dir} does not match the model being trained: {shapes}.{hint}")
    model.load_state_dict(weights, strict=True)
