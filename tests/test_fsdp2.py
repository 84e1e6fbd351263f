"""FSDP2 on the CPU: two processes (gloo) shard the captioner with `fully_shard` as configs/accelerate/fsdp.yaml asks,
train it on the encode-once loss as one unsharded process does, save a folder that `from_pretrained` and the pipeline
load, and resume from a sharded checkpoint to the same weights as an uninterrupted run."""

import os
import sys
from datetime import timedelta
from types import SimpleNamespace
from unittest import mock

import PIL.Image
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.distributed.fsdp import FSDPModule
from torch.distributed.tensor import DTensor, Shard
from transformers import AutoImageProcessor, AutoTokenizer, VisionEncoderDecoderModel

from vitgpt2.fsdp2 import (
    FSDP_CONFIG,
    config_wrapping,
    full_state_dict,
    load_checkpoint,
    save_checkpoint,
    save_pretrained_full,
    shard_captioner,
)
from vitgpt2.inference import captioning_pipeline
from vitgpt2.loss import caption_loss, cross_attention_projections
from vitgpt2.model import load_captioner
from vitgpt2.publish.pipeline_code import save_pipeline_code

WORLD = 2
STEPS, CHECKPOINT_STEP = 4, 2
IMAGES, CAPTIONS, LENGTH = 2, 3, 8  # per process and step
LEARNING_RATE = 1e-4  # larger steps on random captions soon make every image's caption the same


def batch(step: int, rank: int, image_size: int, vocab_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Process `rank`'s (pixel_values, labels) at `step`: captions of different lengths, and one absent."""
    generator = torch.Generator().manual_seed(1000 * step + rank)
    pixel_values = torch.randn(IMAGES, 3, image_size, image_size, generator=generator)
    labels = torch.randint(1, vocab_size, (IMAGES, CAPTIONS, LENGTH), generator=generator)
    lengths = torch.randint(2, LENGTH + 1, (IMAGES, CAPTIONS, 1), generator=generator)
    labels[torch.arange(LENGTH) >= lengths] = -100
    labels[-1, -1] = -100
    return pixel_values, labels


def train_step(model, optimizer, step: int, ranks: list[int]) -> list[float]:
    """One AdamW step on the mean of the given processes' losses (what gradient averaging computes); their losses."""
    config = model.config
    size = config.encoder.image_size
    losses = [caption_loss(model, *batch(step, rank, size, config.decoder.vocab_size))[0] for rank in ranks]
    (sum(losses) / len(losses)).backward()
    optimizer.step()
    optimizer.zero_grad()
    return [loss.item() for loss in losses]


def key_bias(name: str, tensor: torch.Tensor) -> torch.Tensor:
    """Where `tensor` holds attention key biases. Their gradient is zero in exact arithmetic (the softmax ignores a
    term q . b_k added to every score alike), so what is computed is rounding noise, which AdamW scales to steps of
    about lr: there a sharded and an unsharded run part, whatever the order of their sums."""
    mask = torch.zeros_like(tensor, dtype=torch.bool)
    if name.endswith("k_proj.bias"):  # ViT
        mask[:] = True
    elif name.endswith("crossattention.c_attn.bias"):  # GPT-2's cross-attention: keys, values
        mask[: len(tensor) // 2] = True
    elif name.endswith("attn.c_attn.bias"):  # GPT-2's self-attention: queries, keys, values
        mask[len(tensor) // 3 : 2 * len(tensor) // 3] = True
    return mask


def new_captioner(folder: str):
    """The saved captioner in eval mode, so that no dropout draws differ between processes."""
    return load_captioner(checkpoint=folder).eval()


def adamw(model) -> torch.optim.AdamW:
    """The optimizer, made after sharding: its parameters must be the sharded ones."""
    return torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=LEARNING_RATE)


def units(model) -> list[tuple[tuple[str, ...], bool]]:
    """Each FSDP unit as (its modules' names, resharded after forward), read from FSDP2's private state."""
    states = {}
    for name, module in model.named_modules():
        if isinstance(module, FSDPModule):
            state = module._get_fsdp_state()
            states.setdefault(id(state), (state, []))[1].append(name)
    return sorted(
        (tuple(sorted(names)), state._fsdp_param_group.post_forward_mesh_info is not None)
        for state, names in states.values()
    )


def accelerate_units(folder: str, rank: int):
    """The units of accelerate's own FSDP2 preparation (`fsdp2_prepare_model`) for `accelerate launch --config_file
    configs/accelerate/fsdp.yaml`, with its plugin built from the environment that launch sets."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils import FullyShardedDataParallelPlugin
    from accelerate.utils.fsdp_utils import fsdp2_prepare_model
    from accelerate.utils.launch import prepare_multi_gpu_env

    args, _, _ = _validate_launch_command(launch_command_parser().parse_args(["--config_file", FSDP_CONFIG, "x.py"]))
    with mock.patch.dict(os.environ, prepare_multi_gpu_env(args)):
        plugin = FullyShardedDataParallelPlugin()
    state = SimpleNamespace(fsdp_plugin=plugin)
    accelerator = SimpleNamespace(state=state, mixed_precision="no", is_main_process=rank == 0, device="cpu")
    return units(fsdp2_prepare_model(accelerator, load_captioner(checkpoint=folder)))


def _train(rank: int, work: dict) -> dict:
    """STEPS steps on this process's data, a sharded checkpoint after CHECKPOINT_STEP, then the full save and the
    pipeline's captions; what the test checks, from both processes."""
    model = new_captioner(work["captioner"])
    names = [name for name, _ in model.named_modules()]
    classes = config_wrapping().layer_classes
    out = {"layers": [name for name, module in model.named_modules() if type(module).__name__ in classes]}
    shard_captioner(model)
    out.update(units=units(model), accelerate_units=accelerate_units(work["captioner"], rank))
    out["module_names_kept"] = [name for name, _ in model.named_modules()] == names
    decoder = model.decoder
    out["tied"] = [decoder.lm_head.weight is decoder.get_input_embeddings().weight]
    out["shards"] = {
        name: (
            type(p).__name__,
            getattr(p, "placements", None),
            tuple(p.shape),
            (p.to_local() if isinstance(p, DTensor) else p).numel(),
        )
        for name, p in model.named_parameters()
    }
    optimizer = adamw(model)

    # The encode-once hooks find the GPT-2 cross-attention inside the sharded blocks: K/V projected once per image
    projections = cross_attention_projections(model)
    rows = []
    handles = [p.register_forward_hook(lambda m, inputs, output: rows.append(inputs[0].shape[0])) for p in projections]
    out["projection_owners"] = [type(block).__name__ for block in model.decoder.transformer.h]
    losses = []
    for step in range(STEPS):
        losses.append(train_step(model, optimizer, step, [rank]))
        if step == 0:
            for handle in handles:
                handle.remove()
        if step + 1 == CHECKPOINT_STEP:
            save_checkpoint(model, optimizer, work["checkpoint"])
    out["projection_rows"] = rows
    out["losses"] = losses
    out["tied"].append(decoder.lm_head.weight is decoder.get_input_embeddings().weight)

    save_pretrained_full(model, work["saved"])
    out["weights"] = full_state_dict(model)
    if rank == 0:
        tokenizer, image_processor = (
            auto.from_pretrained(work["captioner"]) for auto in (AutoTokenizer, AutoImageProcessor)
        )
        save_pipeline_code(work["saved"], tokenizer=tokenizer, image_processor=image_processor)
    dist.barrier()
    # The in-memory sharded model captions through the pipeline: the root's own weights gathered for generate,
    # whose encoder and decoder calls bypass the root's forward; every unit inside gathers itself.
    pipe = captioning_pipeline(
        model,
        tokenizer=AutoTokenizer.from_pretrained(work["saved"]),
        image_processor=AutoImageProcessor.from_pretrained(work["saved"]),
        device="cpu",
    )
    model.unshard()
    with torch.no_grad():
        out["batch"] = pipe(work["images"], batch_size=2)
        out["beams"] = pipe(work["images"][0], num_beams=2)
    model.reshard()
    return out


def _resume(rank: int, work: dict) -> dict:
    """Fresh processes: the captioner as it was before training, sharded, then the checkpoint, then the rest."""
    model = new_captioner(work["captioner"])
    shard_captioner(model)
    optimizer = adamw(model)
    load_checkpoint(model, optimizer, work["checkpoint"])
    losses = [train_step(model, optimizer, step, [rank]) for step in range(CHECKPOINT_STEP, STEPS)]
    return {"losses": losses, "weights": full_state_dict(model)}


def _process(rank: int, phase: str, work: dict) -> None:
    # gloo on the loopback device and a file store: no port to collide with another run, no lookup of the host name
    if sys.platform == "linux":
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    torch.set_num_threads(1)  # two processes on a 2-core machine
    store = f"file://{work['store']}.{phase}"
    dist.init_process_group("gloo", init_method=store, rank=rank, world_size=WORLD, timeout=timedelta(minutes=5))
    result = {"_train": _train, "_resume": _resume}[phase](rank, work)
    results = [None] * WORLD
    dist.all_gather_object(results, {key: value for key, value in result.items() if key != "weights"})
    if rank == 0:
        torch.save({"ranks": results, "weights": result["weights"]}, f"{work['results']}.{phase}")
    # Ended together and explicitly, as vitgpt2.parallelism.end_process_group does: left to interpreter teardown, a rank
    # has aborted on exit after saving
    dist.barrier()
    dist.destroy_process_group()


def run_processes(phase: str, work: dict) -> dict:
    """Runs `phase` in WORLD fresh interpreters (spawned, as torchrun starts them: nothing inherited from pytest's
    process, whose threads a fork would copy mid-state); rank 0's results."""
    mp.start_processes(_process, args=(phase, work), nprocs=WORLD, start_method="spawn")
    return torch.load(f"{work['results']}.{phase}", weights_only=False)


@pytest.fixture(scope="module")
def fsdp_run(tmp_path_factory, tiny_captioner_dir):
    """(work, uninterrupted 2-process run, resumed 2-process run, 1-process run on both processes' data)."""
    import skimage.data

    root = tmp_path_factory.mktemp("fsdp2")
    images = []
    for name in ("astronaut", "coffee"):
        images.append(str(root / f"{name}.png"))
        PIL.Image.fromarray(getattr(skimage.data, name)()).resize((64, 64)).save(images[-1])
    work = {
        "captioner": tiny_captioner_dir, "checkpoint": str(root / "checkpoint"), "saved": str(root / "saved"),
        "images": images, "store": str(root / "store"), "results": str(root / "results"),
    }  # fmt: skip
    trained = run_processes("_train", work)
    resumed = run_processes("_resume", work)
    model = new_captioner(tiny_captioner_dir)
    optimizer = adamw(model)
    losses = [train_step(model, optimizer, step, list(range(WORLD))) for step in range(STEPS)]
    return work, trained, resumed, {"losses": losses, "weights": model.state_dict()}


@pytest.mark.slow
def test_units_are_the_layers_the_config_names_as_accelerate_makes_them(fsdp_run):
    _, trained, _, _ = fsdp_run
    wrapping = config_wrapping()
    assert wrapping.layer_classes == ("ViTLayer", "GPT2Block") and wrapping.reshard_after_forward
    for rank in trained["ranks"]:
        assert rank["units"] == rank["accelerate_units"]
        assert rank["module_names_kept"]
        by_name = dict(rank["units"])
        layers = rank["layers"]
        assert len(layers) == 4  # 2 ViT layers and 2 GPT-2 blocks
        for layer in layers:
            assert by_name[(layer,)] is wrapping.reshard_after_forward
        # the tied token embedding and LM head: one unit, kept gathered after forward; the rest is the root's
        assert by_name[("decoder.lm_head", "decoder.transformer.wte")] is False
        assert ("",) in by_name and len(by_name) == len(layers) + 2
        assert rank["tied"] == [True, True]


@pytest.mark.slow
def test_every_parameter_is_sharded_in_halves(fsdp_run):
    _, trained, _, _ = fsdp_run
    ranks = [rank["shards"] for rank in trained["ranks"]]
    assert ranks[0].keys() == ranks[1].keys() and len(ranks[0]) > 20
    total = local = 0
    for name, (kind, placements, shape, numel) in ranks[0].items():
        assert kind == "DTensor" and placements == (Shard(0),), name
        rows = [len(chunk) for chunk in torch.arange(shape[0]).chunk(WORLD)]  # FSDP2 splits dim 0 as torch.chunk
        columns = torch.Size(shape[1:]).numel()
        assert [numel, ranks[1][name][3]] == [r * columns for r in rows + [0] * (WORLD - len(rows))], name
        total, local = total + torch.Size(shape).numel(), local + numel
    assert abs(local / total - 0.5) < 0.01


@pytest.mark.slow
def test_encode_once_hooks_run_inside_the_sharded_blocks(fsdp_run):
    _, trained, _, _ = fsdp_run
    for rank in trained["ranks"]:
        assert rank["projection_owners"] == ["FSDPGPT2Block"] * 2
        assert rank["projection_rows"] == [IMAGES] * 2  # one K/V projection per image, not per caption


@pytest.mark.slow
def test_sharded_training_equals_one_process_on_both_processes_data(fsdp_run):
    _, trained, _, single = fsdp_run
    sharded_losses = [rank["losses"][step][0] for step in range(STEPS) for rank in trained["ranks"]]
    single_losses = [loss for step in single["losses"] for loss in step]
    assert sharded_losses == pytest.approx(single_losses, rel=1e-5)
    sharded, unsharded = trained["weights"], single["weights"]
    initial = load_captioner(checkpoint=fsdp_run[0]["captioner"]).state_dict()
    assert sharded.keys() == unsharded.keys()
    kept = {key: ~key_bias(key, value) for key, value in unsharded.items()}
    moved = max((unsharded[key] - initial[key]).abs().where(kept[key], 0).max().item() for key in unsharded)
    differs = max((sharded[key] - unsharded[key]).abs().where(kept[key], 0).max().item() for key in unsharded)
    assert moved > 3e-4 and differs < 1e-6, (moved, differs)


@pytest.mark.slow
def test_full_save_loads_with_from_pretrained_and_the_pipeline(fsdp_run, isolated_pipeline):
    work, trained, _, _ = fsdp_run
    loaded = VisionEncoderDecoderModel.from_pretrained(work["saved"])
    weights = loaded.state_dict()
    assert weights.keys() == trained["weights"].keys()
    assert all(torch.equal(weights[key], trained["weights"][key]) for key in weights)
    assert loaded.decoder.lm_head.weight is loaded.decoder.get_input_embeddings().weight
    assert loaded.config.architectures == ["VisionEncoderDecoderModel"]

    in_memory = trained["ranks"][0]
    assert trained["ranks"][1]["batch"] == in_memory["batch"]
    captions = [outputs[0]["generated_text"] for outputs in in_memory["batch"]]
    assert all(captions) and captions[0] != captions[1], captions
    assert captioning_pipeline(work["saved"], device="cpu")(work["images"], batch_size=2) == in_memory["batch"]
    isolated = isolated_pipeline([work["saved"]], work["images"])[work["saved"]]
    assert isolated["batch"] == in_memory["batch"] and isolated["beams"] == in_memory["beams"]


@pytest.mark.slow
def test_resume_from_the_sharded_checkpoint_equals_the_uninterrupted_run(fsdp_run):
    _, trained, resumed, _ = fsdp_run
    for before, after in zip(trained["ranks"], resumed["ranks"]):
        assert after["losses"] == before["losses"][CHECKPOINT_STEP:]
    assert resumed["weights"].keys() == trained["weights"].keys()
    assert all(torch.equal(resumed["weights"][key], trained["weights"][key]) for key in trained["weights"])
