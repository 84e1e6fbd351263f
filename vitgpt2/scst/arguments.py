"""`--scst` and its options (`run_captioning.py`)."""

from dataclasses import dataclass, field
from typing import Literal

from .rewards import parse_reward

ScstBaseline = Literal["mean", "greedy"]


@dataclass
class ScstArguments:
    scst: bool = field(
        default=False,
        metadata={
            "help": "Self-critical sequence training after cross-entropy: continue the captioner given with "
            "--model_name_or_path by sampling captions and following their reward (CIDEr-D by default)."
        },
    )
    scst_num_samples: int = field(default=5, metadata={"help": "Captions sampled per image at each step."})
    scst_temperature: float = field(default=1.0, metadata={"help": "Sampling temperature (1: the model's own)."})
    scst_max_new_tokens: int | None = field(
        default=None,
        metadata={"help": "Longest sampled caption in tokens, EOS included (default: --max_target_length)."},
    )
    scst_baseline: ScstBaseline = field(
        default="mean",
        metadata={
            "help": "What a sample's reward is compared with: 'mean', the mean reward of the image's other samples "
            "(new-SCST), or 'greedy', the reward of the greedy caption (the original SCST, one more decode a step)."
        },
    )
    scst_reward: str = field(
        default="cider",
        metadata={
            "help": "Reward, or a weighted mix: 'cider' (CIDEr-D, idf from the training references), 'cider:1,bleu:0.5'."
        },
    )
    scst_reward_end: bool = field(
        default=False,
        metadata={
            "help": "Score the end of a caption as a word, as ruotianluo/ImageCaptioning.pytorch's reward does (its "
            "references end in <eos>): n-grams that end the references reward a sample that ends the same way, and "
            "a sample cut at the length limit misses them. Off: the words alone, as evaluation scores them."
        },
    )

    scst_ce_weight: float = field(
        default=0.0,
        metadata={
            "help": "Adds this weight x the cross-entropy of the image's reference captions to the SCST loss, in the "
            "same forward (a mixed objective: the references keep teaching what the images show while the reward "
            "reshapes the wording). 0: SCST alone."
        },
    )

    def __post_init__(self):
        if self.scst_num_samples < 1:
            raise ValueError(f"--scst_num_samples must be at least 1, not {self.scst_num_samples}")
        if self.scst_baseline == "mean" and self.scst_num_samples < 2:
            raise ValueError(
                "--scst_baseline mean compares each sample with the others: give --scst_num_samples 2 or more"
            )
        if self.scst_temperature <= 0:
            raise ValueError(f"--scst_temperature must be above 0, not {self.scst_temperature}")
        if self.scst_ce_weight < 0:
            raise ValueError(f"--scst_ce_weight must be 0 or more, not {self.scst_ce_weight}")
        if self.scst_max_new_tokens is not None and self.scst_max_new_tokens < 1:
            raise ValueError(f"--scst_max_new_tokens must be at least 1, not {self.scst_max_new_tokens}")
        self.reward_weights = parse_reward(self.scst_reward)

    def describe(self) -> str:
        """One line for the log and the model card."""
        return (
            f"reward {self.scst_reward}{' (the end of a caption scored as a word)' if self.scst_reward_end else ''}, "
            f"{self.scst_num_samples} samples per image at temperature "
            f"{self.scst_temperature:g}, baseline: "
            + (
                "the mean reward of the image's other samples"
                if self.scst_baseline == "mean"
                else "the greedy caption"
            )
            + (f", plus {self.scst_ce_weight:g} x cross-entropy on the references" if self.scst_ce_weight else "")
        )
