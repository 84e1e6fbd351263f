"""Frozen-encoder training from cached encoder outputs vs encode-once fine-tuning, on the same batch of pairs.

    python bench/bench_frozen.py                    # ViT-B/16 224 + distilgpt2 shapes, 20 pairs, CPU
    python bench/bench_frozen.py --device cuda --pairs 320 --steps 10 --dtype bf16 --compile   # as bench/gpu.sh

Random weights with the real architecture's shapes. Three ways to take one AdamW step on the same (image, caption)
pairs, K captions per image:
- fine-tuning, encode-once: every weight trains; each image goes through the encoder once per step (the baseline,
  what `run_captioning.py --captions_per_image 5` does);
- frozen, encoder in the loop: the encoder is frozen but still runs forward at every step
  (`--freeze_encoder --cache_encoder_features false`);
- frozen, cached features: the encoder's bf16 outputs are read instead (`--freeze_encoder`, the default cache),
  converted to float32 as the collator does it.
Before timing, the cached path's loss is checked against the in-loop one (float32 cache: equal; bf16: close).
`--dtype bf16` trains under bf16 autocast and `--compile` through `torch.compile`, as `run_captioning.py --bf16
--torch_compile` does. MFU = the FLOPs of one forward + backward (`torch.utils.flop_counter`, on the eager model) /
the step's time / `--peak_tflops`; a frozen encoder's FLOPs are counted only where it runs.
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
    """One AdamW step of `model` on the batch: pixels through the encoder, or cached bf16 states. These arrive as the
    DataLoader hands them over, converted to float32 in host memory (pinned on the GPU), and are copied to the
    device at every step."""

    def __init__(self, model, labels, pixels=None, cached=None, dtype=None, compiled=False):
        self.model, self.labels, self.pixels, self.dtype = model, labels, pixels, dtype
        self.host_states = None
        if cached is not None:
            self.host_states = as_states(cached).pin_memory() if labels.device.type == "cuda" else as_states(cached)
        self.forward_model = torch.compile(model, dynamic=False) if compiled else model
        # fused: the Trainer's default optimizer (adamw_torch_fused); on one CPU thread it steps 96M parameters in
        # 0.06 s, where the for-loop AdamW took 0.51 s
        self.optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5, fused=True)

    def states(self) -> torch.Tensor | None:
        return None if self.host_states is None else self.host_states.to(self.labels.device, non_blocking=True)

    def __call__(self) -> None:
        common.forward_backward(self.forward_model, self.pixels, self.labels, self.dtype, self.states())
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def flops(self) -> int:
        return common.step_flops(self.model, self.pixels, self.labels, self.dtype, self.states())


def check_losses(frozen, pixels, labels, cached) -> float:
    frozen.eval()
    with torch.no_grad():
        in_loop = caption_loss(frozen, pixels, labels)[0].item()
        exact = frozen.encoder(pixel_values=pixels).last_hidden_state
        from_float = caption_loss(frozen, None, labels, encoder_states=exact)[0].item()
        from_bf16 = caption_loss(frozen, None, labels, encoder_states=as_states(cached).to(labels.device))[0].item()
    frozen.train()
    print(f"loss encoder in the loop {in_loop:.6f}  cached float32 {from_float:.6f}  cached bf16 {from_bf16:.6f}")
    if abs(from_float - in_loop) > 1e-5 * max(1.0, abs(in_loop)):
        raise AssertionError(f"the loss from cached float32 states {from_float} differs from {in_loop}")
    return abs(from_bf16 - in_loop)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_step_arguments(parser, pairs=20)
    common.add_precision_arguments(parser)
    parser.add_argument(
        "--peak_tflops", type=float, default=989.0, help="Dense peak of --dtype for MFU (H100/H200 bf16)."
    )
    args = common.parse_step_arguments(parser, argv)
    if args.device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True  # what fp32 leftovers outside autocast use in real runs

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

    options = {"dtype": common.AUTOCAST_DTYPES[args.dtype], "compiled": args.compile}
    steps = {
        "fine-tuning, encode-once": Step(tuned, labels, pixels=pixels, **options),
        "frozen, encoder in the loop": Step(frozen, labels, pixels=pixels, **options),
        "frozen, cached features": Step(frozen, labels, cached=cached, **options),
    }
    flops = {name: step.flops() for name, step in steps.items()}
    seconds = common.time_interleaved(steps, args.warmup, args.steps, args.device)
    trainable = {name: parameter_counts(step.model)["trainable_parameters"] / 1e6 for name, step in steps.items()}
    mfu = {name: flops[name] / s / 1e12 / args.peak_tflops for name, s in seconds.items()}
    rows = [
        [
            name,
            f"{trainable[name]:.1f}",
            f"{s * 1e3:.1f}",
            f"{args.pairs / s:,.2f}",
            f"{flops[name] / 1e12:.3g}",
            f"{mfu[name]:.1%}",
        ]
        for name, s in seconds.items()
    ]
    title = (
        f"Training, {args.pairs} pairs = {images} images x {args.captions_per_image} captions, {args.steps} steps, "
        f"{args.dtype}, compile {args.compile}; MFU against {args.peak_tflops:g} TFLOPS"
    )
    common.print_table(title, ["", "trained M params", "ms per step", "pairs/s", "TFLOP/step", "MFU"], rows)
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
    # What caching can give at most: the ratio of the FLOPs the two steps do.
    ratios["flops_bound"] = flops["fine-tuning, encode-once"] / flops["frozen, cached features"]
    common.report_ratio("FLOPs fine-tuning, encode-once / cached (the bound on the next ratio)", ratios["flops_bound"])
    holds = common.report_ratio("pairs/s cached / fine-tuning, encode-once", ratios["cached_vs_fine_tuning"], TARGET)
    return {"ratios": ratios, "target_holds": holds, "bytes_per_image": per_image, "seconds": seconds, "mfu": mfu}


if __name__ == "__main__":
    main()
