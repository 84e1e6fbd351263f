"""What parallelism a run actually has, said in the log: accelerate falls back to plain multi-process training where
FSDP or DeepSpeed cannot run (FSDP on the CPU, for one), without a word of its own. And how a run's processes end
their process group."""

import logging
import os
import weakref

import torch.distributed as dist
from accelerate.utils import DistributedType
from torch.nn.parallel import DistributedDataParallel

logger = logging.getLogger(__name__)


def requested(args) -> str | None:
    """The sharded parallelism the launch or the arguments ask for: "FSDP", "DeepSpeed" or None."""
    if os.environ.get("ACCELERATE_USE_FSDP", "").lower() in ("1", "true") or args.fsdp:
        return "FSDP"
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() in ("1", "true") or args.deepspeed:
        return "DeepSpeed"
    return None


def describe(trainer) -> str:
    """ "one process", "DDP over N processes", "FSDP2 (sharding) over N processes" or "DeepSpeed ZeRO-k over N processes"."""
    state = trainer.accelerator.state
    processes = state.num_processes
    over = f"over {processes} process{'es' if processes > 1 else ''}"
    if trainer.is_fsdp_enabled:
        return f"{fsdp_sharding(state.fsdp_plugin)} {over}"
    if trainer.is_deepspeed_enabled:
        return f"DeepSpeed ZeRO-{state.deepspeed_plugin.zero_stage} {over}"
    if processes == 1 and state.distributed_type in (DistributedType.NO, DistributedType.MULTI_CPU):
        return "one process"
    return f"DDP {over} ({state.distributed_type.value})"


def fsdp_sharding(plugin) -> str:
    """FSDP's version and the sharding it runs, read the way accelerate reads its plugin when it wraps the model."""
    # FSDP2 names no strategy: resharding after forward is FULL_SHARD, keeping the parameters is SHARD_GRAD_OP
    if plugin.fsdp_version == 2:
        kept = "FULL_SHARD, parameters resharded after forward" if plugin.reshard_after_forward else "SHARD_GRAD_OP"
        return f"FSDP2 ({kept})"
    strategy = plugin.sharding_strategy or plugin.reshard_after_forward
    return f"FSDP1 ({getattr(strategy, 'name', strategy)})"


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


def end_process_group(trainer=None) -> None:
    """Every process ends the process group together, once `trainer`'s DDP wrapper is gone.

    Left to interpreter teardown, rank 1 sometimes aborted after saving ("terminate called without an active
    exception"), and one rank tearing the group down while another still used it (rank 0 publishes alone) left that
    one waiting: so all meet at a barrier first, then each destroys the group. The wrapper goes first because its
    reducer holds the group: freed after `destroy_process_group`, the reducer runs gloo's destructor while holding the
    GIL, and that destructor joins a worker thread that needs the GIL to free a finished collective's tensors. The
    process then hangs after its last line of output (torch#56297; about 1 run in 30 on a busy 2-core machine).
    Released here, the group's last reference is its Python object, whose destructor lets go of the GIL."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    if trainer is not None:
        wrapped = getattr(trainer.model_wrapped, "_orig_mod", trainer.model_wrapped)  # under torch.compile too
        ddp = weakref.ref(wrapped) if isinstance(wrapped, DistributedDataParallel) else None
        del wrapped
        trainer.model_wrapped = trainer.model
        trainer.accelerator.free_memory()  # drops the prepared model, then collects
        if ddp is not None and ddp() is not None:
            logger.warning("the DDP wrapper outlives training: ending the process group may hang")
    dist.barrier()
    dist.destroy_process_group()
