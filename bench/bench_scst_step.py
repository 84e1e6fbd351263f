"""One self-critical (SCST) training step's samples/s at ViT-B/16 + distilgpt2 shapes, by phase: sampling K captions
per image against one encoder pass, their CIDEr-D rewards, and the policy-gradient update.

    python bench/bench_scst_step.py                                            # CPU: 4 images x 5 samples
    python bench/bench_scst_step.py --device cuda --images 64 --dtype bf16 --compile   # as bench/gpu.sh runs it

The step is `ScstTrainer.compute_loss`'s: `generate` with multinomial sampling (`sampling_config`), the rewards of
`CaptionReward` (CIDEr-D, idf from the references) with new-SCST's baseline, then `token_losses` over the samples
(encode-once) and one AdamW step. Random weights: a random decoder almost never says EOS, so every sample runs to
`--max_new_tokens`, the longest (slowest) step. Token ids become words through a fixed table in place of the
tokenizer, so the reward scores real n-gram overlaps.

`--compile` times a second way next to the eager one, on the same weights: sampling through a static KV cache that
`generate` compiles itself, and the update through `torch.compile`. The update's labels are padded to
`--max_new_tokens`, so that one graph serves every step whatever length the samples reach.
"""

import argparse
import types

import common
import numpy as np
import torch
import torch.nn.functional as F

from vitgpt2.inference import compiled_decoding
from vitgpt2.loss import IGNORE_INDEX, token_losses
from vitgpt2.scst.rewards import CaptionReward
from vitgpt2.scst.sampling import generating_with, sample_labels, sampling_config
from vitgpt2.scst.trainer import baseline_of, policy_gradient_loss


class ScstStep:
    """Sample, reward and update, each timed."""

    def __init__(self, model, pixels, reward, args, compiled: bool):
        self.model, self.pixels, self.reward, self.args = model, pixels, reward, args
        self.dtype = common.AUTOCAST_DTYPES[args.dtype]
        config = sampling_config(model.generation_config, args.samples, 1.0, args.max_new_tokens)
        if compiled:  # generate compiles the decoder's forward for a static cache
            config.update(**compiled_decoding())
        else:
            config.disable_compile = True
        self.config = config
        self.forward_model = torch.compile(model, dynamic=False) if compiled else model
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)  # the Trainer's default
        self.seconds = {"sampling": 0.0, "reward": 0.0, "update": 0.0}

    def autocast(self):
        return torch.autocast(self.pixels.device.type, dtype=self.dtype or torch.float32, enabled=bool(self.dtype))

    def sample(self) -> torch.Tensor:
        with torch.no_grad(), self.autocast(), generating_with(self.model, self.config):
            return self.model.generate(pixel_values=self.pixels)

    def rewards(self, sequences: torch.Tensor) -> torch.Tensor:
        words = common.WORDS
        captions = [" ".join(words[t % len(words)] for t in row[1:]) for row in sequences.tolist()]
        owners = [image for image in range(len(self.pixels)) for _ in range(self.args.samples)]
        return torch.as_tensor(self.reward(captions, owners), dtype=torch.float32).view(len(self.pixels), -1)

    def update(self, sequences: torch.Tensor, rewards: torch.Tensor) -> float:
        labels = sample_labels(sequences, self.model.generation_config.eos_token_id, self.args.samples)
        labels = F.pad(labels, (0, self.args.max_new_tokens - labels.shape[-1]), value=IGNORE_INDEX)
        with self.autocast():
            losses, mask, _, _ = token_losses(self.forward_model, self.pixels, labels)
        advantages = (rewards - baseline_of(rewards)).reshape(-1).to(losses.device)
        loss = policy_gradient_loss(losses, mask, advantages)
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.item()

    def __call__(self, timing: bool = True) -> None:
        device = self.args.device
        sequences, sampling = common.timed(self.sample, device=device)
        rewards, reward = common.timed(self.rewards, sequences, device=device)
        _, update = common.timed(self.update, sequences, rewards, device=device)
        if timing:
            for phase, seconds in zip(self.seconds, (sampling, reward, update)):
                self.seconds[phase] += seconds


def references(images: int, seed: int = 0) -> list[list[str]]:
    rng = np.random.default_rng(seed)
    return [[common.synthetic_caption(rng) for _ in range(5)] for _ in range(images)]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=4, help="Images per step.")
    parser.add_argument("--samples", type=int, default=5, help="Captions sampled per image (--scst_num_samples).")
    parser.add_argument("--max_new_tokens", type=int, default=20, help="Longest sample (--scst_max_new_tokens).")
    parser.add_argument("--steps", type=int, default=3, help="Timed steps of each way.")
    parser.add_argument("--warmup", type=int, default=1, help="Untimed steps of each way (compilation happens here).")
    common.add_precision_arguments(parser)
    common.add_model_arguments(parser)
    args = parser.parse_args(argv)
    common.start(args)
    if args.device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True

    model = common.build_captioner(tiny=args.tiny).to(args.device).train()
    pixels = torch.randn(args.images, *common.image_shape(model), generator=torch.Generator().manual_seed(0))
    reward = CaptionReward(references(args.images), {"cider": 1.0}, progress=False)
    ways = {"eager": ScstStep(model, pixels.to(args.device), reward, args, compiled=False)}
    if args.compile:
        ways["compiled"] = ScstStep(model, pixels.to(args.device), reward, args, compiled=True)
    for step in ways.values():
        for _ in range(args.warmup):
            step(timing=False)
    for _ in range(args.steps):
        for step in ways.values():  # in turns, so a change in the machine's load falls on both
            step()

    samples = args.images * args.samples
    results = {}
    for name, step in ways.items():
        per_step = {phase: seconds / args.steps for phase, seconds in step.seconds.items()}
        total = sum(per_step.values())
        results[name] = types.SimpleNamespace(**per_step, total=total, samples_per_s=samples / total)
    rows = [
        [name, *(f"{getattr(r, phase) * 1e3:.1f}" for phase in ("sampling", "reward", "update", "total")),
         f"{r.samples_per_s:,.1f}"]
        for name, r in results.items()
    ]  # fmt: skip
    title = (
        f"SCST step: {args.images} images x {args.samples} samples of {args.max_new_tokens} tokens, {args.dtype}, "
        f"{args.steps} steps"
    )
    common.print_table(title, ["", "sampling ms", "reward ms", "update ms", "step ms", "samples/s"], rows)
    if "compiled" in results:
        common.report_ratio(
            "samples/s compiled / eager", results["compiled"].samples_per_s / results["eager"].samples_per_s
        )
    return {name: vars(r) for name, r in results.items()}


if __name__ == "__main__":
    main()
