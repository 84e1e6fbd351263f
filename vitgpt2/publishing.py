"""After training: everything a user downloads next to the weights, then the optional push to the Hub."""

import logging

logger = logging.getLogger(__name__)


def publish(trainer, image_processor, model_args, data_args, results: dict, eval_dataset=None) -> None:
    """Completes the output folder (image processor; model, tokenizer and generation config come from
    `trainer.save_model`)."""
    args = trainer.args
    if args.do_train:
        image_processor.save_pretrained(args.output_dir)
