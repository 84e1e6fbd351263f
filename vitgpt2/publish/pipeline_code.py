"""Copying the pipeline code (`vitgpt2/remote_code/`) next to a saved model, and into every Trainer checkpoint."""

import json
import os

from transformers import TrainerCallback
from transformers.dynamic_module_utils import custom_object_save
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from transformers.utils import CONFIG_NAME

from ..remote_code.pipeline import ImageCaptioningPipeline


def custom_pipelines_entry() -> dict:
    """The `custom_pipelines` value that `Pipeline.save_pretrained` writes into config.json for this pipeline."""
    entry = {}
    for task, info in ImageCaptioningPipeline._registered_impl.items():
        module = info["impl"].__module__.split(".")[-1]
        entry[task] = {**info, "impl": f"{module}.{info['impl'].__name__}", "pt": [c.__name__ for c in info["pt"]]}
    return entry


def save_pipeline_code(folder: str | os.PathLike, tokenizer=None, image_processor=None) -> list[str]:
    """Makes a saved model folder loadable with `pipeline("image-to-text", model=folder, trust_remote_code=True)`.

    Does what `pipe.save_pretrained` does for the code (copies the pipeline module and its relative imports, adds the
    `custom_pipelines` entry to config.json) without re-writing the weights. A tokenizer or image processor passed
    here is saved too, for folders (like Trainer checkpoints) that lack one. Returns the code files written.
    """
    folder = os.fspath(folder)
    config_path = os.path.join(folder, CONFIG_NAME)
    if not os.path.isfile(config_path):
        raise FileNotFoundError(f"{config_path} not found: save the model in {folder} before its pipeline code")
    for component in (tokenizer, image_processor):
        if component is not None:
            component.save_pretrained(folder)
    with open(config_path, encoding="utf-8") as f:
        config = json.load(f)
    config["custom_pipelines"] = custom_pipelines_entry()
    with open(config_path, "w", encoding="utf-8") as f:
        f.write(json.dumps(config, indent=2, sort_keys=True) + "\n")  # as `PretrainedConfig.to_json_string`
    return [os.fspath(path) for path in custom_object_save(ImageCaptioningPipeline, folder)]


class PipelineCodeCallback(TrainerCallback):
    """Adds the pipeline code to every `checkpoint-N` folder, so each checkpoint loads with `pipeline(...)`.

    The Trainer saves one `processing_class`; give the tokenizer and the image processor here so that both are in
    every checkpoint. Only the processes that save (`args.should_save`) write.
    """

    def __init__(self, tokenizer=None, image_processor=None):
        self.tokenizer = tokenizer
        self.image_processor = image_processor

    def on_save(self, args, state, control, **kwargs):
        if args.should_save:
            folder = os.path.join(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")
            save_pipeline_code(folder, tokenizer=self.tokenizer, image_processor=self.image_processor)
