"""Training throughput: the usual per-pair recipe vs encode-once, on the same batch of (image, caption) pairs.

    python bench/bench_training.py                          # ViT-B/16 224 + distilgpt2 shapes, 10 pairs, CPU
    python bench/bench_training.py --device cuda --pairs 320 --steps 10

Random weights with the real architecture's shapes. Per pair: each pair's image goes through the encoder
(pixels repeated per caption, labels (P, 1, L)). Encode-once: each image goes through the encoder once and its
K captions are decoded against the repeated encoder states (labels (P/K, K, L)). Both take full AdamW steps in
turns after a warm-up; before timing, the two losses on that batch are checked equal (eval mode, no dropout).

Each step is timed in two phases. Encode-once shortens the forward + backward; the AdamW update costs the same
for both and does not depend on the batch size, so at the few pairs per step a CPU can afford it weighs far more
than at GPU batch sizes (hundreds of pairs, a fused update of a few milliseconds). The FLOPs of each forward +
backward (`torch.utils.flop_counter`) give the speed-up the arithmetic allows.
"""

import argparse

import common
import numpy as np
import torch

from vitgpt2.loss import caption_loss
from vitgpt2.model import attention_implementations

TARGET = 2.5


class PhasedStep:
    """One training step, its forward + backward and its AdamW update timed apart and kept per call."""

    def __init__(self, model, optimizer, batch: tuple, device: str):
        self.model, self.optimizer, self.batch, self.device = model, optimizer, batch, device
        self.times: list[tuple[float, float]] = []

    def update(self) -> None:
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def __call__(self) -> None:
        backward_s = common.timed(common.forward_backward, self.model, *self.batch, device=self.device)[1]
        update_s = common.timed(self.update, device=self.device)[1]
        self.times.append((backward_s, update_s))

    def mean(self, last: int) -> tuple[float, float]:
        backward_s, update_s = np.mean(self.times[-last:], axis=0)
        return float(backward_s), float(update_s)


def check_losses_equal(model, per_pair: tuple, encode_once: tuple) -> tuple[float, float]:
    model.eval()
    with torch.no_grad():
        losses = [caption_loss(model, *batch)[0].item() for batch in (per_pair, encode_once)]
    model.train()
    print(f"loss per pair {losses[0]:.6f}  encode-once {losses[1]:.6f}  |diff| {abs(losses[0] - losses[1]):.1e}")
    if abs(losses[0] - losses[1]) > 1e-4 * max(1.0, abs(losses[0])):
        raise AssertionError(f"encode-once loss {losses[1]} differs from the per-pair loss {losses[0]}")
    return losses[0], losses[1]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_step_arguments(parser, pairs=10)
    args = common.parse_step_arguments(parser, argv)

    model = common.build_captioner(tiny=args.tiny).to(args.device)
    print(f"attention implementations: {attention_implementations(model)}")
    images = args.pairs // args.captions_per_image
    encode_once = tuple(t.to(args.device) for t in common.caption_batch(model, images, args.captions_per_image))
    batches = {"per pair": common.as_pairs(*encode_once), "encode-once": encode_once}
    losses = check_losses_equal(model, *batches.values())
    flops = {name: common.step_flops(model, *batch) for name, batch in batches.items()}

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    steps = {name: PhasedStep(model, optimizer, batch, args.device) for name, batch in batches.items()}
    common.time_interleaved(steps, args.warmup, args.steps, args.device)
    phases = {name: step.mean(args.steps) for name, step in steps.items()}
    encoder_passes = {"per pair": args.pairs, "encode-once": images}
    rows = [
        [
            name,
            f"{encoder_passes[name]}",
            f"{flops[name] / 1e12:.2f}",
            f"{backward_s:.2f}",
            f"{update_s:.2f}",
            f"{args.pairs / (backward_s + update_s):.2f}",
            f"{args.pairs / backward_s:.2f}",
        ]
        for name, (backward_s, update_s) in phases.items()
    ]
    title = (
        f"Training, {args.pairs} pairs = {images} images x {args.captions_per_image} captions, {args.steps} steps each"
    )
    header = ["", "encoder passes", "TFLOP fwd+bwd", "s fwd+bwd", "s AdamW", "pairs/s step", "pairs/s fwd+bwd"]
    common.print_table(title, header, rows)
    (pair_backward, pair_update), (once_backward, once_update) = phases["per pair"], phases["encode-once"]
    ratios = {
        "flops": flops["per pair"] / flops["encode-once"],
        "step": (pair_backward + pair_update) / (once_backward + once_update),
        "forward_backward": pair_backward / once_backward,
    }
    common.report_ratio("FLOPs, per pair / encode-once (the arithmetic bound)", ratios["flops"])
    common.report_ratio("pairs/s encode-once / per pair, whole step with AdamW", ratios["step"], TARGET)
    holds = common.report_ratio(
        "pairs/s encode-once / per pair, forward + backward", ratios["forward_backward"], TARGET
    )
    return {"ratios": ratios, "target_holds": holds, "phases": phases, "losses": losses}


if __name__ == "__main__":
    main()
