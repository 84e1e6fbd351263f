"""The self-critical trainer: each step encodes each image once, samples K captions against the repeated encoder
states, scores them, and follows -(reward - baseline) x log p(sample) over each sample's tokens up to and including
its EOS; with `--scst_ce_weight`, plus that weight x the cross-entropy of the image's references, whose rows join
the samples' in the same forward. Evaluation, checkpoints and saving are `CaptioningTrainer`'s, unchanged."""

import logging
from collections import defaultdict

import torch
from accelerate.utils import extract_model_from_parallel

from ..loss import token_losses
from ..remote_code.text import decode_captions
from ..trainer import CaptioningTrainer
from .arguments import ScstArguments
from .rewards import CaptionReward
from .sampling import ended, generating_with, greedy_config, sample_labels, sampling_config, with_references

logger = logging.getLogger(__name__)


def disable_dropout(model: torch.nn.Module) -> None:
    """Samples are drawn without dropout, so their log-probabilities are scored without it too (TRL's RL trainers do
    the same by default): otherwise the gradient would follow a policy other than the one that sampled."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0


def baseline_of(rewards: torch.Tensor) -> torch.Tensor:
    """(images, K) rewards -> each sample's baseline: the mean reward of the image's K - 1 other samples."""
    samples = rewards.shape[1]
    return (rewards.sum(dim=1, keepdim=True) - rewards) / (samples - 1)


def policy_gradient_loss(losses: torch.Tensor, mask: torch.Tensor, advantages: torch.Tensor) -> torch.Tensor:
    """-(reward - baseline) x log p, averaged over the sampled tokens (EOS included). `losses` is -log p per token,
    (samples, length); `advantages` one value per sample."""
    weighted = advantages.to(losses.dtype)[:, None] * losses * mask
    return weighted.sum() / mask.sum().clamp(min=1)


class ScstTrainer(CaptioningTrainer):
    def __init__(self, *args, scst_args: ScstArguments, reward: CaptionReward, max_new_tokens: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.scst_args, self.reward = scst_args, reward
        self.loss_is_scaled_for_ga = False  # a mean per micro-batch: the Trainer divides by the accumulation steps
        disable_dropout(self.model)
        saved = self.model.generation_config
        self._sampling = sampling_config(saved, scst_args.scst_num_samples, scst_args.scst_temperature, max_new_tokens)
        self._greedy = greedy_config(saved, max_new_tokens)
        self._stats = defaultdict(list)  # per micro-batch, logged as means at the next log

    @torch.no_grad()
    def _generate(self, model, pixel_values: torch.Tensor, config) -> torch.Tensor:
        policy = extract_model_from_parallel(model)  # generate lives on the model, not on its DDP wrapper
        with generating_with(policy, config):
            return policy.generate(pixel_values=pixel_values)

    def _rewards(self, sequences: torch.Tensor, images: list[int], per_image: int) -> torch.Tensor:
        captions = decode_captions(self.processing_class, sequences)
        owners = [image for image in images for _ in range(per_image)]
        rewards = self.reward(captions, owners, ended(sequences, self.model.generation_config.eos_token_id))
        return torch.as_tensor(rewards, dtype=torch.float32).view(len(images), per_image)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if not model.training:  # evaluation: the captioning loss, as before
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        pixel_values, images = inputs["pixel_values"], inputs["image_index"].tolist()
        samples = self.scst_args.scst_num_samples
        sequences = self._generate(model, pixel_values, self._sampling)
        rewards = self._rewards(sequences, images, samples)
        if self.scst_args.scst_baseline == "greedy":
            baseline = self._rewards(self._generate(model, pixel_values, self._greedy), images, 1).expand_as(rewards)
        else:
            baseline = baseline_of(rewards)
        labels = sample_labels(sequences, self.model.generation_config.eos_token_id, samples)
        is_sample = torch.ones(len(labels) * samples, dtype=torch.bool, device=labels.device)
        if self.scst_args.scst_ce_weight:
            labels, is_sample = with_references(labels, inputs["labels"].to(labels.device))
        # One encoder pass per image; its states serve the image's K samples (as encode-once training does).
        losses, mask, _, outputs = token_losses(model, pixel_values, labels)
        advantages = (rewards - baseline).reshape(-1).to(losses.device)
        loss = policy_gradient_loss(losses[is_sample], mask[is_sample], advantages)
        if self.scst_args.scst_ce_weight:
            # as caption_loss: `losses` are 0 after each caption's EOS
            reference_loss = losses[~is_sample].sum() / mask[~is_sample].sum().clamp(min=1)
            loss = loss + self.scst_args.scst_ce_weight * reference_loss
            self._stats["reference_loss"].append(reference_loss.item())
        sampled_tokens = is_sample[:, None].expand_as(mask)[mask]  # the logits are the present tokens'
        self._record(rewards, baseline, mask[is_sample], outputs.logits[0][sampled_tokens])
        return (loss, outputs) if return_outputs else loss

    @torch.no_grad()
    def _record(self, rewards, baseline, mask, logits) -> None:
        # `logits` are the sampled tokens' (token_losses computes no others)
        log_probs = torch.log_softmax(logits.float(), dim=-1)
        entropy = -(log_probs.exp() * log_probs).sum(dim=-1)
        self._stats["reward"].append(rewards.mean().item())
        self._stats["reward_baseline"].append(baseline.mean().item())
        self._stats["sample_length"].append(mask.sum(dim=-1).float().mean().item())
        self._stats["entropy"].append(entropy.mean().item() if len(entropy) else 0.0)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        # Training logs (they carry "loss") get the means since the last log, over every process.
        if "loss" in logs and self._stats:
            names = list(self._stats)
            means = torch.tensor([sum(self._stats[n]) / len(self._stats[n]) for n in names], device=self.args.device)
            if self.accelerator.num_processes > 1:
                means = self.accelerator.reduce(means, reduction="mean")
            logs.update({name: round(value, 4) for name, value in zip(names, means.tolist())})
            self._stats.clear()
        super().log(logs, start_time)
