"""FSDP2 (`torch.distributed.fsdp.fully_shard`) on the captioner, wrapped as configs/accelerate/fsdp.yaml asks, and
the saves that go with it: a full `model.safetensors` for `from_pretrained` and the pipeline, and a sharded training
checkpoint (model and optimizer) to resume from.

accelerate runs FSDP only on GPUs (on the CPU it falls back to DDP, `vitgpt2.parallelism`), while torch's
`fully_shard` runs anywhere torch.distributed does, CPU processes with gloo included; applied directly, the sharding
accelerate would do can be run and tested on a CPU machine (tests/test_fsdp2.py).
"""

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_state_dict,
    set_state_dict,
)
from torch.distributed.fsdp import FSDPModule, fully_shard

FSDP_CONFIG = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "accelerate", "fsdp.yaml"
)


@dataclass(frozen=True)
class Wrapping:
    """What an accelerate FSDP config asks of the sharding: each module of these classes a unit of its own."""

    layer_classes: tuple[str, ...]
    reshard_after_forward: bool


def config_wrapping(config_file: str = FSDP_CONFIG) -> Wrapping:
    """The wrapping an accelerate FSDP2 config file asks for, read with accelerate's own loader (the repository's
    configs/accelerate/fsdp.yaml by default, so the sharding here cannot drift from what users launch with)."""
    from accelerate.commands.config.config_args import load_config_from_file

    if not os.path.isfile(config_file):
        raise FileNotFoundError(f"{config_file} not found: give the FSDP config file, or a Wrapping, explicitly")
    fsdp = load_config_from_file(config_file).fsdp_config
    if str(fsdp.get("fsdp_version")) != "2" or fsdp.get("fsdp_auto_wrap_policy") != "TRANSFORMER_BASED_WRAP":
        raise ValueError(f"{config_file}: expected fsdp_version 2 with TRANSFORMER_BASED_WRAP, got {fsdp}")
    reshard = fsdp.get("fsdp_reshard_after_forward", True)
    if isinstance(reshard, str):  # `accelerate config` writes strings, a hand-written YAML may hold a bool
        if reshard.lower() not in ("true", "false"):
            raise ValueError(f"{config_file}: fsdp_reshard_after_forward {reshard!r} is not true or false for FSDP2")
        reshard = reshard.lower() == "true"
    classes = tuple(name.strip() for name in fsdp["fsdp_transformer_layer_cls_to_wrap"].split(","))
    return Wrapping(layer_classes=classes, reshard_after_forward=bool(reshard))


def shard_captioner(model: torch.nn.Module, wrapping: Wrapping | None = None, **fully_shard_kwargs) -> torch.nn.Module:
    """Applies `fully_shard` in place, unit by unit as accelerate 1.15's `fsdp2_prepare_model` does for the config:

    1. every module whose class is named in the wrapping (ViT layers, GPT-2 blocks, cross-attention included);
    2. the decoder's LM head, kept unsharded after forward (it runs last and its backward first: resharding would
       only gather it again at once), in one unit with the token embedding it is tied to, since torch refuses a
       parameter shared by two units; an untied token embedding is a unit of its own;
    3. the root, for the rest (patch and position embeddings, norms), with torch's root default (no reshard).

    `fully_shard_kwargs` (mesh, mp_policy, offload_policy, ...) go to every unit. The config's bf16 is the caller's
    `mp_policy=MixedPrecisionPolicy(param_dtype=torch.bfloat16, ...)`; without it, units compute in the weights' dtype.
    Returns the model, now of a class `FSDP<Class>` but otherwise the same modules, so forward hooks on submodules
    keep working.
    """
    wrapping = wrapping if wrapping is not None else config_wrapping()
    present = {type(module).__name__ for module in model.modules()}
    missing = set(wrapping.layer_classes) - present
    if missing:  # accelerate raises too: a typo would otherwise leave the model one big unit
        raise ValueError(f"no module of class {sorted(missing)} in {type(model).__name__}; it has {sorted(present)}")
    layer_kwargs = {**fully_shard_kwargs, "reshard_after_forward": wrapping.reshard_after_forward}
    layers = [m for m in model.modules() if m is not model and type(m).__name__ in wrapping.layer_classes]
    for layer in reversed(layers):  # bottom up: a nested unit must exist before the one around it
        if not isinstance(layer, FSDPModule):
            fully_shard(layer, **layer_kwargs)
    input_embeddings, output_embeddings = model.get_input_embeddings(), model.get_output_embeddings()
    tied = output_embeddings is not None and input_embeddings.weight is output_embeddings.weight
    if not tied and not isinstance(input_embeddings, FSDPModule):
        fully_shard(input_embeddings, **layer_kwargs)
    tail = [input_embeddings, output_embeddings] if tied else [output_embeddings]
    tail = [module for module in tail if module is not None and not isinstance(module, FSDPModule)]
    if tail:
        fully_shard(tail, **{**fully_shard_kwargs, "reshard_after_forward": False})
    fully_shard(model, **fully_shard_kwargs)
    return model


def full_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The whole model's weights as plain CPU tensors on rank 0 ({} elsewhere). Every rank must call it."""
    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def save_pretrained_full(model, save_directory: str, **save_kwargs) -> None:
    """`save_pretrained` of the gathered weights by rank 0 (a folder `from_pretrained` and the pipeline load, as with
    accelerate's FULL_STATE_DICT); every rank must call it, and returns once the folder is written."""
    state_dict = full_state_dict(model)
    if dist.get_rank() == 0:
        model.save_pretrained(save_directory, state_dict=state_dict, **save_kwargs)
    dist.barrier()


def save_checkpoint(model, optimizer, checkpoint_dir: str) -> None:
    """Each rank writes its own shards of the weights and of the optimizer state (torch.distributed.checkpoint):
    nothing is gathered, and the folder can be loaded onto another number of processes."""
    model_state, optimizer_state = get_state_dict(model, optimizer)
    dcp.save({"model": model_state, "optimizer": optimizer_state}, checkpoint_id=checkpoint_dir)


def load_checkpoint(model, optimizer, checkpoint_dir: str) -> None:
    """Loads `save_checkpoint`'s folder into a model sharded the same way and its optimizer, in place."""
    model_state, optimizer_state = get_state_dict(model, optimizer)  # the layout to read into
    state = {"model": model_state, "optimizer": optimizer_state}
    dcp.load(state, checkpoint_id=checkpoint_dir)
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"])
