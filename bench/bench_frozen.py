"""Frozen-encoder training from cached encoder outputs vs encode-once fine-tuning, on the same batch of pairs.

    python bench/bench_frozen.py                    # ViT-B/16 224 + distilgpt2 shapes, 20 pairs, CPU
    python bench/bench_frozen.py --device cuda --pairs 320 --steps 10

Random weights with the real architecture's shapes. Three ways to take one AdamW step on the same (image, caption)
pairs, K captions per image:
- fine-tuning, encode-once: every weight trains; each image goes through the encoder once per step (the baseline,
  what `run_captioning.py --captions_per_image 5` does);
- frozen, encoder in the loop: the encoder is frozen but still runs forward at every step
  (`--freeze_encoder --cache_encoder_features false`);
- frozen, cached features: the encoder's bf16 outputs are read instead (`--freeze_encoder`, the default cache),
  converted to float32 as the collator does it.
Before timing, the cached path's loss is checked against the in-loop one (float32 cache: equal; bf16: close).
"""

import argparse
import copy

import common
import torch

from vitgpt2.data.encoder_features import as_states
from vitgpt2.loss import caption_loss
from vitgpt2.model import parameter_counts, set_encoder_trainable

TARGET = 3.0
COCO_TRAIN_IMAGES = 118_287


class Step:
    """One AdamW step of `model` on the batch: pixels through the encoder, or cached bf16 states."""

    def __init__(self, model, labels, pixels=None, cached=None):
        self.model, self.labels, self.pixels, self.cached = model, labels, pixels, cached
        self.optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)

    def __call__(self) -> None:
        states = None if self.cached is None else as_states(self.cached)
        loss, _ = caption_loss(self.model, self.pixels, self.labels, encoder_states=states)
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)


def check_losses(frozen, pixels, labels, cached) -> float:
    frozen.eval()
    with torch.no_grad():
        in_loop = caption_loss(frozen, pixels, labels)[0].item()
        exact = frozen.encoder(pixel_values=pixels).last_hidden_state
        from_float = caption_loss(frozen, None, labels, encoder_states=exact)[0].item()
        from_bf16 = caption_loss(frozen, None, labels, encoder_states=as_states(cached))[0].item()
    frozen.train()
    print(f"loss encoder in the loop {in_loop:.6f}  cached float32 {from_float:.6f}  cached bf16 {from_bf16:.6f}")
    if abs(from_float - in_loop) > 1e-5 * max(1.0, abs(in_loop)):
        raise AssertionError(f"the loss from cached float32 states {from_float} differs from {in_loop}")
    return abs(from_bf16 - in_loop)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_step_arguments(parser, pairs=20)
    args = common.parse_step_arguments(parser, argv)

    tuned = common.build_captioner(tiny=args.tiny).to(args.device)
    frozen = copy.deepcopy(tuned)
    set_encoder_trainable(frozen, freeze=True)
    images = args.pairs // args.captions_per_image
    pixels, labels = (t.to(args.device) for t in common.caption_batch(tuned, images, args.captions_per_image))
    with torch.no_grad():
        states = frozen.eval().encoder(pixel_values=pixels).last_hidden_state
    frozen.train()
    cached = states.to(torch.bfloat16).view(torch.int16).cpu().numpy()  # as the cache stores them
    bf16_difference = check_losses(frozen, pixels, labels, cached)

    steps = {
        "fine-tuning, encode-once": Step(tuned, labels, pixels=pixels),
        "frozen, encoder in the loop": Step(frozen, labels, pixels=pixels),
        "frozen, cached features": Step(frozen, labels, cached=cached),
    }
    seconds = common.time_interleaved(steps, args.warmup, args.steps, args.device)
    trainable = {name: parameter_counts(step.model)["trainable_parameters"] / 1e6 for name, step in steps.items()}
    rows = [[name, f"{trainable[name]:.1f}", f"{s:.2f}", f"{args.pairs / s:.2f}"] for name, s in seconds.items()]
    title = f"Training, {args.pairs} pairs = {images} images x {args.captions_per_image} captions, {args.steps} steps"
    common.print_table(title, ["", "trained M params", "s per step", "pairs/s"], rows)
    per_image = cached[0].nbytes
    print(
        f"cache: {cached.shape[1]} tokens x {cached.shape[2]} x bf16 = {per_image / 1024:.1f} KB per image, "
        f"{per_image * COCO_TRAIN_IMAGES / 1e9:.1f} GB for COCO train2017 ({COCO_TRAIN_IMAGES:,} images); "
        f"|loss difference| bf16 vs float32 states {bf16_difference:.1e}"
    )
    baseline = seconds["fine-tuning, encode-once"]
    ratios = {
        "cached_vs_fine_tuning": baseline / seconds["frozen, cached features"],
        "cached_vs_frozen_in_loop": seconds["frozen, encoder in the loop"] / seconds["frozen, cached features"],
    }
    common.report_ratio("pairs/s frozen in the loop / fine-tuning", baseline / seconds["frozen, encoder in the loop"])
    common.report_ratio("pairs/s cached / frozen in the loop", ratios["cached_vs_frozen_in_loop"])
    holds = common.report_ratio("pairs/s cached / fine-tuning, encode-once", ratios["cached_vs_fine_tuning"], TARGET)
    return {"ratios": ratios, "target_holds": holds, "bytes_per_image": per_image, "seconds": seconds}


if __name__ == "__main__":
    main()
