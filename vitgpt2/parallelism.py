"""What parallelism a run actually has, said in the log: accelerate falls back to plain multi-process training where
FSDP or DeepSpeed cannot run (FSDP on the CPU, for one), without a word of its own."""

import os

from accelerate.utils import DistributedType


def requested(args) -> str | None:
    """The sharded parallelism the launch or the arguments ask for: "FSDP", "DeepSpeed" or None."""
    if os.environ.get("ACCELERATE_USE_FSDP", "").lower() in ("1", "true") or args.fsdp:
        return "FSDP"
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() in ("1", "true") or args.deepspeed:
        return "DeepSpeed"
    return None


def describe(trainer) -> str:
    """ "one process", "DDP over N processes", "FSDP (sharding) over N processes" or "DeepSpeed ZeRO-k over N processes"."""
    state = trainer.accelerator.state
    processes = state.num_processes
    if trainer.is_fsdp_enabled:
        plugin = state.fsdp_plugin
        sharding = getattr(plugin, "sharding_strategy", None) or f"FSDP{getattr(plugin, 'fsdp_version', '')}"
        return f"FSDP ({getattr(sharding, 'name', sharding)}) over {processes} processes"
    if trainer.is_deepspeed_enabled:
        return f"DeepSpeed ZeRO-{state.deepspeed_plugin.zero_stage} over {processes} processes"
    if processes == 1 and state.distributed_type in (DistributedType.NO, DistributedType.MULTI_CPU):
        return "one process"
    return f"DDP over {processes} processes ({state.distributed_type.value})"


def fallback_warning(trainer) -> str | None:
    """Why the run does not have the parallelism it asked for, or None when it does."""
    wanted = requested(trainer.args)
    has = {"FSDP": trainer.is_fsdp_enabled, "DeepSpeed": trainer.is_deepspeed_enabled}.get(wanted, True)
    if has:
        return None
    return (
        f"{wanted} was asked for, but accelerate runs {describe(trainer)} here "
        f"({trainer.accelerator.state.distributed_type.value}): every process holds the whole model, nothing is "
        f"sharded. On the CPU accelerate cannot run {wanted}; launch on GPUs for it."
    )
