"""configs/accelerate/*.yaml load with accelerate's own config loader and turn into the environment that
`accelerate launch` would hand to run_captioning.py; needs neither GPUs nor deepspeed."""

import os
from unittest import mock

import pytest
from accelerate.commands.config.config_args import load_config_from_file
from accelerate.commands.launch import _validate_launch_command, launch_command_parser
from accelerate.utils import DeepSpeedPlugin, DistributedType, FullyShardedDataParallelPlugin
from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env, prepare_simple_launcher_cmd_env

from vitgpt2.model import load_captioner

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "accelerate")
EXPECTED = {
    "single_gpu.yaml": DistributedType.NO,
    "multi_gpu.yaml": DistributedType.MULTI_GPU,
    "fsdp.yaml": DistributedType.FSDP,
    "deepspeed_zero2.yaml": DistributedType.DEEPSPEED,
}


def _path(name: str) -> str:
    return os.path.join(CONFIGS, name)


def _launch_env(name: str) -> dict[str, str]:
    """The environment `accelerate launch --config_file <name> run_captioning.py` gives the script."""
    args = launch_command_parser().parse_args(["--config_file", _path(name), "run_captioning.py"])
    args, defaults, _ = _validate_launch_command(args)
    if args.use_deepspeed:
        args.deepspeed_fields_from_accelerate_config = ",".join(defaults.deepspeed_config)  # as launch sets it
        return prepare_deepspeed_cmd_env(args)[1]
    if args.multi_gpu or args.use_fsdp:
        return prepare_multi_gpu_env(args)
    return prepare_simple_launcher_cmd_env(args)[1]


def test_every_config_file_is_checked():
    assert sorted(os.listdir(CONFIGS)) == sorted(EXPECTED)


@pytest.mark.parametrize("name", EXPECTED)
def test_config_loads_with_the_expected_distributed_type_and_bf16(name):
    config = load_config_from_file(_path(name))
    assert config.distributed_type == EXPECTED[name]
    assert config.mixed_precision == "bf16" and not config.use_cpu
    assert _launch_env(name)["ACCELERATE_MIXED_PRECISION"] == "bf16"


@pytest.mark.parametrize("name", ["fsdp.yaml", "deepspeed_zero2.yaml"])
def test_nested_keys_are_options_accelerate_launch_knows(name):
    # `accelerate launch` copies unknown keys onto its arguments silently: a typo would just be ignored
    config = load_config_from_file(_path(name))
    known = {action.dest for action in launch_command_parser()._actions}
    nested = {**config.fsdp_config, **config.deepspeed_config}
    assert nested and set(nested) <= known, set(nested) - known


def test_fsdp_wraps_vit_layers_and_gpt2_blocks_that_the_captioner_has(tiny_models):
    with mock.patch.dict(os.environ, _launch_env("fsdp.yaml")):
        plugin = FullyShardedDataParallelPlugin()
    assert plugin.fsdp_version == 2 and "FULL_STATE_DICT" in str(plugin.state_dict_type)
    assert plugin.transformer_cls_names_to_wrap == ["ViTLayer", "GPT2Block"]
    encoder, decoder = tiny_models
    module_classes = {type(module).__name__ for module in load_captioner(encoder=encoder, decoder=decoder).modules()}
    assert set(plugin.transformer_cls_names_to_wrap) <= module_classes


def test_deepspeed_is_zero_stage_2_with_the_trainer_filling_batch_and_clipping():
    with mock.patch.dict(os.environ, _launch_env("deepspeed_zero2.yaml")):
        plugin = DeepSpeedPlugin()  # builds the DeepSpeed config without importing deepspeed
    config = plugin.deepspeed_config
    assert config["zero_optimization"]["stage"] == 2
    assert config["zero_optimization"]["offload_optimizer"]["device"] == "none"
    # "auto": the Trainer fills these from its own arguments, so they can never disagree with them
    for key in ("gradient_accumulation_steps", "gradient_clipping", "train_micro_batch_size_per_gpu"):
        assert config[key] == "auto", key
