"""Command-line arguments of `run_captioning.py`: model and data dataclasses, plus the Trainer's own
`Seq2SeqTrainingArguments` with captioning defaults. A single `.json`/`.yaml` argument is a config file;
arguments after it override its values."""

import json
import os
import sys
from dataclasses import dataclass, field
from typing import Literal

import yaml
from transformers import HfArgumentParser, Seq2SeqTrainingArguments

from .data.encoder_features import check_dtype
from .data.preprocessing import BadImagePolicy
from .data.views import check_captions_per_image
from .errors import ArgumentError
from .lora import LORA_PARTS
from .metrics.arguments import MetricsArguments
from .scst.arguments import ScstArguments

# Literal types become the parser's choices, so a wrong value is refused with the allowed ones listed.
AttentionImplementation = Literal["sdpa", "eager", "flash_attention_2"]


@dataclass
class ModelArguments:
    encoder_model_name_or_path: str = field(
        default="google/vit-base-patch16-224-in21k",
        metadata={
            "help": "Hub id or folder of the vision encoder (ViT, DeiT, BEiT, DINOv2, Swin, Swinv2, CLIP, SigLIP or SigLIP2; of image-text models the vision tower is taken); also gives the image processor."
        },
    )
    decoder_model_name_or_path: str = field(
        default="distilgpt2",
        metadata={"help": "Hub id or folder of the text decoder (GPT-2-like causal LM); also gives the tokenizer."},
    )
    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "An existing VisionEncoderDecoder checkpoint; overrides the encoder and decoder."},
    )
    cache_dir: str | None = field(default=None, metadata={"help": "Where to store models and datasets from the Hub."})
    model_revision: str = field(default="main", metadata={"help": "Branch, tag or commit of the models to load."})
    token: str | None = field(
        default=None, metadata={"help": "Hub token for private models (default: the `hf auth login` token)."}
    )
    trust_remote_code: bool = field(
        default=False, metadata={"help": "Allow running model code from the Hub. Off unless you trust the repo."}
    )
    attn_implementation: AttentionImplementation = field(
        default="sdpa", metadata={"help": "Attention kernel for encoder and decoder."}
    )
    freeze_encoder: bool = field(
        default=False, metadata={"help": "Train the decoder only; the encoder keeps its pretrained weights."}
    )
    train_encoder_layers: int | None = field(
        default=None,
        metadata={"help": "Train only the encoder's last N blocks (and the norm after them); 0 freezes it all."},
    )
    encoder_learning_rate: float | None = field(
        default=None, metadata={"help": "Learning rate of the encoder's trained weights (default: --learning_rate)."}
    )
    cache_encoder_features: bool | None = field(
        default=None,
        metadata={
            "help": "With the encoder frozen (--freeze_encoder, or --train_encoder_layers 0), compute its output "
            "once per training image, cache it beside the pixel cache and train without running the encoder "
            "(default: on whenever the encoder is frozen; `false` keeps the encoder in the loop)."
        },
    )
    encoder_features_dtype: str = field(
        default="bfloat16",
        metadata={"help": "How cached encoder outputs are stored: bfloat16 (half the disk) or float32 (exact)."},
    )
    lora_r: int = field(
        default=0,
        metadata={"help": "Rank of LoRA adapters (through peft); 0 trains the weights themselves. See --lora_on."},
    )
    lora_alpha: float | None = field(default=None, metadata={"help": "LoRA scaling numerator (default: 2 x rank)."})
    lora_dropout: float = field(default=0.0, metadata={"help": "Dropout on the LoRA adapters' input."})
    lora_target_modules: str | None = field(
        default=None,
        metadata={
            "help": "Comma-separated names of the linear layers that get adapters, e.g. c_attn,c_proj (GPT-2) or "
            "q_proj,v_proj (ViT); default: every linear layer of the adapted part but the cross-attention, which is "
            "new and trains in full."
        },
    )
    lora_on: str = field(
        default="decoder",
        metadata={"help": "Where the adapters go: decoder, encoder or both. The other part keeps its own settings."},
    )
    lora_save_adapter: bool = field(
        default=False,
        metadata={
            "help": "Also write the adapter alone (peft's format) to <output_dir>/adapter; the saved model "
            "always holds the merged weights."
        },
    )
    pad_vocab_to_multiple_of: int = field(
        default=64,
        metadata={
            "help": "Round the decoder's vocabulary up to a multiple of N (GPT-2's 50,257 rows become 50,304) so the "
            "LM head's matmuls run on aligned tensor-core kernels; the new ids are never generated. 1 leaves it as "
            "is. Resume a run with the value it started with."
        },
    )

    def __post_init__(self):
        if self.pad_vocab_to_multiple_of < 1:
            raise ValueError(f"--pad_vocab_to_multiple_of must be 1 or more, not {self.pad_vocab_to_multiple_of}")
        if self.freeze_encoder and self.train_encoder_layers is not None:
            raise ValueError("give --freeze_encoder or --train_encoder_layers N, not both (0 layers is frozen)")
        if self.train_encoder_layers is not None and self.train_encoder_layers < 0:
            raise ValueError(f"--train_encoder_layers must be 0 or more, not {self.train_encoder_layers}")
        if self.encoder_learning_rate is not None and self.encoder_learning_rate <= 0:
            raise ValueError(f"--encoder_learning_rate must be above 0, not {self.encoder_learning_rate}")
        check_dtype(self.encoder_features_dtype)
        if self.lora_r < 0:
            raise ValueError(f"--lora_r must be 0 (no adapters) or more, not {self.lora_r}")
        if self.lora_on not in LORA_PARTS:
            raise ValueError(f"--lora_on must be one of {', '.join(LORA_PARTS)}, not {self.lora_on!r}")
        if self.lora_save_adapter and not self.lora_r:
            raise ValueError("--lora_save_adapter needs adapters: give --lora_r N")
        if self.cache_encoder_features and not self.encoder_frozen:
            raise ValueError(
                "--cache_encoder_features needs a frozen encoder (--freeze_encoder or --train_encoder_layers 0): "
                "the outputs of an encoder that learns change at every step"
            )
        if self.cache_encoder_features is None:
            self.cache_encoder_features = self.encoder_frozen

    @property
    def encoder_frozen(self) -> bool:
        adapted = self.lora_r > 0 and self.lora_on in ("encoder", "both")
        return (self.freeze_encoder or self.train_encoder_layers == 0) and not adapted

    @property
    def lora_targets(self) -> list[str] | None:
        return [name.strip() for name in self.lora_target_modules.split(",")] if self.lora_target_modules else None

    def hub_kwargs(self) -> dict:
        return {"cache_dir": self.cache_dir, "revision": self.model_revision, "token": self.token}


@dataclass
class DataArguments:
    coco_dir: str | None = field(
        default=None,
        metadata={
            "help": "COCO folder: the 2017 layout (annotations/captions_{train,val}2017.json, train2017/, val2017/), "
            "or with --karpathy_split_file, the folder holding train2014/ and val2014/."
        },
    )
    karpathy_split_file: str | None = field(
        default=None,
        metadata={"help": "Karpathy's dataset_coco.json; restval joins train, test is the predict split."},
    )
    dataset_name: str | None = field(default=None, metadata={"help": "A Hub dataset (or 'imagefolder')."})
    webdataset: str | None = field(
        default=None,
        metadata={
            "help": "Train from WebDataset tar shards in the img2dataset layout (KEY.jpg with KEY.txt or KEY.json), "
            "streamed: a path, folder, glob or brace pattern (data/train-{000000..000099}.tar), or URLs. Needs "
            "--max_steps. Evaluation reads its split from --coco_dir, --dataset_name or --image_folder, if given."
        },
    )
    streaming: bool = field(
        default=False,
        metadata={
            "help": "Stream the training split of --dataset_name or --image_folder instead of caching it (datasets "
            "too big for the disk). Needs --max_steps; evaluation stays cached."
        },
    )
    shuffle_buffer_size: int = field(
        default=1000,
        metadata={"help": "Streamed training items each DataLoader worker shuffles among (0: stream order)."},
    )
    dataset_config_name: str | None = field(default=None, metadata={"help": "Configuration of --dataset_name."})
    image_folder: str | None = field(
        default=None, metadata={"help": "A local imagefolder with metadata.jsonl or metadata.csv naming each file."}
    )
    image_column: str = field(default="image", metadata={"help": "Column holding images (or file names)."})
    caption_column: str = field(
        default="captions", metadata={"help": "Column holding one caption or a list of captions per row."}
    )
    image_id_column: str | None = field(
        default=None, metadata={"help": "Column identifying images; rows that share it are merged into one image."}
    )
    image_root: str | None = field(
        default=None, metadata={"help": "Folder that a string image column's file names are relative to."}
    )
    train_split_name: str = field(default="train", metadata={"help": "Split used for training."})
    eval_split_name: str = field(default="validation", metadata={"help": "Split used for evaluation."})
    test_split_name: str | None = field(
        default=None,
        metadata={"help": "Split used by --do_predict (default: 'test' for Karpathy, else the eval split)."},
    )
    max_target_length: int = field(
        default=64, metadata={"help": "Longest caption in tokens, EOS included; longer captions are truncated."}
    )
    pad_to_max_length: bool = field(
        default=False,
        metadata={"help": "Pad every label batch to --max_target_length: fixed shapes, as --torch_compile prefers."},
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Use only the first N training images."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Use only the first N evaluation images."})
    max_predict_samples: int | None = field(default=None, metadata={"help": "Use only the first N predict images."})
    preprocessing_num_workers: int | None = field(
        default=None, metadata={"help": "Processes decoding and resizing images in datasets.map."}
    )
    overwrite_cache: bool = field(default=False, metadata={"help": "Recompute the preprocessed (cached) datasets."})
    bad_images: BadImagePolicy = field(
        default="error",
        metadata={
            "help": "What to do with unreadable images: 'error' stops before training and names the file; "
            "'skip' leaves them out and logs the count."
        },
    )
    captions_per_image: int = field(
        default=1,
        metadata={
            "help": "Captions decoded per encoder pass in training. 1 is the usual one (image, caption) pair per "
            "row; 5 on COCO encodes each image once per epoch for all five captions (a batch then holds "
            "per_device_train_batch_size images x up to 5 captions)."
        },
    )

    @property
    def streams_training(self) -> bool:
        return self.webdataset is not None or self.streaming

    def __post_init__(self):
        sources = {
            "--coco_dir": self.coco_dir,
            "--dataset_name": self.dataset_name,
            "--image_folder": self.image_folder,
        }
        given = [name for name, value in sources.items() if value is not None]
        if len(given) > 1 or (not given and self.webdataset is None):
            raise ValueError(f"give exactly one data source of {list(sources)}; got {given or 'none'}")
        if self.streaming and self.dataset_name is None and self.image_folder is None:
            raise ValueError("--streaming streams --dataset_name or --image_folder; for tar shards use --webdataset")
        if self.streaming and self.webdataset is not None:
            raise ValueError("give --webdataset or --streaming, not both: each names the training data")
        if self.shuffle_buffer_size < 0:
            raise ValueError(f"--shuffle_buffer_size must be 0 or more, not {self.shuffle_buffer_size}")
        if self.karpathy_split_file is not None and self.coco_dir is None:
            raise ValueError("--karpathy_split_file needs --coco_dir, the folder holding the COCO 2014 images")
        check_captions_per_image(self.captions_per_image)
        if self.max_target_length < 2:
            raise ValueError(f"--max_target_length must leave room for a token and EOS, not {self.max_target_length}")


@dataclass
class DecodingArguments:
    """How captions are generated, beyond the Trainer's --generation_num_beams and --generation_max_length: written to
    the model's generation_config.json, so evaluation, prediction, the pipeline and `vitgpt2 caption` all use them."""

    generation_length_penalty: float | None = field(
        default=None, metadata={"help": "Beam search: > 1 favours longer captions, < 1 shorter ones."}
    )
    generation_no_repeat_ngram_size: int | None = field(
        default=None, metadata={"help": "No n-gram of this size appears twice in a caption."}
    )
    generation_repetition_penalty: float | None = field(
        default=None, metadata={"help": "> 1 makes tokens already in the caption less likely."}
    )
    generation_min_new_tokens: int | None = field(
        default=None, metadata={"help": "Captions get at least this many tokens before EOS."}
    )
    generation_max_new_tokens: int | None = field(
        default=None, metadata={"help": "Longest caption in new tokens (instead of --generation_max_length)."}
    )

    def __post_init__(self):
        for name in ("generation_no_repeat_ngram_size", "generation_min_new_tokens", "generation_max_new_tokens"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"--{name} must be at least 1, not {getattr(self, name)}")
        if self.generation_repetition_penalty is not None and self.generation_repetition_penalty <= 0:
            raise ValueError(
                f"--generation_repetition_penalty must be above 0, not {self.generation_repetition_penalty}"
            )

    def generation_settings(self) -> dict:
        """The set options, named as `GenerationConfig` names them."""
        return {key.removeprefix("generation_"): value for key, value in vars(self).items() if value is not None}


def apply_decoding(generation_config, decoding_args: DecodingArguments) -> None:
    """Writes the decoding options into `generation_config`; options that contradict each other are an error."""
    generation_config.update(**decoding_args.generation_settings())
    try:
        generation_config.validate(strict=True)
    except ValueError as error:
        raise ArgumentError(f"the decoding options do not fit together: {' '.join(str(error).split())}") from error


DEFAULT_LOGGING_STEPS = 0.02  # 1/50 of the run; vitgpt2.trainer.LogOften makes it at least 50 points


@dataclass
class CaptioningTrainingArguments(Seq2SeqTrainingArguments):
    """`Seq2SeqTrainingArguments` with the defaults a captioning run wants."""

    num_train_epochs: float = field(default=2.0, metadata={"help": "Total number of training epochs."})
    predict_with_generate: bool = field(
        default=True, metadata={"help": "Generate captions in evaluation and score them (ROUGE, BLEU, ...)."}
    )
    generation_max_length: int | None = field(
        default=32, metadata={"help": "Longest generated caption in tokens, the start token included."}
    )
    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Kept False: the collator needs the cached image and caption columns."}
    )
    logging_steps: float = field(
        default=DEFAULT_LOGGING_STEPS,
        metadata={
            "help": "Log the training loss every N steps, or, below 1, every such fraction of the run. The default, "
            "0.02, logs every max_steps // 50 steps: at least 50 points in loss_curves.png however long the run (the "
            "Trainer's 500 drew one for a 600-step run)."
        },
    )

    def __post_init__(self):
        super().__post_init__()
        if self.do_train and self.max_steps <= 0 and self.num_train_epochs <= 0:
            raise ValueError(
                f"--num_train_epochs {self.num_train_epochs:g} trains nothing: give a number above 0 (or --max_steps)"
            )


ARGUMENT_CLASSES = (
    ModelArguments,
    DataArguments,
    DecodingArguments,
    MetricsArguments,
    ScstArguments,
    CaptioningTrainingArguments,
)


def _config_to_argv(path: str) -> list[str]:
    with open(path) as f:
        config = yaml.safe_load(f) if path.endswith((".yaml", ".yml")) else json.load(f)
    if not isinstance(config, dict):
        raise ArgumentError(f"config file {path} must hold a mapping of argument names to values")
    argv = []
    for key, value in config.items():
        if value is None:
            continue
        values = value if isinstance(value, list) else [value]
        argv += [f"--{key}", *[json.dumps(v) if isinstance(v, bool) else str(v) for v in values]]
    return argv


def parse_args(argv: list[str] | None = None):
    """(model, data, decoding, metrics, scst, training) arguments from the command line or a config file (+ overrides)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0].endswith((".json", ".yaml", ".yml")) and os.path.isfile(argv[0]):
        argv = _config_to_argv(argv[0]) + argv[1:]
    try:
        return HfArgumentParser(ARGUMENT_CLASSES).parse_args_into_dataclasses(args=argv)
    except ValueError as error:  # the dataclasses' own checks (the parser reports unknown options itself)
        raise ArgumentError(str(error)) from error
