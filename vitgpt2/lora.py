"""LoRA adapters (through peft) on the captioner's decoder, encoder or both.

The adapters are injected into the VisionEncoderDecoderModel itself (`peft.inject_adapter_in_model`), not wrapped in a
PeftModel: the Trainer, DDP, checkpoints and resuming then see an ordinary model whose state holds the adapter
weights. Wrapping the whole encoder-decoder in a PeftModel is what fails for vit-gpt2 users (huggingface/peft#547).

Weights the pretrained checkpoints do not have (GPT-2's cross-attention and its norm, the encoder-to-decoder
projection) are new and random: they train in full, since a low-rank update of random weights learns little. A part
without adapters keeps its own settings (`--freeze_encoder`, `--train_encoder_layers`).

At the end of training the adapters are merged into the weights they adapt, so the saved folder holds a plain
captioner that the pipeline loads without peft; `--lora_save_adapter` also writes the adapter alone, in peft's format.
"""

import json
import logging
import os
import warnings

import torch

from .errors import ArgumentError

logger = logging.getLogger(__name__)

LORA_PARTS = ("decoder", "encoder", "both")
# Modules that are new in the joined captioner, whatever the checkpoints: trained in full.
NEW_MODULES = ("crossattention", "ln_cross_attn", "enc_to_dec_proj")


def _is_new(name: str) -> bool:
    return any(part in name.split(".") for part in NEW_MODULES)


def _is_linear(module) -> bool:
    from transformers.pytorch_utils import Conv1D

    return isinstance(module, (torch.nn.Linear, Conv1D))


def target_modules(model, parts: str, names: list[str] | None = None) -> list[str]:
    """Full names of the linear layers (GPT-2's Conv1D included) that get adapters: in the chosen part(s), not new
    (cross-attention trains in full), not the LM head, and, with `names`, whose own name is one of them."""
    prefixes = ("decoder.", "encoder.") if parts == "both" else (f"{parts}.",)
    found = [
        name
        for name, module in model.named_modules()
        if name.startswith(prefixes) and _is_linear(module) and not _is_new(name) and not name.endswith("lm_head")
    ]
    if names:
        found = [name for name in found if name.rsplit(".", 1)[-1] in names]
        if not found:
            available = sorted({name.rsplit(".", 1)[-1] for name in target_modules(model, parts)})
            raise ArgumentError(
                f"--lora_target_modules {','.join(names)} names no linear layer of the {parts}; "
                f"its linear layers are: {', '.join(available)}"
            )
    return found


def inject(config, model) -> None:
    """`peft.inject_adapter_in_model`, in place."""
    from peft import inject_adapter_in_model

    with warnings.catch_warnings():  # GPT-2's Conv1D stores its weight transposed; peft notices and says so
        warnings.filterwarnings("ignore", message="fan_in_fan_out is set to")
        inject_adapter_in_model(config, model)


def add_lora(model, r: int, alpha: float | None, dropout: float, parts: str, names: list[str] | None = None):
    """Injects LoRA adapters of rank `r` and returns their `LoraConfig`. Frozen afterwards: the adapted parts'
    pretrained weights. Trained: the adapters, the new weights, and the other part as its own settings say."""
    try:
        from peft import LoraConfig
    except ImportError as error:
        raise ArgumentError("--lora_r needs peft: pip install 'vitgpt2[lora]'") from error
    if parts not in LORA_PARTS:
        raise ArgumentError(f"--lora_on must be one of {', '.join(LORA_PARTS)}, not {parts!r}")
    adapted = ("decoder", "encoder") if parts == "both" else (parts,)
    trainable = {name: parameter.requires_grad for name, parameter in model.named_parameters()}
    targets = target_modules(model, parts, names)
    config = LoraConfig(
        r=r, lora_alpha=alpha if alpha is not None else 2 * r, lora_dropout=dropout, target_modules=targets
    )
    inject(config, model)
    for name, parameter in model.named_parameters():
        if "lora_" in name:
            continue
        original = name.replace(".base_layer.", ".")
        part = name.split(".", 1)[0]
        parameter.requires_grad_(trainable[original] and (part not in adapted or _is_new(name)))
    logger.info("LoRA rank %d (alpha %s) on %d layers of the %s", r, config.lora_alpha, len(targets), parts)
    return config


def class_with_adapters(model) -> type:
    """`type(model)`, or, when `model` carries adapters, a subclass whose models are built with the same ones: its
    `from_pretrained` reads a checkpoint of the adapted model with transformers' own key renaming (ViT's weights
    are saved under legacy names, adapter weights among them)."""
    config = getattr(model, "peft_config", {}).get("default")
    if config is None:
        return type(model)

    class WithAdapters(type(model)):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            inject(config, self)

    return WithAdapters


def merge_lora(model) -> int:
    """Merges every adapter into the weight it adapts and puts the plain layer back; returns how many there were."""
    from peft.tuners.lora import LoraLayer

    layers = [(name, module) for name, module in model.named_modules() if isinstance(module, LoraLayer)]
    for name, module in layers:
        module.merge()
        parent, child = name.rsplit(".", 1)
        setattr(model.get_submodule(parent), child, module.get_base_layer())
    if hasattr(model, "peft_config"):
        del model.peft_config
    return len(layers)


def save_adapter(model, config, folder: str) -> None:
    """Writes the adapter alone as peft saves one (`adapter_config.json`, `adapter_model.safetensors`), with the new
    cross-attention weights as its `modules_to_save`: `PeftModel.from_pretrained` on the captioner joined from the
    same encoder and decoder as training joined them (`load_captioner`, then `pad_vocabulary`) gives the trained
    model back."""
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    lora_layers = set(config.target_modules)
    others = [
        name
        for name, parameter in model.named_parameters()
        if parameter.requires_grad and "lora_" not in name and not _is_new(name)
    ]
    if others:
        raise ArgumentError(
            f"--lora_save_adapter: {len(others)} trained weights are neither adapters nor new cross-attention "
            f"(e.g. {others[0]}); freeze the part without adapters, or use the merged model"
        )
    state = {f"base_model.model.{key}": value for key, value in get_peft_model_state_dict(model).items()}
    for name, parameter in model.named_parameters():
        if parameter.requires_grad and _is_new(name):
            state[f"base_model.model.{name}"] = parameter.detach()
    os.makedirs(folder, exist_ok=True)
    save_file(
        {key: value.contiguous().cpu() for key, value in state.items()},
        os.path.join(folder, "adapter_model.safetensors"),
    )
    adapter = config.to_dict()
    adapter.update(target_modules=sorted(lora_layers), modules_to_save=list(NEW_MODULES), task_type=None)
    with open(os.path.join(folder, "adapter_config.json"), "w") as f:
        json.dump(adapter, f, indent=2, sort_keys=True, default=list)
